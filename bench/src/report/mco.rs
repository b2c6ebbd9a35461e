//! The MCO's-way section's figures (vfs, no cache, full pull, fresh pod).

use crate::mco_way::McoRun;
use crate::sections::State;

use super::Report;

/// Builds that ended; a stopped one is listed among the run's errors.
pub fn rows(state: &State, report: &mut Report) {
    let done: Vec<&McoRun> = state.mco.iter().filter(|r| r.aborted.is_none()).collect();
    report.add(
        "mco",
        "MCO's way: pod create → done",
        "s",
        done.iter().map(|r| r.create_to_done).collect(),
        "",
    );
    report.add(
        "mco",
        "MCO's way: peak disk",
        "B",
        state.mco.iter().map(|r| r.peak_disk_bytes as f64).collect(),
        "",
    );
    report.add(
        "mco",
        "MCO's way: base bytes pulled",
        "B",
        done.iter().map(|r| r.base_bytes_pulled as f64).collect(),
        "",
    );
    for r in &state.mco {
        if let Some(why) = &r.aborted {
            report
                .errors
                .push(format!("an MCO's-way build was stopped: {why}"));
        }
    }
}
