//! The controller's refusals and its build lifecycle on the real cluster, against the deployed
//! controller (the plan's unit tests cover each rule's cases; these prove what the API server
//! ends up holding):
//! - a MachineOSConfig without an amd64 fragment is refused (`NoFragmentForArchitecture`), and
//!   still holds its pool: the API server refuses a second config for the pool (the CRD's rule);
//!   one stored before that rule is refused by the controller (`PoolClaimed`), and builds and pins
//!   as soon as the holder is deleted;
//! - a MachineOSBuild deleted mid-build: its Job and pod go, and the build of the current inputs
//!   is made again (a new object of the same name, a new builder);
//! - new inputs mid-build: the build in flight ends `Interrupted` (`Superseded`), its Job and pod
//!   go, nothing is ever pushed under its name, and the new build pins the pool.
//!
//! History pruning is proved by `registry_cleanup.rs`, `PoolLayeredByOpenShift` by
//! `openshift_layering.rs` (under `make conformance`: it installs OpenShift's CRD).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use strata_crds::{BuildPhase, ContainerfileArch, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, create_pool, create_push_secret, current_build, delete_config,
    delete_pool, ended_build, expect_event, jobs_of_build, machine_configs, machine_os_config,
    manifest_status, pinned_by, running_builder_pod, wait_for_condition,
};
use strata_e2e::util::{install_strata_crds, set_crd_spec, wait_for};
use strata_e2e::{Cluster, needs};

const HOLDER: &str = "e2e-claimed";
const RIVAL: &str = "e2e-claimed-rival";
const LIFECYCLE: &str = "e2e-lifecycle";
/// A step that outlasts the test: the build is under way until the test ends it.
const SLOW: &str = "RUN sleep 600\n";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The CRD rule that a MachineOSConfig be named after its pool, by its message.
const NAME_RULE: &str = "MachineOSConfig name must match the referenced MachineConfigPool name";

/// Creates `config`, which breaks the name rule, with the rule lifted from the served CRD, then
/// installs the CRD again from `crds/crds.yaml` (whatever happened).
async fn create_past_the_name_rule(client: &kube::Client, config: &MachineOSConfig) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = "machineosconfigs.strata.dev";
    let mut spec = serde_json::to_value(crds.get(crd_name).await?)?["spec"].clone();
    for version in spec["versions"].as_array_mut().into_iter().flatten() {
        let rules = &mut version["schema"]["openAPIV3Schema"]["x-kubernetes-validations"];
        if let Some(rules) = rules.as_array_mut() {
            rules.retain(|r| {
                !r["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(NAME_RULE)
            });
        }
    }
    set_crd_spec(&crds, crd_name, &spec).await?;
    // The API server takes a moment to serve the changed schema.
    let created = wait_for(
        "the MachineOSConfig created without the name rule",
        Duration::from_secs(30),
        || async { Ok(apply_config(client, config).await.ok()) },
    )
    .await;
    install_strata_crds(client).await?;
    created
}

/// The builds of MachineOSConfig `config`, by their label.
async fn builds_of(client: &kube::Client, config: &str) -> Result<Vec<MachineOSBuild>> {
    let api: Api<MachineOSBuild> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("strata.dev/machine-os-config={config}")))
        .await?;
    Ok(list.items)
}

#[tokio::test]
async fn a_config_without_an_amd64_fragment_holds_its_pool_against_a_second_config() -> Result<()> {
    let test = "a_config_without_an_amd64_fragment_holds_its_pool_against_a_second_config";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let result = claimed_pool(cluster, &client).await;
    for name in [RIVAL, HOLDER] {
        delete_config(&client, name).await?;
    }
    delete_pool(&client, HOLDER).await;
    result
}

async fn claimed_pool(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let push_secret = "e2e-claimed-push";
    create_push_secret(client, push_secret).await?;
    for name in [RIVAL, HOLDER] {
        delete_config(client, name).await?;
    }
    create_pool(client, HOLDER).await?;

    // Named after the pool, so it holds the pool; its only fragment is for ARM64.
    let mut holder = machine_os_config(cluster, HOLDER, push_secret, "RUN echo arm64\n")?;
    holder.spec.container_file[0].containerfile_arch = ContainerfileArch::ARM64;
    apply_config(client, &holder).await?;
    let why = ("True", "NoFragmentForArchitecture");
    let message = wait_for_condition(client, HOLDER, "Degraded", why).await?;
    ensure!(
        message.contains("ARM64") && message.contains("add an AMD64 or a NoArch entry"),
        "the refusal does not say what to add: {message}"
    );
    expect_event(client, HOLDER, "NoFragmentForArchitecture", "ARM64").await?;
    eprintln!("ok: {HOLDER} refused: {message}");

    let mut rival =
        machine_os_config(cluster, RIVAL, push_secret, "RUN echo rival > /etc/rival\n")?;
    rival.spec.machine_config_pool.name = HOLDER.into();
    // The API server refuses a second config for the pool outright (the CRD's rule, OpenShift's).
    let refused = apply_config(client, &rival).await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains(NAME_RULE)),
        "the API server took a second MachineOSConfig for pool {HOLDER}: {refused:?}"
    );
    eprintln!("ok: the API server refuses {RIVAL} for pool {HOLDER}");
    // The rule lets a config stored before it (OpenShift's API once took any name) keep its pool;
    // the controller refuses such a one: made here with the rule lifted for the create.
    create_past_the_name_rule(client, &rival).await?;
    let message = wait_for_condition(client, RIVAL, "Degraded", ("True", "PoolClaimed")).await?;
    ensure!(
        message.contains(&format!(
            "MachineOSConfig {HOLDER} also builds for pool {HOLDER}"
        )),
        "the refusal does not name the holder: {message}"
    );
    expect_event(client, RIVAL, "PoolClaimed", HOLDER).await?;
    eprintln!("ok: {RIVAL} refused: {message}");

    // Refused means nothing made: no build, no MachineConfig for the pool.
    for config in [HOLDER, RIVAL] {
        let builds = builds_of(client, config).await?;
        ensure!(
            builds.is_empty(),
            "refused {config} has builds: {:?}",
            builds.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
        );
    }
    let mc_name = format!("zz-strata-2-{HOLDER}");
    ensure!(
        machine_configs(client).get_opt(&mc_name).await?.is_none(),
        "{mc_name} exists while both configs of the pool are refused"
    );

    // The holder goes: the rival's claim is good from that moment, not from the next resync.
    delete_config(client, HOLDER).await?;
    let build = current_build(client, RIVAL, None).await?;
    let built = ended_build(client, &build, BUILD_TIMEOUT).await?;
    ensure!(
        built.phase() == Some(BuildPhase::Succeeded),
        "{RIVAL}'s build {build} ended {:?}",
        built.phase()
    );
    let image = built
        .status
        .and_then(|s| s.digested_image_push_spec)
        .context("no digestedImagePushSpec")?;
    wait_for(
        &format!("{mc_name} pinning {image}"),
        Duration::from_secs(60),
        || async {
            let mc = machine_configs(client).get_opt(&mc_name).await?;
            Ok(mc
                .filter(|mc| mc.data["spec"]["osImageURL"] == image.as_str())
                .map(|_| ()))
        },
    )
    .await?;
    wait_for_condition(client, RIVAL, "Degraded", ("False", "AsExpected")).await?;
    eprintln!("ok: once {HOLDER} went, {RIVAL} built {build} and pinned pool {HOLDER}");
    Ok(())
}

#[tokio::test]
async fn a_deleted_or_superseded_build_stops_its_builder_and_pushes_nothing() -> Result<()> {
    let test = "a_deleted_or_superseded_build_stops_its_builder_and_pushes_nothing";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let result = lifecycle(cluster, &client).await;
    delete_config(&client, LIFECYCLE).await?;
    delete_pool(&client, LIFECYCLE).await;
    result
}

/// Waits until pod `name` (in the controller's namespace) is gone.
async fn pod_gone(client: &kube::Client, name: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for(
        &format!("builder pod {name} gone"),
        Duration::from_secs(120),
        || async { Ok(pods.get_opt(name).await?.is_none().then_some(())) },
    )
    .await
}

async fn lifecycle(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let push_secret = "e2e-lifecycle-push";
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    create_push_secret(client, push_secret).await?;
    delete_config(client, LIFECYCLE).await?;
    create_pool(client, LIFECYCLE).await?;
    let config = machine_os_config(cluster, LIFECYCLE, push_secret, SLOW)?;
    let push_spec = config.spec.rendered_image_push_spec.clone();
    apply_config(client, &config).await?;
    let build = current_build(client, LIFECYCLE, None).await?;
    let first_pod = running_builder_pod(client, &build).await?.name_any();
    let first_uid = builds.get(&build).await?.uid().context("no uid")?;

    // Deleted mid-build: the garbage collector takes its Job and pod; the controller makes the
    // build of the current inputs again.
    builds.delete(&build, &DeleteParams::default()).await?;
    pod_gone(client, &first_pod).await?;
    let again = wait_for(
        &format!("{build} made again"),
        Duration::from_secs(60),
        || async {
            Ok(builds
                .get_opt(&build)
                .await?
                .and_then(|b| b.uid())
                .filter(|uid| *uid != first_uid))
        },
    )
    .await?;
    let second_pod = running_builder_pod(client, &build).await?.name_any();
    let jobs = jobs_of_build(client, &build).await?;
    ensure!(
        !jobs.is_empty()
            && jobs.iter().all(|j| {
                j.owner_references()
                    .iter()
                    .all(|o| o.uid == again && o.uid != first_uid)
            }),
        "the deleted build's Job is still there: {:?}",
        jobs.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    );
    eprintln!("ok: {build} deleted mid-build: pod {first_pod} gone, made again ({second_pod})");

    // New inputs mid-build: the build in flight is interrupted and its builder stopped.
    let quick = machine_os_config(
        cluster,
        LIFECYCLE,
        push_secret,
        "RUN echo next > /etc/next\n",
    )?;
    apply_config(client, &quick).await?;
    let next = current_build(client, LIFECYCLE, Some(&build)).await?;
    let old = ended_build(client, &build, Duration::from_secs(60)).await?;
    let failure = old.status.as_ref().and_then(|s| s.failure.clone());
    ensure!(
        old.phase() == Some(BuildPhase::Interrupted)
            && failure.as_ref().is_some_and(|f| f.reason == "Superseded"),
        "{build} ended {:?} ({failure:?}), not Interrupted/Superseded",
        old.phase()
    );
    expect_event(client, LIFECYCLE, "BuildInterrupted", &build).await?;
    pod_gone(client, &second_pod).await?;
    let jobs = jobs_of_build(client, &build).await?;
    ensure!(
        jobs.is_empty(),
        "{build}'s Job stayed after it was superseded"
    );
    pinned_by(client, BUILD_TIMEOUT, LIFECYCLE, &next).await?;
    // The builds push `<repo>:<build name>`: none of the superseded one's ever reached it.
    let (repo, _) = push_spec
        .rsplit_once(':')
        .context("push spec without a tag")?;
    for name in [&build, &next] {
        let status = manifest_status(&format!("{repo}:{name}"))?;
        let want = if name == &next { 200 } else { 404 };
        ensure!(status == want, "{repo}:{name}: HTTP {status}, not {want}");
    }
    eprintln!(
        "ok: {build} superseded by {next}: Interrupted, pod {second_pod} and Job gone, nothing pushed; {next} pinned"
    );
    Ok(())
}
