//! The controller process: HTTP endpoints at once, leader election, then — while leading — the
//! watches that fill the caches and say which MachineOSConfig to reconcile, and the controller
//! loop (bounded concurrency, a short debounce).
//!
//! Each watch runs in its own task: it updates its cache first, then maps what changed to the
//! MachineOSConfigs concerned. Changes Strata itself makes and nobody needs to react to (status
//! written to builds and MachineOSConfigs, finalizer edits) are filtered out there, so a write
//! does not start another round of reconciles.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use strata_crds::contract::{annotations, labels, mco};
use strata_crds::{MachineOSBuild, MachineOSConfig};
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::settings::Settings;
use super::stores::{Stores, strip_config_map, strip_machine_config, strip_managed_fields};
use super::{Context, environment, error_policy, http, reconcile};

pub(crate) type Trigger = mpsc::Sender<ObjectRef<MachineOSConfig>>;

/// How long after a change the reconcile starts, so a burst of changes makes one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Runs the controller: metrics/health server at once, reconciling only while leader.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let secure = settings.secure_metrics();
    let server = tokio::spawn(http::serve(
        settings.http_address,
        metrics.clone(),
        ready.clone(),
        secure.is_none(),
    ));
    let secure_server = secure.map(|secure| {
        tokio::spawn(http::serve_secure_metrics(
            secure,
            client.clone(),
            metrics.clone(),
        ))
    });

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
    // A standby replica is ready: it serves its endpoints and takes over when the leader goes.
    ready.store(true, Ordering::Relaxed);
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
            if let Some(s) = &secure_server { s.abort(); }
            return Ok(());
        }
    }
    tracing::info!(%identity, "leading: starting the watches");
    metrics.set_leader(true);

    let (trigger, triggers) = mpsc::channel(4096);
    let layering = openshift_layering_served(&client).await;
    tracing::info!(served = layering, "OpenShift's own MachineOSConfig API");
    let mut stores = start_watches(&client, &settings, &trigger, layering);
    stores.environment = environment::watches::start(
        &client,
        &settings.environment,
        &settings.namespace,
        &stores.configs,
        &trigger,
    )
    .await;
    wait_for_caches(&stores).await;
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
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings.clone(),
        stores.clone(),
        metrics,
        recorder,
    ));
    let events_ctx = Arc::clone(&ctx);
    let controller = Controller::for_stream(
        futures::stream::pending::<Result<MachineOSConfig, watcher::Error>>(),
        stores.configs.clone(),
    )
    .with_config(
        ControllerConfig::default()
            .concurrency(settings.concurrency)
            .debounce(DEBOUNCE),
    )
    .reconcile_on(tokio_stream_of(triggers))
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
        }
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
    if let Some(s) = &secure_server {
        s.abort();
    }
    Ok(())
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn wait_for_caches(stores: &Stores) {
    let waits = [
        Box::pin(stores.configs.wait_until_ready())
            as std::pin::Pin<Box<dyn Future<Output = _> + Send>>,
        Box::pin(stores.builds.wait_until_ready()),
        Box::pin(stores.jobs.wait_until_ready()),
        Box::pin(stores.pods.wait_until_ready()),
        Box::pin(stores.secrets.wait_until_ready()),
        Box::pin(stores.build_config_maps.wait_until_ready()),
        Box::pin(stores.release.wait_until_ready()),
        Box::pin(stores.pools.wait_until_ready()),
        Box::pin(stores.machine_configs.wait_until_ready()),
        Box::pin(stores.openshift_configs.wait_until_ready()),
    ];
    for wait in waits {
        let _ = wait.await;
    }
    stores.environment.wait_until_ready().await;
}

/// What a watch does with a changed object: the MachineOSConfigs to reconcile.
pub(crate) type Mapper<K> =
    Box<dyn Fn(&K, &Store<MachineOSConfig>) -> Vec<ObjectRef<MachineOSConfig>> + Send + Sync>;
/// Whether a change matters: the object and whether it was deleted.
pub(crate) type Filter<K> = Box<dyn FnMut(&K, bool) -> bool + Send>;

/// Starts one watch: cache `writer` filled from `api`, `modify` applied to every object, and
/// `filter`ed changes mapped to MachineOSConfigs sent to `trigger`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<K>,
    modify: fn(&mut K),
    mut filter: Filter<K>,
    mapper: Mapper<K>,
    configs: Store<MachineOSConfig>,
    trigger: Trigger,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    tokio::spawn(async move {
        let mut synced = false;
        let mut events = watcher(api, config)
            .default_backoff()
            .modify(modify)
            .boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    tracing::warn!(%err, "watch error; retrying");
                    continue;
                }
            };
            writer.apply_watcher_event(&event);
            let changed = match &event {
                watcher::Event::Apply(obj) => Some((obj, false)),
                watcher::Event::Delete(obj) => Some((obj, true)),
                // After the first list, a relist (the watch was lost) may carry missed changes.
                watcher::Event::InitApply(obj) if synced => Some((obj, false)),
                watcher::Event::InitDone => {
                    synced = true;
                    None
                }
                _ => None,
            };
            if let Some((obj, deleted)) = changed
                && filter(obj, deleted)
            {
                for config in mapper(obj, &configs) {
                    let _ = trigger.send(config).await;
                }
            }
        }
    });
}

type ConfigKey = (
    Option<i64>,
    Option<std::collections::BTreeMap<String, String>>,
    Option<Vec<String>>,
    bool,
);

/// What of a MachineOSConfig starts a reconcile: its spec (generation), annotations (rebuild),
/// finalizers and deletion — not its status, which Strata writes.
fn config_key(c: &MachineOSConfig) -> ConfigKey {
    (
        c.metadata.generation,
        c.metadata.annotations.clone(),
        c.metadata.finalizers.clone(),
        c.metadata.deletion_timestamp.is_some(),
    )
}

/// Passes new and deleted objects, and those whose `key` changed.
fn changed_by<K: Resource, T: PartialEq + Send + 'static>(
    key: impl Fn(&K) -> T + Send + 'static,
) -> Filter<K> {
    let mut seen: HashMap<String, T> = HashMap::new();
    Box::new(move |obj: &K, deleted: bool| {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        if deleted {
            seen.remove(&uid);
            return true;
        }
        let now = key(obj);
        let changed = seen.get(&uid) != Some(&now);
        seen.insert(uid, now);
        changed
    })
}

pub(crate) fn every_change<K>() -> Filter<K> {
    Box::new(|_, _| true)
}

/// The MachineOSConfig a build object (Job, Pod) belongs to: its annotation (the full name), else
/// its label (cut to 63 characters, so only a fallback).
fn by_config_annotation<K: Resource>(
    obj: &K,
    _: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::CONFIG))
        .or_else(|| {
            obj.meta()
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::CONFIG))
        })
        .map(|name| vec![ObjectRef::new(name)])
        .unwrap_or_default()
}

/// The MachineOSConfigs naming `pool`.
fn configs_of_pool(
    pool: &str,
    configs: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    configs
        .state()
        .iter()
        .filter(|c| c.spec.machine_config_pool.name == pool || c.name_any() == pool)
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// The MachineOSConfigs that name `secret`; for a per-build Secret Strata makes, its build's.
fn configs_of_secret(
    secret: &Secret,
    configs: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    if labels::managed_by_strata(&secret.metadata) {
        return by_config_annotation(secret, configs);
    }
    let name = secret.name_any();
    configs
        .state()
        .iter()
        .filter(|c| {
            c.spec.rendered_image_push_secret.name == name
                || c.spec
                    .base_image_pull_secret
                    .as_ref()
                    .is_some_and(|s| s.name == name)
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

pub(crate) fn all_configs<K>(
    _: &K,
    configs: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    configs
        .state()
        .iter()
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Whether the cluster serves OpenShift's own MachineOSConfig (on-cluster layering): Strata must
/// not build for a pool OpenShift already builds for. Checked once at start.
async fn openshift_layering_served(client: &Client) -> bool {
    let version = format!("{}/{}", mco::GROUP, mco::VERSION);
    client
        .list_api_group_resources(&version)
        .await
        .is_ok_and(|list| list.resources.iter().any(|r| r.name == "machineosconfigs"))
}

/// Starts every watch and returns the caches' readers.
fn start_watches(
    client: &Client,
    settings: &Settings,
    trigger: &Trigger,
    layering: bool,
) -> Stores {
    let ns = &settings.namespace;
    let ours = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::MANAGED_BY_VALUE
    ));
    let (configs, configs_writer) = reflector::store::<MachineOSConfig>();
    let (builds, builds_writer) = reflector::store::<MachineOSBuild>();
    let (jobs, jobs_writer) = reflector::store::<Job>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (secrets, secrets_writer) = reflector::store::<Secret>();
    let (release, release_writer) = reflector::store::<ConfigMap>();
    let (build_config_maps, build_config_maps_writer) = reflector::store::<ConfigMap>();
    let pools_writer = reflector::store::Writer::<DynamicObject>::new(mco::machine_config_pool());
    let pools = pools_writer.as_reader();
    let mcs_writer = reflector::store::Writer::<DynamicObject>::new(mco::machine_config());
    let machine_configs = mcs_writer.as_reader();
    let mut ocl_writer =
        reflector::store::Writer::<DynamicObject>::new(mco::openshift_machine_os_config());
    let openshift_configs = ocl_writer.as_reader();

    // MachineOSConfigs: spec, annotation (rebuild), finalizer and deletion changes; not status.
    // (kube's finalizer helper adds the finalizer and waits for that change to reconcile again.)
    spawn_watch(
        Api::<MachineOSConfig>::all(client.clone()),
        watcher::Config::default(),
        configs_writer,
        strip_managed_fields,
        changed_by(config_key),
        Box::new(|c: &MachineOSConfig, _: &Store<MachineOSConfig>| vec![ObjectRef::from_obj(c)]),
        configs.clone(),
        trigger.clone(),
    );
    // MachineOSBuilds: created or deleted (their spec never changes; their status is ours).
    spawn_watch(
        Api::<MachineOSBuild>::all(client.clone()),
        watcher::Config::default(),
        builds_writer,
        strip_managed_fields,
        changed_by(|_: &MachineOSBuild| ()),
        Box::new(|b: &MachineOSBuild, _: &Store<MachineOSConfig>| {
            vec![ObjectRef::new(&b.spec.machine_os_config.name)]
        }),
        configs.clone(),
        trigger.clone(),
    );
    spawn_watch(
        Api::<Job>::namespaced(client.clone(), ns),
        ours.clone(),
        jobs_writer,
        strip_managed_fields,
        every_change(),
        Box::new(by_config_annotation),
        configs.clone(),
        trigger.clone(),
    );
    spawn_watch(
        Api::<Pod>::namespaced(client.clone(), ns),
        ours.clone(),
        pods_writer,
        strip_managed_fields,
        every_change(),
        Box::new(by_config_annotation),
        configs.clone(),
        trigger.clone(),
    );
    spawn_watch(
        Api::<Secret>::namespaced(client.clone(), ns),
        watcher::Config::default(),
        secrets_writer,
        strip_managed_fields,
        // Users' Secrets on any change; a per-build one only when it goes (made again while its
        // build runs; see plan/build_status).
        Box::new(|s: &Secret, deleted: bool| deleted || !labels::managed_by_strata(&s.metadata)),
        Box::new(configs_of_secret),
        configs.clone(),
        trigger.clone(),
    );
    // The builds' ConfigMaps: one gone while its build runs is made again (see plan/build_status).
    spawn_watch(
        Api::<ConfigMap>::namespaced(client.clone(), ns),
        ours.clone(),
        build_config_maps_writer,
        strip_config_map,
        Box::new(|_: &ConfigMap, deleted: bool| deleted),
        Box::new(by_config_annotation),
        configs.clone(),
        trigger.clone(),
    );
    spawn_watch(
        Api::<ConfigMap>::namespaced(client.clone(), &settings.release_configmap_namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", settings.release_configmap)),
        release_writer,
        strip_managed_fields,
        every_change(),
        Box::new(all_configs),
        configs.clone(),
        trigger.clone(),
    );
    spawn_watch(
        Api::<DynamicObject>::all_with(client.clone(), &mco::machine_config_pool()),
        watcher::Config::default(),
        pools_writer,
        strip_managed_fields,
        every_change(),
        Box::new(|pool: &DynamicObject, configs: &Store<MachineOSConfig>| {
            configs_of_pool(&pool.name_any(), configs)
        }),
        configs.clone(),
        trigger.clone(),
    );
    // MachineConfigs: ours changed by someone else, or gone.
    spawn_watch(
        Api::<DynamicObject>::all_with(client.clone(), &mco::machine_config()),
        watcher::Config::default(),
        mcs_writer,
        strip_machine_config,
        changed_by(|mc: &DynamicObject| (mc.metadata.generation, mc.metadata.labels.clone())),
        Box::new(by_config_annotation),
        configs.clone(),
        trigger.clone(),
    );
    if layering {
        // OpenShift's MachineOSConfigs: a pool they name is refused.
        spawn_watch(
            Api::<DynamicObject>::all_with(client.clone(), &mco::openshift_machine_os_config()),
            watcher::Config::default(),
            ocl_writer,
            strip_managed_fields,
            every_change(),
            Box::new(|ocl: &DynamicObject, configs: &Store<MachineOSConfig>| {
                let pool = ocl.data["spec"]["machineConfigPool"]["name"]
                    .as_str()
                    .unwrap_or_default();
                configs_of_pool(pool, configs)
            }),
            configs.clone(),
            trigger.clone(),
        );
    } else {
        // Not served: an empty cache, ready at once.
        ocl_writer.apply_watcher_event(&watcher::Event::Init);
        ocl_writer.apply_watcher_event(&watcher::Event::InitDone);
    }
    Stores {
        configs,
        builds,
        jobs,
        pods,
        secrets,
        build_config_maps,
        release,
        pools,
        machine_configs,
        openshift_configs,
        environment: environment::watches::EnvironmentStores::unstarted(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn build_objects_map_back_to_their_config_even_with_long_names() {
        let (store, _writer) = reflector::store::<MachineOSConfig>();
        let long = "p".repeat(100);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "build-x",
                "labels": {labels::CONFIG: crate::controller::names::fit_63(&long)},
                "annotations": {annotations::CONFIG: long},
            }
        }))
        .unwrap();
        let refs = by_config_annotation(&pod, &store);
        assert_eq!(refs[0].name, long);
        // Objects made before the annotation existed still map by their label.
        let old: Pod = serde_json::from_value(json!({
            "metadata": {"name": "build-y", "labels": {labels::CONFIG: "worker"}}
        }))
        .unwrap();
        assert_eq!(by_config_annotation(&old, &store)[0].name, "worker");
    }

    #[test]
    fn status_writes_do_not_pass_the_config_filter() {
        let mut filter = changed_by(config_key);
        let mut config: MachineOSConfig = serde_json::from_value(json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
            "metadata": {"name": "worker", "uid": "u1", "generation": 1},
            "spec": {
                "machineConfigPool": {"name": "worker"},
                "imageBuilder": {"imageBuilderType": "Job"},
                "renderedImagePushSecret": {"name": "push"},
                "renderedImagePushSpec": "r.example.com/os:latest",
            }
        }))
        .unwrap();
        assert!(filter(&config, false), "a new object passes");
        config.status = Some(Default::default());
        config.metadata.resource_version = Some("2".into());
        assert!(!filter(&config, false), "a status write does not");
        // The finalizer helper adds the finalizer and waits for that change to come back.
        config.metadata.finalizers = Some(vec!["strata.dev/machine-config".into()]);
        assert!(filter(&config, false), "a finalizer edit does");
        config.metadata.resource_version = Some("3".into());
        assert!(!filter(&config, false), "the same again does not");
        config.metadata.generation = Some(2);
        assert!(filter(&config, false), "a spec change does");
        config.metadata.annotations = Some([("strata.dev/rebuild".into(), "1".into())].into());
        assert!(filter(&config, false), "the rebuild annotation does");
        assert!(filter(&config, true), "a deletion does");
    }
}
