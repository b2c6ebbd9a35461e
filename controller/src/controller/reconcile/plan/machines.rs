//! How far each of a pool's machines got towards the pool's target configuration, read from the
//! MCO's node annotations (as `pkg/controller/common/layered_node_state.go` reads them): what
//! PoolUpdated says by name ("worker-1 is rebooting") and the counts the metrics carry.

use strata_crds::contract::keep_head;
use strata_crds::contract::mco::{NodeView, Stage};

/// The number of machines at each stage, in [`Stage::ALL`]'s order.
pub fn counts(machines: &[NodeView], target: &str) -> [(Stage, usize); 5] {
    Stage::ALL.map(|stage| {
        let n = machines
            .iter()
            .filter(|m| Stage::of(m, target) == stage)
            .count();
        (stage, n)
    })
}

/// Names shown at most in one list; the rest are counted.
const NAMES_SHOWN: usize = 3;
/// What is kept of a daemon's reason in a message.
const REASON_KEPT: usize = 300;

/// The machines on their way, by name: "worker-1 is rebooting; worker-0 and worker-2 are
/// updating; 3 wait their turn". Empty when none is.
pub fn in_flight(machines: &[NodeView], target: &str) -> String {
    let at = |stage: Stage| -> Vec<&str> {
        machines
            .iter()
            .filter(|m| Stage::of(m, target) == stage)
            .map(|m| m.name.as_str())
            .collect()
    };
    let mut parts = Vec::new();
    for (stage, doing) in [
        (Stage::Rebooting, "rebooting"),
        (Stage::Updating, "updating"),
    ] {
        let names = at(stage);
        if !names.is_empty() {
            let verb = if names.len() == 1 { "is" } else { "are" };
            parts.push(format!("{} {verb} {doing}", listed(&names)));
        }
    }
    match at(Stage::Waiting).len() {
        0 => {}
        1 => parts.push("1 waits its turn".into()),
        n => parts.push(format!("{n} wait their turn")),
    }
    parts.join("; ")
}

/// The failing machines and why, by name: "worker-1 (…reason…)". Empty when none fails.
pub fn failing(machines: &[NodeView]) -> String {
    let failing: Vec<&NodeView> = machines.iter().filter(|m| m.failing()).collect();
    let mut shown: Vec<String> = failing
        .iter()
        .take(NAMES_SHOWN)
        .map(|m| {
            let reason = if m.reason.is_empty() {
                "no reason given".to_string()
            } else {
                keep_head(&m.reason, REASON_KEPT)
            };
            format!("{} ({reason})", m.name)
        })
        .collect();
    if failing.len() > NAMES_SHOWN {
        shown.push(format!("{} more", failing.len() - NAMES_SHOWN));
    }
    shown.join("; ")
}

/// "a", "a and b", "a, b, c and 2 more".
fn listed(names: &[&str]) -> String {
    let shown = &names[..names.len().min(NAMES_SHOWN)];
    let rest = names.len() - shown.len();
    match (shown, rest) {
        ([one], 0) => (*one).to_string(),
        (_, 0) => {
            let (last, first) = shown.split_last().map_or(("", &[][..]), |(l, f)| (*l, f));
            format!("{} and {last}", first.join(", "))
        }
        _ => format!("{} and {rest} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_crds::contract::mco::node_annotations as a;

    const TARGET: &str = "rendered-worker-2";

    fn machine(name: &str, current: &str, desired: &str, state: &str, ready: bool) -> NodeView {
        NodeView {
            name: name.into(),
            current: current.into(),
            desired: desired.into(),
            state: state.into(),
            ready,
            ..NodeView::default()
        }
    }

    fn rolling() -> Vec<NodeView> {
        vec![
            machine("worker-0", TARGET, TARGET, a::STATE_DONE, true),
            machine(
                "worker-1",
                "rendered-worker-1",
                TARGET,
                a::STATE_WORKING,
                false,
            ),
            machine(
                "worker-2",
                "rendered-worker-1",
                TARGET,
                a::STATE_WORKING,
                true,
            ),
            machine(
                "worker-3",
                "rendered-worker-1",
                "rendered-worker-1",
                a::STATE_DONE,
                true,
            ),
        ]
    }

    #[test]
    fn each_machine_has_a_stage() {
        let stages: Vec<Stage> = rolling().iter().map(|m| Stage::of(m, TARGET)).collect();
        assert_eq!(
            stages,
            [
                Stage::Updated,
                Stage::Rebooting,
                Stage::Updating,
                Stage::Waiting
            ]
        );
        let failed = NodeView {
            state: a::STATE_DEGRADED.into(),
            ..rolling()[1].clone()
        };
        assert_eq!(Stage::of(&failed, TARGET), Stage::Degraded);
        let counts = counts(&rolling(), TARGET);
        assert_eq!(
            counts.map(|(s, n)| (s.label(), n)),
            [
                ("updated", 1),
                ("waiting", 1),
                ("updating", 1),
                ("rebooting", 1),
                ("degraded", 0)
            ]
        );
    }

    #[test]
    fn the_machines_on_their_way_are_named() {
        assert_eq!(
            in_flight(&rolling(), TARGET),
            "worker-1 is rebooting; worker-2 is updating; 1 waits its turn"
        );
        let many: Vec<NodeView> = (0..6)
            .map(|i| machine(&format!("w{i}"), "old", TARGET, a::STATE_WORKING, true))
            .collect();
        assert_eq!(
            in_flight(&many, TARGET),
            "w0, w1, w2 and 3 more are updating"
        );
        assert_eq!(in_flight(&many[..2], TARGET), "w0 and w1 are updating");
        let done = vec![rolling()[0].clone()];
        assert_eq!(in_flight(&done, TARGET), "");
    }

    #[test]
    fn failing_machines_say_why_in_bounded_words() {
        let mut machines = rolling();
        machines[1].state = a::STATE_DEGRADED.into();
        machines[1].reason =
            "expected target osImageURL \"r/os@sha256:2\", have \"r/os@sha256:1\"".into();
        assert_eq!(
            failing(&machines),
            "worker-1 (expected target osImageURL \"r/os@sha256:2\", have \"r/os@sha256:1\")"
        );
        machines[2].state = a::STATE_UNRECONCILABLE.into();
        machines[2].reason = "x".repeat(1000);
        let said = failing(&machines);
        assert!(said.starts_with("worker-1 ("), "{said}");
        assert!(said.len() < 700, "{}", said.len());
        assert_eq!(failing(&rolling()), "");
    }
}
