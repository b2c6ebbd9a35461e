//! The goals of issues 16, 17 and 30, judged from what the sections measured.

use crate::host::HostBuild;
use crate::sections::State;
use crate::stats::summarize;

use super::Report;

/// Every goal, in the order of the goals table; `runs` is how many cold builds were asked for.
pub fn conclude(state: &State, report: &mut Report, runs: usize) {
    build_goals(state, report, runs);
    scale_goals(state, report);
}

/// The build path against host buildah, rebuilds, the upgrade, the second pool, the disk.
fn build_goals(state: &State, report: &mut Report, runs: usize) {
    let cold = median(state.cold.iter().map(|r| r.apply_to_pinned));
    let host = median(state.host.iter().map(HostBuild::total));
    report.goal(
        "path_over_host",
        "cold build through Strata / host buildah, same Containerfile",
        ratio(cold, host),
        "x",
        "≤ 1.0",
        1.0,
        format!(
            "medians of {runs} runs; the pod's {}, the host's in Machine and versions",
            state.builder_agent.as_deref().unwrap_or("?")
        ),
    );
    rebuild_goals(state, report, runs);
    upgrade_goals(state, report, cold);
    let all_at_once = state.concurrent.iter().copied().reduce(f64::max);
    report.goal(
        "concurrent_pools_over_single",
        "4 pools rebuilt at once (the last pinned) / one pool's rebuild",
        ratio(
            all_at_once,
            median(state.rebuild.iter().map(|r| r.apply_to_pinned)),
        ),
        "x",
        "≤ 2",
        2.0,
        "",
    );
    // Each MachineOSConfig has a store of its own on the claim (so no pool's build reads
    // another's images): a second pool pulls the base once, into its store, and no more.
    let base = state.base.as_ref().map(|b| b.compressed_bytes() as f64);
    report.goal(
        "second_pool_base_pulls",
        "second pool on the same base: base bytes pulled / the base's compressed size",
        ratio(
            state.second.as_ref().map(|s| s.base_bytes_pulled as f64),
            base,
        ),
        "x",
        "≤ 1",
        1.0,
        "default settings: Strata's own cache claim, a store per MachineOSConfig",
    );
    let disk = median(state.cold.iter().map(|r| r.peak_disk_bytes as f64));
    let size = median(state.cold.iter().map(|r| r.image_size_bytes as f64));
    report.goal(
        "disk_over_image_size",
        "builder ephemeral disk per build / image size",
        ratio(disk, size),
        "x",
        "≤ 1.5",
        1.5,
        "cold build: its emptyDirs and the claim it started empty",
    );
}

/// Rebuilds: their time, the bytes they upload, without a cache claim against the MCO's way.
fn rebuild_goals(state: &State, report: &mut Report, runs: usize) {
    let rebuild = median(state.rebuild.iter().map(|r| r.apply_to_pinned));
    report.goal(
        "rebuild_seconds",
        "rebuild, last fragment changed, default settings, boot check off: apply → pinned",
        rebuild,
        "s",
        "≤ 1.5 s",
        1.5,
        format!("median of {runs} runs"),
    );
    let pushed = state
        .rebuild_push
        .iter()
        .map(|(up, new)| *up as f64 / *new as f64);
    report.goal(
        "rebuild_push_bytes_over_new_layers",
        "bytes a rebuild uploaded / compressed bytes of its new layers and config",
        median(pushed),
        "x",
        "≤ 1.1",
        1.1,
        "",
    );
    let mco = median(
        state
            .mco
            .iter()
            .filter(|r| r.aborted.is_none())
            .map(|r| r.create_to_done),
    );
    report.goal(
        "emptydir_rebuild_over_mco_way",
        "rebuild without a cache claim (no StorageClass) / the MCO's way",
        ratio(
            state.emptydir_rebuild.as_ref().map(|r| r.apply_to_pinned),
            mco,
        ),
        "x",
        "≤ 0.3",
        0.3,
        state.mco_skipped.clone().unwrap_or_default(),
    );
}

/// The release upgrade against the changed layers and a cold build.
fn upgrade_goals(state: &State, report: &mut Report, cold: Option<f64>) {
    let upgrade = state.upgrade.as_ref();
    report.goal(
        "upgrade_base_bytes_over_changed_layers",
        "release upgrade: base bytes pulled / compressed bytes of the changed layers",
        upgrade.map(|u| u.run.base_bytes_pulled as f64 / u.changed_bytes.max(1) as f64),
        "x",
        "≤ 1.1",
        1.1,
        upgrade.map_or(String::new(), |u| {
            format!("{} layers changed", u.changed_layers)
        }),
    );
    report.goal(
        "upgrade_rebuild_over_cold",
        "release upgrade's rebuild time / a cold build's",
        ratio(upgrade.map(|u| u.run.apply_to_pinned), cold),
        "x",
        "≤ 0.3",
        0.3,
        "",
    );
}

/// The controller core: the resync's requests, writes and settle time, memory, latency.
fn scale_goals(state: &State, report: &mut Report) {
    let scale = state.scale.as_ref();
    report.goal(
        "resync_requests_per_config",
        "API requests per config in a resync beyond the initial lists",
        scale.map(|s| s.audit.beyond_lists_and_leases() as f64 / s.total_configs.max(1) as f64),
        "",
        "≤ 1",
        1.0,
        "",
    );
    report.goal(
        "resync_writes",
        "writes in a resync (leader Lease left out)",
        scale.map(|s| s.audit.writes_excluding_leases() as f64),
        "",
        "0",
        0.0,
        "",
    );
    report.goal(
        "resync_settle_seconds",
        "new leader → its last reconcile of the resync",
        scale.map(|s| s.settle_seconds),
        "s",
        "≤ 5 s",
        5.0,
        "",
    );
    report.goal(
        "rss_mib",
        "RSS of the leader that ran the builds, once they settled",
        scale.map(|s| s.rss_after_builds_mib),
        "MiB",
        "< 64 MiB",
        64.0,
        scale.map_or(String::new(), |s| {
            format!(
                "a fresh leader after the resync: {:.1} MiB",
                s.rss_after_resync_mib
            )
        }),
    );
    report.goal(
        "reconcile_p99_seconds",
        "reconcile p99 while builds run",
        scale.and_then(|s| s.build_phase_p99),
        "s",
        "< 0.5 s",
        0.5,
        "",
    );
    report.goal(
        "queue_wait_p99_seconds",
        "a change → its config's reconcile starting, p99 while builds run",
        scale.and_then(|s| s.build_phase_queue_p99),
        "s",
        "< 1 s",
        1.0,
        scale.map_or(String::new(), |s| {
            format!("{} waits counted", s.build_phase_queue_waits)
        }),
    );
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    summarize(&values.into_iter().collect::<Vec<_>>()).map(|s| s.median)
}
