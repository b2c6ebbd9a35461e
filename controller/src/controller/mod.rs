//! `strata controller`: from MachineOSConfig to a pool pinned by digest.
//!
//! Reconcile = [`observe`] (read the cluster and the registry) → [`plan::plan`] (pure) →
//! [`apply`] (thin: server-side apply with one field manager).

pub mod apply;
pub mod conditions;
pub mod error;
pub mod http;
pub mod metrics;
pub mod objects;
pub mod observe;
pub mod plan;
pub mod registry;
pub mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};

pub use error::Error;
pub use settings::Settings;

use metrics::Metrics;
use objects::CONFIG_LABEL;
use registry::Registry;

/// Finalizer on MachineOSConfigs: removes the pool's MachineConfig before the object goes.
pub const FINALIZER: &str = "strata.dev/machine-config";

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
}

async fn reconcile(config: Arc<MachineOSConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<MachineOSConfig> = Api::all(ctx.client.clone());
    let name = config.name_any();
    let span = tracing::info_span!("reconcile", machineosconfig = %name);
    let _enter = span.enter();
    let result = finalizer(&api, FINALIZER, config, |event| async {
        match event {
            Finalizer::Apply(config) => reconcile_config(&ctx, &config).await,
            Finalizer::Cleanup(config) => {
                apply::cleanup(&ctx, &config).await?;
                ctx.metrics
                    .set_phase(&config.spec.machine_config_pool.name, None);
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
    result
}

async fn reconcile_config(ctx: &Context, config: &MachineOSConfig) -> Result<Action, Error> {
    let observed = observe::observe(ctx, config).await?;
    let plan = plan::plan(&observed, &ctx.settings);
    apply::apply(ctx, config, &plan, &observed.builds).await?;
    record_metrics(ctx, &observed, &plan);
    Ok(match plan.requeue_after_secs {
        Some(secs) => Action::requeue(Duration::from_secs(secs)),
        // Nothing sends an event when a registry loses an image: look again now and then.
        None => Action::requeue(Duration::from_secs(600)),
    })
}

fn record_metrics(ctx: &Context, observed: &plan::Observed, plan: &plan::Plan) {
    let pool = &observed.config.spec.machine_config_pool.name;
    let Some((build, phase)) = &plan.current_build else {
        return;
    };
    ctx.metrics.set_phase(pool, Some(*phase));
    let Some((_, status)) = plan.build_status.iter().find(|(name, _)| name == build) else {
        return;
    };
    let before = observed
        .builds
        .iter()
        .find(|b| &b.name_any() == build)
        .and_then(MachineOSBuild::phase);
    let now = observed.now.as_second() as f64;
    let since_start = status
        .build_start
        .as_ref()
        .map(|s| now - s.0.as_second() as f64);
    if *phase == BuildPhase::Building && before != Some(BuildPhase::Building) {
        ctx.metrics.build_started(pool, since_start.unwrap_or(0.0));
    }
    if phase.is_terminal() && before != Some(*phase) {
        ctx.metrics.build_ended(pool, *phase, since_start, now);
    }
}

fn error_policy(_config: Arc<MachineOSConfig>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, kind = error.kind(), "reconcile failed");
    ctx.metrics.reconcile_failed(error.kind());
    Action::requeue(error.retry_after())
}

/// Maps a build's Job or Pod to its MachineOSConfig: by the annotation holding the full name,
/// else by the label (cut to 63 characters for long names, so only a fallback).
fn by_config_annotation<K: ResourceExt>(obj: K) -> Option<ObjectRef<MachineOSConfig>> {
    obj.annotations()
        .get(objects::CONFIG_ANNOTATION)
        .or_else(|| obj.labels().get(CONFIG_LABEL))
        .map(|name| ObjectRef::new(name))
}

/// Maps a MachineOSBuild to the MachineOSConfig its spec names.
fn by_config_of_build(build: MachineOSBuild) -> Option<ObjectRef<MachineOSConfig>> {
    Some(ObjectRef::new(&build.spec.machine_os_config.name))
}

/// Runs the controller: metrics/health server at once, reconciling only while leader.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = tokio::spawn(http::serve(
        settings.http_address,
        metrics.clone(),
        ready.clone(),
    ));

    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("strata-{}", std::process::id()));
    let leases = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
        .with_namespace(&settings.namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (mut leader, lease_task) = leases.watch().await;
    tracing::info!(%identity, lease = %settings.lease_name, "waiting for leadership");
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let leading = async {
        while !*leader.borrow_and_update() {
            leader.changed().await?;
        }
        anyhow::Ok(())
    };
    // A replica told to stop while it waits (a rollout) goes at once instead of at the kill.
    tokio::select! {
        result = leading => result?,
        _ = terminated() => {
            tracing::info!(%identity, "stopping before leading");
            server.abort();
            return Ok(());
        }
    }
    tracing::info!(%identity, "leading: starting the controller");
    metrics.set_leader(true);

    let ctx = Arc::new(Context {
        client: client.clone(),
        registry: Registry::new(&settings.insecure_registries),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "strata-controller".into(),
                instance: Some(identity.clone()),
            },
        ),
        metrics,
        settings: settings.clone(),
    });
    let ours = watcher::Config::default().labels("app.kubernetes.io/managed-by=strata");
    let release = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), &settings.release_configmap_namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", settings.release_configmap)),
    )
    .touched_objects()
    .map(|_| ());
    // Users' Secrets (not the per-build ones): a push secret created after its MachineOSConfig
    // starts the build at once instead of at the next retry.
    let secrets = watcher(
        Api::<Secret>::namespaced(client.clone(), &settings.namespace),
        watcher::Config::default().labels("app.kubernetes.io/managed-by!=strata"),
    )
    .touched_objects()
    .map(|_| ());
    let controller = Controller::new(
        Api::<MachineOSConfig>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<MachineOSBuild>::all(client.clone()),
        watcher::Config::default(),
        by_config_of_build,
    )
    .watches(
        Api::<Job>::namespaced(client.clone(), &settings.namespace),
        ours.clone(),
        by_config_annotation,
    )
    .watches(
        Api::<Pod>::namespaced(client.clone(), &settings.namespace),
        ours,
        by_config_annotation,
    )
    .watches_with(
        Api::<DynamicObject>::all_with(client.clone(), &observe::pool_resource()),
        observe::pool_resource(),
        watcher::Config::default(),
        // A MachineOSConfig is named after its pool.
        |pool| Some(ObjectRef::new(&pool.name_any())),
    )
    .reconcile_all_on(release)
    .reconcile_all_on(secrets)
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(err) = result {
            tracing::debug!(%err, "reconcile error");
        }
    });
    tokio::select! {
        _ = controller => tracing::info!("controller stopped"),
        _ = async { while leader.changed().await.is_ok() && *leader.borrow() {} } => {
            tracing::error!("lost leadership; exiting so a fresh start re-elects");
            anyhow::bail!("lost leadership");
        }
    }
    // Closing the channel makes the lease task release the Lease, so the other replica takes
    // over now rather than when the Lease expires (15 s).
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
        Ok(Ok(Err(err))) => tracing::warn!(%err, "could not release the leader Lease"),
        Ok(Err(err)) => tracing::warn!(%err, "lease task failed"),
        Err(_) => tracing::warn!("timed out releasing the leader Lease"),
    }
    server.abort();
    Ok(())
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn build_objects_map_back_to_their_config_even_with_long_names() {
        let long = "p".repeat(100);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "build-x",
                "labels": {CONFIG_LABEL: objects::fit_63(&long)},
                "annotations": {objects::CONFIG_ANNOTATION: long},
            }
        }))
        .unwrap();
        assert_eq!(by_config_annotation(pod).map(|r| r.name), Some(long));
        // Objects made before the annotation existed still map by their label.
        let old: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "build-y", "labels": {CONFIG_LABEL: "worker"}}
        }))
        .unwrap();
        assert_eq!(
            by_config_annotation(old).map(|r| r.name).as_deref(),
            Some("worker")
        );
    }
}
