//! A build's status from its Job and builder pods: what the Job is doing (read from the objects,
//! purely) and the status that follows.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use strata_crds::contract::{PhaseTiming, TerminationMessage, builder_pod};
use strata_crds::{
    BuildFailure, BuildPhase, BuilderReference, ImageBuilderType, MachineOSBuild,
    MachineOSBuildStatus, ObjectReference,
};

use super::{AuthProblem, BuildAuth, EventType, Planner, placement};
use crate::builder::redact::Redactor;
use crate::controller::conditions::{end_after, set};
use crate::controller::environment::Environment;
use crate::controller::names;
use crate::controller::objects::{BuildObjects, build_objects};
use crate::controller::registry_client::ImageCheck;
use crate::render::Rendered;

/// The failure reason of a build whose image did not boot (the builder's boot step).
const BOOT_FAILED: &str = "BootFailed";

/// Waiting reasons of a builder container that will not start by itself: an image that cannot be
/// pulled, a missing ConfigMap or Secret.
const STUCK_REASONS: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A builder pod that cannot start, as the kubelet reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the builder Job of the current build is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum JobObservation {
    Missing,
    Running {
        attempts: i32,
        waiting: Option<Waiting>,
        /// The step (container) running in the newest pod, when one runs.
        step: Option<String>,
    },
    Succeeded {
        attempts: i32,
        message: Option<TerminationMessage>,
    },
    Failed {
        attempts: i32,
        reason: String,
        message: String,
        termination: Option<TerminationMessage>,
        /// Why the kubelet ended the failing container (e.g. OOMKilled), and its raw message
        /// (the end of its log when it wrote no termination message).
        killed: Option<String>,
        raw_message: String,
    },
}

/// One ended builder container: (its step, finished at, exit code, termination message,
/// kubelet's reason).
struct Ended {
    /// The container's name: the step it ran ([`builder_pod::STEPS`]).
    step: String,
    finished: String,
    exit_code: i32,
    message: Option<String>,
    reason: Option<String>,
}

fn ended_containers(pods: &[&Pod]) -> Vec<Ended> {
    let mut ended: Vec<Ended> = pods
        .iter()
        .filter_map(|pod| pod.status.as_ref())
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .filter_map(|c: &ContainerStatus| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            Some(Ended {
                step: c.name.clone(),
                finished: t
                    .finished_at
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
                exit_code: t.exit_code,
                message: t.message.clone(),
                reason: t.reason.clone(),
            })
        })
        .collect();
    ended.sort_by(|a, b| a.finished.cmp(&b.finished));
    ended
}

/// The success message of the push step, which alone pushes and alone may report a digest.
/// Fragment code runs in the build step and can write that step's termination log: a message
/// with a digest from any other step is not a success, whatever it says.
fn success_message(ended: &[Ended]) -> Option<TerminationMessage> {
    ended
        .iter()
        .rev()
        .filter(|e| e.step == builder_pod::PUSH && e.exit_code == 0)
        .filter_map(|e| e.message.as_deref().and_then(TerminationMessage::parse))
        .find(|m| matches!(m, TerminationMessage::Success { .. }))
}

/// The waiting reason of a builder container that is stuck, in a pod still running; else the
/// scheduler's reason when no node can take a pod (its node selector, a taint, the cache claim's
/// node, requests no node has room for): it may fit later, but the operator should know why it
/// waits.
fn stuck(pods: &[&Pod]) -> Option<Waiting> {
    let live: Vec<_> = pods
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|phase| phase == "Pending" || phase == "Running")
        })
        .filter_map(|p| p.status.as_ref())
        .collect();
    container_stuck(&live).or_else(|| unschedulable(&live))
}

/// The reason the scheduler gives for not placing a pod.
pub(super) const UNSCHEDULABLE: &str = "Unschedulable";

fn unschedulable(live: &[&PodStatus]) -> Option<Waiting> {
    live.iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some(UNSCHEDULABLE)
        })
        .map(|c| Waiting {
            reason: UNSCHEDULABLE.into(),
            message: c.message.clone().unwrap_or_default(),
        })
}

fn container_stuck(live: &[&PodStatus]) -> Option<Waiting> {
    live.iter()
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| STUCK_REASONS.contains(&r))
        })
        .map(|w| Waiting {
            reason: w.reason.clone().unwrap_or_default(),
            message: w.message.clone().unwrap_or_default(),
        })
}

/// A Job with no pod for longer than the Job controller takes to make one.
fn no_pod(job: &Job, pods: &[&Pod], now: Timestamp) -> Option<Waiting> {
    let created = job.metadata.creation_timestamp.as_ref()?.0;
    let age = now.duration_since(created).as_secs();
    (pods.is_empty() && age > NO_POD_GRACE_SECONDS).then(|| Waiting {
        reason: NO_POD_CREATED.into(),
        message: format!(
            "Job {} has made no pod in {age} s; its FailedCreate Events say why (the SCC, a \
             ResourceQuota, an admission policy)",
            job.metadata.name.as_deref().unwrap_or_default()
        ),
    })
}

/// The step running in the newest of `pods`: its init container (pull, build, boot) or
/// container (push) that runs now.
fn running_step(pods: &[&Pod]) -> Option<String> {
    let newest = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone())?;
    let status = newest.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .map(|c| c.name.clone())
}

/// How long a Job may be without a pod before Strata says so: the Job controller makes one within
/// a second or two, and again at once after an eviction.
const NO_POD_GRACE_SECONDS: i64 = 30;

/// How often a build whose pod runs no step yet is looked at again.
const NO_POD_RECHECK_SECONDS: u64 = 15;

/// The build's ConfigMaps, Secret and Job as the settings and the cluster make them now; the
/// auth problem when the credentials cannot be read.
pub(super) fn desired_objects<'a>(
    planner: &Planner<'a>,
    build: &MachineOSBuild,
    rendered: &Rendered,
) -> Result<BuildObjects, &'a AuthProblem> {
    let observed = planner.observed;
    let BuildAuth { push, base } = observed.auth.as_ref()?;
    let environment = observed
        .environment
        .for_builds(observed.config.spec.mounts_entitlement());
    let boot = strata_crds::contract::BootPlan::of(
        observed.config.spec.boot_check.as_ref(),
        observed.base_failed_units.clone(),
    );
    Ok(build_objects(
        build,
        &rendered.containerfile,
        push,
        base.as_deref(),
        &environment,
        boot.as_ref(),
        planner.settings,
    ))
}

/// The reason for a Job that has made no pod for [`NO_POD_GRACE_SECONDS`]: its pod is refused at
/// creation (the SCC, a ResourceQuota, an admission policy; the Job's `FailedCreate` Events).
pub(super) const NO_POD_CREATED: &str = "NoPodCreated";

/// What `job` and its `pods` say about the build at `now` (pure: read from the cached objects).
pub fn job_observation(job: Option<&Job>, pods: &[&Pod], now: Timestamp) -> JobObservation {
    let Some(job) = job else {
        return JobObservation::Missing;
    };
    let status = job.status.clone().unwrap_or_default();
    let attempts =
        status.active.unwrap_or(0) + status.failed.unwrap_or(0) + status.succeeded.unwrap_or(0);
    let condition = |ty: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == ty && c.status == "True")
            .cloned()
    };
    let ended = ended_containers(pods);
    if condition("Complete").is_some() {
        return JobObservation::Succeeded {
            attempts,
            message: success_message(&ended),
        };
    }
    let Some(failed) = condition("Failed") else {
        // A builder that exited 0 with its digest is done: acting on it now saves the ~2 s the
        // Job controller takes to mark the Job Complete (see bench/RESULTS.md).
        return match success_message(&ended) {
            Some(message) => JobObservation::Succeeded {
                attempts: attempts.max(1),
                message: Some(message),
            },
            None => JobObservation::Running {
                attempts: attempts.max(1),
                waiting: stuck(pods).or_else(|| no_pod(job, pods, now)),
                step: running_step(pods),
            },
        };
    };
    let last_failure = ended.iter().rev().find(|e| e.exit_code != 0);
    JobObservation::Failed {
        attempts,
        reason: failed.reason.unwrap_or_else(|| "JobFailed".into()),
        message: failed.message.unwrap_or_default(),
        termination: last_failure
            .and_then(|e| e.message.as_deref())
            .and_then(TerminationMessage::parse),
        killed: last_failure.and_then(|e| e.reason.clone()),
        raw_message: last_failure
            .and_then(|e| e.message.clone())
            .unwrap_or_default(),
    }
}

/// Job reference recorded in the build's status.
pub fn builder_reference(namespace: &str, build: &MachineOSBuild) -> BuilderReference {
    BuilderReference {
        image_builder_type: ImageBuilderType::Job,
        job: Some(ObjectReference {
            group: "batch".into(),
            resource: "jobs".into(),
            namespace: Some(namespace.into()),
            name: names::job(build),
        }),
    }
}

/// The next status of the current build, recorded in the plan with its Events and metrics.
pub(super) fn next(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    rendered: &Rendered,
) -> MachineOSBuildStatus {
    let old = build.status.clone().unwrap_or_default();
    let name = build.metadata.name.clone().unwrap_or_default();
    let mut next = match old.phase() {
        Some(phase) if phase.is_terminal() => old.clone(),
        // Its Job starts the build: not while the pool is degraded (pool_wait.rs). Nothing of
        // the build changes meanwhile (its status would name a Job that does not exist).
        _ if observed_job_missing(planner)
            && planner.held_by_pool(format!("the builder Job of build {name}")) =>
        {
            return old;
        }
        _ => follow_job(planner, build, &old, rendered),
    };
    let phase = next.phase().unwrap_or(BuildPhase::Prepared);
    if next.builder.is_none() && !phase.is_terminal() {
        next.builder = Some(builder_reference(&planner.settings.namespace, build));
    }
    if next != old {
        planner.plan.build_status.push((name, next.clone()));
    }
    let now = planner.observed.now.as_second() as f64;
    let since_start = next
        .build_start
        .as_ref()
        .map(|s| now - s.0.as_second() as f64);
    if phase == BuildPhase::Building && old.phase() != Some(BuildPhase::Building) {
        planner.plan.metrics.started_after = Some(since_start.unwrap_or(0.0));
    }
    if phase.is_terminal() && old.phase() != Some(phase) {
        planner.plan.metrics.ended = Some((phase, since_start));
    }
    next
}

fn observed_job_missing(planner: &Planner<'_>) -> bool {
    planner.observed.job == JobObservation::Missing
}

/// How long a Job may run before its ConfigMaps and Secret, missing from the caches, count as
/// missing: they are written together with the Job, and their watch may trail the Job's.
const OBJECTS_GRACE_SECONDS: u64 = 10;

/// Plans the build's objects: its ConfigMaps, its credentials Secret and its Job.
fn make_objects(planner: &mut Planner<'_>, build: &MachineOSBuild, rendered: &Rendered) {
    match desired_objects(planner, build, rendered) {
        Ok(objects) => planner.plan.build_objects = Some(objects),
        Err(problem) => {
            planner.status.set(
                strata_crds::condition_types::DEGRADED,
                true,
                problem.reason.as_str(),
                problem.message.clone(),
            );
            planner.requeue(60);
        }
    }
}

/// A running build's ConfigMaps and Secret are made again when they are missing: apply writes
/// them at the same time as the Job, so one whose write failed (or that someone deleted) would
/// leave the builder pod waiting for its volume. The Job's create then meets the Job (a 409).
fn remake_missing_objects(planner: &mut Planner<'_>, build: &MachineOSBuild, rendered: &Rendered) {
    let observed = planner.observed;
    let name = build.metadata.name.clone().unwrap_or_default();
    let config_maps = [
        names::containerfile_configmap(&name),
        names::environment_configmap(&name),
    ];
    let missing = config_maps
        .iter()
        .any(|cm| !observed.build_config_maps.contains(cm))
        || !observed
            .build_secrets
            .contains(&names::credentials_secret(&name));
    if !missing {
        return;
    }
    let job_name = names::job(build);
    let job_age = observed
        .jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(job_name.as_str()))
        .and_then(|j| j.metadata.creation_timestamp.as_ref())
        .map(|created| observed.now.as_second() - created.0.as_second());
    match job_age {
        Some(age) if age >= OBJECTS_GRACE_SECONDS as i64 => make_objects(planner, build, rendered),
        _ => planner.requeue(OBJECTS_GRACE_SECONDS),
    }
}

/// The build's next status from what its Job is doing.
fn follow_job(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    old: &MachineOSBuildStatus,
    rendered: &Rendered,
) -> MachineOSBuildStatus {
    let observed = planner.observed;
    let now = observed.now;
    let mut next = match &observed.job {
        JobObservation::Missing => {
            make_objects(planner, build, rendered);
            prepared(old, &rendered.containerfile_sha256(), now)
        }
        JobObservation::Running {
            attempts,
            waiting,
            step,
        } => {
            let mut next = running(planner, build, old, rendered, *attempts, waiting.as_ref());
            if let Some(waiting) = waiting {
                placement::replace_if_moved(planner, build, rendered, waiting);
            }
            if step.is_none() && waiting.is_none() {
                // No step runs yet: a pod refused at creation makes no event to wake on.
                planner.requeue(NO_POD_RECHECK_SECONDS);
            }
            next.current_step = step.clone();
            next
        }
        JobObservation::Succeeded { attempts, message } => {
            succeeded(planner, build, old, rendered, *attempts, message.as_ref())
        }
        JobObservation::Failed {
            attempts,
            reason,
            message,
            termination,
            killed,
            raw_message,
        } => match (termination, killed.as_deref()) {
            (
                Some(TerminationMessage::Failure {
                    reason,
                    message,
                    log_tail,
                    boot_check,
                    ..
                }),
                _,
            ) => {
                let mut next = failed(planner, build, *attempts, reason, message, log_tail);
                record_boot_check(planner, &mut next, boot_check.as_deref());
                next
            }
            (_, Some("OOMKilled")) => failed(
                planner,
                build,
                *attempts,
                "OOMKilled",
                &format!(
                    "a builder step ran out of memory (limit {}); raise --builder-memory-limit",
                    planner.settings.builder_resources.memory_limit
                ),
                raw_message,
            ),
            _ => failed(planner, build, *attempts, reason, message, raw_message),
        },
    };
    // A step runs only while the Job runs.
    if !matches!(observed.job, JobObservation::Running { .. }) {
        next.current_step = None;
    }
    next
}

/// The builder pod runs (or cannot start, and says why).
fn running(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    old: &MachineOSBuildStatus,
    rendered: &Rendered,
    attempts: i32,
    waiting: Option<&Waiting>,
) -> MachineOSBuildStatus {
    let now = planner.observed.now;
    let name = build.metadata.name.clone().unwrap_or_default();
    remake_missing_objects(planner, build, rendered);
    let message = match waiting {
        Some(w) => format!("builder pod attempt {attempts} cannot start: {}", w.reason),
        None => format!("builder pod attempt {attempts} is running"),
    };
    let mut next = with_phase(old, BuildPhase::Building, "Running", &message, now);
    next.attempts = Some(attempts);
    if old.phase() != Some(BuildPhase::Building) {
        planner.event(
            EventType::Normal,
            "BuildStarted",
            "StartBuild",
            format!("build {name}: builder pod started"),
        );
    }
    if let Some(waiting) = waiting {
        let note = format!(
            "build {name}: the builder pod cannot start ({}): {}",
            waiting.reason, waiting.message
        );
        let known = old
            .conditions
            .iter()
            .any(|c| c.message.contains(&waiting.reason));
        if !known {
            planner.event(EventType::Warning, "BuilderCannotStart", "StartBuild", note);
        }
        planner.plan.metrics.waiting = Some(waiting.reason.clone());
        planner.status.waiting_message = Some(waiting.message.clone());
    }
    next
}

/// The builder succeeded: the build succeeds once the registry serves the image it reported,
/// carrying this build's inputs hash.
fn succeeded(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    old: &MachineOSBuildStatus,
    rendered: &Rendered,
    attempts: i32,
    message: Option<&TerminationMessage>,
) -> MachineOSBuildStatus {
    let observed = planner.observed;
    let Some(TerminationMessage::Success {
        digest,
        phases,
        boot_check,
        ..
    }) = message
    else {
        return failed(
            planner,
            build,
            attempts,
            "NoDigest",
            "the builder succeeded without reporting a digest",
            "",
        );
    };
    let image = match reported_image(build, digest) {
        Ok(image) => image,
        Err(why) => return failed(planner, build, attempts, "DigestMismatch", &why, ""),
    };
    // A pre-built image was made elsewhere: it carries no inputs hash of Strata's.
    let seeded = build.pre_built_image().is_some();
    match &observed.image_check {
        Some(ImageCheck::Present { inputs_hash })
            if seeded || inputs_hash.as_deref() == Some(rendered.inputs_hash.as_str()) =>
        {
            let mut next = verified(planner, build, attempts, &image, phases);
            record_boot_check(planner, &mut next, boot_check.as_deref());
            next
        }
        Some(ImageCheck::Present { inputs_hash }) => failed(
            planner,
            build,
            attempts,
            "DigestMismatch",
            &format!(
                "the image the builder reported, {image}, carries inputs hash {} instead \
                 of this build's {}: it is not this build's image and is never pinned",
                inputs_hash.as_deref().unwrap_or("<none>"),
                rendered.inputs_hash
            ),
            "",
        ),
        Some(ImageCheck::Refused(why)) => failed(
            planner,
            build,
            attempts,
            "ImageUnreadable",
            &format!(
                "the registry's answer about {image} is refused, so it is never pinned: {why}"
            ),
            "",
        ),
        Some(ImageCheck::Missing { misses, .. }) if *misses >= 3 => failed(
            planner,
            build,
            attempts,
            "DigestNotFound",
            &format!("the builder reported {image}, but the registry does not have it"),
            "",
        ),
        Some(ImageCheck::Missing { misses, .. }) => {
            planner.requeue(20);
            planner.status.verifying = Some(format!(
                "pushed {image}; the registry does not serve it yet ({misses} checks), retrying"
            ));
            old.clone()
        }
        Some(ImageCheck::Unknown(why)) => {
            planner.requeue(15);
            planner.status.verifying = Some(format!(
                "pushed {image}; cannot verify it in the registry yet, retrying: {why}"
            ));
            old.clone()
        }
        None => {
            planner.requeue(15);
            old.clone()
        }
    }
}

/// The image a succeeded builder reports: its push repository at the reported digest; for a
/// seeding build the pre-built image, whose digest the builder must report (else why not).
fn reported_image(build: &MachineOSBuild, digest: &str) -> Result<String, String> {
    match build.pre_built_image() {
        Some(pre_built) if pre_built.ends_with(&format!("@{digest}")) => Ok(pre_built.to_string()),
        Some(pre_built) => Err(format!(
            "the builder reported {digest}, not the pre-built image {pre_built}: it is never pinned"
        )),
        None => Ok(format!(
            "{}@{digest}",
            names::repository(&build.spec.rendered_image_push_spec)
        )),
    }
}

/// The registry serves the builder's image with this build's inputs: the build succeeded.
fn verified(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    attempts: i32,
    image: &str,
    phases: &[PhaseTiming],
) -> MachineOSBuildStatus {
    let now = planner.observed.now;
    let name = build.metadata.name.clone().unwrap_or_default();
    let mut next = ended(
        build,
        BuildPhase::Succeeded,
        "Pushed",
        &format!("pushed and verified {image}"),
        now,
    );
    next.attempts = Some(attempts);
    next.digested_image_push_spec = Some(image.to_string());
    next.phases = phases
        .iter()
        .map(|p| strata_crds::BuildPhaseTiming {
            phase: p.phase.chars().take(16).collect(),
            start_ms: p.start_ms,
            end_ms: p.end_ms,
        })
        .take(8)
        .collect();
    planner.plan.metrics.phase_seconds = phases
        .iter()
        .map(|p| {
            (
                p.phase.clone(),
                (p.end_ms - p.start_ms).max(0) as f64 / 1000.0,
            )
        })
        .collect();
    planner.event(
        EventType::Normal,
        "BuildSucceeded",
        "Verify",
        format!("build {name} pushed {image}"),
    );
    next
}

/// The boot check's result in the build's status and metrics (a build whose check was off has
/// none).
fn record_boot_check(
    planner: &mut Planner<'_>,
    next: &mut MachineOSBuildStatus,
    result: Option<&strata_crds::BootCheckResult>,
) {
    let Some(result) = result else { return };
    next.boot_check = Some(result.clone());
    planner.plan.metrics.boot_check = Some((
        result.passed,
        f64::from(result.seconds),
        result.accelerator.clone(),
    ));
}

/// What the controller hides in a failure it records: the cluster proxy's credentials and the
/// entitlement's files, as the builder steps do. The steps redact their own messages; this
/// covers a message that is not theirs (a termination log written after the step's own, by a
/// process a RUN step left behind; the end of a log the kubelet took for a message).
pub(super) fn failure_redactor(env: &Environment) -> Redactor {
    let entitlement: Vec<String> = env
        .entitlement
        .iter()
        .flatten()
        .map(|(_, value)| String::from_utf8_lossy(&value.0).into_owned())
        .collect();
    Redactor::default()
        .with_proxies([env.proxy.http.as_str(), env.proxy.https.as_str()])
        .with_file_texts(entitlement.iter().map(String::as_str))
}

fn failed(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    attempts: i32,
    reason: &str,
    message: &str,
    log_tail: &str,
) -> MachineOSBuildStatus {
    let name = build.metadata.name.clone().unwrap_or_default();
    let redactor = failure_redactor(&planner.observed.environment);
    let (message, log_tail) = (redactor.redact(message), redactor.redact(log_tail));
    let (message, log_tail) = (message.as_str(), log_tail.as_str());
    let mut next = ended(
        build,
        BuildPhase::Failed,
        reason,
        message,
        planner.observed.now,
    );
    next.attempts = Some(attempts);
    next.failure = Some(BuildFailure {
        reason: reason.chars().take(128).collect(),
        message: strata_crds::contract::keep_tail(message, 4000),
        log_tail: strata_crds::contract::keep_tail(log_tail, 4000),
    });
    // A boot failure has an Event reason of its own: the one an administrator who lost a node
    // to a bad image watches for.
    let event_reason = if reason == BOOT_FAILED {
        BOOT_FAILED
    } else {
        "BuildFailed"
    };
    planner.event(
        EventType::Warning,
        event_reason,
        "FailBuild",
        format!("build {name} failed ({reason}): {message}"),
    );
    next
}

fn with_phase(
    old: &MachineOSBuildStatus,
    phase: BuildPhase,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> MachineOSBuildStatus {
    let mut next = old.clone();
    for p in BuildPhase::ALL {
        let (reason, message) = if p == phase {
            (reason, message)
        } else {
            ("", "")
        };
        let reason = if reason.is_empty() {
            phase.condition_type()
        } else {
            reason
        };
        set(
            &mut next.conditions,
            p.condition_type(),
            p == phase,
            reason,
            message,
            None,
            now,
        );
    }
    next
}

pub fn prepared(
    old: &MachineOSBuildStatus,
    containerfile_sha256: &str,
    now: Timestamp,
) -> MachineOSBuildStatus {
    let mut next = with_phase(
        old,
        BuildPhase::Prepared,
        "ObjectsCreated",
        "waiting for the builder pod",
        now,
    );
    if next.build_start.is_none() {
        next.build_start = Some(Time(now));
    }
    if !containerfile_sha256.is_empty() {
        next.containerfile_sha256 = Some(containerfile_sha256.to_string());
    }
    next
}

/// A terminal status; start and end are filled so the CRD's ordering rule holds.
pub fn ended(
    build: &MachineOSBuild,
    phase: BuildPhase,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> MachineOSBuildStatus {
    let old = build.status.clone().unwrap_or_default();
    let mut next = with_phase(&old, phase, reason, message, now);
    if next.build_start.is_none() {
        next.build_start = build
            .metadata
            .creation_timestamp
            .clone()
            .or(Some(Time(now)));
    }
    next.build_end = Some(end_after(next.build_start.as_ref(), now));
    if phase == BuildPhase::Interrupted {
        next.failure = Some(BuildFailure {
            reason: reason.into(),
            message: message.into(),
            log_tail: String::new(),
        });
    }
    next
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const PUSHED: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const FORGED: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn success(digest: &str) -> String {
        format!(r#"{{"digest":"{digest}","sizeBytes":1}}"#)
    }

    /// A container status: `None` exit code for one still running.
    fn step(name: &str, exit: Option<i32>, finished: &str, message: &str) -> Value {
        let state = match exit {
            Some(code) => json!({"terminated": {"exitCode": code, "finishedAt": finished,
                "message": message}}),
            None => json!({"running": {}}),
        };
        json!({"name": name, "image": "b", "imageID": "", "ready": false, "restartCount": 0,
            "state": state})
    }

    fn pod(init: Vec<Value>, containers: Vec<Value>) -> Pod {
        serde_json::from_value(json!({"status": {"phase": "Running",
            "initContainerStatuses": init, "containerStatuses": containers}}))
        .unwrap()
    }

    fn job(condition: Option<&str>) -> Job {
        let conditions: Vec<Value> = condition
            .map(|c| json!({"type": c, "status": "True"}))
            .into_iter()
            .collect();
        serde_json::from_value(json!({"status": {"active": 1, "conditions": conditions}})).unwrap()
    }

    #[test]
    fn the_running_step_is_the_container_that_runs_now() {
        let at = |init: Vec<Value>, containers: Vec<Value>| match job_observation(
            Some(&job(None)),
            &[&pod(init, containers)],
            Timestamp::UNIX_EPOCH,
        ) {
            JobObservation::Running { step, .. } => step,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            at(vec![step("pull", None, "", "")], vec![]).as_deref(),
            Some("pull")
        );
        let pulled = step("pull", Some(0), "2026-01-01T00:00:01Z", "");
        assert_eq!(
            at(vec![pulled.clone(), step("build", None, "", "")], vec![]).as_deref(),
            Some("build")
        );
        let built = step("build", Some(0), "2026-01-01T00:00:02Z", "");
        assert_eq!(
            at(
                vec![pulled.clone(), built.clone()],
                vec![step("push", None, "", "")]
            )
            .as_deref(),
            Some("push")
        );
        // Between two steps nothing runs.
        assert_eq!(at(vec![pulled], vec![]), None);
    }

    #[test]
    fn a_digest_forged_in_the_build_step_is_no_success() {
        // RUN wrote a success message with a digest into the build step's termination log; the
        // push step is still running.
        let forged = pod(
            vec![
                step("pull", Some(0), "2026-01-01T00:00:01Z", ""),
                step("build", Some(0), "2026-01-01T00:00:02Z", &success(FORGED)),
            ],
            vec![step("push", None, "", "")],
        );
        assert!(
            matches!(
                job_observation(Some(&job(None)), &[&forged], Timestamp::UNIX_EPOCH),
                JobObservation::Running { .. }
            ),
            "a build step's digest is taken as the build's"
        );
        // The Job completes: the digest is the push step's, even when the forged message is the
        // last one written.
        let pushed = pod(
            vec![
                step("pull", Some(0), "2026-01-01T00:00:01Z", &success(FORGED)),
                step("build", Some(0), "2026-01-01T00:00:09Z", &success(FORGED)),
            ],
            vec![step(
                "push",
                Some(0),
                "2026-01-01T00:00:03Z",
                &success(PUSHED),
            )],
        );
        for condition in [None, Some("Complete")] {
            match job_observation(Some(&job(condition)), &[&pushed], Timestamp::UNIX_EPOCH) {
                JobObservation::Succeeded {
                    message: Some(TerminationMessage::Success { digest, .. }),
                    ..
                } => assert_eq!(digest, PUSHED),
                other => panic!("{other:?}"),
            }
        }
        // A Job complete with no message from the push step reports no digest at all.
        let no_push_message = pod(
            vec![step(
                "build",
                Some(0),
                "2026-01-01T00:00:02Z",
                &success(FORGED),
            )],
            vec![step("push", Some(0), "2026-01-01T00:00:03Z", "")],
        );
        assert_eq!(
            job_observation(
                Some(&job(Some("Complete"))),
                &[&no_push_message],
                Timestamp::UNIX_EPOCH
            ),
            JobObservation::Succeeded {
                attempts: 1,
                message: None
            }
        );
    }

    #[test]
    fn a_recorded_failure_hides_the_proxy_s_credentials_and_the_entitlement() {
        use k8s_openapi::ByteString;
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpQIBAAKCAQEA3+Prmbmbz+gXVoPU\n-----END RSA PRIVATE KEY-----\n";
        let env = Environment {
            proxy: crate::controller::environment::Proxy {
                http: "http://jane:s3cr3t-pw@proxy:3128".into(),
                https: String::new(),
                no: String::new(),
            },
            entitlement: Some(
                [(
                    "entitlement-key.pem".to_string(),
                    ByteString(key.as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Environment::default()
        };
        let redactor = failure_redactor(&env);
        let tail = redactor.redact(&format!(
            "HTTP_PROXY=http://jane:s3cr3t-pw@proxy:3128\n{key}"
        ));
        assert!(
            !tail.contains("s3cr3t-pw") && !tail.contains("MIIEpQIBAAKCAQEA3+Prmbmbz+gXVoPU"),
            "{tail}"
        );
        assert_eq!(
            failure_redactor(&Environment::default()).redact("a plain message"),
            "a plain message"
        );
    }

    #[test]
    fn a_push_step_that_failed_reports_its_failure_not_a_forged_success() {
        let failure = r#"{"class":"transient","reason":"PushFailed","message":"m","logTail":"t"}"#;
        let p = pod(
            vec![step(
                "build",
                Some(0),
                "2026-01-01T00:00:02Z",
                &success(FORGED),
            )],
            vec![step("push", Some(4), "2026-01-01T00:00:03Z", failure)],
        );
        match job_observation(Some(&job(Some("Failed"))), &[&p], Timestamp::UNIX_EPOCH) {
            JobObservation::Failed { termination, .. } => assert!(
                matches!(termination, Some(TerminationMessage::Failure { reason, .. }) if reason == "PushFailed")
            ),
            other => panic!("{other:?}"),
        }
        // Still running (the Job not failed yet): not a success either.
        assert!(matches!(
            job_observation(Some(&job(None)), &[&p], Timestamp::UNIX_EPOCH),
            JobObservation::Running { .. }
        ));
    }

    #[test]
    fn a_pod_no_node_can_take_is_waiting_with_the_schedulers_reason() {
        let message = "0/2 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity, 1 node(s) didn't match Pod's node affinity/selector.";
        let pending = |reason: &str, waiting: Option<&str>| -> Pod {
            let containers: Vec<Value> = waiting
                .map(|r| {
                    json!({"name": "push", "image": "b", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": r, "message": "m"}}})
                })
                .into_iter()
                .collect();
            serde_json::from_value(json!({"status": {"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": reason,
                    "message": message}],
                "containerStatuses": containers}}))
            .unwrap()
        };
        let waiting = |p: &Pod| match job_observation(Some(&job(None)), &[p], Timestamp::UNIX_EPOCH)
        {
            JobObservation::Running { waiting, .. } => waiting,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            waiting(&pending("Unschedulable", None)),
            Some(Waiting {
                reason: "Unschedulable".into(),
                message: message.into()
            })
        );
        // Not yet tried by the scheduler, or gated: nothing to say yet.
        assert_eq!(waiting(&pending("SchedulingGated", None)), None);
        // A container's own reason says more than the scheduler's (a pod placed before).
        assert_eq!(
            waiting(&pending("Unschedulable", Some("ImagePullBackOff"))).map(|w| w.reason),
            Some("ImagePullBackOff".into())
        );
    }

    #[test]
    fn a_job_without_a_pod_for_30_s_is_waiting_with_no_pod_created() {
        let created: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut refused = job(None);
        refused.metadata.name = Some("strata-build-x".into());
        refused.metadata.creation_timestamp = Some(Time(created));
        let at = |seconds: i64, pods: &[&Pod]| {
            let now = created + jiff::SignedDuration::from_secs(seconds);
            match job_observation(Some(&refused), pods, now) {
                JobObservation::Running { waiting, .. } => waiting,
                other => panic!("{other:?}"),
            }
        };
        // The Job controller's first moments: nothing to say.
        assert_eq!(at(30, &[]), None);
        let waiting = at(31, &[]).expect("no pod after 31 s");
        assert_eq!(waiting.reason, "NoPodCreated");
        assert!(
            waiting
                .message
                .contains("Job strata-build-x has made no pod in 31 s")
        );
        // A pod, even one not placed yet, is the pod's own story.
        let placed = pod(vec![step("pull", None, "", "")], vec![]);
        assert_eq!(at(300, &[&placed]), None);
    }
}
