//! The controller's configuration: flags, each with an environment variable.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Namespace of the controller: it reads the MachineOSConfigs' Secrets here and runs builds here.
    #[arg(long, env = "STRATA_NAMESPACE", default_value = "strata-system")]
    pub namespace: String,
    /// The builder image (buildah + strata), preferably by digest.
    #[arg(long, env = "STRATA_BUILDER_IMAGE")]
    pub builder_image: String,
    /// ServiceAccount of the builder pods.
    #[arg(
        long,
        env = "STRATA_BUILDER_SERVICE_ACCOUNT",
        default_value = "strata-builder"
    )]
    pub builder_service_account: String,
    /// Registries (host:port) reached over plain HTTP, comma-separated: by the builder and by the
    /// controller's digest checks. TLS stays on for all others.
    #[arg(long, env = "STRATA_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Builder pod retries for transient failures (the Job's backoffLimit).
    #[arg(long, env = "STRATA_BUILD_BACKOFF_LIMIT", default_value_t = 3)]
    pub backoff_limit: i32,
    /// A build running longer than this fails (the Job's activeDeadlineSeconds).
    #[arg(long, env = "STRATA_BUILD_DEADLINE_SECONDS", default_value_t = 7200)]
    pub build_deadline_seconds: i64,
    /// Ended MachineOSBuilds kept per MachineOSConfig (besides the one its pool uses).
    #[arg(long, env = "STRATA_BUILD_HISTORY", default_value_t = 5)]
    pub build_history: usize,
    /// PersistentVolumeClaim mounted as the builder's layer cache (an emptyDir when unset).
    #[arg(long, env = "STRATA_BUILD_CACHE_CLAIM")]
    pub cache_claim: Option<String>,
    /// Registry repository for the builder's layer cache (buildah --cache-from/--cache-to), shared
    /// by every builder pod, so a rebuild reuses the layers of unchanged fragments. Off when unset.
    /// The builder reaches it with the base pull secret's credentials, or anonymously.
    #[arg(long, env = "STRATA_BUILD_REGISTRY_CACHE")]
    pub registry_cache: Option<String>,
    /// Namespace of the release ConfigMap naming the OS base image.
    #[arg(
        long,
        env = "STRATA_RELEASE_CONFIGMAP_NAMESPACE",
        default_value = "openshift-machine-config-operator"
    )]
    pub release_configmap_namespace: String,
    /// Name of the release ConfigMap.
    #[arg(
        long,
        env = "STRATA_RELEASE_CONFIGMAP",
        default_value = "machine-config-osimageurl"
    )]
    pub release_configmap: String,
    /// Key of the OS base image in the release ConfigMap.
    #[arg(
        long,
        env = "STRATA_RELEASE_CONFIGMAP_KEY",
        default_value = "baseOSContainerImage"
    )]
    pub release_configmap_key: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "STRATA_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: std::net::SocketAddr,
    /// Lease used for leader election (in --namespace); two replicas are safe.
    #[arg(long, env = "STRATA_LEASE_NAME", default_value = "strata-controller")]
    pub lease_name: String,
}

#[cfg(test)]
impl Settings {
    pub fn for_tests() -> Self {
        Self {
            namespace: "strata-system".into(),
            builder_image: "registry.example.com/strata/builder@sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            builder_service_account: "strata-builder".into(),
            insecure_registries: vec!["10.0.0.1:5000".into()],
            backoff_limit: 3,
            build_deadline_seconds: 7200,
            cache_claim: None,
            registry_cache: None,
            build_history: 2,
            release_configmap_namespace: "openshift-machine-config-operator".into(),
            release_configmap: "machine-config-osimageurl".into(),
            release_configmap_key: "baseOSContainerImage".into(),
            http_address: ([127, 0, 0, 1], 8080).into(),
            lease_name: "strata-controller".into(),
        }
    }
}
