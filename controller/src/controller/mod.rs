//! `strata controller`: from MachineOSConfig to a pool pinned by digest.
//!
//! Reconcile = [`observe`] (read the caches, and the registry through a cache) → [`plan::plan`]
//! (pure: every decision, every object fully built) → [`apply`] (thin: executes the plan with
//! one field manager) → metrics.
//!
//! Module map:
//!
//! - The reconcile pipeline ([`reconcile`]; its stages re-exported here)
//!   - [`observe`]: what the planner needs about one MachineOSConfig (caches, registry).
//!   - [`plan`]: every decision, from what was observed (pure: no I/O, no clock).
//!   - [`objects`]: the objects a build needs and the MachineConfig that pins a pool (pure).
//!   - [`apply`]: executes a plan as it is, with one field manager.
//! - The caches
//!   - [`cache`]: every watch and its cache, started in one place ([`cache::start`]).
//! - The process
//!   - [`runtime`]: HTTP servers, the leader Lease, the caches, the controller loop, shutdown.
//!   - [`http`]: probes and `/metrics` (plain and TLS).
//!   - [`metrics`]: Strata's Prometheus metrics ([`queue_clock`]: how long a config waited for its reconcile).
//!   - [`events`]: Kubernetes Events, sent in the background after a round's writes.
//!   - [`settings`]: the controller's flags, each with an environment variable.
//! - Model helpers
//!   - [`names`]: names of the objects Strata makes, and the limits they must fit.
//!   - [`conditions`]: condition bookkeeping shared by both kinds.
//!   - [`error`]: reconcile errors; the kind decides how soon to retry.
//!   - [`environment`]: the cluster's environment (CAs, proxy, mirrors, pull secret) for a build.
//!   - [`registry_client`]: registry lookups (resolve a digest, inspect an image).
//!   - [`registry_http`]: its reads, each with a size cap and redirect rules.
//!
//! Shared with the builder, outside this module: [`crate::docker_config`] (registry
//! credentials) and [`crate::registry_policy`] (mirrors, blocked and insecure registries).

pub mod builder_egress;
pub mod cache;
pub mod conditions;
pub mod environment;
pub mod error;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod metrics;
pub mod names;
mod queue_clock;
pub mod reconcile;
pub mod registry_client;
pub mod registry_http;
pub mod runtime;
pub mod settings;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use strata_crds::MachineOSConfig;
use strata_crds::contract::FINALIZER;
use tracing::Instrument;

// The pipeline's stages by their short paths (`controller::plan`, …).
pub use reconcile::{apply, objects, observe, plan};

pub use error::Error;
pub use runtime::run;
pub use settings::Settings;

use cache::Stores;
use metrics::Metrics;
use registry_client::Registry;

/// Longest wait between retries of a failing reconcile.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Nothing sends an event when a registry loses an image: look again now and then.
const RESYNC: Duration = Duration::from_secs(600);
/// A round slower than this logs where its time went (the goal for p99 is below it).
const SLOW_RECONCILE: Duration = Duration::from_secs(1);

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub stores: Stores,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub events: events::EventSink,
    /// NetworkPolicy `strata-builder`.
    pub builder_egress: builder_egress::Keeper,
    /// Consecutive failed reconciles per MachineOSConfig, for back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        stores: Stores,
        metrics: Arc<Metrics>,
        recorder: Recorder,
    ) -> Self {
        let registry = Registry::new(registry_client::RegistrySettings {
            insecure: settings.insecure_registries.clone(),
            connect_timeout: settings.registry_connect_timeout(),
            total_timeout: settings.registry_total_timeout(),
        });
        Self {
            client,
            settings,
            stores,
            registry,
            metrics,
            events: events::EventSink::new(recorder),
            builder_egress: builder_egress::Keeper::default(),
            failures: Mutex::default(),
        }
    }
}

async fn reconcile(config: Arc<MachineOSConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = config.name_any();
    let span = tracing::info_span!("reconcile", machineosconfig = %name);
    async move {
        let started = Instant::now();
        ctx.metrics
            .reconcile_started(&ObjectRef::from_obj(config.as_ref()));
        let api: Api<MachineOSConfig> = Api::all(ctx.client.clone());
        let result = finalizer(&api, FINALIZER, config, |event| async {
            match event {
                Finalizer::Apply(config) => reconcile_config(&ctx, &config).await,
                Finalizer::Cleanup(config) => {
                    let observed = observe::observe(&ctx, &config).await;
                    let deletion = plan::plan_deletion(&observed, &ctx.settings);
                    let registry = apply::RegistryAccess::of(&observed);
                    apply::cleanup(&ctx, &config, deletion, &registry).await?;
                    ctx.metrics
                        .forget_pool(&config.spec.machine_config_pool.name);
                    ctx.metrics.forget_config(&config.name_any());
                    Ok(Action::await_change())
                }
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        });
        ctx.metrics.reconciled(started.elapsed().as_secs_f64());
        if result.is_ok() {
            ctx.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
        }
        result
    }
    .instrument(span)
    .await
}

async fn reconcile_config(ctx: &Context, config: &MachineOSConfig) -> Result<Action, Error> {
    let started = Instant::now();
    let observed = observe::observe(ctx, config).await;
    let observed_after = started.elapsed();
    let plan = plan::plan(&observed, &ctx.settings);
    let requeue = plan.requeue_after.unwrap_or(RESYNC);
    let writes = plan.writes();
    let registry = apply::RegistryAccess::of(&observed);
    apply::apply(ctx, config, plan, &registry).await?;
    let total = started.elapsed();
    // Where a slow round spent its time (observe waits on registries, apply on the API server)
    // and what it wrote.
    if total >= SLOW_RECONCILE {
        tracing::info!(
            observe_ms = observed_after.as_millis() as u64,
            apply_ms = (total - observed_after).as_millis() as u64,
            %writes,
            "slow reconcile"
        );
    }
    Ok(Action::requeue(requeue))
}

/// Retries with a per-object exponential back-off and jitter, from the error kind's first delay.
fn error_policy(config: Arc<MachineOSConfig>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = config.name_any();
    let attempts = {
        let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(name.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(error.retry_after(), attempts, &name);
    tracing::warn!(machineosconfig = %name, %error, kind = error.kind(), attempts, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconcile_failed(error.kind());
    Action::requeue(delay)
}

/// `first × 2^(attempts-1)`, at most [`MAX_RETRY`], times a jitter of ±20 % derived from the
/// object and the time (so many objects failing together do not retry together).
fn backoff(first: Duration, attempts: u32, seed: &str) -> Duration {
    let exponential = first.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let capped = exponential.min(MAX_RETRY);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (seed, attempts, std::time::SystemTime::now()).hash(&mut hasher);
    let jitter = 0.8 + (hasher.finish() % 401) as f64 / 1000.0;
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let first = Duration::from_secs(10);
        let one = backoff(first, 1, "a");
        assert!(
            one >= Duration::from_secs(8) && one <= Duration::from_secs(12),
            "{one:?}"
        );
        let four = backoff(first, 4, "a");
        assert!(
            four >= Duration::from_secs(64) && four <= Duration::from_secs(96),
            "{four:?}"
        );
        let many = backoff(first, 40, "a");
        assert!(many <= MAX_RETRY.mul_f64(1.2), "{many:?}");
        // Different objects get different delays.
        let delays: std::collections::BTreeSet<_> = (0..20)
            .map(|i| backoff(first, 3, &format!("pool-{i}")))
            .collect();
        assert!(delays.len() > 1);
    }
}
