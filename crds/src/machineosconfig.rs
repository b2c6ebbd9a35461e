//! MachineOSConfig: the administrator's intent for one MachineConfigPool.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::boot_check::BootCheck;
use crate::common::{ContainerfileEntry, ImageBuilder, LocalObjectName, ObjectReference};
use crate::disk_image::DiskImage;
use crate::rules::{
    DIGEST_MESSAGE, DIGEST_RULE, NAME_MATCHES_POOL_MESSAGE, NAME_MATCHES_POOL_RULE,
    PUSH_SPEC_LOWERCASE_MESSAGE, PUSH_SPEC_LOWERCASE_RULE, PUSH_SPEC_MESSAGE,
    PUSH_SPEC_ROOM_MESSAGE, PUSH_SPEC_ROOM_RULE, PUSH_SPEC_RULE,
};

/// spec is the administrator's intent: the pool, its Containerfile fragments, where to push the
/// built image and with which credentials.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "MachineOSConfig",
    plural = "machineosconfigs",
    shortname = "smosc",
    category = "strata",
    status = "MachineOSConfigStatus",
    derive = "PartialEq",
    doc = "MachineOSConfig describes how the OS image of one MachineConfigPool differs from the release's stock image: Containerfile fragments, where to push the result and with which credentials. Strata builds the image in the cluster, pushes it, and points the pool at it by digest. There is at most one MachineOSConfig per pool: its name must equal the pool's name.",
    printcolumn = r#"{"name":"Pool","type":"string","jsonPath":".spec.machineConfigPool.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Building","type":"string","jsonPath":".status.conditions[?(@.type==\"Building\")].status"}"#,
    printcolumn = r#"{"name":"Current Build","type":"string","jsonPath":".status.machineOSBuild.name"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.currentImagePullSpec"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = kube::core::Rule::new(NAME_MATCHES_POOL_RULE)
        .message(NAME_MATCHES_POOL_MESSAGE)
        .optional_old_self(true),
)]
#[serde(rename_all = "camelCase")]
pub struct MachineOSConfigSpec {
    /// machineConfigPool is the pool whose machines run the built image. The MachineOSConfig's own
    /// name must equal this name.
    pub machine_config_pool: LocalObjectName,

    /// imageBuilder selects the builder backend; only `Job` exists.
    pub image_builder: ImageBuilder,

    /// containerFile holds the Containerfile fragments, at most one per architecture. Without any,
    /// the pool gets the release base image re-tagged and pinned by digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["containerfileArch"]))]
    pub container_file: Vec<ContainerfileEntry>,

    /// baseImagePullSecret names a Secret (type kubernetes.io/dockerconfigjson or
    /// kubernetes.io/dockercfg) in the controller's namespace used to pull the base image and any
    /// image a fragment names. Optional: anonymous pulls when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_pull_secret: Option<LocalObjectName>,

    /// renderedImagePushSecret names a Secret (kubernetes.io/dockerconfigjson or
    /// kubernetes.io/dockercfg) in the controller's namespace with push rights on
    /// renderedImagePushSpec's repository.
    pub rendered_image_push_secret: LocalObjectName,

    /// renderedImagePushSpec is where built images are pushed, as host[:port][/namespace]/name:tag
    /// (the host must contain a dot, as an IP address or FQDN does). The tag is replaced by the
    /// build's name; pools always receive the image by digest. The repository path must be
    /// lowercase, and at most 434 characters may precede the tag.
    #[schemars(length(min = 1, max = 447))]
    #[x_kube(
        validation = kube::core::Rule::new(PUSH_SPEC_RULE).message(PUSH_SPEC_MESSAGE),
        validation = kube::core::Rule::new(PUSH_SPEC_LOWERCASE_RULE).message(PUSH_SPEC_LOWERCASE_MESSAGE),
        validation = kube::core::Rule::new(PUSH_SPEC_ROOM_RULE).message(PUSH_SPEC_ROOM_MESSAGE),
    )]
    pub rendered_image_push_spec: String,

    /// baseImage optionally overrides the release's OS base image (Strata addition). It must be
    /// pinned by digest: repo@sha256:<64 hex>. When omitted the base comes from the release
    /// ConfigMap (openshift-machine-config-operator/machine-config-osimageurl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 447))]
    #[x_kube(validation = kube::core::Rule::new(DIGEST_RULE).message(DIGEST_MESSAGE))]
    pub base_image: Option<String>,

    /// entitlement says whether this config's RUN steps get the cluster's RHEL entitlement
    /// (Strata addition): `Mount` mounts the entitlement Secret (the controller's
    /// --entitlement-secret, openshift-config-managed/etc-pki-entitlement by default) read-only
    /// at /etc/pki/entitlement in RUN steps, as OpenShift's builds do for every pool; `Omit`, the
    /// default, leaves it out. Fragment code can read whatever is mounted: opt in only where
    /// fragments install entitled content. Not an input of the image: a change starts no build;
    /// the next one uses it (the strata.dev/rebuild annotation builds the current inputs again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<Entitlement>,

    /// bootCheck tunes the boot check (Strata addition). Before the pool is pinned, each built
    /// image boots in a VM in its builder pod, from the disk a new machine would boot; the build
    /// fails with BootFailed, and the pool keeps its image, unless the system reaches its target
    /// with no failed unit that the release's base image does not also fail, and with the units
    /// and commands asked for here working. On unless `mode: Disabled`. Not an input of the
    /// image: a change starts no build; the next one uses it (the strata.dev/rebuild annotation
    /// builds the current inputs again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_check: Option<BootCheck>,

    /// diskImage asks for a first-boot disk image of each build (Strata addition): after the
    /// pool is pinned, a Job in the controller's namespace makes the disk a new machine boots
    /// (an ostree sysroot with the image deployed, GRUB for UEFI) and pushes it beside the image
    /// as an OCI artifact; the build's status.diskImage names it. Absent: none is made. Not an
    /// input of the image: adding it makes the disk image of the pinned build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_image: Option<DiskImage>,
}

// Whether RUN steps get the cluster's RHEL entitlement (`spec.entitlement`). No doc comment: the
// schema would take it for the field's description.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Entitlement {
    /// Mounted read-only at /etc/pki/entitlement in RUN steps.
    Mount,
    /// Not mounted.
    #[default]
    Omit,
}

impl MachineOSConfigSpec {
    /// Whether this config's RUN steps get the cluster's entitlement.
    pub fn mounts_entitlement(&self) -> bool {
        self.entitlement == Some(Entitlement::Mount)
    }
}

/// The observed state of a MachineOSConfig.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineOSConfigStatus {
    /// conditions: Ready (the pool points at an image built from the current inputs), Building
    /// (a build is running), Degraded (administrator action needed; the message says what),
    /// PoolUpdated (the pool's rendered configuration carries the pinned image and every machine
    /// runs it), PoolHeld (Strata has paused the pool while it rebuilds on a new release base) and
    /// WaitingForPool (the pool is degraded: Strata starts no build and pins nothing until it
    /// recovers; the reason is the pool's condition).
    /// Each carries observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// observedGeneration is the metadata.generation the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    #[x_kube(validation = kube::core::Rule::new("self >= oldSelf").message("observedGeneration must not move backwards"))]
    pub observed_generation: Option<i64>,

    /// currentImagePullSpec is the image the pool is pointed at, always by digest
    /// (repo@sha256:<64 hex>). It is not cleared when a later build fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 447))]
    #[x_kube(validation = kube::core::Rule::new(DIGEST_RULE).message(DIGEST_MESSAGE))]
    pub current_image_pull_spec: Option<String>,

    /// machineOSBuild references the MachineOSBuild of the current inputs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "machineOSBuild"
    )]
    pub machine_os_build: Option<ObjectReference>,
}
