//! A pruned build's image is deleted from the registry (`--registry-cleanup`, on by default), on
//! the real cluster and its real registry: the controller is redeployed with `--build-history=1`;
//! three builds of one pool, each pinned in turn. Once the third is pinned, the first build is
//! beyond the history: the build goes, its image's manifest is gone from the registry (an Event
//! `ImageDeleted` says so), and the images of the kept build and of the pin are still served.
//! Then the MachineOSConfig is deleted: the kept build's image goes with it, the pinned one (which
//! the pool's machine runs) stays.
//!
//! Redeploys the controller (with the short history, then as it was), so it has its own test
//! binary.

use std::time::Duration;

use anyhow::{Result, ensure};
use kube::api::Api;
use strata_crds::MachineOSBuild;
use strata_e2e::deployed::{
    apply_config, create_pool, create_push_secret, current_build, delete_config, delete_pool,
    expect_event, machine_configs, machine_os_config, manifest_status, pinned_by, pools,
};
use strata_e2e::measure::deploy::{DeployOptions, deploy};
use strata_e2e::util::wait_for;
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-cleanup";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test]
async fn a_pruned_builds_image_is_deleted_from_the_registry_and_the_kept_ones_stay() -> Result<()> {
    let test = "a_pruned_builds_image_is_deleted_from_the_registry_and_the_kept_ones_stay";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let short_history = DeployOptions {
        controller_args: vec!["--build-history=1".into()],
        ..DeployOptions::default()
    };
    deploy(cluster, &short_history).await?;
    let result = check(cluster, &client).await;
    delete_config(&client, POOL).await?;
    delete_pool(&client, POOL).await;
    deploy(cluster, &DeployOptions::default()).await?;
    result
}

async fn check(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let push_secret = "e2e-cleanup-push";
    create_push_secret(client, push_secret).await?;
    delete_config(client, POOL).await?;
    create_pool(client, POOL).await?;
    let mut builds: Vec<(String, String)> = Vec::new();
    for n in 1..=3 {
        let config = machine_os_config(
            cluster,
            POOL,
            push_secret,
            &format!("RUN echo {n} > /etc/e2e-cleanup\n"),
        )?;
        apply_config(client, &config).await?;
        let previous = builds.last().map(|(b, _)| b.clone());
        let build = current_build(client, POOL, previous.as_deref()).await?;
        let image = pinned_by(client, BUILD_TIMEOUT, POOL, &build).await?;
        ensure!(
            manifest_status(&image)? == 200,
            "the registry does not serve {image} just pushed"
        );
        builds.push((build, image));
    }
    let [(first, first_image), (second, second_image), (_, pinned)] =
        <[(String, String); 3]>::try_from(builds).map_err(|_| anyhow::anyhow!("three builds"))?;

    let api: Api<MachineOSBuild> = Api::all(client.clone());
    wait_for(
        &format!("{first} pruned and {first_image} deleted"),
        // The build waits while the pool's (counted) machine still runs or moves to its image.
        Duration::from_secs(300),
        || async {
            let gone = api.get_opt(&first).await?.is_none();
            Ok((gone && manifest_status(&first_image)? == 404).then_some(()))
        },
    )
    .await?;
    expect_event(client, POOL, "ImageDeleted", &first_image).await?;
    eprintln!("ok: the pruned build {first} went and its image {first_image} with it");
    ensure!(
        api.get_opt(&second).await?.is_some(),
        "the build the history keeps ({second}) was deleted"
    );
    for kept in [&second_image, &pinned] {
        ensure!(
            manifest_status(kept)? == 200,
            "{kept} (a kept build's, or the pin) is gone from the registry"
        );
    }
    eprintln!("ok: the kept build's image and the pinned image are still served");

    // The config deleted: its builds go, and the kept build's image with them; the pinned image
    // stays (the pool's machine runs it until the pool rolled back to the stock image). Once the
    // pool runs the pin: an image the machines still run or move to at deletion stays for good.
    // Updated to the rendered config that carries the pin: a pool Updated on the config before
    // (the render controller not yet past the third pin) still moves to it, and the second image
    // would be kept as one the machines run (seen once in CI at 82661d4).
    wait_for(
        &format!("pool {POOL} updated to its pin"),
        Duration::from_secs(120),
        || async {
            let pool = pools(client).get(POOL).await?;
            let target = pool.data["spec"]["configuration"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let updated = pool.data["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Updated" && c["status"] == "True")
                });
            let rendered = machine_configs(client).get_opt(&target).await?;
            let renders_pin = rendered
                .is_some_and(|mc| mc.data["spec"]["osImageURL"].as_str() == Some(pinned.as_str()));
            Ok((updated
                && renders_pin
                && pool.data["status"]["configuration"]["name"].as_str() == Some(target.as_str()))
            .then_some(()))
        },
    )
    .await?;
    delete_config(client, POOL).await?;
    wait_for(
        &format!("{second_image} deleted with its config"),
        Duration::from_secs(60),
        || async { Ok((manifest_status(&second_image)? == 404).then_some(())) },
    )
    .await?;
    expect_event(
        client,
        POOL,
        "ImageDeleted",
        "of the deleted MachineOSConfig",
    )
    .await?;
    ensure!(
        manifest_status(&pinned)? == 200,
        "{pinned}, which the pool's machine runs, is gone with its config"
    );
    eprintln!("ok: deleting the config deleted {second_image}, and kept {pinned} the pool runs");
    Ok(())
}
