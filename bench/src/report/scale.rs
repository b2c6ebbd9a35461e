//! The scale section's figures: the controller core at scale and its resync after a leader
//! change.

use crate::scale::ScaleResult;
use crate::sections::State;

use super::{Report, requests};

const SECTION: &str = "scale";

/// The figures the goals read first, then the rest of the resync and of the build phase, then
/// the histogram buckets as a note.
pub fn rows(state: &State, report: &mut Report) {
    let Some(s) = &state.scale else { return };
    headline(s, report);
    resync(s, report);
    build_phase(s, report);
    memory_and_queue(s, report);
    histogram_note(s, report);
    report.key("resync_api_requests_total", s.audit.total());
}

/// One measurement.
fn one(
    report: &mut Report,
    what: impl Into<String>,
    unit: &'static str,
    value: f64,
    note: impl Into<String>,
) {
    report.add(SECTION, what, unit, vec![value], note);
}

/// All pinned, the takeover and the figures of the goals (settle, requests, writes).
fn headline(s: &ScaleResult, report: &mut Report) {
    one(
        report,
        format!("{} configs: all pinned", s.configs),
        "s",
        s.all_pinned_seconds,
        "",
    );
    report.add(
        SECTION,
        "builds running: reconcile p99",
        "s",
        s.build_phase_p99.into_iter().collect(),
        "",
    );
    one(
        report,
        "leader RSS after the builds",
        "MiB",
        s.rss_after_builds_mib,
        "",
    );
    one(
        report,
        "leader change: takeover",
        "s",
        s.takeover_seconds,
        s.takeover_by,
    );
    one(
        report,
        "resync: settle (last reconcile)",
        "s",
        s.settle_seconds,
        settle_note(s),
    );
    one(
        report,
        "resync: API requests beyond lists",
        "",
        s.audit.beyond_lists_and_leases() as f64,
        s.audit.describe(),
    );
    one(
        report,
        "resync: writes (leases left out)",
        "",
        s.audit.writes_excluding_leases() as f64,
        format!(
            "any object's; the positive control, the same counter while the builds ran: {}",
            s.build_phase_api.writes_excluding_leases()
        ),
    );
}

/// While the builds ran: the leader's memory split, the queue wait; the settled leader's idle CPU.
fn memory_and_queue(s: &ScaleResult, report: &mut Report) {
    one(
        report,
        "idle leader: CPU (millicores)",
        "",
        s.idle_millicores,
        format!("30 s after the resync, {} configs cached", s.total_configs),
    );
    if let Some((anon, file)) = s.rss_split_after_builds_mib {
        one(
            report,
            "leader RSS after the builds: anonymous",
            "MiB",
            anon,
            "heap, stacks",
        );
        one(
            report,
            "leader RSS after the builds: file-backed",
            "MiB",
            file,
            "the executable's and libraries' pages",
        );
    }
    report.add(
        SECTION,
        "builds running: queue wait p99",
        "s",
        s.build_phase_queue_p99.into_iter().collect(),
        "a change → its config's reconcile starting (strata_reconcile_queue_wait_seconds)",
    );
    one(
        report,
        "builds running: queue waits counted",
        "count",
        s.build_phase_queue_waits,
        "",
    );
}

/// The new leader's resync: reconciles, memory, CPU, latency, registry requests.
fn resync(s: &ScaleResult, report: &mut Report) {
    one(
        report,
        "resync: reconciles",
        "",
        s.resync_reconciles,
        format!("{} configs in the cluster", s.total_configs),
    );
    one(
        report,
        "leader RSS after the resync",
        "MiB",
        s.rss_after_resync_mib,
        "",
    );
    one(
        report,
        "leader change: all configs reconciled",
        "s",
        s.all_reconciled_seconds,
        settle_note(s),
    );
    one(report, "resync: leader CPU", "s", s.resync_cpu_seconds, "");
    report.add(
        SECTION,
        "resync: reconcile p50",
        "s",
        s.resync_p50.into_iter().collect(),
        "",
    );
    report.add(
        SECTION,
        "resync: reconcile p99",
        "s",
        s.resync_p99.into_iter().collect(),
        "",
    );
    one(
        report,
        "resync: registry requests (controller)",
        "",
        requests(&s.resync_registry) as f64,
        "beside the API requests",
    );
}

/// While the builds ran: reconciles, CPU, latency, API and registry requests.
fn build_phase(s: &ScaleResult, report: &mut Report) {
    one(
        report,
        "builds running: reconciles",
        "",
        s.build_phase_reconciles,
        "",
    );
    one(
        report,
        "builds running: leader CPU",
        "s",
        s.build_phase_cpu_seconds,
        "",
    );
    report.add(
        SECTION,
        "builds running: reconcile p50",
        "s",
        s.build_phase_p50.into_iter().collect(),
        "",
    );
    one(
        report,
        "builds running: API requests",
        "",
        s.build_phase_api.total() as f64,
        s.build_phase_api.describe(),
    );
    one(
        report,
        "builds running: registry requests (controller)",
        "",
        requests(&s.build_phase_registry) as f64,
        "",
    );
}

/// Which bucket held the slowest reconcile of each phase.
fn histogram_note(s: &ScaleResult, report: &mut Report) {
    let bound = |b: Option<f64>| {
        b.map_or("above the last finite bucket".to_string(), |b| {
            format!("≤ {b} s")
        })
    };
    report.note(
        "Histogram buckets",
        format!(
            "Every reconcile while builds ran fell in the bucket {}; in the resync {}. The audit window \
             of the resync was {:.1} s.",
            bound(s.build_phase_slowest_bound),
            bound(s.resync_slowest_bound),
            s.audit_window_seconds
        ),
    );
}

/// From the Lease's acquireTime; an upper bound when the resync had ended before the new
/// leader's /metrics first answered.
fn settle_note(s: &ScaleResult) -> &'static str {
    if s.settle_upper_bound {
        "from the Lease's acquireTime; at most (done before /metrics first answered)"
    } else {
        "from the Lease's acquireTime"
    }
}
