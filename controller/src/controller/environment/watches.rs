//! Caches of the environment's objects. Each is optional: a kind the cluster does not serve
//! (`config.openshift.io` outside OpenShift) or an object Strata may not read (no Role in that
//! namespace) leaves its cache empty and ready, with a warning, instead of holding the
//! controller back. A change reconciles every MachineOSConfig: the next builds use it.

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use strata_crds::MachineOSConfig;
use strata_crds::contract::install;

use super::{EnvironmentSettings, Sources, names};
use crate::controller::runtime::{Filter, Trigger, all_configs, every_change, spawn_watch};
use crate::controller::stores::strip_managed_fields;

pub const CONFIG_GROUP: &str = "config.openshift.io";
pub const CONFIG_VERSION: &str = "v1";

fn config_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(CONFIG_GROUP, CONFIG_VERSION, kind),
        plural,
    )
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

impl EnvironmentStores {
    /// Empty caches, ready at once (until [`start`] replaces them; and in tests).
    pub fn unstarted() -> Self {
        let dynamic = |kind: &str, plural: &str| {
            empty(reflector::store::Writer::<DynamicObject>::new(
                config_resource(kind, plural),
            ))
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

/// An empty cache that is ready at once.
fn empty<K>(mut writer: reflector::store::Writer<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    let reader = writer.as_reader();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

/// Whether `api` can be listed with `params` (so a watch will work); warns when it cannot.
async fn readable<K>(api: &Api<K>, params: &watcher::Config, what: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut list = ListParams::default().limit(1);
    if let Some(fields) = &params.field_selector {
        list = list.fields(fields);
    }
    match api.list(&list).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(%err, what, "not readable; Strata builds without it");
            false
        }
    }
}

/// Watches `api` (filtered by `params`) into a new cache when it is readable, every change
/// reconciling every config; an empty ready cache otherwise.
async fn optional<K>(
    api: Api<K>,
    params: watcher::Config,
    writer: reflector::store::Writer<K>,
    what: &str,
    configs: &Store<MachineOSConfig>,
    trigger: &Trigger,
) -> Store<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + Default,
{
    optional_with(api, params, writer, what, every_change(), configs, trigger).await
}

/// The same, with only the changes `filter` passes reconciling every config.
async fn optional_with<K>(
    api: Api<K>,
    params: watcher::Config,
    writer: reflector::store::Writer<K>,
    what: &str,
    filter: Filter<K>,
    configs: &Store<MachineOSConfig>,
    trigger: &Trigger,
) -> Store<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + Default,
{
    if !readable(&api, &params, what).await {
        return empty(writer);
    }
    let reader = writer.as_reader();
    spawn_watch(
        api,
        params,
        writer,
        strip_managed_fields,
        filter,
        Box::new(all_configs),
        configs.clone(),
        trigger.clone(),
    );
    reader
}

/// The same for a kind known only at run time (`config.openshift.io`), when it is served.
async fn optional_dynamic(
    client: &Client,
    resource: ApiResource,
    served: bool,
    configs: &Store<MachineOSConfig>,
    trigger: &Trigger,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    if !served || !readable(&api, &watcher::Config::default(), &resource.plural).await {
        return empty(writer);
    }
    let reader = writer.as_reader();
    spawn_watch(
        api,
        watcher::Config::default(),
        writer,
        strip_managed_fields,
        every_change(),
        Box::new(all_configs),
        configs.clone(),
        trigger.clone(),
    );
    reader
}

fn named(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// Starts the environment's watches.
pub async fn start(
    client: &Client,
    settings: &EnvironmentSettings,
    namespace: &str,
    configs: &Store<MachineOSConfig>,
    trigger: &Trigger,
) -> EnvironmentStores {
    let secret_in = |reference: Option<(String, String)>, what: &'static str| {
        let writer = reflector::store::Writer::<Secret>::default();
        async move {
            match reference {
                Some((ns, name)) => {
                    let api = Api::<Secret>::namespaced(client.clone(), &ns);
                    optional(api, named(&name), writer, what, configs, trigger).await
                }
                None => empty(writer),
            }
        }
    };
    let pull_secret = secret_in(settings.global_pull_secret_ref(), "global pull secret").await;
    let entitlement = secret_in(settings.entitlement_secret_ref(), "entitlement secret").await;
    let ours = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let service_ca = optional(
        ours.clone(),
        named(names::SERVICE_CA_CONFIGMAP),
        Default::default(),
        "service CA ConfigMap",
        configs,
        trigger,
    )
    .await;
    let yum_repos = optional(
        ours,
        named(names::YUM_REPOS),
        Default::default(),
        "etc-yum-repos-d ConfigMap",
        configs,
        trigger,
    )
    .await;
    let config_maps = optional(
        Api::<ConfigMap>::namespaced(client.clone(), &settings.openshift_config_namespace),
        watcher::Config::default(),
        Default::default(),
        "openshift-config ConfigMaps",
        configs,
        trigger,
    )
    .await;
    let served = served_config_kinds(client).await;
    let kind = |kind: &str, plural: &str| {
        let resource = config_resource(kind, plural);
        let on = served.iter().any(|p| p == plural);
        optional_dynamic(client, resource, on, configs, trigger)
    };
    let storage_classes = optional(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
        Default::default(),
        "StorageClasses",
        configs,
        trigger,
    )
    .await;
    // Strata's own cache claim: only whether it exists is read, when the next build starts, so
    // its changes (binding, resizing) reconcile nothing.
    let cache_claim = optional_with(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace),
        named(install::CACHE_CLAIM),
        Default::default(),
        "the cache claim",
        Box::new(|_: &PersistentVolumeClaim, _: bool| false),
        configs,
        trigger,
    )
    .await;
    EnvironmentStores {
        pull_secret,
        entitlement,
        service_ca,
        yum_repos,
        config_maps,
        images: kind("Image", "images").await,
        proxies: kind("Proxy", "proxies").await,
        digest_mirror_sets: kind("ImageDigestMirrorSet", "imagedigestmirrorsets").await,
        tag_mirror_sets: kind("ImageTagMirrorSet", "imagetagmirrorsets").await,
        storage_classes,
        cache_claim,
    }
}

/// The plural names of the `config.openshift.io/v1` kinds the cluster serves.
async fn served_config_kinds(client: &Client) -> Vec<String> {
    let version = format!("{CONFIG_GROUP}/{CONFIG_VERSION}");
    client
        .list_api_group_resources(&version)
        .await
        .map(|list| list.resources.into_iter().map(|r| r.name).collect())
        .unwrap_or_default()
}
