//! A small stand-in for how OpenShift publishes its **service CA** (the CA that signs the serving
//! certificates of Services — among them the internal image registry's,
//! `image-registry.openshift-image-registry.svc:5000`). `e2e/scripts/openshift-env.sh` makes the CA,
//! signs the local "internal registry" with it and starts this (`strata-e2e-mco service-ca
//! --ca-bundle FILE`). It emulates exactly three pieces, each from the upstream code named:
//!
//! - **the namespace publisher** — `openshift/kubernetes`,
//!   `openshift-kube-controller-manager/servicecacertpublisher/publisher.go` (a controller of
//!   OpenShift's kube-controller-manager): every namespace, including ones created later, gets a
//!   ConfigMap `openshift-service-ca.crt` whose annotations are exactly
//!   `service.beta.openshift.io/inject-cabundle: "true"`; it is created with
//!   `data: {service-ca.crt: ""}` (so pods mounting it can start before the injection), re-created
//!   when deleted, and its annotations are reset when someone changes them. Terminating namespaces
//!   are skipped.
//! - **the ConfigMap CA-bundle injector** — `openshift/service-ca-operator`,
//!   `pkg/controller/cabundleinjector/configmap.go`: every ConfigMap annotated
//!   `service.beta.openshift.io/inject-cabundle: "true"` (or the older
//!   `service.alpha.openshift.io/inject-cabundle`) gets `data` replaced by exactly
//!   `{service-ca.crt: <the CA bundle>}`, unless it already is that.
//! - **the operator's resource sync** — `openshift/service-ca-operator`, `pkg/operator/starter.go`
//!   (`resourceSyncController.SyncConfigMap`): `openshift-config-managed/service-ca` carries the
//!   bundle under `ca-bundle.crt` (upstream copies `openshift-service-ca/signing-cabundle`).
//!
//! Not emulated: serving-certificate Secrets for annotated Services (there is no Service network
//! here; the registry's certificate is signed by the script), CA rotation, the injection into
//! APIServices/CRDs/webhooks, the vulnerable-legacy bundle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

/// The ConfigMap published into every namespace.
pub const CONFIGMAP: &str = "openshift-service-ca.crt";
/// Its data key (also the key the injector writes).
pub const DATA_KEY: &str = "service-ca.crt";
/// The annotation that asks the service-ca operator to inject the bundle.
pub const INJECT_ANNOTATION: &str = "service.beta.openshift.io/inject-cabundle";
/// The older spelling the injector still honours.
pub const ALPHA_INJECT_ANNOTATION: &str = "service.alpha.openshift.io/inject-cabundle";
/// Where the operator publishes the bundle for cluster components: `openshift-config-managed/service-ca`.
pub const MANAGED_NAMESPACE: &str = "openshift-config-managed";
pub const MANAGED_NAME: &str = "service-ca";
pub const MANAGED_KEY: &str = "ca-bundle.crt";

/// Everything is re-checked this often even without events (as the upstream informers resync).
const RESYNC: Duration = Duration::from_secs(10);

/// What the publisher does for one namespace, given its `openshift-service-ca.crt` (if any).
#[derive(Debug, PartialEq, Eq)]
pub enum PublisherAction {
    Nothing,
    /// Create the ConfigMap (annotation set, empty `service-ca.crt`).
    Create,
    /// Reset the ConfigMap's annotations to exactly the injection annotation.
    ResetAnnotations,
}

/// The publisher's decision (`syncNamespace` upstream).
pub fn publisher_action(existing: Option<&ConfigMap>) -> PublisherAction {
    match existing {
        None => PublisherAction::Create,
        Some(cm) if cm.metadata.annotations.as_ref() != Some(&injection_annotations()) => {
            PublisherAction::ResetAnnotations
        }
        Some(_) => PublisherAction::Nothing,
    }
}

/// `{service.beta.openshift.io/inject-cabundle: "true"}`.
pub fn injection_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([(INJECT_ANNOTATION.to_string(), "true".to_string())])
}

/// The ConfigMap the publisher creates in a namespace.
pub fn published_configmap(namespace: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(CONFIGMAP.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(injection_annotations()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(DATA_KEY.to_string(), String::new())])),
        ..Default::default()
    }
}

/// Whether the injector handles this ConfigMap (either annotation set to "true").
pub fn wants_injection(cm: &ConfigMap) -> bool {
    let a = cm.annotations();
    [INJECT_ANNOTATION, ALPHA_INJECT_ANNOTATION]
        .iter()
        .any(|k| a.get(*k).is_some_and(|v| v == "true"))
}

/// The injector's new `data` for `cm`, or `None` when it already is exactly the bundle.
pub fn injected_data(cm: &ConfigMap, bundle: &str) -> Option<BTreeMap<String, String>> {
    let data = cm.data.clone().unwrap_or_default();
    if data.len() == 1 && data.get(DATA_KEY).is_some_and(|d| d == bundle) {
        return None;
    }
    Some(BTreeMap::from([(DATA_KEY.to_string(), bundle.to_string())]))
}

fn watch_into<K>(api: Api<K>, writer: reflector::store::Writer<K>, wake: Arc<Notify>)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Clone + Default + Eq + std::hash::Hash + Send + Sync,
{
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .boxed();
        while events.next().await.is_some() {
            wake.notify_one();
        }
    });
}

/// Runs the three emulated controllers until the process is stopped.
pub async fn run(client: Client, bundle: String) -> Result<()> {
    let wake = Arc::new(Notify::new());
    let (namespaces, ns_w) = reflector::store::<Namespace>();
    let (configmaps, cm_w) = reflector::store::<ConfigMap>();
    watch_into(Api::<Namespace>::all(client.clone()), ns_w, wake.clone());
    watch_into(Api::<ConfigMap>::all(client.clone()), cm_w, wake.clone());
    let _ = namespaces.wait_until_ready().await;
    let _ = configmaps.wait_until_ready().await;
    eprintln!(
        "strata-e2e-mco service-ca: publishing {CONFIGMAP} into every namespace, injecting the bundle, \
         keeping {MANAGED_NAMESPACE}/{MANAGED_NAME}"
    );
    loop {
        if let Err(err) = pass(&client, &namespaces, &configmaps, &bundle).await {
            eprintln!("strata-e2e-mco service-ca: {err:#}");
        }
        tokio::select! {
            // a short pause batches a burst of events (one pass for a new namespace + its SA, …)
            _ = wake.notified() => tokio::time::sleep(Duration::from_millis(100)).await,
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// One pass of all three controllers over the cached state. Writes are replaces carrying the
/// cached resourceVersion (as upstream's Update): a conflict is retried on the next pass.
async fn pass(
    client: &Client,
    namespaces: &Store<Namespace>,
    configmaps: &Store<ConfigMap>,
    bundle: &str,
) -> Result<()> {
    let mut errors = Vec::new();
    let pp = PostParams {
        field_manager: Some("service-ca".into()),
        ..Default::default()
    };
    publish_into_namespaces(client, namespaces, configmaps, &pp, &mut errors).await;
    inject_bundles(client, configmaps, bundle, &pp, &mut errors).await;
    sync_managed_bundle(client, namespaces, configmaps, bundle, &pp, &mut errors).await;
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", errors.join("; "))
    }
}

/// The publisher: `openshift-service-ca.crt` in every namespace that is not terminating.
async fn publish_into_namespaces(
    client: &Client,
    namespaces: &Store<Namespace>,
    configmaps: &Store<ConfigMap>,
    pp: &PostParams,
    errors: &mut Vec<String>,
) {
    for ns in namespaces.state() {
        let name = ns.name_any();
        let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Terminating") || ns.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
        let existing = configmaps.get(&ObjectRef::new(CONFIGMAP).within(&name));
        let result = match publisher_action(existing.as_deref()) {
            PublisherAction::Nothing => continue,
            PublisherAction::Create => api
                .create(pp, &published_configmap(&name))
                .await
                .map(|_| eprintln!("published {name}/{CONFIGMAP}")),
            PublisherAction::ResetAnnotations => {
                let mut cm = existing.as_deref().cloned().unwrap_or_default();
                cm.metadata.annotations = Some(injection_annotations());
                cm.metadata.managed_fields = None;
                api.replace(CONFIGMAP, pp, &cm)
                    .await
                    .map(|_| eprintln!("reset the annotations of {name}/{CONFIGMAP}"))
            }
        };
        match result {
            // already there (our cache lags), or the namespace went away / is terminating
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => {}
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("terminat") => {}
            Err(e) => errors.push(format!("{name}/{CONFIGMAP}: {e}")),
            Ok(()) => {}
        }
    }
}

/// The injector: the bundle into every ConfigMap that asks for it.
async fn inject_bundles(
    client: &Client,
    configmaps: &Store<ConfigMap>,
    bundle: &str,
    pp: &PostParams,
    errors: &mut Vec<String>,
) {
    for cm in configmaps.state() {
        if !wants_injection(&cm) {
            continue;
        }
        let Some(data) = injected_data(&cm, bundle) else {
            continue;
        };
        let ns = cm.namespace().unwrap_or_default();
        let name = cm.name_any();
        let mut updated = (*cm).clone();
        updated.data = Some(data);
        updated.metadata.managed_fields = None;
        match Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .replace(&name, pp, &updated)
            .await
        {
            Ok(_) => eprintln!("updated configmap {ns}/{name} with the service signing CA bundle"),
            Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409) => {}
            Err(e) => errors.push(format!("injecting into {ns}/{name}: {e}")),
        }
    }
}

/// The operator's resource sync: the bundle in `openshift-config-managed/service-ca`, once that
/// namespace exists.
async fn sync_managed_bundle(
    client: &Client,
    namespaces: &Store<Namespace>,
    configmaps: &Store<ConfigMap>,
    bundle: &str,
    pp: &PostParams,
    errors: &mut Vec<String>,
) {
    if namespaces.get(&ObjectRef::new(MANAGED_NAMESPACE)).is_none() {
        return;
    }
    let managed = configmaps.get(&ObjectRef::new(MANAGED_NAME).within(MANAGED_NAMESPACE));
    let want = BTreeMap::from([(MANAGED_KEY.to_string(), bundle.to_string())]);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), MANAGED_NAMESPACE);
    let result = match managed {
        None => api
            .create(
                pp,
                &ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(MANAGED_NAME.into()),
                        ..Default::default()
                    },
                    data: Some(want),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
        Some(cm) if cm.data.as_ref() != Some(&want) => {
            let mut updated = (*cm).clone();
            updated.data = Some(want);
            updated.metadata.managed_fields = None;
            api.replace(MANAGED_NAME, pp, &updated).await.map(|_| ())
        }
        Some(_) => Ok(()),
    };
    match result {
        Ok(()) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => errors.push(format!("{MANAGED_NAMESPACE}/{MANAGED_NAME}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(annotations: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
        let mut c = published_configmap("ns");
        c.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        c.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        c
    }

    #[test]
    fn publisher_creates_and_keeps_exactly_the_injection_annotation() {
        assert_eq!(publisher_action(None), PublisherAction::Create);
        let created = published_configmap("team-a");
        assert_eq!(created.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(created.data.as_ref().unwrap()[DATA_KEY], "");
        assert_eq!(publisher_action(Some(&created)), PublisherAction::Nothing);
        let extra = cm(&[(INJECT_ANNOTATION, "true"), ("x", "y")], &[]);
        assert_eq!(
            publisher_action(Some(&extra)),
            PublisherAction::ResetAnnotations
        );
        let none = cm(&[], &[]);
        assert_eq!(
            publisher_action(Some(&none)),
            PublisherAction::ResetAnnotations
        );
    }

    #[test]
    fn injector_replaces_data_with_only_the_bundle() {
        let pem = "-----BEGIN CERTIFICATE-----\n…\n";
        let empty = cm(&[(INJECT_ANNOTATION, "true")], &[(DATA_KEY, "")]);
        assert!(wants_injection(&empty));
        assert_eq!(
            injected_data(&empty, pem),
            Some(BTreeMap::from([(DATA_KEY.to_string(), pem.to_string())]))
        );
        let done = cm(&[(INJECT_ANNOTATION, "true")], &[(DATA_KEY, pem)]);
        assert_eq!(injected_data(&done, pem), None);
        // other keys are dropped, as upstream does
        let extra = cm(
            &[(INJECT_ANNOTATION, "true")],
            &[(DATA_KEY, pem), ("k", "v")],
        );
        assert!(injected_data(&extra, pem).is_some());
        assert!(wants_injection(&cm(
            &[(ALPHA_INJECT_ANNOTATION, "true")],
            &[]
        )));
        assert!(!wants_injection(&cm(&[(INJECT_ANNOTATION, "false")], &[])));
        assert!(!wants_injection(&cm(&[], &[])));
    }
}
