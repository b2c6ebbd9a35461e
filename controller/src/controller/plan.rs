//! Plan (pure): from what was observed about one MachineOSConfig to what should exist — the
//! build of the current inputs, its status, the interrupted builds, the MachineConfig, the
//! MachineOSConfig's status and the Events to record. No I/O; most controller tests live here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde_json::Value;
use strata_crds::{
    BuildFailure, BuildPhase, BuilderReference, ImageBuilderType, LocalObjectName, MachineOSBuild,
    MachineOSBuildSpec, MachineOSBuildStatus, MachineOSConfig, MachineOSConfigStatus,
    ObjectReference, REBUILD_ANNOTATION, condition_types as ct,
};

use super::conditions::{end_after, is_true, set};
use super::objects::{self, CONFIG_LABEL, fit_63};
use super::settings::Settings;
use crate::builder::TerminationMessage;
use crate::render::{BuildInputs, render};

/// What the builder Job of the current build is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum JobObservation {
    Missing,
    Running {
        attempts: i32,
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
    },
}

/// Whether an image is in its registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageCheck {
    Present,
    Missing,
    Unknown(String),
}

/// Canonical `.dockerconfigjson` documents for a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildAuth {
    pub push: String,
    pub base: Option<String>,
}

/// Everything the planner needs about one MachineOSConfig.
#[derive(Clone, Debug)]
pub struct Observed {
    pub config: MachineOSConfig,
    /// The MachineConfigPool; None when it does not exist.
    pub pool: Option<Value>,
    /// The base image pinned by digest, or why it could not be resolved.
    pub base: Result<String, String>,
    /// The MachineOSBuilds of this MachineOSConfig.
    pub builds: Vec<MachineOSBuild>,
    /// The Job of the current inputs' build.
    pub job: JobObservation,
    pub auth: Result<BuildAuth, String>,
    /// Registry check of the current build's image (its digest from the builder or its status).
    pub image_check: Option<ImageCheck>,
    /// The pool's pinning MachineConfig as it is now (None when absent).
    pub machine_config: Option<Value>,
    pub now: Timestamp,
}

/// The objects a build needs; the apply layer makes them once the build exists (they are owned
/// by it).
#[derive(Clone, Debug, PartialEq)]
pub struct BuildObjectsRequest {
    pub build: String,
    pub containerfile: String,
    pub auth: BuildAuth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// What to do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The build of the current inputs, to create.
    pub create_build: Option<MachineOSBuild>,
    /// Its ConfigMap, Secrets and Job, to create when missing.
    pub build_objects: Option<BuildObjectsRequest>,
    /// Status to apply to builds (the current one, interrupted ones).
    pub build_status: Vec<(String, MachineOSBuildStatus)>,
    /// Builds whose Secrets are no longer needed.
    pub delete_secrets_of: Vec<String>,
    /// A build to delete so that the same inputs build again (rebuild, image gone, interrupted).
    pub delete_build: Option<String>,
    /// Old ended builds beyond the history limit.
    pub prune_builds: Vec<String>,
    /// The MachineConfig pinning the pool.
    pub machine_config: Option<Value>,
    pub config_status: MachineOSConfigStatus,
    pub remove_rebuild_annotation: bool,
    pub events: Vec<PlannedEvent>,
    /// Look again after this many seconds (waiting on something that sends no event).
    pub requeue_after_secs: Option<u64>,
    /// Why the pushed digest is not verified yet (the registry could not be asked).
    pub verifying: Option<String>,
    /// The build of the current inputs and its phase after this plan, for metrics.
    pub current_build: Option<(String, BuildPhase)>,
}

impl Plan {
    fn event(&mut self, warning: bool, reason: &'static str, note: impl Into<String>) {
        self.events.push(PlannedEvent {
            warning,
            reason,
            note: note.into(),
        });
    }
}

/// The planner. `settings` names the namespace of the builds' objects.
pub fn plan(observed: &Observed, settings: &Settings) -> Plan {
    let config = &observed.config;
    let name = config.metadata.name.clone().unwrap_or_default();
    let generation = config.metadata.generation;
    let now = observed.now;
    let mut plan = Plan {
        config_status: config.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    plan.config_status.observed_generation = generation;
    let pool_name = &config.spec.machine_config_pool.name;
    let status = |plan: &mut Plan, ty: &str, value: bool, reason: &str, message: String| {
        set(
            &mut plan.config_status.conditions,
            ty,
            value,
            reason,
            message,
            generation,
            now,
        );
    };

    let Some(pool) = &observed.pool else {
        let message =
            format!("MachineConfigPool {pool_name} does not exist; Strata builds once it does");
        if !is_true(&plan.config_status.conditions, ct::DEGRADED) {
            plan.event(true, "PoolNotFound", message.clone());
        }
        status(&mut plan, ct::DEGRADED, true, "PoolNotFound", message);
        status(
            &mut plan,
            ct::BUILDING,
            false,
            "PoolNotFound",
            String::new(),
        );
        return plan;
    };
    pool_updated(&mut plan, pool, generation, now);

    let base = match &observed.base {
        Ok(base) => base.clone(),
        Err(why) => {
            status(
                &mut plan,
                ct::DEGRADED,
                true,
                "BaseImageUnavailable",
                why.clone(),
            );
            plan.requeue_after_secs = Some(60);
            return plan;
        }
    };
    let inputs = BuildInputs::from_config(config, &base);
    let rendered = match render(&inputs) {
        Ok(rendered) => rendered,
        Err(err) => {
            let message = err.to_string();
            if plan
                .config_status
                .conditions
                .iter()
                .all(|c| c.message != message)
            {
                plan.event(true, "InvalidContainerfile", message.clone());
            }
            status(
                &mut plan,
                ct::DEGRADED,
                true,
                "InvalidContainerfile",
                message,
            );
            status(
                &mut plan,
                ct::BUILDING,
                false,
                "InvalidContainerfile",
                String::new(),
            );
            return plan;
        }
    };
    let build_name = rendered.build_name.clone();

    // One active build per pool: anything else still running is superseded.
    for old in observed
        .builds
        .iter()
        .filter(|b| b.metadata.name.as_deref() != Some(build_name.as_str()))
    {
        if old.phase().is_none_or(|p| !p.is_terminal()) {
            let old_name = old.metadata.name.clone().unwrap_or_default();
            let why = format!(
                "superseded by build {build_name}: the MachineOSConfig or its base image changed"
            );
            plan.build_status.push((
                old_name.clone(),
                ended(old, BuildPhase::Interrupted, "Superseded", &why, now),
            ));
            plan.delete_secrets_of.push(old_name.clone());
            plan.event(false, "BuildInterrupted", format!("build {old_name} {why}"));
        }
    }

    plan.prune_builds = prune(
        &observed.builds,
        &build_name,
        &plan.config_status,
        settings.build_history,
    );

    let rebuild = config
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(REBUILD_ANNOTATION));
    let Some(current) = observed
        .builds
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some(build_name.as_str()))
    else {
        let auth = match &observed.auth {
            Ok(auth) => auth.clone(),
            Err(why) => {
                status(
                    &mut plan,
                    ct::DEGRADED,
                    true,
                    "SecretUnavailable",
                    why.clone(),
                );
                plan.requeue_after_secs = Some(60);
                return plan;
            }
        };
        plan.create_build = Some(new_build(config, &inputs, &build_name));
        let initial = prepared(
            &MachineOSBuildStatus::default(),
            &rendered.containerfile_sha256(),
            now,
        );
        plan.build_status.push((build_name.clone(), initial));
        plan.build_objects = Some(BuildObjectsRequest {
            build: build_name.clone(),
            containerfile: rendered.containerfile,
            auth,
        });
        plan.event(
            false,
            "BuildCreated",
            format!("build {build_name} created for the current inputs"),
        );
        plan.current_build = Some((build_name.clone(), BuildPhase::Prepared));
        status(
            &mut plan,
            ct::BUILDING,
            true,
            "BuildPending",
            format!("build {build_name} is starting"),
        );
        status(&mut plan, ct::DEGRADED, false, "AsExpected", String::new());
        not_ready_while_building(&mut plan, &build_name, generation, now);
        if rebuild {
            plan.remove_rebuild_annotation = true;
        }
        return plan;
    };

    let phase = current.phase();
    if phase.is_some_and(BuildPhase::is_terminal)
        && (rebuild
            || phase == Some(BuildPhase::Interrupted)
            || observed.image_check == Some(ImageCheck::Missing))
    {
        let why = if rebuild {
            format!("rebuild requested with the {REBUILD_ANNOTATION} annotation")
        } else if phase == Some(BuildPhase::Interrupted) {
            "the inputs of an interrupted build are current again".to_string()
        } else {
            "its image is gone from the registry".to_string()
        };
        plan.delete_build = Some(build_name.clone());
        plan.event(
            false,
            "Rebuilding",
            format!("building {build_name} again: {why}"),
        );
        status(&mut plan, ct::BUILDING, true, "Rebuilding", why);
        return plan;
    }

    let old_status = current.status.clone().unwrap_or_default();
    let next = match phase {
        Some(BuildPhase::Succeeded) => old_status.clone(),
        Some(BuildPhase::Failed) | Some(BuildPhase::Interrupted) => old_status.clone(),
        None | Some(BuildPhase::Prepared) | Some(BuildPhase::Building) => follow_job(
            &mut plan,
            observed,
            current,
            &old_status,
            &rendered.containerfile,
            &build_name,
        ),
    };
    let mut next = next;
    let next_phase = next.phase().unwrap_or(BuildPhase::Prepared);
    if next.builder.is_none() && !next_phase.is_terminal() {
        next.builder = Some(builder_reference(&settings.namespace, current));
    }
    if next != old_status {
        plan.build_status.push((build_name.clone(), next.clone()));
    }
    if rebuild && !next_phase.is_terminal() {
        plan.remove_rebuild_annotation = true;
    }
    plan.current_build = Some((build_name.clone(), next_phase));

    match next_phase {
        BuildPhase::Succeeded => {
            let Some(image) = next.digested_image_push_spec.clone() else {
                return plan;
            };
            if plan.config_status.current_image_pull_spec.as_deref() != Some(image.as_str()) {
                plan.event(
                    false,
                    "PoolPinned",
                    format!("MachineConfigPool {pool_name} now uses {image}"),
                );
            }
            let selector = objects::pool_selector_labels(pool_name, pool);
            let desired = objects::machine_config(pool_name, &selector, &image, &name);
            // Steady state writes nothing: apply only when what we own differs.
            if !objects::machine_config_matches(observed.machine_config.as_ref(), &desired) {
                plan.machine_config = Some(desired);
            }
            plan.config_status.current_image_pull_spec = Some(image.clone());
            plan.config_status.machine_os_build = Some(build_ref(&build_name));
            status(
                &mut plan,
                ct::READY,
                true,
                "BuildSucceeded",
                format!("pool {pool_name} is pinned to {image}"),
            );
            status(
                &mut plan,
                ct::BUILDING,
                false,
                "BuildSucceeded",
                String::new(),
            );
            status(&mut plan, ct::DEGRADED, false, "AsExpected", String::new());
        }
        BuildPhase::Failed => {
            let failure = next.failure.clone().unwrap_or_default();
            let message = format!(
                "build {build_name} failed ({}): {}",
                failure.reason, failure.message
            );
            plan.config_status.machine_os_build = Some(build_ref(&build_name));
            let keeps = match &plan.config_status.current_image_pull_spec {
                Some(image) => format!("; the pool keeps {image}"),
                None => String::new(),
            };
            status(
                &mut plan,
                ct::READY,
                false,
                "BuildFailed",
                format!("{message}{keeps}"),
            );
            status(&mut plan, ct::BUILDING, false, "BuildFailed", String::new());
            status(&mut plan, ct::DEGRADED, true, "BuildFailed", message);
        }
        BuildPhase::Interrupted => {}
        BuildPhase::Prepared | BuildPhase::Building => {
            plan.config_status.machine_os_build = Some(build_ref(&build_name));
            let (reason, message) = match plan.verifying.clone() {
                Some(why) => ("VerifyingDigest", why),
                None => ("Building", format!("build {build_name} is {next_phase}")),
            };
            status(&mut plan, ct::BUILDING, true, reason, message);
            status(&mut plan, ct::DEGRADED, false, "AsExpected", String::new());
            not_ready_while_building(&mut plan, &build_name, generation, now);
        }
    }
    plan
}

/// While a build runs the pool does not run the current inputs yet: Ready is False, and says
/// which image the pool keeps meanwhile.
fn not_ready_while_building(plan: &mut Plan, build: &str, generation: Option<i64>, now: Timestamp) {
    let message = match &plan.config_status.current_image_pull_spec {
        Some(image) => format!("the pool keeps {image} until build {build} succeeds"),
        None => format!("waiting for the first build, {build}"),
    };
    set(
        &mut plan.config_status.conditions,
        ct::READY,
        false,
        "Building",
        message,
        generation,
        now,
    );
}

/// Ended builds beyond the newest `keep`, except any a pool uses or the status names.
fn prune(
    builds: &[MachineOSBuild],
    current: &str,
    status: &MachineOSConfigStatus,
    keep: usize,
) -> Vec<String> {
    let in_use = |b: &MachineOSBuild| {
        let name = b.metadata.name.as_deref().unwrap_or_default();
        name == current
            || status
                .machine_os_build
                .as_ref()
                .is_some_and(|r| r.name == name)
            || (status.current_image_pull_spec.is_some()
                && b.status
                    .as_ref()
                    .and_then(|s| s.digested_image_push_spec.as_ref())
                    == status.current_image_pull_spec.as_ref())
    };
    let mut ended: Vec<&MachineOSBuild> = builds
        .iter()
        .filter(|b| b.phase().is_some_and(BuildPhase::is_terminal) && !in_use(b))
        .collect();
    ended.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    ended
        .into_iter()
        .skip(keep)
        .filter_map(|b| b.metadata.name.clone())
        .collect()
}

/// The next status of a build whose Job runs or ended.
fn follow_job(
    plan: &mut Plan,
    observed: &Observed,
    build: &MachineOSBuild,
    old: &MachineOSBuildStatus,
    containerfile: &str,
    name: &str,
) -> MachineOSBuildStatus {
    let now = observed.now;
    match &observed.job {
        JobObservation::Missing => {
            match &observed.auth {
                Ok(auth) => {
                    plan.build_objects = Some(BuildObjectsRequest {
                        build: name.to_string(),
                        containerfile: containerfile.to_string(),
                        auth: auth.clone(),
                    });
                }
                Err(why) => {
                    set(
                        &mut plan.config_status.conditions,
                        ct::DEGRADED,
                        true,
                        "SecretUnavailable",
                        why.clone(),
                        observed.config.metadata.generation,
                        now,
                    );
                    plan.requeue_after_secs = Some(60);
                }
            }
            let sha = old.containerfile_sha256.clone().unwrap_or_default();
            prepared(old, &sha, now)
        }
        JobObservation::Running { attempts } => {
            let mut next = with_phase(
                old,
                BuildPhase::Building,
                "Running",
                &format!("builder pod attempt {attempts} is running"),
                now,
            );
            next.attempts = Some(*attempts);
            if old.phase() != Some(BuildPhase::Building) {
                plan.event(
                    false,
                    "BuildStarted",
                    format!("build {name}: builder pod started"),
                );
            }
            next
        }
        JobObservation::Succeeded { attempts, message } => {
            let digest = match message {
                Some(TerminationMessage::Success { digest, .. }) => digest.clone(),
                _ => {
                    return failed(
                        plan,
                        build,
                        *attempts,
                        "NoDigest",
                        "the builder succeeded without reporting a digest",
                        "",
                        now,
                    );
                }
            };
            let image = format!(
                "{}@{digest}",
                objects::repository(&build.spec.rendered_image_push_spec)
            );
            match &observed.image_check {
                Some(ImageCheck::Present) => {
                    let mut next = ended(
                        build,
                        BuildPhase::Succeeded,
                        "Pushed",
                        &format!("pushed and verified {image}"),
                        now,
                    );
                    next.attempts = Some(*attempts);
                    next.digested_image_push_spec = Some(image.clone());
                    plan.delete_secrets_of.push(name.to_string());
                    plan.event(
                        false,
                        "BuildSucceeded",
                        format!("build {name} pushed {image}"),
                    );
                    next
                }
                Some(ImageCheck::Missing) => failed(
                    plan,
                    build,
                    *attempts,
                    "DigestNotFound",
                    &format!("the builder reported {image}, but the registry does not have it"),
                    "",
                    now,
                ),
                Some(ImageCheck::Unknown(why)) => {
                    plan.requeue_after_secs = Some(15);
                    plan.verifying = Some(format!(
                        "pushed {image}; cannot verify it in the registry yet, retrying: {why}"
                    ));
                    old.clone()
                }
                None => {
                    plan.requeue_after_secs = Some(15);
                    old.clone()
                }
            }
        }
        JobObservation::Failed {
            attempts,
            reason,
            message,
            termination,
        } => match termination {
            Some(TerminationMessage::Failure {
                reason,
                message,
                log_tail,
                ..
            }) => failed(plan, build, *attempts, reason, message, log_tail, now),
            _ => failed(plan, build, *attempts, reason, message, "", now),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn failed(
    plan: &mut Plan,
    build: &MachineOSBuild,
    attempts: i32,
    reason: &str,
    message: &str,
    log_tail: &str,
    now: Timestamp,
) -> MachineOSBuildStatus {
    let name = build.metadata.name.clone().unwrap_or_default();
    let mut next = ended(build, BuildPhase::Failed, reason, message, now);
    next.attempts = Some(attempts);
    next.failure = Some(BuildFailure {
        reason: reason.into(),
        message: message.into(),
        log_tail: log_tail.into(),
    });
    plan.delete_secrets_of.push(name.clone());
    plan.event(
        true,
        "BuildFailed",
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

fn prepared(
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
fn ended(
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

fn build_ref(name: &str) -> ObjectReference {
    ObjectReference {
        group: strata_crds::GROUP.into(),
        resource: "machineosbuilds".into(),
        namespace: None,
        name: name.into(),
    }
}

fn new_build(config: &MachineOSConfig, inputs: &BuildInputs, name: &str) -> MachineOSBuild {
    let config_name = config.metadata.name.clone().unwrap_or_default();
    let mut build = MachineOSBuild::new(
        name,
        MachineOSBuildSpec {
            machine_os_config: LocalObjectName::new(config_name.clone()),
            machine_config_pool: config.spec.machine_config_pool.clone(),
            base_image: inputs.base_image.clone(),
            container_file: inputs.container_file.clone(),
            rendered_image_push_spec: objects::image_for_build(
                &inputs.rendered_image_push_spec,
                name,
            ),
        },
    );
    build.metadata = ObjectMeta {
        name: Some(name.to_string()),
        labels: Some([(CONFIG_LABEL.to_string(), fit_63(&config_name))].into()),
        owner_references: config.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    build
}

/// Job reference recorded in the build's status.
pub fn builder_reference(namespace: &str, build: &MachineOSBuild) -> BuilderReference {
    BuilderReference {
        image_builder_type: ImageBuilderType::Job,
        job: Some(ObjectReference {
            group: "batch".into(),
            resource: "jobs".into(),
            namespace: Some(namespace.into()),
            name: objects::job_name(build),
        }),
    }
}

/// PoolUpdated from the MCO's pool conditions (Updated / Updating).
fn pool_updated(plan: &mut Plan, pool: &Value, generation: Option<i64>, now: Timestamp) {
    let conditions = pool
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is = |ty: &str| {
        conditions
            .iter()
            .any(|c| c["type"] == ty && c["status"] == "True")
    };
    let (value, reason, message) = if is("Updating") {
        (
            false,
            "PoolUpdating",
            "the MCO is rolling the pool's machines",
        )
    } else if is("Updated") {
        (
            true,
            "PoolUpdated",
            "every machine of the pool runs the pool's current configuration",
        )
    } else {
        (
            false,
            "PoolStatusUnknown",
            "the pool reports neither Updated nor Updating",
        )
    };
    set(
        &mut plan.config_status.conditions,
        ct::POOL_UPDATED,
        value,
        reason,
        message,
        generation,
        now,
    );
}

#[cfg(test)]
mod tests;
