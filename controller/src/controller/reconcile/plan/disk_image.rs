//! A build's first-boot disk image, made after its pin when the config asks for one
//! (`spec.diskImage`): the Job is started once per build, followed into the build's
//! `status.diskImage`, and its end told by an Event. It never touches the pool: a disk image that
//! fails says so in its own status, and the build stays Succeeded.

use strata_crds::contract::{DiskPlan, PhaseTiming, TerminationMessage};
use strata_crds::{
    BuildFailure, DiskImageFile, DiskImagePhase, DiskImageStatus, MachineOSBuild,
    MachineOSBuildStatus,
};

use super::build_status::failure_redactor;
use super::{EventType, JobObservation, Planner};
use crate::controller::names;
use crate::controller::objects::disk_image_objects;

/// The disk image of the current build `build_name`, succeeded with `next` and pinned to `image`.
pub(super) fn follow(
    planner: &mut Planner<'_>,
    build_name: &str,
    next: &MachineOSBuildStatus,
    image: &str,
) {
    let observed = planner.observed;
    let Some(build) = observed
        .builds
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some(build_name))
    else {
        return;
    };
    match next.disk_image.as_ref().map(|d| d.phase) {
        Some(DiskImagePhase::Succeeded | DiskImagePhase::Failed) => {}
        Some(DiskImagePhase::Building) => follow_job(planner, build, next, image),
        None => {
            if let Some(plan) = DiskPlan::of(observed.config.spec.disk_image.as_ref()) {
                start(planner, build, next, image, &plan);
            }
        }
    }
}

/// Records `status` as the build's next, replacing what this round planned for it already.
fn write_status(planner: &mut Planner<'_>, build_name: &str, status: MachineOSBuildStatus) {
    let planned = &mut planner.plan.build_status;
    match planned.iter_mut().find(|(name, _)| name == build_name) {
        Some(entry) => entry.1 = status,
        None => planned.push((build_name.to_string(), status)),
    }
}

/// Plans the disk image's objects (again, when its Job is missing: a create of one that exists
/// is a no-op).
fn make_objects(planner: &mut Planner<'_>, build: &MachineOSBuild, image: &str) -> bool {
    let observed = planner.observed;
    let (Ok(auth), Some(plan)) = (
        &observed.auth,
        DiskPlan::of(observed.config.spec.disk_image.as_ref()),
    ) else {
        // Degraded says why the credentials cannot be used; the config may ask again later.
        planner.requeue(60);
        return false;
    };
    planner.plan.disk_image_objects = Some(disk_image_objects(
        build,
        image,
        &auth.push,
        &observed.environment,
        &plan,
        planner.settings,
    ));
    true
}

fn start(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    next: &MachineOSBuildStatus,
    image: &str,
    plan: &DiskPlan,
) {
    if !make_objects(planner, build, image) {
        return;
    }
    let build_name = build.metadata.name.clone().unwrap_or_default();
    let mut status = next.clone();
    status.disk_image = Some(DiskImageStatus {
        phase: DiskImagePhase::Building,
        job: Some(names::disk_image_job(build)),
        image: None,
        files: Vec::new(),
        seconds: None,
        failure: None,
    });
    write_status(planner, &build_name, status);
    let formats: Vec<&str> = plan.formats.iter().map(|f| f.extension()).collect();
    planner.event(
        EventType::Normal,
        "DiskImageStarted",
        "MakeDiskImage",
        format!(
            "making the first-boot disk image of {image} ({})",
            formats.join(", ")
        ),
    );
}

fn follow_job(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    next: &MachineOSBuildStatus,
    image: &str,
) {
    let build_name = build.metadata.name.clone().unwrap_or_default();
    let observed = planner.observed;
    let ended = match &observed.disk_job {
        JobObservation::Missing => {
            // Written with its status: its watch may trail, or someone deleted it.
            make_objects(planner, build, image);
            return;
        }
        JobObservation::Running { .. } => return,
        JobObservation::Succeeded {
            message:
                Some(TerminationMessage::Success {
                    digest,
                    files,
                    phases,
                    ..
                }),
            ..
        } => Ok((digest, files, phases)),
        JobObservation::Succeeded { .. } => Err(BuildFailure {
            reason: "PushFailed".into(),
            message: "the disk image Job succeeded without reporting what it pushed".into(),
            log_tail: String::new(),
        }),
        JobObservation::Failed {
            reason,
            message,
            termination,
            raw_message,
            ..
        } => Err(match termination {
            Some(TerminationMessage::Failure {
                reason,
                message,
                log_tail,
                ..
            }) => failure(planner, reason, message, log_tail),
            _ => failure(planner, reason, message, raw_message),
        }),
    };
    let mut status = next.clone();
    let mut disk = next.disk_image.clone().unwrap_or(DiskImageStatus {
        phase: DiskImagePhase::Building,
        job: None,
        image: None,
        files: Vec::new(),
        seconds: None,
        failure: None,
    });
    match ended {
        Ok((digest, files, phases)) => succeeded(planner, &mut disk, image, digest, files, phases),
        Err(failure) => {
            planner.plan.metrics.disk_image = Some((false, 0.0));
            planner.event(
                EventType::Warning,
                "DiskImageFailed",
                "MakeDiskImage",
                format!(
                    "the first-boot disk image of {image} failed ({}): {}; the pool is not \
                     affected",
                    failure.reason, failure.message
                ),
            );
            disk.phase = DiskImagePhase::Failed;
            disk.failure = Some(failure);
        }
    }
    status.disk_image = Some(disk);
    write_status(planner, &build_name, status);
}

/// The disk image pushed: its status, metric and Event.
fn succeeded(
    planner: &mut Planner<'_>,
    disk: &mut DiskImageStatus,
    image: &str,
    digest: &str,
    files: &[DiskImageFile],
    phases: &[PhaseTiming],
) {
    let start = phases.iter().map(|p| p.start_ms).min().unwrap_or(0);
    let end = phases.iter().map(|p| p.end_ms).max().unwrap_or(0);
    let seconds = (end - start).max(0) / 1000;
    let pushed = format!("{}@{digest}", names::repository(image));
    planner.plan.metrics.disk_image = Some((true, seconds as f64));
    let sizes: Vec<String> = files
        .iter()
        .map(|f| format!("{} {} MiB", f.format.extension(), f.size_bytes >> 20))
        .collect();
    planner.event(
        EventType::Normal,
        "DiskImageReady",
        "MakeDiskImage",
        format!(
            "the first-boot disk image of {image} is {pushed} ({}, {seconds} s)",
            sizes.join(", ")
        ),
    );
    disk.phase = DiskImagePhase::Succeeded;
    disk.image = Some(pushed);
    disk.files = files.to_vec();
    disk.seconds = Some(seconds);
}

/// A failure as the build's status keeps it: redacted like a build's, cut to the CRD's bounds.
fn failure(planner: &Planner<'_>, reason: &str, message: &str, log_tail: &str) -> BuildFailure {
    let redactor = failure_redactor(&planner.observed.environment);
    BuildFailure {
        reason: reason.chars().take(128).collect(),
        message: strata_crds::contract::keep_tail(&redactor.redact(message), 4000),
        log_tail: strata_crds::contract::keep_tail(&redactor.redact(log_tail), 4000),
    }
}

/// Disk images still being made for builds that are no longer current end as Failed
/// (Superseded): history.rs removes their Jobs.
pub(super) fn interrupt_superseded(planner: &mut Planner<'_>, current: &str) {
    for build in &planner.observed.builds {
        let name = build.metadata.name.as_deref().unwrap_or_default();
        let Some(status) = build.status.as_ref() else {
            continue;
        };
        if name == current
            || status.disk_image.as_ref().map(|d| d.phase) != Some(DiskImagePhase::Building)
        {
            continue;
        }
        let mut next = planner
            .plan
            .build_status
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| status.clone(), |(_, s)| s.clone());
        if let Some(disk) = next.disk_image.as_mut() {
            disk.phase = DiskImagePhase::Failed;
            disk.failure = Some(BuildFailure {
                reason: "Superseded".into(),
                message: format!("build {current} of newer inputs superseded build {name}"),
                log_tail: String::new(),
            });
        }
        write_status(planner, name, next);
    }
}

/// The disk image phase of `build` after this round's plan.
pub(super) fn planned_phase(
    planner: &Planner<'_>,
    build: &MachineOSBuild,
) -> Option<DiskImagePhase> {
    let name = build.metadata.name.as_deref().unwrap_or_default();
    planner
        .plan
        .build_status
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .or(build.status.as_ref())
        .and_then(|s| s.disk_image.as_ref())
        .map(|d| d.phase)
}

#[cfg(test)]
mod tests {
    use strata_crds::contract::{FailureClass, PhaseTiming};
    use strata_crds::{DiskImage, DiskImageFile, DiskImageFormat};

    use super::super::tests::{applied, created, events_of, present, succeeded_job};
    use super::super::{Observed, plan};
    use super::*;
    use crate::controller::fixtures::{DIGEST, config, observed};
    use crate::controller::settings::Settings;

    /// A config asking for a qcow2 disk image, its build succeeded and pinned.
    fn pinned() -> Observed {
        let mut config = config("RUN true\n");
        config.spec.disk_image = Some(DiskImage::default());
        let mut o = observed(config);
        o.builds = vec![created(&o)];
        o.job = succeeded_job();
        o.image_check = present(&o);
        o
    }

    fn disk_status(o: &Observed) -> Option<DiskImageStatus> {
        o.builds[0].status.as_ref()?.disk_image.clone()
    }

    fn disk_success() -> JobObservation {
        JobObservation::Succeeded {
            attempts: 1,
            message: Some(TerminationMessage::Success {
                digest: format!("sha256:{}", "d".repeat(64)),
                size_bytes: 700 << 20,
                phases: vec![PhaseTiming {
                    phase: "pull".into(),
                    start_ms: 1_000,
                    end_ms: 30_000,
                }],
                boot_check: None,
                files: vec![DiskImageFile {
                    format: DiskImageFormat::Qcow2,
                    manifest: format!("sha256:{}", "e".repeat(64)),
                    size_bytes: 700 << 20,
                }],
            }),
        }
    }

    #[test]
    fn the_pin_starts_the_disk_image_job_once_with_no_credential_where_the_image_runs() {
        let o = pinned();
        let p = plan(&o, &Settings::for_tests());
        assert!(p.machine_config.is_some(), "pinned in the same round");
        let objects = p.disk_image_objects.as_ref().expect("disk image objects");
        let pod = objects
            .job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        let init = pod.init_containers.as_ref().unwrap();
        let names: Vec<&str> = init
            .iter()
            .chain(&pod.containers)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["pull", "disk", "push"]);
        let disk = &init[1];
        let mounts: Vec<&str> = disk
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.as_str())
            .collect();
        assert!(!mounts.contains(&"push-auth"), "{mounts:?}");
        let env = |name: &str| {
            pod.containers[0]
                .env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
                .unwrap_or_default()
        };
        assert!(
            env("STRATA_IMAGE").ends_with("-disk"),
            "{}",
            env("STRATA_IMAGE")
        );
        assert_eq!(
            env("STRATA_SOURCE_IMAGE"),
            format!("registry.example.com/strata/os@{DIGEST}")
        );
        assert_eq!(env("STRATA_DISK_PLAN"), r#"{"formats":["Qcow2"]}"#);
        let storage = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "storage")
            .unwrap();
        assert!(storage.empty_dir.is_some(), "never the shared cache claim");
        let status = applied(o.clone(), &p);
        let disk = disk_status(&status).expect("diskImage in the build's status");
        assert_eq!(disk.phase, DiskImagePhase::Building);
        assert_eq!(events_of(&p, "DiskImageStarted").len(), 1);

        // The next round, its Job running, writes nothing about it again.
        let mut o = status;
        o.job = JobObservation::Missing;
        o.disk_job = JobObservation::Running {
            step: None,
            attempts: 1,
            waiting: None,
        };
        o.jobs = vec![objects.job.clone()];
        let p = plan(&o, &Settings::for_tests());
        assert!(p.disk_image_objects.is_none());
        assert!(p.build_status.is_empty(), "{:?}", p.build_status);
        assert!(p.delete_jobs.is_empty(), "its Job runs on");
    }

    #[test]
    fn a_config_without_disk_image_makes_none() {
        let mut o = pinned();
        o.config.spec.disk_image = None;
        let p = plan(&o, &Settings::for_tests());
        assert!(p.disk_image_objects.is_none());
        assert!(disk_status(&applied(o, &p)).is_none());
    }

    /// `pinned()` one round on: the disk image Job exists and `job` is what it did.
    fn ended(job: JobObservation) -> (Observed, super::super::Plan) {
        let o = pinned();
        let first = plan(&o, &Settings::for_tests());
        let mut o = applied(o, &first);
        o.job = JobObservation::Missing;
        o.jobs = vec![first.disk_image_objects.unwrap().job];
        o.build_secrets = [names::disk_image_secret(
            o.builds[0].metadata.name.as_deref().unwrap(),
        )]
        .into();
        o.disk_job = job;
        let p = plan(&o, &Settings::for_tests());
        (o, p)
    }

    #[test]
    fn a_pushed_disk_image_is_named_by_digest_and_its_job_and_secret_go() {
        let (o, p) = ended(disk_success());
        let disk = disk_status(&applied(o.clone(), &p)).unwrap();
        assert_eq!(disk.phase, DiskImagePhase::Succeeded);
        assert_eq!(
            disk.image.as_deref(),
            Some(format!("registry.example.com/strata/os@sha256:{}", "d".repeat(64)).as_str())
        );
        assert_eq!(disk.files.len(), 1);
        assert_eq!(disk.seconds, Some(29));
        assert_eq!(events_of(&p, "DiskImageReady").len(), 1);
        assert_eq!(p.metrics.disk_image, Some((true, 29.0)));
        let job = o.jobs[0].metadata.name.clone().unwrap();
        assert_eq!(p.delete_jobs, vec![job]);
        assert_eq!(p.delete_secrets.len(), 1);
        assert!(p.machine_config.is_none(), "the pool was pinned already");
    }

    #[test]
    fn a_failed_disk_image_says_why_keeps_its_job_and_never_touches_the_pool() {
        let (o, p) = ended(JobObservation::Failed {
            attempts: 1,
            reason: "PodFailurePolicy".into(),
            message: "the disk step failed".into(),
            termination: Some(TerminationMessage::Failure {
                class: FailureClass::Terminal,
                reason: "DiskImageFailed".into(),
                message: "the image cannot boot: no initramfs".into(),
                log_tail: String::new(),
                boot_check: None,
            }),
            killed: None,
            raw_message: String::new(),
        });
        let after = applied(o, &p);
        let disk = disk_status(&after).unwrap();
        assert_eq!(disk.phase, DiskImagePhase::Failed);
        assert_eq!(disk.failure.as_ref().unwrap().reason, "DiskImageFailed");
        assert_eq!(events_of(&p, "DiskImageFailed").len(), 1);
        assert!(p.delete_jobs.is_empty(), "kept for its logs");
        assert_eq!(p.delete_secrets.len(), 1);
        assert!(p.machine_config.is_none());
        assert_eq!(
            after.builds[0].phase(),
            Some(strata_crds::BuildPhase::Succeeded),
            "the build stays Succeeded"
        );
        // Ended: the next round starts no other.
        let mut again = after;
        again.disk_job = JobObservation::Missing;
        let p = plan(&again, &Settings::for_tests());
        assert!(p.disk_image_objects.is_none() && p.build_status.is_empty());
    }

    #[test]
    fn a_missing_disk_image_job_is_made_again() {
        let (_, p) = ended(JobObservation::Missing);
        assert!(p.disk_image_objects.is_some());
        assert!(p.build_status.is_empty());
    }
}
