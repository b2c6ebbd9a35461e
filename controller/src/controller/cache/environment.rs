//! Caches of the environment's objects. Each is optional: a kind the cluster does not serve
//! (`config.openshift.io` outside OpenShift) or an object Strata may not read (no Role in that
//! namespace) leaves its cache empty and ready, with a warning, instead of holding the
//! controller back. A change reconciles every MachineOSConfig: the next builds use it.

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{Store, store::Writer};
use strata_crds::contract::install;

use super::stores::EnvironmentStores;
use super::watch::{Trigger, Watch, empty, named};
use crate::controller::environment::{EnvironmentSettings, names};

pub const CONFIG_GROUP: &str = "config.openshift.io";
pub const CONFIG_VERSION: &str = "v1";

pub fn config_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(CONFIG_GROUP, CONFIG_VERSION, kind),
        plural,
    )
}

/// Starts the environment's watches.
pub async fn start(
    client: &Client,
    settings: &EnvironmentSettings,
    namespace: &str,
    trigger: &Trigger,
) -> EnvironmentStores {
    let secret = |reference, what| secret_in(client, reference, what, trigger);
    let ours = |name| {
        Watch::new(
            Api::<ConfigMap>::namespaced(client.clone(), namespace),
            Writer::default(),
        )
        .selecting(named(name))
    };
    let served = served_config_kinds(client).await;
    let kind = |kind, plural| config_kind(client, &served, kind, plural, trigger);
    EnvironmentStores {
        pull_secret: secret(settings.global_pull_secret_ref(), "global pull secret").await,
        entitlement: secret(settings.entitlement_secret_ref(), "entitlement secret").await,
        service_ca: ours(names::SERVICE_CA_CONFIGMAP)
            .spawn_if_readable("service CA ConfigMap", trigger)
            .await,
        yum_repos: ours(names::YUM_REPOS)
            .spawn_if_readable("etc-yum-repos-d ConfigMap", trigger)
            .await,
        config_maps: Watch::new(
            Api::<ConfigMap>::namespaced(client.clone(), &settings.openshift_config_namespace),
            Writer::default(),
        )
        .spawn_if_readable("openshift-config ConfigMaps", trigger)
        .await,
        storage_classes: Watch::new(Api::<StorageClass>::all(client.clone()), Writer::default())
            .spawn_if_readable("StorageClasses", trigger)
            .await,
        // Strata's own cache claim: only whether it exists is read, when the next build starts,
        // so its changes (binding, resizing) reconcile nothing.
        cache_claim: Watch::new(
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace),
            Writer::default(),
        )
        .selecting(named(install::CACHE_CLAIM))
        .filter(|_, _| false)
        .spawn_if_readable("the cache claim", trigger)
        .await,
        images: kind("Image", "images").await,
        proxies: kind("Proxy", "proxies").await,
        digest_mirror_sets: kind("ImageDigestMirrorSet", "imagedigestmirrorsets").await,
        tag_mirror_sets: kind("ImageTagMirrorSet", "imagetagmirrorsets").await,
    }
}

/// The Secret `reference` names (namespace, name), when it names one.
async fn secret_in(
    client: &Client,
    reference: Option<(String, String)>,
    what: &'static str,
    trigger: &Trigger,
) -> Store<Secret> {
    let writer = Writer::<Secret>::default();
    match reference {
        Some((ns, name)) => {
            Watch::new(Api::<Secret>::namespaced(client.clone(), &ns), writer)
                .selecting(named(&name))
                .spawn_if_readable(what, trigger)
                .await
        }
        None => empty(writer),
    }
}

/// The objects of a kind known only at run time (`config.openshift.io`), when it is `served`.
async fn config_kind(
    client: &Client,
    served: &[String],
    kind: &str,
    plural: &str,
    trigger: &Trigger,
) -> Store<DynamicObject> {
    let resource = config_resource(kind, plural);
    let writer = Writer::<DynamicObject>::new(resource.clone());
    if !served.iter().any(|p| p == plural) {
        return empty(writer);
    }
    Watch::new(
        Api::<DynamicObject>::all_with(client.clone(), &resource),
        writer,
    )
    .spawn_if_readable(plural, trigger)
    .await
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
