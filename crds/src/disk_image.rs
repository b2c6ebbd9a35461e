//! First-boot disk images (Strata addition): what a MachineOSConfig asks for, and what a build's
//! disk image became.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::machineosbuild::BuildFailure;
use crate::rules::{DIGEST_MESSAGE, DIGEST_RULE};

/// diskImage asks for a first-boot disk image of every pinned image.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskImage {
    /// formats are the disk formats to make (default: Qcow2 only). Qcow2 is compressed, for
    /// virtualization platforms; Raw is the disk byte for byte (about 4 GiB for a RHCOS-sized
    /// image, uncompressed in the registry), for `dd` to bare metal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub formats: Vec<DiskImageFormat>,

    /// kernelArguments are added to the first boot's kernel command line (for example
    /// `console=ttyS1`), after the ones every disk gets (root, console).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 256), regex(pattern = r"^\S+$"))
    )]
    pub kernel_arguments: Vec<String>,
}

// A disk image format. No doc comment: the schema would take it for the field's description.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum DiskImageFormat {
    /// QEMU's compressed copy-on-write format.
    Qcow2,
    /// The disk byte for byte.
    Raw,
}

impl DiskImageFormat {
    /// The file extension, and the name `strata disk-image --format` takes.
    pub fn extension(self) -> &'static str {
        match self {
            DiskImageFormat::Qcow2 => "qcow2",
            DiskImageFormat::Raw => "raw",
        }
    }
}

impl DiskImage {
    /// The formats asked for, in a stable order; Qcow2 when none is named.
    pub fn formats_or_default(&self) -> Vec<DiskImageFormat> {
        let mut formats = self.formats.clone();
        if formats.is_empty() {
            formats.push(DiskImageFormat::Qcow2);
        }
        formats.sort();
        formats.dedup();
        formats
    }
}

/// Where a build's disk image is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DiskImagePhase {
    /// Its Job runs.
    Building,
    /// Pushed: `image` names it.
    Succeeded,
    /// It could not be made or pushed: `failure` says why. The pool is not affected.
    Failed,
}

/// What became of a build's first-boot disk image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskImageStatus {
    /// phase is Building, Succeeded or Failed.
    pub phase: DiskImagePhase,

    /// job is the name of the Job that makes it, in the controller's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub job: Option<String>,

    /// image is the pushed OCI image index holding the disk artifacts, by digest:
    /// repo@sha256:<64 hex>, in the build image's repository. Each file is an OCI artifact
    /// (artifactType application/vnd.strata.disk-image.v1) whose subject is the build's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 447))]
    #[x_kube(validation = kube::core::Rule::new(DIGEST_RULE).message(DIGEST_MESSAGE))]
    pub image: Option<String>,

    /// files are the disk files pushed, one per format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub files: Vec<DiskImageFile>,

    /// seconds is how long the Job took, from its pull to its push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seconds: Option<i64>,

    /// failure says why a Failed disk image failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<BuildFailure>,
}

/// One pushed disk file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskImageFile {
    /// format is Qcow2 or Raw.
    pub format: DiskImageFormat,
    /// manifest is the digest (sha256:<64 hex>) of the artifact manifest that carries the file.
    #[schemars(length(min = 71, max = 71), regex(pattern = r"^sha256:[a-f0-9]{64}$"))]
    pub manifest: String,
    /// sizeBytes is the file's size.
    #[schemars(range(min = 0))]
    pub size_bytes: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_default_to_qcow2_and_come_in_one_order() {
        assert_eq!(
            DiskImage::default().formats_or_default(),
            vec![DiskImageFormat::Qcow2]
        );
        let both = DiskImage {
            formats: vec![
                DiskImageFormat::Raw,
                DiskImageFormat::Qcow2,
                DiskImageFormat::Raw,
            ],
            kernel_arguments: Vec::new(),
        };
        assert_eq!(
            both.formats_or_default(),
            vec![DiskImageFormat::Qcow2, DiskImageFormat::Raw]
        );
    }
}
