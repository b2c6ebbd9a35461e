//! The table printed at the end and written to bench/RESULTS.md.

use std::fmt::Write;

use crate::stats::{Summary, summarize};

/// One line of the table.
pub struct Row {
    pub item: &'static str,
    pub what: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
    pub target: String,
    pub note: String,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Free text per measurement: how it was measured, raw details.
    pub notes: Vec<(String, String)>,
    pub machine: Vec<(String, String)>,
}

impl Report {
    pub fn add(
        &mut self,
        item: &'static str,
        what: impl Into<String>,
        unit: &'static str,
        values: Vec<f64>,
        target: impl Into<String>,
        note: impl Into<String>,
    ) {
        self.rows.push(Row {
            item,
            what: what.into(),
            unit,
            values,
            target: target.into(),
            note: note.into(),
        });
    }

    pub fn note(&mut self, title: impl Into<String>, text: impl Into<String>) {
        self.notes.push((title.into(), text.into()));
    }

    /// The table as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| # | measurement | median | min | max | n | target | ratio / reference |\n|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let (median, min, max, n) = match summarize(&r.values) {
                Some(Summary {
                    median,
                    min,
                    max,
                    n,
                }) => (
                    fmt(median, r.unit),
                    fmt(min, r.unit),
                    fmt(max, r.unit),
                    n.to_string(),
                ),
                None => ("—".into(), "—".into(), "—".into(), "0".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {median} | {min} | {max} | {n} | {} | {} |",
                r.item, r.what, r.target, r.note
            );
        }
        out
    }

    /// The whole RESULTS.md.
    pub fn markdown(&self, header: &str) -> String {
        let mut out = String::new();
        out.push_str(header);
        out.push_str("\n## Machine and versions\n\n| | |\n|---|---|\n");
        for (k, v) in &self.machine {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        out.push_str("\n## Figures\n\n");
        out.push_str(&self.table());
        out.push_str("\n## How each figure was measured\n\n");
        for (title, text) in &self.notes {
            let _ = writeln!(out, "### {title}\n\n{text}\n");
        }
        out.push_str("## Raw figures\n\n");
        for r in &self.rows {
            let raw: Vec<String> = r.values.iter().map(|v| format!("{v:.3}")).collect();
            let _ = writeln!(
                out,
                "- {} {} ({}): {}",
                r.item,
                r.what,
                r.unit,
                raw.join(", ")
            );
        }
        out
    }
}

/// A value with its unit, rounded for reading.
pub fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        "s" => format!("{v:.2} s"),
        "ms" => format!("{v:.1} ms"),
        "MiB" => format!("{v:.1} MiB"),
        "x" => format!("{v:.2}×"),
        "" => format!("{v:.0}"),
        other => format!("{v:.2} {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_median_min_max_and_target() {
        let mut r = Report::default();
        r.add(
            "1",
            "latency",
            "s",
            vec![0.2, 0.1, 0.3],
            "< 1 s",
            "MCO: 5 s",
        );
        r.add("4", "never ran", "", vec![], "0", "");
        let t = r.table();
        assert!(t.contains("| 1 | latency | 200 ms | 100 ms | 300 ms | 3 | < 1 s | MCO: 5 s |"));
        assert!(t.contains("| 4 | never ran | — | — | — | 0 | 0 |  |"));
        assert_eq!(fmt(2.5, "x"), "2.50×");
        assert_eq!(fmt(1.234, "s"), "1.23 s");
    }
}
