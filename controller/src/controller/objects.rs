//! The objects a build needs and the MachineConfig that pins a pool, built from values only.
//! Pure: the apply layer sends them as they are.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Value, json};
use strata_crds::MachineOSBuild;
use strata_crds::contract::{annotations, exit_code, install, labels, mco};

use super::environment::{self, Environment};
use super::names::{self, fit_63};
use super::settings::{CacheClaim, Settings};

/// Key of the rendered Containerfile in the build's ConfigMap.
pub const CONTAINERFILE_KEY: &str = "Containerfile";

/// What one build needs in the controller namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildObjects {
    pub containerfile: ConfigMap,
    /// The cluster's environment as the build sees it (registries.conf, CAs).
    pub environment: ConfigMap,
    /// The push and pull auth and a copy of the cluster's entitlement, in one Secret (one write,
    /// one delete); each step's volume holds only its own keys (see [`credential_keys`]).
    pub credentials: Secret,
    pub job: Job,
    /// Strata's own cache claim, when the Job mounts it and it does not exist yet.
    pub cache_claim: Option<PersistentVolumeClaim>,
}

/// Where a builder pod keeps its image storage (`--cache-claim`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum ImageStorage {
    /// An emptyDir of the pod's own: the base is pulled for every build.
    EmptyDir,
    /// A PersistentVolumeClaim shared by the builds; `own` when Strata makes it.
    Claim { name: String, own: bool },
}

impl ImageStorage {
    fn of(settings: &Settings, env: &Environment) -> Self {
        match &settings.cache_claim {
            CacheClaim::Named(name) => Self::Claim {
                name: name.clone(),
                own: false,
            },
            CacheClaim::Auto if env.default_storage_class.is_some() => Self::Claim {
                name: install::CACHE_CLAIM.to_string(),
                own: true,
            },
            CacheClaim::Auto | CacheClaim::Off => Self::EmptyDir,
        }
    }

    fn claim(&self) -> Option<&str> {
        match self {
            Self::Claim { name, .. } => Some(name),
            Self::EmptyDir => None,
        }
    }
}

/// Strata's own cache claim: ReadWriteOnce (what every default StorageClass offers), of the
/// default class, owned by nothing (it outlives builds and configs; uninstalling removes it with
/// the namespace).
fn own_cache_claim(settings: &Settings) -> PersistentVolumeClaim {
    let claim = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": install::CACHE_CLAIM,
            "namespace": settings.namespace,
            "labels": {labels::MANAGED_BY: labels::MANAGED_BY_VALUE},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": settings.cache_claim_size}},
        },
    });
    // Only fields of core/v1 PersistentVolumeClaim above, so this conversion cannot fail.
    serde_json::from_value(claim).unwrap_or_default()
}

/// Keys of the build's credentials Secret: the push auth, the pull auth, the entitlement's files.
pub mod credential_keys {
    pub const PUSH: &str = "push.dockerconfigjson";
    pub const PULL: &str = "pull.dockerconfigjson";

    /// The key of the entitlement's file `file`.
    pub fn entitlement(file: &str) -> String {
        format!("entitlement.{file}")
    }
}

/// Key prefix of a per-registry CA in the environment ConfigMap (`registry-ca.<host>..<port>`).
const REGISTRY_CA_PREFIX: &str = "registry-ca.";

/// The environment ConfigMap's data: registries.conf (the cluster's policy plus the registries
/// Strata is told are insecure), policy.json when registries are restricted, the CAs.
fn environment_data(env: &Environment, settings: &Settings) -> BTreeMap<String, String> {
    use strata_crds::contract::builder_pod as pod;
    let mut policy = env.registries.clone();
    for registry in &settings.insecure_registries {
        if !registry.trim().is_empty() && !policy.insecure.contains(registry) {
            policy.insecure.push(registry.trim().to_string());
        }
    }
    let mut data = BTreeMap::from([(pod::REGISTRIES_CONF.to_string(), policy.registries_conf())]);
    if let Some(json) = policy.policy_json() {
        data.insert(pod::POLICY_JSON.into(), json);
    }
    if !env.ca_bundle.is_empty() {
        data.insert(pod::CA_BUNDLE.into(), env.ca_bundle.clone());
    }
    for (registry, pem) in &env.registry_cas {
        data.insert(
            format!("{REGISTRY_CA_PREFIX}{}", registry.replace(':', "..")),
            pem.clone(),
        );
    }
    data
}

fn owner(build: &MachineOSBuild) -> Vec<OwnerReference> {
    build.controller_owner_ref(&()).into_iter().collect()
}

fn build_labels(build: &MachineOSBuild) -> BTreeMap<String, String> {
    let name = build.metadata.name.clone().unwrap_or_default();
    BTreeMap::from([
        (
            labels::CONFIG.to_string(),
            fit_63(&build.spec.machine_os_config.name),
        ),
        (labels::BUILD.to_string(), fit_63(&name)),
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
    ])
}

/// The builder pod's: the build's, and the SCC OpenShift must admit it under.
fn pod_annotations(build: &MachineOSBuild) -> BTreeMap<String, String> {
    let mut annotations = build_annotations(build);
    annotations.insert(
        annotations::REQUIRED_SCC.to_string(),
        install::BUILDER_SCC.to_string(),
    );
    annotations
}

fn build_annotations(build: &MachineOSBuild) -> BTreeMap<String, String> {
    BTreeMap::from([(
        annotations::CONFIG.to_string(),
        build.spec.machine_os_config.name.clone(),
    )])
}

fn meta(name: String, settings: &Settings, build: &MachineOSBuild) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(settings.namespace.clone()),
        labels: Some(build_labels(build)),
        annotations: Some(build_annotations(build)),
        owner_references: Some(owner(build)),
        ..ObjectMeta::default()
    }
}

/// The build's credentials Secret: `push_auth` and `base_auth` (`.dockerconfigjson` documents)
/// and the entitlement's files under [`credential_keys`].
fn credentials_secret(
    settings: &Settings,
    build: &MachineOSBuild,
    push_auth: &str,
    base_auth: Option<&str>,
    entitlement: Option<&BTreeMap<String, ByteString>>,
) -> Secret {
    let name = build.metadata.name.clone().unwrap_or_default();
    let mut data = BTreeMap::from([(
        credential_keys::PUSH.to_string(),
        ByteString(push_auth.as_bytes().to_vec()),
    )]);
    if let Some(auth) = base_auth {
        data.insert(
            credential_keys::PULL.into(),
            ByteString(auth.as_bytes().to_vec()),
        );
    }
    for (file, value) in entitlement.into_iter().flatten() {
        data.insert(credential_keys::entitlement(file), value.clone());
    }
    Secret {
        metadata: meta(names::credentials_secret(&name), settings, build),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The ConfigMaps, Secrets and Job of `build`. `push_auth`/`base_auth` are canonical
/// `.dockerconfigjson` documents.
pub fn build_objects(
    build: &MachineOSBuild,
    containerfile: &str,
    push_auth: &str,
    base_auth: Option<&str>,
    env: &Environment,
    settings: &Settings,
) -> BuildObjects {
    let name = build.metadata.name.clone().unwrap_or_default();
    let containerfile = ConfigMap {
        metadata: meta(names::containerfile_configmap(&name), settings, build),
        data: Some(BTreeMap::from([(
            CONTAINERFILE_KEY.to_string(),
            containerfile.to_string(),
        )])),
        ..ConfigMap::default()
    };
    let environment = ConfigMap {
        metadata: meta(names::environment_configmap(&name), settings, build),
        data: Some(environment_data(env, settings)),
        ..ConfigMap::default()
    };
    let credentials = credentials_secret(
        settings,
        build,
        push_auth,
        base_auth,
        env.entitlement.as_ref(),
    );
    let storage = ImageStorage::of(settings, env);
    let job = builder_job(
        build,
        base_auth.is_some(),
        &environment,
        env,
        &storage,
        settings,
    );
    let cache_claim = match storage {
        ImageStorage::Claim { own: true, .. } if !env.cache_claim_made => {
            Some(own_cache_claim(settings))
        }
        _ => None,
    };
    BuildObjects {
        containerfile,
        environment,
        credentials,
        job,
        cache_claim,
    }
}

/// Capabilities every step keeps; all others are dropped. Measured on the local cluster by dropping
/// all and adding back one at a time until each step works (builder-image/README.md,
/// "Privileges"): buildah runs as root without CAP_SYS_ADMIN, so it enters a user namespace of its
/// own, which takes CAP_SETUID and CAP_SETGID (to map the full ID range) and CAP_SETFCAP (to map
/// root); inside it, chown, mknod and the like need nothing more.
const STEP_CAPABILITIES: &[&str] = &["SETFCAP", "SETGID", "SETUID"];

/// The architecture builder pods build for (and run on).
pub const BUILD_ARCH: &str = "amd64";

/// One step's container: `strata build <name>`, its mounts and capabilities, the common
/// resources.
fn step(
    name: &str,
    settings: &Settings,
    env: &[Value],
    mounts: Vec<Value>,
    capabilities: &[&str],
) -> Value {
    let r = &settings.builder_resources;
    let mut limits = serde_json::Map::new();
    limits.insert("memory".into(), json!(r.memory_limit));
    limits.insert("ephemeral-storage".into(), json!(r.ephemeral_storage_limit));
    if !r.cpu_limit.is_empty() {
        limits.insert("cpu".into(), json!(r.cpu_limit));
    }
    json!({
        "name": name,
        "image": settings.builder_image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["build", name],
        "env": env,
        "volumeMounts": mounts,
        // A step that dies without writing its message (OOM, a crash) still reports its log's end.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"], "add": capabilities},
        },
        "resources": {
            "requests": {
                "cpu": r.cpu_request,
                "memory": r.memory_request,
                "ephemeral-storage": r.ephemeral_storage_request,
            },
            "limits": limits,
        },
    })
}

fn builder_job(
    build: &MachineOSBuild,
    has_pull_auth: bool,
    environment: &ConfigMap,
    env: &Environment,
    storage: &ImageStorage,
    settings: &Settings,
) -> Job {
    use strata_crds::contract::builder_pod as pod;
    let name = build.metadata.name.clone().unwrap_or_default();
    let image = names::image_for_build(&build.spec.rendered_image_push_spec, &name);
    // One Secret holds every credential; each step's volume takes only its own keys from it.
    let credentials = names::credentials_secret(&name);
    let claim = storage.claim();
    let storage = match claim {
        Some(claim) => json!({"name": "storage", "persistentVolumeClaim": {"claimName": claim}}),
        None => {
            json!({"name": "storage", "emptyDir": {"sizeLimit": settings.builder_resources.storage_size_limit}})
        }
    };
    let mut volumes = vec![
        json!({"name": "containerfile", "configMap": {"name": names::containerfile_configmap(&name)}}),
        json!({"name": "push-auth", "secret": {"secretName": credentials,
            "items": [{"key": credential_keys::PUSH, "path": ".dockerconfigjson"}]}}),
        storage,
        json!({"name": "work", "emptyDir": {"sizeLimit": settings.builder_resources.storage_size_limit}}),
    ];
    let containerfile =
        json!({"name": "containerfile", "mountPath": pod::CONTAINERFILE_DIR, "readOnly": true});
    // containers/image's record of which compressed blob each layer came from: shared, so the
    // push step reuses the base's layers in the registry instead of compressing and uploading
    // them again (it lives outside the storage root). On the cache claim it is kept with the
    // layers it describes: a later build that finds the base there must find this record too,
    // or its push compresses every base layer again to learn its digest.
    let blob_info_volume = if claim.is_some() { "storage" } else { "work" };
    let shared = [
        json!({"name": "storage", "mountPath": pod::STORAGE_DIR}),
        json!({"name": "work", "mountPath": pod::WORK_DIR}),
        json!({"name": blob_info_volume, "mountPath": pod::BLOB_INFO_CACHE_DIR, "subPath": "blob-info-cache"}),
    ];
    let mut pull_mounts = vec![containerfile.clone()];
    if has_pull_auth {
        volumes.push(
            json!({"name": "pull-auth", "secret": {"secretName": credentials,
                "items": [{"key": credential_keys::PULL, "path": ".dockerconfigjson"}]}}),
        );
        pull_mounts
            .push(json!({"name": "pull-auth", "mountPath": pod::PULL_AUTH_DIR, "readOnly": true}));
    }
    pull_mounts.extend(shared.iter().cloned());
    let mut build_mounts = vec![containerfile];
    build_mounts.extend(shared.iter().cloned());
    let mut push_mounts =
        vec![json!({"name": "push-auth", "mountPath": pod::PUSH_AUTH_DIR, "readOnly": true})];
    push_mounts.extend(shared.iter().cloned());

    // The cluster's environment: every step reads registries.conf and the CAs; the registry
    // steps find per-registry CAs where containers/image looks; RUN steps (the build step) get
    // the entitlement and repositories.
    let env_name = environment.metadata.name.clone().unwrap_or_default();
    let data = environment.data.clone().unwrap_or_default();
    let (per_registry, general): (Vec<&String>, Vec<&String>) =
        data.keys().partition(|k| k.starts_with(REGISTRY_CA_PREFIX));
    let items = |keys: &[&String], path: &dyn Fn(&str) -> String| -> Vec<Value> {
        keys.iter()
            .map(|k| json!({"key": k, "path": path(k)}))
            .collect()
    };
    volumes.push(json!({"name": "environment", "configMap": {
        "name": env_name, "items": items(&general, &|k| k.to_string())}}));
    let environment_mount =
        json!({"name": "environment", "mountPath": pod::ENVIRONMENT_DIR, "readOnly": true});
    pull_mounts.push(environment_mount.clone());
    build_mounts.push(environment_mount.clone());
    push_mounts.push(environment_mount);
    if !per_registry.is_empty() {
        volumes.push(json!({"name": "registry-cas", "configMap": {
            "name": env_name,
            "items": items(&per_registry, &|k| format!(
                "{}/ca.crt",
                k.trim_start_matches(REGISTRY_CA_PREFIX).replace("..", ":")
            )),
        }}));
        let certs =
            json!({"name": "registry-cas", "mountPath": pod::REGISTRY_CERTS_DIR, "readOnly": true});
        pull_mounts.push(certs.clone());
        push_mounts.push(certs);
    }
    if let Some(entitlement) = &env.entitlement {
        let items: Vec<Value> = entitlement
            .keys()
            .map(|file| json!({"key": credential_keys::entitlement(file), "path": file}))
            .collect();
        volumes.push(
            json!({"name": "entitlement", "secret": {"secretName": credentials, "items": items}}),
        );
        build_mounts.push(
            json!({"name": "entitlement", "mountPath": pod::ENTITLEMENT_DIR, "readOnly": true}),
        );
    }
    if env.yum_repos {
        volumes.push(
            json!({"name": "yum-repos", "configMap": {"name": environment::names::YUM_REPOS}}),
        );
        build_mounts
            .push(json!({"name": "yum-repos", "mountPath": pod::YUM_REPOS_DIR, "readOnly": true}));
    }
    if env.rpm_gpg {
        volumes.push(
            json!({"name": "rpm-gpg", "secret": {"secretName": environment::names::RPM_GPG}}),
        );
        build_mounts
            .push(json!({"name": "rpm-gpg", "mountPath": pod::RPM_GPG_DIR, "readOnly": true}));
    }

    let mut env_vars = vec![json!({"name": "STRATA_IMAGE", "value": image})];
    if !settings.insecure_registries.is_empty() {
        env_vars.push(json!({"name": "STRATA_INSECURE_REGISTRIES", "value": settings.insecure_registries.join(",")}));
    }
    // The cluster proxy, for the registries and for RUN steps (buildah passes these on).
    for (name, value) in env.proxy.variables() {
        env_vars.push(json!({"name": name, "value": value}));
    }
    if claim.is_some() {
        // The builds keep the shared storage in bounds themselves (builder-image/README.md).
        env_vars.extend([
            json!({"name": "STRATA_SHARED_STORAGE", "value": "true"}),
            json!({"name": "STRATA_SHARED_STORAGE_MIN_FREE_BYTES",
                   "value": (u64::from(settings.cache_claim_min_free_gib) << 30).to_string()}),
        ]);
    }
    let env = env_vars;
    let mut pod_labels = build_labels(build);
    pod_labels.insert(labels::COMPONENT.into(), labels::BUILDER.into());
    let placement = &settings.builder_placement;
    let mut node_selector =
        BTreeMap::from([("kubernetes.io/arch".to_string(), BUILD_ARCH.to_string())]);
    for entry in &placement.node_selector {
        if let Some((k, v)) = entry.split_once('=') {
            node_selector.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let tolerations: Value = placement
        .tolerations
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| json!([]));
    let steps =
        |name: &str, mounts: Vec<Value>, caps: &[&str]| step(name, settings, &env, mounts, caps);
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(names::job(build), settings, build),
        "spec": {
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.build_deadline_seconds,
            "podFailurePolicy": {"rules": [
                // A failing step, refused credentials or a bad reference: retrying cannot help.
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [exit_code::TERMINAL]}},
                // Evictions and preemptions are not the build's fault.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations(build)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.builder_service_account,
                    // No API access from any step, and no service addresses in the environment.
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {"seccompProfile": settings.builder_placement.seccomp_profile()},
                    "nodeSelector": node_selector,
                    "tolerations": tolerations,
                    "priorityClassName": placement.priority_class,
                    "initContainers": [
                        steps(pod::PULL, pull_mounts, STEP_CAPABILITIES),
                        steps(pod::BUILD, build_mounts, STEP_CAPABILITIES),
                    ],
                    "containers": [steps(pod::PUSH, push_mounts, STEP_CAPABILITIES)],
                    "volumes": volumes,
                }
            }
        }
    });
    // The JSON above only uses fields of batch/v1 Job, so this conversion cannot fail.
    serde_json::from_value(job).unwrap_or_default()
}

/// The labels that make the pool's MachineConfigPool select a MachineConfig: its
/// `machineConfigSelector.matchLabels`, else the role label (`…/role: <pool>`), which also
/// satisfies the usual `role In [worker, <pool>]` expression of custom pools.
pub fn pool_selector_labels(pool_name: &str, pool: &Value) -> serde_json::Map<String, Value> {
    let selected = pool["spec"]["machineConfigSelector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if selected.is_empty() {
        serde_json::Map::from_iter([(labels::ROLE.to_string(), Value::from(pool_name))])
    } else {
        selected
    }
}

/// The MachineConfig pinning `pool` to `image` (repo@sha256:…), carrying the pool's
/// `selector` labels; owned by nothing: it is removed by the MachineOSConfig's finalizer.
pub fn machine_config(
    pool: &str,
    selector: &serde_json::Map<String, Value>,
    image: &str,
    config_name: &str,
) -> Value {
    let mut mc_labels = selector.clone();
    mc_labels.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
    mc_labels.insert(labels::CONFIG.into(), fit_63(config_name).into());
    json!({
        "apiVersion": format!("{}/{}", mco::GROUP, mco::VERSION),
        "kind": "MachineConfig",
        "metadata": {
            "name": names::machine_config(pool),
            "labels": mc_labels,
            "annotations": {annotations::CONFIG: config_name},
        },
        "spec": {"osImageURL": image},
    })
}

/// Whether `current` already carries every label and the osImageURL of `desired`.
pub fn machine_config_matches(current: Option<&Value>, desired: &Value) -> bool {
    let Some(current) = current else { return false };
    let labels_match = desired["metadata"]["labels"]
        .as_object()
        .is_some_and(|labels| {
            labels
                .iter()
                .all(|(k, v)| &current["metadata"]["labels"][k] == v)
        });
    labels_match && current["spec"]["osImageURL"] == desired["spec"]["osImageURL"]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> MachineOSBuild {
        serde_json::from_value(json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
            "metadata": {"name": "worker-0123456789ab", "uid": "11111111-2222-3333-4444-555555555555"},
            "spec": {
                "machineOSConfig": {"name": "worker"}, "machineConfigPool": {"name": "worker"},
                "baseImage": format!("registry.example.com/os@sha256:{}", "a".repeat(64)),
                "renderedImagePushSpec": "registry.example.com/strata/os:latest",
            }
        }))
        .unwrap()
    }

    /// The builder pod's steps in order: its init containers, then its container.
    fn steps(
        pod: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Vec<&k8s_openapi::api::core::v1::Container> {
        pod.init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .collect()
    }

    #[test]
    fn job_snapshot() {
        let settings = Settings::for_tests();
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{\"auths\":{}}",
            Some("{\"auths\":{}}"),
            &Environment::default(),
            &settings,
        );
        insta::assert_yaml_snapshot!(objects.job);
    }

    #[test]
    fn long_config_names_fit_labels_and_keep_the_full_name_in_an_annotation() {
        let long = "p".repeat(100);
        let mut build = build();
        build.spec.machine_os_config.name = long.clone();
        build.metadata.name = Some(format!("{long}-0123456789ab"));
        let objects = build_objects(
            &build,
            "FROM x AS base\n",
            "{}",
            None,
            &Environment::default(),
            &Settings::for_tests(),
        );
        let job_meta = &objects.job.metadata;
        let pod_meta = objects
            .job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.clone())
            .unwrap();
        for meta in [job_meta, &pod_meta, &objects.containerfile.metadata] {
            for value in meta.labels.as_ref().unwrap().values() {
                assert!(value.len() <= 63, "label value {value}");
            }
            assert_eq!(
                meta.annotations.as_ref().unwrap()[annotations::CONFIG],
                long
            );
        }
        let selector = pool_selector_labels(&long, &json!({}));
        let mc = machine_config(&long, &selector, "r.example.com/os@sha256:x", &long);
        assert!(
            mc["metadata"]["labels"][labels::CONFIG]
                .as_str()
                .unwrap()
                .len()
                <= 63
        );
        assert_eq!(
            mc["metadata"]["annotations"][annotations::CONFIG],
            long.as_str()
        );
    }

    /// The cluster's environment reaches each step it is for, and only that step.
    #[test]
    fn an_openshift_environment_reaches_the_steps_that_need_it() {
        use crate::registry_policy::{MirrorRule, RegistryPolicy};
        let env = Environment {
            ca_bundle: "-----BEGIN CERTIFICATE-----\nQQ==\n-----END CERTIFICATE-----\n".into(),
            registry_cas: [("mirror.local:5000".to_string(), "PEM".to_string())].into(),
            proxy: environment::Proxy {
                http: "http://proxy:3128".into(),
                https: "http://proxy:3128".into(),
                no: ".svc".into(),
            },
            registries: RegistryPolicy {
                mirrors: vec![MirrorRule {
                    source: "quay.io/ocp".into(),
                    mirrors: vec!["mirror.local:5000/ocp".into()],
                    by_digest: true,
                    never_contact_source: true,
                }],
                allowed: vec!["quay.io".into(), "mirror.local:5000".into()],
                ..RegistryPolicy::default()
            },
            entitlement: Some([("entitlement.pem".to_string(), ByteString(b"c".to_vec()))].into()),
            yum_repos: true,
            ..Environment::default()
        };
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            Some("{}"),
            &env,
            &Settings::for_tests(),
        );
        let data = objects.environment.data.clone().unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "ca-bundle.crt",
                "policy.json",
                "registries.conf",
                "registry-ca.mirror.local..5000"
            ]
        );
        assert!(data["registries.conf"].contains("blocked = true"));
        assert!(
            data["registries.conf"].contains("location = \"10.0.0.1:5000\"\ninsecure = true"),
            "the controller's insecure registries reach the builder:\n{}",
            data["registries.conf"]
        );
        assert_eq!(
            objects.credentials.data.as_ref().unwrap()["entitlement.entitlement.pem"],
            ByteString(b"c".to_vec())
        );
        let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
        let containers = steps(&pod);
        let mounts = |c: &k8s_openapi::api::core::v1::Container| -> Vec<(String, String)> {
            c.volume_mounts
                .iter()
                .flatten()
                .map(|m| (m.name.clone(), m.mount_path.clone()))
                .collect()
        };
        for c in &containers {
            let vars: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
            assert!(
                vars.contains(&"HTTPS_PROXY") && vars.contains(&"no_proxy"),
                "{}: {vars:?}",
                c.name
            );
            assert!(mounts(c).contains(&("environment".into(), "/etc/strata/environment".into())));
        }
        let has = |c: usize, name: &str| mounts(containers[c]).iter().any(|(n, _)| n == name);
        assert!(has(0, "registry-cas") && has(2, "registry-cas") && !has(1, "registry-cas"));
        assert!(has(1, "entitlement") && !has(0, "entitlement") && !has(2, "entitlement"));
        assert!(has(1, "yum-repos") && !has(0, "yum-repos"));
        let cas = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "registry-cas")
            .and_then(|v| v.config_map.clone())
            .unwrap();
        assert_eq!(
            cas.items.unwrap()[0].path,
            "mirror.local:5000/ca.crt",
            "per-registry CAs land where containers/image looks"
        );
    }

    /// The builder pod of a build without pull auth in the default environment, under `settings`.
    fn pod_with(settings: &Settings) -> k8s_openapi::api::core::v1::PodSpec {
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            None,
            &Environment::default(),
            settings,
        );
        objects.job.spec.and_then(|s| s.template.spec).unwrap()
    }

    /// Where each step's blob info cache is: (volume, subPath) of its mount at the cache dir.
    fn blob_info_mounts(settings: &Settings) -> Vec<(String, Option<String>)> {
        let pod = pod_with(settings);
        steps(&pod)
            .into_iter()
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .filter(|m| m.mount_path == strata_crds::contract::builder_pod::BLOB_INFO_CACHE_DIR)
            .map(|m| (m.name.clone(), m.sub_path.clone()))
            .collect()
    }

    /// The storage volume of the builder pod and the claim to make, under `cache_claim` in an
    /// environment with or without a default StorageClass and Strata's claim.
    fn storage_with(
        cache_claim: CacheClaim,
        default_class: bool,
        claim_made: bool,
    ) -> (Value, Option<String>) {
        let env = Environment {
            default_storage_class: default_class.then(|| "standard".to_string()),
            cache_claim_made: claim_made,
            ..Environment::default()
        };
        let settings = Settings {
            cache_claim,
            cache_claim_size: "20Gi".into(),
            ..Settings::for_tests()
        };
        let objects = build_objects(&build(), "FROM x AS base\n", "{}", None, &env, &settings);
        let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
        let storage = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "storage")
            .map(|v| serde_json::to_value(v).unwrap())
            .unwrap();
        let claim = objects
            .cache_claim
            .map(|c| serde_json::to_string(&c).unwrap());
        (storage, claim)
    }

    #[test]
    fn auto_uses_strata_s_own_claim_only_where_the_cluster_has_a_default_storage_class() {
        let empty_dir = json!({"name": "storage", "emptyDir": {"sizeLimit": "20Gi"}});
        let own = json!({"name": "storage", "persistentVolumeClaim": {"claimName": "strata-build-cache"}});
        // No default StorageClass: a claim could never bind, so each pod has its own emptyDir.
        assert_eq!(
            storage_with(CacheClaim::Auto, false, false),
            (empty_dir.clone(), None)
        );
        // A default class: the claim is made with the Job (once) and mounted.
        let (storage, claim) = storage_with(CacheClaim::Auto, true, false);
        assert_eq!(storage, own);
        let claim: Value = serde_json::from_str(&claim.expect("the claim is made")).unwrap();
        assert_eq!(
            claim,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "strata-build-cache", "namespace": "strata-system",
                    "labels": {labels::MANAGED_BY: labels::MANAGED_BY_VALUE}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}})
        );
        assert_eq!(storage_with(CacheClaim::Auto, true, true), (own, None));
        // Off: an emptyDir even where a class exists; a named claim is the admin's, never made.
        assert_eq!(
            storage_with(CacheClaim::Off, true, false),
            (empty_dir, None)
        );
        assert_eq!(
            storage_with(CacheClaim::Named("mine".into()), false, false),
            (
                json!({"name": "storage", "persistentVolumeClaim": {"claimName": "mine"}}),
                None
            )
        );
    }

    #[test]
    fn the_blob_info_cache_is_kept_with_the_layers_it_describes() {
        let per_build = blob_info_mounts(&Settings::for_tests());
        let on_claim = blob_info_mounts(&Settings {
            cache_claim: CacheClaim::Named("strata-cache".into()),
            ..Settings::for_tests()
        });
        let sub = Some("blob-info-cache".to_string());
        // Every step (pull, build, push) shares it; on the claim when the layers are there.
        assert_eq!(per_build, vec![("work".to_string(), sub.clone()); 3]);
        assert_eq!(on_claim, vec![("storage".to_string(), sub); 3]);
    }

    #[test]
    fn on_the_claim_every_step_knows_the_storage_is_shared() {
        let env_of = |settings: &Settings| {
            let pod = pod_with(settings);
            steps(&pod)
                .into_iter()
                .map(|c| {
                    c.env
                        .iter()
                        .flatten()
                        .filter(|e| e.name.contains("SHARED_STORAGE"))
                        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert!(env_of(&Settings::for_tests()).iter().all(Vec::is_empty));
        let shared = env_of(&Settings {
            cache_claim: CacheClaim::Named("strata-cache".into()),
            cache_claim_min_free_gib: 7,
            ..Settings::for_tests()
        });
        let expected = vec![
            ("STRATA_SHARED_STORAGE".to_string(), "true".to_string()),
            (
                "STRATA_SHARED_STORAGE_MIN_FREE_BYTES".into(),
                (7u64 << 30).to_string(),
            ),
        ];
        assert_eq!(shared, vec![expected; 3]);
    }

    #[test]
    fn no_credential_reaches_the_build_step() {
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            Some("{}"),
            &Environment::default(),
            &Settings::for_tests(),
        );
        let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let containers = steps(&pod);
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pull", "build", "push"]);
        let secret_volumes: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.secret.is_some())
            .map(|v| v.name.as_str())
            .collect();
        let mounts = |c: &k8s_openapi::api::core::v1::Container| -> Vec<String> {
            c.volume_mounts
                .iter()
                .flatten()
                .map(|m| m.name.clone())
                .collect()
        };
        let build_mounts = mounts(containers[1]);
        assert!(
            secret_volumes
                .iter()
                .all(|s| !build_mounts.contains(&s.to_string())),
            "the build step mounts a Secret: {build_mounts:?}"
        );
        assert!(mounts(containers[0]).contains(&"pull-auth".to_string()));
        assert!(!mounts(containers[0]).contains(&"push-auth".to_string()));
        assert!(mounts(containers[2]).contains(&"push-auth".to_string()));
        assert!(!mounts(containers[2]).contains(&"pull-auth".to_string()));
        for c in &containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop,
                Some(vec!["ALL".to_string()])
            );
        }
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/arch"], "amd64");
    }

    #[test]
    fn machine_config_carries_the_pools_selector_labels() {
        let role = pool_selector_labels("infra", &json!({"spec": {}}));
        let mc = machine_config("infra", &role, "r.example.com/os@sha256:x", "infra");
        assert_eq!(mc["metadata"]["labels"][labels::ROLE], "infra");
        // A pool selecting by other labels gets those.
        let pool = json!({"spec": {"machineConfigSelector": {"matchLabels": {"example.com/pool": "gpu"}}}});
        let mc = machine_config(
            "gpu",
            &pool_selector_labels("gpu", &pool),
            "r.example.com/os@sha256:x",
            "gpu",
        );
        assert_eq!(mc["metadata"]["labels"]["example.com/pool"], "gpu");
        assert!(mc["metadata"]["labels"].get(labels::ROLE).is_none());
        assert_eq!(mc["spec"]["osImageURL"], "r.example.com/os@sha256:x");
    }
}
