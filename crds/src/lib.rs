//! The `strata.dev/v1alpha1` API: [`MachineOSConfig`] (a user's intent for one pool) and
//! [`MachineOSBuild`] (the immutable record of one build).
//!
//! These Rust types are the source of truth; `strata crds` prints the CRD YAML generated from them
//! and `crds/crds.yaml` is that output, committed.
//!
//! The shapes mirror OpenShift's `machineconfiguration.openshift.io/v1` kinds field for field, so a
//! MachineOSConfig written for OpenShift converts by changing `apiVersion` only.

pub mod boot_check;
mod common;
pub mod contract;
mod crd_yaml;
mod disk_image;
mod machineosbuild;
mod machineosconfig;

pub use boot_check::{BootCheck, BootCheckMode, BootCheckResult};
pub use common::{
    ContainerfileArch, ContainerfileEntry, ImageBuilder, ImageBuilderType, LocalObjectName,
    ObjectReference, condition_types,
};
pub use crd_yaml::{all_crds, crds_yaml};
pub use disk_image::{DiskImage, DiskImageFile, DiskImageFormat, DiskImagePhase, DiskImageStatus};
pub use machineosbuild::{
    BuildFailure, BuildPhase, BuildPhaseTiming, BuilderReference, MachineOSBuild,
    MachineOSBuildSpec, MachineOSBuildStatus,
};
pub use machineosconfig::{
    Entitlement, MachineOSConfig, MachineOSConfigSpec, MachineOSConfigStatus,
};

/// The API group of both kinds.
pub const GROUP: &str = "strata.dev";
/// The API version of both kinds.
pub const VERSION: &str = "v1alpha1";
/// Annotation on a MachineOSConfig that requests a rebuild of the current inputs; the controller
/// removes it once the new build has started.
pub const REBUILD_ANNOTATION: &str = contract::annotations::REBUILD;
/// Largest Containerfile fragment we accept (OpenShift allows 4 KiB).
pub const MAX_CONTAINERFILE_BYTES: usize = 32 * 1024;

/// CEL and schema fragments shared by both kinds, kept identical to OpenShift's so that objects
/// are accepted and rejected the same way.
pub mod rules {
    /// Push spec: `host[:port][/namespace…]/name:tag`, the host containing a dot (OpenShift's rule).
    pub const PUSH_SPEC_RULE: &str = r"self.matches('^([a-zA-Z0-9-]+\\.)+[a-zA-Z0-9-]+(:[0-9]{2,5})?(/[a-zA-Z0-9-_]{1,61})*/[a-zA-Z0-9-_.]+:[a-zA-Z0-9._-]+$')";
    pub const PUSH_SPEC_MESSAGE: &str = "the OCI Image name should follow the host[:port][/namespace]/name format, resembling a valid URL without the scheme. Or it must be a valid .svc followed by a port, repository, image name, and tag.";
    /// The repository path (after the host, before the tag) is lowercase, as OCI repository names
    /// must be: a push spec with capitals there passes the format rule but fails at push.
    pub const PUSH_SPEC_LOWERCASE_RULE: &str = r"self.matches('^[^/]+(/[a-z0-9._-]+)+:[^/:]+$')";
    pub const PUSH_SPEC_LOWERCASE_MESSAGE: &str = "the repository path of renderedImagePushSpec must be lowercase (OCI repository names are); only the registry host may contain capitals";
    /// The repository (everything before the tag) leaves room for the build's tag, which is at
    /// least its 12-character hash, within 447 characters.
    pub const PUSH_SPEC_ROOM_RULE: &str = r"self.matches('^.{1,434}:[^:/]+$')";
    pub const PUSH_SPEC_ROOM_MESSAGE: &str = "the repository of renderedImagePushSpec (before the tag) must be at most 434 characters, so that the build's tag fits";
    /// A digest-pinned reference `repo@sha256:<64 lowercase hex>`.
    pub const DIGEST_RULE: &str =
        r"self.split('@').size() == 2 && self.split('@')[1].matches('^sha256:[a-f0-9]{64}$')";
    pub const DIGEST_MESSAGE: &str = "the OCI Image reference must end with a valid '@sha256:<digest>' suffix, where '<digest>' is 64 characters long";
    /// MachineOSConfig name == pool name, ratcheted: an object stored before the rule existed may
    /// keep its mismatch as long as the pool name does not change.
    pub const NAME_MATCHES_POOL_RULE: &str = "self.metadata.name == self.spec.machineConfigPool.name || (oldSelf.hasValue() && oldSelf.value().spec.machineConfigPool.name == self.spec.machineConfigPool.name)";
    pub const NAME_MATCHES_POOL_MESSAGE: &str = "MachineOSConfig name must match the referenced MachineConfigPool name; can only have one MachineOSConfig per MachineConfigPool";
    pub const DNS1123_SUBDOMAIN_RULE: &str = "!format.dns1123Subdomain().validate(self).hasValue()";
    pub const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character.";
}
