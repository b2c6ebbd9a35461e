//! The controller as users run it — deployed in the cluster from `manifests/`, as its own
//! ServiceAccount — against the real cluster: a MachineOSConfig becomes a builder pod running
//! buildah on the real kubelet, an image in the real registry and a MachineConfig pinning the pool
//! by digest. A fragment change builds a new digest; the rebuild annotation rebuilds; a new release
//! base rebuilds every pool, and the old base again reuses the old builds without building; a bad
//! step fails without touching the pool; deleting the MachineOSConfig removes the MachineConfig.
//! Each step checks the exact conditions, Events and objects. One test: the release base is
//! cluster-wide, so nothing else may build while it changes.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::Cluster;
use strata_e2e::deployed::{
    NAMESPACE, apply_config, assert_no_forbidden_requests, builder_jobs, create_pool,
    create_pool_with, create_push_secret, current_build, delete_config, delete_pool, ended_build,
    expect_event, machine_configs, machine_os_config, pinned_by, pools,
};
use strata_e2e::mco::ROLLOUTS_ANNOTATION;
use strata_e2e::util::{install_strata_crds, wait_for};

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
    let status = configs.get(name).await?.status.unwrap_or_default();
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == ty)
        .with_context(|| format!("{name} has no {ty} condition"))?;
    Ok((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The Jobs made for build `build` (owned by it; its label value may be cut to 63 characters).
async fn job_count(client: &kube::Client, build: &str) -> Result<usize> {
    Ok(builder_jobs(client)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.name == build)
        })
        .count())
}

#[tokio::test]
async fn deployed_controller_builds_pins_rebuilds_and_cleans_up() -> Result<()> {
    let test = "deployed_controller_builds_pins_rebuilds_and_cleans_up";
    let Some((cluster, _builder)) = Cluster::with_deployed_controller_or_skip(test) else {
        return Ok(());
    };
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let mcs = machine_configs(&client);
    let push_secret = format!("{POOL}-push");
    for name in [POOL, SIDE_POOL] {
        delete_config(&client, name).await?;
    }
    // POOL has two machines and takes the MCO's own worker configuration too (00-worker, which a
    // release rewrites), as a custom pool does: an upgrade changes more than the image.
    create_pool_with(
        &client,
        POOL,
        json!({"matchExpressions": [{"key": "machineconfiguration.openshift.io/role", "operator": "In", "values": ["worker", POOL]}]}),
        2,
    )
    .await?;
    create_pool(&client, SIDE_POOL).await?;
    let _ = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .delete(&push_secret, &Default::default())
        .await;

    // 0. Without its push Secret: Degraded/SecretUnavailable, no build and no Job; creating the
    //    Secret (a legacy .dockercfg one) starts the build at once.
    let fragment_v1 = "RUN echo layered-by-strata > /etc/strata-e2e\n";
    apply_config(
        &client,
        &machine_os_config(cluster, POOL, &push_secret, fragment_v1)?,
    )
    .await?;
    wait_for(
        "Degraded SecretUnavailable",
        Duration::from_secs(60),
        || async {
            let (status, reason, message) = condition(&configs, POOL, "Degraded").await?;
            Ok((status == "True" && reason == "SecretUnavailable").then_some(message))
        },
    )
    .await
    .map(|m| eprintln!("ok: no push Secret → Degraded/SecretUnavailable: {m}"))?;
    let mine = format!("strata.dev/machine-os-config={POOL}");
    ensure!(
        builds
            .list(&ListParams::default().labels(&mine))
            .await?
            .items
            .is_empty(),
        "a build exists without a push Secret"
    );
    ensure!(
        builder_jobs(&client)
            .list(&ListParams::default().labels(&mine))
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
            let (status, reason, message) = condition(&configs, POOL, "Degraded").await?;
            Ok((status == "True" && reason == "SecretNotAllowed").then_some(message))
        },
    )
    .await
    .map(|m| eprintln!("ok: a Secret without the opt-in → Degraded/SecretNotAllowed: {m}"))?;
    ensure!(
        builds
            .list(&ListParams::default().labels(&mine))
            .await?
            .items
            .is_empty(),
        "a build exists with a Secret that did not opt in"
    );
    create_push_secret(&client, &push_secret).await?;

    // 1. Build → digest verified → MachineConfig zz-strata-2-<pool> pins the pool by digest.
    let first = current_build(&client, POOL, None).await?;
    let image_v1 = pinned_by(&client, BUILD_TIMEOUT, POOL, &first).await?;
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
        let got = condition(&configs, POOL, ty).await?;
        ensure!(got.0 == status && got.1 == reason, "{ty}: {got:?}");
    }
    let (_, _, ready) = condition(&configs, POOL, "Ready").await?;
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
        expect_event(&client, POOL, reason, &needle).await?;
    }
    // The registry serves that digest.
    let (repo, digest) = image_v1.split_once('@').context("no digest")?;
    let path = repo.split_once('/').map(|x| x.1).unwrap_or_default();
    let url = format!("http://{}/v2/{path}/manifests/{digest}", cluster.registry);
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
    // Per-build Secrets are gone once the build ended; the Containerfile ConfigMap is kept.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for(
        "per-build credentials Secret deleted",
        Duration::from_secs(30),
        || async {
            Ok(secrets
                .get_opt(&format!("credentials-{first}"))
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get(&format!("containerfile-{first}"))
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
    eprintln!("ok: {POOL} pinned to {image_v1} by {first}, with its Events and conditions");

    // 2. A fragment change → a new build, a new digest, the MachineConfig follows.
    let fragment_v2 = "RUN echo layered-by-strata-v2 > /etc/strata-e2e\n";
    apply_config(
        &client,
        &machine_os_config(cluster, POOL, &push_secret, fragment_v2)?,
    )
    .await?;
    let second = current_build(&client, POOL, Some(&first)).await?;
    let image_v2 = pinned_by(&client, BUILD_TIMEOUT, POOL, &second).await?;
    ensure!(
        image_v2 != image_v1,
        "a new fragment kept the digest {image_v1}"
    );
    eprintln!("ok: fragment change → {second} → {image_v2}");

    // 3. The rebuild annotation builds the same inputs again under the same name, then goes.
    let before = builds
        .get(&second)
        .await?
        .metadata
        .creation_timestamp
        .context("no creationTimestamp")?;
    configs
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"strata.dev/rebuild": "e2e"}}})),
        )
        .await?;
    wait_for("the rebuild to succeed", BUILD_TIMEOUT, || async {
        let config = configs.get(POOL).await?;
        let annotated = config
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("strata.dev/rebuild");
        let Some(b) = builds.get_opt(&second).await? else {
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
        &client,
        POOL,
        "Rebuilding",
        &format!("building {second} again: rebuild requested"),
    )
    .await?;
    eprintln!("ok: rebuild annotation rebuilt {second} and was removed");
    let image_v2 = pinned_by(&client, BUILD_TIMEOUT, POOL, &second).await?;

    // 4. A new release base rebuilds every pool; the old base again reuses the old builds.
    apply_config(
        &client,
        &machine_os_config(
            cluster,
            SIDE_POOL,
            &push_secret,
            "RUN echo side > /etc/side\n",
        )?,
    )
    .await?;
    let side_first = current_build(&client, SIDE_POOL, None).await?;
    pinned_by(&client, BUILD_TIMEOUT, SIDE_POOL, &side_first).await?;
    let side_mc = mcs.get(&format!("zz-strata-2-{SIDE_POOL}")).await?;
    let side_labels = side_mc.metadata.labels.unwrap_or_default();
    ensure!(
        side_labels.get("e2e.strata.dev/pool").map(String::as_str) == Some("long"),
        "MachineConfig of the long-named pool lacks its selector label: {side_labels:?}"
    );
    let created = |build: &str| {
        let builds = builds.clone();
        let build = build.to_string();
        async move { Ok::<_, anyhow::Error>(builds.get(&build).await?.metadata.creation_timestamp) }
    };
    let before = (created(&second).await?, created(&side_first).await?);
    let release: Api<ConfigMap> =
        Api::namespaced(client.clone(), "openshift-machine-config-operator");
    let set_base = |image: String| {
        let release = release.clone();
        async move {
            release
                .patch(
                    "machine-config-osimageurl",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"baseOSContainerImage": image}})),
                )
                .await
        }
    };
    // A new release: every pool rebuilds on its base, and each machine rolls once — Strata holds
    // the pool (spec.paused) from the moment it sees the new base until its rebuild is pinned
    // and rendered, so the MCO never rolls the new release's configuration with the old image.
    let rollouts = |name: &'static str| {
        let pools = pools(&client);
        async move {
            let pool = pools.get(name).await?;
            Ok::<_, anyhow::Error>(
                pool.metadata
                    .annotations
                    .unwrap_or_default()
                    .get(ROLLOUTS_ANNOTATION)
                    .map(|r| r.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
        }
    };
    let mut images = Vec::new();
    for (release, previous) in [
        (cluster.os_base_image_next.clone(), second.clone()),
        (cluster.os_base_image.clone(), String::new()),
    ] {
        let rolled_before = rollouts(POOL).await?;
        set_base(release.clone()).await?;
        if previous.is_empty() {
            // A build made on this base before is pinned at once: the hold lasts until the MCO
            // renders the pool, a moment; its Event says it was taken.
            expect_event(
                &client,
                POOL,
                "PoolHeld",
                &format!("renders it with {second}"),
            )
            .await?;
        } else {
            wait_for("Strata holds the pool", Duration::from_secs(30), || async {
                let pool = pools(&client).get(POOL).await?;
                let (held, reason, _) = condition(&configs, POOL, "PoolHeld")
                    .await
                    .unwrap_or_default();
                Ok((pool.data["spec"]["paused"] == true
                    && held == "True"
                    && reason == "BaseImageChanged")
                    .then_some(()))
            })
            .await?;
        }
        let build = if previous.is_empty() {
            // Back on the first base: the old build is reused, nothing is built.
            wait_for(
                "back on the first build",
                Duration::from_secs(120),
                || async {
                    let status = configs.get(POOL).await?.status.unwrap_or_default();
                    Ok(status
                        .machine_os_build
                        .map(|b| b.name)
                        .filter(|n| *n == second))
                },
            )
            .await?
        } else {
            current_build(&client, POOL, Some(&previous)).await?
        };
        let image = pinned_by(&client, BUILD_TIMEOUT, POOL, &build).await?;
        ensure!(
            builds.get(&build).await?.spec.base_image == release,
            "{build} not on {release}"
        );
        wait_for(
            "the hold released and the pool updated",
            BUILD_TIMEOUT,
            || async {
                let pool = pools(&client).get(POOL).await?;
                let (held, reason, _) = condition(&configs, POOL, "PoolHeld").await?;
                let (updated, _, _) = condition(&configs, POOL, "PoolUpdated").await?;
                Ok((pool.data["spec"]["paused"] == false
                    && held == "False"
                    && reason == "Released"
                    && updated == "True")
                    .then_some(()))
            },
        )
        .await?;
        let rolled = rollouts(POOL).await?;
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
        expect_event(&client, POOL, "PoolHeld", "holding pool").await?;
        expect_event(&client, POOL, "PoolReleased", &image).await?;
        eprintln!(
            "ok: release {release}: {POOL} held, rebuilt as {build}, released; its machines rolled once, to {image}"
        );
        images.push(image);
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
    let after = (created(&second).await?, created(&side_first).await?);
    ensure!(
        after == before,
        "identical inputs built again: builds recreated {before:?} → {after:?}"
    );
    ensure!(
        job_count(&client, &second).await? == 0,
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

    // 5. A failing step → Failed with the step and its fragment line; the pool keeps its image.
    apply_config(
        &client,
        &machine_os_config(cluster, POOL, &push_secret, "RUN true\nRUN false\n")?,
    )
    .await?;
    let failing = current_build(&client, POOL, Some(&second)).await?;
    let failed = ended_build(&client, &failing, BUILD_TIMEOUT).await?;
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
        let (status, reason, message) = condition(&configs, POOL, "Degraded").await?;
        Ok(
            (status == "True" && reason == "BuildFailed" && message.contains(&failing))
                .then_some(()),
        )
    })
    .await?;
    let (_, _, ready) = condition(&configs, POOL, "Ready").await?;
    ensure!(
        ready.ends_with(&format!("; the pool keeps {image_v2}")),
        "Ready message {ready:?}"
    );
    expect_event(&client, POOL, "BuildFailed", &failing).await?;
    let mc = mcs.get(&format!("zz-strata-2-{POOL}")).await?;
    ensure!(
        mc.data["spec"]["osImageURL"] == Value::String(image_v2.clone()),
        "a failed build changed the MachineConfig"
    );
    let status = configs.get(POOL).await?.status.unwrap_or_default();
    ensure!(status.current_image_pull_spec.as_deref() == Some(image_v2.as_str()));
    eprintln!("ok: failing step → {}: {}", failure.reason, failure.message);

    // 6. Deleting the MachineOSConfigs removes their MachineConfigs and builds.
    for name in [POOL, SIDE_POOL] {
        delete_config(&client, name).await?;
        ensure!(
            mcs.get_opt(&format!("zz-strata-2-{name}")).await?.is_none(),
            "MachineConfig of {name} left behind"
        );
        delete_pool(&client, name).await;
    }
    wait_for(
        "builds gone with their configs",
        Duration::from_secs(60),
        || async {
            Ok(builds
                .list(&ListParams::default().labels(&mine))
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    eprintln!("ok: deleting the MachineOSConfigs removed their MachineConfigs and builds");

    let checked = assert_no_forbidden_requests(cluster)?;
    ensure!(
        checked > 0,
        "the audit log has no request of Strata's ServiceAccounts"
    );
    eprintln!("ok: {checked} requests of Strata's ServiceAccounts in the audit log, none refused");
    Ok(())
}
