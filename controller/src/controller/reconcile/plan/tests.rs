use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use strata_crds::ContainerfileArch;
use strata_crds::contract::{FailureClass, PhaseTiming, TerminationMessage};

use super::*;
use crate::controller::fixtures::{BASE, DIGEST, config, observed, rendered, view};

/// The inputs hash of `o`'s current build (what a correct image's config carries).
fn inputs_hash(o: &Observed) -> String {
    render(&BuildInputs::from_config(&o.config, BASE))
        .unwrap()
        .inputs_hash
}

pub(super) fn present(o: &Observed) -> Option<ImageCheck> {
    Some(ImageCheck::Present {
        inputs_hash: Some(inputs_hash(o)),
    })
}

/// The MachineOSConfig status after `p`: the planned one, or the observed when unchanged.
fn status(p: &Plan, o: &Observed) -> MachineOSConfigStatus {
    p.config_status
        .clone()
        .or_else(|| o.config.status.clone())
        .unwrap_or_default()
}

/// The build the first plan creates, as the API server would store it: no status yet (the next
/// round writes it, with its objects).
pub(super) fn created(o: &Observed) -> MachineOSBuild {
    let p = plan(o, &Settings::for_tests());
    assert!(
        p.build_status.is_empty(),
        "the first round writes no build status"
    );
    let mut build = p.create_build.unwrap();
    build.metadata.creation_timestamp = Some(Time(o.now));
    build.metadata.uid = Some("bbbbbbbb-0000-0000-0000-000000000000".into());
    build
}

fn cond(
    status: &Option<MachineOSConfigStatus>,
    ty: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap()
        .clone()
}

pub(super) fn succeeded_job() -> JobObservation {
    JobObservation::Succeeded {
        attempts: 1,
        message: Some(TerminationMessage::Success {
            files: Vec::new(),
            digest: DIGEST.into(),
            size_bytes: 1,
            boot_check: None,
            phases: vec![PhaseTiming {
                phase: "push".into(),
                start_ms: 1,
                end_ms: 2,
            }],
        }),
    }
}

/// `o` after `p` was applied: the statuses it planned stored on the builds and the config.
pub(super) fn applied(mut o: Observed, p: &Plan) -> Observed {
    for (name, status) in &p.build_status {
        if let Some(b) = o
            .builds
            .iter_mut()
            .find(|b| b.metadata.name.as_ref() == Some(name))
        {
            b.status = Some(status.clone());
        }
    }
    if let Some(status) = &p.config_status {
        o.config.status = Some(status.clone());
    }
    if let Some(mc) = &p.machine_config {
        o.machine_config = Some(view(mc.clone()));
    }
    o
}

#[test]
fn new_config_creates_a_prepared_build_then_its_objects() {
    let o = observed(config("RUN true\n"));
    let p = plan(&o, &Settings::for_tests());
    let build = p.create_build.as_ref().unwrap();
    let name = build.metadata.name.clone().unwrap();
    assert!(name.starts_with("worker-"));
    assert_eq!(build.spec.base_image, BASE);
    assert_eq!(
        build.spec.rendered_image_push_spec,
        format!("registry.example.com/strata/os:{name}")
    );
    assert_eq!(
        build.metadata.owner_references.as_ref().unwrap()[0].kind,
        "MachineOSConfig"
    );
    // Its status names the Job, and the objects need the build's uid: they come once it exists.
    assert!(p.build_status.is_empty());
    assert_eq!(p.writes(), "create-build,config-status,event");
    assert!(p.build_objects.is_none() && p.machine_config.is_none());
    assert_eq!(cond(&p.config_status, ct::BUILDING).status, "True");
    assert_eq!(
        (p.events[0].reason, p.events[0].action),
        ("BuildCreated", "CreateBuild")
    );
    assert_eq!(
        p.config_status.as_ref().unwrap().observed_generation,
        Some(3)
    );

    let mut next = o.clone();
    next.builds = vec![created(&o)];
    let p = plan(&next, &Settings::for_tests());
    assert!(p.create_build.is_none());
    let objects = p.build_objects.as_ref().unwrap();
    let containerfile = &objects.containerfile.data.as_ref().unwrap()["Containerfile"];
    assert!(containerfile.contains("RUN true"));
    let owner = &objects.job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, "bbbbbbbb-0000-0000-0000-000000000000");
    assert_eq!(owner.kind, "MachineOSBuild");
    assert_eq!(
        objects.job.metadata.name.as_deref(),
        Some(format!("build-{name}-bbbbb").as_str())
    );
}

#[test]
fn missing_pool_degrades_and_builds_nothing() {
    let mut o = observed(config("RUN true\n"));
    o.pool = None;
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none() && p.build_objects.is_none() && p.machine_config.is_none());
    let degraded = cond(&p.config_status, ct::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "PoolNotFound")
    );
    assert_eq!(p.events[0].action, "Validate");
    // The same problem again is not another Event.
    let again = plan(&applied(o, &p), &Settings::for_tests());
    assert!(again.events.is_empty() && again.config_status.is_none());
}

#[test]
fn invalid_fragment_degrades_with_the_line_and_builds_nothing() {
    let o = observed(config("RUN true\nFROM fedora:40\n"));
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none());
    let degraded = cond(&p.config_status, ct::DEGRADED);
    assert_eq!(degraded.reason, "InvalidContainerfile");
    assert!(
        degraded.message.starts_with("line 1: "),
        "{}",
        degraded.message
    );
}

#[test]
fn missing_or_forbidden_secret_degrades_and_retries_later() {
    for (reason, label) in [
        (AuthReason::SecretUnavailable, "SecretUnavailable"),
        (AuthReason::SecretNotAllowed, "SecretNotAllowed"),
    ] {
        let mut o = observed(config("RUN true\n"));
        o.auth = Err(AuthProblem {
            reason,
            message: "renderedImagePushSecret: Secret strata-system/push …".into(),
        });
        let p = plan(&o, &Settings::for_tests());
        assert!(p.create_build.is_none());
        assert_eq!(cond(&p.config_status, ct::DEGRADED).reason, label);
        assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    }
}

#[test]
fn a_fragment_only_for_another_architecture_is_refused() {
    let mut cfg = config("RUN true\n");
    cfg.spec.container_file[0].containerfile_arch = ContainerfileArch::ARM64;
    let p = plan(&observed(cfg), &Settings::for_tests());
    assert!(p.create_build.is_none());
    let degraded = cond(&p.config_status, ct::DEGRADED);
    assert_eq!(degraded.reason, "NoFragmentForArchitecture");
    assert!(degraded.message.contains("ARM64"), "{}", degraded.message);
}

#[test]
fn a_second_config_for_the_same_pool_is_refused() {
    // An old object whose name differs from its pool (the CEL rule is ratcheted).
    let mut cfg = config("RUN true\n");
    cfg.metadata.name = Some("worker-old".into());
    let mut o = observed(cfg);
    o.rivals = vec![("worker".into(), None)];
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none() && p.machine_config.is_none());
    let degraded = cond(&p.config_status, ct::DEGRADED);
    assert_eq!(degraded.reason, "PoolClaimed");
    assert!(degraded.message.contains("worker"));
    // The one named after the pool keeps building.
    let mut rightful = observed(config("RUN true\n"));
    rightful.rivals = vec![("worker-old".into(), None)];
    assert!(
        plan(&rightful, &Settings::for_tests())
            .create_build
            .is_some()
    );
}

#[test]
fn a_build_left_by_a_deleted_config_of_the_same_name_is_waited_for() {
    let mut o = observed(config("RUN true\n"));
    let name = created(&o).metadata.name.unwrap();
    o.foreign_builds = vec![name];
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none());
    assert_eq!(
        cond(&p.config_status, ct::BUILDING).reason,
        "WaitingForGarbageCollection"
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));
}

#[test]
fn running_job_moves_the_build_to_building() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = JobObservation::Running {
        step: None,
        attempts: 2,
        waiting: None,
    };
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none() && p.build_objects.is_none());
    let status = &p.build_status[0].1;
    assert_eq!(status.phase(), Some(BuildPhase::Building));
    assert_eq!(status.attempts, Some(2));
    assert!(status.builder.as_ref().unwrap().job.is_some());
    assert_eq!(p.events[0].reason, "BuildStarted");
    assert_eq!(p.metrics.phase, Some(BuildPhase::Building));
    assert!(p.metrics.started_after.is_some());
    // The step running is the status's current step; it goes once the build ends.
    o.job = JobObservation::Running {
        step: Some("boot".into()),
        attempts: 2,
        waiting: None,
    };
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.build_status[0].1.current_step.as_deref(), Some("boot"));
    o.builds[0].status = Some(p.build_status[0].1.clone());
    o.job = JobObservation::Failed {
        attempts: 2,
        reason: "BackoffLimitExceeded".into(),
        message: String::new(),
        termination: None,
        killed: None,
        raw_message: String::new(),
    };
    let p = plan(&o, &Settings::for_tests());
    let ended = &p.build_status[0].1;
    assert_eq!(ended.phase(), Some(BuildPhase::Failed));
    assert_eq!(ended.current_step, None);
}

#[test]
fn the_configs_status_is_written_once_while_its_build_starts_and_runs() {
    let o = observed(config("RUN true\n"));
    let first = plan(&o, &Settings::for_tests());
    let mut o = applied(o, &first);
    o.builds = vec![created(&o)];
    // Round 2 writes the build's objects and status; the config's status stays as it is.
    let p = plan(&o, &Settings::for_tests());
    assert!(p.build_objects.is_some());
    assert_eq!(p.writes(), "build-objects,build-status");
    let mut o = applied(o, &p);
    // The pod runs: the build moves to Building; the config's status still says the same.
    o.job = JobObservation::Running {
        step: None,
        attempts: 1,
        waiting: None,
    };
    let name = o.builds[0].metadata.name.clone().unwrap();
    o.build_config_maps = [
        names::containerfile_configmap(&name),
        names::environment_configmap(&name),
    ]
    .into();
    o.build_secrets = [names::credentials_secret(&name)].into();
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.build_status[0].1.phase(), Some(BuildPhase::Building));
    assert!(p.config_status.is_none(), "{:?}", p.config_status);
    assert!(p.build_objects.is_none());
}

#[test]
fn a_running_builds_missing_objects_are_made_again_once_its_job_is_older_than_the_watch_lag() {
    let mut o = observed(config("RUN true\n"));
    let build = created(&o);
    let name = build.metadata.name.clone().unwrap();
    let job_name = names::job(&build);
    o.builds = vec![build];
    o.job = JobObservation::Running {
        step: None,
        attempts: 1,
        waiting: None,
    };
    let job_created = |seconds_ago: i64| -> Job {
        serde_json::from_value(json!({"metadata": {
            "name": job_name,
            "creationTimestamp": Timestamp::from_second(1_800_000_000 - seconds_ago).unwrap().to_string(),
        }}))
        .unwrap()
    };
    // The credentials Secret is there, the environment ConfigMap is not (its write failed).
    o.build_secrets = [names::credentials_secret(&name)].into();
    o.build_config_maps = [names::containerfile_configmap(&name)].into();
    // A Job just made: its ConfigMaps' watch may trail its own; look again later.
    o.jobs = vec![job_created(2)];
    let p = plan(&o, &Settings::for_tests());
    assert!(p.build_objects.is_none());
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(10)));
    // Ten seconds on, still missing: all of the build's objects are applied again.
    o.jobs = vec![job_created(10)];
    let p = plan(&o, &Settings::for_tests());
    let objects = p.build_objects.as_ref().unwrap();
    assert_eq!(
        objects.environment.metadata.name.as_deref(),
        Some(names::environment_configmap(&name).as_str())
    );
    // Everything present: nothing to make.
    o.build_config_maps
        .insert(names::environment_configmap(&name));
    assert!(plan(&o, &Settings::for_tests()).build_objects.is_none());
}

#[test]
fn a_builder_pod_that_cannot_start_says_why() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = JobObservation::Running {
        step: None,
        attempts: 1,
        waiting: Some(Waiting {
            reason: "ImagePullBackOff".into(),
            message: "Back-off pulling image \"builder@sha256:0\"".into(),
        }),
    };
    let p = plan(&o, &Settings::for_tests());
    let building = cond(&p.config_status, ct::BUILDING);
    assert_eq!(building.reason, "BuilderCannotStart");
    assert!(
        building.message.contains("ImagePullBackOff"),
        "{}",
        building.message
    );
    assert!(
        building.message.contains("Back-off pulling"),
        "{}",
        building.message
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.type_ == EventType::Warning && e.reason == "BuilderCannotStart")
    );
    assert_eq!(p.metrics.waiting.as_deref(), Some("ImagePullBackOff"));
    // Recorded once: the next round with the same reason adds no Event.
    let again = plan(&applied(o, &p), &Settings::for_tests());
    assert!(
        !again
            .events
            .iter()
            .any(|e| e.reason == "BuilderCannotStart")
    );
    assert_eq!(again.metrics.waiting.as_deref(), Some("ImagePullBackOff"));
}

#[test]
fn a_waiting_job_made_with_another_placement_is_made_again() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    let job = plan(&o, &Settings::for_tests())
        .build_objects
        .expect("the build's objects")
        .job;
    let job_name = job.metadata.name.clone().unwrap();
    let waiting = |reason: &str| JobObservation::Running {
        step: None,
        attempts: 1,
        waiting: Some(Waiting {
            reason: reason.into(),
            message: "0/2 nodes are available".into(),
        }),
    };
    let replaced = |o: &Observed| {
        let p = plan(o, &Settings::for_tests());
        let event = p.events.iter().any(|e| e.reason == "BuilderReplaced");
        assert_eq!(event, !p.delete_jobs.is_empty(), "{:?}", p.delete_jobs);
        p.delete_jobs == [job_name.clone()]
    };
    // Made with the placement the settings give: it waits on.
    o.jobs = vec![job.clone()];
    o.job = waiting("Unschedulable");
    assert!(!replaced(&o));
    // Made with a node selector the settings no longer give.
    let mut moved = job.clone();
    let spec = moved.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    spec.node_selector
        .get_or_insert_default()
        .insert("kubernetes.io/hostname".into(), "gone".into());
    o.jobs = vec![moved];
    assert!(replaced(&o));
    o.job = waiting("NoPodCreated");
    assert!(replaced(&o));
    // A pod that was placed and cannot pull its image is not a matter of placement.
    o.job = waiting("ImagePullBackOff");
    assert!(!replaced(&o));
}

#[test]
fn verified_digest_pins_the_pool_and_tidies_up() {
    let mut o = observed(config("RUN true\n"));
    let build = created(&o);
    let build_name = build.metadata.name.clone().unwrap();
    o.builds = vec![build.clone()];
    o.job = succeeded_job();
    o.image_check = present(&o);
    // The build's credentials, and a Secret of an earlier version (one per credential).
    let earlier_push = names::earlier_secrets(&build_name)[0].clone();
    o.build_secrets = [names::credentials_secret(&build_name), earlier_push.clone()].into();
    o.jobs =
        vec![serde_json::from_value(json!({"metadata": {"name": names::job(&build)}})).unwrap()];
    let p = plan(&o, &Settings::for_tests());
    let image = format!("registry.example.com/strata/os@{DIGEST}");
    let status = &p.build_status[0].1;
    assert_eq!(status.phase(), Some(BuildPhase::Succeeded));
    assert_eq!(
        status.digested_image_push_spec.as_deref(),
        Some(image.as_str())
    );
    assert!(status.build_end.as_ref().unwrap().0 > status.build_start.as_ref().unwrap().0);
    assert_eq!(status.phases[0].phase, "push");
    assert_eq!((status.phases[0].start_ms, status.phases[0].end_ms), (1, 2));
    assert_eq!(p.metrics.phase_seconds, vec![("push".to_string(), 0.001)]);
    let mc = p.machine_config.as_ref().unwrap();
    assert_eq!(mc["spec"]["osImageURL"], image);
    assert_eq!(
        mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "worker"
    );
    assert_eq!(
        p.config_status
            .as_ref()
            .unwrap()
            .current_image_pull_spec
            .as_deref(),
        Some(image.as_str())
    );
    assert_eq!(cond(&p.config_status, ct::READY).status, "True");
    // The pool has not rendered a configuration with the new image yet.
    let updated = cond(&p.config_status, ct::POOL_UPDATED);
    assert_eq!(
        (updated.status.as_str(), updated.reason.as_str()),
        ("False", "RenderPending")
    );
    assert_eq!(p.metrics.pool_updated, Some(false));
    assert_eq!(
        p.delete_secrets,
        vec![names::credentials_secret(&build_name), earlier_push]
    );
    // Its Job is done: it goes (no finished Jobs piling up).
    assert_eq!(p.delete_jobs, vec![names::job(&build)]);
    assert!(matches!(
        p.metrics.ended,
        Some((BuildPhase::Succeeded, Some(_)))
    ));

    // Once the MCO renders the pool with the image and rolls it, PoolUpdated follows.
    let mut rolled = applied(o, &p);
    rolled.rendered_config = Some(rendered(&image));
    let p = plan(&rolled, &Settings::for_tests());
    assert_eq!(cond(&p.config_status, ct::POOL_UPDATED).status, "True");
    assert_eq!(p.metrics.pool_updated, Some(true));
}

#[test]
fn an_image_without_this_builds_inputs_hash_is_never_pinned() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    for wrong in [Some("0".repeat(64)), None] {
        o.image_check = Some(ImageCheck::Present {
            inputs_hash: wrong.clone(),
        });
        let p = plan(&o, &Settings::for_tests());
        assert!(p.machine_config.is_none(), "{wrong:?}");
        let status = &p.build_status[0].1;
        assert_eq!(status.phase(), Some(BuildPhase::Failed));
        assert_eq!(status.failure.as_ref().unwrap().reason, "DigestMismatch");
        assert!(
            p.events
                .iter()
                .any(|e| e.type_ == EventType::Warning && e.reason == "BuildFailed")
        );
        assert!(
            p.config_status
                .as_ref()
                .unwrap()
                .current_image_pull_spec
                .is_none()
        );
    }
}

#[test]
fn unverified_digest_waits_and_a_digest_never_found_fails_without_touching_the_pool() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = Some(ImageCheck::Unknown("registry timeout".into()));
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(15)));
    let building = cond(&p.config_status, ct::BUILDING);
    assert_eq!(building.reason, "VerifyingDigest");
    assert!(
        building.message.contains("registry timeout"),
        "{}",
        building.message
    );

    o.image_check = Some(ImageCheck::Missing {
        first_seen: o.now,
        misses: 1,
    });
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    assert!(
        p.build_status
            .iter()
            .all(|(_, s)| !s.phase().is_some_and(BuildPhase::is_terminal)),
        "one miss right after the push does not fail the build"
    );
    assert_eq!(
        cond(&p.config_status, ct::BUILDING).reason,
        "VerifyingDigest"
    );
    o.image_check = Some(ImageCheck::Missing {
        first_seen: o.now,
        misses: 3,
    });
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    assert_eq!(
        p.build_status[0].1.failure.as_ref().unwrap().reason,
        "DigestNotFound"
    );
}

/// A registry answering past Strata's caps (or redirecting elsewhere) gives the same answer when
/// asked again: the build fails for these inputs instead of retrying every 15 s.
#[test]
fn an_image_the_registry_answers_past_the_caps_for_fails_and_is_never_pinned() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = Some(ImageCheck::Refused(
        "the manifest of r.example.com/os@sha256:… is larger than the 4 MiB Strata reads".into(),
    ));
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    let status = &p.build_status[0].1;
    assert_eq!(status.phase(), Some(BuildPhase::Failed));
    let failure = status.failure.as_ref().unwrap();
    assert_eq!(failure.reason, "ImageUnreadable");
    assert!(
        failure.message.contains("larger than the 4 MiB"),
        "{}",
        failure.message
    );
    assert_ne!(p.requeue_after, Some(Duration::from_secs(15)));
}

/// A base the registry answers past the caps for: Degraded, and no look again in a minute (the
/// resync, or a change of the inputs, asks again).
#[test]
fn a_base_refused_by_the_caps_degrades_without_a_quick_requeue() {
    let mut o = observed(config("RUN true\n"));
    o.base = Err(BaseUnknown::Unresolved("registry down".into()));
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    o.base = Err(BaseUnknown::Refused("cannot resolve b: too large".into()));
    let p = plan(&o, &Settings::for_tests());
    let degraded = cond(&p.config_status, ct::DEGRADED);
    assert_eq!(degraded.reason, "BaseImageUnavailable");
    assert!(
        degraded.message.contains("too large"),
        "{}",
        degraded.message
    );
    assert_eq!(p.requeue_after, None);
    assert!(p.create_build.is_none() && p.build_objects.is_none());
}

/// A config whose pool runs an earlier image (returned), and whose current build's Job failed
/// with a terminal `termination` from the step `step`.
fn failed_after_a_pin(
    fragment: &str,
    step: &str,
    termination: TerminationMessage,
) -> (Observed, String) {
    let mut cfg = config(fragment);
    let previous = format!("registry.example.com/strata/os@{DIGEST}");
    cfg.status = Some(MachineOSConfigStatus {
        current_image_pull_spec: Some(previous.clone()),
        ..Default::default()
    });
    let mut o = observed(cfg);
    o.builds = vec![created(&o)];
    o.job = JobObservation::Failed {
        attempts: 1,
        reason: "PodFailurePolicy".into(),
        message: format!("container {step} exited with 3"),
        termination: Some(termination),
        killed: Some("Error".into()),
        raw_message: String::new(),
    };
    (o, previous)
}

#[test]
fn failed_build_keeps_the_current_image_and_never_touches_the_pool() {
    let (o, previous) = failed_after_a_pin(
        "RUN false\n",
        "build",
        TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "StepFailed".into(),
            message: "step RUN false failed: exit status 1 (Containerfile line 7)".into(),
            log_tail: "STEP 2/3: RUN false".into(),
            boot_check: None,
        },
    );
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    let failure = p.build_status[0].1.failure.clone().unwrap();
    assert_eq!(failure.reason, "StepFailed");
    assert!(failure.message.contains("line 7"));
    assert_eq!(
        status(&p, &o).current_image_pull_spec.as_deref(),
        Some(previous.as_str())
    );
    let ready = cond(&p.config_status, ct::READY);
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(&previous));
    assert_eq!(cond(&p.config_status, ct::DEGRADED).status, "True");
    assert!(p.events.iter().any(|e| e.type_ == EventType::Warning
        && e.reason == "BuildFailed"
        && e.action == "FailBuild"));

    // Once recorded, a failed build stays failed: nothing to write, no retry by itself.
    let again = plan(&applied(o, &p), &Settings::for_tests());
    assert!(
        again.build_status.is_empty()
            && again.create_build.is_none()
            && again.delete_builds.is_empty()
            && again.config_status.is_none()
    );
}

#[test]
fn an_oom_killed_builder_says_so() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = JobObservation::Failed {
        attempts: 4,
        reason: "BackoffLimitExceeded".into(),
        message: "Job has reached the specified backoff limit".into(),
        termination: None,
        killed: Some("OOMKilled".into()),
        raw_message: "STEP 3/5: RUN dnf install …".into(),
    };
    let p = plan(&o, &Settings::for_tests());
    let failure = p.build_status[0].1.failure.clone().unwrap();
    assert_eq!(failure.reason, "OOMKilled");
    assert!(failure.message.contains("4Gi"), "{}", failure.message);
    assert!(failure.log_tail.contains("dnf install"));
}

#[test]
fn new_inputs_interrupt_the_build_in_flight_and_stop_its_job() {
    let mut o = observed(config("RUN echo one\n"));
    let old = created(&o);
    o.config = config("RUN echo two\n");
    o.builds = vec![old.clone()];
    o.jobs = vec![serde_json::from_value(json!({"metadata": {"name": names::job(&old)}})).unwrap()];
    let p = plan(&o, &Settings::for_tests());
    let new = p.create_build.as_ref().unwrap();
    assert_ne!(new.metadata.name, old.metadata.name);
    let (name, status) = &p.build_status[0];
    assert_eq!(Some(name), old.metadata.name.as_ref());
    assert_eq!(status.phase(), Some(BuildPhase::Interrupted));
    assert_eq!(status.failure.as_ref().unwrap().reason, "Superseded");
    assert!(status.build_end.as_ref().unwrap().0 > status.build_start.as_ref().unwrap().0);
    assert_eq!(p.delete_jobs, vec![names::job(&old)]);
}

#[test]
fn identical_inputs_reuse_a_succeeded_build_and_a_resync_writes_nothing() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = present(&o);
    let first = plan(&o, &Settings::for_tests());
    let mut o = applied(o, &first);
    o.job = JobObservation::Missing; // the Job is gone; the record is what counts
    let steady = plan(&o, &Settings::for_tests());
    assert!(
        steady.create_build.is_none()
            && steady.build_objects.is_none()
            && steady.build_status.is_empty()
            && steady.machine_config.is_none()
            && steady.config_status.is_none()
            && steady.events.is_empty()
            && steady.delete_jobs.is_empty()
            && steady.delete_secrets.is_empty()
            && steady.delete_builds.is_empty()
            && !steady.remove_rebuild_annotation,
        "{steady:#?}"
    );
}

#[test]
fn a_vanished_image_is_rebuilt_only_after_several_misses_over_minutes() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = present(&o);
    let done = plan(&o, &Settings::for_tests());
    let o = applied(o, &done);

    let mut once = o.clone();
    once.image_check = Some(ImageCheck::Missing {
        first_seen: o.now,
        misses: 1,
    });
    let p = plan(&once, &Settings::for_tests());
    assert!(p.delete_builds.is_empty(), "one 404 never rebuilds");
    assert!(
        p.events
            .iter()
            .any(|e| e.type_ == EventType::Warning && e.reason == "ImageMissing")
    );
    assert!(
        cond(&p.config_status, ct::READY)
            .message
            .contains("did not find")
    );

    let mut many_but_recent = o.clone();
    many_but_recent.image_check = Some(ImageCheck::Missing {
        first_seen: o.now,
        misses: 5,
    });
    assert!(
        plan(&many_but_recent, &Settings::for_tests())
            .delete_builds
            .is_empty()
    );

    let mut gone = o.clone();
    gone.image_check = Some(ImageCheck::Missing {
        first_seen: Timestamp::from_second(o.now.as_second() - 600).unwrap(),
        misses: 3,
    });
    assert_eq!(
        plan(&gone, &Settings::for_tests()).delete_builds,
        vec![o.builds[0].metadata.name.clone().unwrap()]
    );
}

#[test]
fn rebuild_annotation_rebuilds_the_same_inputs() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = present(&o);
    let done = plan(&o, &Settings::for_tests());
    let mut asked = applied(o.clone(), &done);
    asked.config.metadata.annotations =
        Some([(REBUILD_ANNOTATION.to_string(), "1".to_string())].into());
    let p = plan(&asked, &Settings::for_tests());
    assert_eq!(
        p.delete_builds,
        vec![o.builds[0].metadata.name.clone().unwrap()]
    );
    assert!(
        !p.remove_rebuild_annotation,
        "kept until the new build starts"
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "Rebuilding" && e.action == "Rebuild")
    );
    asked.builds.clear();
    assert!(plan(&asked, &Settings::for_tests()).remove_rebuild_annotation);
}

#[test]
fn building_new_inputs_is_not_ready_and_says_what_the_pool_keeps() {
    let mut cfg = config("RUN echo two\n");
    let previous = format!("registry.example.com/strata/os@{DIGEST}");
    cfg.status = Some(MachineOSConfigStatus {
        current_image_pull_spec: Some(previous.clone()),
        ..Default::default()
    });
    let p = plan(&observed(cfg), &Settings::for_tests());
    let ready = cond(&p.config_status, ct::READY);
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(&previous), "{}", ready.message);
}

#[test]
fn history_keeps_the_newest_ended_builds_and_the_one_in_use() {
    let mut o = observed(config("RUN echo current\n"));
    let in_use = format!("registry.example.com/strata/os@{DIGEST}");
    let mut old = Vec::new();
    for i in 0..5 {
        let mut b = created(&observed(config(&format!("RUN echo {i}\n"))));
        b.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(1_700_000_000 + i).unwrap()));
        let ended_as = if i == 0 { "Succeeded" } else { "Failed" };
        let mut status = b.status.clone().unwrap_or_default();
        status
            .conditions
            .iter_mut()
            .for_each(|c| c.status = if c.type_ == ended_as { "True" } else { "False" }.into());
        if i == 0 {
            status.digested_image_push_spec = Some(in_use.clone());
        }
        b.status = Some(status);
        old.push(b);
    }
    o.config.status = Some(MachineOSConfigStatus {
        current_image_pull_spec: Some(in_use),
        ..Default::default()
    });
    o.builds = old.clone();
    let p = plan(&o, &Settings::for_tests());
    // Keep the 2 newest (4, 3) and the one in use (0); delete 2 and 1.
    let mut pruned = p.delete_builds.clone();
    pruned.sort();
    let mut expected = vec![
        old[1].metadata.name.clone().unwrap(),
        old[2].metadata.name.clone().unwrap(),
    ];
    expected.sort();
    assert_eq!(pruned, expected);
}

/// Five ended builds, each with its own image (`…/os@sha256:<i repeated>`), the oldest pinned.
fn five_ended_builds_with_images() -> (Observed, Vec<MachineOSBuild>, Vec<String>) {
    let mut o = observed(config("RUN echo current\n"));
    let images: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "registry.example.com/strata/os@sha256:{}",
                i.to_string().repeat(64)
            )
        })
        .collect();
    let mut old = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let mut b = created(&observed(config(&format!("RUN echo {i}\n"))));
        b.metadata.creation_timestamp = Some(Time(
            Timestamp::from_second(1_700_000_000 + i as i64).unwrap(),
        ));
        let mut status = b.status.clone().unwrap_or_default();
        status.conditions.iter_mut().for_each(|c| {
            c.status = if c.type_ == "Succeeded" {
                "True"
            } else {
                "False"
            }
            .into()
        });
        status.digested_image_push_spec = Some(image.clone());
        b.status = Some(status);
        old.push(b);
    }
    o.config.status = Some(MachineOSConfigStatus {
        current_image_pull_spec: Some(images[0].clone()),
        ..Default::default()
    });
    o.builds = old.clone();
    (o, old, images)
}

#[test]
fn pruned_builds_images_are_deleted_unless_something_may_run_them() {
    use crate::controller::fixtures::rendered;
    use crate::controller::settings::RegistryCleanup;
    let (o, old, images) = five_ended_builds_with_images();
    let name = |i: usize| old[i].metadata.name.clone().unwrap();
    let deleted = |p: &Plan| {
        let mut d: Vec<(String, String)> = p
            .delete_images
            .iter()
            .map(|d| (d.build.clone(), d.image.clone()))
            .collect();
        d.sort();
        d
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // Builds 1 and 2 are pruned (history 2 keeps 4 and 3; 0 is pinned): their images go.
    let p = plan(&o, &Settings::for_tests());
    let mut both = vec![(name(1), images[1].clone()), (name(2), images[2].clone())];
    both.sort();
    assert_eq!(deleted(&p), both);
    assert_eq!(
        sorted(p.delete_builds.clone()),
        sorted(vec![name(1), name(2)])
    );

    // The image the pool still runs (its rendered config) stays, and so does its build until the
    // pool moved on; a kept build's same digest stays while that build goes.
    let mut running = o.clone();
    running.rendered_config = Some(rendered(&images[1]));
    running.builds[4]
        .status
        .as_mut()
        .unwrap()
        .digested_image_push_spec = Some(images[2].clone());
    let p = plan(&running, &Settings::for_tests());
    assert!(p.delete_images.is_empty(), "{:?}", p.delete_images);
    assert_eq!(p.delete_builds, vec![name(2)]);
    running.rendered_config = Some(rendered(&images[4]));
    let p = plan(&running, &Settings::for_tests());
    assert_eq!(deleted(&p), vec![(name(1), images[1].clone())]);

    // A machine on a rendered config Strata cannot tie to an image: nothing of theirs goes yet.
    let mut unknown = o.clone();
    let mut target = rendered(&images[4]);
    target.metadata.name = Some("rendered-worker-5".into());
    unknown.target_config = Some(target);
    unknown.machines = vec![mco::NodeView {
        name: "worker-0".into(),
        current: "rendered-worker-3".into(),
        desired: "rendered-worker-5".into(),
        ..mco::NodeView::default()
    }];
    let p = plan(&unknown, &Settings::for_tests());
    assert!(p.delete_images.is_empty() && p.delete_builds.is_empty());
    // Once it reports a config Strata knows, they go.
    unknown.machines[0].current = "rendered-worker-5".into();
    assert_eq!(deleted(&plan(&unknown, &Settings::for_tests())), both);

    // dry-run names them in Events; off leaves them; the builds are pruned in both.
    let dry = Settings {
        registry_cleanup: RegistryCleanup::DryRun,
        ..Settings::for_tests()
    };
    let p = plan(&o, &dry);
    assert!(p.delete_images.is_empty());
    let named: Vec<&PlannedEvent> = p
        .events
        .iter()
        .filter(|e| e.reason == "ImageCleanupDryRun")
        .collect();
    assert_eq!(named.len(), 2);
    assert!(named.iter().all(|e| e.note.contains("would be deleted")));
    assert_eq!(p.delete_builds.len(), 2);
    let off = Settings {
        registry_cleanup: RegistryCleanup::Off,
        ..Settings::for_tests()
    };
    let p = plan(&o, &off);
    assert!(p.delete_images.is_empty() && !p.events.iter().any(|e| e.action == "DeleteImage"));
    assert_eq!(p.delete_builds.len(), 2);
}

#[test]
fn a_deleted_configs_builds_take_their_images_but_not_one_a_machine_may_run() {
    let (mut o, old, images) = five_ended_builds_with_images();
    let name = |i: usize| old[i].metadata.name.clone().unwrap();
    // The pool runs build 4's image (its rendered config); build 0's is the pin.
    o.rendered_config = Some(rendered(&images[4]));
    let p = plan_deletion(&o, &Settings::for_tests());
    let mut deleted: Vec<(String, String)> = p
        .delete_images
        .iter()
        .map(|d| (d.build.clone(), d.image.clone()))
        .collect();
    deleted.sort();
    let mut want: Vec<(String, String)> = (1..4).map(|i| (name(i), images[i].clone())).collect();
    want.sort();
    assert_eq!(deleted, want);
    assert!(
        p.delete_images
            .iter()
            .all(|d| d.why == Removal::ConfigDeleted)
    );
    // Nothing else: the builds go with the config, the finalizer removes the MachineConfig.
    assert!(p.delete_builds.is_empty() && p.create_build.is_none());
    assert!(p.machine_config.is_none() && p.config_status.is_none());
    // Off: nothing is deleted.
    let off = Settings {
        registry_cleanup: crate::controller::settings::RegistryCleanup::Off,
        ..Settings::for_tests()
    };
    assert!(plan_deletion(&o, &off).delete_images.is_empty());
}

proptest::proptest! {
    /// Whatever the fragment, planning never panics, and a created build's objects name it.
    #[test]
    fn planning_any_fragment_never_panics(fragment in "(RUN|FROM|COPY|ARG|LABEL| |[a-z]|\n|\\\\|=|-){0,200}") {
        let o = observed(config(&fragment));
        let p = plan(&o, &Settings::for_tests());
        if let Some(build) = &p.create_build {
            proptest::prop_assert!(build.metadata.name.as_ref().unwrap().starts_with("worker-"));
            let mut next = o.clone();
            next.builds = vec![created(&o)];
            let p = plan(&next, &Settings::for_tests());
            proptest::prop_assert!(p.build_objects.is_some());
        } else {
            proptest::prop_assert_eq!(cond(&p.config_status, ct::DEGRADED).status, "True");
        }
    }
}

const NEW_BASE: &str = "registry.example.com/rhcos@sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// A config pinned to an image built on BASE, now seeing `base` from the release.
fn pinned_then_release(base: &str) -> Observed {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = present(&o);
    let done = plan(&o, &Settings::for_tests());
    let mut o = applied(o, &done);
    o.job = JobObservation::Missing;
    o.image_check = None;
    o.base = Ok(base.into());
    o
}

fn held(p: &Plan, o: &Observed) -> (String, String) {
    let s = status(p, o);
    s.conditions
        .iter()
        .find(|c| c.type_ == ct::POOL_HELD)
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

#[test]
fn a_new_release_base_holds_the_pool_from_the_first_round_until_the_rebuild_is_rendered() {
    let o = pinned_then_release(NEW_BASE);
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_some(), "the rebuild starts");
    assert_eq!(p.pool_paused, Some(true), "held in the same round");
    assert_eq!(held(&p, &o), ("True".into(), "BaseImageChanged".into()));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "PoolHeld" && e.action == "HoldPool")
    );
    assert_eq!(p.metrics.pool_held, Some(true));

    // The pool is paused; the new build runs: nothing more to write about the hold.
    let mut o = applied(o, &p);
    o.pool.as_mut().unwrap().spec.paused = true;
    let mut new_build = p.create_build.clone().unwrap();
    new_build.metadata.uid = Some("cccccccc-0000-0000-0000-000000000000".into());
    o.builds.push(new_build);
    o.job = JobObservation::Running {
        step: None,
        attempts: 1,
        waiting: None,
    };
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, None);
    assert_eq!(held(&p, &o).0, "True");

    // Built and pinned, but the MCO has not rendered the pool with it yet: still held.
    let mut o = applied(o, &p);
    o.job = JobObservation::Succeeded {
        attempts: 1,
        message: Some(TerminationMessage::Success {
            files: Vec::new(),
            digest: format!("sha256:{}", "4".repeat(64)),
            size_bytes: 1,
            boot_check: None,
            phases: vec![],
        }),
    };
    let hash = render(&BuildInputs::from_config(&o.config, NEW_BASE))
        .unwrap()
        .inputs_hash;
    o.image_check = Some(ImageCheck::Present {
        inputs_hash: Some(hash),
    });
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_some(), "pinned");
    assert_eq!(p.pool_paused, None);
    assert_eq!(held(&p, &o), ("True".into(), "WaitingForRender".into()));

    // Rendered with the new image: released, once.
    let mut o = applied(o, &p);
    let image = status(&p, &o).current_image_pull_spec.unwrap();
    o.target_config = Some(rendered(&image));
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, Some(false));
    assert_eq!(held(&p, &o), ("False".into(), "Released".into()));
    assert!(p.events.iter().any(|e| e.reason == "PoolReleased"));
    let mut o = applied(o, &p);
    o.pool.as_mut().unwrap().spec.paused = false;
    let again = plan(&o, &Settings::for_tests());
    assert_eq!(again.pool_paused, None);
    assert_eq!(again.metrics.pool_held, Some(false));
}

#[test]
fn a_release_back_to_a_base_already_built_holds_the_pool_while_it_pins_the_old_build() {
    // Pinned on BASE (image A), then rebuilt and pinned on NEW_BASE (image B).
    let o = pinned_then_release(NEW_BASE);
    let first_image = o
        .config
        .status
        .as_ref()
        .unwrap()
        .current_image_pull_spec
        .clone();
    let p = plan(&o, &Settings::for_tests());
    let mut o = applied(o, &p);
    let mut new_build = p.create_build.clone().unwrap();
    new_build.metadata.uid = Some("cccccccc-0000-0000-0000-000000000000".into());
    o.builds.push(new_build);
    o.job = JobObservation::Succeeded {
        attempts: 1,
        message: Some(TerminationMessage::Success {
            files: Vec::new(),
            digest: format!("sha256:{}", "4".repeat(64)),
            size_bytes: 1,
            boot_check: None,
            phases: vec![],
        }),
    };
    let hash = render(&BuildInputs::from_config(&o.config, NEW_BASE))
        .unwrap()
        .inputs_hash;
    o.image_check = Some(ImageCheck::Present {
        inputs_hash: Some(hash),
    });
    let p = plan(&o, &Settings::for_tests());
    let mut o = applied(o, &p);
    let second_image = status(&p, &o).current_image_pull_spec.unwrap();
    assert_ne!(Some(second_image.clone()), first_image);
    o.pool.as_mut().unwrap().spec.paused = false;
    o.config
        .status
        .as_mut()
        .unwrap()
        .conditions
        .retain(|c| c.type_ != ct::POOL_HELD);

    // The release goes back to BASE: its build is reused and pinned in this very round, and the
    // pool is held while the MCO renders it.
    o.base = Ok(BASE.into());
    o.job = JobObservation::Missing;
    // The first round may not know yet whether the old image is still in the registry: the pool
    // is held all the same, and the Event already says which build it waits for.
    o.image_check = None;
    let unchecked = plan(&o, &Settings::for_tests());
    assert_eq!(
        unchecked.pool_paused,
        Some(true),
        "held before the image check"
    );
    assert!(
        unchecked
            .events
            .iter()
            .any(|e| e.reason == "PoolHeld" && e.note.contains("built on this release base before")),
        "{:?}",
        unchecked.events
    );
    let hash = render(&BuildInputs::from_config(&o.config, BASE))
        .unwrap()
        .inputs_hash;
    o.image_check = Some(ImageCheck::Present {
        inputs_hash: Some(hash),
    });
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none(), "nothing is built again");
    assert_eq!(
        p.machine_config
            .as_ref()
            .map(|mc| mc["spec"]["osImageURL"].clone()),
        first_image.clone().map(serde_json::Value::from),
        "the old build is pinned at once"
    );
    assert_eq!(p.pool_paused, Some(true), "held in the same round");
    assert_eq!(held(&p, &o), ("True".into(), "BaseImageChanged".into()));
    let reused = status(&p, &o).machine_os_build.unwrap().name;
    let event = p.events.iter().find(|e| e.reason == "PoolHeld");
    assert!(
        event.is_some_and(|e| e.note.contains(&format!("renders it with {reused}"))),
        "the Event says the reused build is rendered: {:?}",
        p.events
    );

    let mut o = applied(o, &p);
    o.pool.as_mut().unwrap().spec.paused = true;
    o.target_config = Some(rendered(first_image.as_deref().unwrap()));
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, Some(false), "released once rendered");
    assert_eq!(held(&p, &o), ("False".into(), "Released".into()));
}

#[test]
fn a_failed_rebuild_keeps_the_hold_and_says_so() {
    let o = pinned_then_release(NEW_BASE);
    let p = plan(&o, &Settings::for_tests());
    let mut o = applied(o, &p);
    o.pool.as_mut().unwrap().spec.paused = true;
    let mut new_build = p.create_build.clone().unwrap();
    new_build.metadata.uid = Some("cccccccc-0000-0000-0000-000000000000".into());
    o.builds.push(new_build);
    o.job = JobObservation::Failed {
        attempts: 1,
        reason: "PodFailurePolicy".into(),
        message: String::new(),
        termination: Some(TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "StepFailed".into(),
            message: "step RUN true failed".into(),
            log_tail: String::new(),
            boot_check: None,
        }),
        killed: None,
        raw_message: String::new(),
    };
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, None, "the hold stays");
    assert_eq!(held(&p, &o), ("True".into(), "BuildFailed".into()));
    assert_eq!(p.metrics.pool_held, Some(true));
}

#[test]
fn a_pause_strata_did_not_set_is_left_alone() {
    // Paused by an admin before the new base: Strata does not take it over.
    let mut o = pinned_then_release(NEW_BASE);
    o.pool.as_mut().unwrap().spec.paused = true;
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, None);
    assert_eq!(held(&p, &o), ("False".into(), "PausedByAdmin".into()));

    // Held by Strata, then unpaused by someone: not paused again.
    let o = pinned_then_release(NEW_BASE);
    let p = plan(&o, &Settings::for_tests());
    let mut o = applied(o, &p);
    o.pool.as_mut().unwrap().spec.paused = false;
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, None);
    assert_eq!(held(&p, &o), ("False".into(), "ReleasedByOthers".into()));
    let p = plan(&applied(o, &p), &Settings::for_tests());
    assert_eq!(p.pool_paused, None);
}

#[test]
fn a_fragment_change_or_a_base_override_holds_nothing() {
    let mut o = pinned_then_release(BASE);
    o.config = {
        let mut c = config("RUN echo changed\n");
        c.status = o.config.status.clone();
        c
    };
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_some());
    assert_eq!(p.pool_paused, None);

    let mut o = pinned_then_release(NEW_BASE);
    o.config.spec.base_image = Some(NEW_BASE.into());
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, None);
}

#[test]
fn a_pool_openshifts_own_layering_builds_for_is_refused() {
    let mut o = observed(config("RUN true\n"));
    o.layered_by_openshift = Some("worker".into());
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none() && p.machine_config.is_none());
    let degraded = cond(&p.config_status, ct::DEGRADED);
    assert_eq!(degraded.reason, "PoolLayeredByOpenShift");
    assert!(
        degraded
            .message
            .contains("machineconfiguration.openshift.io")
    );
}

/// The entitlement is copied into the build's Secret and mounted in its build step only for a
/// config that opts in: fragment code reads whatever RUN steps get.
#[test]
fn the_entitlement_reaches_only_configs_that_opt_in() {
    use k8s_openapi::ByteString;
    let entitlement = |opt_in: Option<strata_crds::Entitlement>| {
        let mut config = config("RUN true\n");
        config.spec.entitlement = opt_in;
        let mut o = observed(config);
        o.environment.entitlement = Some(
            [(
                "entitlement-key.pem".to_string(),
                ByteString(b"KEY".to_vec()),
            )]
            .into(),
        );
        o.builds = vec![created(&o)];
        let objects = plan(&o, &Settings::for_tests()).build_objects.unwrap();
        let in_secret = objects
            .credentials
            .data
            .unwrap_or_default()
            .contains_key("entitlement.entitlement-key.pem");
        let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
        let mounted = pod
            .init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .any(|m| m.name == "entitlement");
        (in_secret, mounted)
    };
    assert_eq!(entitlement(None), (false, false));
    assert_eq!(
        entitlement(Some(strata_crds::Entitlement::Omit)),
        (false, false)
    );
    assert_eq!(
        entitlement(Some(strata_crds::Entitlement::Mount)),
        (true, true)
    );
}

// A degraded pool (pool_wait.rs): no build, no Job, no rebuild, no pin until it recovers.

/// `o`'s pool with the MCO's conditions `conditions` (`(type, reason, message)`, all True).
pub(super) fn degrade(o: &mut Observed, conditions: &[(&str, &str, &str)]) {
    let pool = o.pool.as_mut().unwrap();
    pool.status.conditions = vec![view(json!({"type": "Updated", "status": "True"}))];
    for (ty, reason, message) in conditions {
        pool.status.conditions.push(view(
            json!({"type": ty, "status": "True", "reason": reason, "message": message}),
        ));
    }
}

pub(super) const NODE_DEGRADED: (&str, &str, &str) = (
    "NodeDegraded",
    "1 nodes are reporting degraded status on sync",
    "Node w1 is reporting: \"disk full\"",
);
const RENDER_DEGRADED: (&str, &str, &str) = (
    "RenderDegraded",
    "",
    "Failed to render configuration for pool worker: bad ignition",
);

fn waiting(p: &Plan, o: &Observed) -> Option<(String, String, String)> {
    status(p, o)
        .conditions
        .iter()
        .find(|c| c.type_ == ct::WAITING_FOR_POOL)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub(super) fn events_of<'p>(p: &'p Plan, reason: &str) -> Vec<&'p PlannedEvent> {
    p.events.iter().filter(|e| e.reason == reason).collect()
}

#[test]
fn a_degraded_pool_starts_no_build_and_says_why_until_it_recovers() {
    let mut o = observed(config("RUN true\n"));
    degrade(&mut o, &[NODE_DEGRADED]);
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none() && p.build_objects.is_none() && p.machine_config.is_none());
    let build = created(&observed(config("RUN true\n")))
        .metadata
        .name
        .unwrap();
    let (value, reason, message) = waiting(&p, &o).unwrap();
    assert_eq!((value.as_str(), reason.as_str()), ("True", "NodeDegraded"));
    for needle in [
        &format!("build {build} of the current inputs"),
        "1 nodes are reporting degraded status on sync",
        "disk full",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    let building = cond(&p.config_status, ct::BUILDING);
    assert_eq!(
        (building.status.as_str(), building.reason.as_str()),
        ("False", "WaitingForPool")
    );
    assert_eq!(cond(&p.config_status, ct::READY).status, "False");
    assert_eq!(cond(&p.config_status, ct::DEGRADED).status, "False");
    // No build exists to name yet.
    assert!(status(&p, &o).machine_os_build.is_none());
    let warned = events_of(&p, "NodeDegraded");
    assert_eq!(warned.len(), 1);
    assert_eq!(
        (warned[0].type_, warned[0].action),
        (EventType::Warning, "WaitForPool")
    );
    assert_eq!(p.metrics.waiting_for_pool.as_deref(), Some("NodeDegraded"));
    assert_eq!(p.metrics.latest_build_failed, Some(false));

    // The same condition again: no Event, nothing to write.
    let o = applied(o, &p);
    let again = plan(&o, &Settings::for_tests());
    assert!(again.events.is_empty() && again.config_status.is_none());
    assert_eq!(
        again.metrics.waiting_for_pool.as_deref(),
        Some("NodeDegraded")
    );

    // Another condition holds it now: one more Event, the reason follows.
    let mut o = o;
    degrade(&mut o, &[RENDER_DEGRADED]);
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none());
    assert_eq!(waiting(&p, &o).unwrap().1, "RenderDegraded");
    assert!(waiting(&p, &o).unwrap().2.contains("bad ignition"));
    assert_eq!(events_of(&p, "RenderDegraded").len(), 1);
    assert_eq!(
        p.metrics.waiting_for_pool.as_deref(),
        Some("RenderDegraded")
    );

    // The pool recovers: the build is created at once, and WaitingForPool says why it goes on.
    let mut o = applied(o, &p);
    degrade(&mut o, &[]);
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(
        p.create_build.as_ref().unwrap().metadata.name.as_deref(),
        Some(build.as_str())
    );
    let (value, reason, _) = waiting(&p, &o).unwrap();
    assert_eq!(
        (value.as_str(), reason.as_str()),
        ("False", "PoolRecovered")
    );
    let recovered = events_of(&p, "PoolRecovered");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].type_, EventType::Normal);
    assert_eq!(cond(&p.config_status, ct::BUILDING).reason, "Building");
    assert_eq!(p.metrics.waiting_for_pool, None);
    // Once recovered, no further Event.
    let mut o = applied(o, &p);
    o.builds = vec![created(&o)];
    let p = plan(&o, &Settings::for_tests());
    assert!(events_of(&p, "PoolRecovered").is_empty());
}

#[test]
fn a_pool_degraded_only_by_an_image_build_still_builds() {
    // The MCO lets a retry clear ImageBuildDegraded; the aggregate Degraded alone says nothing.
    let mut o = observed(config("RUN true\n"));
    degrade(
        &mut o,
        &[
            (
                "ImageBuildDegraded",
                "BuildFailed",
                "Failed to build OS image",
            ),
            ("Degraded", "", "Custom OS image build failed"),
        ],
    );
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_some());
    assert!(waiting(&p, &o).is_none());
    assert_eq!(p.metrics.waiting_for_pool, None);
}

#[test]
fn a_build_that_succeeds_while_the_pool_is_degraded_is_pinned_once_it_recovers() {
    let mut cfg = config("RUN echo two\n");
    let previous = format!("registry.example.com/strata/os@sha256:{}", "9".repeat(64));
    cfg.status = Some(MachineOSConfigStatus {
        current_image_pull_spec: Some(previous.clone()),
        ..Default::default()
    });
    let mut o = observed(cfg);
    o.builds = vec![created(&o)];
    // A build in flight goes on while the pool is degraded, as in the MCO.
    degrade(&mut o, &[NODE_DEGRADED]);
    o.job = JobObservation::Running {
        step: None,
        attempts: 1,
        waiting: None,
    };
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.build_status[0].1.phase(), Some(BuildPhase::Building));
    assert!(waiting(&p, &o).is_none(), "nothing waits yet");
    let mut o = applied(o, &p);

    // It succeeds: recorded, but not pinned; the pool keeps its image.
    o.job = succeeded_job();
    o.image_check = present(&o);
    let p = plan(&o, &Settings::for_tests());
    let image = format!("registry.example.com/strata/os@{DIGEST}");
    assert_eq!(p.build_status[0].1.phase(), Some(BuildPhase::Succeeded));
    assert!(p.machine_config.is_none(), "not pinned while degraded");
    assert!(events_of(&p, "PoolPinned").is_empty());
    assert_eq!(
        status(&p, &o).current_image_pull_spec.as_deref(),
        Some(previous.as_str())
    );
    let ready = cond(&p.config_status, ct::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WaitingForPool")
    );
    assert!(
        ready.message.contains(&image) && ready.message.contains(&previous),
        "{}",
        ready.message
    );
    let (value, reason, message) = waiting(&p, &o).unwrap();
    assert_eq!((value.as_str(), reason.as_str()), ("True", "NodeDegraded"));
    assert!(message.contains(&format!("pinning {image}")), "{message}");
    assert_eq!(events_of(&p, "NodeDegraded").len(), 1);
    assert_eq!(p.metrics.latest_build_failed, Some(false));

    // Still degraded: nothing more.
    let mut o = applied(o, &p);
    o.job = JobObservation::Missing;
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none() && p.events.is_empty() && p.config_status.is_none());

    // Recovered: pinned, with its Events.
    let mut o = applied(o, &p);
    degrade(&mut o, &[]);
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(
        p.machine_config.as_ref().unwrap()["spec"]["osImageURL"],
        image
    );
    assert_eq!(events_of(&p, "PoolPinned").len(), 1);
    assert_eq!(events_of(&p, "PoolRecovered").len(), 1);
    assert_eq!(cond(&p.config_status, ct::READY).status, "True");
    assert_eq!(
        status(&p, &o).current_image_pull_spec.as_deref(),
        Some(image.as_str())
    );
}

#[test]
fn a_degraded_pool_holds_the_builder_job_and_a_rebuild_back() {
    // The build exists (created before the pool degraded), its Job does not: not started.
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    degrade(&mut o, &[NODE_DEGRADED]);
    let p = plan(&o, &Settings::for_tests());
    assert!(p.build_objects.is_none(), "no Job while degraded");
    assert!(p.build_status.is_empty());
    assert!(
        waiting(&p, &o)
            .unwrap()
            .2
            .contains("the builder Job of build"),
        "{:?}",
        waiting(&p, &o)
    );
    degrade(&mut o, &[]);
    assert!(
        plan(&o, &Settings::for_tests()).build_objects.is_some(),
        "made once it recovers"
    );

    // A succeeded build and the rebuild annotation: the build is kept, the annotation waits.
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = present(&o);
    let done = plan(&o, &Settings::for_tests());
    let mut asked = applied(o.clone(), &done);
    asked.job = JobObservation::Missing;
    asked.config.metadata.annotations =
        Some([(REBUILD_ANNOTATION.to_string(), "1".to_string())].into());
    degrade(&mut asked, &[RENDER_DEGRADED]);
    let p = plan(&asked, &Settings::for_tests());
    assert!(p.delete_builds.is_empty() && !p.remove_rebuild_annotation);
    assert!(events_of(&p, "Rebuilding").is_empty());
    let (_, reason, message) = waiting(&p, &asked).unwrap();
    assert_eq!(reason, "RenderDegraded");
    assert!(message.contains("rebuilding"), "{message}");
    // The pool keeps running the build's image: Ready stays.
    assert_eq!(
        status(&p, &asked)
            .conditions
            .iter()
            .find(|c| c.type_ == ct::READY)
            .unwrap()
            .status,
        "True"
    );
    degrade(&mut asked, &[]);
    let p = plan(&asked, &Settings::for_tests());
    assert_eq!(
        p.delete_builds,
        vec![o.builds[0].metadata.name.clone().unwrap()]
    );
}

#[test]
fn a_degraded_pool_is_not_held_for_a_new_base_nor_repinned() {
    let mut o = pinned_then_release(NEW_BASE);
    degrade(&mut o, &[NODE_DEGRADED]);
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, None, "a degraded pool is not paused");
    assert!(p.create_build.is_none());
    assert_eq!(held(&p, &o).0, "");
    degrade(&mut o, &[]);
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.pool_paused, Some(true), "held once it recovers");
    assert!(p.create_build.is_some());

    // A MachineConfig someone removed is written again only once the pool recovers.
    let mut o = pinned_then_release(BASE);
    o.machine_config = None;
    degrade(&mut o, &[NODE_DEGRADED]);
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    assert_eq!(cond(&p.config_status, ct::READY).reason, "WaitingForPool");
    degrade(&mut o, &[]);
    assert!(plan(&o, &Settings::for_tests()).machine_config.is_some());
}

#[test]
fn the_latest_build_failed_metric_follows_the_current_inputs() {
    let mut o = observed(config("RUN false\n"));
    o.builds = vec![created(&o)];
    o.job = JobObservation::Failed {
        attempts: 1,
        reason: "PodFailurePolicy".into(),
        message: String::new(),
        termination: Some(TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "StepFailed".into(),
            message: "step RUN false failed".into(),
            log_tail: String::new(),
            boot_check: None,
        }),
        killed: None,
        raw_message: String::new(),
    };
    let p = plan(&o, &Settings::for_tests());
    assert_eq!(p.metrics.latest_build_failed, Some(true));
    assert_eq!(p.metrics.config, "worker");
    let o = applied(o, &p);
    // Recorded: still failed, round after round (a state, not an event).
    assert_eq!(
        plan(&o, &Settings::for_tests()).metrics.latest_build_failed,
        Some(true)
    );
    // The base cannot be resolved: the current inputs are unknown, the gauge is left as it is.
    let mut unknown = o.clone();
    unknown.base = Err(BaseUnknown::Unresolved("registry down".into()));
    assert_eq!(
        plan(&unknown, &Settings::for_tests())
            .metrics
            .latest_build_failed,
        None
    );
    // Fixed fragments: new inputs, a new build, no longer failed.
    let mut fixed = o.clone();
    fixed.config.spec.container_file[0].content = "RUN true\n".into();
    assert_eq!(
        plan(&fixed, &Settings::for_tests())
            .metrics
            .latest_build_failed,
        Some(false)
    );
    // The same inputs rebuilt: not failed while the rebuild runs.
    let mut rebuild = o;
    rebuild.config.metadata.annotations =
        Some([(REBUILD_ANNOTATION.to_string(), "1".to_string())].into());
    assert_eq!(
        plan(&rebuild, &Settings::for_tests())
            .metrics
            .latest_build_failed,
        Some(false)
    );
}

/// Pool condition types the MCO writes, the four holding ones among them.
const POOL_CONDITION_TYPES: [&str; 8] = [
    "Updated",
    "Updating",
    "Degraded",
    "ImageBuildDegraded",
    "NodeDegraded",
    "RenderDegraded",
    "PinnedImageSetsDegraded",
    "PoolSynchronizerDegraded",
];

proptest::proptest! {
    /// Whatever conditions the pool has: while one of the MCO's four is True, no round creates a
    /// build or a Job, deletes one to rebuild it, or writes a MachineConfig, and WaitingForPool
    /// names the first of them; otherwise a fresh config builds and a succeeded build is pinned.
    #[test]
    fn no_build_and_no_pin_while_the_pool_is_degraded(
        conditions in proptest::collection::vec(
            (0..POOL_CONDITION_TYPES.len(), proptest::sample::select(vec!["True", "False", "Unknown"])),
            0..6,
        ),
        stage in 0..4usize,
    ) {
        let mut o = observed(config("RUN true\n"));
        // 0: nothing built; 1: a build without its Job; 2: a build succeeded; 3: and pinned (on
        // a healthy pool), then the rebuild asked.
        if stage >= 1 {
            o.builds = vec![created(&o)];
        }
        if stage >= 2 {
            o.job = succeeded_job();
            o.image_check = present(&o);
        }
        if stage == 3 {
            let done = plan(&o, &Settings::for_tests());
            o = applied(o, &done);
            o.job = JobObservation::Missing;
            o.config.metadata.annotations =
                Some([(REBUILD_ANNOTATION.to_string(), "1".to_string())].into());
        }
        o.pool.as_mut().unwrap().status.conditions = conditions
            .iter()
            .map(|(i, s)| view(json!({"type": POOL_CONDITION_TYPES[*i], "status": s})))
            .collect();
        let holding = pool_wait::HOLDING.iter().find(|ty| {
            conditions.iter().any(|(i, s)| POOL_CONDITION_TYPES[*i] == **ty && *s == "True")
        });
        let p = plan(&o, &Settings::for_tests());
        match holding {
            Some(ty) => {
                proptest::prop_assert!(p.create_build.is_none() && p.build_objects.is_none());
                proptest::prop_assert!(p.machine_config.is_none() && p.delete_builds.is_empty());
                proptest::prop_assert_eq!(p.pool_paused, None);
                let (value, reason, _) = waiting(&p, &o).unwrap();
                proptest::prop_assert_eq!((value.as_str(), reason.as_str()), ("True", *ty));
                proptest::prop_assert_eq!(p.metrics.waiting_for_pool.as_deref(), Some(*ty));
            }
            None => {
                proptest::prop_assert!(waiting(&p, &o).is_none());
                match stage {
                    0 => proptest::prop_assert!(p.create_build.is_some()),
                    1 => proptest::prop_assert!(p.build_objects.is_some()),
                    2 => proptest::prop_assert!(p.machine_config.is_some()),
                    _ => proptest::prop_assert!(!p.delete_builds.is_empty()),
                }
            }
        }
    }
}

fn boot_result(passed: bool, failed: &[&str]) -> strata_crds::BootCheckResult {
    strata_crds::BootCheckResult {
        passed,
        seconds: 170,
        accelerator: "TCG".into(),
        failed_units: failed.iter().map(|u| u.to_string()).collect(),
        base_image_failed_units: Some(vec![]),
    }
}

#[test]
fn a_build_that_did_not_boot_fails_with_its_units_and_never_touches_the_pool() {
    let (o, previous) = failed_after_a_pin(
        "RUN echo 'LABEL=x /var/broken xfs defaults 0 2' >> /etc/fstab\n",
        "boot",
        TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "BootFailed".into(),
            message: "the image did not boot as required: failed units: var-broken.mount".into(),
            log_tail: "var-broken.mount: Failed to mount /var/broken".into(),
            boot_check: Some(Box::new(boot_result(false, &["var-broken.mount"]))),
        },
    );
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    let build_status = &p.build_status[0].1;
    assert_eq!(build_status.phase(), Some(BuildPhase::Failed));
    assert_eq!(build_status.failure.as_ref().unwrap().reason, "BootFailed");
    assert_eq!(
        build_status.boot_check,
        Some(boot_result(false, &["var-broken.mount"]))
    );
    assert_eq!(
        status(&p, &o).current_image_pull_spec.as_deref(),
        Some(previous.as_str())
    );
    let event = p
        .events
        .iter()
        .find(|e| e.type_ == EventType::Warning && e.reason == "BootFailed")
        .unwrap();
    assert!(event.note.contains("var-broken.mount"), "{}", event.note);
    assert_eq!(p.metrics.boot_check, Some((false, 170.0, "TCG".into())));
}

#[test]
fn a_build_that_booted_records_its_check() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = JobObservation::Succeeded {
        attempts: 1,
        message: Some(TerminationMessage::Success {
            files: Vec::new(),
            digest: DIGEST.into(),
            size_bytes: 1,
            phases: vec![],
            boot_check: Some(Box::new(boot_result(true, &[]))),
        }),
    };
    o.image_check = present(&o);
    let p = plan(&o, &Settings::for_tests());
    let status = &p.build_status[0].1;
    assert_eq!(status.phase(), Some(BuildPhase::Succeeded));
    assert_eq!(status.boot_check, Some(boot_result(true, &[])));
    assert!(p.machine_config.is_some());
    assert_eq!(p.metrics.boot_check, Some((true, 170.0, "TCG".into())));
}

/// The boot step gets the config's check (defaults filled) and the base's recorded failures; a
/// config that turns the check off gets no boot step.
#[test]
fn the_builder_job_boots_unless_the_config_says_not_to() {
    let boot_step = |o: &Observed| {
        let p = plan(o, &Settings::for_tests());
        let job = p.build_objects.unwrap().job;
        let pod = job.spec.unwrap().template.spec.unwrap();
        pod.init_containers
            .unwrap()
            .into_iter()
            .find(|c| c.name == "boot")
            .map(|c| {
                let plan = c
                    .env
                    .unwrap()
                    .into_iter()
                    .find(|e| e.name == "STRATA_BOOT_PLAN")
                    .and_then(|e| e.value)
                    .unwrap();
                serde_json::from_str::<strata_crds::contract::BootPlan>(&plan).unwrap()
            })
    };
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.base_failed_units = Some(vec!["auditd.service".into()]);
    let plan_of_default = boot_step(&o).unwrap();
    assert_eq!(
        (
            plan_of_default.timeout_seconds,
            plan_of_default.target.as_str()
        ),
        (900, "multi-user.target")
    );
    assert_eq!(
        plan_of_default.base_image_failed_units,
        Some(vec!["auditd.service".to_string()])
    );
    o.config.spec.boot_check = Some(strata_crds::BootCheck {
        mode: Some(strata_crds::BootCheckMode::Enabled),
        timeout_seconds: Some(120),
        active_units: vec!["agent.service".into()],
        ..Default::default()
    });
    let tuned = boot_step(&o).unwrap();
    assert_eq!(tuned.timeout_seconds, 120);
    assert_eq!(tuned.active_units, ["agent.service"]);
    o.config.spec.boot_check = Some(strata_crds::BootCheck {
        mode: Some(strata_crds::BootCheckMode::Disabled),
        ..Default::default()
    });
    assert_eq!(boot_step(&o), None);
}

#[test]
fn the_base_s_failures_come_from_the_newest_build_that_recorded_them() {
    use crate::controller::reconcile::observe::recorded_base_failures;
    let o = observed(config("RUN true\n"));
    let with = |units: Option<&[&str]>, end: i64, base: &str| {
        let mut b = created(&o);
        b.spec.base_image = base.into();
        let mut status = MachineOSBuildStatus {
            build_end: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(end).unwrap(),
            )),
            ..Default::default()
        };
        status.boot_check = units.map(|u| strata_crds::BootCheckResult {
            base_image_failed_units: Some(u.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        });
        b.status = Some(status);
        b
    };
    let builds = [
        with(Some(&["old.service"]), 100, BASE),
        with(Some(&["new.service"]), 200, BASE),
        with(None, 300, BASE),
        with(
            Some(&["other-base.service"]),
            400,
            "registry.example.com/other@sha256:1",
        ),
    ];
    assert_eq!(
        recorded_base_failures(BASE, builds.iter()),
        Some(vec!["new.service".to_string()])
    );
    assert_eq!(
        recorded_base_failures("registry.example.com/none@sha256:2", builds.iter()),
        None
    );
}
