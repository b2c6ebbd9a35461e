//! MachineOSBuild: the immutable record of one build of one set of inputs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::boot_check::BootCheckResult;
use crate::common::{
    ContainerfileEntry, ImageBuilderType, LocalObjectName, ObjectReference, condition_types,
};
use crate::disk_image::DiskImageStatus;
use crate::rules::{DIGEST_MESSAGE, DIGEST_RULE, PUSH_SPEC_MESSAGE, PUSH_SPEC_RULE};

/// OpenShift's rule for the repository half of a digested pull spec.
const DIGESTED_REPO_RULE: &str = r"self.split('@')[0].matches('^([a-zA-Z0-9-]+\\.)+[a-zA-Z0-9-]+(:[0-9]{2,5})?/([a-zA-Z0-9-_]{0,61}/)?[a-zA-Z0-9-_.]*?$')";
const DIGESTED_REPO_MESSAGE: &str = "the OCI Image name should follow the host[:port][/namespace]/name format, resembling a valid URL without the scheme";

/// spec holds the inputs of this build as they were when it was made; it never changes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "MachineOSBuild",
    plural = "machineosbuilds",
    shortname = "smosb",
    category = "strata",
    status = "MachineOSBuildStatus",
    derive = "PartialEq",
    doc = "MachineOSBuild records one build of one set of inputs for a MachineOSConfig: the fragments and the base image as they were, the builder Job, the outcome and the pushed image's digest. Its name is `<machineosconfig>-<inputs hash>`, so identical inputs map to the same build. The controller creates and updates it; users read it.",
    printcolumn = r#"{"name":"Config","type":"string","jsonPath":".spec.machineOSConfig.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.conditions[?(@.status==\"True\")].type"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.currentStep"}"#,
    printcolumn = r#"{"name":"Started","type":"date","jsonPath":".status.buildStart"}"#,
    printcolumn = r#"{"name":"Finished","type":"date","jsonPath":".status.buildEnd"}"#,
    printcolumn = r#"{"name":"Image","type":"string","priority":1,"jsonPath":".status.digestedImagePushSpec"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.failure.message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("machineOSBuildSpec is immutable once set"))]
pub struct MachineOSBuildSpec {
    /// machineOSConfig is the MachineOSConfig this build belongs to.
    #[serde(rename = "machineOSConfig")]
    pub machine_os_config: LocalObjectName,

    /// machineConfigPool is the pool the image is built for.
    pub machine_config_pool: LocalObjectName,

    /// baseImage is the OS base image the fragments were applied to, pinned by digest
    /// (repo@sha256:<64 hex>).
    #[schemars(length(min = 1, max = 447))]
    #[x_kube(validation = kube::core::Rule::new(DIGEST_RULE).message(DIGEST_MESSAGE))]
    pub base_image: String,

    /// containerFile is a copy of the MachineOSConfig's fragments when the build was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["containerfileArch"]))]
    pub container_file: Vec<ContainerfileEntry>,

    /// renderedImagePushSpec is the push spec the image is pushed to; its tag is the build's name.
    #[schemars(length(min = 1, max = 447))]
    #[x_kube(validation = kube::core::Rule::new(PUSH_SPEC_RULE).message(PUSH_SPEC_MESSAGE))]
    pub rendered_image_push_spec: String,
}

/// The observed state of a MachineOSBuild.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.buildEnd) ? has(self.buildStart) && timestamp(self.buildStart) < timestamp(self.buildEnd) : true"
).message("buildEnd must be after buildStart"))]
pub struct MachineOSBuildStatus {
    /// conditions: Prepared, Building, Succeeded, Failed and Interrupted. Exactly one is True once
    /// the build has started; once Succeeded, Failed or Interrupted is True the conditions never
    /// change again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    #[x_kube(
        validation = kube::core::Rule::new("oldSelf.exists(x, x.type=='Failed' && x.status=='True') ? self==oldSelf : true")
            .message("once a Failed condition is set, conditions are immutable"),
        validation = kube::core::Rule::new("oldSelf.exists(x, x.type=='Interrupted' && x.status=='True') ? self==oldSelf : true")
            .message("once an Interrupted condition is set, conditions are immutable"),
        validation = kube::core::Rule::new("oldSelf.exists(x, x.type=='Succeeded' && x.status=='True') ? self==oldSelf : true")
            .message("once a Succeeded condition is set, conditions are immutable"),
    )]
    pub conditions: Vec<Condition>,

    /// buildStart is when the controller created the builder Job. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("buildStart is immutable once set"))]
    pub build_start: Option<Time>,

    /// buildEnd is when the build succeeded, failed or was interrupted. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("buildEnd is immutable once set"))]
    pub build_end: Option<Time>,

    /// builder is the builder backend running this build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<BuilderReference>,

    /// digestedImagePushSpec is the pushed image, by digest: host[:port][/namespace]/name@sha256:<64 hex>.
    /// Set only after the digest was verified in the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 447))]
    #[x_kube(
        validation = kube::core::Rule::new(DIGEST_RULE).message(DIGEST_MESSAGE),
        validation = kube::core::Rule::new(DIGESTED_REPO_RULE).message(DIGESTED_REPO_MESSAGE),
    )]
    pub digested_image_push_spec: Option<String>,

    /// relatedObjects are the ephemeral objects the build consumes (the rendered Containerfile
    /// ConfigMap, the auth Secrets). Secrets are deleted when the build ends; the ConfigMap is kept
    /// with the build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name", "resource"]))]
    pub related_objects: Vec<ObjectReference>,

    /// attempts is how many builder pods the Job counts: running, failed or succeeded (Strata
    /// addition). A pod evicted or preempted is not counted: the Job ignores disruptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub attempts: Option<i32>,

    /// currentStep is the builder step running now while the build is Building: pull, build,
    /// boot or push (Strata addition). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub current_step: Option<String>,

    /// failure explains a Failed or Interrupted build (Strata addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<BuildFailure>,

    /// containerfileSha256 is the sha256 (64 hex) of the rendered Containerfile (Strata addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 64, max = 64))]
    #[schemars(regex(pattern = r"^[a-f0-9]{64}$"))]
    pub containerfile_sha256: Option<String>,

    /// phases are the builder's steps and when each ran, in Unix milliseconds: pull, build, lint,
    /// and push (Strata addition), so an administrator sees where the time went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub phases: Vec<BuildPhaseTiming>,

    /// bootCheck is what the boot check found (Strata addition); absent when the check was
    /// disabled or did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_check: Option<BootCheckResult>,

    /// diskImage is the build's first-boot disk image (Strata addition), made after the pin when
    /// its MachineOSConfig asks for one (spec.diskImage). Unlike the conditions it changes after
    /// the build succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_image: Option<DiskImageStatus>,
}

/// When one step of a build ran.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildPhaseTiming {
    /// phase is the step: pull, build, lint, boot or push.
    #[schemars(length(max = 16))]
    pub phase: String,
    /// startMs is when the step started, in Unix milliseconds.
    pub start_ms: i64,
    /// endMs is when the step ended, in Unix milliseconds.
    pub end_ms: i64,
}

/// The builder backend of a build and the object that runs it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.imageBuilderType) && self.imageBuilderType == 'Job' ?  has(self.job) : !has(self.job)"
).message("job is required when imageBuilderType is Job, and forbidden otherwise"))]
pub struct BuilderReference {
    /// imageBuilderType is the backend: Job.
    pub image_builder_type: ImageBuilderType,
    /// job is the builder Job (namespace and name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<ObjectReference>,
}

/// Why a build failed or was interrupted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildFailure {
    /// reason is a CamelCase machine-readable cause, for example StepFailed, AuthFailed,
    /// RegistryUnavailable, DeadlineExceeded or Superseded.
    #[schemars(length(max = 128))]
    pub reason: String,
    /// message says what happened, for a human (for a failed step: the step and its line).
    #[schemars(length(max = 4096))]
    pub message: String,
    /// logTail is the end of the builder's log (at most 4 KiB).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub log_tail: String,
}

/// Where a build is, derived from its conditions (the one that is True).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BuildPhase {
    /// Created; its objects exist or are being made; no builder pod ran yet.
    Prepared,
    /// A builder pod runs.
    Building,
    /// Terminal: pushed and verified.
    Succeeded,
    /// Terminal: the build failed.
    Failed,
    /// Terminal: superseded by newer inputs, or cancelled.
    Interrupted,
}

impl BuildPhase {
    pub const ALL: [BuildPhase; 5] = [
        BuildPhase::Prepared,
        BuildPhase::Building,
        BuildPhase::Succeeded,
        BuildPhase::Failed,
        BuildPhase::Interrupted,
    ];

    /// The condition type that is True in this phase.
    pub fn condition_type(self) -> &'static str {
        match self {
            BuildPhase::Prepared => condition_types::PREPARED,
            BuildPhase::Building => condition_types::BUILDING,
            BuildPhase::Succeeded => condition_types::SUCCEEDED,
            BuildPhase::Failed => condition_types::FAILED,
            BuildPhase::Interrupted => condition_types::INTERRUPTED,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BuildPhase::Succeeded | BuildPhase::Failed | BuildPhase::Interrupted
        )
    }
}

impl std::fmt::Display for BuildPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition_type())
    }
}

impl MachineOSBuildStatus {
    /// The phase from the conditions: the True one, terminal ones first; None before any is set.
    pub fn phase(&self) -> Option<BuildPhase> {
        let is_true = |p: BuildPhase| {
            self.conditions
                .iter()
                .any(|c| c.type_ == p.condition_type() && c.status == "True")
        };
        [
            BuildPhase::Succeeded,
            BuildPhase::Failed,
            BuildPhase::Interrupted,
            BuildPhase::Building,
            BuildPhase::Prepared,
        ]
        .into_iter()
        .find(|p| is_true(*p))
    }
}

impl MachineOSBuild {
    /// The phase of this build; None before the controller wrote any status.
    pub fn phase(&self) -> Option<BuildPhase> {
        self.status.as_ref().and_then(MachineOSBuildStatus::phase)
    }

    /// The pre-built image this build seeds its MachineOSConfig with (no build: the image is
    /// gated, booted and pinned as it is), if it is a seeding build.
    pub fn pre_built_image(&self) -> Option<&str> {
        let key = crate::contract::annotations::PRE_BUILT_IMAGE;
        let marked = self
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.get(key).is_some_and(|v| v == "true"));
        let image = self.metadata.annotations.as_ref()?.get(key)?;
        marked.then_some(image.as_str())
    }
}
