//! The builds section's figures: cold builds through Strata and their phases and steps, the same
//! build on the host, rebuilds, the second pool.

use crate::build::StrataRun;
use crate::host::HostBuild;
use crate::sections::State;

use super::{Report, requests};

const SECTION: &str = "builds";

/// Cold builds, the host's, rebuilds, the second pool; per builder step its resources.
pub fn rows(state: &State, report: &mut Report) {
    cold_times(&state.cold, report);
    cold_steps(&state.cold, report);
    cold_sizes(&state.cold, report);
    host(&state.host, &state.host_own, report);
    rebuilds(state, report);
    cold_registry(&state.cold, report);
    if let Some(last) = state.cold.last() {
        report.key("last_cold_build", last.build.clone());
    }
    if let Some((total, layers)) = state.base_uncompressed {
        report.key("base_uncompressed_bytes", total);
        report.key("base_layers", layers as u64);
    }
}

/// One figure of a run.
type Figure = fn(&StrataRun) -> f64;

/// One figure of every run.
fn each(runs: &[StrataRun], f: Figure) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// The cold build's path as a user sees it, then as the builder timed its phases.
fn cold_times(cold: &[StrataRun], report: &mut Report) {
    let path: [(&str, Figure); 4] = [
        ("Strata cold: apply → pinned", |r| r.apply_to_pinned),
        ("Strata cold: apply → builder pod", |r| r.apply_to_pod),
        ("Strata cold: pod → push done", |r| r.pod_to_done),
        ("Strata cold: push done → pinned", |r| r.done_to_pinned),
    ];
    for (what, f) in path {
        report.add(SECTION, what, "s", each(cold, f), "");
    }
    for phase in ["pull", "build", "lint", "push"] {
        let values: Vec<f64> = cold.iter().filter_map(|r| r.phase(phase)).collect();
        report.add(
            SECTION,
            format!("Strata cold: builder phase {phase}"),
            "s",
            values,
            "status.phases",
        );
    }
}

/// Each builder step's peak memory and CPU time.
fn cold_steps(cold: &[StrataRun], report: &mut Report) {
    for step in ["pull", "build", "push"] {
        let usage: Vec<_> = cold.iter().filter_map(|r| r.step(step)).collect();
        // What the pod spec asked for, beside what the step used.
        let declared = cold
            .iter()
            .flat_map(|r| &r.steps)
            .find(|s| s.name == step)
            .map(|s| s.resources.clone())
            .unwrap_or_default();
        report.add(
            SECTION,
            format!("Strata cold: step {step} peak RSS"),
            "B",
            usage.iter().map(|u| u.peak_rss_bytes as f64).collect(),
            declared,
        );
        report.add(
            SECTION,
            format!("Strata cold: step {step} CPU"),
            "s",
            usage.iter().map(|u| u.cpu_seconds).collect(),
            "",
        );
    }
}

fn cold_sizes(cold: &[StrataRun], report: &mut Report) {
    report.add(
        SECTION,
        "Strata cold: peak disk (pod volumes and cache claim)",
        "B",
        each(cold, |r| r.peak_disk_bytes as f64),
        "",
    );
    report.add(
        SECTION,
        "Strata cold: image size (uncompressed)",
        "B",
        each(cold, |r| r.image_size_bytes as f64),
        "",
    );
}

/// The same build on the host: by the builder image's buildah (each phase), by the host's own.
fn host(host: &[HostBuild], own: &[HostBuild], report: &mut Report) {
    report.add(
        SECTION,
        "host buildah (pull + bud + push)",
        "s",
        host.iter().map(HostBuild::total).collect(),
        "the builder image's buildah in a container of the node's containerd; overlay storage, same Containerfile",
    );
    type Phase = fn(&HostBuild) -> f64;
    let phases: [(&str, Phase); 3] = [
        ("pull", |h| h.pull_seconds),
        ("bud", |h| h.bud_seconds),
        ("push", |h| h.push_seconds),
    ];
    for (phase, f) in phases {
        report.add(
            SECTION,
            format!("host buildah: {phase}"),
            "s",
            host.iter().map(f).collect(),
            "",
        );
    }
    report.add(
        SECTION,
        "host's own buildah (pull + bud + push)",
        "s",
        own.iter().map(HostBuild::total).collect(),
        "Debian's package on the host (its version in Machine and versions)",
    );
    report.add(
        SECTION,
        "host buildah peak disk",
        "B",
        host.iter().map(|h| h.peak_disk_bytes as f64).collect(),
        "",
    );
}

/// Rebuilds changing the last step, and the second pool on the same base.
fn rebuilds(state: &State, report: &mut Report) {
    report.add(
        SECTION,
        "Strata rebuild (last step changed): apply → pinned",
        "s",
        each(&state.rebuild, |r| r.apply_to_pinned),
        "",
    );
    pod_split("Strata rebuild", &state.rebuild, report);
    report.add(
        SECTION,
        "Strata rebuild: bytes uploaded",
        "B",
        state
            .rebuild_push
            .iter()
            .map(|(up, _)| *up as f64)
            .collect(),
        "blobs whose upload the pod completed, by the registry's log",
    );
    report.add(
        SECTION,
        "Strata rebuild: its new layers and config (compressed)",
        "B",
        state
            .rebuild_push
            .iter()
            .map(|(_, new)| *new as f64)
            .collect(),
        "the pushed manifest's blobs the previous image lacks",
    );
    upgrade(state, report);
    report.add(
        SECTION,
        "4 pools rebuilt at once: apply → each pinned",
        "s",
        state.concurrent.clone(),
        "each its last step changed, on its own store on the claim",
    );
    report.add(
        SECTION,
        "Strata cold: base bytes pulled",
        "B",
        each(&state.cold, |r| r.base_bytes_pulled as f64),
        "the positive control of the second pool's count: the same counter on an empty claim",
    );
    if let Some(second) = &state.second {
        report.add(
            SECTION,
            "second pool: base bytes pulled",
            "B",
            vec![second.base_bytes_pulled as f64],
            "",
        );
        report.add(
            SECTION,
            "second pool: apply → pinned",
            "s",
            vec![second.apply_to_pinned],
            "",
        );
    }
}

/// The release upgrade: time, base bytes pulled against the changed layers, its pod's split.
fn upgrade(state: &State, report: &mut Report) {
    let Some(u) = &state.upgrade else {
        return;
    };
    let what = format!("release upgrade ({} base layers changed)", u.changed_layers);
    report.add(
        SECTION,
        format!("{what}: apply → pinned"),
        "s",
        vec![u.run.apply_to_pinned],
        "the last config rebuilt on the next release's base, its fragment unchanged",
    );
    report.add(
        SECTION,
        format!("{what}: base bytes pulled"),
        "B",
        vec![u.run.base_bytes_pulled as f64],
        "",
    );
    report.add(
        SECTION,
        format!("{what}: changed layers (compressed)"),
        "B",
        vec![u.changed_bytes as f64],
        "",
    );
    pod_split(&what, std::slice::from_ref(&u.run), report);
}

/// Where `runs`' time went: apply → pod, the pod's time split (its steps' work and its
/// lifecycle, `lifecycle::split`), its end seen → pinned.
fn pod_split(what: &str, runs: &[StrataRun], report: &mut Report) {
    report.add(
        SECTION,
        format!("{what}: apply → builder pod seen"),
        "s",
        each(runs, |r| r.apply_to_pod),
        "",
    );
    let names: Vec<&String> = runs
        .first()
        .map(|r| r.lifecycle.iter().map(|(n, _)| n).collect())
        .unwrap_or_default();
    for name in names {
        let values = runs
            .iter()
            .filter_map(|r| r.lifecycle.iter().find(|(n, _)| n == name).map(|(_, s)| *s))
            .collect();
        report.add(
            SECTION,
            format!("{what}: {name}"),
            "s",
            values,
            "containerd's times; phases: status.phases",
        );
    }
    report.add(
        SECTION,
        format!("{what}: pod time outside its steps' work"),
        "s",
        each(runs, |r| r.lifecycle_seconds),
        "pod seen → its end seen, less the phases",
    );
    report.add(
        SECTION,
        format!("{what}: pod end seen → pinned"),
        "s",
        each(runs, |r| r.done_to_pinned),
        "",
    );
}

/// What the builder pod and the controller asked the registry during the cold builds.
fn cold_registry(cold: &[StrataRun], report: &mut Report) {
    report.add(
        SECTION,
        "Strata cold: registry requests by the builder pod",
        "",
        each(cold, |r| requests(&r.pod_registry) as f64),
        "",
    );
    report.add(
        SECTION,
        "Strata cold: registry requests by the controller",
        "",
        each(cold, |r| requests(&r.controller_registry) as f64),
        "digest checks while the build ran",
    );
}
