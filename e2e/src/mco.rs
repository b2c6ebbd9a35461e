//! A small stand-in for the Machine Config Operator's render and node controllers, so that the
//! local cluster renders pools and rolls their machines the way an OpenShift cluster does (there
//! is no MCO, and no real machines, here). It emulates, from openshift/machine-config-operator:
//!
//! - **the template controller**: MachineConfigs labelled `e2e.strata.dev/mco-owned` (the stand-ins
//!   for `00-worker` & co.) carry the release they were generated for; a new release base (ConfigMap
//!   `machine-config-osimageurl`) rewrites them, as a new release's templates do;
//! - **the render controller** (`pkg/controller/render`): per pool, the MachineConfigs its
//!   `machineConfigSelector` selects, sorted by name, merged — the last non-empty `osImageURL` wins,
//!   else the release's (`MergeMachineConfigs`) — into `rendered-<pool>-<hash of the merged
//!   content>`; the pool's `spec.configuration` names it. It renders a few seconds after a change
//!   (the MCO's render delay), paused or not;
//! - **the node controller** (`pkg/controller/node`): a pool that is not paused moves its machines
//!   (`e2e.strata.dev/machines`, default 1) to `spec.configuration` one at a time
//!   (`maxUnavailable` 1), each taking a few seconds, and reports `status.configuration`, the
//!   machine counts and the Updated/Updating/Degraded conditions as the MCO does. A paused pool
//!   starts no machine. A pool the Nodes of real machines belong to (label
//!   `e2e.strata.dev/machine`, registered by the machine-config-daemon stand-in, `crate::mcd`; a
//!   node belongs to one pool, as the MCO assigns it: `strata_crds::contract::mco::primary_pool`)
//!   rolls those instead, node by node (`crate::mco_nodes`).
//!
//! Every rollout that completes is appended to the pool's annotation `e2e.strata.dev/rollouts`
//! (the rendered names, space-separated), so a test can count how often machines rolled.
//!
//! A test makes a pool degraded with an annotation, and the stand-in reports it as the MCO does:
//! `e2e.strata.dev/node-degraded: <what the node says>` — one machine degraded, `NodeDegraded`
//! True with the node controller's reason and message (`calculateStatus`,
//! `pkg/controller/node/status.go`); `e2e.strata.dev/render-degraded: <error>` — the render
//! controller cannot render the pool (it keeps its target) and reports `RenderDegraded` True
//! (`syncFailingStatus`, `pkg/controller/render/render_controller.go`). Either sets `Degraded`.
//! Removing the annotation clears it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_crds::contract::mco;
use tokio::sync::Notify;

use crate::mco_nodes::{self, MACHINE_LABEL, NodeView};

/// Field manager of everything the stand-in writes (the MCO's name).
pub const MANAGER: &str = "machine-config-operator";
pub const MCO_OWNED_LABEL: &str = "e2e.strata.dev/mco-owned";
pub const MACHINES_ANNOTATION: &str = "e2e.strata.dev/machines";
pub const ROLLOUTS_ANNOTATION: &str = "e2e.strata.dev/rollouts";
pub const RELEASE_ANNOTATION: &str = "e2e.strata.dev/release";
/// The rendered configuration a rollout in progress moves machines to.
const ROLLING_ANNOTATION: &str = "e2e.strata.dev/rolling-to";
/// A machine of the pool is degraded; the value is what its node reports.
pub const NODE_DEGRADED_ANNOTATION: &str = "e2e.strata.dev/node-degraded";
/// The pool cannot be rendered; the value is the render error.
pub const RENDER_DEGRADED_ANNOTATION: &str = "e2e.strata.dev/render-degraded";

/// Timing of the emulation.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// After a change, the render waits this long (the MCO's render delay batches changes).
    pub render_delay: Duration,
    /// One machine's update (drain, reboot).
    pub machine_update: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            render_delay: Duration::from_secs(3),
            machine_update: Duration::from_secs(2),
        }
    }
}

/// Whether a pool's `machineConfigSelector` (as JSON) selects a MachineConfig's `labels`.
pub fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector["matchLabels"].as_object();
    let exprs = selector["matchExpressions"].as_array();
    if match_labels.is_none_or(|m| m.is_empty()) && exprs.is_none_or(|e| e.is_empty()) {
        return false; // an empty selector selects nothing here, as for MachineConfigs in the MCO
    }
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let exprs_ok = exprs.into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let value = labels.get(key).map(String::as_str);
        match e["operator"].as_str().unwrap_or_default() {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The rendered configuration of `pool`: (name, osImageURL, sources), from the MachineConfigs it
/// selects (rendered ones excluded) and the release's base image.
pub fn render(
    pool: &Value,
    configs: &[Value],
    release_base: &str,
) -> (String, String, Vec<String>) {
    let pool_name = pool["metadata"]["name"].as_str().unwrap_or_default();
    let selector = &pool["spec"]["machineConfigSelector"];
    let mut selected: Vec<&Value> = configs
        .iter()
        .filter(|mc| {
            let name = mc["metadata"]["name"].as_str().unwrap_or_default();
            let labels: BTreeMap<String, String> =
                serde_json::from_value(mc["metadata"]["labels"].clone()).unwrap_or_default();
            !name.starts_with("rendered-") && selects(selector, &labels)
        })
        .collect();
    selected.sort_by_key(|mc| {
        mc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let mut image = release_base.to_string();
    let mut hasher = Sha256::new();
    for mc in &selected {
        if let Some(url) = mc["spec"]["osImageURL"].as_str().filter(|u| !u.is_empty()) {
            image = url.to_string();
        }
        hasher.update(mc["metadata"]["name"].to_string());
        hasher.update(mc["spec"]["config"].to_string());
        hasher.update(mc["spec"]["kernelArguments"].to_string());
    }
    hasher.update(&image);
    let hash = hex::encode(hasher.finalize());
    let sources = selected
        .iter()
        .filter_map(|mc| mc["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    (
        format!("rendered-{pool_name}-{}", &hash[..16]),
        image,
        sources,
    )
}

/// Now, as the API's condition and heartbeat times are written.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn condition(ty: &str, on: bool, reason: &str, message: &str) -> Value {
    json!({
        "type": ty, "status": if on {"True"} else {"False"}, "reason": reason, "message": message,
        "lastTransitionTime": now(),
    })
}

/// What a test made a pool suffer (its annotations), to be reported as the MCO would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// What the degraded machine's node reports.
    pub node: Option<String>,
    /// Why the pool cannot be rendered.
    pub render: Option<String>,
}

impl Faults {
    pub fn of(pool: &DynamicObject) -> Self {
        let annotation = |key: &str| pool.annotations().get(key).cloned();
        Self {
            node: annotation(NODE_DEGRADED_ANNOTATION),
            render: annotation(RENDER_DEGRADED_ANNOTATION),
        }
    }

    /// `(type, status, reason, message)` of the degraded conditions, as the MCO words them.
    fn conditions(&self, pool: &str) -> [(&'static str, bool, String, String); 3] {
        let node = self.node.as_ref().map(|said| {
            (
                "1 nodes are reporting degraded status on sync".to_string(),
                format!("Node {pool}-0 is reporting: {said:?}"),
            )
        });
        let render = self
            .render
            .as_ref()
            .map(|err| format!("Failed to render configuration for pool {pool}: {err}"));
        // Degraded carries NodeDegraded's message, as calculateStatus sets it.
        let degraded_message = node.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
        let (node_reason, node_message) = node.unwrap_or_default();
        [
            (
                "NodeDegraded",
                self.node.is_some(),
                node_reason,
                node_message,
            ),
            (
                "RenderDegraded",
                self.render.is_some(),
                String::new(),
                render.unwrap_or_default(),
            ),
            (
                "Degraded",
                self.node.is_some() || self.render.is_some(),
                String::new(),
                degraded_message,
            ),
        ]
    }

    /// Whether the pool's `status` already reports these faults.
    fn reported_in(&self, status: &Value, pool: &str) -> bool {
        let conditions = status["conditions"].as_array();
        self.conditions(pool)
            .iter()
            .all(|(ty, on, reason, message)| {
                conditions.into_iter().flatten().any(|c| {
                    c["type"] == *ty
                        && c["status"] == if *on { "True" } else { "False" }
                        && c["reason"].as_str().unwrap_or_default() == reason
                        && c["message"].as_str().unwrap_or_default() == message
                })
            })
    }
}

/// The pool's status, as the MCO's node controller reports it: `updated` of `machines` are on the
/// target configuration; `configuration` is what all machines run (the target once all moved);
/// `faults` are reported as degraded conditions (a degraded machine is not counted updated).
pub fn pool_status(
    pool: &str,
    machines: i64,
    updated: i64,
    configuration: &Value,
    generation: i64,
    faults: &Faults,
) -> Value {
    let degraded = i64::from(faults.node.is_some());
    let updated = updated.min(machines - degraded);
    let done = updated >= machines;
    let message = if done {
        format!(
            "All nodes are updated with {}",
            configuration["name"].as_str().unwrap_or_default()
        )
    } else {
        format!("{updated} of {machines} nodes are updated")
    };
    let mut conditions = vec![
        condition("Updated", done, "", &message),
        condition("Updating", !done, "", &message),
    ];
    for (ty, on, reason, message) in faults.conditions(pool) {
        conditions.push(condition(ty, on, &reason, &message));
    }
    json!({"status": {
        "observedGeneration": generation,
        "machineCount": machines, "readyMachineCount": updated, "updatedMachineCount": updated,
        "unavailableMachineCount": i64::from(!done), "degradedMachineCount": degraded,
        "configuration": configuration,
        "conditions": conditions,
    }})
}

struct Caches {
    pools: Store<DynamicObject>,
    configs: Store<DynamicObject>,
    release: Store<ConfigMap>,
    nodes: Store<Node>,
}

fn watch_into<K>(api: Api<K>, writer: reflector::store::Writer<K>, wake: Arc<Notify>)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .boxed();
        while events.next().await.is_some() {
            wake.notify_one();
        }
    });
}

/// Runs the emulation until the process is stopped.
pub async fn run(
    client: Client,
    pace: Pace,
    release_namespace: &str,
    release_name: &str,
) -> Result<()> {
    let wake = Arc::new(Notify::new());
    let pools_w = reflector::store::Writer::<DynamicObject>::new(mco::machine_config_pool());
    let configs_w = reflector::store::Writer::<DynamicObject>::new(mco::machine_config());
    let (release, release_w) = reflector::store::<ConfigMap>();
    let (nodes, nodes_w) = reflector::store::<Node>();
    let caches = Caches {
        pools: pools_w.as_reader(),
        configs: configs_w.as_reader(),
        release,
        nodes,
    };
    let pools_api: Api<DynamicObject> = Api::all_with(client.clone(), &mco::machine_config_pool());
    let configs_api: Api<DynamicObject> = Api::all_with(client.clone(), &mco::machine_config());
    watch_into(pools_api.clone(), pools_w, wake.clone());
    watch_into(configs_api.clone(), configs_w, wake.clone());
    watch_into(
        Api::<ConfigMap>::namespaced(client.clone(), release_namespace),
        release_w,
        wake.clone(),
    );
    watch_into(Api::<Node>::all(client.clone()), nodes_w, wake.clone());
    let _ = caches.nodes.wait_until_ready().await;
    let _ = caches.pools.wait_until_ready().await;
    let _ = caches.configs.wait_until_ready().await;
    let _ = caches.release.wait_until_ready().await;
    let ssa = PatchParams::apply(MANAGER).force();
    loop {
        // Batch what changed during the render delay, as the MCO's queue does.
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(pace.render_delay).await,
            _ = tokio::time::sleep(pace.machine_update) => {}
        }
        let release_base = caches
            .release
            .state()
            .iter()
            .find(|cm| cm.name_any() == release_name)
            .and_then(|cm| cm.data.as_ref()?.get("baseOSContainerImage").cloned())
            .unwrap_or_default();
        if let Err(err) = step(&caches, &pools_api, &configs_api, &ssa, &release_base).await {
            eprintln!("strata-e2e-mco: {err:#}");
        }
    }
}

/// One pass: templates, renders, and one machine's progress per pool.
async fn step(
    caches: &Caches,
    pools_api: &Api<DynamicObject>,
    configs_api: &Api<DynamicObject>,
    ssa: &PatchParams,
    release_base: &str,
) -> Result<()> {
    follow_release(caches, configs_api, ssa, release_base).await?;
    let configs: Vec<Value> = caches
        .configs
        .state()
        .iter()
        .map(|mc| serde_json::to_value(mc.as_ref()))
        .collect::<Result<_, _>>()?;
    let nodes = caches.nodes.state();
    let nodes_api = Api::<Node>::all(pools_api.clone().into_client());
    let apis = Apis {
        pools: pools_api,
        configs: configs_api,
        nodes: &nodes_api,
    };
    let pools = caches.pools.state();
    // Each machine belongs to one pool, as the MCO (and Strata) assign it.
    let selectors = mco::PoolSelectors::of(pools.iter().map(|p| p.as_ref()));
    let machines: Vec<(Option<&str>, NodeView)> = nodes
        .iter()
        .filter(|n| n.labels().contains_key(MACHINE_LABEL))
        .map(|n| (selectors.pool_of(n.labels()), NodeView::of(n)))
        .collect();
    for pool in &pools {
        let name = pool.name_any();
        let members: Vec<NodeView> = machines
            .iter()
            .filter(|(of, _)| *of == Some(name.as_str()))
            .map(|(_, view)| view.clone())
            .collect();
        sync_pool(pool, &configs, &members, &apis, ssa, release_base).await?;
    }
    Ok(())
}

/// The template controller: MCO-owned configs follow the release.
async fn follow_release(
    caches: &Caches,
    configs_api: &Api<DynamicObject>,
    ssa: &PatchParams,
    release_base: &str,
) -> Result<()> {
    for mc in caches.configs.state() {
        let owned = mc.labels().contains_key(MCO_OWNED_LABEL);
        let release = mc
            .annotations()
            .get(RELEASE_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        if owned && release != release_base {
            let patch = json!({
                "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
                "metadata": {"name": mc.name_any(), "annotations": {RELEASE_ANNOTATION: release_base}},
                "spec": {"config": {"ignition": {"version": "3.4.0"},
                         "storage": {"files": [{"path": "/etc/e2e-release", "contents": {"source": format!("data:,{release_base}")}}]}}},
            });
            configs_api
                .patch(&mc.name_any(), ssa, &Patch::Apply(&patch))
                .await?;
        }
    }
    Ok(())
}

struct Apis<'a> {
    pools: &'a Api<DynamicObject>,
    configs: &'a Api<DynamicObject>,
    nodes: &'a Api<Node>,
}

/// The render controller for one pool, then (once the pool names the rendered configuration) its
/// node controller: over its `machines` (the Nodes of real machines that belong to it) when it
/// has any (`mco_nodes`), else over a counted number of machines.
async fn sync_pool(
    pool: &DynamicObject,
    configs: &[Value],
    machines: &[NodeView],
    apis: &Apis<'_>,
    ssa: &PatchParams,
    release_base: &str,
) -> Result<()> {
    let (pools_api, configs_api) = (apis.pools, apis.configs);
    let pool_json = serde_json::to_value(pool)?;
    let name = pool.name_any();
    let faults = Faults::of(pool);
    if faults.render.is_some() {
        // The render controller fails: the pool keeps the target it has.
        if !machines.is_empty() {
            return roll_nodes(&pool_json, machines, faults.render.as_deref(), apis).await;
        }
        let configuration = pool_json["spec"]["configuration"].clone();
        let target = configuration["name"].as_str().unwrap_or_default();
        return roll_machines(pool, &pool_json, target, &configuration, &faults, pools_api).await;
    }
    let (rendered, image, sources) = render(&pool_json, configs, release_base);
    if !configs
        .iter()
        .any(|mc| mc["metadata"]["name"] == rendered.as_str())
    {
        let mc = json!({
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
            "metadata": {"name": rendered, "annotations": {"machineconfiguration.openshift.io/generated-by-controller-version": "strata-e2e-mco"}},
            "spec": {"osImageURL": image},
        });
        configs_api
            .patch(&rendered, ssa, &Patch::Apply(&mc))
            .await?;
    }
    let configuration = json!({
        "name": rendered,
        "source": sources.iter().map(|s| json!({"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig", "name": s})).collect::<Vec<_>>(),
    });
    if pool_json["spec"]["configuration"]["name"] != rendered.as_str() {
        let patch = json!({
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
            "metadata": {"name": name}, "spec": {"configuration": configuration},
        });
        pools_api.patch(&name, ssa, &Patch::Apply(&patch)).await?;
        return Ok(()); // the next pass rolls against the stored target
    }
    if !machines.is_empty() {
        return roll_nodes(&pool_json, machines, None, apis).await;
    }
    roll_machines(
        pool,
        &pool_json,
        &rendered,
        &configuration,
        &faults,
        pools_api,
    )
    .await
}

/// The node controller over real machines: tell the next nodes the target (within
/// `maxUnavailable`, not while paused), and report the pool's status from what they report.
async fn roll_nodes(
    pool: &Value,
    nodes: &[NodeView],
    render_error: Option<&str>,
    apis: &Apis<'_>,
) -> Result<()> {
    let name = pool["metadata"]["name"].as_str().unwrap_or_default();
    let target = pool["spec"]["configuration"]["name"]
        .as_str()
        .unwrap_or_default();
    let paused = pool["spec"]["paused"].as_bool().unwrap_or(false);
    if !target.is_empty() && !paused {
        let room = mco_nodes::max_unavailable(pool, nodes.len());
        for node in mco_nodes::candidates(nodes, target, room) {
            eprintln!("strata-e2e-mco: pool {name}: node {node} to {target}");
            let patch = json!({"metadata": {"annotations": {mco_nodes::DESIRED_CONFIG: target}}});
            apis.nodes
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    let mut status = mco_nodes::pool_status(pool, nodes, render_error);
    let stored = &pool["status"];
    if mco_nodes::status_matches(stored, &status) {
        return Ok(());
    }
    // A condition keeps its transition time unless its status changed.
    let now = now();
    for c in status["conditions"].as_array_mut().into_iter().flatten() {
        let before = stored["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["type"] == c["type"] && s["status"] == c["status"]);
        c["lastTransitionTime"] = before.map_or(json!(now), |b| b["lastTransitionTime"].clone());
    }
    apis.pools
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    Ok(())
}

/// The node controller: one more machine on the target `rendered` per pass, unless paused or a
/// machine is degraded (a simplification: the MCO would go on with the others, within
/// maxUnavailable); the pool's faults reported.
async fn roll_machines(
    pool: &DynamicObject,
    pool_json: &Value,
    rendered: &str,
    configuration: &Value,
    faults: &Faults,
    pools_api: &Api<DynamicObject>,
) -> Result<()> {
    let name = pool.name_any();
    let machines: i64 = pool
        .annotations()
        .get(MACHINES_ANNOTATION)
        .and_then(|m| m.parse().ok())
        .unwrap_or(1);
    let generation = pool.metadata.generation.unwrap_or(0);
    let status = &pool_json["status"];
    let updated = status["updatedMachineCount"].as_i64().unwrap_or(0);
    let reported = faults.reported_in(status, &name);
    let degraded = i64::from(faults.node.is_some());
    if status["configuration"]["name"] == rendered || rendered.is_empty() {
        let settled = status["machineCount"].as_i64() == Some(machines)
            && updated == machines - degraded
            && reported;
        if !settled {
            let status = pool_status(&name, machines, machines, configuration, generation, faults);
            pools_api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
        }
        return Ok(());
    }
    if pool_json["spec"]["paused"].as_bool().unwrap_or(false) || degraded > 0 {
        if !reported {
            let status = pool_status(
                &name,
                machines,
                updated,
                &status["configuration"],
                generation,
                faults,
            );
            pools_api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
        }
        return Ok(());
    }
    let rolling_to = pool
        .annotations()
        .get(ROLLING_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let on_target = if rolling_to == rendered { updated } else { 0 };
    let moved = on_target + 1;
    let (status, annotations) = if moved >= machines {
        let history = pool
            .annotations()
            .get(ROLLOUTS_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let rolled = format!("{history} {rendered}").trim().to_string();
        (
            pool_status(&name, machines, machines, configuration, generation, faults),
            json!({ROLLOUTS_ANNOTATION: rolled, ROLLING_ANNOTATION: null}),
        )
    } else {
        (
            pool_status(
                &name,
                machines,
                moved,
                &status["configuration"],
                generation,
                faults,
            ),
            json!({ROLLING_ANNOTATION: rendered}),
        )
    };
    let patch = json!({"metadata": {"annotations": annotations}});
    pools_api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    pools_api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc(name: &str, role: &str, image: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"machineconfiguration.openshift.io/role": role}},
               "spec": {"osImageURL": image, "config": {}}})
    }

    #[test]
    fn the_last_os_image_by_name_wins_over_the_release() {
        let pool = json!({"metadata": {"name": "infra"}, "spec": {"machineConfigSelector": {
            "matchExpressions": [{"key": "machineconfiguration.openshift.io/role", "operator": "In", "values": ["worker", "infra"]}]}}});
        let configs = [
            mc("00-worker", "worker", ""),
            mc("zz-strata-2-infra", "infra", "r/os@sha256:infra"),
            mc("zz-strata-1-worker", "worker", "r/os@sha256:worker"),
            mc("50-other", "other", "r/os@sha256:other"),
            mc("rendered-infra-0", "infra", "r/os@sha256:old"),
        ];
        let (name, image, sources) = render(&pool, &configs, "r/os@sha256:release");
        assert_eq!(image, "r/os@sha256:infra");
        assert_eq!(
            sources,
            ["00-worker", "zz-strata-1-worker", "zz-strata-2-infra"]
        );
        assert!(name.starts_with("rendered-infra-"));
        let (_, image, _) = render(&pool, &configs[..1], "r/os@sha256:release");
        assert_eq!(image, "r/os@sha256:release");
        // Different content, different rendered name; the same content, the same name.
        let (again, _, _) = render(&pool, &configs, "r/os@sha256:release");
        assert_eq!(again, name);
        let (other, _, _) = render(&pool, &configs[..2], "r/os@sha256:release");
        assert_ne!(other, name);
    }

    #[test]
    fn faults_are_reported_as_the_mco_words_them_and_cleared() {
        let configuration = json!({"name": "rendered-w-1"});
        let faults = Faults {
            node: Some("disk full".into()),
            render: Some("bad ignition".into()),
        };
        let status = pool_status("w", 2, 2, &configuration, 1, &faults)["status"].clone();
        let condition = |ty: &str| {
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == ty)
                .cloned()
                .unwrap()
        };
        let node = condition("NodeDegraded");
        assert_eq!(node["status"], "True");
        assert_eq!(
            node["reason"],
            "1 nodes are reporting degraded status on sync"
        );
        assert_eq!(node["message"], "Node w-0 is reporting: \"disk full\"");
        assert_eq!(
            condition("RenderDegraded")["message"],
            "Failed to render configuration for pool w: bad ignition"
        );
        assert_eq!(condition("Degraded")["status"], "True");
        assert_eq!(status["degradedMachineCount"], 1);
        assert_eq!(status["updatedMachineCount"], 1);
        assert_eq!(condition("Updated")["status"], "False");
        assert!(faults.reported_in(&status, "w"));
        // Cleared: the same status no longer reports what the pool suffers.
        let healthy = Faults::default();
        assert!(!healthy.reported_in(&status, "w"));
        let status = pool_status("w", 2, 2, &configuration, 1, &healthy)["status"].clone();
        assert!(healthy.reported_in(&status, "w"));
        assert_eq!(status["degradedMachineCount"], 0);
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let labels = BTreeMap::from([("role".to_string(), "worker".to_string())]);
        assert!(selects(
            &json!({"matchLabels": {"role": "worker"}}),
            &labels
        ));
        assert!(!selects(
            &json!({"matchLabels": {"role": "infra"}}),
            &labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "role", "operator": "In", "values": ["infra", "worker"]}]}),
            &labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(!selects(&json!({}), &labels));
    }
}
