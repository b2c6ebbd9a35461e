//! What a run found: the figures (a table of repeated measurements), the goals of issues 16 and
//! 17 with whether each is met, free-text sections; written as bench/RESULTS.md and
//! bench/results.json.
//!
//! This file: the report and how it renders; one module per section adds that section's figures
//! (builds, mco, claim, scale), goals.rs judges the goals, results.rs makes RESULTS.md's header
//! and results.json's `meta`.

pub mod builds;
pub mod claim;
pub mod goals;
pub mod mco;
pub mod results;
pub mod scale;

#[cfg(test)]
mod layout_tests;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{Value, json};
use strata_e2e::measure::registry_log::Counts;

use crate::stats::{Summary, summarize};

/// One line of the figures table.
#[derive(Debug, Clone)]
pub struct Row {
    pub section: &'static str,
    pub what: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
    pub note: String,
}

/// A goal: the key in results.json, its value (None: not measured) and whether it is met.
#[derive(Debug, Clone)]
pub struct Goal {
    pub key: &'static str,
    pub what: &'static str,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// `<= 1.15` and the like.
    pub goal: &'static str,
    pub met: Option<bool>,
    pub note: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub goals: Vec<Goal>,
    /// Named numbers for results.json besides the goals' (bytes, seconds, counts; null when not
    /// measured).
    pub keys: BTreeMap<String, Value>,
    /// Free text sections: how each figure was measured, findings.
    pub notes: Vec<(String, String)>,
    pub machine: Vec<(String, String)>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn add(
        &mut self,
        section: &'static str,
        what: impl Into<String>,
        unit: &'static str,
        values: Vec<f64>,
        note: impl Into<String>,
    ) {
        self.rows.push(Row {
            section,
            what: what.into(),
            unit,
            values,
            note: note.into(),
        });
    }

    pub fn note(&mut self, title: impl Into<String>, text: impl Into<String>) {
        self.notes.push((title.into(), text.into()));
    }

    pub fn key(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.keys.insert(key.into(), value.into());
    }

    /// A goal `value <= limit` (or `>=` when `at_least`).
    #[allow(clippy::too_many_arguments)]
    pub fn goal(
        &mut self,
        key: &'static str,
        what: &'static str,
        value: Option<f64>,
        unit: &'static str,
        goal: &'static str,
        limit: f64,
        note: impl Into<String>,
    ) {
        self.goals.push(Goal {
            key,
            what,
            value,
            unit,
            goal,
            met: value.map(|v| v <= limit),
            note: note.into(),
        });
    }

    /// The keys of the goals measured and missed (a goal not measured is neither).
    pub fn missed_goals(&self) -> Vec<&'static str> {
        self.goals
            .iter()
            .filter(|g| g.met == Some(false))
            .map(|g| g.key)
            .collect()
    }

    /// The figures table as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| section | measurement | median | min | max | n | note |\n|---|---|---|---|---|---|---|\n",
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
                "| {} | {} | {median} | {min} | {max} | {n} | {} |",
                r.section, r.what, r.note
            );
        }
        out
    }

    /// The goals table as Markdown.
    pub fn goals_table(&self) -> String {
        let mut out = String::from(
            "| key (results.json) | measure | value | goal | met | note |\n|---|---|---|---|---|---|\n",
        );
        for g in &self.goals {
            let value = g.value.map_or("not measured".into(), |v| fmt(v, g.unit));
            let met = match g.met {
                Some(true) => "**yes**",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {value} | {} | {met} | {} |",
                g.key, g.what, g.goal, g.note
            );
        }
        out
    }

    /// The whole RESULTS.md.
    pub fn markdown(&self, header: &str) -> String {
        let mut out = String::new();
        out.push_str(header);
        if !self.errors.is_empty() {
            out.push_str("\n**This run is incomplete:**\n\n");
            for e in &self.errors {
                let _ = writeln!(out, "- {e}");
            }
        }
        out.push_str("\n## Goals\n\n");
        out.push_str(&self.goals_table());
        out.push_str("\n## Machine and versions\n\n| | |\n|---|---|\n");
        for (k, v) in &self.machine {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        out.push_str("\n## Figures\n\n");
        out.push_str(&self.table());
        for (title, text) in &self.notes {
            let _ = writeln!(out, "\n## {title}\n\n{text}");
        }
        out.push_str("\n## Raw figures\n\n");
        for r in &self.rows {
            let raw: Vec<String> = r.values.iter().map(|v| format!("{v:.3}")).collect();
            let _ = writeln!(
                out,
                "- {} {} ({}): {}",
                r.section,
                r.what,
                if r.unit.is_empty() { "count" } else { r.unit },
                raw.join(", ")
            );
        }
        out
    }

    /// results.json: the goals' keys at the top level (numbers or null), the other keys, the
    /// goals with their verdicts, every figure with its raw values, the machine.
    pub fn json(&self, meta: Value) -> Value {
        let mut top = serde_json::Map::new();
        top.insert("meta".into(), meta);
        top.insert(
            "machine".into(),
            Value::Object(
                self.machine
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
        for g in &self.goals {
            top.insert(g.key.into(), g.value.map_or(Value::Null, |v| json!(v)));
        }
        for (k, v) in &self.keys {
            top.insert(k.clone(), v.clone());
        }
        top.insert(
            "goals".into(),
            Value::Object(
                self.goals
                    .iter()
                    .map(|g| {
                        (
                            g.key.to_string(),
                            json!({"value": g.value, "goal": g.goal, "met": g.met, "measure": g.what, "note": g.note}),
                        )
                    })
                    .collect(),
            ),
        );
        top.insert(
            "figures".into(),
            Value::Array(
                self.rows
                    .iter()
                    .map(|r| {
                        let s = summarize(&r.values);
                        json!({"section": r.section, "measure": r.what, "unit": r.unit,
                               "median": s.map(|s| s.median), "min": s.map(|s| s.min),
                               "max": s.map(|s| s.max), "values": r.values, "note": r.note})
                    })
                    .collect(),
            ),
        );
        top.insert("errors".into(), json!(self.errors));
        Value::Object(top)
    }
}

/// A value with its unit, rounded for reading.
pub fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "s" if v.abs() < 1.0 => format!("{:.0} ms", v * 1000.0),
        "s" => format!("{v:.2} s"),
        "MiB" => format!("{v:.1} MiB"),
        "GiB" => format!("{v:.2} GiB"),
        "B" => bytes(v),
        "x" => format!("{v:.2}×"),
        "" => format!("{v:.0}"),
        other => format!("{v:.2} {other}"),
    }
}

/// Bytes for reading: B, KiB, MiB or GiB.
pub fn bytes(v: f64) -> String {
    const K: f64 = 1024.0;
    if v.abs() < K {
        format!("{v:.0} B")
    } else if v.abs() < K * K {
        format!("{:.1} KiB", v / K)
    } else if v.abs() < K * K * K {
        format!("{:.1} MiB", v / K / K)
    } else {
        format!("{:.2} GiB", v / K / K / K)
    }
}

/// Requests in a registry access-log count.
fn requests(counts: &Counts) -> u64 {
    counts.requests.values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_median_min_max() {
        let mut r = Report::default();
        r.add("build", "latency", "s", vec![0.2, 0.1, 0.3], "MCO: 5 s");
        r.add("scale", "never ran", "", vec![], "");
        let t = r.table();
        assert!(t.contains("| build | latency | 200 ms | 100 ms | 300 ms | 3 | MCO: 5 s |"));
        assert!(t.contains("| scale | never ran | — | — | — | 0 |  |"));
        assert_eq!(fmt(2.5, "x"), "2.50×");
        assert_eq!(fmt(1.234, "s"), "1.23 s");
        assert_eq!(fmt(3.0 * 1024.0 * 1024.0 * 1024.0, "B"), "3.00 GiB");
        assert_eq!(bytes(1536.0), "1.5 KiB");
    }

    #[test]
    fn goals_are_judged_and_keyed_in_json() {
        let mut r = Report::default();
        r.goal(
            "path_over_host",
            "path / host",
            Some(1.1),
            "x",
            "≤ 1.15×",
            1.15,
            "",
        );
        r.goal("rss_mib", "RSS", Some(80.0), "MiB", "< 64 MiB", 64.0, "");
        r.goal(
            "resync_settle_seconds",
            "settle",
            None,
            "s",
            "≤ 5 s",
            5.0,
            "skipped",
        );
        r.key("base_layers", 48);
        let t = r.goals_table();
        assert!(t.contains("| `path_over_host` | path / host | 1.10× | ≤ 1.15× | **yes** |"));
        assert!(t.contains("| `rss_mib` | RSS | 80.0 MiB | < 64 MiB | **no** |"));
        assert!(t.contains("not measured"));
        // What makes `make bench` fail: the missed goal, not the one left unmeasured.
        assert_eq!(r.missed_goals(), ["rss_mib"]);
        let j = r.json(json!({}));
        assert_eq!(j["path_over_host"], json!(1.1));
        assert_eq!(j["resync_settle_seconds"], Value::Null);
        assert_eq!(j["base_layers"], json!(48));
        assert_eq!(j["goals"]["rss_mib"]["met"], json!(false));
    }
}
