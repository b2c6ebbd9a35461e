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
//! Not emulated as a controller: serving-certificate Secrets for annotated Services (the registry's
//! certificate is signed by the script; a test asks `serving_cert_secret` for the controller's
//! metrics certificate); CA rotation, the injection into APIServices/CRDs/webhooks, the
//! vulnerable-legacy bundle.

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

/// The service CA's certificate on the host (made by `openshift-env.sh`).
pub fn ca_file(cluster: &crate::Cluster) -> std::path::PathBuf {
    cluster.dir.join("openshift-env/pki/service-ca.crt")
}

/// A certificate for `dns` (and `<dns>.cluster.local`) signed by the local service CA, with its
/// key: `(tls.crt, tls.key)` in PEM. Made with openssl in `dir`, removed after.
fn signed_by_service_ca(
    cluster: &crate::Cluster,
    dir: &std::path::Path,
    dns: &str,
) -> Result<(String, String)> {
    use anyhow::{Context, ensure};
    let pki = cluster.dir.join("openshift-env/pki");
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName=DNS:{dns},DNS:{dns}.cluster.local\nextendedKeyUsage=serverAuth\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n"
        ),
    )?;
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .context("running openssl")?;
        ensure!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let subject = format!("/CN={dns}");
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req"][..],
        &key,
        &["-subj", &subject, "-keyout", "tls.key", "-out", "tls.csr"],
    ]
    .concat())?;
    let (ca_crt, ca_key) = (pki.join("service-ca.crt"), pki.join("service-ca.key"));
    let (ca_crt, ca_key) = (ca_crt.to_string_lossy(), ca_key.to_string_lossy());
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "tls.crt",
    ])?;
    let pem = (
        std::fs::read_to_string(dir.join("tls.crt"))?,
        std::fs::read_to_string(dir.join("tls.key"))?,
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(pem)
}

/// What the service-ca operator's serving-certificate controller makes for a Service annotated
/// `service.beta.openshift.io/serving-cert-secret-name: <secret>` (`pkg/controller/servingcert`):
/// a `kubernetes.io/tls` Secret in the Service's namespace whose certificate, signed by the service
/// CA, names `<service>.<namespace>.svc` and `<service>.<namespace>.svc.cluster.local`. Made here
/// once, on request, with openssl and the local service CA (no rotation, no watch).
pub async fn serving_cert_secret(
    cluster: &crate::Cluster,
    client: &Client,
    (namespace, service): (&str, &str),
    secret: &str,
) -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let dir = cluster
        .dir
        .join(format!("serving-cert-{namespace}-{service}"));
    let (crt, key) = signed_by_service_ca(cluster, &dir, &format!("{service}.{namespace}.svc"))?;
    let tls: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt, "tls.key": key},
    }))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            secret,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&tls),
        )
        .await?;
    Ok(())
}
