//! Pure helpers: summaries of repeated runs, Prometheus text, the API server's audit log.

use std::collections::BTreeMap;

use serde_json::Value;

/// Median, min and max of a series (the median of an even count is the mean of the middle two).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Value of the first sample named exactly `name` (with or without labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let bare = key.split('{').next()?;
        (bare == name).then(|| value.trim().parse().ok())?
    })
}

/// Cumulative buckets `(le, count)` of the histogram `name` (no labels), `+Inf` last.
pub fn histogram(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, rest) = rest.split_once('"')?;
            let count = rest.rsplit_once(' ')?.1.trim().parse().ok()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// Difference of two cumulative histograms (after − before), bucket by bucket.
pub fn histogram_delta(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, count)| {
            let old = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, count - old)
        })
        .collect()
}

/// The `q` quantile of a cumulative histogram, interpolated linearly inside its bucket as
/// Prometheus' histogram_quantile does; the upper bound of the last finite bucket when it falls
/// in `+Inf`.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (le, count) in buckets {
        if *count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let in_bucket = count - below;
            let fraction = if in_bucket > 0.0 {
                (rank - below) / in_bucket
            } else {
                1.0
            };
            return Some(lower + (le - lower) * fraction);
        }
        lower = *le;
        below = *count;
    }
    Some(lower)
}

/// The smallest bucket bound that holds every observation of a cumulative histogram: the
/// slowest value seen is at most this. `None` when some observation fell above the last finite
/// bucket (the histogram cannot say how slow it was) or there is none.
pub fn slowest_bound(buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(le, count)| *count >= total && le.is_finite())
        .map(|(le, _)| *le)
}

/// API requests of one user in the audit log, by `verb resource` (ResponseComplete stage only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditCounts {
    pub by_verb: BTreeMap<String, u64>,
    /// Requests naming an object that is neither the bench's (`bench` in its name) nor shared
    /// (`shared`): other people's objects in a shared cluster; kept out of `by_verb`.
    pub foreign: BTreeMap<String, u64>,
}

pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl AuditCounts {
    /// Counts the requests of `user` received in `[from, to]` (RFC 3339 strings compare in order
    /// when both are UTC with the same precision; the audit log writes microseconds with `Z`).
    pub fn from_log(text: &str, user: &str, from: &str, to: &str, shared: &[&str]) -> Self {
        let mut by_verb = BTreeMap::new();
        let mut foreign = BTreeMap::new();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if event["stage"] != "ResponseComplete" || event["user"]["username"] != user {
                continue;
            }
            let at = event["requestReceivedTimestamp"]
                .as_str()
                .unwrap_or_default();
            if at < from || at > to {
                continue;
            }
            let verb = event["verb"].as_str().unwrap_or("?");
            let resource = event["objectRef"]["resource"].as_str().unwrap_or("?");
            let key = format!("{verb} {resource}");
            match event["objectRef"]["name"].as_str() {
                Some(name) if !name.contains("bench") && !shared.contains(&name) => {
                    *foreign.entry(format!("{key} {name}")).or_insert(0) += 1;
                }
                _ => *by_verb.entry(key).or_insert(0) += 1,
            }
        }
        Self { by_verb, foreign }
    }

    pub fn total(&self) -> u64 {
        self.by_verb.values().sum()
    }

    /// Writes, leaving out the leader Lease's renewals (`leases`), which are the election itself.
    /// Writes to objects others left in the shared cluster count too: any write is the
    /// controller's own doing.
    pub fn writes_excluding_leases(&self) -> u64 {
        self.by_verb
            .iter()
            .chain(self.foreign.iter())
            .filter(|(k, _)| {
                let mut parts = k.split(' ');
                let verb = parts.next().unwrap_or_default();
                let resource = parts.next().unwrap_or_default();
                WRITE_VERBS.contains(&verb) && resource != "leases"
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Requests beyond the initial lists and watches of the caches, leaving out the leader
    /// Lease: what a resync costs the API server per object.
    pub fn beyond_lists_and_leases(&self) -> u64 {
        self.by_verb
            .iter()
            .filter(|(k, _)| {
                let mut parts = k.split(' ');
                let verb = parts.next().unwrap_or_default();
                let resource = parts.next().unwrap_or_default();
                verb != "list" && verb != "watch" && resource != "leases"
            })
            .map(|(_, v)| v)
            .sum()
    }

    pub fn describe(&self) -> String {
        let list = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.foreign.is_empty() {
            list(&self.by_verb)
        } else {
            format!(
                "{}; left out, naming objects that others left in the shared cluster: {}",
                list(&self.by_verb),
                list(&self.foreign)
            )
        }
    }
}

/// RFC 3339 UTC with microseconds, as the audit log writes its timestamps.
pub fn audit_timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_series() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(summarize(&[]).is_none());
    }

    const TEXT: &str = "# HELP strata_leader x\nstrata_leader 1\n\
        strata_process_resident_memory_bytes 1048576\n\
        strata_reconcile_duration_seconds_sum 1.5\n\
        strata_reconcile_duration_seconds_count 10\n\
        strata_reconcile_duration_seconds_bucket{le=\"0.01\"} 5\n\
        strata_reconcile_duration_seconds_bucket{le=\"0.02\"} 9\n\
        strata_reconcile_duration_seconds_bucket{le=\"+Inf\"} 10\n";

    #[test]
    fn metrics_and_quantiles_from_prometheus_text() {
        assert_eq!(metric(TEXT, "strata_leader"), Some(1.0));
        assert_eq!(
            metric(TEXT, "strata_reconcile_duration_seconds_count"),
            Some(10.0)
        );
        assert_eq!(metric(TEXT, "strata_missing"), None);
        let h = histogram(TEXT, "strata_reconcile_duration_seconds");
        assert_eq!(h.len(), 3);
        assert!((quantile(&h, 0.5).unwrap() - 0.01).abs() < 1e-9);
        // rank 7 of 10 is halfway through the (0.01, 0.02] bucket holding 4.
        assert!((quantile(&h, 0.7).unwrap() - 0.015).abs() < 1e-9);
        assert_eq!(quantile(&h, 0.99), Some(0.02));
        let d = histogram_delta(&h, &[(0.01, 5.0), (0.02, 5.0), (f64::INFINITY, 5.0)]);
        assert_eq!(d, vec![(0.01, 0.0), (0.02, 4.0), (f64::INFINITY, 5.0)]);
        // 9 of 10 within 0.02: the slowest is above every finite bucket.
        assert_eq!(slowest_bound(&h), None);
        assert_eq!(
            slowest_bound(&[
                (0.01, 5.0),
                (0.02, 9.0),
                (0.04, 10.0),
                (f64::INFINITY, 10.0)
            ]),
            Some(0.04)
        );
        assert_eq!(slowest_bound(&[(0.01, 0.0), (f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn audit_counts_by_verb_inside_the_window() {
        let user = "system:serviceaccount:strata-system:strata-controller";
        let line = |stage: &str, verb: &str, resource: &str, at: &str| {
            serde_json::json!({"stage": stage, "verb": verb, "user": {"username": user},
                "objectRef": {"resource": resource}, "requestReceivedTimestamp": at})
            .to_string()
        };
        let log = [
            line(
                "ResponseComplete",
                "get",
                "machineosbuilds",
                "2026-01-01T00:00:01.000000Z",
            ),
            line(
                "RequestReceived",
                "get",
                "machineosbuilds",
                "2026-01-01T00:00:01.000000Z",
            ),
            line(
                "ResponseComplete",
                "update",
                "leases",
                "2026-01-01T00:00:02.000000Z",
            ),
            line(
                "ResponseComplete",
                "patch",
                "machineosconfigs",
                "2026-01-01T00:00:03.000000Z",
            ),
            line(
                "ResponseComplete",
                "get",
                "pods",
                "2026-01-01T00:00:09.000000Z",
            ),
            serde_json::json!({"stage": "ResponseComplete", "verb": "patch", "user": {"username": user},
                "objectRef": {"resource": "machineconfigs", "name": "zz-strata-2-someone-else"},
                "requestReceivedTimestamp": "2026-01-01T00:00:04.000000Z"})
            .to_string(),
            "not json".to_string(),
        ]
        .join("\n");
        let c = AuditCounts::from_log(
            &log,
            user,
            "2026-01-01T00:00:00.000000Z",
            "2026-01-01T00:00:05.000000Z",
            &[],
        );
        assert_eq!(c.total(), 3);
        assert_eq!(c.foreign.len(), 1);
        // The patch of machineosconfigs, and the one of someone else's MachineConfig: a write
        // is counted whoever's object it names.
        assert_eq!(c.writes_excluding_leases(), 2);
        assert_eq!(c.beyond_lists_and_leases(), 2);
        assert_eq!(c.by_verb["get machineosbuilds"], 1);
    }

    #[test]
    fn audit_timestamps_have_microseconds() {
        let t: jiff::Timestamp = "2026-01-02T03:04:05.5Z".parse().unwrap();
        assert_eq!(audit_timestamp(t), "2026-01-02T03:04:05.500000Z");
    }
}
