//! The objects the bench makes in the cluster (all named `bench-*`), made and removed with the
//! e2e kit's helpers and the shared contract.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use strata_crds::{MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{self, NAMESPACE, machine_configs, pools};
use strata_e2e::mco::MACHINES_ANNOTATION;
use strata_e2e::repo_root;
use strata_e2e::util::yaml_docs;

/// Prefix of every object the bench makes.
pub const PREFIX: &str = "bench-";
/// The push Secret every bench MachineOSConfig names (the local registry needs no credentials).
pub const PUSH_SECRET: &str = "bench-push";
/// Field manager of what the bench applies itself.
pub const MANAGER: &str = "strata-bench";

/// A MachineOSConfig for pool `name` (same name) building `fragment` on `base` (spec.baseImage),
/// pushing to `push_spec`.
pub fn config(name: &str, push_spec: &str, base: &str, fragment: &str) -> Result<MachineOSConfig> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
        "metadata": {"name": name},
        "spec": {
            "machineConfigPool": {"name": name},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": PUSH_SECRET},
            "renderedImagePushSpec": push_spec,
            "baseImage": base,
            "containerFile": [{"containerfileArch": "NoArch", "content": fragment}],
            // The builds measured here are the build's own; the boot check has its own section.
            "bootCheck": {"mode": "Disabled"},
        }
    }))?)
}

/// The fragment of `e2e/examples/package-install.yaml` (packages from the cluster's signed repository)
/// and a last step that writes `last` — what a rebuild changes.
pub fn fragment(package_repo: &str, last: &str) -> Result<String> {
    let path = repo_root().join("e2e/examples/package-install.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let docs = yaml_docs(&text)?;
    let content = docs
        .first()
        .and_then(|d| d["spec"]["containerFile"][0]["content"].as_str())
        .context("e2e/examples/package-install.yaml: no spec.containerFile[0].content")?;
    let mut fragment = String::new();
    for line in content.lines() {
        if line.starts_with("ARG PACKAGE_REPO=") {
            fragment.push_str(&format!("ARG PACKAGE_REPO={package_repo}\n"));
        } else {
            fragment.push_str(line);
            fragment.push('\n');
        }
    }
    fragment.push_str(&format!("RUN echo '{last}' > /etc/strata-bench-last\n"));
    Ok(fragment)
}

/// A pool for the scale run, shaped as the kit's `create_pool` makes them (one machine, selecting
/// its role), applied without waiting for the MCO stand-in.
pub async fn apply_pool_nowait(client: &kube::Client, name: &str) -> Result<()> {
    let pool = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
        "metadata": {"name": name, "annotations": {MACHINES_ANNOTATION: "1"}},
        "spec": {
            "machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": name}},
            "paused": false, "maxUnavailable": 1,
        },
    });
    pools(client)
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&pool),
        )
        .await
        .with_context(|| format!("applying pool {name}"))?;
    Ok(())
}

fn ours(name: &Option<String>) -> bool {
    name.as_deref().is_some_and(|n| n.starts_with(PREFIX))
}

fn names<K: kube::Resource>(items: Vec<K>) -> Vec<String> {
    items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .filter(|n| n.starts_with(PREFIX))
        .collect()
}

/// Deletes every MachineOSConfig named `bench-*` and waits until they are gone (the controller's
/// finalizer removes their MachineConfigs; owner references take builds, Jobs, pods). After
/// `patience` without a controller to remove the finalizers, removes them and the
/// MachineConfigs itself.
pub async fn delete_configs(client: &kube::Client, patience: Duration) -> Result<()> {
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    for name in names(configs.list(&ListParams::default()).await?.items) {
        let _ = configs.delete(&name, &DeleteParams::default()).await;
    }
    let deadline = Instant::now() + patience;
    loop {
        let left = names(configs.list(&ListParams::default()).await?.items);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!(
                "bench cleanup: {} MachineOSConfigs kept their finalizer (no controller?); removing it",
                left.len()
            );
            let mcs = machine_configs(client);
            for name in &left {
                let _ = configs
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
                let _ = mcs
                    .delete(&format!("zz-strata-2-{name}"), &DeleteParams::default())
                    .await;
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Deletes every object the bench made: configs (as [`delete_configs`]), pools and the
/// MachineConfigs the MCO stand-in rendered for them, leftover builds, the push Secret, the
/// MCO's-way pods and their ConfigMaps, the cache claim; waits until the builds' Jobs and pods
/// are gone.
pub async fn cleanup(client: &kube::Client) -> Result<()> {
    delete_configs(client, Duration::from_secs(300)).await?;
    let pool_api = pools(client);
    let pool_names: Vec<String> = pool_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    delete_all(&pool_api, &pool_names).await;
    let mcs = machine_configs(client);
    let rendered: Vec<String> = mcs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .filter(|n| n.starts_with("rendered-bench-") || n.starts_with("zz-strata-2-bench-"))
        .collect();
    delete_all(&mcs, &rendered).await;
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let build_names = names(builds.list(&ListParams::default()).await?.items);
    for name in build_names {
        let _ = builds.delete(&name, &DeleteParams::background()).await;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let _ = secrets.delete(PUSH_SECRET, &DeleteParams::default()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods.list(&ListParams::default()).await?.items {
        if ours(&pod.metadata.name)
            && let Some(name) = pod.metadata.name
        {
            let _ = pods
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    for name in names(cms.list(&ListParams::default()).await?.items) {
        let _ = cms.delete(&name, &DeleteParams::default()).await;
    }
    crate::claim::remove(client).await;
    // The garbage collector removes the builds' Jobs and pods: hand the namespace back as found.
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let builder = |n: &Option<String>| {
            n.as_deref()
                .is_some_and(|n| n.starts_with("build-bench-") || n.starts_with(PREFIX))
        };
        let left = jobs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|j| builder(&j.metadata.name))
            .count()
            + pods
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|p| builder(&p.metadata.name))
                .count();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

async fn delete_all<K>(api: &Api<K>, names: &[String])
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::future::join_all(
        names
            .iter()
            .map(|n| async move { api.delete(n, &DeleteParams::default()).await }),
    )
    .await;
}

/// The push Secret (the kit's: legacy `.dockercfg`, every config allowed).
pub async fn push_secret(client: &kube::Client) -> Result<()> {
    deployed::create_push_secret(client, PUSH_SECRET).await
}
