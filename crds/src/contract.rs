//! The contract between Strata's parts: the names the controller writes and the builder, the tests,
//! the benchmarks and the console plugin read. Defined once here; `console-plugin/src/models.ts`
//! is checked against it by `crds/tests/contract.rs`.

use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};

use crate::boot_check::BootCheckResult;
use crate::disk_image::{DiskImageFile, DiskImageFormat};

/// Labels on the objects Strata makes.
pub mod labels {
    /// On every object made for a build, and on the pinning MachineConfig: the MachineOSConfig's
    /// name, cut to 63 characters (see [`super::annotations::CONFIG`] for the full name).
    pub const CONFIG: &str = "strata.dev/machine-os-config";
    /// On every object made for a build: the build's name, cut to 63 characters.
    pub const BUILD: &str = "strata.dev/machine-os-build";
    /// On every object Strata makes, with the value [`MANAGED_BY_VALUE`].
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "strata";

    /// Whether the object of `meta` is one Strata made.
    pub fn managed_by_strata(
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> bool {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY))
            .is_some_and(|v| v == MANAGED_BY_VALUE)
    }
    /// The MCO's pool-role label on MachineConfigs.
    pub const ROLE: &str = "machineconfiguration.openshift.io/role";
    /// On builder pods, with the value [`BUILDER`] (the NetworkPolicy selects them by it).
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    pub const BUILDER: &str = "builder";
    /// On a MachineOSBuild that seeds its MachineOSConfig with a pre-built image (value `true`),
    /// as the MCO marks its synthetic builds.
    pub const PRE_BUILT_IMAGE: &str = super::annotations::PRE_BUILT_IMAGE;
}

/// The builder pod: one container per step, sharing only the image storage.
pub mod builder_pod {
    /// Init container: pulls every image the Containerfile names (pull credentials only).
    pub const PULL: &str = "pull";
    /// Init container: `buildah bud --pull=never`, then the image gate; no credential at all.
    pub const BUILD: &str = "build";
    /// Init container, unless the config disables the boot check: boots the built image in a
    /// VM, from the disk a new machine would boot; no credential at all.
    pub const BOOT: &str = "boot";
    /// Container: pushes the image (push credentials only); its message carries the digest.
    pub const PUSH: &str = "push";
    /// The steps in the order they run (`boot` only where the boot check is on).
    pub const STEPS: [&str; 4] = [PULL, BUILD, BOOT, PUSH];

    /// The steps `pod` has a container for, in the order they run.
    pub fn steps_of(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<&'static str> {
        let Some(spec) = pod.spec.as_ref() else {
            return Vec::new();
        };
        STEPS
            .into_iter()
            .filter(|step| {
                spec.init_containers
                    .iter()
                    .flatten()
                    .chain(&spec.containers)
                    .any(|c| c.name == *step)
            })
            .collect()
    }
    /// The boot step's environment variable holding its [`super::BootPlan`] as JSON.
    pub const BOOT_PLAN_ENV: &str = "STRATA_BOOT_PLAN";
    /// The pre-built image a seeding build takes (repo@sha256:…): the pull step pulls only it, the
    /// build step gates it instead of building, the push step pushes nothing and reports it.
    pub const SEED_IMAGE_ENV: &str = "STRATA_SEED_IMAGE";
    /// Where each step finds its inputs.
    pub const CONTAINERFILE_DIR: &str = "/etc/strata/build";
    pub const PULL_AUTH_DIR: &str = "/etc/strata/pull-auth";
    pub const PUSH_AUTH_DIR: &str = "/etc/strata/push-auth";
    pub const STORAGE_DIR: &str = "/var/lib/containers/storage";
    pub const WORK_DIR: &str = "/var/lib/strata";
    /// The whole cache claim, in the pull step only (it keeps the claim in bounds).
    pub const CLAIM_DIR: &str = "/var/lib/strata-claim";
    /// The directory of the claim holding one image store per MachineOSConfig
    /// (`configs/<name>`, mounted at [`STORAGE_DIR`] in every step of that config's builds).
    pub const CLAIM_STORES: &str = "configs";
    /// Where containers/image keeps its blob info cache when it runs as root.
    pub const BLOB_INFO_CACHE_DIR: &str = "/var/lib/containers/cache";
    /// The cluster's environment as the controller wrote it for the build: `registries.conf`,
    /// `policy.json` (when registries are restricted), `ca-bundle.crt` (CAs trusted everywhere).
    pub const ENVIRONMENT_DIR: &str = "/etc/strata/environment";
    pub const REGISTRIES_CONF: &str = "registries.conf";
    pub const POLICY_JSON: &str = "policy.json";
    pub const CA_BUNDLE: &str = "ca-bundle.crt";
    /// Per-registry CAs, where containers/image looks for them (`<host[:port]>/ca.crt`).
    pub const REGISTRY_CERTS_DIR: &str = "/etc/containers/certs.d";
    /// Mounted into RUN steps only, as the MCO does: the entitlement at /etc/pki/entitlement,
    /// the repositories at /etc/yum.repos.d, their keys at /etc/pki/rpm-gpg.
    pub const ENTITLEMENT_DIR: &str = "/etc/strata/entitlement";
    pub const YUM_REPOS_DIR: &str = "/etc/strata/yum.repos.d";
    pub const RPM_GPG_DIR: &str = "/etc/strata/rpm-gpg";
}

/// The disk image pod: after the pin, the pinned image's first-boot disk, made by the same builder
/// binary (`strata build <step>`) in three containers that share the image storage and the work
/// directory.
pub mod disk_image_pod {
    /// Init container: pulls the pinned image by digest (the push credentials, which read it).
    pub const PULL: &str = "pull";
    /// Init container: makes the disk from the image; no credential at all (it runs the image's
    /// own ostree and GRUB tools).
    pub const DISK: &str = "disk";
    /// Container: pushes the disk files as OCI artifacts (push credentials only); its message
    /// carries the index's digest and the files.
    pub const PUSH: &str = "push";
    /// The steps in the order they run.
    pub const STEPS: [&str; 3] = [PULL, DISK, PUSH];
    /// The pinned image (repo@sha256:…), for every step.
    pub const SOURCE_IMAGE_ENV: &str = "STRATA_SOURCE_IMAGE";
    /// The disk step's and the push step's [`super::DiskPlan`] as JSON.
    pub const DISK_PLAN_ENV: &str = "STRATA_DISK_PLAN";
    /// The artifactType of each disk file's manifest.
    pub const ARTIFACT_TYPE: &str = "application/vnd.strata.disk-image.v1";
    /// What the index's tag adds to the build's tag.
    pub const TAG_SUFFIX: &str = "-disk";

    /// The media type of a disk file's layer.
    pub fn layer_media_type(format: crate::DiskImageFormat) -> String {
        format!(
            "application/vnd.strata.disk-image.layer.v1.{}",
            format.extension()
        )
    }
}

/// What the disk image pod makes: the config's `spec.diskImage` with its defaults filled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskPlan {
    pub formats: Vec<DiskImageFormat>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_arguments: Vec<String>,
}

impl DiskPlan {
    /// The plan of a config's `spec.diskImage` (None: no disk image is asked for).
    pub fn of(disk_image: Option<&crate::DiskImage>) -> Option<Self> {
        disk_image.map(|d| DiskPlan {
            formats: d.formats_or_default(),
            kernel_arguments: d.kernel_arguments.clone(),
        })
    }
}

/// Labels Strata puts on the final stage of every image it builds.
pub mod image_labels {
    /// The OS base image the fragments were applied to, by digest.
    pub const BASE_IMAGE: &str = "strata.dev/base-image";
    /// The MachineOSConfig the image was built for.
    pub const MACHINE_OS_CONFIG: &str = "strata.dev/machine-os-config";
    /// The build's inputs hash: the controller pins an image only when its config carries the
    /// hash of the build that pushed it.
    pub const INPUTS_HASH: &str = "strata.dev/inputs-hash";
}

/// Annotations Strata reads or writes.
pub mod annotations {
    /// On objects made for a build and on the pinning MachineConfig: the MachineOSConfig's full
    /// name (a label value is cut to 63 characters, an annotation is not).
    pub const CONFIG: &str = "strata.dev/machine-os-config";
    /// On a MachineOSConfig: build the current inputs again. Removed once the new build started.
    pub const REBUILD: &str = "strata.dev/rebuild";
    /// On a user's Secret in the controller namespace: the MachineOSConfigs allowed to use it, a
    /// comma-separated list of names or `*`. Without it Strata does not use the Secret.
    pub const ALLOWED_CONFIGS: &str = "strata.dev/allowed-machine-os-configs";
    /// On builder pods: OpenShift's admission picks this SCC (`strata-builder`, the openshift
    /// overlay) instead of the first one the pod happens to fit. Other clusters ignore it.
    pub const REQUIRED_SCC: &str = "openshift.io/required-scc";
    /// On a MachineOSConfig (the MCO's key): a digest-pinned image built elsewhere that its first
    /// build takes instead of building (the image gate and the boot check run on it, nothing is
    /// pushed); condition `Seeded`. On the seeding MachineOSBuild: that image.
    pub const PRE_BUILT_IMAGE: &str = "machineconfiguration.openshift.io/pre-built-image";
}

/// Finalizer on MachineOSConfigs: removes the pool's MachineConfig before the object goes.
pub const FINALIZER: &str = "strata.dev/machine-config";
/// The one field manager of every object and status Strata writes.
pub const FIELD_MANAGER: &str = "strata-controller";

/// Defaults of where Strata runs; the manifests use these names.
pub mod install {
    pub const NAMESPACE: &str = "strata-system";
    pub const CONTROLLER_SERVICE_ACCOUNT: &str = "strata-controller";
    pub const BUILDER_SERVICE_ACCOUNT: &str = "strata-builder";
    /// The SecurityContextConstraints builder pods run under on OpenShift
    /// (manifests/overlays/openshift/builder-scc.yaml).
    pub const BUILDER_SCC: &str = "strata-builder";
    /// Label selector of the controller's pods.
    pub const CONTROLLER_SELECTOR: &str = "app.kubernetes.io/name=strata-controller";
    /// The leader-election Lease (in the controller namespace).
    pub const LEASE: &str = "strata-controller";
    /// The builders' image storage Strata makes itself (`--cache-claim=auto`, where the cluster
    /// has a default StorageClass).
    pub const CACHE_CLAIM: &str = "strata-build-cache";
}

/// Exit codes of `strata build`; the Job's podFailurePolicy keys on them.
pub mod exit_code {
    /// The step did its part (the last one: the image is pushed, the message has the digest).
    pub const SUCCESS: i32 = 0;
    /// Retrying cannot help (a Containerfile step failed, credentials refused, invalid input).
    pub const TERMINAL: i32 = 3;
    /// Retrying may help (registry unreachable or 5xx, out of space, terminated).
    pub const TRANSIENT: i32 = 4;
}

/// The longest termination message a step writes. The kubelet keeps at most 4096 bytes of one,
/// and at most 12 KiB for the whole pod, shared equally by its containers: with the boot step
/// the builder pod has four, so 3072 each (a longer message arrives cut, as invalid JSON).
pub const MAX_TERMINATION_MESSAGE_BYTES: usize = 3072;
// Every step's message fits its share of the pod's 12 KiB, or it arrives cut (and is no JSON).
const _: () = assert!(
    MAX_TERMINATION_MESSAGE_BYTES * builder_pod::STEPS.len() <= 12 * 1024
        && MAX_TERMINATION_MESSAGE_BYTES * disk_image_pod::STEPS.len() <= 12 * 1024
        && MAX_TERMINATION_MESSAGE_BYTES <= 4096
);

/// Whether a failed build is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    Terminal,
    Transient,
}

impl FailureClass {
    pub fn exit_code(self) -> i32 {
        match self {
            FailureClass::Terminal => exit_code::TERMINAL,
            FailureClass::Transient => exit_code::TRANSIENT,
        }
    }
}

/// One step of a build and when it ran (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTiming {
    /// pull, build, lint, boot or push.
    pub phase: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The one JSON line a builder step writes to its termination log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TerminationMessage {
    #[serde(rename_all = "camelCase")]
    Success {
        digest: String,
        size_bytes: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        phases: Vec<PhaseTiming>,
        /// What the boot step found (absent when the check was off). Boxed: the message travels
        /// in `Result`s, whose error side stays small.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot_check: Option<Box<BootCheckResult>>,
        /// The disk files the disk image pod pushed (its `digest` is then the index's).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<DiskImageFile>,
    },
    #[serde(rename_all = "camelCase")]
    Failure {
        class: FailureClass,
        reason: String,
        message: String,
        log_tail: String,
        /// What the boot step found, when it is the step that failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot_check: Option<Box<BootCheckResult>>,
    },
}

/// What the boot step is asked to check: the config's `spec.bootCheck` with its defaults filled,
/// and the base image's own failed units when an earlier build recorded them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootPlan {
    pub timeout_seconds: u64,
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_units: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// The base image's failed units (None: not known; the step boots the base to learn them
    /// only if the built image has failed units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_failed_units: Option<Vec<String>>,
}

impl BootPlan {
    /// The plan of a config's `spec.bootCheck` (None: the check is off).
    pub fn of(
        check: Option<&crate::BootCheck>,
        base_image_failed_units: Option<Vec<String>>,
    ) -> Option<Self> {
        use crate::boot_check::{DEFAULT_TARGET, DEFAULT_TIMEOUT_SECONDS};
        if !crate::BootCheck::enabled(check) {
            return None;
        }
        let check = check.cloned().unwrap_or_default();
        Some(BootPlan {
            timeout_seconds: u64::try_from(
                check.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            )
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS as u64),
            target: check.target.unwrap_or_else(|| DEFAULT_TARGET.into()),
            active_units: check.active_units,
            commands: check.commands,
            base_image_failed_units,
        })
    }
}

impl TerminationMessage {
    /// The JSON line, at most [`MAX_TERMINATION_MESSAGE_BYTES`]: the log tail is trimmed from the
    /// front first, then the message; a digest is never trimmed.
    pub fn to_line(&self) -> String {
        let line = |m: &TerminationMessage| serde_json::to_string(m).unwrap_or_default();
        let mut message = self.clone();
        loop {
            let text = line(&message);
            if text.len() <= MAX_TERMINATION_MESSAGE_BYTES {
                return text;
            }
            let excess = text.len() - MAX_TERMINATION_MESSAGE_BYTES;
            match &mut message {
                TerminationMessage::Success { phases, .. } if !phases.is_empty() => phases.clear(),
                TerminationMessage::Success { .. } => return text,
                TerminationMessage::Failure { log_tail, .. } if !log_tail.is_empty() => {
                    *log_tail = keep_tail(log_tail, log_tail.len().saturating_sub(excess + 16));
                }
                TerminationMessage::Failure { message, .. } => {
                    *message = keep_head(message, message.len().saturating_sub(excess + 16));
                }
            }
        }
    }

    /// Parses what the controller reads back from the pod status.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text.trim()).ok()
    }
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub fn keep_tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The first `max` bytes of `text`, cut at a character boundary.
pub fn keep_head(text: &str, max: usize) -> String {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The Machine Config Operator's kinds Strata reads and writes (group
/// `machineconfiguration.openshift.io/v1`).
pub mod mco;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_s_steps_are_its_step_containers_in_running_order() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "spec": {"initContainers": [{"name": "pull"}, {"name": "build"}],
                     "containers": [{"name": "push"}, {"name": "sidecar"}]}}))
        .unwrap();
        assert_eq!(builder_pod::steps_of(&pod), ["pull", "build", "push"]);
        assert!(builder_pod::steps_of(&k8s_openapi::api::core::v1::Pod::default()).is_empty());
    }

    #[test]
    fn success_line_shape() {
        let m = TerminationMessage::Success {
            digest: format!("sha256:{}", "a".repeat(64)),
            size_bytes: 10,
            boot_check: None,
            files: Vec::new(),
            phases: vec![PhaseTiming {
                phase: "build".into(),
                start_ms: 1,
                end_ms: 2,
            }],
        };
        let line = m.to_line();
        assert!(line.starts_with("{\"digest\":\"sha256:"), "{line}");
        assert!(line.contains("\"sizeBytes\":10"));
        assert!(line.contains("\"startMs\":1"));
        assert_eq!(TerminationMessage::parse(&line), Some(m));
    }

    #[test]
    fn failure_is_trimmed_to_4k_keeping_the_end_of_the_log() {
        let m = TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "StepFailed".into(),
            message: "step RUN false failed".into(),
            log_tail: format!("{}THE END", "é".repeat(5000)),
            boot_check: None,
        };
        let line = m.to_line();
        assert!(
            line.len() <= MAX_TERMINATION_MESSAGE_BYTES,
            "{}",
            line.len()
        );
        let Some(TerminationMessage::Failure {
            log_tail,
            message,
            class,
            ..
        }) = TerminationMessage::parse(&line)
        else {
            panic!("not a failure: {line}")
        };
        assert!(log_tail.ends_with("THE END"));
        assert_eq!(message, "step RUN false failed");
        assert_eq!(class, FailureClass::Terminal);
    }

    #[test]
    fn huge_message_without_tail_is_trimmed() {
        let m = TerminationMessage::Failure {
            class: FailureClass::Transient,
            reason: "BuildFailed".into(),
            message: "x".repeat(10_000),
            log_tail: String::new(),
            boot_check: None,
        };
        assert!(m.to_line().len() <= MAX_TERMINATION_MESSAGE_BYTES);
    }
}
