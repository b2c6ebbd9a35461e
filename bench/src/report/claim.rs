//! The cache-claim section's figures: builds on the persistent image storage (--cache-claim).

use crate::sections::State;

use super::Report;

/// The first build on the empty storage, rebuilds, a second pool, and the storage's growth.
pub fn rows(state: &State, report: &mut Report) {
    if let Some(run) = &state.emptydir_rebuild {
        report.add(
            "claim",
            "no cache claim (--cache-claim=off): rebuild apply → pinned",
            "s",
            vec![run.apply_to_pinned],
            "an emptyDir per builder pod, as without a StorageClass",
        );
        report.add(
            "claim",
            "no cache claim: rebuild base bytes pulled",
            "B",
            vec![run.base_bytes_pulled as f64],
            "",
        );
    }
    if let Some(first) = &state.claim_first {
        report.add(
            "claim",
            "cache claim: first build apply → pinned",
            "s",
            vec![first.apply_to_pinned],
            "",
        );
    }
    report.add(
        "claim",
        "cache claim: rebuild apply → pinned",
        "s",
        state
            .claim_rebuild
            .iter()
            .map(|r| r.apply_to_pinned)
            .collect(),
        "",
    );
    report.add(
        "claim",
        "cache claim: rebuild base bytes pulled",
        "B",
        state
            .claim_rebuild
            .iter()
            .map(|r| r.base_bytes_pulled as f64)
            .collect(),
        "",
    );
    if let Some(second) = &state.claim_second {
        report.add(
            "claim",
            "cache claim: second pool base bytes pulled",
            "B",
            vec![second.base_bytes_pulled as f64],
            "",
        );
    }
    for (when, size) in &state.claim_growth {
        report.add(
            "claim",
            format!("cache claim storage {when}"),
            "B",
            vec![*size as f64],
            "",
        );
    }
}
