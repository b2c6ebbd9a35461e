//! The disk image pod's own steps (after the pin; its pull step is the builder's, given the pinned
//! image): `disk` makes the image's first-boot disk ([`crate::boot::disk`]) in the pod's user
//! namespace with no credential, since it runs the image's own ostree and GRUB; `push` pushes each
//! disk file as an OCI artifact whose subject is the image, in one image index tagged beside the
//! build's image (`buildah manifest add --artifact`, so the registry settings are the builds').

use std::path::PathBuf;

use strata_crds::contract::{DiskPlan, disk_image_pod};
use strata_crds::{DiskImageFile, DiskImageFormat};

use super::redact::Redactor;
use super::{BuildArgs, FailureClass, Handover, TerminationMessage, boot_step, buildah, failure};
use crate::boot::BootError;
use crate::boot::disk::{self, Format};

/// The pinned image the pod works on (`repo@sha256:…`).
pub fn source_image(args: &BuildArgs) -> Result<String, TerminationMessage> {
    args.source_image.clone().ok_or_else(|| {
        misconfigured(format!(
            "{} is not set: the disk image pod needs the pinned image",
            disk_image_pod::SOURCE_IMAGE_ENV
        ))
    })
}

fn misconfigured(message: String) -> TerminationMessage {
    failure(
        FailureClass::Terminal,
        "BuilderMisconfigured",
        message,
        String::new(),
    )
}

fn disk_plan(args: &BuildArgs) -> Result<DiskPlan, TerminationMessage> {
    let text = args.disk_plan.as_deref().unwrap_or_default();
    serde_json::from_str(text).map_err(|e| {
        misconfigured(format!(
            "the disk plan ({}) is not valid: {e}",
            disk_image_pod::DISK_PLAN_ENV
        ))
    })
}

fn disk_dir(args: &BuildArgs) -> PathBuf {
    args.work_dir.join("disk")
}

fn file_of(args: &BuildArgs, format: DiskImageFormat) -> PathBuf {
    disk_dir(args).join(format!("disk.{}", format.extension()))
}

/// The disk step (in the user namespace): the pinned image's disk, in each format asked for.
pub async fn disk(args: &BuildArgs) -> Result<Option<TerminationMessage>, TerminationMessage> {
    let started = super::now_ms();
    let plan = disk_plan(args)?;
    let request = disk::Request {
        image: source_image(args)?,
        output: disk_dir(args),
        formats: plan
            .formats
            .iter()
            .map(|f| match f {
                DiskImageFormat::Qcow2 => Format::Qcow2,
                DiskImageFormat::Raw => Format::Raw,
            })
            .collect(),
        authfile: None,
        tls_verify: true,
        root_mib: None,
        kernel_args: plan.kernel_arguments.clone(),
        etc_files: Vec::new(),
        layer_commits: false,
        buildah: boot_step::namespaced_buildah(args),
    };
    println!(
        "strata build: making the first-boot disk of {} ({})",
        request.image,
        plan.formats
            .iter()
            .map(|f| f.extension())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let made = tokio::task::spawn_blocking(move || disk::make(&request))
        .await
        .map_err(|e| {
            failure(
                FailureClass::Transient,
                "DiskImageInterrupted",
                e.to_string(),
                String::new(),
            )
        })?
        .map_err(disk_error)?;
    println!(
        "strata build: made the disk in {:.0} s (sysroot {:.0} s, file systems {:.0} s, qcow2 \
         {:.0} s): {} MiB disk, qcow2 {} bytes",
        made.seconds.total,
        made.seconds.sysroot,
        made.seconds.file_systems,
        made.seconds.qcow2,
        made.disk_mib,
        made.qcow2_bytes.unwrap_or(0),
    );
    let mut handover = Handover::load(args);
    handover.record("disk", started);
    handover.save(args)?;
    Ok(None)
}

/// A failure to make the disk, as the step reports it.
fn disk_error(err: BootError) -> TerminationMessage {
    boot_step::disk_step_error(err, "DiskImageFailed", "DiskImageFailed")
}

/// The last `sha256:<64 hex>` in buildah's output (`manifest add` prints the list's ID and the
/// added manifest's digest).
fn last_digest(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .rev()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != ':'))
        .find(|w| {
            w.len() == 71
                && w.starts_with("sha256:")
                && w[7..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .map(str::to_string)
}

/// The push step: each disk file as an artifact manifest (subject: the pinned image) in one index,
/// pushed by `--all` to the pod's target (the build's tag with `-disk`); the success message names
/// the index's digest and each file's manifest.
pub async fn push(
    args: &BuildArgs,
    redactor: &Redactor,
) -> Result<Option<TerminationMessage>, TerminationMessage> {
    let started = super::now_ms();
    let plan = disk_plan(args)?;
    let image = source_image(args)?;
    let buildah = buildah::Buildah::new(args, redactor.clone())?;
    let flags = registry_flags(args);
    let list = "localhost/strata-disk-image:latest".to_string();
    // A list left by an earlier attempt of this pod would hold its files too.
    buildah
        .run(&["manifest".into(), "rm".into(), list.clone()])
        .await?;
    run_ok(
        &buildah,
        &["manifest".into(), "create".into(), list.clone()],
    )
    .await?;
    let mut files = Vec::new();
    for format in &plan.formats {
        files.push(add_file(args, &buildah, &flags, &list, &image, *format).await?);
    }
    let digestfile = args.work_dir.join("disk-digest");
    let mut push = vec!["manifest".to_string(), "push".into(), "--all".into()];
    push.extend(flags);
    push.extend(buildah.policy_flag());
    push.extend([
        format!("--digestfile={}", digestfile.display()),
        list,
        format!("docker://{}", args.image),
    ]);
    println!("strata build: pushing the disk image to {}", args.image);
    let output = run_ok(&buildah, &push).await?;
    let digest = std::fs::read_to_string(&digestfile)
        .ok()
        .and_then(|text| last_digest(&text))
        .ok_or_else(|| {
            failure(
                FailureClass::Transient,
                "PushFailed",
                "buildah wrote no valid digest for the disk image".to_string(),
                output,
            )
        })?;
    let mut handover = Handover::load(args);
    handover.record("push", started);
    Ok(Some(TerminationMessage::Success {
        digest,
        size_bytes: files.iter().map(|f| f.size_bytes.max(0) as u64).sum(),
        phases: handover.phases,
        boot_check: None,
        files,
    }))
}

/// The flags every registry call of the push step takes. `manifest add` reads the subject from
/// the registry without registries.conf's `insecure`: the registries Strata is told are insecure
/// are named to it (and to the push) directly.
fn registry_flags(args: &BuildArgs) -> Vec<String> {
    let insecure = args
        .insecure_registries
        .iter()
        .any(|r| !r.trim().is_empty() && args.image.starts_with(&format!("{}/", r.trim())));
    let mut flags = Vec::new();
    if args.push_authfile.is_file() {
        flags.push(format!("--authfile={}", args.push_authfile.display()));
    }
    flags.extend(buildah::cert_dir_flag(args));
    if insecure {
        flags.push("--tls-verify=false".into());
    }
    flags
}

/// Adds one disk file to the list as an artifact manifest whose subject is the pinned image.
async fn add_file(
    args: &BuildArgs,
    buildah: &buildah::Buildah,
    flags: &[String],
    list: &str,
    image: &str,
    format: DiskImageFormat,
) -> Result<DiskImageFile, TerminationMessage> {
    let file = file_of(args, format);
    let size_bytes = std::fs::metadata(&file)
        .map_err(|e| {
            failure(
                FailureClass::Terminal,
                "DiskImageFailed",
                format!("the disk step left no {}: {e}", file.display()),
                String::new(),
            )
        })?
        .len();
    let mut add = vec!["manifest".to_string(), "add".into(), "--artifact".into()];
    add.extend(flags.iter().cloned());
    add.extend([
        format!("--artifact-type={}", disk_image_pod::ARTIFACT_TYPE),
        format!(
            "--artifact-layer-type={}",
            disk_image_pod::layer_media_type(format)
        ),
        format!("--artifact-subject=docker://{image}"),
        list.to_string(),
        file.display().to_string(),
    ]);
    println!(
        "strata build: adding {} ({size_bytes} bytes)",
        file.display()
    );
    let output = run_ok(buildah, &add).await?;
    let manifest = last_digest(&output).ok_or_else(|| {
        failure(
            FailureClass::Transient,
            "PushFailed",
            "buildah manifest add printed no digest".to_string(),
            output.clone(),
        )
    })?;
    Ok(DiskImageFile {
        format,
        manifest,
        size_bytes: i64::try_from(size_bytes).unwrap_or(i64::MAX),
    })
}

/// Runs buildah; its output on success, else the push failure it reports.
async fn run_ok(
    buildah: &buildah::Buildah,
    command: &[String],
) -> Result<String, TerminationMessage> {
    let output = buildah.run(command).await?;
    if output.success {
        return Ok(output.tail);
    }
    let (class, reason, message) = super::message::classify(super::Stage::Push, &output.tail);
    Err(failure(class, reason, message, output.tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_added_manifest_s_digest_is_the_last_one_printed() {
        let list = "a".repeat(64);
        let manifest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            last_digest(&format!("{list}: {manifest}\n")),
            Some(manifest.clone())
        );
        assert_eq!(last_digest(&format!("{manifest}\n")), Some(manifest));
        assert_eq!(last_digest("sha256:abc"), None);
        assert_eq!(last_digest(&format!("sha256:{}", "B".repeat(64))), None);
    }

    #[test]
    fn a_bad_image_fails_the_disk_and_a_full_disk_is_transient() {
        let reason = |m: TerminationMessage| match m {
            TerminationMessage::Failure { reason, class, .. } => (reason, class),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(disk_error(BootError::Image("no initramfs".into()))),
            ("DiskImageFailed".into(), FailureClass::Terminal)
        );
        let full = BootError::Tool {
            tool: "mke2fs".into(),
            detail: "exit status: 1: No space left on device".into(),
        };
        assert_eq!(
            reason(disk_error(full)),
            ("OutOfSpace".into(), FailureClass::Transient)
        );
    }
}
