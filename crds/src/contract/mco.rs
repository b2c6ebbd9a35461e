//! The Machine Config Operator's kinds Strata reads and writes (group
//! `machineconfiguration.openshift.io/v1`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::{DynamicObject, Selector, SelectorExt};
use serde::Deserialize;

use super::{ApiResource, GroupVersionKind};

pub const GROUP: &str = "machineconfiguration.openshift.io";
pub const VERSION: &str = "v1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

pub fn machine_config_pool() -> ApiResource {
    resource("MachineConfigPool", "machineconfigpools")
}

pub fn machine_config() -> ApiResource {
    resource("MachineConfig", "machineconfigs")
}

/// OpenShift's own MachineOSConfig (on-cluster layering), which Strata must not fight.
pub fn openshift_machine_os_config() -> ApiResource {
    resource("MachineOSConfig", "machineosconfigs")
}

/// What Strata reads of a MachineConfigPool; every field may be absent.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MachineConfigPool {
    pub metadata: ObjectMeta,
    pub spec: PoolSpec,
    pub status: PoolStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PoolSpec {
    /// Which MachineConfigs the pool renders; Strata's MachineConfig carries its labels.
    pub machine_config_selector: Option<LabelSelector>,
    /// Which Nodes are the pool's machines (see [`primary_pool`]).
    pub node_selector: Option<LabelSelector>,
    /// The pool's hold: the MCO rolls no machine while it is set.
    pub paused: bool,
    /// The rendered MachineConfig the MCO moves the pool to.
    pub configuration: NameRef,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PoolStatus {
    /// The rendered MachineConfig the pool runs.
    pub configuration: NameRef,
    /// The pool generation the counts were made for: older than the pool's, they were
    /// counted against an earlier target.
    pub observed_generation: i64,
    pub machine_count: i64,
    pub updated_machine_count: i64,
    pub degraded_machine_count: i64,
    pub conditions: Vec<PoolCondition>,
}

impl PoolStatus {
    /// Whether the condition `type_` is True.
    pub fn is(&self, type_: &str) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }
}

/// An object named by its name (a pool's rendered MachineConfig, OpenShift's config's pool).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct NameRef {
    pub name: Option<String>,
}

/// A condition of the pool, as the MCO writes it (its reason and message may be empty).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PoolCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// What Strata reads of OpenShift's own MachineOSConfig: the pool it builds for.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OpenShiftMachineOSConfig {
    pub metadata: ObjectMeta,
    pub spec: OpenShiftMachineOSConfigSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OpenShiftMachineOSConfigSpec {
    pub machine_config_pool: NameRef,
}

/// What Strata reads of a MachineConfig: its labels and the OS image it names.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MachineConfig {
    pub metadata: ObjectMeta,
    pub spec: MachineConfigSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MachineConfigSpec {
    #[serde(rename = "osImageURL")]
    pub os_image_url: Option<String>,
}

/// The annotations the MCO keeps on each Node it manages (`pkg/daemon/constants`): the node
/// controller sets `desiredConfig`; the machine-config-daemon the others.
pub mod node_annotations {
    pub const CURRENT_CONFIG: &str = "machineconfiguration.openshift.io/currentConfig";
    pub const DESIRED_CONFIG: &str = "machineconfiguration.openshift.io/desiredConfig";
    pub const STATE: &str = "machineconfiguration.openshift.io/state";
    pub const REASON: &str = "machineconfiguration.openshift.io/reason";
    pub const STATE_DONE: &str = "Done";
    pub const STATE_WORKING: &str = "Working";
    pub const STATE_DEGRADED: &str = "Degraded";
    pub const STATE_UNRECONCILABLE: &str = "Unreconcilable";
}

/// What is read of one Node of a pool: the MCO's annotations, `Ready`, the cordon. Its
/// predicates follow `pkg/controller/common/layered_node_state.go` for a pool that is not
/// OCL-layered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub current: String,
    pub desired: String,
    pub state: String,
    pub reason: String,
    pub ready: bool,
    pub unschedulable: bool,
}

impl NodeView {
    pub fn of(node: &Node) -> Self {
        use node_annotations as a;
        let annotation = |key: &str| {
            node.metadata
                .annotations
                .as_ref()
                .and_then(|all| all.get(key).cloned())
                .unwrap_or_default()
        };
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            current: annotation(a::CURRENT_CONFIG),
            desired: annotation(a::DESIRED_CONFIG),
            state: annotation(a::STATE),
            reason: annotation(a::REASON),
            ready,
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
        }
    }

    /// current = desired, and the daemon says `Done`.
    pub fn done(&self) -> bool {
        !self.current.is_empty()
            && self.current == self.desired
            && self.state == node_annotations::STATE_DONE
    }

    /// Done on `target`.
    pub fn updated(&self, target: &str) -> bool {
        self.done() && self.desired == target
    }

    /// `Ready` and schedulable.
    pub fn available_to_work(&self) -> bool {
        self.ready && !self.unschedulable
    }

    /// The daemon failed (`Degraded` or `Unreconcilable`).
    pub fn failing(&self) -> bool {
        self.state == node_annotations::STATE_DEGRADED
            || self.state == node_annotations::STATE_UNRECONCILABLE
    }

    pub fn unavailable(&self) -> bool {
        if self.current.is_empty() && self.desired.is_empty() {
            // The daemon has not reported yet (the MCO would read the config its first boot
            // wrote): available to be told, once ready.
            return !self.available_to_work();
        }
        !self.available_to_work() || (!self.done() && !self.failing())
    }
}

/// Where one machine stands against the pool's target configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Done on the target.
    Updated,
    /// Not told the target yet: it waits for room under the pool's `maxUnavailable`.
    Waiting,
    /// Told the target, up: its daemon drains, pulls and deploys.
    Updating,
    /// Told the target, not `Ready`: down for the reboot into it.
    Rebooting,
    /// Its daemon failed (`Degraded` or `Unreconcilable`), with the reason it gave.
    Degraded,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Updated,
        Stage::Waiting,
        Stage::Updating,
        Stage::Rebooting,
        Stage::Degraded,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Updated => "updated",
            Stage::Waiting => "waiting",
            Stage::Updating => "updating",
            Stage::Rebooting => "rebooting",
            Stage::Degraded => "degraded",
        }
    }

    /// The stage of `machine` on the way to `target`.
    pub fn of(machine: &NodeView, target: &str) -> Stage {
        if machine.failing() {
            Stage::Degraded
        } else if machine.updated(target) {
            Stage::Updated
        } else if machine.desired != target {
            Stage::Waiting
        } else if !machine.ready {
            Stage::Rebooting
        } else {
            Stage::Updating
        }
    }
}

/// Whether the pool `selector` selects a node with `labels`. No selector selects nothing; an
/// empty one everything (`metav1.LabelSelectorAsSelector`); one that does not parse nothing.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .and_then(|s| Selector::try_from(s.clone()).ok())
        .is_some_and(|s| s.matches(labels))
}

/// The pool a node with `labels` belongs to among `pools` (name, `spec.nodeSelector`), as the
/// MCO decides (`getPrimaryPoolForNode`, `pkg/controller/node/node_controller.go`): `master`
/// when it selects the node; else the one custom pool that does (none when two do: the MCO
/// refuses to manage such a node); else `worker`.
pub fn primary_pool<'p>(
    labels: &BTreeMap<String, String>,
    pools: impl IntoIterator<Item = (&'p str, Option<&'p LabelSelector>)>,
) -> Option<&'p str> {
    let selecting: Vec<&str> = pools
        .into_iter()
        .filter(|(_, selector)| selects(*selector, labels))
        .map(|(name, _)| name)
        .collect();
    if selecting.contains(&"master") {
        return Some("master");
    }
    let custom: Vec<&str> = selecting
        .iter()
        .copied()
        .filter(|name| *name != "worker")
        .collect();
    match custom.as_slice() {
        [one] => Some(one),
        [] => selecting.contains(&"worker").then_some("worker"),
        _ => None,
    }
}

/// The pools' node selectors (MachineConfigPools as the API serves them; a `spec.nodeSelector`
/// that does not read as a selector selects nothing), read once for many nodes.
pub struct PoolSelectors(Vec<(String, Option<LabelSelector>)>);

impl PoolSelectors {
    pub fn of<'p>(pools: impl IntoIterator<Item = &'p DynamicObject>) -> Self {
        Self(
            pools
                .into_iter()
                .map(|p| {
                    let selector =
                        serde_json::from_value(p.data["spec"]["nodeSelector"].clone()).ok();
                    (p.metadata.name.clone().unwrap_or_default(), selector)
                })
                .collect(),
        )
    }

    /// The pool a node with `labels` belongs to ([`primary_pool`]).
    pub fn pool_of(&self, labels: &BTreeMap<String, String>) -> Option<&str> {
        primary_pool(labels, self.0.iter().map(|(n, s)| (n.as_str(), s.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: serde_json::Value) -> LabelSelector {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn a_node_belongs_to_master_else_its_one_custom_pool_else_worker() {
        let worker =
            selector(serde_json::json!({"matchLabels": {"node-role.kubernetes.io/worker": ""}}));
        let infra =
            selector(serde_json::json!({"matchLabels": {"node-role.kubernetes.io/infra": ""}}));
        let gpu = selector(serde_json::json!({"matchExpressions": [
            {"key": "node-role.kubernetes.io/gpu", "operator": "Exists"}]}));
        let master =
            selector(serde_json::json!({"matchLabels": {"node-role.kubernetes.io/master": ""}}));
        let pools = [
            ("worker", Some(&worker)),
            ("infra", Some(&infra)),
            ("gpu", Some(&gpu)),
            ("master", Some(&master)),
            ("unselective", None),
        ];
        let labels = |roles: &[&str]| -> BTreeMap<String, String> {
            roles
                .iter()
                .map(|r| (format!("node-role.kubernetes.io/{r}"), String::new()))
                .collect()
        };
        assert_eq!(primary_pool(&labels(&["worker"]), pools), Some("worker"));
        assert_eq!(
            primary_pool(&labels(&["worker", "infra"]), pools),
            Some("infra")
        );
        assert_eq!(primary_pool(&labels(&["infra"]), pools), Some("infra"));
        assert_eq!(
            primary_pool(&labels(&["master", "worker"]), pools),
            Some("master")
        );
        assert_eq!(
            primary_pool(&labels(&["worker", "infra", "gpu"]), pools),
            None
        );
        assert_eq!(primary_pool(&labels(&[]), pools), None);
        // An empty selector selects every node; no selector none.
        let everything = LabelSelector::default();
        assert!(selects(Some(&everything), &labels(&[])));
        assert!(!selects(None, &labels(&["worker"])));
    }

    #[test]
    fn pools_as_served_are_read_for_their_node_selectors() {
        let pool = |name: &str, spec: serde_json::Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
                "metadata": {"name": name}, "spec": spec}))
            .unwrap()
        };
        let pools = [
            pool(
                "worker",
                serde_json::json!({"nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}}}),
            ),
            pool(
                "infra",
                serde_json::json!({"nodeSelector": {"matchLabels": {"node-role.kubernetes.io/infra": ""}}}),
            ),
            pool("odd", serde_json::json!({"nodeSelector": "not a selector"})),
        ];
        let labels: BTreeMap<String, String> = [
            ("node-role.kubernetes.io/worker".to_string(), String::new()),
            ("node-role.kubernetes.io/infra".to_string(), String::new()),
        ]
        .into();
        let selectors = PoolSelectors::of(&pools);
        assert_eq!(selectors.pool_of(&labels), Some("infra"));
        assert_eq!(selectors.pool_of(&BTreeMap::new()), None);
    }

    #[test]
    fn a_node_is_updated_when_done_on_the_target() {
        use node_annotations as a;
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "worker-0", "annotations": {
                a::CURRENT_CONFIG: "rendered-1", a::DESIRED_CONFIG: "rendered-1", a::STATE: "Done"}},
            "spec": {"unschedulable": false},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let view = NodeView::of(&node);
        assert!(view.updated("rendered-1"));
        assert!(!view.updated("rendered-2"));
        assert!(!view.unavailable());
        let working = NodeView {
            state: a::STATE_WORKING.into(),
            desired: "rendered-2".into(),
            ..view.clone()
        };
        assert!(working.unavailable() && !working.failing());
        let failed = NodeView {
            state: a::STATE_DEGRADED.into(),
            ..working
        };
        assert!(failed.failing() && !failed.unavailable());
    }
}
