//! NetworkPolicy `strata-builder`, kept by the controller. Builder pods run fragment code; a
//! policy written once by hand cannot name what they need (each config's registry, the mirrors,
//! the proxy) nor what they must not reach on the ports registries use (the API server where it
//! listens on 443, the cluster's pods and Services). The controller knows both: it applies the
//! policy when it starts leading, before every builder Job it makes (a new registry is reachable
//! before its first build), and every [`REFRESH`] (the addresses behind names change; a policy
//! edited or deleted by hand is put back).

mod policy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;
use strata_crds::contract::FIELD_MANAGER;
use tokio::sync::Mutex;

pub use policy::{Destination, EgressInputs, NAME, Peer, destinations, policy};

use super::environment::Environment;
use super::error::{Error, Write};
use super::settings::BuilderEgress;
use super::{Context, observe};

/// How often the policy is recomputed from scratch (names resolved again, the cluster's
/// addresses read again).
pub const REFRESH: Duration = Duration::from_secs(60);
/// How long one name's resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// What was read and applied last.
#[derive(Default)]
pub struct Keeper {
    state: Mutex<KeeperState>,
}

#[derive(Default)]
struct KeeperState {
    applied: Option<NetworkPolicy>,
    /// Each destination's peers, and when they were resolved.
    resolved: HashMap<Destination, (Instant, Vec<Peer>)>,
    /// The API server's addresses and the cluster's networks, and when they were read.
    cluster: Option<(Instant, BTreeSet<IpAddr>, BTreeSet<String>)>,
}

impl Keeper {
    /// Applies the policy if it changed. `fresh` (every [`REFRESH`]) reads and resolves
    /// everything again and compares with the stored policy too, so one edited or deleted by
    /// hand is put back.
    pub async fn ensure(&self, ctx: &Context, fresh: bool) -> Result<(), Error> {
        let mode = ctx.settings.builder_network.egress;
        if mode == BuilderEgress::Unmanaged {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let stale = |at: Instant| fresh || now.duration_since(at) >= REFRESH;
        if state.cluster.as_ref().is_none_or(|(at, ..)| stale(*at)) {
            let (api_servers, networks) = read_cluster(ctx).await;
            state.cluster = Some((now, api_servers, networks));
        }
        let mut inputs = EgressInputs::default();
        if let Some((_, api_servers, networks)) = &state.cluster {
            inputs.api_servers = api_servers.clone();
            inputs.cluster_networks = networks.clone();
        }
        let wanted = wanted(ctx);
        // Names no build uses any more are forgotten; stale ones are resolved all at once.
        state.resolved.retain(|d, _| wanted.contains(d));
        let unresolved: Vec<&Destination> = wanted
            .iter()
            .filter(|d| state.resolved.get(*d).is_none_or(|(at, _)| stale(*at)))
            .collect();
        let peers = futures::future::join_all(unresolved.iter().map(|d| resolve(d))).await;
        for (destination, peers) in unresolved.into_iter().zip(peers) {
            state.resolved.insert(destination.clone(), (now, peers));
        }
        for (destination, (_, peers)) in &state.resolved {
            for peer in peers {
                inputs
                    .reached
                    .entry((peer.clone(), destination.port))
                    .or_default()
                    .insert(destination.host.clone());
            }
        }
        let desired = policy(&ctx.settings.namespace, mode, &inputs);
        if !fresh && state.applied.as_ref() == Some(&desired) {
            return Ok(());
        }
        let api = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ctx.settings.namespace);
        // The stored policy (a new leader's predecessor's, or this one's): no write when it is
        // the same, so a resync writes nothing.
        if let Ok(Some(existing)) = api.get_opt(NAME).await
            && same_policy(&existing, &desired)
        {
            state.applied = Some(desired);
            return Ok(());
        }
        api.patch(
            NAME,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(Write::ApplyNetworkPolicy.failed(format!("{}/{NAME}", ctx.settings.namespace)))?;
        tracing::info!(
            destinations = ?inputs.reached.values().flatten().collect::<BTreeSet<_>>(),
            api_servers = ?inputs.api_servers,
            cluster_networks = ?inputs.cluster_networks,
            "applied NetworkPolicy {NAME}"
        );
        state.applied = Some(desired);
        Ok(())
    }
}

/// Whether the stored policy `existing` is `desired`: its spec and Strata's label.
fn same_policy(existing: &NetworkPolicy, desired: &NetworkPolicy) -> bool {
    existing.spec == desired.spec
        && strata_crds::contract::labels::managed_by_strata(&existing.metadata)
}

/// Every destination of the builds the controller knows of now.
fn wanted(ctx: &Context) -> BTreeSet<Destination> {
    let stores = &ctx.stores;
    let environment = Environment::from_sources(
        &stores
            .environment
            .sources(&stores.secrets, &ctx.settings.namespace),
    );
    let configs = stores.configs.state();
    let release = observe::release_base(ctx).ok();
    destinations(
        configs
            .iter()
            .map(|c| c.spec.rendered_image_push_spec.as_str()),
        configs
            .iter()
            .filter_map(|c| c.spec.base_image.as_deref())
            .chain(release.as_deref()),
        &environment,
        &ctx.settings.builder_network.allow,
    )
}

/// A destination's peers: its address, a Service's namespace, or the addresses its name
/// resolves to (none, logged, when it does not resolve).
async fn resolve(destination: &Destination) -> Vec<Peer> {
    if let Ok(ip) = destination.host.parse::<IpAddr>() {
        return vec![Peer::Address(ip)];
    }
    if let Some(namespace) = destination.service_namespace() {
        return vec![Peer::Namespace(namespace.to_string())];
    }
    let lookup = tokio::net::lookup_host((destination.host.as_str(), destination.port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addresses)) => {
            let ips: BTreeSet<IpAddr> = addresses.map(|a| a.ip()).collect();
            ips.into_iter().map(Peer::Address).collect()
        }
        Ok(Err(err)) => {
            tracing::warn!(host = %destination.host, %err, "cannot resolve a builder destination");
            vec![]
        }
        Err(_) => {
            tracing::warn!(host = %destination.host, "resolving a builder destination timed out");
            vec![]
        }
    }
}

/// The API server's addresses (EndpointSlice `default/kubernetes`) and the cluster's networks
/// (`--cluster-networks`, and OpenShift's Network config where it is served). What cannot be
/// read is left out, with a warning: the policy still names what is known.
async fn read_cluster(ctx: &Context) -> (BTreeSet<IpAddr>, BTreeSet<String>) {
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), "default");
    let api_servers = match slices.get_opt("kubernetes").await {
        Ok(slice) => slice
            .iter()
            .flat_map(|s| &s.endpoints)
            .flat_map(|e| &e.addresses)
            .filter_map(|a| a.parse().ok())
            .collect(),
        Err(err) => {
            tracing::warn!(%err, "cannot read the API server's EndpointSlice default/kubernetes");
            BTreeSet::new()
        }
    };
    let mut networks: BTreeSet<String> = ctx
        .settings
        .builder_network
        .cluster_networks
        .iter()
        .cloned()
        .collect();
    let gvk = GroupVersionKind::gvk("config.openshift.io", "v1", "Network");
    let api: Api<DynamicObject> = Api::all_with(
        ctx.client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "networks"),
    );
    match api.get_opt("cluster").await {
        Ok(Some(network)) => networks.extend(openshift_networks(&network.data)),
        Ok(None) => {}
        // Not OpenShift: no such resource.
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(err) => tracing::warn!(%err, "cannot read networks.config.openshift.io/cluster"),
    }
    (api_servers, networks)
}

/// The pod and Service networks of OpenShift's Network config (`status.clusterNetwork[].cidr`,
/// `status.serviceNetwork[]`).
pub fn openshift_networks(network: &Value) -> BTreeSet<String> {
    let status = &network["status"];
    let pods = status["clusterNetwork"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["cidr"].as_str());
    let services = status["serviceNetwork"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    pods.chain(services).map(str::to_string).collect()
}

/// Keeps the policy while this replica leads: at once, then every [`REFRESH`].
pub async fn keep(ctx: std::sync::Arc<Context>) {
    loop {
        if let Err(err) = ctx.builder_egress.ensure(&ctx, true).await {
            tracing::warn!(%err, "cannot apply NetworkPolicy {NAME}");
        }
        tokio::time::sleep(REFRESH).await;
    }
}
