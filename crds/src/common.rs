//! Types shared by MachineOSConfig and MachineOSBuild.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules::{DNS1123_SUBDOMAIN_MESSAGE, DNS1123_SUBDOMAIN_RULE};

/// The condition types Strata writes.
pub mod condition_types {
    /// MachineOSConfig: the pool points at an image built from the current inputs.
    pub const READY: &str = "Ready";
    /// MachineOSConfig and MachineOSBuild: a build is running.
    pub const BUILDING: &str = "Building";
    /// MachineOSConfig: something needs an administrator (bad input, missing secret or pool, failed build).
    pub const DEGRADED: &str = "Degraded";
    /// MachineOSConfig: whether the pool has rolled out the current image.
    pub const POOL_UPDATED: &str = "PoolUpdated";
    /// MachineOSConfig: Strata holds the pool (`spec.paused`) while it rebuilds on a new release
    /// base, so that machines roll once, to the new image.
    pub const POOL_HELD: &str = "PoolHeld";
    /// MachineOSConfig: the pool is degraded (the MCO's NodeDegraded, RenderDegraded,
    /// PinnedImageSetsDegraded or PoolSynchronizerDegraded), so Strata starts no build and pins
    /// nothing until it recovers, as the MCO's build controller does.
    pub const WAITING_FOR_POOL: &str = "WaitingForPool";
    /// MachineOSConfig: its pre-built image (the `machineconfiguration.openshift.io/pre-built-image`
    /// annotation) passed the gate and the boot check and was pinned without a build (reason
    /// `PreBuiltImageSeeded`, as the MCO's); later inputs build as usual.
    pub const SEEDED: &str = "Seeded";
    /// MachineOSBuild: its objects exist and it waits for the builder pod.
    pub const PREPARED: &str = "Prepared";
    /// MachineOSBuild: terminal, the image is pushed and verified.
    pub const SUCCEEDED: &str = "Succeeded";
    /// MachineOSBuild: terminal, the build failed.
    pub const FAILED: &str = "Failed";
    /// MachineOSBuild: terminal, the build was superseded or cancelled.
    pub const INTERRUPTED: &str = "Interrupted";
}

/// A reference to an object by name; for Secrets, in the controller's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
pub struct LocalObjectName {
    /// name of the referenced object. At most 253 characters: lowercase alphanumerics, '-' and '.',
    /// starting and ending with an alphanumeric character.
    #[schemars(length(max = 253))]
    #[x_kube(validation = kube::core::Rule::new(DNS1123_SUBDOMAIN_RULE).message(DNS1123_SUBDOMAIN_MESSAGE))]
    pub name: String,
}

impl LocalObjectName {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// The CPU architecture a Containerfile fragment is for.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
pub enum ContainerfileArch {
    /// Any architecture; used when no entry for the build's architecture exists.
    #[default]
    NoArch,
    #[allow(clippy::upper_case_acronyms)]
    AMD64,
    #[allow(clippy::upper_case_acronyms)]
    ARM64,
    #[allow(clippy::upper_case_acronyms)]
    PPC64LE,
    #[allow(clippy::upper_case_acronyms)]
    S390X,
}

/// One Containerfile fragment, applied on top of the release's OS base image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerfileEntry {
    /// containerfileArch is the architecture this fragment is for: NoArch (default), AMD64, ARM64,
    /// PPC64LE or S390X. This release builds amd64 images: the AMD64 entry if present, else NoArch.
    #[serde(default)]
    pub containerfile_arch: ContainerfileArch,
    /// content is the Containerfile fragment (at most 32 KiB). Without a FROM line its instructions
    /// apply on top of the OS base; a multi-stage fragment names the base `base` (or `configs`, as
    /// OpenShift's fragments do) and its final stage must descend from it. The base is pinned by
    /// digest by Strata; never write its reference yourself.
    #[schemars(length(max = 32768))]
    pub content: String,
}

/// How images are built.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuilder {
    /// imageBuilderType is the kind of builder. Only `Job` exists: one Kubernetes Job per build.
    pub image_builder_type: ImageBuilderType,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self {
            image_builder_type: ImageBuilderType::Job,
        }
    }
}

/// The builder backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ImageBuilderType {
    /// A Kubernetes Job running buildah.
    #[default]
    Job,
}

/// A reference to a Kubernetes object by group, resource, namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// group of the referent; "" for the core API group.
    #[schemars(length(max = 253))]
    pub group: String,
    /// resource of the referent (plural, lowercase), for example `jobs` or `machineosbuilds`.
    #[schemars(length(min = 1, max = 63))]
    pub resource: String,
    /// namespace of the referent; omitted for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// name of the referent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
