//! The objects a build needs and the MachineConfig that pins a pool, built from values only.
//! Pure: the apply layer sends them as they are.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, Secret, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Value, json};
use strata_crds::MachineOSBuild;
use strata_crds::contract::{BootPlan, annotations, exit_code, install, labels, mco};

use crate::controller::environment::{self, Environment};
use crate::controller::names::{self, fit_63};
use crate::controller::settings::{BuilderPlacement, CacheClaim, Settings};

mod disk_image;
pub use disk_image::{DiskImageObjects, disk_image_objects};

/// Key of the rendered Containerfile in the build's ConfigMap.
pub const CONTAINERFILE_KEY: &str = "Containerfile";

/// What one build needs in the controller namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildObjects {
    pub containerfile: ConfigMap,
    /// The cluster's environment as the build sees it (registries.conf, CAs).
    pub environment: ConfigMap,
    /// The push and pull auth, the cluster proxy's URLs and, for a config that opts in, a copy of
    /// the cluster's entitlement, in one Secret (one write, one delete); each step's volume holds
    /// only its own keys (see [`credential_keys`]), every step's proxy variables refer to it.
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
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(install::CACHE_CLAIM.into()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(BTreeMap::from([(
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(settings.cache_claim_size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Keys of the build's credentials Secret: the push auth, the pull auth, the cluster proxy's
/// URLs, the entitlement's files.
pub mod credential_keys {
    pub const PUSH: &str = "push.dockerconfigjson";
    pub const PULL: &str = "pull.dockerconfigjson";
    /// The proxy URLs (`httpProxy`, `httpsProxy`), which may hold `user:password`: the steps'
    /// proxy variables refer to them instead of carrying them in the Job.
    pub const PROXY_HTTP: &str = "proxy.http";
    pub const PROXY_HTTPS: &str = "proxy.https";

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

/// The build's credentials Secret: `push_auth` and `base_auth` (`.dockerconfigjson` documents),
/// the proxy URLs and the entitlement's files (when the config's builds get it) under
/// [`credential_keys`].
fn credentials_secret(
    settings: &Settings,
    build: &MachineOSBuild,
    push_auth: &str,
    base_auth: Option<&str>,
    env: &Environment,
) -> Secret {
    let name = build.metadata.name.clone().unwrap_or_default();
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    let mut data = BTreeMap::from([(credential_keys::PUSH.to_string(), bytes(push_auth))]);
    if let Some(auth) = base_auth {
        data.insert(credential_keys::PULL.into(), bytes(auth));
    }
    for (key, url) in [
        (credential_keys::PROXY_HTTP, &env.proxy.http),
        (credential_keys::PROXY_HTTPS, &env.proxy.https),
    ] {
        if !url.is_empty() {
            data.insert(key.into(), bytes(url));
        }
    }
    for (file, value) in env.entitlement.iter().flatten() {
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
/// The objects of `build`; `boot` is the boot step's plan (None: the config turned the check
/// off).
#[allow(clippy::too_many_arguments)]
pub fn build_objects(
    build: &MachineOSBuild,
    containerfile: &str,
    push_auth: &str,
    base_auth: Option<&str>,
    env: &Environment,
    boot: Option<&BootPlan>,
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
    let credentials = credentials_secret(settings, build, push_auth, base_auth, env);
    let storage = ImageStorage::of(settings, env);
    let job = builder_job(
        build,
        base_auth.is_some(),
        &environment,
        env,
        &storage,
        boot,
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

/// A MachineOSConfig's image store on the cache claim, relative to the claim's root. Config
/// names are DNS subdomains: no `/`, never `..`.
/// The bytes of each step's log a build's logs ConfigMap keeps: its end.
pub const KEPT_LOG_BYTES: usize = 16 * 1024;

/// The ConfigMap that keeps the end of each step's log of `build` once it succeeded (its Job and
/// pod go then), owned by the build; apply fills its data from the pod.
pub fn logs_configmap(settings: &Settings, build: &MachineOSBuild) -> ConfigMap {
    let name = build.metadata.name.clone().unwrap_or_default();
    ConfigMap {
        metadata: meta(names::logs_configmap(&name), settings, build),
        ..ConfigMap::default()
    }
}

pub fn store_sub_path(config: &str) -> String {
    format!(
        "{}/{config}",
        strata_crds::contract::builder_pod::CLAIM_STORES
    )
}

/// Capabilities every step keeps; all others are dropped. Measured on the local cluster by dropping
/// all and adding back one at a time until each step works (builder-image/README.md,
/// "Privileges"): buildah runs as root without CAP_SYS_ADMIN, so it enters a user namespace of its
/// own, which takes CAP_SETUID and CAP_SETGID (to map the full ID range) and CAP_SETFCAP (to map
/// root); inside it, chown, mknod and the like need nothing more.
const STEP_CAPABILITIES: &[&str] = &["SETFCAP", "SETGID", "SETUID"];

/// The architecture builder pods build for (and run on).
pub const BUILD_ARCH: &str = "amd64";

/// The builder pod's volumes and what each step mounts of them, in the order the pod lists them.
#[derive(Default)]
struct PodVolumes {
    volumes: Vec<Volume>,
    pull: Vec<VolumeMount>,
    build: Vec<VolumeMount>,
    boot: Vec<VolumeMount>,
    push: Vec<VolumeMount>,
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn key_to_path(key: impl Into<String>, path: impl Into<String>) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: path.into(),
        ..KeyToPath::default()
    }
}

fn config_map_volume(volume: &str, config_map: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: volume.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            items,
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn secret_volume(volume: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items,
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn empty_dir_volume(volume: &str, size_limit: &str) -> Volume {
    Volume {
        name: volume.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(size_limit.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The volumes every build has: its Containerfile, the push auth, the image storage (its
/// config's store on the cache claim, or an emptyDir), the work directory; and the pull auth
/// when the base needs it.
fn build_volumes(
    build: &MachineOSBuild,
    has_pull_auth: bool,
    claim: Option<&str>,
    settings: &Settings,
) -> PodVolumes {
    let build_name = build.metadata.name.as_deref().unwrap_or_default();
    use strata_crds::contract::builder_pod as pod;
    // One Secret holds every credential; each step's volume takes only its own keys from it.
    let credentials = names::credentials_secret(build_name);
    let size = &settings.builder_resources.storage_size_limit;
    let storage = match claim {
        Some(claim) => Volume {
            name: "storage".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
        None => empty_dir_volume("storage", size),
    };
    let auth_items = |key: &str| Some(vec![key_to_path(key, ".dockerconfigjson")]);
    let mut volumes = vec![
        config_map_volume(
            "containerfile",
            &names::containerfile_configmap(build_name),
            None,
        ),
        secret_volume("push-auth", &credentials, auth_items(credential_keys::PUSH)),
        storage,
        empty_dir_volume("work", size),
    ];
    let containerfile = mount("containerfile", pod::CONTAINERFILE_DIR, true);
    // containers/image's record of which compressed blob each layer came from: shared, so the
    // push step reuses the base's layers in the registry instead of compressing and uploading
    // them again (it lives outside the storage root). On the cache claim it is kept with the
    // layers it describes: a later build that finds the base there must find this record too,
    // or its push compresses every base layer again to learn its digest.
    // On the claim, each MachineOSConfig has a store of its own (`configs/<name>`): its builds
    // see no other config's images or layers, so fragment code can neither read another pool's
    // build nor become its layer cache. Only the pull step sees the whole claim, to keep it in
    // bounds (builder-image/README.md).
    let store = claim.map(|_| store_sub_path(&build.spec.machine_os_config.name));
    let (blob_info_volume, blob_info_path) = match &store {
        Some(store) => ("storage", format!("{store}/blob-info-cache")),
        None => ("work", "blob-info-cache".to_string()),
    };
    let shared = [
        VolumeMount {
            sub_path: store.clone(),
            ..mount("storage", pod::STORAGE_DIR, false)
        },
        mount("work", pod::WORK_DIR, false),
        VolumeMount {
            sub_path: Some(blob_info_path),
            ..mount(blob_info_volume, pod::BLOB_INFO_CACHE_DIR, false)
        },
    ];
    let mut pull = vec![containerfile.clone()];
    if has_pull_auth {
        volumes.push(secret_volume(
            "pull-auth",
            &credentials,
            auth_items(credential_keys::PULL),
        ));
        pull.push(mount("pull-auth", pod::PULL_AUTH_DIR, true));
    }
    pull.extend(shared.iter().cloned());
    if claim.is_some() {
        pull.push(mount("storage", pod::CLAIM_DIR, false));
    }
    let mut build = vec![containerfile.clone()];
    build.extend(shared.iter().cloned());
    // The boot step reads the Containerfile (its base) and the storage; no credential, no
    // environment: it reaches no registry, and its VM has no network.
    let mut boot = vec![containerfile];
    boot.extend(shared.iter().cloned());
    let mut push = vec![mount("push-auth", pod::PUSH_AUTH_DIR, true)];
    push.extend(shared);
    PodVolumes {
        volumes,
        pull,
        build,
        boot,
        push,
    }
}

/// Adds the cluster's environment: every step reads registries.conf and the CAs; the registry
/// steps find per-registry CAs where containers/image looks; RUN steps (the build step) get the
/// entitlement and repositories.
fn add_environment(
    pod_volumes: &mut PodVolumes,
    build_name: &str,
    environment: &ConfigMap,
    env: &Environment,
) {
    use strata_crds::contract::builder_pod as pod;
    let PodVolumes {
        volumes,
        pull,
        build,
        push,
        ..
    } = pod_volumes;
    let env_name = environment.metadata.name.clone().unwrap_or_default();
    let data = environment.data.clone().unwrap_or_default();
    let (per_registry, general): (Vec<&String>, Vec<&String>) =
        data.keys().partition(|k| k.starts_with(REGISTRY_CA_PREFIX));
    let general = general.iter().map(|k| key_to_path(*k, *k)).collect();
    volumes.push(config_map_volume("environment", &env_name, Some(general)));
    let environment_mount = mount("environment", pod::ENVIRONMENT_DIR, true);
    pull.push(environment_mount.clone());
    build.push(environment_mount.clone());
    push.push(environment_mount);
    if !per_registry.is_empty() {
        let items = per_registry.iter().map(|k| {
            let registry = k.trim_start_matches(REGISTRY_CA_PREFIX).replace("..", ":");
            key_to_path(*k, format!("{registry}/ca.crt"))
        });
        volumes.push(config_map_volume(
            "registry-cas",
            &env_name,
            Some(items.collect()),
        ));
        let certs = mount("registry-cas", pod::REGISTRY_CERTS_DIR, true);
        pull.push(certs.clone());
        push.push(certs);
    }
    if let Some(entitlement) = &env.entitlement {
        let items = entitlement
            .keys()
            .map(|file| key_to_path(credential_keys::entitlement(file), file))
            .collect();
        let credentials = names::credentials_secret(build_name);
        volumes.push(secret_volume("entitlement", &credentials, Some(items)));
        build.push(mount("entitlement", pod::ENTITLEMENT_DIR, true));
    }
    if env.yum_repos {
        volumes.push(config_map_volume(
            "yum-repos",
            environment::names::YUM_REPOS,
            None,
        ));
        build.push(mount("yum-repos", pod::YUM_REPOS_DIR, true));
    }
    if env.rpm_gpg {
        volumes.push(secret_volume("rpm-gpg", environment::names::RPM_GPG, None));
        build.push(mount("rpm-gpg", pod::RPM_GPG_DIR, true));
    }
}

fn env_var(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// A variable read from `key` of the Secret `secret`.
fn secret_env_var(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The cluster proxy's variables, in both spellings (tools read one or the other), for the
/// registries and for RUN steps (buildah passes them on). The proxy URLs may carry
/// `user:password`, so they are read from the build's credentials Secret (`credentials`) and never
/// written into the Job or pod; NO_PROXY, which holds no credential, is a plain value. The steps
/// redact the URLs' credentials from everything they print.
fn proxy_env(proxy: &environment::Proxy, credentials: &str) -> Vec<EnvVar> {
    if !proxy.is_set() {
        return Vec::new();
    }
    let mut vars = Vec::new();
    for (upper, lower, url, key) in [
        (
            "HTTP_PROXY",
            "http_proxy",
            &proxy.http,
            credential_keys::PROXY_HTTP,
        ),
        (
            "HTTPS_PROXY",
            "https_proxy",
            &proxy.https,
            credential_keys::PROXY_HTTPS,
        ),
    ] {
        if !url.is_empty() {
            vars.push(secret_env_var(upper, credentials, key));
            vars.push(secret_env_var(lower, credentials, key));
        }
    }
    if !proxy.no.is_empty() {
        vars.push(env_var("NO_PROXY", proxy.no.clone()));
        vars.push(env_var("no_proxy", proxy.no.clone()));
    }
    vars
}

/// A step's environment: the image to make, the insecure registries, the cluster proxy (from the
/// credentials Secret `credentials`; not for the boot step, which reaches no network), and the
/// shared storage's bounds when the storage is the cache claim.
fn step_env(
    image: String,
    env: &Environment,
    credentials: &str,
    shared: bool,
    with_proxy: bool,
    settings: &Settings,
) -> Vec<EnvVar> {
    let mut vars = vec![env_var("STRATA_IMAGE", image)];
    if !settings.insecure_registries.is_empty() {
        vars.push(env_var(
            "STRATA_INSECURE_REGISTRIES",
            settings.insecure_registries.join(","),
        ));
    }
    if with_proxy {
        vars.extend(proxy_env(&env.proxy, credentials));
    }
    if shared {
        // The builds keep the shared storage in bounds themselves (builder-image/README.md).
        let min_free = u64::from(settings.cache_claim_min_free_gib) << 30;
        let quota = u64::from(settings.cache_claim_store_quota_gib) << 30;
        vars.extend([
            env_var("STRATA_SHARED_STORAGE", "true".into()),
            env_var("STRATA_SHARED_STORAGE_MIN_FREE_BYTES", min_free.to_string()),
            env_var("STRATA_SHARED_STORAGE_QUOTA_BYTES", quota.to_string()),
            // The registration is the pod's: a retry's pod never shares its marker.
            EnvVar {
                name: "STRATA_POD_UID".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.uid".into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
        ]);
    }
    vars
}

/// The common resources of every step.
fn step_resources(settings: &Settings) -> ResourceRequirements {
    let r = &settings.builder_resources;
    let quantity = |value: &String| Quantity(value.clone());
    let mut limits = BTreeMap::from([
        ("memory".to_string(), quantity(&r.memory_limit)),
        (
            "ephemeral-storage".to_string(),
            quantity(&r.ephemeral_storage_limit),
        ),
    ]);
    if !r.cpu_limit.is_empty() {
        limits.insert("cpu".into(), quantity(&r.cpu_limit));
    }
    let requests = BTreeMap::from([
        ("cpu".to_string(), quantity(&r.cpu_request)),
        ("memory".to_string(), quantity(&r.memory_request)),
        (
            "ephemeral-storage".to_string(),
            quantity(&r.ephemeral_storage_request),
        ),
    ]);
    ResourceRequirements {
        limits: Some(limits),
        requests: Some(requests),
        ..ResourceRequirements::default()
    }
}

/// How the kubelet makes a step's termination message. The build step's log is mostly fragment
/// code's output, so it never stands for the message (`File`: a build step killed without one
/// reports only the kubelet's reason); the pull and push steps run only Strata and buildah, and
/// one that dies without writing its message (OOM, a crash) still reports its log's end.
fn termination_message_policy(step: &str) -> &'static str {
    use strata_crds::contract::builder_pod::{BOOT, BUILD};
    use strata_crds::contract::disk_image_pod::DISK;
    // The boot step's log carries the booted image's console; the disk step runs the image's
    // own tools.
    if step == BUILD || step == BOOT || step == DISK {
        "File"
    } else {
        "FallbackToLogsOnError"
    }
}

/// One step's container: `strata build <name>`, its mounts and capabilities, the common
/// resources.
fn step(
    name: &str,
    settings: &Settings,
    env: &[EnvVar],
    mounts: Vec<VolumeMount>,
    capabilities: &[&str],
) -> Container {
    let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Container {
        name: name.into(),
        image: Some(settings.builder_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(strings(&["build", name])),
        env: Some(env.to_vec()),
        volume_mounts: Some(mounts),
        termination_message_policy: Some(termination_message_policy(name).into()),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            run_as_user: Some(0),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                add: Some(strings(capabilities)),
            }),
            ..SecurityContext::default()
        }),
        resources: Some(step_resources(settings)),
        ..Container::default()
    }
}

/// The builder pod's nodeSelector: the built architecture and the configured entries.
fn node_selector(placement: &BuilderPlacement) -> BTreeMap<String, String> {
    let mut selector = BTreeMap::from([("kubernetes.io/arch".to_string(), BUILD_ARCH.to_string())]);
    for entry in &placement.node_selector {
        if let Some((k, v)) = entry.split_once('=') {
            selector.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    selector
}

/// The configured tolerations; none when unset or not a list of Tolerations.
fn tolerations(placement: &BuilderPlacement) -> Vec<Toleration> {
    placement
        .tolerations
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// The boot step's memory request: the VM's 2 GiB and QEMU's own (its translation cache under
/// software emulation). The builder's memory limit (default 4 GiB) must stay above it.
const BOOT_MEMORY_REQUEST: &str = "2560Mi";

/// The boot step's container: the common step, and the cluster's KVM device resource when one
/// is configured (KubeVirt's device plugin offers `devices.kubevirt.io/kvm`).
fn boot_step(settings: &Settings, env: &[EnvVar], mounts: Vec<VolumeMount>) -> Container {
    use strata_crds::contract::builder_pod::BOOT;
    let mut container = step(BOOT, settings, env, mounts, STEP_CAPABILITIES);
    // The VM's memory is used, not a peak: the scheduler must count it.
    if let Some(requests) = container
        .resources
        .as_mut()
        .and_then(|r| r.requests.as_mut())
    {
        requests.insert("memory".into(), Quantity(BOOT_MEMORY_REQUEST.into()));
    }
    let kvm = &settings.boot_check_kvm_resource;
    if !kvm.is_empty()
        && let Some(resources) = container.resources.as_mut()
    {
        for list in [&mut resources.limits, &mut resources.requests] {
            list.get_or_insert_with(BTreeMap::new)
                .insert(kvm.clone(), Quantity("1".into()));
        }
    }
    container
}

/// The builder pod: the pull, build and (when the check is on) boot steps as init containers,
/// the push step last.
fn pod_spec(
    volumes: PodVolumes,
    env: &[EnvVar],
    boot_env: Option<Vec<EnvVar>>,
    settings: &Settings,
) -> PodSpec {
    use strata_crds::contract::builder_pod as pod;
    let PodVolumes {
        volumes,
        pull,
        build,
        boot,
        push,
    } = volumes;
    let container = |name: &str, mounts| step(name, settings, env, mounts, STEP_CAPABILITIES);
    let mut init_containers = vec![container(pod::PULL, pull), container(pod::BUILD, build)];
    if let Some(boot_env) = boot_env {
        init_containers.push(boot_step(settings, &boot_env, boot));
    }
    pod_spec_of(
        init_containers,
        container(pod::PUSH, push),
        volumes,
        settings,
    )
}

/// A pod of Strata's steps: the init containers in order, then the last step; no API access, the
/// builder's placement.
fn pod_spec_of(
    init_containers: Vec<Container>,
    last: Container,
    volumes: Vec<Volume>,
    settings: &Settings,
) -> PodSpec {
    let placement = &settings.builder_placement;
    PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(settings.builder_service_account.clone()),
        // No API access from any step, and no service addresses in the environment.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(placement.seccomp_profile()),
            ..PodSecurityContext::default()
        }),
        node_selector: Some(node_selector(placement)),
        tolerations: Some(tolerations(placement)),
        priority_class_name: placement.priority_class.clone(),
        init_containers: Some(init_containers),
        containers: vec![last],
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// When a failed pod fails the Job at once, and when it does not count.
fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            // A failing step, refused credentials or a bad reference: retrying cannot help.
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    operator: "In".into(),
                    values: vec![exit_code::TERMINAL],
                    ..PodFailurePolicyOnExitCodesRequirement::default()
                }),
                ..PodFailurePolicyRule::default()
            },
            // Evictions and preemptions are not the build's fault.
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
                ..PodFailurePolicyRule::default()
            },
        ],
    }
}

fn builder_job(
    build: &MachineOSBuild,
    has_pull_auth: bool,
    environment: &ConfigMap,
    env: &Environment,
    storage: &ImageStorage,
    boot: Option<&BootPlan>,
    settings: &Settings,
) -> Job {
    let name = build.metadata.name.clone().unwrap_or_default();
    let claim = storage.claim();
    let mut volumes = build_volumes(build, has_pull_auth, claim, settings);
    add_environment(&mut volumes, &name, environment, env);
    let image = names::image_for_build(&build.spec.rendered_image_push_spec, &name);
    let credentials = names::credentials_secret(&name);
    let boot_env = boot.map(|plan| {
        let mut vars = step_env(
            image.clone(),
            env,
            &credentials,
            claim.is_some(),
            false,
            settings,
        );
        vars.push(env_var(
            strata_crds::contract::builder_pod::BOOT_PLAN_ENV,
            serde_json::to_string(plan).unwrap_or_default(),
        ));
        vars
    });
    let mut step_env = step_env(image, env, &credentials, claim.is_some(), true, settings);
    if let Some(seed) = build.pre_built_image() {
        step_env.push(env_var(
            strata_crds::contract::builder_pod::SEED_IMAGE_ENV,
            seed.to_string(),
        ));
    }
    steps_job(
        names::job(build),
        build,
        pod_spec(volumes, &step_env, boot_env, settings),
        settings,
    )
}

/// A Job of `build` running the pod `spec` of Strata's steps (the builder's, the disk image's):
/// the build's labels, the builder SCC, the retry and deadline settings.
fn steps_job(name: String, build: &MachineOSBuild, spec: PodSpec, settings: &Settings) -> Job {
    let mut pod_labels = build_labels(build);
    pod_labels.insert(labels::COMPONENT.into(), labels::BUILDER.into());
    Job {
        metadata: meta(name, settings, build),
        spec: Some(JobSpec {
            backoff_limit: Some(settings.backoff_limit),
            active_deadline_seconds: Some(settings.build_deadline_seconds),
            pod_failure_policy: Some(pod_failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations(build)),
                    ..ObjectMeta::default()
                }),
                spec: Some(spec),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// The labels that make the pool's MachineConfigPool select a MachineConfig: its
/// `machineConfigSelector.matchLabels`, else the role label (`…/role: <pool>`), which also
/// satisfies the usual `role In [worker, <pool>]` expression of custom pools.
pub fn pool_selector_labels(
    pool_name: &str,
    pool: &mco::MachineConfigPool,
) -> BTreeMap<String, String> {
    let selected = pool
        .spec
        .machine_config_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    if selected.is_empty() {
        BTreeMap::from([(labels::ROLE.to_string(), pool_name.to_string())])
    } else {
        selected
    }
}

/// The MachineConfig pinning `pool` to `image` (repo@sha256:…), carrying the pool's
/// `selector` labels; owned by nothing: it is removed by the MachineOSConfig's finalizer.
pub fn machine_config(
    pool: &str,
    selector: &BTreeMap<String, String>,
    image: &str,
    config_name: &str,
) -> Value {
    let mut mc_labels = selector.clone();
    mc_labels.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
    mc_labels.insert(labels::CONFIG.into(), fit_63(config_name));
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
pub fn machine_config_matches(current: Option<&mco::MachineConfig>, desired: &Value) -> bool {
    let Some(current) = current else { return false };
    let current_labels = current.metadata.labels.clone().unwrap_or_default();
    let labels_match = desired["metadata"]["labels"]
        .as_object()
        .is_some_and(|labels| {
            labels
                .iter()
                .all(|(k, v)| current_labels.get(k).map(String::as_str) == v.as_str())
        });
    labels_match && current.spec.os_image_url.as_deref() == desired["spec"]["osImageURL"].as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::build;

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
            BootPlan::of(None, None).as_ref(),
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
            None,
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
        let selector = pool_selector_labels(&long, &mco::MachineConfigPool::default());
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
            None,
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
            None,
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
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            None,
            &env,
            None,
            &settings,
        );
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
        // Every step (pull, build, push) shares it; on the claim when the layers are there, in
        // the config's own store.
        assert_eq!(per_build, vec![("work".to_string(), sub); 3]);
        let in_store = Some("configs/worker/blob-info-cache".to_string());
        assert_eq!(on_claim, vec![("storage".to_string(), in_store); 3]);
    }

    #[test]
    fn on_the_claim_each_config_has_its_store_and_only_the_pull_step_sees_the_rest() {
        use strata_crds::contract::builder_pod as pod;
        let pod_spec = pod_with(&Settings {
            cache_claim: CacheClaim::Named("strata-cache".into()),
            ..Settings::for_tests()
        });
        for step in steps(&pod_spec) {
            let claim_mounts: Vec<(String, Option<String>)> = step
                .volume_mounts
                .iter()
                .flatten()
                .filter(|m| m.name == "storage")
                .map(|m| (m.mount_path.clone(), m.sub_path.clone()))
                .collect();
            let store = (pod::STORAGE_DIR.to_string(), Some("configs/worker".into()));
            let blob_info = (
                pod::BLOB_INFO_CACHE_DIR.to_string(),
                Some("configs/worker/blob-info-cache".into()),
            );
            let mut expected = vec![store, blob_info];
            if step.name == pod::PULL {
                expected.push((pod::CLAIM_DIR.to_string(), None));
            }
            assert_eq!(claim_mounts, expected, "{}", step.name);
            let uid = step
                .env
                .iter()
                .flatten()
                .find(|e| e.name == "STRATA_POD_UID")
                .and_then(|e| e.value_from.as_ref())
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            assert_eq!(uid, Some("metadata.uid"), "{}", step.name);
        }
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
            cache_claim_store_quota_gib: 30,
            ..Settings::for_tests()
        });
        let expected = vec![
            ("STRATA_SHARED_STORAGE".to_string(), "true".to_string()),
            (
                "STRATA_SHARED_STORAGE_MIN_FREE_BYTES".into(),
                (7u64 << 30).to_string(),
            ),
            (
                "STRATA_SHARED_STORAGE_QUOTA_BYTES".into(),
                (30u64 << 30).to_string(),
            ),
        ];
        assert_eq!(shared, vec![expected; 3]);
    }

    #[test]
    fn no_credential_reaches_the_build_and_boot_steps() {
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            Some("{}"),
            &Environment::default(),
            BootPlan::of(None, None).as_ref(),
            &Settings::for_tests(),
        );
        let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let containers = steps(&pod);
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pull", "build", "boot", "push"]);
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
        for step in [containers[1], containers[2]] {
            let step_mounts = mounts(step);
            assert!(
                secret_volumes
                    .iter()
                    .all(|s| !step_mounts.contains(&s.to_string())),
                "the {} step mounts a Secret: {step_mounts:?}",
                step.name
            );
        }
        assert!(mounts(containers[0]).contains(&"pull-auth".to_string()));
        assert!(!mounts(containers[0]).contains(&"push-auth".to_string()));
        assert!(mounts(containers[3]).contains(&"push-auth".to_string()));
        assert!(!mounts(containers[3]).contains(&"pull-auth".to_string()));
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

    /// The boot step gets its plan, no proxy (its VM has no network), and the KVM device
    /// resource when one is configured; a config that turns the check off has no boot step.
    #[test]
    fn the_boot_step_follows_the_config_and_the_cluster() {
        let env = Environment {
            proxy: environment::Proxy {
                http: "http://proxy:3128".into(),
                ..environment::Proxy::default()
            },
            ..Environment::default()
        };
        let plan = BootPlan {
            timeout_seconds: 300,
            target: "multi-user.target".into(),
            active_units: vec!["agent.service".into()],
            commands: vec!["test -x /usr/bin/agent".into()],
            base_image_failed_units: Some(vec!["auditd.service".into()]),
        };
        let settings = Settings {
            boot_check_kvm_resource: "devices.kubevirt.io/kvm".into(),
            ..Settings::for_tests()
        };
        let pod_of = |boot: Option<&BootPlan>| {
            build_objects(
                &build(),
                "FROM x AS base\n",
                "{}",
                None,
                &env,
                boot,
                &settings,
            )
            .job
            .spec
            .and_then(|s| s.template.spec)
            .unwrap()
        };
        let pod = pod_of(Some(&plan));
        let boot = steps(&pod)
            .into_iter()
            .find(|c| c.name == "boot")
            .cloned()
            .unwrap();
        let vars: BTreeMap<String, Option<String>> = boot
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let written: BootPlan =
            serde_json::from_str(vars["STRATA_BOOT_PLAN"].as_deref().unwrap()).unwrap();
        assert_eq!(written, plan);
        assert!(
            !vars.keys().any(|k| k.to_lowercase().contains("proxy")),
            "{vars:?}"
        );
        let resources = boot.resources.unwrap();
        for list in [resources.limits, resources.requests] {
            assert_eq!(
                list.unwrap()["devices.kubevirt.io/kvm"],
                Quantity("1".into())
            );
        }
        assert_eq!(boot.termination_message_policy.as_deref(), Some("File"));
        let others = steps(&pod);
        assert!(others.iter().filter(|c| c.name != "boot").all(|c| {
            !c.resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()
                .contains_key("devices.kubevirt.io/kvm")
        }));
        let off = pod_of(None);
        let names: Vec<String> = steps(&off).iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, ["pull", "build", "push"]);
    }

    /// A proxy URL may carry `user:password`: the steps read it from the build's credentials
    /// Secret, and neither the Job nor its pod spells it out.
    #[test]
    fn the_proxy_s_credentials_stay_out_of_the_job() {
        let env = Environment {
            proxy: environment::Proxy {
                http: "http://jane:s3cr3t-pw@proxy:3128".into(),
                https: "http://jane:s3cr3t-pw@proxy:3128".into(),
                no: ".svc".into(),
            },
            ..Environment::default()
        };
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            None,
            &env,
            None,
            &Settings::for_tests(),
        );
        let job = serde_json::to_string(&objects.job).unwrap();
        assert!(!job.contains("s3cr3t-pw"), "{job}");
        let secret = objects.credentials.metadata.name.clone().unwrap();
        let data = objects.credentials.data.clone().unwrap();
        assert_eq!(
            data[credential_keys::PROXY_HTTPS],
            ByteString(b"http://jane:s3cr3t-pw@proxy:3128".to_vec())
        );
        let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
        for c in steps(&pod) {
            let vars: BTreeMap<&str, &EnvVar> = c
                .env
                .iter()
                .flatten()
                .map(|e| (e.name.as_str(), e))
                .collect();
            for (name, key) in [
                ("HTTP_PROXY", credential_keys::PROXY_HTTP),
                ("http_proxy", credential_keys::PROXY_HTTP),
                ("HTTPS_PROXY", credential_keys::PROXY_HTTPS),
                ("https_proxy", credential_keys::PROXY_HTTPS),
            ] {
                let var = vars[name];
                let reference = var
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .unwrap();
                assert_eq!(
                    (
                        var.value.as_deref(),
                        reference.name.as_str(),
                        reference.key.as_str()
                    ),
                    (None, secret.as_str(), key),
                    "{}: {name}",
                    c.name
                );
            }
            assert_eq!(vars["NO_PROXY"].value.as_deref(), Some(".svc"));
        }
        // No proxy: no proxy variable, no proxy key.
        let plain = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            None,
            &Environment::default(),
            None,
            &Settings::for_tests(),
        );
        assert!(
            !plain
                .credentials
                .data
                .unwrap()
                .keys()
                .any(|k| k.starts_with("proxy."))
        );
    }

    #[test]
    fn only_the_registry_steps_fall_back_to_their_logs_for_a_message() {
        let pod = pod_with(&Settings::for_tests());
        let policies: Vec<(&str, &str)> = steps(&pod)
            .into_iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.termination_message_policy.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            policies,
            [
                ("pull", "FallbackToLogsOnError"),
                ("build", "File"),
                ("push", "FallbackToLogsOnError")
            ]
        );
    }

    #[test]
    fn machine_config_carries_the_pools_selector_labels() {
        let role = pool_selector_labels("infra", &mco::MachineConfigPool::default());
        let mc = machine_config("infra", &role, "r.example.com/os@sha256:x", "infra");
        assert_eq!(mc["metadata"]["labels"][labels::ROLE], "infra");
        // A pool selecting by other labels gets those.
        let pool = serde_json::from_value(
            json!({"spec": {"machineConfigSelector": {"matchLabels": {"example.com/pool": "gpu"}}}}),
        )
        .unwrap();
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
