//! The MCO's node controller for a pool of real machines (Nodes a machine-config-daemon runs on;
//! here the MCD stand-in, `crate::mcd`): which nodes are told to move to the pool's target next,
//! and the pool's status computed from what the nodes report. Pure; followed from
//! openshift/machine-config-operator for a pool that is not OCL-layered:
//!
//! - node annotations `machineconfiguration.openshift.io/{currentConfig,desiredConfig,state,reason}`
//!   (`pkg/daemon/constants`), written by the daemon except `desiredConfig`, which the node
//!   controller sets;
//! - a node is *done* when current = desired and state `Done`; *updated* when done on the pool's
//!   target; *ready* when its `Ready` condition is true and it is schedulable; *unavailable* when
//!   not ready, or not done and its daemon is not failing (`Degraded`/`Unreconcilable`)
//!   (`pkg/controller/common/layered_node_state.go`; `strata_crds::contract::mco::NodeView`, which
//!   Strata's controller reads machines with too);
//! - candidates: none while `maxUnavailable` nodes are unavailable; nodes failing on the target
//!   count against the room left; the rest, not yet told the target, in name order
//!   (`getAllCandidateMachines`, `pkg/controller/node/node_controller.go`);
//! - the status: counts, `Updated`/`Updating` with the MCO's messages, `NodeDegraded` ("N nodes are
//!   reporting degraded status on sync", "Node X is reporting: \"…\""), `Degraded`, and
//!   `status.configuration` moved to the target only when every machine is updated and ready and
//!   none unavailable (`calculateStatus`, `pkg/controller/node/status.go`).

use serde_json::{Value, json};

pub use strata_crds::contract::mco::NodeView;
pub use strata_crds::contract::mco::node_annotations::{
    CURRENT_CONFIG, DESIRED_CONFIG, REASON, STATE, STATE_DEGRADED, STATE_DONE, STATE_WORKING,
};
/// Nodes of real machines (registered by the MCD stand-in) carry this label.
pub const MACHINE_LABEL: &str = "e2e.strata.dev/machine";

/// The pool's `spec.maxUnavailable` for `machines` machines: a count or a percentage (rounded
/// down), at least 1, default 1.
pub fn max_unavailable(pool: &Value, machines: usize) -> usize {
    let value = &pool["spec"]["maxUnavailable"];
    let n = match (value.as_u64(), value.as_str()) {
        (Some(n), _) => usize::try_from(n).unwrap_or(usize::MAX),
        (None, Some(p)) => p
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map_or(1, |p| machines * p / 100),
        _ => 1,
    };
    n.max(1)
}

/// The nodes to tell `target` now (their `desiredConfig`), within `max_unavailable`.
pub fn candidates(nodes: &[NodeView], target: &str, max_unavailable: usize) -> Vec<String> {
    let unavailable = nodes.iter().filter(|n| n.unavailable()).count();
    let Some(room) = max_unavailable.checked_sub(unavailable) else {
        return Vec::new();
    };
    let failing_on_target = nodes
        .iter()
        .filter(|n| n.desired == target && n.failing())
        .count();
    let Some(room) = room.checked_sub(failing_on_target) else {
        return Vec::new();
    };
    let mut names: Vec<String> = nodes
        .iter()
        .filter(|n| n.desired != target)
        .map(|n| n.name.clone())
        .collect();
    names.sort();
    names.truncate(room);
    names
}

/// Counts of the pool's machines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub machines: usize,
    pub updated: usize,
    pub ready: usize,
    pub unavailable: usize,
    pub degraded: usize,
}

pub fn counts(nodes: &[NodeView], target: &str) -> Counts {
    let count = |f: &dyn Fn(&NodeView) -> bool| nodes.iter().filter(|n| f(n)).count();
    Counts {
        machines: nodes.len(),
        updated: count(&|n| n.updated(target)),
        ready: count(&|n| n.updated(target) && n.available_to_work()),
        unavailable: count(&|n| n.unavailable()),
        degraded: count(&|n| n.failing()),
    }
}

/// The pool's status from its nodes: `pool` as stored (spec and status), `render_error` when the
/// render controller cannot render it (its `RenderDegraded`).
pub fn pool_status(pool: &Value, nodes: &[NodeView], render_error: Option<&str>) -> Value {
    let spec_configuration = &pool["spec"]["configuration"];
    let target = spec_configuration["name"].as_str().unwrap_or_default();
    let c = counts(nodes, target);
    let all_updated = c.updated == c.machines && c.ready == c.machines && c.unavailable == 0;
    let line = format!("MachineConfig {target}");
    let configuration = if all_updated {
        spec_configuration.clone()
    } else {
        pool["status"]["configuration"].clone()
    };
    let paused = pool["spec"]["paused"].as_bool().unwrap_or(false);
    let (updating, updating_message) = match (all_updated, paused) {
        (true, _) => (false, String::new()),
        (false, true) => (false, format!("Pool is paused; will not update to {line}")),
        (false, false) => (true, format!("All nodes are updating to {line}")),
    };
    let degraded: Vec<String> = nodes
        .iter()
        .filter(|n| n.failing() && !n.reason.is_empty())
        .map(|n| format!("Node {} is reporting: {:?}", n.name, n.reason))
        .collect();
    let node_degraded = c.degraded > 0;
    let (node_reason, node_message) = if node_degraded {
        (
            format!("{} nodes are reporting degraded status on sync", c.degraded),
            degraded.join(", "),
        )
    } else {
        (String::new(), String::new())
    };
    let render_message = render_error
        .map(|e| {
            format!(
                "Failed to render configuration for pool {}: {e}",
                pool["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let wanted = [
        (
            "Updated",
            all_updated,
            String::new(),
            if all_updated {
                format!("All nodes are updated with {line}")
            } else {
                String::new()
            },
        ),
        ("Updating", updating, String::new(), updating_message),
        (
            "NodeDegraded",
            node_degraded,
            node_reason,
            node_message.clone(),
        ),
        (
            "RenderDegraded",
            render_error.is_some(),
            String::new(),
            render_message,
        ),
        (
            "Degraded",
            node_degraded || render_error.is_some(),
            String::new(),
            node_message,
        ),
    ];
    json!({
        "observedGeneration": pool["metadata"]["generation"].as_i64().unwrap_or(0),
        "machineCount": c.machines, "updatedMachineCount": c.updated, "readyMachineCount": c.ready,
        "unavailableMachineCount": c.unavailable, "degradedMachineCount": c.degraded,
        "configuration": configuration,
        "conditions": wanted.iter().map(|(ty, on, reason, message)| json!({
            "type": ty, "status": if *on { "True" } else { "False" }, "reason": reason, "message": message,
        })).collect::<Vec<_>>(),
    })
}

/// Whether `stored` (a pool's status) already says what `wanted` says; condition times aside.
pub fn status_matches(stored: &Value, wanted: &Value) -> bool {
    let without_times = |status: &Value| {
        let mut status = status.clone();
        if let Some(conditions) = status["conditions"].as_array_mut() {
            for c in conditions.iter_mut() {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastTransitionTime");
                }
            }
            conditions.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
        }
        status
    };
    wanted.as_object().is_some_and(|w| {
        w.keys()
            .all(|k| without_times(stored)[k] == without_times(wanted)[k])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, current: &str, desired: &str, state: &str) -> NodeView {
        NodeView {
            name: name.into(),
            current: current.into(),
            desired: desired.into(),
            state: state.into(),
            reason: String::new(),
            ready: true,
            unschedulable: false,
        }
    }

    #[test]
    fn one_machine_at_a_time_by_default_and_failing_ones_hold_the_room() {
        let nodes = [
            node("w-1", "r-old", "r-old", STATE_DONE),
            node("w-0", "r-old", "r-old", STATE_DONE),
        ];
        assert_eq!(candidates(&nodes, "r-new", 1), ["w-0"]);
        assert_eq!(candidates(&nodes, "r-new", 2), ["w-0", "w-1"]);
        // w-0 told and working: it is unavailable, so no second machine starts.
        let working = [
            node("w-0", "r-old", "r-new", STATE_WORKING),
            node("w-1", "r-old", "r-old", STATE_DONE),
        ];
        assert!(candidates(&working, "r-new", 1).is_empty());
        // Rebooting (not ready) is unavailable too, even before the daemon says Working.
        let mut rebooting = working.clone();
        rebooting[0].state = STATE_DONE.into();
        rebooting[0].ready = false;
        assert!(candidates(&rebooting, "r-new", 1).is_empty());
        // Degraded on the target: not unavailable, but it holds the room of one.
        let mut failing = working.clone();
        failing[0].state = STATE_DEGRADED.into();
        assert!(candidates(&failing, "r-new", 1).is_empty());
        assert_eq!(candidates(&failing, "r-new", 2), ["w-1"]);
    }

    #[test]
    fn nodes_new_to_the_pool_are_told_one_at_a_time() {
        let new = [node("w-0", "", "", ""), node("w-1", "", "", "")];
        assert_eq!(candidates(&new, "r-1", 1), ["w-0"]);
        let told = [node("w-0", "", "r-1", ""), node("w-1", "", "", "")];
        assert!(candidates(&told, "r-1", 1).is_empty());
        let mut not_ready = new.clone();
        not_ready[0].ready = false;
        assert!(candidates(&not_ready, "r-1", 1).is_empty());
    }

    #[test]
    fn max_unavailable_is_a_count_or_a_percentage() {
        let pool = |v: Value| json!({"spec": {"maxUnavailable": v}});
        assert_eq!(max_unavailable(&json!({}), 4), 1);
        assert_eq!(max_unavailable(&pool(json!(2)), 4), 2);
        assert_eq!(max_unavailable(&pool(json!("50%")), 4), 2);
        assert_eq!(max_unavailable(&pool(json!("10%")), 4), 1);
    }

    fn pool(target: &str, stored: &str) -> Value {
        json!({"metadata": {"name": "layered", "generation": 3},
               "spec": {"configuration": {"name": target}},
               "status": {"configuration": {"name": stored}}})
    }

    #[test]
    fn the_configuration_moves_only_when_every_machine_is_updated() {
        let p = pool("r-new", "r-old");
        let half = [
            node("w-0", "r-new", "r-new", STATE_DONE),
            node("w-1", "r-old", "r-new", STATE_WORKING),
        ];
        let status = pool_status(&p, &half, None);
        assert_eq!(status["configuration"]["name"], "r-old");
        assert_eq!(status["updatedMachineCount"], 1);
        assert_eq!(status["unavailableMachineCount"], 1);
        let updating = &status["conditions"][1];
        assert_eq!(updating["status"], "True");
        assert_eq!(
            updating["message"],
            "All nodes are updating to MachineConfig r-new"
        );
        let all = [
            node("w-0", "r-new", "r-new", STATE_DONE),
            node("w-1", "r-new", "r-new", STATE_DONE),
        ];
        let status = pool_status(&p, &all, None);
        assert_eq!(status["configuration"]["name"], "r-new");
        assert_eq!(status["readyMachineCount"], 2);
        assert_eq!(
            status["conditions"][0]["message"],
            "All nodes are updated with MachineConfig r-new"
        );
        // Updated but cordoned (not ready): not yet.
        let mut cordoned = all.clone();
        cordoned[1].unschedulable = true;
        assert_eq!(
            pool_status(&p, &cordoned, None)["configuration"]["name"],
            "r-old"
        );
    }

    #[test]
    fn a_degraded_machine_is_named_as_the_mco_words_it() {
        let mut bad = node("w-1", "r-old", "r-new", STATE_DEGRADED);
        bad.reason = "expected target osImageURL \"a\", have \"b\"".into();
        let nodes = [node("w-0", "r-new", "r-new", STATE_DONE), bad];
        let status = pool_status(&pool("r-new", "r-old"), &nodes, None);
        let node_degraded = &status["conditions"][2];
        assert_eq!(node_degraded["status"], "True");
        assert_eq!(
            node_degraded["reason"],
            "1 nodes are reporting degraded status on sync"
        );
        assert_eq!(
            node_degraded["message"],
            "Node w-1 is reporting: \"expected target osImageURL \\\"a\\\", have \\\"b\\\"\""
        );
        assert_eq!(status["conditions"][4]["status"], "True");
        assert_eq!(status["degradedMachineCount"], 1);
        assert_eq!(status["unavailableMachineCount"], 0);
    }

    #[test]
    fn stored_status_compares_without_condition_times() {
        let p = pool("r-new", "r-old");
        let wanted = pool_status(&p, &[node("w-0", "r-new", "r-new", STATE_DONE)], None);
        let mut stored = wanted.clone();
        stored["conditions"][0]["lastTransitionTime"] = json!("2026-12-06T10:00:00Z");
        stored["conditions"].as_array_mut().unwrap().reverse();
        stored["certExpirys"] = json!([]);
        assert!(status_matches(&stored, &wanted));
        stored["updatedMachineCount"] = json!(0);
        assert!(!status_matches(&stored, &wanted));
    }
}
