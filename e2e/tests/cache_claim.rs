//! The cache claim kept in bounds by the builds themselves, on the real cluster: the controller is
//! redeployed with `--cache-claim` and a minimum free space no disk has, so every build that is
//! alone on the claim empties it before pulling. Checks, from the claim's own files on the node:
//! - a build alone empties what the previous build left (its image is gone, the new one is there);
//! - two builds at once both succeed: one never empties the storage under the other;
//! - every build's registration is gone when it ended;
//! - each pull step says what it did (its log is read while the builder pod exists).
//!
//! Redeploys the controller (with the claim, then without), so it has its own test binary.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use strata_crds::contract::builder_pod;
use strata_e2e::cache_claim;
use strata_e2e::deployed::{
    NAMESPACE, apply_config, create_pool, create_push_secret, current_build, delete_config,
    delete_pool, machine_os_config, pinned_by,
};
use strata_e2e::measure::deploy::{DeployOptions, deploy};
use strata_e2e::{Cluster, needs};

const CLAIM: &str = "e2e-cache";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The image names containers/storage records on the claim (its overlay driver's image list).
fn stored_names(dir: &Path) -> Result<String> {
    let path = dir.join("overlay-images/images.json");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
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
    let build_of = |pool: &'static str, fragment: &'static str| async move {
        let config = machine_os_config(cluster, pool, push_secret, fragment)?;
        apply_config(client, &config).await?;
        anyhow::Ok(config)
    };

    // One build after the other: the second finds the first's image and, alone, empties it all.
    let [a, b] = pools;
    build_of(a, "RUN echo a > /etc/e2e-cache\n").await?;
    let first = current_build(client, a, None).await?;
    pinned_by(client, BUILD_TIMEOUT, a, &first).await?;
    ensure!(
        stored_names(dir)?.contains(&first),
        "the first build's image is not on the claim"
    );
    build_of(b, "RUN echo b > /etc/e2e-cache\n").await?;
    let second = current_build(client, b, None).await?;
    let said = pull_log(cluster, client, &second).await?;
    ensure!(
        storage_action(&said) == "emptied",
        "the pull step alone on a claim short of space did not say it emptied it:\n{said}"
    );
    pinned_by(client, BUILD_TIMEOUT, b, &second).await?;
    let names = stored_names(dir)?;
    ensure!(
        names.contains(&second) && !names.contains(&first),
        "the second build, alone on a claim short of space, did not empty it: {names}"
    );
    eprintln!("ok: a build alone on the claim emptied what the build before it left");

    // Two builds at once: whichever empties the claim does so before the other registers, or
    // leaves it as it is; both succeed.
    build_of(a, "RUN echo a2 > /etc/e2e-cache\n").await?;
    build_of(b, "RUN echo b2 > /etc/e2e-cache\n").await?;
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

    let left = registered(dir)?;
    ensure!(left.is_empty(), "registrations left on the claim: {left:?}");
    eprintln!("ok: no registration left once the builds ended");

    for pool in pools {
        delete_config(client, pool).await?;
        delete_pool(client, pool).await;
    }
    Ok(())
}
