//! The controller against the real cluster: a MachineOSConfig becomes a builder pod running
//! buildah on the real kubelet, an image in the real registry, and a MachineConfig pinning the
//! pool by digest; a bad step fails without touching the pool; deleting the MachineOSConfig
//! removes the MachineConfig. The controller runs as a host process with the admin kubeconfig
//! (the in-cluster deployment is tested with the manifests).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::Cluster;
use strata_e2e::util::{delete_namespace, install_strata_crds, test_namespace, wait_for};

/// The controller process; killed when dropped.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn strata_bin() -> Result<String> {
    std::env::var("STRATA_BIN").context("STRATA_BIN is not set (run through `make e2e-test`)")
}

fn start_controller(
    cluster: &Cluster,
    namespace: &str,
    builder: &str,
    log: &std::path::Path,
) -> Result<Controller> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(strata_bin()?)
        .args([
            "controller",
            "--namespace",
            namespace,
            "--builder-image",
            builder,
        ])
        .args([
            "--builder-service-account",
            "strata-builder",
            "--insecure-registries",
            &cluster.registry,
        ])
        .args(["--http-address", "127.0.0.1:0", "--lease-name", namespace])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("RUST_LOG", "info,strata=debug,kube=warn")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting strata controller")?;
    Ok(Controller(child))
}

fn machine_configs(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("machineconfiguration.openshift.io", "v1", "MachineConfig"),
        "machineconfigs",
    );
    Api::all_with(client.clone(), &ar)
}

async fn build_phase(api: &Api<MachineOSBuild>, name: &str) -> Result<Option<MachineOSBuild>> {
    Ok(api
        .get_opt(name)
        .await?
        .filter(|b| b.phase().is_some_and(BuildPhase::is_terminal)))
}

/// The first build of the "worker" MachineOSConfig other than `previous`, once it has ended.
async fn next_ended_build(
    configs: &Api<MachineOSConfig>,
    builds: &Api<MachineOSBuild>,
    previous: &str,
    what: &str,
) -> Result<MachineOSBuild> {
    wait_for(what, Duration::from_secs(300), || async {
        let status = configs.get("worker").await?.status.unwrap_or_default();
        match status.machine_os_build.map(|b| b.name) {
            Some(name) if name != previous => build_phase(builds, &name).await,
            _ => Ok(None),
        }
    })
    .await
}

#[tokio::test]
async fn machineosconfig_to_pinned_pool_and_back() -> Result<()> {
    let test = "machineosconfig_to_pinned_pool_and_back";
    let Some((cluster, builder)) = Cluster::with_builder_or_skip(test) else {
        return Ok(());
    };
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    let ns = test_namespace(&client, "strata-ctl").await?;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "strata-builder"}}))?;
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await?;

    let log = cluster.dir.join(format!("logs/controller-{ns}.log"));
    let _controller = start_controller(cluster, &ns, &builder, &log)?;
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let mcs = machine_configs(&client);
    let _ = configs.delete("worker", &DeleteParams::default()).await;
    wait_for(
        "old worker MachineOSConfig gone",
        Duration::from_secs(60),
        || async { Ok(configs.get_opt("worker").await?.is_none().then_some(())) },
    )
    .await?;

    let mosc = |fragment: &str| -> Result<MachineOSConfig> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
            "metadata": {"name": "worker"},
            "spec": {
                "machineConfigPool": {"name": "worker"},
                "imageBuilder": {"imageBuilderType": "Job"},
                "renderedImagePushSecret": {"name": "push"},
                "renderedImagePushSpec": format!("{}/strata-e2e/worker:latest", cluster.registry),
                "containerFile": [{"containerfileArch": "NoArch", "content": fragment}],
            }
        }))?)
    };

    // 1. Apply → build → digest verified → MachineConfig pinned.
    let applied = configs
        .patch(
            "worker",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&mosc("RUN echo layered-by-strata > /etc/strata-e2e\n")?),
        )
        .await?;
    ensure!(applied.metadata.name.as_deref() == Some("worker"));
    // 0. Without its push Secret: Degraded/SecretUnavailable and no build; the Secret starts it.
    wait_for(
        "Degraded SecretUnavailable",
        Duration::from_secs(60),
        || async {
            let status = configs.get("worker").await?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .any(|c| {
                    c.type_ == "Degraded" && c.status == "True" && c.reason == "SecretUnavailable"
                })
                .then_some(()))
        },
    )
    .await?;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    ensure!(
        jobs.list(&Default::default()).await?.items.is_empty(),
        "a Job exists without a push Secret"
    );
    ensure!(
        builds
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|b| b.spec.machine_os_config.name != "worker"),
        "a build exists without a push Secret"
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "push"}, "type": "kubernetes.io/dockercfg",
        "stringData": {".dockercfg": "{}"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await?;
    eprintln!(
        "ok: no push Secret → Degraded/SecretUnavailable, no build; legacy .dockercfg Secret created"
    );
    let pinned = wait_for(
        "MachineOSConfig worker Ready with an image",
        Duration::from_secs(420),
        || async {
            let c = configs.get("worker").await?;
            let status = c.status.unwrap_or_default();
            let degraded = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded" && c.status == "True");
            if let Some(d) = degraded {
                anyhow::bail!("Degraded: {} {}", d.reason, d.message);
            }
            Ok(status.current_image_pull_spec)
        },
    )
    .await
    .with_context(|| format!("controller log: {}", log.display()))?;
    ensure!(
        pinned.contains("/strata-e2e/worker@sha256:"),
        "pinned {pinned}"
    );
    let mc = mcs.get("zz-strata-1-worker").await?;
    ensure!(
        mc.data["spec"]["osImageURL"] == Value::String(pinned.clone()),
        "MachineConfig: {:?}",
        mc.data
    );
    ensure!(
        mc.metadata
            .labels
            .unwrap_or_default()
            .get("machineconfiguration.openshift.io/role")
            .map(String::as_str)
            == Some("worker")
    );
    let config = configs.get("worker").await?;
    let build_name = config
        .status
        .and_then(|s| s.machine_os_build)
        .map(|b| b.name)
        .context("no build reference")?;
    let build = builds.get(&build_name).await?;
    ensure!(
        build.phase() == Some(BuildPhase::Succeeded),
        "build {build_name} is {:?}",
        build.phase()
    );
    ensure!(
        build
            .status
            .as_ref()
            .and_then(|s| s.digested_image_push_spec.as_deref())
            == Some(pinned.as_str())
    );
    // The registry serves that digest.
    let (repo, digest) = pinned.split_once('@').context("no digest")?;
    let path = repo.split_once('/').map(|x| x.1).unwrap_or_default();
    let url = format!("http://{}/v2/{path}/manifests/{digest}", cluster.registry);
    let ok = Command::new("curl")
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
    ensure!(ok, "{url} not served");
    // The per-build Secrets are gone once the build ended; the Containerfile ConfigMap is kept.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "per-build push Secret deleted",
        Duration::from_secs(30),
        || async {
            Ok(secrets
                .get_opt(&format!("push-{build_name}"))
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    eprintln!("ok: worker pinned to {pinned} by build {build_name}");

    // 1b. The rebuild annotation builds the same inputs again, under the same name, and goes away.
    let before = build
        .metadata
        .creation_timestamp
        .clone()
        .context("no creationTimestamp")?;
    configs
        .patch(
            "worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"strata.dev/rebuild": "e2e"}}})),
        )
        .await?;
    wait_for(
        "the rebuild to finish",
        Duration::from_secs(300),
        || async {
            let config = configs.get("worker").await?;
            let annotated = config
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("strata.dev/rebuild");
            let Some(b) = build_phase(&builds, &build_name).await? else {
                return Ok(None);
            };
            let newer = b
                .metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0 > before.0);
            Ok((newer && !annotated && b.phase() == Some(BuildPhase::Succeeded)).then_some(()))
        },
    )
    .await?;
    eprintln!("ok: rebuild annotation rebuilt {build_name} and was removed");

    // 1c. A new release base rebuilds the pool on it. The builder image (Debian) stands in for it.
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
    set_base(builder.clone()).await?;
    let rebased = next_ended_build(&configs, &builds, &build_name, "a build on the new base").await;
    set_base(cluster.os_base_image.clone()).await?;
    let rebased = rebased?;
    ensure!(
        rebased.phase() == Some(BuildPhase::Succeeded),
        "build on the new base: {:?}",
        rebased.status
    );
    ensure!(
        rebased.spec.base_image == builder,
        "base {}",
        rebased.spec.base_image
    );
    let new_image = rebased
        .status
        .as_ref()
        .and_then(|s| s.digested_image_push_spec.clone())
        .context("no image")?;
    wait_for(
        "MachineConfig on the new image",
        Duration::from_secs(60),
        || async {
            let mc = mcs.get("zz-strata-1-worker").await?;
            Ok((mc.data["spec"]["osImageURL"] == Value::String(new_image.clone())).then_some(()))
        },
    )
    .await?;
    eprintln!("ok: base image change rebuilt the pool: {new_image}");
    // Back on the original base: the first build's inputs again, reused without building.
    wait_for(
        "back on the first build",
        Duration::from_secs(120),
        || async {
            let c = configs.get("worker").await?.status.unwrap_or_default();
            Ok(
                (c.machine_os_build.map(|b| b.name) == Some(build_name.clone())
                    && c.current_image_pull_spec.is_some_and(|i| i != new_image))
                .then_some(()),
            )
        },
    )
    .await?;
    let pinned = configs
        .get("worker")
        .await?
        .status
        .and_then(|s| s.current_image_pull_spec)
        .context("no image")?;
    eprintln!("ok: back on the release base, build {build_name} reused");

    // 2. A failing step → Failed with the step and its line; the MachineConfig is untouched.
    configs
        .patch(
            "worker",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&mosc("RUN true\nRUN false\n")?),
        )
        .await?;
    let failed =
        next_ended_build(&configs, &builds, &build_name, "the failing build to end").await?;
    let failure = failed
        .status
        .as_ref()
        .and_then(|s| s.failure.clone())
        .context("no failure recorded")?;
    ensure!(
        failed.phase() == Some(BuildPhase::Failed),
        "phase {:?}",
        failed.phase()
    );
    ensure!(failure.reason == "StepFailed", "failure {failure:?}");
    ensure!(
        failure.message.contains("RUN false") && failure.message.contains("fragment line 2"),
        "failure {failure:?}"
    );
    let mc = mcs.get("zz-strata-1-worker").await?;
    ensure!(
        mc.data["spec"]["osImageURL"] == Value::String(pinned.clone()),
        "MachineConfig changed by a failed build"
    );
    let config = configs.get("worker").await?;
    ensure!(config.status.and_then(|s| s.current_image_pull_spec) == Some(pinned.clone()));
    eprintln!("ok: failing step → {}: {}", failure.reason, failure.message);

    // 3. Delete the MachineOSConfig → MachineConfig and builds gone.
    configs.delete("worker", &DeleteParams::default()).await?;
    wait_for(
        "MachineConfig and MachineOSConfig gone",
        Duration::from_secs(60),
        || async {
            let gone = mcs.get_opt("zz-strata-1-worker").await?.is_none()
                && configs.get_opt("worker").await?.is_none();
            Ok(gone.then_some(()))
        },
    )
    .await?;
    eprintln!("ok: deleting the MachineOSConfig removed its MachineConfig");
    delete_namespace(&client, &ns).await;
    Ok(())
}
