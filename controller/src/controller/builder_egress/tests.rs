use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::json;

use super::openshift_networks;
use super::policy::{Destination, EgressInputs, INTERNET_PORTS, Peer, destinations, policy};
use crate::controller::environment::{Environment, Proxy};
use crate::controller::settings::BuilderEgress;
use crate::registry_policy::{MirrorRule, RegistryPolicy};

fn dest(host: &str, port: u16) -> Destination {
    Destination {
        host: host.into(),
        port,
    }
}

#[test]
fn destinations_are_parsed_with_their_ports() {
    assert_eq!(
        Destination::parse("quay.io", 443),
        Some(dest("quay.io", 443))
    );
    assert_eq!(
        Destination::parse("192.0.2.2:5000", 443),
        Some(dest("192.0.2.2", 5000))
    );
    assert_eq!(
        Destination::parse("[fd00::1]:5000", 443),
        Some(dest("fd00::1", 5000))
    );
    assert_eq!(
        Destination::parse("fd00::1", 443),
        Some(dest("fd00::1", 443))
    );
    assert_eq!(Destination::parse("", 443), None);
    assert_eq!(Destination::parse("host:notaport", 443), None);
    assert_eq!(
        Destination::of_image("192.0.2.2:59969/strata-e2e/worker:latest"),
        Some(dest("192.0.2.2", 59969))
    );
    assert_eq!(
        Destination::of_image(&format!("quay.io/openshift/os@sha256:{}", "0".repeat(64))),
        Some(dest("quay.io", 443))
    );
    // A name without a registry is Docker Hub's.
    assert_eq!(
        Destination::of_image("fedora:40").map(|d| d.port),
        Some(443)
    );
    assert_eq!(Destination::of_image("Not A Reference"), None);
}

#[test]
fn a_services_name_is_reached_through_its_namespace() {
    let internal = dest("image-registry.openshift-image-registry.svc", 5000);
    assert_eq!(
        internal.service_namespace(),
        Some("openshift-image-registry")
    );
    assert_eq!(
        dest("registry.tools.svc.cluster.local", 5000).service_namespace(),
        Some("tools")
    );
    assert_eq!(dest("quay.io", 443).service_namespace(), None);
    assert_eq!(dest("a.b.c.svc", 443).service_namespace(), None);
}

#[test]
fn every_registry_mirror_proxy_and_extra_is_a_destination() {
    let environment = Environment {
        proxy: Proxy {
            http: "http://user:secret@proxy.example.com:3128/".into(),
            https: "https://proxy.example.com".into(),
            no: String::new(),
        },
        registries: RegistryPolicy {
            mirrors: vec![MirrorRule {
                source: "quay.io/openshift-release-dev".into(),
                mirrors: vec!["mirror.example.com:8443/ocp".into()],
                by_digest: true,
                never_contact_source: false,
            }],
            ..RegistryPolicy::default()
        },
        ..Environment::default()
    };
    let got = destinations(
        ["image-registry.openshift-image-registry.svc:5000/strata/worker:latest"],
        [format!(
            "quay.io/openshift-release-dev/ocp@sha256:{}",
            "1".repeat(64)
        )
        .as_str()],
        &environment,
        &["satellite.example.com:443".into(), "10.1.2.3:8080".into()],
    );
    let want: BTreeSet<Destination> = [
        dest("image-registry.openshift-image-registry.svc", 5000),
        dest("quay.io", 443),
        dest("mirror.example.com", 8443),
        dest("proxy.example.com", 3128),
        dest("proxy.example.com", 443),
        dest("satellite.example.com", 443),
        dest("10.1.2.3", 8080),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

fn inputs() -> EgressInputs {
    let mut inputs = EgressInputs::default();
    let node: IpAddr = "192.0.2.2".parse().unwrap();
    for (peer, port, host) in [
        (Peer::Address(node), 5000, "192.0.2.2"),
        (Peer::Address(node), 3128, "proxy"),
        (
            Peer::Address("198.51.100.7".parse().unwrap()),
            443,
            "quay.io",
        ),
        (
            Peer::Namespace("openshift-image-registry".into()),
            5000,
            "image-registry.openshift-image-registry.svc",
        ),
    ] {
        inputs
            .reached
            .entry((peer, port))
            .or_default()
            .insert(host.into());
    }
    inputs.api_servers.insert(node);
    inputs.cluster_networks = ["10.128.0.0/14".to_string(), "172.30.0.0/16".to_string()].into();
    inputs
}

#[test]
fn the_internet_mode_policy_excepts_the_cluster_and_names_each_destination() {
    let np = policy("strata-system", BuilderEgress::Internet, &inputs());
    insta::assert_yaml_snapshot!(np);
    let spec = np.spec.unwrap();
    let internet = spec.egress.unwrap().pop().unwrap();
    let block = internet.to.unwrap()[0].ip_block.clone().unwrap();
    assert_eq!(block.cidr, "0.0.0.0/0");
    assert_eq!(
        block.except.unwrap(),
        [
            "10.128.0.0/14",
            "169.254.0.0/16",
            "172.30.0.0/16",
            "192.0.2.2/32"
        ]
    );
    let ports: Vec<_> = internet
        .ports
        .unwrap()
        .into_iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports.len(), INTERNET_PORTS.len());
}

#[test]
fn the_registries_mode_policy_reaches_only_dns_and_the_destinations() {
    let np = policy("strata-system", BuilderEgress::Registries, &inputs());
    let egress = np.spec.unwrap().egress.unwrap();
    // DNS, then one rule per destination port: 443, 3128, 5000.
    assert_eq!(egress.len(), 4);
    assert!(egress[0].to.is_none(), "DNS goes anywhere");
    for rule in &egress[1..] {
        for peer in rule.to.as_ref().unwrap() {
            if let Some(block) = &peer.ip_block {
                assert!(block.cidr.ends_with("/32"), "{block:?}");
                assert!(block.except.is_none());
            } else {
                assert!(peer.namespace_selector.is_some());
            }
        }
    }
}

#[test]
fn openshift_network_config_names_pod_and_service_networks() {
    let network = json!({"status": {
        "clusterNetwork": [{"cidr": "10.128.0.0/14", "hostPrefix": 23}],
        "serviceNetwork": ["172.30.0.0/16"],
    }});
    assert_eq!(
        openshift_networks(&network),
        ["10.128.0.0/14".to_string(), "172.30.0.0/16".to_string()].into()
    );
    assert!(openshift_networks(&json!({})).is_empty());
}

#[test]
fn a_stored_policy_with_the_same_spec_and_label_is_not_applied_again() {
    let desired = policy("strata-system", BuilderEgress::Internet, &inputs());
    let mut stored = desired.clone();
    stored.metadata.resource_version = Some("42".into());
    stored.metadata.uid = Some("u".into());
    assert!(super::same_policy(&stored, &desired));
    // Applied by hand, without Strata's label: taken over.
    let mut by_hand = stored.clone();
    by_hand.metadata.labels = None;
    assert!(!super::same_policy(&by_hand, &desired));
    // Another spec (the old shipped policy's, say): applied.
    let other = policy("strata-system", BuilderEgress::Registries, &inputs());
    assert!(!super::same_policy(&other, &desired));
}
