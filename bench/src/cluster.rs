//! The local real cluster: objects the bench applies, watches stamped on arrival, the deployed
//! controller (redeploy, leader, /metrics).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const NAMESPACE: &str = "strata-system";
/// Field manager of everything the bench applies.
pub const MANAGER: &str = "strata-bench";
/// Label on every object the bench creates (all are also named `bench-*`).
pub const BENCH_LABEL: &str = "strata.dev/bench";
pub const PUSH_SECRET: &str = "bench-push";

fn gvk(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}
pub fn pools_ar() -> ApiResource {
    gvk(
        "machineconfiguration.openshift.io",
        "v1",
        "MachineConfigPool",
        "machineconfigpools",
    )
}
pub fn machine_configs_ar() -> ApiResource {
    gvk(
        "machineconfiguration.openshift.io",
        "v1",
        "MachineConfig",
        "machineconfigs",
    )
}
pub fn configs_ar() -> ApiResource {
    gvk(
        "strata.dev",
        "v1alpha1",
        "MachineOSConfig",
        "machineosconfigs",
    )
}
pub fn builds_ar() -> ApiResource {
    gvk(
        "strata.dev",
        "v1alpha1",
        "MachineOSBuild",
        "machineosbuilds",
    )
}

pub fn all(client: &kube::Client, ar: &ApiResource) -> Api<DynamicObject> {
    Api::all_with(client.clone(), ar)
}

async fn apply(api: &Api<DynamicObject>, name: &str, body: &Value) -> Result<()> {
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .with_context(|| format!("applying {name}"))?;
    Ok(())
}

/// A MachineConfigPool stand-in selecting the worker and its own MachineConfigs.
pub async fn apply_pool(client: &kube::Client, name: &str, group: &str) -> Result<()> {
    let body = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfigPool",
        "metadata": {"name": name, "labels": {BENCH_LABEL: group}},
        "spec": {
            "machineConfigSelector": {"matchExpressions": [{"key": "machineconfiguration.openshift.io/role", "operator": "In", "values": ["worker", name]}]},
            "paused": false,
            "maxUnavailable": 1,
        },
    });
    apply(&all(client, &pools_ar()), name, &body).await
}

/// A MachineOSConfig for pool `name` with one NoArch fragment, pushing to `push_spec`.
pub async fn apply_config(
    client: &kube::Client,
    name: &str,
    group: &str,
    push_spec: &str,
    fragment: &str,
) -> Result<()> {
    let body = json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "MachineOSConfig",
        "metadata": {"name": name, "labels": {BENCH_LABEL: group}},
        "spec": {
            "machineConfigPool": {"name": name},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": PUSH_SECRET},
            "renderedImagePushSpec": push_spec,
            "containerFile": [{"containerfileArch": "NoArch", "content": fragment}],
        },
    });
    apply(&all(client, &configs_ar()), name, &body).await
}

/// The push Secret the bench's MachineOSConfigs name (the local registry ignores credentials).
pub async fn apply_push_secret(client: &kube::Client, registry: &str) -> Result<()> {
    let auth = json!({"auths": {registry: {"username": "bench", "password": "bench"}}}).to_string();
    let body = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(PUSH_SECRET.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some([(BENCH_LABEL.to_string(), "shared".to_string())].into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(
            [(
                ".dockerconfigjson".to_string(),
                k8s_openapi::ByteString(auth.into_bytes()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    api.patch(
        PUSH_SECRET,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Deletes every object the bench created: MachineOSConfigs first (the controller's finalizer
/// removes their MachineConfigs; owner references remove builds, Jobs, pods), then pools and the
/// Secret. When no controller removes the finalizers in time, the bench removes them and the
/// MachineConfigs itself.
pub async fn cleanup(client: &kube::Client) -> Result<()> {
    let configs = all(client, &configs_ar());
    let selector = ListParams::default().labels(BENCH_LABEL);
    let names = |list: kube::core::ObjectList<DynamicObject>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .filter(|n| n.starts_with("bench-"))
            .collect()
    };
    let mine = names(configs.list(&selector).await?);
    for name in &mine {
        let _ = configs.delete(name, &DeleteParams::default()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = names(configs.list(&selector).await?);
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "bench cleanup: {} MachineOSConfigs kept their finalizer (no controller?); removing it",
                left.len()
            );
            for name in &left {
                let _ = configs
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
            let mcs = all(client, &machine_configs_ar());
            for name in &left {
                let _ = mcs
                    .delete(&format!("zz-strata-2-{name}"), &DeleteParams::default())
                    .await;
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let pools = all(client, &pools_ar());
    for name in names(pools.list(&selector).await?) {
        let _ = pools.delete(&name, &DeleteParams::default()).await;
    }
    // Builds left without a MachineOSConfig (owner references normally take them).
    let builds = all(client, &builds_ar());
    for build in builds.list(&ListParams::default()).await?.items {
        if let Some(name) = build.metadata.name.filter(|n| n.starts_with("bench-")) {
            let _ = builds.delete(&name, &DeleteParams::background()).await;
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let _ = secrets.delete(PUSH_SECRET, &DeleteParams::default()).await;
    // The garbage collector removes the builds' Jobs, pods and ConfigMaps; leave the namespace
    // as it was before handing the cluster back.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let builds = |names: Vec<Option<String>>| {
            names
                .into_iter()
                .flatten()
                .filter(|n| n.starts_with("build-bench-"))
                .count()
        };
        let left = builds(
            jobs.list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .map(|j| j.metadata.name)
                .collect(),
        ) + builds(
            pods.list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .map(|p| p.metadata.name)
                .collect(),
        );
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// An object seen by a watch, stamped when the bench received it.
pub struct Seen<K> {
    pub at: Instant,
    pub object: K,
}

/// Watches `api` and sends every added or modified object, stamped on arrival. Returns once the
/// initial list has been delivered.
pub async fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> Result<mpsc::UnboundedReceiver<Seen<K>>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut stream = watcher(api, config).boxed();
        while let Some(event) = stream.next().await {
            let at = Instant::now();
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    if tx.send(Seen { at, object }).is_err() {
                        return;
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    eprintln!("bench: watch error (retrying): {err}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .context("watch did not list in 60 s")??;
    Ok(rx)
}

/// Redeploys the controller from manifests/ with e2e/scripts/deploy-controller.sh.
pub async fn deploy(root: &Path, builder_override: Option<&str>) -> Result<()> {
    let script = root.join("e2e/scripts/deploy-controller.sh");
    let mut cmd = tokio::process::Command::new(&script);
    cmd.env_remove("STRATA_CONTROLLER_ARGS")
        .env_remove("STRATA_REPLICAS")
        .env_remove("STRATA_BUILDER_IMAGE_OVERRIDE");
    if let Some(image) = builder_override {
        cmd.env("STRATA_BUILDER_IMAGE_OVERRIDE", image);
    }
    let out = cmd.output().await.context("running deploy-controller.sh")?;
    if !out.status.success() {
        bail!(
            "deploy-controller.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The controller pod holding the leader Lease, with its pod IP.
pub async fn leader(client: &kube::Client) -> Result<Option<(String, String)>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let holder = leases
        .get_opt("strata-controller")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity);
    let Some(holder) = holder else {
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let ip = pods
        .get_opt(&holder)
        .await?
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .and_then(|p| p.status)
        .and_then(|s| s.pod_ip);
    Ok(ip.map(|ip| (holder, ip)))
}

/// The /metrics text of a controller pod (reachable from the host: pod IPs are routed).
pub async fn metrics(ip: &str) -> Result<String> {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "5",
            &format!("http://{ip}:8080/metrics"),
        ])
        .output()
        .await?;
    if !out.status.success() {
        bail!("cannot read http://{ip}:8080/metrics");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until a controller pod leads and reports `strata_leader 1`; returns (pod, ip).
pub async fn wait_for_leader(client: &kube::Client, not: Option<&str>) -> Result<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Some((pod, ip)) = leader(client).await?
            && Some(pod.as_str()) != not
            && let Ok(text) = metrics(&ip).await
            && crate::stats::metric(&text, "strata_leader") == Some(1.0)
        {
            return Ok((pod, ip));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no controller took the lead in 180 s")
}
