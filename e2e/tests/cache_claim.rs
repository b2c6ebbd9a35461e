//! The cache claim kept in bounds by the builds themselves, on the real cluster: the controller is
//! redeployed with `--cache-claim` and a minimum free space no disk has, so every build that is
//! alone on the claim empties it before pulling. Checks, from the claim's own files on the node:
//! - a build alone empties what the previous build left (its image is gone, the new one is there);
//! - two builds at once both succeed: one never empties the storage under the other;
//! - every build's registration is gone when it ended;
//! - each pull step says what it did (its log is read while the builder pod exists);
//! - each MachineOSConfig's builds have a store of their own on the claim: a build of one never
//!   holds another's image, and a fragment naming another pool's image by its ID (through a
//!   stage `ARG`) is refused with its line before any build;
//! - a build whose RUN step writes more than its config's store may hold
//!   (`--cache-claim-store-quota-gib`) is stopped with `StoreQuotaExceeded`, the pool keeping its
//!   image.
//!
//! Redeploys the controller (with the claim, then without), so it has its own test binary.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use strata_crds::MachineOSConfig;
use strata_crds::contract::builder_pod;
use strata_e2e::cache_claim;
use strata_e2e::deployed::{
    NAMESPACE, apply_config, create_pool, create_push_secret, current_build, delete_config,
    delete_pool, machine_os_config, pinned_by, wait_for_condition,
};
use strata_e2e::measure::deploy::{DeployOptions, deploy};
use strata_e2e::{Cluster, needs};

const CLAIM: &str = "e2e-cache";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// The store quota the controller is redeployed with.
const QUOTA_GIB: u64 = 1;

/// The store of MachineOSConfig `config` on the claim.
fn store(dir: &Path, config: &str) -> std::path::PathBuf {
    dir.join(builder_pod::CLAIM_STORES).join(config)
}

/// The image names containers/storage records in a store (its overlay driver's image list);
/// empty for a store not made yet.
fn stored_names(store: &Path) -> Result<String> {
    let path = store.join("overlay-images/images.json");
    match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other.with_context(|| format!("reading {}", path.display())),
    }
}

/// The builds registered on the claim (their markers). The directory must exist: every build
/// on the claim registered there.
fn registered(dir: &Path) -> Result<Vec<String>> {
    let markers = dir.join("strata-builds");
    let entries =
        std::fs::read_dir(&markers).with_context(|| format!("reading {}", markers.display()))?;
    Ok(entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// The image ID (its config's digest, 64 hex) of `image` (`host:port/repo@sha256:…`) in the local
/// plain-HTTP registry: what another pool's fragment could learn and name.
fn image_id(image: &str) -> Result<String> {
    let (name, digest) = image.split_once('@').context("not pinned by digest")?;
    let (host, repo) = name.split_once('/').context("no registry host")?;
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!("http://{host}/v2/{repo}/manifests/{digest}"))
        .output()?;
    ensure!(out.status.success(), "GET the manifest of {image} failed");
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let config = manifest["config"]["digest"].as_str().context("no config")?;
    Ok(config.trim_start_matches("sha256:").to_string())
}

/// The pull step's log of build `build`, once that step ended.
async fn pull_log(cluster: &Cluster, client: &kube::Client, build: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = format!("strata.dev/machine-os-build={build}");
    let pod = strata_e2e::util::wait_for(
        &format!("the pull step of {build} ended"),
        Duration::from_secs(120),
        || async {
            let list = pods.list(&ListParams::default().labels(&selector)).await?;
            Ok(list.items.into_iter().find_map(|p| {
                let pulled = p.status.as_ref().is_some_and(|s| {
                    s.init_container_statuses.iter().flatten().any(|c| {
                        c.name == builder_pod::PULL
                            && c.state.as_ref().is_some_and(|s| s.terminated.is_some())
                    })
                });
                pulled.then(|| p.metadata.name.clone().unwrap_or_default())
            }))
        },
    )
    .await?;
    let out = cluster
        .kubectl()
        .args(["-n", NAMESPACE, "logs", &pod, "-c", builder_pod::PULL])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the pull step did about the shared storage, from its log.
fn storage_action(log: &str) -> &'static str {
    if log.contains("no other build uses it: emptying it") {
        "emptied"
    } else if log.contains("other build(s) use it: not emptied") {
        "left (busy)"
    } else {
        "nothing"
    }
}

#[tokio::test]
async fn builds_keep_the_shared_claim_in_bounds_without_breaking_each_other() -> Result<()> {
    let test = "builds_keep_the_shared_claim_in_bounds_without_breaking_each_other";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let dir = cluster.dir.join("e2e-cache-claim");
    cache_claim::create(&client, CLAIM, &dir).await?;
    let with_claim = DeployOptions {
        controller_args: vec![
            format!("--cache-claim={CLAIM}"),
            // More than any disk has: a build alone on the claim always empties it.
            "--cache-claim-min-free-gib=1000000".into(),
            // Far more than a build on the test base writes, far less than the quota probe.
            format!("--cache-claim-store-quota-gib={QUOTA_GIB}"),
        ],
        ..DeployOptions::default()
    };
    deploy(cluster, &with_claim).await?;
    let result = check(cluster, &client, &dir).await;
    deploy(cluster, &DeployOptions::default()).await?;
    cache_claim::remove(&client, CLAIM, &dir).await;
    result
}

async fn check(cluster: &Cluster, client: &kube::Client, dir: &Path) -> Result<()> {
    let push_secret = "e2e-cache-push";
    create_push_secret(client, push_secret).await?;
    let pools = ["e2e-cache-a", "e2e-cache-b"];
    for pool in pools {
        delete_config(client, pool).await?;
        create_pool(client, pool).await?;
    }
    let build_of = |pool: &'static str, fragment: String| async move {
        let config = machine_os_config(cluster, pool, push_secret, &fragment)?;
        apply_config(client, &config).await?;
        anyhow::Ok(config)
    };

    // One build after the other: the second, alone on a claim short of space, empties the
    // first's store (no build uses it) and its own.
    let [a, b] = pools;
    build_of(a, "RUN echo a > /etc/e2e-cache\n".into()).await?;
    let first = current_build(client, a, None).await?;
    let first_image = pinned_by(client, BUILD_TIMEOUT, a, &first).await?;
    ensure!(
        stored_names(&store(dir, a))?.contains(&first),
        "the first build's image is not in its config's store on the claim"
    );
    build_of(b, "RUN echo b > /etc/e2e-cache\n".into()).await?;
    let second = current_build(client, b, None).await?;
    let said = pull_log(cluster, client, &second).await?;
    ensure!(
        storage_action(&said) == "emptied"
            && said.contains(&format!(
                "emptying the idle store {}/",
                builder_pod::CLAIM_DIR
            )),
        "the pull step alone on a claim short of space did not say it emptied the idle store \
         and its own:\n{said}"
    );
    pinned_by(client, BUILD_TIMEOUT, b, &second).await?;
    let (names_a, names_b) = (stored_names(&store(dir, a))?, stored_names(&store(dir, b))?);
    ensure!(
        names_b.contains(&second) && !names_b.contains(&first) && !names_a.contains(&first),
        "the second build, alone on a claim short of space, did not empty it: {a}: {names_a}; \
         {b}: {names_b}"
    );
    eprintln!("ok: a build alone on the claim emptied what the build before it left");

    // Two builds at once: whichever empties the claim does so before the other registers, or
    // leaves it as it is; both succeed.
    build_of(a, "RUN echo a2 > /etc/e2e-cache\n".into()).await?;
    build_of(b, "RUN echo b2 > /etc/e2e-cache\n".into()).await?;
    let third = current_build(client, a, Some(&first)).await?;
    let fourth = current_build(client, b, Some(&second)).await?;
    let (third_log, fourth_log) = futures::future::try_join(
        pull_log(cluster, client, &third),
        pull_log(cluster, client, &fourth),
    )
    .await?;
    for log in [&third_log, &fourth_log] {
        ensure!(
            storage_action(log) != "nothing",
            "a pull step short of space said nothing of the shared storage:\n{log}"
        );
    }
    eprintln!(
        "ok: at once, the pull steps: {} and {}",
        storage_action(&third_log),
        storage_action(&fourth_log)
    );
    pinned_by(client, BUILD_TIMEOUT, a, &third).await?;
    pinned_by(client, BUILD_TIMEOUT, b, &fourth).await?;
    eprintln!("ok: two builds at once on the shared claim both succeeded");

    for pool in pools {
        let left = registered(&store(dir, pool))?;
        ensure!(left.is_empty(), "registrations left on the claim: {left:?}");
    }
    eprintln!("ok: no registration left once the builds ended");

    // A fragment of b naming a's image by its ID through a stage ARG: a's image is not in b's
    // store, and the controller refuses the reference before any build (the build step would
    // look a bare ID up in its storage, where the pull step never fetched it).
    let third_image = pinned_by(client, BUILD_TIMEOUT, a, &third).await?;
    let names_b = stored_names(&store(dir, b))?;
    ensure!(
        !names_b.contains(&third) && !names_b.contains(&first),
        "b's store holds a's images: {names_b}"
    );
    let id = image_id(&third_image)?;
    build_of(
        b,
        format!("ARG X={id}\nCOPY --from=$X /etc/e2e-cache /etc/e2e-loot\n"),
    )
    .await?;
    let refusal =
        wait_for_condition(client, b, "Degraded", ("True", "InvalidContainerfile")).await?;
    ensure!(
        refusal.contains("line 2:")
            && refusal.contains(&id)
            && refusal.contains("local image IDs are not pulled"),
        "{b}'s reference to {a}'s image ID was refused without its line and why: {refusal}"
    );
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let still = configs
        .get(b)
        .await?
        .status
        .and_then(|s| s.machine_os_build);
    ensure!(
        still.as_ref().map(|r| r.name.as_str()) == Some(fourth.as_str()),
        "a build of {b} was made for a fragment naming {a}'s image ID: {still:?}"
    );
    eprintln!("ok: {b} could not name {a}'s image {first_image} by its ID: {refusal}");

    // A RUN step that writes more than the config's store may hold: stopped, the pool keeps
    // its image.
    build_of(
        a,
        format!(
            "RUN dd if=/dev/zero of=/e2e-fill bs=1M count={} && sleep 120\n",
            QUOTA_GIB * 1024 + 512
        ),
    )
    .await?;
    let filler = current_build(client, a, Some(&third)).await?;
    let ended = strata_e2e::deployed::ended_build(client, &filler, BUILD_TIMEOUT).await?;
    let failure = ended
        .status
        .as_ref()
        .and_then(|s| s.failure.clone())
        .unwrap_or_default();
    ensure!(
        ended.phase() == Some(strata_crds::BuildPhase::Failed)
            && failure.reason == "StoreQuotaExceeded",
        "a build writing {} GiB into a store with a {QUOTA_GIB} GiB quota was not stopped: {:?}",
        QUOTA_GIB as f64 + 0.5,
        ended.status
    );
    let still = pinned_by(client, BUILD_TIMEOUT, a, &third).await?;
    ensure!(
        still == third_image,
        "{a} lost its image to the stopped build"
    );
    eprintln!("ok: {a}'s build past its store quota: {}", failure.message);

    for pool in pools {
        delete_config(client, pool).await?;
        delete_pool(client, pool).await;
    }
    Ok(())
}
