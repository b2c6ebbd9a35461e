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
//!   go, nothing is ever pushed under its name, and the new build pins the pool;
//! - a pre-built image (the `machineconfiguration.openshift.io/pre-built-image` annotation): the
//!   release base itself is gated and pinned as it is, digest for digest (`Seeded`), and a
//!   fragment edit then builds as usual; one the gate refuses (a file in `/boot`, made with buildah
//!   on the host) fails `LintFailed` and pins nothing.
//!
//! - a builder pod refused at creation (here by a ValidatingAdmissionPolicy of the test's, as a
//!   missing SCC or a ResourceQuota refuses it on OpenShift): the Job has no pod, and the
//!   MachineOSConfig says so (`BuilderCannotStart`, `NoPodCreated`) with an Event, instead of a
//!   builder "running"; once the policy is gone, the build deleted is made again and pins.
//!
//! History pruning is proved by `registry_cleanup.rs`, `PoolLayeredByOpenShift` by
//! `openshift_layering.rs` (under `make conformance`: it installs OpenShift's CRD).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use strata_crds::contract::annotations::PRE_BUILT_IMAGE;
use strata_crds::{BuildPhase, ContainerfileArch, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, config_condition, create_pool, create_push_secret, current_build,
    delete_config, delete_pool, ended_build, expect_event, jobs_of_build, machine_configs,
    machine_os_config, manifest_status, pinned_by, pool_machine_config, running_builder_pod,
    wait_for_condition,
};
use strata_e2e::host_buildah::HostBuildah;
use strata_e2e::util::{install_strata_crds, set_crd_spec, wait_for};
use strata_e2e::{Cluster, needs};

const HOLDER: &str = "e2e-claimed";
const RIVAL: &str = "e2e-claimed-rival";
const LIFECYCLE: &str = "e2e-lifecycle";
/// A step that outlasts the test: the build is under way until the test ends it.
const SLOW: &str = "RUN sleep 600\n";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const SEEDED: &str = "e2e-seeded";
const REFUSED: &str = "e2e-refused";
const SEEDED_BAD: &str = "e2e-seeded-bad";

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

#[tokio::test]
async fn a_pre_built_image_is_gated_and_pinned_as_it_is_and_edits_then_build() -> Result<()> {
    let test = "a_pre_built_image_is_gated_and_pinned_as_it_is_and_edits_then_build";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let result = seeded(cluster, &client).await;
    for name in [SEEDED, SEEDED_BAD] {
        delete_config(&client, name).await?;
        delete_pool(&client, name).await;
    }
    result
}

/// A MachineOSConfig for `pool` seeded with `image`.
fn seeded_config(
    cluster: &Cluster,
    pool: &str,
    image: &str,
    fragment: &str,
) -> Result<MachineOSConfig> {
    let mut config = machine_os_config(cluster, pool, "e2e-seeded-push", fragment)?;
    config.metadata.annotations = Some([(PRE_BUILT_IMAGE.to_string(), image.to_string())].into());
    Ok(config)
}

async fn seeded(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    create_push_secret(client, "e2e-seeded-push").await?;
    for name in [SEEDED, SEEDED_BAD] {
        delete_config(client, name).await?;
        create_pool(client, name).await?;
    }
    // The release base itself: a valid OS image no Strata build could ever produce (a build
    // labels its image), so a pin of exactly its digest shows nothing was built.
    let pre_built = cluster.os_base_image.clone();
    let fragment = "RUN echo later > /etc/e2e-seeded\n";
    apply_config(
        client,
        &seeded_config(cluster, SEEDED, &pre_built, fragment)?,
    )
    .await?;
    let build = current_build(client, SEEDED, None).await?;
    let pinned = pinned_by(client, BUILD_TIMEOUT, SEEDED, &build).await?;
    ensure!(
        pinned == pre_built,
        "seeded with {pre_built}, pinned {pinned}"
    );
    wait_for_condition(client, SEEDED, "Seeded", ("True", "PreBuiltImageSeeded")).await?;
    expect_event(client, SEEDED, "PreBuiltImageSeeded", &pre_built).await?;
    eprintln!("ok: {SEEDED} seeded by {build}: pinned {pinned} as it is");

    // Seeded: an edit builds on the release base as usual, pushed to the config's repository.
    let edited = seeded_config(
        cluster,
        SEEDED,
        &pre_built,
        "RUN echo edited > /etc/e2e-seeded\n",
    )?;
    apply_config(client, &edited).await?;
    let next = current_build(client, SEEDED, Some(&build)).await?;
    let image = pinned_by(client, BUILD_TIMEOUT, SEEDED, &next).await?;
    ensure!(
        image.starts_with(&format!("{}/strata-e2e/{SEEDED}@", cluster.registry)),
        "the edit's build pinned {image}, not an image it pushed"
    );
    eprintln!("ok: an edit after seeding built {next} and pinned {image}");

    // A pre-built image the gate refuses: the build fails and pins nothing.
    let bad = image_with_a_file_in_boot(cluster)?;
    apply_config(client, &seeded_config(cluster, SEEDED_BAD, &bad, fragment)?).await?;
    let build = current_build(client, SEEDED_BAD, None).await?;
    let ended = ended_build(client, &build, BUILD_TIMEOUT).await?;
    let failure = ended.status.as_ref().and_then(|s| s.failure.clone());
    ensure!(
        ended.phase() == Some(BuildPhase::Failed)
            && failure
                .as_ref()
                .is_some_and(|f| f.reason == "LintFailed" && f.message.contains("vmlinuz-e2e")),
        "{build} of the refused pre-built image ended {:?}: {failure:?}",
        ended.phase()
    );
    let why = ("False", "PreBuiltImageFailed");
    wait_for_condition(client, SEEDED_BAD, "Seeded", why).await?;
    let mc = format!("zz-strata-2-{SEEDED_BAD}");
    ensure!(
        machine_configs(client).get_opt(&mc).await?.is_none(),
        "{mc} exists for a pre-built image the gate refused"
    );
    eprintln!("ok: the pre-built image {bad} with a file in /boot failed the gate; nothing pinned");
    Ok(())
}

/// The release base with a file in `/boot` (which the gate refuses), made with buildah on the host
/// and pushed to the local registry; digest-pinned.
fn image_with_a_file_in_boot(cluster: &Cluster) -> Result<String> {
    HostBuildah::new(cluster.dir.join("e2e-seeded-bad"))?.derive(
        &cluster.os_base_image,
        &[("/boot/vmlinuz-e2e", "not where the kernel goes")],
        None,
        &format!("{}/strata-e2e/pre-built-bad", cluster.registry),
    )
}

#[tokio::test]
async fn a_builder_pod_refused_at_creation_is_reported_not_running() -> Result<()> {
    let test = "a_builder_pod_refused_at_creation_is_reported_not_running";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let result = refused(cluster, &client).await;
    let _ = refuse_builder_pods(cluster, false);
    delete_config(&client, REFUSED).await?;
    delete_pool(&client, REFUSED).await;
    result
}

/// Puts in place (or removes) a ValidatingAdmissionPolicy refusing the creation of REFUSED's
/// builder pods, as a missing SCC or an exhausted ResourceQuota refuses them on OpenShift.
fn refuse_builder_pods(cluster: &Cluster, on: bool) -> Result<()> {
    let name = "e2e-refuse-builder-pods";
    let manifest = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name},
         "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["pods"]}]},
            "validations": [{
                "expression": format!("!has(object.metadata.labels) || \
                    !('strata.dev/machine-os-config' in object.metadata.labels) || \
                    object.metadata.labels['strata.dev/machine-os-config'] != '{REFUSED}'"),
                "message": "e2e: this builder pod is refused (as a missing SCC would refuse it)"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name},
         "spec": {"policyName": name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels":
                {"kubernetes.io/metadata.name": NAMESPACE}}}}}]});
    let verb = if on { "apply" } else { "delete" };
    let mut kubectl = cluster
        .kubectl()
        .args([verb, "-f", "-"])
        .args((!on).then_some("--ignore-not-found"))
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write;
    kubectl
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(manifest.to_string().as_bytes())?;
    ensure!(
        kubectl.wait()?.success(),
        "kubectl {verb} of the policy failed"
    );
    Ok(())
}

async fn refused(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let push_secret = "e2e-refused-push";
    create_push_secret(client, push_secret).await?;
    delete_config(client, REFUSED).await?;
    create_pool(client, REFUSED).await?;
    refuse_builder_pods(cluster, true)?;
    // The API server enforces a new policy once it has compiled it: a second or so.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let config = machine_os_config(cluster, REFUSED, push_secret, "RUN true\n")?;
    apply_config(client, &config).await?;
    let build = current_build(client, REFUSED, None).await?;
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    // The Job controller gets 30 s to make the pod; Strata looks again every 15 s.
    let said = wait_for(
        &format!("{REFUSED}: Building=True (BuilderCannotStart)"),
        Duration::from_secs(120),
        || async {
            Ok(config_condition(&configs, REFUSED, "Building")
                .await?
                .filter(|(s, r, _)| s == "True" && r == "BuilderCannotStart")
                .map(|(_, _, message)| message))
        },
    )
    .await?;
    ensure!(
        said.contains("(NoPodCreated)") && said.contains("has made no pod"),
        "{REFUSED}'s Building condition does not say the Job has no pod: {said}"
    );
    expect_event(client, REFUSED, "BuilderCannotStart", "has made no pod").await?;
    let jobs = jobs_of_build(client, &build).await?;
    ensure!(
        jobs.len() == 1,
        "expected the build's one Job: {}",
        jobs.len()
    );
    ensure!(
        pool_machine_config(client, REFUSED).await?.is_none(),
        "{REFUSED}'s pool was given a MachineConfig by a build that never ran"
    );
    eprintln!("ok: {build}'s pod is refused at creation, and {REFUSED} says so: {said}");

    // The way out the runbook gives: the cause gone, delete the build; it is made again at once.
    refuse_builder_pods(cluster, false)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    Api::<MachineOSBuild>::all(client.clone())
        .delete(&build, &DeleteParams::default())
        .await?;
    pinned_by(client, BUILD_TIMEOUT, REFUSED, &build).await?;
    eprintln!("ok: once the policy is gone, {build}, made again, pinned the pool");
    Ok(())
}
