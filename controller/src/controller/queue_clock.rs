//! How long a MachineOSConfig waits between something making it due (a watched change, the
//! start-up sweep) and its reconcile starting: the controller's queue (debounce, the concurrency
//! limit, a reconcile of the same config still running). kube's controller does not say, so the
//! trigger stream stamps each config when it is named and the reconcile takes the stamp.
//! Reconciles a requeue timer starts carry no stamp and are not counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use strata_crds::MachineOSConfig;

/// A stamp older than this belongs to a config that went before its reconcile (kube skips a
/// config no longer in the cache): dropped, not counted.
const STALE: Duration = Duration::from_secs(600);

/// The earliest pending trigger of each config.
#[derive(Default)]
pub struct QueueClock {
    pending: Mutex<HashMap<ObjectRef<MachineOSConfig>, Instant>>,
}

impl QueueClock {
    /// `config` was named at `at`; an earlier stamp still waiting is kept.
    pub fn queued(&self, config: ObjectRef<MachineOSConfig>, at: Instant) {
        self.lock().entry(config).or_insert(at);
    }

    /// `config`'s reconcile starts at `now`: how long it waited, if a trigger made it due.
    pub fn started(&self, config: &ObjectRef<MachineOSConfig>, now: Instant) -> Option<Duration> {
        let mut pending = self.lock();
        let waited = pending
            .remove(config)
            .map(|at| now.saturating_duration_since(at));
        pending.retain(|_, at| now.saturating_duration_since(*at) < STALE);
        waited
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<MachineOSConfig>, Instant>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> ObjectRef<MachineOSConfig> {
        ObjectRef::new(name)
    }

    #[test]
    fn the_wait_runs_from_the_earliest_trigger_to_the_start() {
        let clock = QueueClock::default();
        let t0 = Instant::now();
        clock.queued(config("a"), t0);
        clock.queued(config("a"), t0 + Duration::from_millis(30));
        assert_eq!(
            clock.started(&config("a"), t0 + Duration::from_millis(80)),
            Some(Duration::from_millis(80))
        );
        // Taken: a requeue's reconcile after it counts nothing.
        assert_eq!(
            clock.started(&config("a"), t0 + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn a_trigger_while_running_counts_from_itself_at_the_next_start() {
        let clock = QueueClock::default();
        let t0 = Instant::now();
        clock.queued(config("a"), t0);
        assert!(clock.started(&config("a"), t0).is_some());
        clock.queued(config("a"), t0 + Duration::from_millis(10));
        assert_eq!(
            clock.started(&config("a"), t0 + Duration::from_millis(210)),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn a_config_that_never_started_is_dropped_after_a_while() {
        let clock = QueueClock::default();
        let t0 = Instant::now();
        clock.queued(config("gone"), t0);
        clock.queued(config("b"), t0 + STALE);
        assert!(clock.started(&config("b"), t0 + STALE).is_some());
        assert_eq!(clock.started(&config("gone"), t0 + STALE), None);
    }
}
