//! A degraded pool holds Strata back as it holds back the MCO. The MCO's build controller starts
//! no build, and reuses no earlier one, for a pool that is `NodeDegraded`, `RenderDegraded`,
//! `PinnedImageSetsDegraded` or `PoolSynchronizerDegraded`; a pool degraded only by a failed image
//! build (`ImageBuildDegraded`) still builds, so a retry can clear it
//! (`buildReconciler.shouldPreventBuildDueToDegradation`, called first thing by
//! `createNewMachineOSBuildOrReuseExisting`, in openshift/machine-config-operator
//! `pkg/controller/build/reconciler.go`; the node controller's `calculateStatus` in
//! `pkg/controller/node/status.go` reports such a pool as "Pool update paused due to degraded
//! condition").
//!
//! Strata checks the same four conditions. While one is True it creates no build and no builder
//! Job, rebuilds nothing (the rebuild annotation waits), and writes no MachineConfig: neither the
//! pin of a new build nor of an earlier one reused. A build already running goes on, as in the
//! MCO, and is pinned once the pool recovers. Nor does Strata take a new hold (`spec.paused`) of a
//! degraded pool: that would keep the MCO from rolling out the fix that clears the degradation.
//! WaitingForPool says what waits and on which condition, with a Warning Event named after that
//! condition when it changes (one reason per condition: kube's recorder folds an Event of the
//! same reason about the same build into the first one's series, keeping its note) and a Normal
//! `PoolRecovered` when the pool recovers; the metric `strata_config_waiting_for_pool` follows.

use strata_crds::condition_types as ct;
use strata_crds::contract::mco;

use super::{EventType, Planner};

/// The pool conditions that hold builds and pins back, in the order the MCO lists them.
pub const HOLDING: [&str; 4] = [
    "NodeDegraded",
    "RenderDegraded",
    "PinnedImageSetsDegraded",
    "PoolSynchronizerDegraded",
];

/// Longest pool text carried into a condition (the MCO's NodeDegraded message names every
/// degraded node).
const MAX_SAID: usize = 1024;

/// Why the pool holds Strata back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degradation {
    /// The first of [`HOLDING`] that is True: WaitingForPool's reason, the metric's label.
    pub condition: &'static str,
    /// What the pool says: each holding condition that is True, with its reason and message.
    pub said: String,
}

/// The pool's degradation, when one of [`HOLDING`] is True (`ImageBuildDegraded` and the
/// aggregate `Degraded` alone hold nothing back, as in the MCO).
pub fn degradation(pool: &mco::MachineConfigPool) -> Option<Degradation> {
    let degraded: Vec<(&'static str, &mco::PoolCondition)> = HOLDING
        .iter()
        .filter_map(|ty| {
            pool.status
                .conditions
                .iter()
                .find(|c| c.type_ == *ty && c.status == "True")
                .map(|c| (*ty, c))
        })
        .collect();
    let (condition, _) = degraded.first()?;
    let said: Vec<String> = degraded.iter().map(|(_, c)| describe(c)).collect();
    let mut said = said.join("; ");
    if said.chars().count() > MAX_SAID {
        said = said.chars().take(MAX_SAID).collect::<String>() + "…";
    }
    Some(Degradation { condition, said })
}

/// `NodeDegraded (<reason>): <message>`, leaving out what the MCO left empty.
fn describe(c: &mco::PoolCondition) -> String {
    match (c.reason.trim(), c.message.trim()) {
        ("", "") => c.type_.clone(),
        (reason, "") => format!("{} ({reason})", c.type_),
        ("", message) => format!("{}: {message}", c.type_),
        (reason, message) => format!("{} ({reason}): {message}", c.type_),
    }
}

/// WaitingForPool, its Events and its metric, from what this round held back.
pub(super) fn report(planner: &mut Planner<'_>) {
    let o = planner.observed;
    let pool = o.config.spec.machine_config_pool.name.clone();
    let was = planner
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == ct::WAITING_FOR_POOL)
        .map(|c| (c.status == "True", c.reason.clone()));
    let was_waiting = was.as_ref().is_some_and(|(waiting, _)| *waiting);
    match planner.degraded.clone() {
        Some(d) if !planner.held_back.is_empty() => {
            let held = planner.held_back.join(", ");
            let message = format!(
                "waiting: {held}; pool {pool} is {}. As the MCO does, Strata starts no build and \
                 pins nothing while the pool is {}",
                d.said,
                HOLDING.join(", ")
            );
            let same = was.as_ref().is_some_and(|(w, r)| *w && r == d.condition);
            if !same {
                planner.event(
                    EventType::Warning,
                    d.condition,
                    "WaitForPool",
                    message.clone(),
                );
            }
            planner
                .status
                .set(ct::WAITING_FOR_POOL, true, d.condition, message);
            planner.status.set(
                ct::BUILDING,
                false,
                "WaitingForPool",
                format!(
                    "{held} waits until pool {pool} is no longer {}",
                    d.condition
                ),
            );
            planner.plan.metrics.waiting_for_pool = Some(d.condition.to_string());
        }
        Some(d) if was_waiting => planner.status.set(
            ct::WAITING_FOR_POOL,
            false,
            "NothingWaiting",
            format!(
                "pool {pool} is still {}, but nothing of this MachineOSConfig waits on it",
                d.condition
            ),
        ),
        None if was_waiting => {
            let message = format!("pool {pool} is no longer degraded; Strata goes on");
            planner.status.set(
                ct::WAITING_FOR_POOL,
                false,
                "PoolRecovered",
                message.clone(),
            );
            planner.event(EventType::Normal, "PoolRecovered", "WaitForPool", message);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::fixtures::view;

    fn pool(conditions: serde_json::Value) -> mco::MachineConfigPool {
        view(json!({"status": {"conditions": conditions}}))
    }

    #[test]
    fn the_mcos_four_conditions_hold_and_a_failed_image_build_alone_does_not() {
        for ty in HOLDING {
            let d = degradation(&pool(json!([{"type": ty, "status": "True"}]))).unwrap();
            assert_eq!(d.condition, ty);
        }
        for alone in ["ImageBuildDegraded", "Degraded", "Updating"] {
            assert_eq!(
                degradation(&pool(json!([
                    {"type": alone, "status": "True"},
                    {"type": "NodeDegraded", "status": "False"},
                ]))),
                None,
                "{alone}"
            );
        }
    }

    #[test]
    fn the_first_condition_is_the_reason_and_every_one_is_told() {
        let d = degradation(&pool(json!([
            {"type": "RenderDegraded", "status": "True", "reason": "",
             "message": "Failed to render configuration for pool worker: bad ignition"},
            {"type": "NodeDegraded", "status": "True",
             "reason": "1 nodes are reporting degraded status on sync",
             "message": "Node w1 is reporting: \"disk full\""},
        ])))
        .unwrap();
        assert_eq!(d.condition, "NodeDegraded");
        assert_eq!(
            d.said,
            "NodeDegraded (1 nodes are reporting degraded status on sync): Node w1 is reporting: \
             \"disk full\"; RenderDegraded: Failed to render configuration for pool worker: bad \
             ignition"
        );
        let long = "x".repeat(5000);
        let d = degradation(&pool(
            json!([{"type": "NodeDegraded", "status": "True", "message": long}]),
        ))
        .unwrap();
        assert!(d.said.chars().count() <= MAX_SAID + 1, "{}", d.said.len());
    }
}
