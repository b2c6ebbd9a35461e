//! The cluster's environment as OpenShift describes it, and what it means for a build — the way
//! the MCO's own on-cluster layering uses it (`../shared/docs/anchor-mco-ocl.md`):
//!
//! | object | use |
//! |---|---|
//! | Secret `openshift-config/pull-secret` (`--global-pull-secret`) | base pulls; a MachineOSConfig's `baseImagePullSecret` is merged over it per registry |
//! | ConfigMap `openshift-service-ca.crt` in Strata's namespace (`service-ca.crt`) | trusted for every registry and in RUN steps (the internal registry) |
//! | ConfigMap `openshift-config/user-ca-bundle` (`ca-bundle.crt`) | trusted for every registry and in RUN steps |
//! | `images.config.openshift.io/cluster` `spec.additionalTrustedCA` → ConfigMap in `openshift-config` (`host..port` keys) | trusted for that registry |
//! | `images.config.openshift.io/cluster` `spec.registrySources` | blocked, allowed and insecure registries |
//! | ImageDigestMirrorSets, ImageTagMirrorSets | mirrors for pulls by digest, by tag |
//! | `proxies.config.openshift.io/cluster` `status` | HTTP(S)_PROXY and NO_PROXY for the registry calls and RUN steps |
//! | Secret `openshift-config-managed/etc-pki-entitlement` (`--entitlement-secret`) | mounted into RUN steps at `/etc/pki/entitlement` for configs that opt in (`spec.entitlement: Mount`) |
//! | ConfigMap `etc-yum-repos-d`, Secret `etc-pki-rpm-gpg` in Strata's namespace | mounted into RUN steps at `/etc/yum.repos.d`, `/etc/pki/rpm-gpg` |
//! | the default StorageClass; PersistentVolumeClaim `strata-build-cache` in Strata's namespace | `--cache-claim=auto`: the builders' image storage on Strata's own claim |
//!
//! None of it is an input of the image: a change rebuilds nothing; the next build uses it. Each
//! object is optional: absent (or not served, or not readable) means "not configured".

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use serde_json::{Map, Value};

use crate::docker_config::secret_auths;
use crate::registry_policy::{MirrorRule, RegistryPolicy};

/// Where the environment's objects are.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvironmentSettings {
    /// The cluster's global pull secret (namespace/name), used for base images when a
    /// MachineOSConfig names no baseImagePullSecret and merged under it when it does. Empty: none.
    #[arg(
        long,
        env = "STRATA_GLOBAL_PULL_SECRET",
        default_value = "openshift-config/pull-secret"
    )]
    pub global_pull_secret: String,
    /// The RHEL entitlement Secret (namespace/name) mounted into the RUN steps of configs that
    /// opt in (spec.entitlement: Mount) when it exists. Empty: none.
    #[arg(
        long,
        env = "STRATA_ENTITLEMENT_SECRET",
        default_value = "openshift-config-managed/etc-pki-entitlement"
    )]
    pub entitlement_secret: String,
    /// The namespace of the cluster's configuration ConfigMaps (user-ca-bundle and the image
    /// config's additionalTrustedCA).
    #[arg(
        long,
        env = "STRATA_OPENSHIFT_CONFIG_NAMESPACE",
        default_value = "openshift-config"
    )]
    pub openshift_config_namespace: String,
}

impl EnvironmentSettings {
    pub fn global_pull_secret_ref(&self) -> Option<(String, String)> {
        split_ref(&self.global_pull_secret)
    }

    pub fn entitlement_secret_ref(&self) -> Option<(String, String)> {
        split_ref(&self.entitlement_secret)
    }
}

fn split_ref(value: &str) -> Option<(String, String)> {
    let (ns, name) = value.trim().split_once('/')?;
    (!ns.is_empty() && !name.is_empty()).then(|| (ns.to_string(), name.to_string()))
}

/// Names of the environment's objects in Strata's namespace and `openshift-config`.
pub mod names {
    pub const SERVICE_CA_CONFIGMAP: &str = "openshift-service-ca.crt";
    pub const SERVICE_CA_KEY: &str = "service-ca.crt";
    pub const USER_CA_BUNDLE: &str = "user-ca-bundle";
    pub const USER_CA_KEY: &str = "ca-bundle.crt";
    pub const YUM_REPOS: &str = "etc-yum-repos-d";
    pub const RPM_GPG: &str = "etc-pki-rpm-gpg";
    pub const CLUSTER: &str = "cluster";
}

/// The cluster's proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxy {
    pub http: String,
    pub https: String,
    pub no: String,
}

impl Proxy {
    pub fn is_set(&self) -> bool {
        !self.http.is_empty() || !self.https.is_empty()
    }

    /// Whether a connection to `host[:port]` goes through the proxy, by NO_PROXY as Go reads it
    /// (golang.org/x/net/http/httpproxy, which buildah and OpenShift's components use): `*`;
    /// IPs and CIDRs; `host:port` entries; `.domain` for its subdomains, `domain` for itself and
    /// its subdomains; never for localhost and loopback addresses.
    pub fn applies_to(&self, address: &str) -> bool {
        if !self.is_set() {
            return false;
        }
        let (host, port) = split_host_port(address);
        let host = host.to_ascii_lowercase();
        let ip = host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        !self.no.split(',').map(str::trim).any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            if let Some((net, bits)) = entry.split_once('/') {
                return match (ip, net.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            let (entry_host, entry_port) = split_host_port(&entry);
            if entry_port.is_some() && entry_port != port {
                return false;
            }
            if entry_host.is_empty() {
                return false;
            }
            if let Ok(entry_ip) = entry_host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
            {
                return ip == Some(entry_ip);
            }
            let domain = entry_host.trim_start_matches('*');
            match domain.strip_prefix('.') {
                Some(_) => host.ends_with(domain),
                None => host == domain || host.ends_with(&format!(".{domain}")),
            }
        })
    }

    /// The environment variables that carry it, in both spellings (tools read one or the other).
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        if !self.is_set() {
            return Vec::new();
        }
        let mut vars = Vec::new();
        for (upper, lower, value) in [
            ("HTTP_PROXY", "http_proxy", &self.http),
            ("HTTPS_PROXY", "https_proxy", &self.https),
            ("NO_PROXY", "no_proxy", &self.no),
        ] {
            if !value.is_empty() {
                vars.push((upper, value.clone()));
                vars.push((lower, value.clone()));
            }
        }
        vars
    }
}

/// What the environment's objects say, in the terms a build needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Environment {
    /// The global pull secret's `auths` (empty when there is none).
    pub global_auths: Map<String, Value>,
    /// PEM certificates trusted for every registry and in RUN steps.
    pub ca_bundle: String,
    /// PEM certificates trusted for one registry (`host` or `host:port`).
    pub registry_cas: BTreeMap<String, String>,
    pub proxy: Proxy,
    pub registries: RegistryPolicy,
    /// The entitlement Secret's files.
    pub entitlement: Option<BTreeMap<String, ByteString>>,
    /// Whether `etc-yum-repos-d` / `etc-pki-rpm-gpg` exist in Strata's namespace.
    pub yum_repos: bool,
    pub rpm_gpg: bool,
    /// The cluster's default StorageClass, if it has one (`--cache-claim=auto` uses it).
    pub default_storage_class: Option<String>,
    /// Whether Strata's own cache claim exists already.
    pub cache_claim_made: bool,
    /// Objects that exist but cannot be used, with why (shown in the config's status).
    pub problems: Vec<String>,
}

/// The objects the environment is read from (a snapshot of the caches).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub pull_secret: Option<Secret>,
    pub entitlement: Option<Secret>,
    pub service_ca: Option<ConfigMap>,
    /// ConfigMaps of the openshift-config namespace.
    pub config_maps: Vec<ConfigMap>,
    pub image_config: Option<Value>,
    pub proxy: Option<Value>,
    pub digest_mirror_sets: Vec<Value>,
    pub tag_mirror_sets: Vec<Value>,
    pub yum_repos: bool,
    pub rpm_gpg: bool,
    pub default_storage_class: Option<String>,
    pub cache_claim_made: bool,
}

/// The annotations that make a StorageClass the cluster's default (the beta one is still honoured
/// by the API server's DefaultStorageClass admission).
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

/// The name of a default StorageClass in `classes`, if any.
pub fn default_storage_class<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<String> {
    classes
        .into_iter()
        .find(|class| {
            class.metadata.annotations.as_ref().is_some_and(|a| {
                DEFAULT_CLASS_ANNOTATIONS
                    .iter()
                    .any(|key| a.get(*key).is_some_and(|v| v == "true"))
            })
        })
        .map(|class| class.name_any())
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn config_map_text(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(key).cloned())
        .or_else(|| {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
        .filter(|s| !s.trim().is_empty())
}

/// The mirror rules of ImageDigestMirrorSets (`spec.imageDigestMirrors`) or ImageTagMirrorSets
/// (`spec.imageTagMirrors`), in name order (the MCO merges them so too).
fn mirror_rules(sets: &[Value], field: &str, by_digest: bool) -> Vec<MirrorRule> {
    let mut sorted: Vec<&Value> = sets.iter().collect();
    sorted.sort_by_key(|s| {
        s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    sorted
        .into_iter()
        .flat_map(|set| set["spec"][field].as_array().cloned().unwrap_or_default())
        .filter_map(|entry| {
            let source = entry["source"].as_str()?.trim().to_string();
            (!source.is_empty()).then(|| MirrorRule {
                source,
                mirrors: strings(&entry["mirrors"]),
                by_digest,
                never_contact_source: entry["mirrorSourcePolicy"] == "NeverContactSource",
            })
        })
        .collect()
}

/// The global pull secret's `auths`; none, with a problem, when it cannot be read.
fn global_auths(secret: Option<&Secret>, problems: &mut Vec<String>) -> Map<String, Value> {
    let Some(secret) = secret else {
        return Map::new();
    };
    match secret_auths(&secret.data.clone().unwrap_or_default()) {
        Ok(auths) => auths,
        Err(why) => {
            problems.push(format!(
                "the global pull secret {}/{} {why}",
                secret.metadata.namespace.as_deref().unwrap_or_default(),
                secret.metadata.name.as_deref().unwrap_or_default()
            ));
            Map::new()
        }
    }
}

fn config_map<'a>(config_maps: &'a [ConfigMap], name: &str) -> Option<&'a ConfigMap> {
    config_maps
        .iter()
        .find(|cm| cm.metadata.name.as_deref() == Some(name))
}

/// The service CA and the user CA bundle, one after the other.
fn ca_bundle(sources: &Sources) -> String {
    let mut bundle = Vec::new();
    if let Some(pem) = sources
        .service_ca
        .as_ref()
        .and_then(|cm| config_map_text(cm, names::SERVICE_CA_KEY))
    {
        bundle.push(pem);
    }
    if let Some(pem) = config_map(&sources.config_maps, names::USER_CA_BUNDLE)
        .and_then(|cm| config_map_text(cm, names::USER_CA_KEY))
    {
        bundle.push(pem);
    }
    bundle
        .iter()
        .map(|pem| format!("{}\n", pem.trim_end()))
        .collect()
}

/// The image config's `additionalTrustedCA`: per registry, the certificates it trusts.
fn registry_cas(
    image: &Value,
    config_maps: &[ConfigMap],
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut cas = BTreeMap::new();
    let Some(name) = image["spec"]["additionalTrustedCA"]["name"].as_str() else {
        return cas;
    };
    match config_map(config_maps, name) {
        Some(cm) => {
            for key in cm.data.iter().flatten().map(|(k, _)| k.clone()) {
                if let Some(pem) = config_map_text(cm, &key) {
                    // OpenShift's keys name `host..port` (a ConfigMap key has no `:`).
                    cas.insert(key.replace("..", ":"), pem);
                }
            }
        }
        None => problems.push(format!(
            "images.config.openshift.io/cluster names additionalTrustedCA {name}, which \
             is not a ConfigMap in openshift-config"
        )),
    }
    cas
}

/// The mirror sets and the image config's `registrySources`.
fn registry_policy(sources: &Sources, image: &Value) -> RegistryPolicy {
    let registry_sources = &image["spec"]["registrySources"];
    RegistryPolicy {
        mirrors: mirror_rules(&sources.digest_mirror_sets, "imageDigestMirrors", true)
            .into_iter()
            .chain(mirror_rules(
                &sources.tag_mirror_sets,
                "imageTagMirrors",
                false,
            ))
            .collect(),
        blocked: strings(&registry_sources["blockedRegistries"]),
        allowed: strings(&registry_sources["allowedRegistries"]),
        insecure: strings(&registry_sources["insecureRegistries"]),
    }
}

/// The cluster's proxy object as a [`Proxy`]. The status is what the cluster's proxy operator
/// computed (with its default no-proxy entries); the spec stands in when it has not run.
fn proxy(proxy: &Value) -> Proxy {
    let field = |name: &str| {
        [&proxy["status"][name], &proxy["spec"][name]]
            .into_iter()
            .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
            .unwrap_or_default()
            .to_string()
    };
    Proxy {
        http: field("httpProxy"),
        https: field("httpsProxy"),
        no: field("noProxy"),
    }
}

impl Environment {
    /// What `sources` say. Pure.
    pub fn from_sources(sources: &Sources) -> Self {
        let mut problems = Vec::new();
        let global_auths = global_auths(sources.pull_secret.as_ref(), &mut problems);
        let image = sources.image_config.clone().unwrap_or(Value::Null);
        let registry_cas = registry_cas(&image, &sources.config_maps, &mut problems);
        Environment {
            global_auths,
            ca_bundle: ca_bundle(sources),
            registry_cas,
            proxy: sources.proxy.as_ref().map(proxy).unwrap_or_default(),
            registries: registry_policy(sources, &image),
            entitlement: sources
                .entitlement
                .as_ref()
                .and_then(|s| s.data.clone())
                .filter(|d| !d.is_empty()),
            yum_repos: sources.yum_repos,
            rpm_gpg: sources.rpm_gpg,
            default_storage_class: sources.default_storage_class.clone(),
            cache_claim_made: sources.cache_claim_made,
            problems,
        }
    }

    /// The environment the builds of a config get: the entitlement only when the config opts in
    /// (`mount_entitlement`), since fragment code can read what RUN steps get.
    pub fn for_builds(&self, mount_entitlement: bool) -> Self {
        let mut env = self.clone();
        if !mount_entitlement {
            env.entitlement = None;
        }
        env
    }

    /// Every PEM certificate the controller's registry client trusts beyond the system's.
    pub fn extra_roots(&self) -> Vec<String> {
        let mut pems: Vec<String> = split_pem(&self.ca_bundle);
        for pem in self.registry_cas.values() {
            pems.extend(split_pem(pem));
        }
        pems
    }
}

/// `host` and `port` of `host[:port]` (IPv6 addresses in brackets).
pub(crate) fn split_host_port(address: &str) -> (&str, Option<&str>) {
    if let Some(rest) = address.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (address, None),
        };
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (address, None),
    }
}

fn in_cidr(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (ip, net) {
        (V4(ip), V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (V6(ip), V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The certificates of a PEM bundle, one PEM block each.
pub fn split_pem(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        out.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    out
}

#[cfg(test)]
mod tests;
