//! In-memory caches of every kind the controller reads, fed by watches that also say which
//! MachineOSConfig to reconcile. Observe reads the caches and never GETs a watched kind.
//!
//! - [`watch`]: one watch (the leaf: a small builder, filters, mappers, what is stripped).
//! - [`kinds`]: the watches of MachineOSConfigs, builds, their objects, pools, MachineConfigs,
//!   Nodes.
//! - [`environment`]: the watches of the cluster's environment, each optional.
//! - [`stores`]: the readers of every cache.
//!
//! [`start`] starts every cache; nothing else does.

pub mod environment;
pub mod kinds;
pub mod stores;
pub mod watch;

use kube::Client;
use kube::runtime::reflector::{self, ObjectRef};
use strata_crds::MachineOSConfig;
use strata_crds::contract::mco;
use tokio::sync::mpsc;

pub use stores::{EnvironmentStores, Stores};

use super::settings::Settings;
use watch::Trigger;

/// Starts every watch, changes sent to `sender` as the MachineOSConfigs to reconcile, and
/// returns the caches' readers once each holds its first list.
pub async fn start(
    client: &Client,
    settings: &Settings,
    sender: mpsc::Sender<ObjectRef<MachineOSConfig>>,
) -> Stores {
    let (configs, configs_writer) = reflector::store::<MachineOSConfig>();
    let trigger = &Trigger::new(sender, configs);
    let layering = openshift_layering_served(client).await;
    tracing::info!(served = layering, "OpenShift's own MachineOSConfig API");
    let pools = kinds::pools(client, trigger);
    let nodes = kinds::nodes(client, &pools, trigger).await;
    let stores = Stores {
        configs: kinds::configs(client, configs_writer, trigger),
        builds: kinds::builds(client, trigger),
        jobs: kinds::build_objects(client, settings, trigger),
        pods: kinds::build_objects(client, settings, trigger),
        secrets: kinds::secrets(client, settings, trigger),
        build_config_maps: kinds::build_config_maps(client, settings, trigger),
        release: kinds::release(client, settings, trigger),
        pools,
        machine_configs: kinds::machine_configs(client, trigger),
        nodes,
        openshift_configs: kinds::openshift_configs(client, layering, trigger),
        environment: environment::start(
            client,
            &settings.environment,
            &settings.namespace,
            trigger,
        )
        .await,
    };
    stores.wait_until_ready().await;
    stores
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
