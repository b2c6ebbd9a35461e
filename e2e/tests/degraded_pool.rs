//! A degraded pool holds Strata back, as it holds back the MCO's own build controller
//! (`shouldPreventBuildDueToDegradation`): the controller deployed from `manifests/`, a pool the
//! MCO stand-in reports `NodeDegraded` or `RenderDegraded` (its annotations, worded as the MCO's
//! node and render controllers word them). While it is degraded, a new MachineOSConfig gets no
//! build and no Job, `WaitingForPool` says why with a Warning Event (named after the pool's
//! condition) and the metric
//! `strata_config_waiting_for_pool`; once it recovers the build runs and is pinned. A build that
//! finishes while the pool is degraded is pinned only once it recovers; the rebuild annotation
//! waits too. On the small release base; the pool and the config are the test's own.

use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, builder_jobs, config_condition, create_pool, create_push_secret,
    current_build, delete_config, delete_pool, ended_build, expect_event, leader_metrics,
    machine_configs, machine_os_config, pinned_by, pools, running_builder_pod, with_release_base,
};
use strata_e2e::mco::{NODE_DEGRADED_ANNOTATION, RENDER_DEGRADED_ANNOTATION};
use strata_e2e::util::{install_strata_crds, wait_for};
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-degraded";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// What the degraded machine's node says (the MCO quotes it in NodeDegraded's message).
const NODE_SAYS: &str = "unexpected on-disk state validating against rendered-e2e-degraded";
const RENDER_ERROR: &str = "ignition file /etc/e2e is both a file and a directory";

fn builds_of_pool() -> ListParams {
    ListParams::default().labels(&format!("strata.dev/machine-os-config={POOL}"))
}

/// `(status, reason, message)` of the MachineOSConfig's condition `ty`, if it has one.
async fn condition(
    configs: &Api<MachineOSConfig>,
    ty: &str,
) -> Result<Option<(String, String, String)>> {
    config_condition(configs, POOL, ty).await
}

/// Sets (or with `None` removes) the stand-in's fault annotation `key` on the pool, and waits
/// until the pool's status reports it as the MCO would (`pool_condition` True or False).
async fn set_fault(
    client: &kube::Client,
    key: &str,
    value: Option<&str>,
    pool_condition: &str,
) -> Result<()> {
    let api = pools(client);
    api.patch(
        POOL,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
    )
    .await?;
    let want = if value.is_some() { "True" } else { "False" };
    wait_for(
        &format!("pool {POOL} {pool_condition}={want}"),
        Duration::from_secs(30),
        || async {
            let pool = api.get(POOL).await?;
            let reported = pool.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == pool_condition && c["status"] == want);
            Ok(reported.then_some(()))
        },
    )
    .await
}

/// Waits until WaitingForPool is `status` with `reason` and a message holding every `needle`;
/// returns the message.
async fn waiting_for_pool(
    configs: &Api<MachineOSConfig>,
    status: &str,
    reason: &str,
    needles: &[&str],
) -> Result<String> {
    wait_for(
        &format!("WaitingForPool {status}/{reason} with {needles:?}"),
        Duration::from_secs(60),
        || async {
            Ok(condition(configs, "WaitingForPool")
                .await?
                .filter(|(s, r, m)| {
                    s == status && r == reason && needles.iter().all(|n| m.contains(n))
                })
                .map(|(_, _, m)| m))
        },
    )
    .await
}

/// The leader's sample of `strata_config_waiting_for_pool` for this config, if any.
async fn waiting_sample(client: &kube::Client) -> Result<Option<String>> {
    let text = leader_metrics(client).await?;
    let prefix = format!("strata_config_waiting_for_pool{{config=\"{POOL}\",pool=\"{POOL}\"");
    Ok(text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_string))
}

/// No build and no Job of the pool exist, and none appears for `settle`.
async fn nothing_built(client: &kube::Client, settle: Duration) -> Result<()> {
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        let made = builds.list(&builds_of_pool()).await?.items.len();
        let jobs = builder_jobs(client)
            .list(&builds_of_pool())
            .await?
            .items
            .len();
        ensure!(
            made == 0 && jobs == 0,
            "{made} builds and {jobs} Jobs while the pool is degraded"
        );
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_degraded_pool_holds_builds_and_pins_until_it_recovers() -> Result<()> {
    let test = "a_degraded_pool_holds_builds_and_pins_until_it_recovers";
    let (cluster, _builder) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    with_release_base(&client, &cluster.os_base_image, || async {
        install_strata_crds(&client).await?;
        delete_config(&client, POOL).await?;
        delete_pool(&client, POOL).await;
        create_pool(&client, POOL).await?;
        let push_secret = format!("{POOL}-push");
        create_push_secret(&client, &push_secret).await?;
        let one = machine_os_config(
            cluster,
            POOL,
            &push_secret,
            "RUN echo one > /etc/e2e-degraded\n",
        )?;
        let image = no_build_until_the_pool_recovers(&client, &one).await?;
        // Long enough for the pool to degrade while it runs, and new on every run: the cache
        // claim keeps an earlier run's layers, and a cached RUN step takes no time.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let two = machine_os_config(
            cluster,
            POOL,
            &push_secret,
            &format!("RUN sleep 20 && echo two-{nonce} > /etc/e2e-degraded\n"),
        )?;
        no_pin_until_the_pool_recovers(&client, &image, &two).await?;
        no_rebuild_until_the_pool_recovers(&client).await?;
        delete_config(&client, POOL).await?;
        delete_pool(&client, POOL).await;
        let _ = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
            .delete(&push_secret, &Default::default())
            .await;
        let sample = waiting_sample(&client).await?;
        ensure!(
            sample.is_none(),
            "series left after the config went: {sample:?}"
        );
        Ok(())
    })
    .await
}

/// 1. NodeDegraded, then RenderDegraded: a new MachineOSConfig gets no build and no Job;
///    WaitingForPool, its Events and the metric follow the pool's condition. The pool recovers:
///    the build runs and is pinned. Returns the pinned image.
async fn no_build_until_the_pool_recovers(
    client: &kube::Client,
    config: &MachineOSConfig,
) -> Result<String> {
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    set_fault(
        client,
        NODE_DEGRADED_ANNOTATION,
        Some(NODE_SAYS),
        "NodeDegraded",
    )
    .await?;
    apply_config(client, config).await?;
    let message = waiting_for_pool(
        &configs,
        "True",
        "NodeDegraded",
        &[
            "of the current inputs",
            NODE_SAYS,
            "1 nodes are reporting degraded status on sync",
        ],
    )
    .await?;
    eprintln!("ok: NodeDegraded → WaitingForPool: {message}");
    let (building, reason, _) = condition(&configs, "Building").await?.unwrap_or_default();
    ensure!(
        building == "False" && reason == "WaitingForPool",
        "Building {building}/{reason}"
    );
    ensure!(
        configs
            .get(POOL)
            .await?
            .status
            .unwrap_or_default()
            .machine_os_build
            .is_none(),
        "status names a build that was not created"
    );
    expect_event(client, POOL, "NodeDegraded", NODE_SAYS).await?;
    let sample = waiting_sample(client).await?;
    ensure!(
        sample.as_deref()
            == Some(&*format!(
                "strata_config_waiting_for_pool{{config=\"{POOL}\",pool=\"{POOL}\",reason=\"NodeDegraded\"}} 1"
            )),
        "metric: {sample:?}"
    );
    nothing_built(client, Duration::from_secs(10)).await?;

    // Another condition holds it now.
    set_fault(
        client,
        RENDER_DEGRADED_ANNOTATION,
        Some(RENDER_ERROR),
        "RenderDegraded",
    )
    .await?;
    set_fault(client, NODE_DEGRADED_ANNOTATION, None, "NodeDegraded").await?;
    waiting_for_pool(&configs, "True", "RenderDegraded", &[RENDER_ERROR]).await?;
    expect_event(
        client,
        POOL,
        "RenderDegraded",
        &format!("Failed to render configuration for pool {POOL}: {RENDER_ERROR}"),
    )
    .await?;
    ensure!(
        waiting_sample(client)
            .await?
            .is_some_and(|s| s.contains("reason=\"RenderDegraded\"")),
        "the metric does not follow the pool's condition"
    );
    nothing_built(client, Duration::from_secs(5)).await?;
    eprintln!("ok: RenderDegraded → WaitingForPool/RenderDegraded, a second Event, still no build");

    // Recovered: the build runs and is pinned.
    set_fault(client, RENDER_DEGRADED_ANNOTATION, None, "RenderDegraded").await?;
    waiting_for_pool(&configs, "False", "PoolRecovered", &[]).await?;
    expect_event(client, POOL, "PoolRecovered", "no longer degraded").await?;
    let build = current_build(client, POOL, None).await?;
    let image = pinned_by(client, BUILD_TIMEOUT, POOL, &build).await?;
    ensure!(
        waiting_sample(client).await?.is_none(),
        "the wait's series stays"
    );
    eprintln!("ok: the pool recovered → {build} built and pinned: {image}");
    Ok(image)
}

/// 2. A build running when the pool degrades goes on, but its image is pinned only once the pool
///    recovers.
async fn no_pin_until_the_pool_recovers(
    client: &kube::Client,
    image: &str,
    config: &MachineOSConfig,
) -> Result<()> {
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let first = configs
        .get(POOL)
        .await?
        .status
        .unwrap_or_default()
        .machine_os_build;
    apply_config(client, config).await?;
    let second = current_build(client, POOL, first.as_ref().map(|b| b.name.as_str())).await?;
    running_builder_pod(client, &second).await?;
    set_fault(
        client,
        NODE_DEGRADED_ANNOTATION,
        Some(NODE_SAYS),
        "NodeDegraded",
    )
    .await?;
    ensure!(
        !builds
            .get(&second)
            .await?
            .phase()
            .is_some_and(BuildPhase::is_terminal),
        "{second} ended before the pool reported NodeDegraded: the test proves nothing"
    );
    let built = ended_build(client, &second, BUILD_TIMEOUT).await?;
    ensure!(
        built.phase() == Some(BuildPhase::Succeeded),
        "{second} ended {:?}",
        built.phase()
    );
    let new_image = built
        .status
        .and_then(|s| s.digested_image_push_spec)
        .unwrap_or_default();
    let message =
        waiting_for_pool(&configs, "True", "NodeDegraded", &["pinning", &new_image]).await?;
    let (ready, reason, ready_message) = condition(&configs, "Ready").await?.unwrap_or_default();
    ensure!(
        ready == "False" && reason == "WaitingForPool" && ready_message.contains(image),
        "Ready {ready}/{reason}: {ready_message}"
    );
    // Nothing pinned for a while: the MachineConfig and the status keep the first image.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mc = machine_configs(client)
        .get(&format!("zz-strata-2-{POOL}"))
        .await?;
    ensure!(
        mc.data["spec"]["osImageURL"] == Value::String(image.to_string()),
        "pinned while degraded: {}",
        mc.data["spec"]["osImageURL"]
    );
    let status = configs.get(POOL).await?.status.unwrap_or_default();
    ensure!(status.current_image_pull_spec.as_deref() == Some(image));
    eprintln!("ok: {second} succeeded while the pool is NodeDegraded, not pinned: {message}");

    set_fault(client, NODE_DEGRADED_ANNOTATION, None, "NodeDegraded").await?;
    let pinned = pinned_by(client, Duration::from_secs(60), POOL, &second).await?;
    ensure!(pinned == new_image && pinned != image, "pinned {pinned}");
    expect_event(client, POOL, "PoolPinned", &new_image).await?;
    eprintln!("ok: the pool recovered → {new_image} pinned");
    Ok(())
}

/// 3. The rebuild annotation waits while the pool is degraded (the build is kept), and rebuilds
///    once it recovers.
async fn no_rebuild_until_the_pool_recovers(client: &kube::Client) -> Result<()> {
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let current = configs
        .get(POOL)
        .await?
        .status
        .unwrap_or_default()
        .machine_os_build
        .map(|b| b.name)
        .unwrap_or_default();
    let created = builds.get(&current).await?.metadata.creation_timestamp;
    set_fault(
        client,
        RENDER_DEGRADED_ANNOTATION,
        Some(RENDER_ERROR),
        "RenderDegraded",
    )
    .await?;
    configs
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"strata.dev/rebuild": "e2e"}}})),
        )
        .await?;
    waiting_for_pool(
        &configs,
        "True",
        "RenderDegraded",
        &["rebuilding", &current],
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let config = configs.get(POOL).await?;
    ensure!(
        config
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("strata.dev/rebuild"),
        "the rebuild annotation went while the pool is degraded"
    );
    ensure!(
        builds.get(&current).await?.metadata.creation_timestamp == created,
        "{current} was rebuilt while the pool is degraded"
    );
    eprintln!("ok: RenderDegraded → the rebuild of {current} waits, its annotation kept");
    set_fault(client, RENDER_DEGRADED_ANNOTATION, None, "RenderDegraded").await?;
    expect_event(
        client,
        POOL,
        "Rebuilding",
        &format!("building {current} again"),
    )
    .await?;
    eprintln!("ok: the pool recovered → {current} rebuilt");
    Ok(())
}
