//! The controller process: HTTP endpoints at once, leader election, then — while leading — the
//! caches ([`cache::start`]) and the controller loop (bounded concurrency, a short debounce),
//! until told to stop or leadership is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use strata_crds::MachineOSConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::metrics::Metrics;
use super::settings::Settings;
use super::{Context, builder_egress, cache, error_policy, http, reconcile};

/// How long after a change the reconcile starts, so a burst of changes makes one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(50);

type LeaseTask = JoinHandle<kube_lease_manager::Result<LeaseManager>>;

/// Runs the controller: metrics/health server at once, reconciling only while leader.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let servers = Servers::start(&settings, &client, &metrics);
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("strata-{}", std::process::id()));
    let (mut leader, lease_task) = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
        .with_namespace(&settings.namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?
        .watch()
        .await;
    tracing::info!(%identity, lease = %settings.lease_name, "waiting for leadership");
    // A standby replica is ready: it serves its endpoints and takes over when the leader goes.
    servers.ready.store(true, Ordering::Relaxed);
    // A replica told to stop while it waits (a rollout) goes at once instead of at the kill.
    tokio::select! {
        result = leading(&mut leader) => result?,
        _ = terminated() => {
            tracing::info!(%identity, "stopping before leading");
            servers.abort();
            return Ok(());
        }
    }
    tracing::info!(%identity, "leading: starting the watches");
    metrics.set_leader(true);
    let (trigger, triggers) = mpsc::channel(4096);
    let stores = cache::start(&client, &settings, trigger.clone()).await;
    tracing::info!("caches filled; starting the controller");
    for config in stores.configs.state() {
        let _ = trigger.send(ObjectRef::from_obj(config.as_ref())).await;
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "strata-controller".into(),
            instance: Some(identity.clone()),
        },
    );
    let ctx = Arc::new(Context::new(client, settings, stores, metrics, recorder));
    let egress = tokio::spawn(builder_egress::keep(Arc::clone(&ctx)));
    let result = reconcile_while_leading(ctx, triggers, &mut leader).await;
    egress.abort();
    result?;
    release(leader, lease_task).await;
    servers.abort();
    Ok(())
}

/// The HTTP servers: probes and metrics on the plain listener, `/metrics` over TLS when a
/// certificate is configured.
struct Servers {
    plain: JoinHandle<std::io::Result<()>>,
    secure: Option<JoinHandle<std::io::Result<()>>>,
    /// What `/readyz` answers.
    ready: Arc<AtomicBool>,
}

impl Servers {
    fn start(settings: &Settings, client: &Client, metrics: &Arc<Metrics>) -> Self {
        let ready = Arc::new(AtomicBool::new(false));
        let secure = settings.secure_metrics();
        let plain = tokio::spawn(http::serve(
            settings.http_address,
            metrics.clone(),
            ready.clone(),
            secure.is_none(),
        ));
        let secure = secure.map(|secure| {
            tokio::spawn(http::serve_secure_metrics(
                secure,
                client.clone(),
                metrics.clone(),
            ))
        });
        Self {
            plain,
            secure,
            ready,
        }
    }

    fn abort(&self) {
        self.plain.abort();
        if let Some(s) = &self.secure {
            s.abort();
        }
    }
}

/// Returns once this replica holds the Lease.
async fn leading(leader: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
    while !*leader.borrow_and_update() {
        leader.changed().await?;
    }
    Ok(())
}

/// The controller loop over the configs `triggers` name, until it is told to stop (Ok) or this
/// replica loses the Lease (an error: a fresh start re-elects).
async fn reconcile_while_leading(
    ctx: Arc<Context>,
    triggers: mpsc::Receiver<ObjectRef<MachineOSConfig>>,
    leader: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let events_ctx = Arc::clone(&ctx);
    let queue_metrics = Arc::clone(&ctx.metrics);
    let controller = Controller::for_stream(
        futures::stream::pending::<Result<MachineOSConfig, watcher::Error>>(),
        ctx.stores.configs.clone(),
    )
    .with_config(
        ControllerConfig::default()
            .concurrency(ctx.settings.concurrency)
            .debounce(DEBOUNCE),
    )
    // Each config named is stamped as it enters kube's queue (strata_reconcile_queue_wait_seconds).
    .reconcile_on(tokio_stream_of(triggers).inspect(move |config| {
        queue_metrics.reconcile_queued(config.clone());
    }))
    .graceful_shutdown_on(terminated())
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(err) = result {
            tracing::debug!(%err, "reconcile error");
        }
    });
    tokio::select! {
        _ = controller => {
            tracing::info!("controller stopped");
            // The last rounds' Events, still being sent, get a moment.
            let _ = tokio::time::timeout(Duration::from_secs(2), events_ctx.events.flush()).await;
            Ok(())
        }
        _ = async { while leader.changed().await.is_ok() && *leader.borrow() {} } => {
            tracing::error!("lost leadership; exiting so a fresh start re-elects");
            anyhow::bail!("lost leadership");
        }
    }
}

/// Closing the channel makes the lease task release the Lease, so the other replica takes over
/// now rather than when the Lease expires (15 s).
async fn release(leader: watch::Receiver<bool>, lease_task: LeaseTask) {
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
        Ok(Ok(Err(err))) => tracing::warn!(%err, "could not release the leader Lease"),
        Ok(Err(err)) => tracing::warn!(%err, "lease task failed"),
        Err(_) => tracing::warn!("timed out releasing the leader Lease"),
    }
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
pub async fn terminated() {
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
