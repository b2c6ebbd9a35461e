//! The controller's configuration: flags, each with an environment variable.

use std::time::Duration;

use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::SeccompProfile;
use strata_crds::contract::install;

/// Where OpenShift names the release's OS base image: the `--release-configmap*` defaults.
pub const RELEASE_NAMESPACE: &str = "openshift-machine-config-operator";
pub const RELEASE_CONFIGMAP: &str = "machine-config-osimageurl";
pub const RELEASE_KEY: &str = "baseOSContainerImage";

/// `--cache-claim`: where the builder pods keep their image storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheClaim {
    /// Strata's own claim where the cluster has a default StorageClass, else an emptyDir.
    Auto,
    /// An emptyDir per builder pod: every build pulls its base.
    Off,
    /// The administrator's PersistentVolumeClaim of this name.
    Named(String),
}

impl CacheClaim {
    fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            "" => Err("empty: give auto, off or a PersistentVolumeClaim's name".into()),
            name => Ok(Self::Named(name.to_string())),
        }
    }
}

/// `--registry-cleanup`: what happens to the pushed image of a build the history prunes (or a
/// deleted MachineOSConfig's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistryCleanup {
    /// Images stay in the registry.
    Off,
    /// Each image that would be deleted is named in an Event; nothing is deleted.
    DryRun,
    /// The image's manifest is deleted from the registry, with the push Secret.
    On,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Resources of every builder step (the same for pull, build and push: they run one after the
/// other). The defaults come from `make bench` on the CoreOS-like base (1.30 GiB, 48 layers;
/// bench/RESULTS.md): a step's peak RSS was 70 MiB (pull), 49 MiB (build, apt installing a
/// package), 29 MiB (push); the pull used 1.4 cores while it decompressed; peak ephemeral disk
/// was up to 1.42× the image's size. The requests leave room for what the bench cannot run
/// here: dnf with RHEL's repository metadata in a RUN step (hundreds of MiB), and a real RHCOS
/// base, larger than the local one (5Gi fits a base of 3.5 GiB uncompressed at 1.42×; the
/// limit, a 14 GiB one).
#[derive(Debug, Clone, Args)]
pub struct BuilderResources {
    /// CPU request of builder pods; a build is CPU-bound, so a low request starves it beside the
    /// control plane.
    #[arg(
        long = "builder-cpu-request",
        env = "STRATA_BUILDER_CPU_REQUEST",
        default_value = "1"
    )]
    pub cpu_request: String,
    /// CPU limit of builder pods (empty: none).
    #[arg(
        long = "builder-cpu-limit",
        env = "STRATA_BUILDER_CPU_LIMIT",
        default_value = ""
    )]
    pub cpu_limit: String,
    /// Memory request of builder pods.
    #[arg(
        long = "builder-memory-request",
        env = "STRATA_BUILDER_MEMORY_REQUEST",
        default_value = "512Mi"
    )]
    pub memory_request: String,
    /// Memory limit of builder pods; a step that exceeds it fails the build with OOMKilled.
    #[arg(
        long = "builder-memory-limit",
        env = "STRATA_BUILDER_MEMORY_LIMIT",
        default_value = "4Gi"
    )]
    pub memory_limit: String,
    /// Ephemeral-storage request of builder pods.
    #[arg(
        long = "builder-ephemeral-storage-request",
        env = "STRATA_BUILDER_EPHEMERAL_STORAGE_REQUEST",
        default_value = "5Gi"
    )]
    pub ephemeral_storage_request: String,
    /// Ephemeral-storage limit of builder pods.
    #[arg(
        long = "builder-ephemeral-storage-limit",
        env = "STRATA_BUILDER_EPHEMERAL_STORAGE_LIMIT",
        default_value = "20Gi"
    )]
    pub ephemeral_storage_limit: String,
    /// sizeLimit of the builder pod's emptyDirs: the image storage (unless --cache-claim is set)
    /// and the work directory.
    #[arg(
        long = "builder-storage-size-limit",
        env = "STRATA_BUILDER_STORAGE_SIZE_LIMIT",
        default_value = "20Gi"
    )]
    pub storage_size_limit: String,
}

/// Where builder pods may run.
#[derive(Debug, Clone, Args)]
pub struct BuilderPlacement {
    /// Extra nodeSelector entries of builder pods (key=value, comma-separated); the
    /// kubernetes.io/arch label of the built architecture is always set.
    #[arg(
        long = "builder-node-selector",
        env = "STRATA_BUILDER_NODE_SELECTOR",
        value_delimiter = ','
    )]
    pub node_selector: Vec<String>,
    /// Tolerations of builder pods as JSON (a list of Kubernetes Toleration objects).
    #[arg(long = "builder-tolerations", env = "STRATA_BUILDER_TOLERATIONS")]
    pub tolerations: Option<String>,
    /// priorityClassName of builder pods.
    #[arg(long = "builder-priority-class", env = "STRATA_BUILDER_PRIORITY_CLASS")]
    pub priority_class: Option<String>,
    /// Seccomp profile of builder pods: `RuntimeDefault`, or `Localhost:<path under the kubelet's
    /// seccomp directory>`. buildah enters a user namespace of its own, which containerd's
    /// RuntimeDefault forbids without CAP_SYS_ADMIN; manifests/seccomp/strata-builder.json is
    /// that default plus the namespace and mount system calls (README, "Builder pods").
    #[arg(
        long = "builder-seccomp-profile",
        env = "STRATA_BUILDER_SECCOMP_PROFILE",
        default_value = "Localhost:strata/builder.json"
    )]
    pub seccomp: String,
}

/// `--builder-egress`: what NetworkPolicy `strata-builder` lets builder pods reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuilderEgress {
    /// DNS, the registries, mirrors and proxy the builds use, `--builder-egress-allow`, and TCP
    /// 443 and 5000 anywhere outside the cluster (package repositories): not the cluster's pod
    /// and Service networks, the API server's addresses or link-local addresses.
    Internet,
    /// DNS, the registries, mirrors and proxy the builds use, and `--builder-egress-allow`
    /// only: RUN reaches package repositories through the cluster proxy or an allowed mirror.
    Registries,
    /// The controller leaves the policy to the administrator.
    Unmanaged,
}

/// `address/prefix`, as a NetworkPolicy's ipBlock takes it.
fn parse_cidr(value: &str) -> Result<String, String> {
    let value = value.trim();
    let (address, prefix) = value
        .split_once('/')
        .ok_or_else(|| format!("{value}: not a CIDR (address/prefix)"))?;
    let address: std::net::IpAddr = address
        .parse()
        .map_err(|e| format!("{value}: bad address: {e}"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(value.to_string()),
        _ => Err(format!("{value}: the prefix is not 0–{max}")),
    }
}

/// The builder pods' network (NetworkPolicy `strata-builder`, kept by the controller).
#[derive(Debug, Clone, Args)]
pub struct BuilderNetwork {
    #[arg(
        long = "builder-egress",
        env = "STRATA_BUILDER_EGRESS",
        value_enum,
        default_value_t = BuilderEgress::Internet
    )]
    pub egress: BuilderEgress,
    /// More `host:port` endpoints builds reach (a package mirror, a Satellite server),
    /// comma-separated; a name is resolved by the controller, as a registry's is.
    #[arg(
        long = "builder-egress-allow",
        env = "STRATA_BUILDER_EGRESS_ALLOW",
        value_delimiter = ','
    )]
    pub allow: Vec<String>,
    /// The cluster's pod and Service networks (CIDRs, comma-separated), never reached by
    /// builds; on OpenShift also read from the Network config (`networks.config.openshift.io`).
    #[arg(
        long = "cluster-networks",
        env = "STRATA_CLUSTER_NETWORKS",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub cluster_networks: Vec<String>,
}

impl BuilderPlacement {
    /// The pod's `seccompProfile`.
    pub fn seccomp_profile(&self) -> SeccompProfile {
        match self.seccomp.split_once(':') {
            Some(("Localhost", path)) => SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: Some(path.into()),
            },
            _ => SeccompProfile {
                type_: self.seccomp.clone(),
                localhost_profile: None,
            },
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Namespace of the controller: it reads the MachineOSConfigs' Secrets here and runs builds here.
    #[arg(long, env = "STRATA_NAMESPACE", default_value = install::NAMESPACE)]
    pub namespace: String,
    /// The builder image (buildah + strata), preferably by digest.
    #[arg(long, env = "STRATA_BUILDER_IMAGE")]
    pub builder_image: String,
    /// ServiceAccount of the builder pods.
    #[arg(
        long,
        env = "STRATA_BUILDER_SERVICE_ACCOUNT",
        default_value = install::BUILDER_SERVICE_ACCOUNT
    )]
    pub builder_service_account: String,
    #[command(flatten)]
    pub builder_resources: BuilderResources,
    #[command(flatten)]
    pub builder_placement: BuilderPlacement,
    #[command(flatten)]
    pub builder_network: BuilderNetwork,
    #[command(flatten)]
    pub environment: super::environment::EnvironmentSettings,
    /// Registries (host:port), comma-separated, that the controller's registry checks reach over
    /// plain HTTP and the builder over plain HTTP or unverified TLS. TLS stays on for all others.
    #[arg(long, env = "STRATA_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// An extended resource that gives a pod /dev/kvm (for example KubeVirt's
    /// `devices.kubevirt.io/kvm`): the boot step asks for one and boots with KVM. Empty: the
    /// boot step boots with QEMU's software emulation (minutes instead of seconds) unless the
    /// node gives /dev/kvm to every pod.
    #[arg(long, env = "STRATA_BOOT_CHECK_KVM_RESOURCE", default_value = "")]
    pub boot_check_kvm_resource: String,
    /// Builder pod retries for transient failures (the Job's backoffLimit).
    #[arg(long, env = "STRATA_BUILD_BACKOFF_LIMIT", default_value_t = 3)]
    pub backoff_limit: i32,
    /// A build running longer than this fails (the Job's activeDeadlineSeconds).
    #[arg(long, env = "STRATA_BUILD_DEADLINE_SECONDS", default_value_t = 7200)]
    pub build_deadline_seconds: i64,
    /// Ended MachineOSBuilds kept per MachineOSConfig, besides the current build and the one its
    /// pool uses.
    #[arg(long, env = "STRATA_BUILD_HISTORY", default_value_t = 5)]
    pub build_history: usize,
    /// What happens to the pushed image of a build the history prunes or whose MachineOSConfig is
    /// deleted, as the MCO deletes a deleted build's image: `on` deletes its manifest from the registry with the push Secret
    /// (never an image the pool is pinned to, a kept build's, or one a machine may run; the
    /// registry must allow deletion), `dry-run` names it in an Event, `off` leaves it.
    #[arg(long, env = "STRATA_REGISTRY_CLEANUP", value_enum, default_value_t = RegistryCleanup::On)]
    pub registry_cleanup: RegistryCleanup,
    /// The builder pods' image storage, kept from build to build so that a rebuild or a second
    /// pool on the same base does not pull it again: `auto` uses Strata's own claim
    /// (`strata-build-cache`, made with the first build) when the cluster has a default
    /// StorageClass, and an emptyDir per builder pod when it has none; `off` always an emptyDir;
    /// any other value names a PersistentVolumeClaim of yours in Strata's namespace.
    #[arg(long, env = "STRATA_BUILD_CACHE_CLAIM", default_value = "auto", value_parser = CacheClaim::parse)]
    pub cache_claim: CacheClaim,
    /// With `--cache-claim=auto`: the size Strata's own claim asks for (it holds the base, the
    /// layers of recent builds and their images; the builds keep it in bounds).
    #[arg(long, env = "STRATA_BUILD_CACHE_CLAIM_SIZE", default_value = "50Gi")]
    pub cache_claim_size: String,
    /// On a cache claim: a build that finds less than this free on the claim empties it first
    /// when no other build uses it (builds leave their images there; nothing else removes them).
    /// The default is the builder's ephemeral-storage request: what one build may need.
    #[arg(
        long,
        env = "STRATA_BUILD_CACHE_CLAIM_MIN_FREE_GIB",
        default_value_t = 5
    )]
    pub cache_claim_min_free_gib: u32,
    /// On a cache claim: the most one MachineOSConfig's store there may hold, so that one pool's
    /// fragments cannot fill the claim every pool builds on. A build empties its config's store
    /// first when it holds more than this less `--cache-claim-min-free-gib`, and a build whose
    /// RUN steps grow the store past it is stopped (`StoreQuotaExceeded`).
    #[arg(
        long,
        env = "STRATA_BUILD_CACHE_CLAIM_STORE_QUOTA_GIB",
        default_value_t = 20
    )]
    pub cache_claim_store_quota_gib: u32,
    /// Namespace of the release ConfigMap naming the OS base image.
    #[arg(
        long,
        env = "STRATA_RELEASE_CONFIGMAP_NAMESPACE",
        default_value = RELEASE_NAMESPACE
    )]
    pub release_configmap_namespace: String,
    /// Name of the release ConfigMap.
    #[arg(
        long,
        env = "STRATA_RELEASE_CONFIGMAP",
        default_value = RELEASE_CONFIGMAP
    )]
    pub release_configmap: String,
    /// Key of the OS base image in the release ConfigMap.
    #[arg(
        long,
        env = "STRATA_RELEASE_CONFIGMAP_KEY",
        default_value = RELEASE_KEY
    )]
    pub release_configmap_key: String,
    /// Seconds a registry call may take in all (connect, TLS, answer), however long the registry
    /// keeps the connection open.
    #[arg(long, env = "STRATA_REGISTRY_TIMEOUT_SECONDS", default_value_t = 30)]
    pub registry_timeout_seconds: u64,
    /// MachineOSConfigs reconciled at the same time. Five, as Kubernetes' own controllers sync
    /// (e.g. --concurrent-job-syncs). At 500 configs building, measured both ways so far: 16 made
    /// reconciles slower than 5 in one bench round, 20 made them and the queue wait faster in a
    /// later one (docs/measurements.md).
    #[arg(long, env = "STRATA_CONCURRENCY", default_value_t = 5)]
    pub concurrency: u16,
    /// Address of /healthz and /readyz (plain HTTP), and of /metrics unless --metrics-tls-cert is set.
    #[arg(long, env = "STRATA_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: std::net::SocketAddr,
    /// Serve /metrics over TLS at --metrics-address with this certificate (PEM; on OpenShift the
    /// service CA's serving certificate), to callers whose bearer token the API server authenticates
    /// and allows `get` on the non-resource URL /metrics.
    #[arg(long, env = "STRATA_METRICS_TLS_CERT", requires = "metrics_tls_key")]
    pub metrics_tls_cert: Option<std::path::PathBuf>,
    /// The certificate's key (PEM).
    #[arg(long, env = "STRATA_METRICS_TLS_KEY", requires = "metrics_tls_cert")]
    pub metrics_tls_key: Option<std::path::PathBuf>,
    /// Address of /metrics over TLS (with --metrics-tls-cert).
    #[arg(long, env = "STRATA_METRICS_ADDRESS", default_value = "0.0.0.0:8443")]
    pub metrics_address: std::net::SocketAddr,
    /// Lease used for leader election (in --namespace); two replicas are safe.
    #[arg(long, env = "STRATA_LEASE_NAME", default_value = install::LEASE)]
    pub lease_name: String,
    /// Log lines as text or JSON.
    #[arg(long, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Settings {
    /// The TLS metrics endpoint, when configured.
    pub fn secure_metrics(&self) -> Option<super::http::SecureMetrics> {
        Some(super::http::SecureMetrics {
            address: self.metrics_address,
            cert: self.metrics_tls_cert.clone()?,
            key: self.metrics_tls_key.clone()?,
        })
    }

    pub fn registry_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.registry_timeout_seconds.clamp(1, 10))
    }

    pub fn registry_total_timeout(&self) -> Duration {
        Duration::from_secs(self.registry_timeout_seconds.max(1))
    }
}

#[cfg(test)]
impl Settings {
    pub fn for_tests() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let mut settings = Cli::parse_from([
            "strata",
            "--builder-image",
            "registry.example.com/strata/builder@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "--insecure-registries",
            "10.0.0.1:5000",
            "--build-history",
            "2",
        ])
        .settings;
        settings.http_address = ([127, 0, 0, 1], 8080).into();
        settings
    }
}
