//! The readers of every cache. Observe reads these and never GETs a watched kind.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};
use strata_crds::{MachineOSBuild, MachineOSConfig};

use crate::controller::environment::{Sources, default_storage_class, names};

/// Readers of every cache.
#[derive(Clone)]
pub struct Stores {
    pub configs: Store<MachineOSConfig>,
    pub builds: Store<MachineOSBuild>,
    /// Strata's Jobs in the controller namespace.
    pub jobs: Store<Job>,
    /// Strata's builder pods in the controller namespace.
    pub pods: Store<Pod>,
    /// Every Secret in the controller namespace (users' and the per-build copies).
    pub secrets: Store<Secret>,
    /// The builds' ConfigMaps (Containerfile, environment), without their data: only whether
    /// they exist is read.
    pub build_config_maps: Store<ConfigMap>,
    /// The release ConfigMap (only that one object).
    pub release: Store<ConfigMap>,
    pub pools: Store<DynamicObject>,
    pub machine_configs: Store<DynamicObject>,
    /// Nodes, stripped to what says how far a pool's machines got (empty when Strata may not
    /// list them).
    pub nodes: Store<Node>,
    /// OpenShift's own MachineOSConfigs (empty where OpenShift's layering API is not served).
    pub openshift_configs: Store<DynamicObject>,
    /// The cluster's environment: pull secret, CAs, proxy, mirrors, entitlements.
    pub environment: EnvironmentStores,
}

/// Readers of the environment's caches.
#[derive(Clone)]
pub struct EnvironmentStores {
    pub pull_secret: Store<Secret>,
    pub entitlement: Store<Secret>,
    pub service_ca: Store<ConfigMap>,
    pub yum_repos: Store<ConfigMap>,
    /// ConfigMaps of the openshift-config namespace.
    pub config_maps: Store<ConfigMap>,
    pub images: Store<DynamicObject>,
    pub proxies: Store<DynamicObject>,
    pub digest_mirror_sets: Store<DynamicObject>,
    pub tag_mirror_sets: Store<DynamicObject>,
    pub storage_classes: Store<StorageClass>,
    /// Strata's own cache claim (only that object).
    pub cache_claim: Store<PersistentVolumeClaim>,
}

impl Stores {
    /// Waits until every cache holds its first list.
    pub async fn wait_until_ready(&self) {
        let waits = [
            Box::pin(self.configs.wait_until_ready())
                as std::pin::Pin<Box<dyn Future<Output = _> + Send>>,
            Box::pin(self.builds.wait_until_ready()),
            Box::pin(self.jobs.wait_until_ready()),
            Box::pin(self.pods.wait_until_ready()),
            Box::pin(self.secrets.wait_until_ready()),
            Box::pin(self.build_config_maps.wait_until_ready()),
            Box::pin(self.release.wait_until_ready()),
            Box::pin(self.pools.wait_until_ready()),
            Box::pin(self.machine_configs.wait_until_ready()),
            Box::pin(self.nodes.wait_until_ready()),
            Box::pin(self.openshift_configs.wait_until_ready()),
        ];
        for wait in waits {
            let _ = wait.await;
        }
        self.environment.wait_until_ready().await;
    }
}

impl EnvironmentStores {
    /// A snapshot of what the caches hold; `secrets` is the cache of Strata's namespace.
    pub fn sources(&self, secrets: &Store<Secret>, namespace: &str) -> Sources {
        let first = |store: &Store<Secret>| store.state().first().map(|s| s.as_ref().clone());
        let cluster = |store: &Store<DynamicObject>| {
            store
                .state()
                .iter()
                .find(|o| o.name_any() == names::CLUSTER)
                .and_then(|o| serde_json::to_value(o.as_ref()).ok())
        };
        let all = |store: &Store<DynamicObject>| {
            store
                .state()
                .iter()
                .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
                .collect()
        };
        Sources {
            pull_secret: first(&self.pull_secret),
            entitlement: first(&self.entitlement),
            service_ca: self.service_ca.state().first().map(|c| c.as_ref().clone()),
            config_maps: self
                .config_maps
                .state()
                .iter()
                .map(|c| c.as_ref().clone())
                .collect(),
            image_config: cluster(&self.images),
            proxy: cluster(&self.proxies),
            digest_mirror_sets: all(&self.digest_mirror_sets),
            tag_mirror_sets: all(&self.tag_mirror_sets),
            yum_repos: !self.yum_repos.state().is_empty(),
            rpm_gpg: secrets
                .get(&ObjectRef::new(names::RPM_GPG).within(namespace))
                .is_some(),
            default_storage_class: default_storage_class(
                self.storage_classes.state().iter().map(|c| c.as_ref()),
            ),
            cache_claim_made: !self.cache_claim.state().is_empty(),
        }
    }

    pub async fn wait_until_ready(&self) {
        let _ = self.pull_secret.wait_until_ready().await;
        let _ = self.entitlement.wait_until_ready().await;
        let _ = self.service_ca.wait_until_ready().await;
        let _ = self.yum_repos.wait_until_ready().await;
        let _ = self.config_maps.wait_until_ready().await;
        let _ = self.images.wait_until_ready().await;
        let _ = self.proxies.wait_until_ready().await;
        let _ = self.digest_mirror_sets.wait_until_ready().await;
        let _ = self.tag_mirror_sets.wait_until_ready().await;
        let _ = self.storage_classes.wait_until_ready().await;
        let _ = self.cache_claim.wait_until_ready().await;
    }
}

#[cfg(test)]
impl EnvironmentStores {
    /// Empty caches, ready at once.
    pub fn empty() -> Self {
        use super::environment::config_resource;
        use super::watch::empty;
        use kube::runtime::reflector::store::Writer;
        let dynamic = |kind: &str, plural: &str| {
            empty(Writer::<DynamicObject>::new(config_resource(kind, plural)))
        };
        Self {
            pull_secret: empty(Default::default()),
            entitlement: empty(Default::default()),
            service_ca: empty(Default::default()),
            yum_repos: empty(Default::default()),
            config_maps: empty(Default::default()),
            images: dynamic("Image", "images"),
            proxies: dynamic("Proxy", "proxies"),
            digest_mirror_sets: dynamic("ImageDigestMirrorSet", "imagedigestmirrorsets"),
            tag_mirror_sets: dynamic("ImageTagMirrorSet", "imagetagmirrorsets"),
            storage_classes: empty(Default::default()),
            cache_claim: empty(Default::default()),
        }
    }
}
