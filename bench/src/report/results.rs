//! What RESULTS.md opens with and results.json's `meta`: when, how long, which sections, with
//! which settings.

use serde_json::{Value, json};

use crate::RunArgs;
use crate::sections::State;

use super::Report;

/// results.json's `meta`.
pub fn meta(
    report: &Report,
    state: &State,
    args: &RunArgs,
    elapsed: f64,
    now: jiff::Timestamp,
) -> Value {
    let sections: Vec<Value> = state
        .section_seconds
        .iter()
        .map(|(s, t)| json!({"section": s, "seconds": t}))
        .collect();
    json!({
        "written": now.to_string(),
        "duration_seconds": elapsed,
        "complete": report.errors.is_empty(),
        "sections": sections,
        "runs": args.runs, "mco_runs": args.mco_runs, "claim_runs": args.claim_runs,
        "scale": args.scale, "batch": args.batch, "scale_controller_args": args.scale_controller_arg,
    })
}

/// RESULTS.md's title and first paragraph.
pub fn header(report: &Report, state: &State, elapsed: f64, now: jiff::Timestamp) -> String {
    format!(
        "# Strata benchmarks\n\nWritten by `make bench` (bench/run.sh → strata-bench) on {} in {:.0} min{}; \
         the same numbers are in `bench/results.json`. Sections: {}.\n",
        now.strftime("%Y-%m-%d %H:%M UTC"),
        elapsed / 60.0,
        if report.errors.is_empty() {
            ""
        } else {
            " — INCOMPLETE, see below"
        },
        state
            .section_seconds
            .iter()
            .map(|(s, t)| format!("{s} {:.0} min", t / 60.0))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
