//! Prometheus metrics (prometheus-client), served on /metrics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_crds::BuildPhase;

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Builds take 30 s to 2 h.
const BUILD_BUCKETS: [f64; 11] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 5400.0, 7200.0,
];

fn build_histogram() -> Histogram {
    Histogram::new(BUILD_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    builds: Family<Labels, Counter>,
    build_duration: HistogramFamily,
    queue_duration: HistogramFamily,
    phase: Family<Labels, Gauge>,
    active_builds: Gauge,
    leader: Gauge,
    pool_updated: Family<Labels, Gauge>,
    last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<Labels, Counter>,
    resident_memory: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    phases: Mutex<HashMap<String, BuildPhase>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            builds: Family::default(),
            build_duration: Family::new_with_constructor(build_histogram),
            queue_duration: Family::new_with_constructor(build_histogram),
            phase: Family::default(),
            active_builds: Gauge::default(),
            leader: Gauge::default(),
            pool_updated: Family::default(),
            last_success: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            reconcile_errors: Family::default(),
            resident_memory: Gauge::default(),
            cpu_seconds: Gauge::default(),
            phases: Mutex::default(),
            registry: Registry::with_prefix("strata"),
        };
        m.registry.register(
            "builds",
            "Builds that ended, by pool and result",
            m.builds.clone(),
        );
        m.registry.register(
            "build_duration_seconds",
            "Build time from start to end, by pool and result",
            m.build_duration.clone(),
        );
        m.registry.register(
            "build_queue_seconds",
            "Time from a build's creation to its builder pod running",
            m.queue_duration.clone(),
        );
        m.registry.register(
            "build_phase",
            "1 for the phase of each pool's current build",
            m.phase.clone(),
        );
        m.registry.register(
            "active_builds",
            "Builds Prepared or Building",
            m.active_builds.clone(),
        );
        m.registry.register(
            "leader",
            "1 while this replica holds the leader Lease and reconciles, 0 while it waits",
            m.leader.clone(),
        );
        m.registry.register(
            "pool_updated",
            "1 when the MCO reports the pool updated (PoolUpdated condition)",
            m.pool_updated.clone(),
        );
        m.registry.register(
            "last_success_timestamp_seconds",
            "When each pool last got a new image",
            m.last_success.clone(),
        );
        m.registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile",
            m.reconcile_duration.clone(),
        );
        m.registry.register(
            "reconcile_errors",
            "Failed reconciles, by error kind",
            m.reconcile_errors.clone(),
        );
        m.registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the controller",
            m.resident_memory.clone(),
        );
        m.registry.register(
            "process_cpu_seconds",
            "CPU time of the controller (user + system)",
            m.cpu_seconds.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn reconciled(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    pub fn reconcile_failed(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }

    /// Records the phase of `pool`'s current build (None: no build).
    pub fn set_phase(&self, pool: &str, phase: Option<BuildPhase>) {
        for p in BuildPhase::ALL {
            let value = i64::from(Some(p) == phase);
            self.phase
                .get_or_create(&labels(&[("pool", pool), ("phase", p.condition_type())]))
                .set(value);
        }
        if let Ok(mut phases) = self.phases.lock() {
            match phase {
                Some(p) => phases.insert(pool.to_string(), p),
                None => phases.remove(pool),
            };
            let active = phases.values().filter(|p| !p.is_terminal()).count();
            self.active_builds
                .set(i64::try_from(active).unwrap_or(i64::MAX));
        }
    }

    pub fn build_ended(
        &self,
        pool: &str,
        result: BuildPhase,
        seconds: Option<f64>,
        now_seconds: f64,
    ) {
        let l = labels(&[("pool", pool), ("result", result.condition_type())]);
        self.builds.get_or_create(&l).inc();
        if let Some(seconds) = seconds {
            self.build_duration.get_or_create(&l).observe(seconds);
        }
        if result == BuildPhase::Succeeded {
            self.last_success
                .get_or_create(&labels(&[("pool", pool)]))
                .set(now_seconds);
        }
    }

    pub fn set_pool_updated(&self, pool: &str, updated: bool) {
        self.pool_updated
            .get_or_create(&labels(&[("pool", pool)]))
            .set(i64::from(updated));
    }

    pub fn build_started(&self, pool: &str, queued_seconds: f64) {
        self.queue_duration
            .get_or_create(&labels(&[("pool", pool)]))
            .observe(queued_seconds);
    }

    /// The text exposition, with process figures read now.
    pub fn encode(&self) -> String {
        if let Some((rss, cpu)) = process_figures() {
            self.resident_memory.set(rss);
            self.cpu_seconds.set(cpu);
        }
        let mut out = String::new();
        match encode(&mut out, &self.registry) {
            Ok(()) => out,
            Err(_) => String::new(),
        }
    }
}

/// (resident bytes, cpu seconds) from /proc/self; Linux reports in pages and clock ticks (100/s).
fn process_figures() -> Option<(i64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((pages * 4096, ticks / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_families() {
        let m = Metrics::default();
        m.set_phase("worker", Some(BuildPhase::Building));
        m.build_ended("worker", BuildPhase::Succeeded, Some(42.0), 1.0);
        m.reconcile_failed("kube");
        m.set_pool_updated("worker", false);
        m.set_leader(true);
        let text = m.encode();
        for name in [
            "strata_builds_total{pool=\"worker\",result=\"Succeeded\"} 1",
            "strata_build_phase{pool=\"worker\",phase=\"Building\"} 1",
            "strata_active_builds 1",
            "strata_leader 1",
            "strata_pool_updated{pool=\"worker\"} 0",
            "strata_build_duration_seconds_bucket{le=\"60.0\",pool=\"worker\",result=\"Succeeded\"} 1",
            "strata_reconcile_errors_total{kind=\"kube\"} 1",
            "strata_process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
