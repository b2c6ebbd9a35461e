//! The pure part: which endpoints the builds reach, and the NetworkPolicy that lets builder pods
//! reach them and nothing of the cluster's own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use strata_crds::contract::labels;

use crate::controller::environment::{Environment, split_host_port};
use crate::controller::settings::BuilderEgress;

/// The NetworkPolicy's name.
pub const NAME: &str = "strata-builder";
/// Ports a builder reaches anywhere outside the cluster in [`BuilderEgress::Internet`] mode:
/// HTTPS (registries, package repositories) and the registries' customary port.
pub const INTERNET_PORTS: [u16; 2] = [443, 5000];
/// Cloud metadata and other link-local services: never.
const LINK_LOCAL: &str = "169.254.0.0/16";

/// A `host:port` a build reaches: a registry, a mirror, the proxy, an administrator's extra.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// `host[:port]` (a registry's domain, `[v6]:port` too), `port` when it names none.
    pub fn parse(address: &str, default_port: u16) -> Option<Self> {
        let (host, port) = split_host_port(address.trim());
        let port = match port {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        (!host.is_empty()).then(|| Self {
            host: host.to_string(),
            port,
        })
    }

    /// The registry of image reference `image` (`docker.io` when it names none), on 443 unless
    /// it says.
    pub fn of_image(image: &str) -> Option<Self> {
        let reference = oci_client::Reference::from_str(image).ok()?;
        Self::parse(reference.registry(), 443)
    }

    /// The namespace of a Service's DNS name (`name.namespace.svc[.cluster.local]`): pods reach
    /// its endpoints, which a NetworkPolicy names by their namespace, not its cluster IP.
    pub fn service_namespace(&self) -> Option<&str> {
        let host = self.host.trim_end_matches('.');
        let service = host
            .strip_suffix(".svc.cluster.local")
            .or_else(|| host.strip_suffix(".svc"))?;
        let (_, namespace) = service.split_once('.')?;
        (!namespace.is_empty() && !namespace.contains('.')).then_some(namespace)
    }
}

/// Where the builds of `push_specs` (each config's push spec) and `bases` (the release's and
/// the configs' own OS bases) pull from and push to: those registries, every mirror of the
/// cluster's registry policy, the cluster proxy, and the administrator's `extra` endpoints.
pub fn destinations<'a>(
    push_specs: impl IntoIterator<Item = &'a str>,
    bases: impl IntoIterator<Item = &'a str>,
    environment: &Environment,
    extra: &[String],
) -> BTreeSet<Destination> {
    let mut out: BTreeSet<Destination> = push_specs
        .into_iter()
        .chain(bases)
        .filter_map(Destination::of_image)
        .collect();
    for rule in &environment.registries.mirrors {
        out.extend(
            rule.mirrors
                .iter()
                .filter_map(|m| Destination::parse(m.split('/').next().unwrap_or(m), 443)),
        );
    }
    for proxy in [&environment.proxy.http, &environment.proxy.https] {
        out.extend(proxy_destination(proxy));
    }
    out.extend(extra.iter().filter_map(|e| Destination::parse(e, 443)));
    out
}

/// `http://[user:password@]host[:port][/]` → host and port (80/443 by scheme).
fn proxy_destination(url: &str) -> Option<Destination> {
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    let (default_port, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (443, rest),
        Some((_, rest)) => (80, rest),
        None => (80, url),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Destination::parse(host_port, default_port)
}

/// A destination as the policy names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// One address (a registry outside the cluster, or on a node).
    Address(IpAddr),
    /// Every pod of a namespace (a Service's endpoints: an in-cluster registry).
    Namespace(String),
}

/// What [`policy`] is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressInputs {
    /// Each destination's peers (addresses resolved, or a Service's namespace), with its port.
    pub reached: BTreeMap<(Peer, u16), BTreeSet<String>>,
    /// The API server's addresses (the `kubernetes` EndpointSlice).
    pub api_servers: BTreeSet<IpAddr>,
    /// The cluster's own networks: pods, Services (CIDRs).
    pub cluster_networks: BTreeSet<String>,
}

/// NetworkPolicy [`NAME`] in `namespace` for builder pods: DNS; each destination's own address
/// and port; and in [`BuilderEgress::Internet`] mode [`INTERNET_PORTS`] anywhere but the
/// cluster's networks, the API server's addresses and link-local addresses. No ingress.
pub fn policy(namespace: &str, mode: BuilderEgress, inputs: &EgressInputs) -> NetworkPolicy {
    let mut egress = vec![dns_rule()];
    egress.extend(destination_rules(inputs));
    if mode == BuilderEgress::Internet {
        egress.push(internet_rule(inputs));
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    labels::COMPONENT.to_string(),
                    labels::BUILDER.to_string(),
                )])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            // No rule: no ingress (an empty list would not round-trip: the API server drops it).
            ingress: None,
            egress: Some(egress),
        }),
    }
}

/// DNS, anywhere (the cluster's resolver, or the node's).
fn dns_rule() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        ports: Some(
            [("UDP", 53), ("TCP", 53), ("UDP", 5353), ("TCP", 5353)]
                .into_iter()
                .map(|(protocol, port)| tcp_or_udp(protocol, port))
                .collect(),
        ),
        to: None,
    }
}

/// One rule per port: the destinations reached on it.
fn destination_rules(inputs: &EgressInputs) -> Vec<NetworkPolicyEgressRule> {
    let mut by_port: BTreeMap<u16, Vec<NetworkPolicyPeer>> = BTreeMap::new();
    for (peer, port) in inputs.reached.keys() {
        by_port.entry(*port).or_default().push(match peer {
            Peer::Address(ip) => ip_block(&host_cidr(*ip), vec![]),
            Peer::Namespace(namespace) => NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        namespace.clone(),
                    )])),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            },
        });
    }
    by_port
        .into_iter()
        .map(|(port, to)| NetworkPolicyEgressRule {
            ports: Some(vec![tcp_or_udp("TCP", port)]),
            to: Some(to),
        })
        .collect()
}

/// [`INTERNET_PORTS`] anywhere but the cluster's networks, the API server's addresses and
/// link-local addresses (IPv4: the rule's `0.0.0.0/0` cannot except IPv6 ones).
fn internet_rule(inputs: &EgressInputs) -> NetworkPolicyEgressRule {
    let mut except: Vec<String> = inputs
        .cluster_networks
        .iter()
        .filter(|c| !c.contains(':'))
        .cloned()
        .chain(
            inputs
                .api_servers
                .iter()
                .filter(|ip| ip.is_ipv4())
                .map(|ip| host_cidr(*ip)),
        )
        .collect();
    except.push(LINK_LOCAL.to_string());
    except.sort();
    except.dedup();
    NetworkPolicyEgressRule {
        ports: Some(
            INTERNET_PORTS
                .iter()
                .map(|p| tcp_or_udp("TCP", *p))
                .collect(),
        ),
        to: Some(vec![ip_block("0.0.0.0/0", except)]),
    }
}

fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

fn ip_block(cidr: &str, except: Vec<String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: (!except.is_empty()).then_some(except),
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn tcp_or_udp(protocol: &str, port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(i32::from(port))),
        end_port: None,
    }
}
