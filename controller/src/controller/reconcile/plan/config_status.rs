//! The MachineOSConfig's status as the planner builds it: a condition writer that holds the
//! generation and the time, and PoolUpdated from the pool and its rendered configuration.

use k8s_openapi::jiff::Timestamp;
use strata_crds::contract::mco;
use strata_crds::{MachineOSConfig, MachineOSConfigStatus, condition_types as ct};

use super::machines;
use crate::controller::conditions;

/// The status being planned, plus what the planner learnt on the way that only shapes messages.
pub struct ConfigStatus {
    status: MachineOSConfigStatus,
    generation: Option<i64>,
    now: Timestamp,
    /// Why the pushed digest is not verified yet (the registry could not be asked).
    pub verifying: Option<String>,
    /// What the kubelet says about a builder pod that cannot start.
    pub waiting_message: Option<String>,
}

impl std::ops::Deref for ConfigStatus {
    type Target = MachineOSConfigStatus;
    fn deref(&self) -> &Self::Target {
        &self.status
    }
}

impl std::ops::DerefMut for ConfigStatus {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.status
    }
}

impl ConfigStatus {
    pub fn new(config: &MachineOSConfig, now: Timestamp) -> Self {
        let mut status = config.status.clone().unwrap_or_default();
        status.observed_generation = config.metadata.generation;
        Self {
            status,
            generation: config.metadata.generation,
            now,
            verifying: None,
            waiting_message: None,
        }
    }

    /// Sets a condition; its transition time moves only when its status does.
    pub fn set(&mut self, type_: &str, value: bool, reason: &str, message: String) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            value,
            reason,
            message,
            self.generation,
            self.now,
        );
    }

    pub fn is_true(&self, type_: &str) -> bool {
        conditions::is_true(&self.status.conditions, type_)
    }

    /// Whether condition `type_` is True with exactly this message (an Event was recorded then).
    pub fn has_message(&self, type_: &str, message: &str) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True" && c.message == message)
    }

    /// While a build runs the pool does not run the current inputs yet: Ready is False and says
    /// which image the pool keeps meanwhile.
    pub fn not_ready_while_building(&mut self, build: &str) {
        let message = match &self.status.current_image_pull_spec {
            Some(image) => format!("the pool keeps {image} until build {build} succeeds"),
            None => format!("waiting for the first build, {build}"),
        };
        self.set(ct::READY, false, "Building", message);
    }

    /// The status to write, when it differs from `old`.
    pub fn into_change(self, old: Option<&MachineOSConfigStatus>) -> Option<MachineOSConfigStatus> {
        (old != Some(&self.status)).then_some(self.status)
    }
}

/// PoolUpdated as (value, reason, message): True only when the configuration the pool runs
/// (`status.configuration`, which the MCO moves only once every machine is updated) carries
/// `pinned` and every machine has it. While the MCO rolls the pool to a target
/// (`spec.configuration`) that carries it, how far it got: by machine when the pool's `machines`
/// are known (which is rebooting, which is updating, which failed and why), else by the pool's
/// counts (which the MCO keeps against the target). `target` falls back to `rendered` when
/// unknown.
pub fn pool_updated(
    pool: &mco::MachineConfigPool,
    rendered: Option<&mco::MachineConfig>,
    target: Option<&mco::MachineConfig>,
    machines: &[mco::NodeView],
    pinned: Option<&str>,
) -> (bool, &'static str, String) {
    let status = &pool.status;
    let Some(pinned) = pinned else {
        return (
            false,
            "NoImage",
            "no image is pinned yet; the pool runs the release's stock image".into(),
        );
    };
    let image_of = |mc: Option<&mco::MachineConfig>| mc.and_then(|r| r.spec.os_image_url.clone());
    let (target, target_name) = match target {
        Some(t) => (Some(t), pool.spec.configuration.name.as_deref()),
        None => (rendered, status.configuration.name.as_deref()),
    };
    let target_name = target_name.unwrap_or("<none>");
    let target_image = image_of(target);
    if target_image.as_deref() != Some(pinned) {
        return (
            false,
            "RenderPending",
            format!(
                "the pool's configuration {target_name} does not carry {pinned} yet (it has {})",
                target_image.as_deref().unwrap_or("no osImageURL")
            ),
        );
    }
    if status.observed_generation < pool.metadata.generation.unwrap_or(0) {
        return (
            false,
            "PoolUpdating",
            format!("the MCO has not counted the machines against {target_name} yet"),
        );
    }
    // By machine when they are known, else the pool's counts.
    let (machine_count, updated) = if machines.is_empty() {
        (status.machine_count, status.updated_machine_count)
    } else {
        let updated = machines.iter().filter(|m| m.updated(target_name)).count();
        (count(machines.len()), count(updated))
    };
    let failing = machines::failing(machines);
    if !failing.is_empty() {
        return (
            false,
            "PoolDegraded",
            format!(
                "failing to update to {target_name} ({pinned}): {failing}; {updated} of {machine_count} machines run it"
            ),
        );
    }
    let degraded = status.degraded_machine_count;
    if degraded > 0 {
        return (
            false,
            "PoolDegraded",
            format!("{degraded} of {machine_count} machines are degraded; {updated} run {pinned}"),
        );
    }
    let runs = image_of(rendered).as_deref() == Some(pinned);
    if runs && status.is("Updated") && !status.is("Updating") && updated == machine_count {
        return (
            true,
            "PoolUpdated",
            format!("all {machine_count} machines run {pinned} ({target_name})"),
        );
    }
    let on_their_way = machines::in_flight(machines, target_name);
    let on_their_way = if on_their_way.is_empty() {
        String::new()
    } else {
        format!("; {on_their_way}")
    };
    (
        false,
        "PoolUpdating",
        format!(
            "{updated} of {machine_count} machines run {pinned}{on_their_way}; the MCO is rolling the pool to {target_name}"
        ),
    )
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::fixtures::view;

    const IMAGE: &str = "r.example.com/os@sha256:1";

    fn pool(updated: i64, updating: bool) -> mco::MachineConfigPool {
        view(json!({"status": {
            "configuration": {"name": "rendered-worker-1"},
            "machineCount": 3, "updatedMachineCount": updated, "degradedMachineCount": 0,
            "conditions": [
                {"type": "Updated", "status": if updating {"False"} else {"True"}},
                {"type": "Updating", "status": if updating {"True"} else {"False"}},
            ],
        }}))
    }

    #[test]
    fn updated_only_when_the_rendered_configuration_carries_the_pinned_image() {
        let rendered: mco::MachineConfig = view(json!({"spec": {"osImageURL": IMAGE}}));
        let stale: mco::MachineConfig =
            view(json!({"spec": {"osImageURL": "r.example.com/os@sha256:0"}}));
        let updated = |p: &mco::MachineConfigPool, current, target| {
            pool_updated(p, Some(current), target, &[], Some(IMAGE))
        };
        assert_eq!(updated(&pool(3, false), &rendered, None).1, "PoolUpdated");
        assert!(updated(&pool(3, false), &rendered, Some(&rendered)).0);
        // The pool says Updated, but with a configuration from before the pin.
        assert_eq!(updated(&pool(3, false), &stale, None).1, "RenderPending");
        assert_eq!(
            updated(&pool(3, false), &stale, Some(&stale)).1,
            "RenderPending"
        );
        assert_eq!(updated(&pool(1, true), &rendered, None).1, "PoolUpdating");
        assert_eq!(
            pool_updated(&pool(3, false), None, None, &[], None).1,
            "NoImage"
        );
        let mut degraded = pool(2, true);
        degraded.status.degraded_machine_count = 1;
        assert_eq!(updated(&degraded, &rendered, None).1, "PoolDegraded");
    }

    /// As the MCO rolls: `status.configuration` keeps the old config until every machine is
    /// updated, `spec.configuration` names the target, and the counts are against the target.
    #[test]
    fn progress_while_the_mco_rolls_to_a_target_carrying_the_pin() {
        let target: mco::MachineConfig = view(json!({"spec": {"osImageURL": IMAGE}}));
        let before: mco::MachineConfig =
            view(json!({"spec": {"osImageURL": "r.example.com/os@sha256:0"}}));
        let mut rolling = pool(1, true);
        rolling.spec.configuration.name = Some("rendered-worker-2".into());
        let (value, reason, message) =
            pool_updated(&rolling, Some(&before), Some(&target), &[], Some(IMAGE));
        assert!(!value);
        assert_eq!(reason, "PoolUpdating");
        assert_eq!(
            message,
            format!(
                "1 of 3 machines run {IMAGE}; the MCO is rolling the pool to rendered-worker-2"
            )
        );
        // All updated, the configuration moved: updated.
        let mut done = pool(3, false);
        done.spec.configuration.name = Some("rendered-worker-2".into());
        assert!(pool_updated(&done, Some(&target), Some(&target), &[], Some(IMAGE)).0);
        // Updated with the old configuration still current: not yet.
        assert_eq!(
            pool_updated(&done, Some(&before), Some(&target), &[], Some(IMAGE)).1,
            "PoolUpdating"
        );
        // The target just moved and the MCO has not counted against it yet: no stale counts.
        let mut fresh = rolling.clone();
        fresh.metadata.generation = Some(4);
        fresh.status.observed_generation = 3;
        fresh.status.updated_machine_count = 3;
        assert_eq!(
            pool_updated(&fresh, Some(&before), Some(&target), &[], Some(IMAGE)),
            (
                false,
                "PoolUpdating",
                "the MCO has not counted the machines against rendered-worker-2 yet".into()
            )
        );
        // A newer target without the pin (a new release being built for): pending again.
        assert_eq!(
            pool_updated(&done, Some(&target), Some(&before), &[], Some(IMAGE)).1,
            "RenderPending"
        );
    }

    /// With the pool's machines known, progress names them, and a machine that failed says why.
    #[test]
    fn progress_by_machine_names_the_machines_on_their_way_and_the_failing_ones() {
        use strata_crds::contract::mco::{NodeView, node_annotations as a};
        let target: mco::MachineConfig = view(json!({"spec": {"osImageURL": IMAGE}}));
        let before: mco::MachineConfig =
            view(json!({"spec": {"osImageURL": "r.example.com/os@sha256:0"}}));
        let mut rolling = pool(1, true);
        rolling.spec.configuration.name = Some("rendered-worker-2".into());
        let machine = |name: &str, current: &str, state: &str, ready: bool| NodeView {
            name: name.into(),
            current: current.into(),
            desired: "rendered-worker-2".into(),
            state: state.into(),
            ready,
            ..NodeView::default()
        };
        let mut machines = vec![
            machine("worker-0", "rendered-worker-2", a::STATE_DONE, true),
            machine("worker-1", "rendered-worker-1", a::STATE_WORKING, false),
        ];
        let said = pool_updated(
            &rolling,
            Some(&before),
            Some(&target),
            &machines,
            Some(IMAGE),
        );
        assert_eq!(
            said,
            (
                false,
                "PoolUpdating",
                format!(
                    "1 of 2 machines run {IMAGE}; worker-1 is rebooting; the MCO is rolling the pool to rendered-worker-2"
                )
            )
        );
        // It came back on the old deployment: its daemon says so, and so does Strata.
        machines[1].state = a::STATE_DEGRADED.into();
        machines[1].reason =
            "expected target osImageURL \"r/os@sha256:1\", have \"r/os@sha256:0\"".into();
        machines[1].ready = true;
        let (value, reason, message) = pool_updated(
            &rolling,
            Some(&before),
            Some(&target),
            &machines,
            Some(IMAGE),
        );
        assert!(!value);
        assert_eq!(reason, "PoolDegraded");
        assert_eq!(
            message,
            format!(
                "failing to update to rendered-worker-2 ({IMAGE}): worker-1 (expected target osImageURL \"r/os@sha256:1\", have \"r/os@sha256:0\"); 1 of 2 machines run it"
            )
        );
    }
}
