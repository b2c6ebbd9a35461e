//! The controller as users run it — deployed in the cluster from `manifests/`, as its own
//! ServiceAccount — against the real cluster: a MachineOSConfig becomes a builder pod running
//! buildah on the real kubelet, an image in the real registry and a MachineConfig pinning the pool
//! by digest. A fragment change builds a new digest; the rebuild annotation rebuilds; a new release
//! base rebuilds every pool, and the old base again reuses the old builds without building; a bad
//! step fails without touching the pool; deleting the MachineOSConfig removes the MachineConfig.
//! Each step checks the exact conditions, Events and objects. One test calling the steps in order:
//! each starts from the state the one before left (the pool's builds and image), and the release
//! base is cluster-wide, so nothing else may build while it changes.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, assert_no_forbidden_requests, builder_jobs, config_condition,
    create_pool, create_pool_with, create_push_secret, current_build, delete_config, delete_pool,
    ended_build, expect_event, jobs_of_build, kubectl_strata, leader_metrics, machine_configs,
    machine_os_config, pinned_by, pools, set_release_base, with_release_base,
};
use strata_e2e::mco::ROLLOUTS_ANNOTATION;
use strata_e2e::util::{install_strata_crds, wait_for};
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-flow";
/// Longer than a label value may be (63): the controller must map its objects back by annotation,
/// and label the MachineConfig with the pool's selector rather than the role.
const SIDE_POOL: &str = "e2e-side-pool-whose-name-is-longer-than-any-label-value-may-be-0123456789";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// `(status, reason, message)` of condition `ty` on the MachineOSConfig.
async fn condition(
    configs: &Api<MachineOSConfig>,
    name: &str,
    ty: &str,
) -> Result<(String, String, String)> {
    config_condition(configs, name, ty)
        .await?
        .with_context(|| format!("{name} has no {ty} condition"))
}

/// Waits until the leader's `strata_config_latest_build_failed` of `POOL`'s config (the state
/// `StrataBuildFailed` fires on) is `want` (None: no series).
async fn latest_build_failed(client: &kube::Client, want: Option<f64>) -> Result<()> {
    let prefix = format!("strata_config_latest_build_failed{{config=\"{POOL}\",pool=\"{POOL}\"}} ");
    wait_for(
        &format!("strata_config_latest_build_failed of {POOL} = {want:?}"),
        Duration::from_secs(30),
        || async {
            let text = leader_metrics(client).await?;
            let value: Option<f64> = text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok());
            Ok((value == want).then_some(()))
        },
    )
    .await
}

/// What the steps share: the cluster, a client of it, the APIs they read and the push Secret's
/// name.
struct Flow {
    cluster: &'static Cluster,
    client: kube::Client,
    configs: Api<MachineOSConfig>,
    builds: Api<MachineOSBuild>,
    mcs: Api<DynamicObject>,
    push_secret: String,
}

impl Flow {
    /// Applies the MachineOSConfig of `pool` with `fragment`, pushing with the flow's Secret.
    async fn apply(&self, pool: &str, fragment: &str) -> Result<()> {
        apply_config(
            &self.client,
            &machine_os_config(self.cluster, pool, &self.push_secret, fragment)?,
        )
        .await
    }
}

/// The builds of `POOL`'s MachineOSConfig, by their label.
fn pool_builds() -> ListParams {
    ListParams::default().labels(&format!("strata.dev/machine-os-config={POOL}"))
}

#[tokio::test]
async fn deployed_controller_builds_pins_rebuilds_and_cleans_up() -> Result<()> {
    let test = "deployed_controller_builds_pins_rebuilds_and_cleans_up";
    let (cluster, _builder) = needs!(Cluster::with_deployed_controller_or_skip(test));
    // The flow starts on the small base and switches releases; the base the cluster had (make
    // demo's CoreOS-like one, say) is named again at the end.
    let client = cluster.client().await?;
    with_release_base(&client, &cluster.os_base_image, || async {
        let flow = start_with_fresh_pools(cluster).await?;
        no_build_without_an_allowed_push_secret(&flow).await?;
        let (first, image_v1) = first_build_pins_the_pool(&flow).await?;
        let second = fragment_change_builds_a_new_digest(&flow, &first, &image_v1).await?;
        let image_v2 = rebuild_annotation_builds_again(&flow, &second).await?;
        new_release_rebuilds_and_the_old_base_reuses_builds(&flow, &second, &image_v2).await?;
        failing_step_keeps_the_pool_on_its_image(&flow, &second, &image_v2).await?;
        deleting_the_configs_removes_their_objects(&flow).await?;
        no_request_of_strata_refused(cluster)
    })
    .await
}

/// The CRDs installed; `POOL` (two machines) and `SIDE_POOL` created without MachineOSConfigs;
/// no push Secret yet.
async fn start_with_fresh_pools(cluster: &'static Cluster) -> Result<Flow> {
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    let flow = Flow {
        cluster,
        configs: Api::all(client.clone()),
        builds: Api::all(client.clone()),
        mcs: machine_configs(&client),
        push_secret: format!("{POOL}-push"),
        client,
    };
    let client = &flow.client;
    for name in [POOL, SIDE_POOL] {
        delete_config(client, name).await?;
    }
    // POOL has two machines and takes the MCO's own worker configuration too (00-worker, which a
    // release rewrites), as a custom pool does: an upgrade changes more than the image.
    create_pool_with(
        client,
        POOL,
        json!({"matchExpressions": [{"key": "machineconfiguration.openshift.io/role", "operator": "In", "values": ["worker", POOL]}]}),
        2,
    )
    .await?;
    create_pool(client, SIDE_POOL).await?;
    let _ = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .delete(&flow.push_secret, &Default::default())
        .await;
    Ok(flow)
}

/// 0. Without its push Secret: Degraded/SecretUnavailable, no build and no Job; a Secret without
///    the opt-in: Degraded/SecretNotAllowed; creating the allowed Secret (a legacy .dockercfg one)
///    starts the build at once.
async fn no_build_without_an_allowed_push_secret(flow: &Flow) -> Result<()> {
    let Flow {
        client,
        configs,
        builds,
        push_secret,
        ..
    } = flow;
    let fragment_v1 = "RUN echo layered-by-strata > /etc/strata-e2e\n";
    flow.apply(POOL, fragment_v1).await?;
    wait_for(
        "Degraded SecretUnavailable",
        Duration::from_secs(60),
        || async {
            let (status, reason, message) = condition(configs, POOL, "Degraded").await?;
            Ok((status == "True" && reason == "SecretUnavailable").then_some(message))
        },
    )
    .await
    .map(|m| eprintln!("ok: no push Secret → Degraded/SecretUnavailable: {m}"))?;
    ensure!(
        builds.list(&pool_builds()).await?.items.is_empty(),
        "a build exists without a push Secret"
    );
    ensure!(
        builder_jobs(client)
            .list(&pool_builds())
            .await?
            .items
            .is_empty(),
        "a Job exists without a push Secret"
    );
    // A Secret that does not opt in is not used: anyone allowed to create a MachineOSConfig could
    // otherwise make Strata push with any Secret of its namespace.
    let unannotated: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": push_secret, "namespace": NAMESPACE},
        "type": "kubernetes.io/dockercfg",
        "stringData": {".dockercfg": "{}"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&Default::default(), &unannotated)
        .await?;
    wait_for(
        "Degraded SecretNotAllowed",
        Duration::from_secs(60),
        || async {
            let (status, reason, message) = condition(configs, POOL, "Degraded").await?;
            Ok((status == "True" && reason == "SecretNotAllowed").then_some(message))
        },
    )
    .await
    .map(|m| eprintln!("ok: a Secret without the opt-in → Degraded/SecretNotAllowed: {m}"))?;
    ensure!(
        builds.list(&pool_builds()).await?.items.is_empty(),
        "a build exists with a Secret that did not opt in"
    );
    create_push_secret(client, push_secret).await
}

/// 1. Build → digest verified → MachineConfig zz-strata-2-<pool> pins the pool by digest, with
///    its conditions and Events; the registry serves the digest; the per-build Secret is gone.
///    Returns the build and its image.
async fn first_build_pins_the_pool(flow: &Flow) -> Result<(String, String)> {
    let Flow {
        cluster,
        client,
        configs,
        mcs,
        ..
    } = flow;
    let first = current_build(client, POOL, None).await?;
    let image_v1 = pinned_by(client, BUILD_TIMEOUT, POOL, &first).await?;
    ensure!(
        image_v1.starts_with(&format!("{}/strata-e2e/{POOL}@sha256:", cluster.registry)),
        "pinned {image_v1}"
    );
    let mc = mcs.get(&format!("zz-strata-2-{POOL}")).await?;
    let labels = mc.metadata.labels.unwrap_or_default();
    ensure!(
        labels
            .get("machineconfiguration.openshift.io/role")
            .map(String::as_str)
            == Some(POOL)
    );
    ensure!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("strata")
    );
    for (ty, status, reason) in [
        ("Ready", "True", "BuildSucceeded"),
        ("Building", "False", "BuildSucceeded"),
        ("Degraded", "False", "AsExpected"),
    ] {
        let got = condition(configs, POOL, ty).await?;
        ensure!(got.0 == status && got.1 == reason, "{ty}: {got:?}");
    }
    let (_, _, ready) = condition(configs, POOL, "Ready").await?;
    ensure!(
        ready == format!("pool {POOL} is pinned to {image_v1}"),
        "Ready message {ready:?}"
    );
    for (reason, needle) in [
        ("BuildCreated", format!("build {first} created")),
        (
            "BuildStarted",
            format!("build {first}: builder pod started"),
        ),
        ("BuildSucceeded", format!("build {first} pushed {image_v1}")),
        (
            "PoolPinned",
            format!("MachineConfigPool {POOL} now uses {image_v1}"),
        ),
    ] {
        expect_event(client, POOL, reason, &needle).await?;
    }
    // The build's own Events, where `kubectl describe smosb` looks (by the build's uid).
    wait_for(
        &format!("BuildSucceeded in kubectl describe smosb {first}"),
        Duration::from_secs(30),
        || async {
            let out = cluster
                .kubectl()
                .args(["describe", "smosb", &first])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok((text.contains("BuildSucceeded") && text.contains(&image_v1)).then_some(()))
        },
    )
    .await?;
    // The day-2 commands, as an administrator runs them.
    let status = kubectl_strata(cluster, &["status"])?;
    ensure!(
        status
            .lines()
            .any(|l| l.starts_with(POOL) && l.contains(&image_v1) && l.contains("True/")),
        "kubectl strata status does not show {POOL} pinned to {image_v1}:\n{status}"
    );
    let detail = kubectl_strata(cluster, &["status", POOL])?;
    ensure!(
        detail.contains(&format!("{first}  Succeeded")) && detail.contains(&ready),
        "kubectl strata status {POOL} does not show {first} and the Ready message:\n{detail}"
    );
    let rendered = kubectl_strata(cluster, &["render", "--config", POOL])?;
    ensure!(
        rendered.contains("layered-by-strata"),
        "kubectl strata render --config {POOL} is not the config's Containerfile:\n{rendered}"
    );
    // The succeeded build's Job goes; the end of its steps' logs stays.
    let logs = wait_for(
        &format!("the kept logs of {first}"),
        Duration::from_secs(60),
        || async {
            let text = kubectl_strata(cluster, &["logs", &first])?;
            Ok(text.contains("kept when it succeeded").then_some(text))
        },
    )
    .await?;
    ensure!(
        logs.contains("# push") && logs.contains("strata build: pushing image"),
        "kubectl strata logs {first} does not show the push step's log:\n{logs}"
    );
    eprintln!(
        "ok: kubectl strata status, logs (kept once the pod went) and render --config show the pool, its build and image"
    );
    registry_serves(&cluster.registry, &image_v1)?;
    build_secret_deleted_containerfile_kept(client, &first).await?;
    latest_build_failed(client, Some(0.0)).await?;
    eprintln!("ok: {POOL} pinned to {image_v1} by {first}, with its Events and conditions");
    Ok((first, image_v1))
}

/// The registry serves `image`'s digest.
fn registry_serves(registry: &str, image: &str) -> Result<()> {
    let (repo, digest) = image.split_once('@').context("no digest")?;
    let path = repo.split_once('/').map(|x| x.1).unwrap_or_default();
    let url = format!("http://{registry}/v2/{path}/manifests/{digest}");
    let served = Command::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &url,
        ])
        .status()?
        .success();
    ensure!(served, "{url} not served");
    Ok(())
}

/// Per-build Secrets are gone once the build ended; the Containerfile ConfigMap is kept.
async fn build_secret_deleted_containerfile_kept(client: &kube::Client, build: &str) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for(
        "per-build credentials Secret deleted",
        Duration::from_secs(30),
        || async {
            Ok(secrets
                .get_opt(&format!("credentials-{build}"))
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get(&format!("containerfile-{build}"))
        .await?;
    let containerfile = cm
        .data
        .unwrap_or_default()
        .into_values()
        .collect::<String>();
    ensure!(
        containerfile.contains("layered-by-strata"),
        "ConfigMap: {containerfile}"
    );
    Ok(())
}

/// 2. A fragment change → a new build, a new digest, the MachineConfig follows. Returns the build.
async fn fragment_change_builds_a_new_digest(
    flow: &Flow,
    first: &str,
    image_v1: &str,
) -> Result<String> {
    let fragment_v2 = "RUN echo layered-by-strata-v2 > /etc/strata-e2e\n";
    flow.apply(POOL, fragment_v2).await?;
    let second = current_build(&flow.client, POOL, Some(first)).await?;
    let image_v2 = pinned_by(&flow.client, BUILD_TIMEOUT, POOL, &second).await?;
    ensure!(
        image_v2 != image_v1,
        "a new fragment kept the digest {image_v1}"
    );
    eprintln!("ok: fragment change → {second} → {image_v2}");
    Ok(second)
}

/// 3. The rebuild annotation builds the same inputs again under the same name, then goes. Returns
///    the image the pool is pinned to after it.
async fn rebuild_annotation_builds_again(flow: &Flow, second: &str) -> Result<String> {
    let Flow {
        cluster,
        client,
        configs,
        builds,
        ..
    } = flow;
    let before = builds
        .get(second)
        .await?
        .metadata
        .creation_timestamp
        .context("no creationTimestamp")?;
    // As an administrator asks for it: `kubectl strata rebuild` sets the annotation.
    let said = kubectl_strata(cluster, &["rebuild", POOL])?;
    ensure!(
        said.contains("will build again"),
        "kubectl strata rebuild said: {said}"
    );
    wait_for("the rebuild to succeed", BUILD_TIMEOUT, || async {
        let config = configs.get(POOL).await?;
        let annotated = config
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("strata.dev/rebuild");
        let Some(b) = builds.get_opt(second).await? else {
            return Ok(None);
        };
        let newer = b
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0 > before.0);
        Ok((newer && !annotated && b.phase() == Some(BuildPhase::Succeeded)).then_some(()))
    })
    .await?;
    expect_event(
        client,
        POOL,
        "Rebuilding",
        &format!("building {second} again: rebuild requested"),
    )
    .await?;
    eprintln!("ok: rebuild annotation rebuilt {second} and was removed");
    pinned_by(client, BUILD_TIMEOUT, POOL, second).await
}

/// 4. A new release base rebuilds every pool; the old base again reuses the old builds.
async fn new_release_rebuilds_and_the_old_base_reuses_builds(
    flow: &Flow,
    second: &str,
    image_v2: &str,
) -> Result<()> {
    let Flow {
        cluster,
        client,
        configs,
        builds,
        ..
    } = flow;
    let side_first = side_pool_pinned(flow).await?;
    let before = (
        created(builds, second).await?,
        created(builds, &side_first).await?,
    );
    // A new release, then the first base again.
    let mut images = Vec::new();
    for (release, previous) in [
        (&cluster.os_base_image_next, Some(second)),
        (&cluster.os_base_image, None),
    ] {
        images.push(release_rolls_the_pool_once(flow, release, previous, second).await?);
    }
    // The side pool followed both releases too, and is back on its first build.
    wait_for(
        &format!("{SIDE_POOL} back on {side_first}"),
        Duration::from_secs(120),
        || async {
            let status = configs.get(SIDE_POOL).await?.status.unwrap_or_default();
            Ok(
                (status.machine_os_build.map(|b| b.name).as_deref() == Some(side_first.as_str()))
                    .then_some(()),
            )
        },
    )
    .await?;
    let after = (
        created(builds, second).await?,
        created(builds, &side_first).await?,
    );
    ensure!(
        after == before,
        "identical inputs built again: builds recreated {before:?} → {after:?}"
    );
    ensure!(
        jobs_of_build(client, second).await?.is_empty(),
        "a succeeded build's Job was left behind (or a new one made)"
    );
    ensure!(
        images[1] == image_v2,
        "back on the first base, the pool runs {} instead of {image_v2}",
        images[1]
    );
    eprintln!(
        "ok: back on the release base, {second} and {side_first} reused without building; no finished Job left"
    );
    Ok(())
}

/// `SIDE_POOL` (a name longer than a label value) built and pinned; its MachineConfig carries the
/// pool's selector label. Returns its build.
async fn side_pool_pinned(flow: &Flow) -> Result<String> {
    flow.apply(SIDE_POOL, "RUN echo side > /etc/side\n").await?;
    let side_first = current_build(&flow.client, SIDE_POOL, None).await?;
    pinned_by(&flow.client, BUILD_TIMEOUT, SIDE_POOL, &side_first).await?;
    let side_mc = flow.mcs.get(&format!("zz-strata-2-{SIDE_POOL}")).await?;
    let side_labels = side_mc.metadata.labels.unwrap_or_default();
    ensure!(
        side_labels.get("e2e.strata.dev/pool").map(String::as_str) == Some("long"),
        "MachineConfig of the long-named pool lacks its selector label: {side_labels:?}"
    );
    Ok(side_first)
}

/// When `build` was created.
async fn created(builds: &Api<MachineOSBuild>, build: &str) -> Result<Option<Time>> {
    Ok(builds.get(build).await?.metadata.creation_timestamp)
}

/// The rendered configurations pool `name`'s machines rolled to, oldest first.
async fn rollouts(client: &kube::Client, name: &str) -> Result<Vec<String>> {
    let pool = pools(client).get(name).await?;
    Ok(pool
        .metadata
        .annotations
        .unwrap_or_default()
        .get(ROLLOUTS_ANNOTATION)
        .map(|r| r.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .unwrap_or_default())
}

/// Release base `release`: POOL rebuilds on it (on a base not built for before, `previous` the
/// build it replaces) or reuses `second` (back on the first base, `previous` `None`), and each
/// machine rolls once — Strata holds the pool (spec.paused) from the moment it sees the new base
/// until its rebuild is pinned and rendered, so the MCO never rolls the new release's
/// configuration with the old image. Returns the image the pool is pinned to.
async fn release_rolls_the_pool_once(
    flow: &Flow,
    release: &str,
    previous: Option<&str>,
    second: &str,
) -> Result<String> {
    let Flow {
        client,
        configs,
        builds,
        mcs,
        ..
    } = flow;
    let rolled_before = rollouts(client, POOL).await?;
    set_release_base(client, release).await?;
    let build = match previous {
        Some(previous) => {
            pool_held_for_the_new_base(flow).await?;
            current_build(client, POOL, Some(previous)).await?
        }
        None => {
            // A build made on this base before is pinned at once: the hold lasts until the MCO
            // renders the pool, a moment; its Event says it was taken.
            expect_event(
                client,
                POOL,
                "PoolHeld",
                &format!("renders it with {second}"),
            )
            .await?;
            back_on_build(configs, second).await?
        }
    };
    let image = pinned_by(client, BUILD_TIMEOUT, POOL, &build).await?;
    ensure!(
        builds.get(&build).await?.spec.base_image == release,
        "{build} not on {release}"
    );
    pool_released(flow).await?;
    let rolled = rollouts(client, POOL).await?;
    let new: Vec<&String> = rolled.iter().skip(rolled_before.len()).collect();
    ensure!(
        new.len() == 1,
        "the upgrade rolled the machines {} times: {new:?}",
        new.len()
    );
    let rendered = mcs.get(new[0]).await?;
    ensure!(
        rendered.data["spec"]["osImageURL"] == Value::String(image.clone()),
        "the machines rolled to {} without the new image",
        new[0]
    );
    expect_event(client, POOL, "PoolHeld", "holding pool").await?;
    expect_event(client, POOL, "PoolReleased", &image).await?;
    eprintln!(
        "ok: release {release}: {POOL} held, rebuilt as {build}, released; its machines rolled once, to {image}"
    );
    Ok(image)
}

/// Strata holds POOL (paused, PoolHeld/BaseImageChanged) while it rebuilds for a new base.
async fn pool_held_for_the_new_base(flow: &Flow) -> Result<()> {
    wait_for("Strata holds the pool", Duration::from_secs(30), || async {
        let pool = pools(&flow.client).get(POOL).await?;
        let (held, reason, _) = condition(&flow.configs, POOL, "PoolHeld")
            .await
            .unwrap_or_default();
        Ok(
            (pool.data["spec"]["paused"] == true && held == "True" && reason == "BaseImageChanged")
                .then_some(()),
        )
    })
    .await
}

/// Back on the first base: POOL's current build is `build` again, reused, nothing built.
async fn back_on_build(configs: &Api<MachineOSConfig>, build: &str) -> Result<String> {
    wait_for(
        "back on the first build",
        Duration::from_secs(120),
        || async {
            let status = configs.get(POOL).await?.status.unwrap_or_default();
            Ok(status
                .machine_os_build
                .map(|b| b.name)
                .filter(|n| *n == build))
        },
    )
    .await
}

/// The hold on POOL released (unpaused, PoolHeld/Released) and the pool updated.
async fn pool_released(flow: &Flow) -> Result<()> {
    wait_for(
        "the hold released and the pool updated",
        BUILD_TIMEOUT,
        || async {
            let pool = pools(&flow.client).get(POOL).await?;
            let (held, reason, _) = condition(&flow.configs, POOL, "PoolHeld").await?;
            let (updated, _, _) = condition(&flow.configs, POOL, "PoolUpdated").await?;
            Ok((pool.data["spec"]["paused"] == false
                && held == "False"
                && reason == "Released"
                && updated == "True")
                .then_some(()))
        },
    )
    .await
}

/// 5. A failing step → Failed with the step and its fragment line; the pool keeps its image.
async fn failing_step_keeps_the_pool_on_its_image(
    flow: &Flow,
    second: &str,
    image_v2: &str,
) -> Result<()> {
    let Flow {
        client,
        configs,
        mcs,
        ..
    } = flow;
    flow.apply(POOL, "RUN true\nRUN false\n").await?;
    let failing = current_build(client, POOL, Some(second)).await?;
    let failed = ended_build(client, &failing, BUILD_TIMEOUT).await?;
    ensure!(
        failed.phase() == Some(BuildPhase::Failed),
        "phase {:?}",
        failed.phase()
    );
    let failure = failed
        .status
        .and_then(|s| s.failure)
        .context("no failure recorded")?;
    ensure!(failure.reason == "StepFailed", "failure {failure:?}");
    ensure!(
        failure.message.contains("RUN false") && failure.message.contains("fragment line 2"),
        "failure {failure:?}"
    );
    wait_for("Degraded BuildFailed", Duration::from_secs(30), || async {
        let (status, reason, message) = condition(configs, POOL, "Degraded").await?;
        Ok(
            (status == "True" && reason == "BuildFailed" && message.contains(&failing))
                .then_some(()),
        )
    })
    .await?;
    let (_, _, ready) = condition(configs, POOL, "Ready").await?;
    ensure!(
        ready.ends_with(&format!("; the pool keeps {image_v2}")),
        "Ready message {ready:?}"
    );
    expect_event(client, POOL, "BuildFailed", &failing).await?;
    // StrataBuildFailed's state: 1 for as long as the latest build stays failed.
    latest_build_failed(client, Some(1.0)).await?;
    let mc = mcs.get(&format!("zz-strata-2-{POOL}")).await?;
    ensure!(
        mc.data["spec"]["osImageURL"] == Value::String(image_v2.to_string()),
        "a failed build changed the MachineConfig"
    );
    let status = configs.get(POOL).await?.status.unwrap_or_default();
    ensure!(status.current_image_pull_spec.as_deref() == Some(image_v2));
    eprintln!("ok: failing step → {}: {}", failure.reason, failure.message);
    Ok(())
}

/// 6. Deleting the MachineOSConfigs removes their MachineConfigs, builds and metric series.
async fn deleting_the_configs_removes_their_objects(flow: &Flow) -> Result<()> {
    let Flow {
        client,
        builds,
        mcs,
        ..
    } = flow;
    for name in [POOL, SIDE_POOL] {
        delete_config(client, name).await?;
        ensure!(
            mcs.get_opt(&format!("zz-strata-2-{name}")).await?.is_none(),
            "MachineConfig of {name} left behind"
        );
        delete_pool(client, name).await;
    }
    latest_build_failed(client, None).await?;
    wait_for(
        "builds gone with their configs",
        Duration::from_secs(60),
        || async {
            Ok(builds
                .list(&pool_builds())
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    eprintln!("ok: deleting the MachineOSConfigs removed their MachineConfigs and builds");
    Ok(())
}

/// 7. The audit log has requests of Strata's ServiceAccounts, none refused.
fn no_request_of_strata_refused(cluster: &Cluster) -> Result<()> {
    let checked = assert_no_forbidden_requests(cluster)?;
    ensure!(
        checked > 0,
        "the audit log has no request of Strata's ServiceAccounts"
    );
    eprintln!("ok: {checked} requests of Strata's ServiceAccounts in the audit log, none refused");
    Ok(())
}
