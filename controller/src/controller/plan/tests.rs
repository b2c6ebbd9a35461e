use serde_json::json;
use strata_crds::{ContainerfileArch, ContainerfileEntry};

use super::*;

const BASE: &str = "registry.example.com/rhcos@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn config(fragment: &str) -> MachineOSConfig {
    let mut config: MachineOSConfig = serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
        "metadata": {"name": "worker", "uid": "aaaaaaaa-0000-0000-0000-000000000000", "generation": 3},
        "spec": {
            "machineConfigPool": {"name": "worker"},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": "push"},
            "renderedImagePushSpec": "registry.example.com/strata/os:latest",
        }
    }))
    .unwrap();
    config.spec.container_file = vec![ContainerfileEntry {
        containerfile_arch: ContainerfileArch::NoArch,
        content: fragment.into(),
    }];
    config
}

fn pool() -> Value {
    json!({"metadata": {"name": "worker"}, "status": {"conditions": [{"type": "Updated", "status": "True"}]}})
}

fn observed(config: MachineOSConfig) -> Observed {
    Observed {
        config,
        pool: Some(pool()),
        base: Ok(BASE.into()),
        builds: vec![],
        job: JobObservation::Missing,
        auth: Ok(BuildAuth {
            push: "{\"auths\":{}}".into(),
            base: None,
        }),
        image_check: None,
        machine_config: None,
        now: Timestamp::from_second(1_800_000_000).unwrap(),
    }
}

/// The build the first plan creates, with the status it planned, as the API server would store it.
fn created(o: &Observed) -> MachineOSBuild {
    let p = plan(o, &Settings::for_tests());
    let mut build = p.create_build.unwrap();
    build.metadata.creation_timestamp = Some(Time(o.now));
    build.status = Some(p.build_status[0].1.clone());
    build
}

fn cond<'a>(
    status: &'a MachineOSConfigStatus,
    ty: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status.conditions.iter().find(|c| c.type_ == ty).unwrap()
}

#[test]
fn new_config_creates_a_prepared_build_with_its_objects() {
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
    assert_eq!(p.build_status[0].1.phase(), Some(BuildPhase::Prepared));
    assert!(
        p.build_objects
            .as_ref()
            .unwrap()
            .containerfile
            .contains("RUN true")
    );
    assert!(p.machine_config.is_none());
    assert_eq!(cond(&p.config_status, ct::BUILDING).status, "True");
    assert_eq!(p.events[0].reason, "BuildCreated");
    assert_eq!(p.config_status.observed_generation, Some(3));
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
fn missing_secret_degrades_and_retries_later() {
    let mut o = observed(config("RUN true\n"));
    o.auth = Err("Secret strata-system/push does not exist".into());
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none());
    assert_eq!(
        cond(&p.config_status, ct::DEGRADED).reason,
        "SecretUnavailable"
    );
    assert_eq!(p.requeue_after_secs, Some(60));
}

#[test]
fn running_job_moves_the_build_to_building() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = JobObservation::Running { attempts: 2 };
    let p = plan(&o, &Settings::for_tests());
    assert!(p.create_build.is_none() && p.build_objects.is_none());
    let status = &p.build_status[0].1;
    assert_eq!(status.phase(), Some(BuildPhase::Building));
    assert_eq!(status.attempts, Some(2));
    assert!(status.builder.as_ref().unwrap().job.is_some());
    assert_eq!(p.events[0].reason, "BuildStarted");
}

fn succeeded_job() -> JobObservation {
    JobObservation::Succeeded {
        attempts: 1,
        message: Some(TerminationMessage::Success {
            digest: DIGEST.into(),
            size_bytes: 1,
            build_seconds: 1.0,
            push_seconds: 1.0,
        }),
    }
}

#[test]
fn verified_digest_pins_the_pool() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = Some(ImageCheck::Present);
    let p = plan(&o, &Settings::for_tests());
    let image = format!("registry.example.com/strata/os@{DIGEST}");
    let status = &p.build_status[0].1;
    assert_eq!(status.phase(), Some(BuildPhase::Succeeded));
    assert_eq!(
        status.digested_image_push_spec.as_deref(),
        Some(image.as_str())
    );
    assert!(status.build_end.as_ref().unwrap().0 > status.build_start.as_ref().unwrap().0);
    let mc = p.machine_config.as_ref().unwrap();
    assert_eq!(mc["spec"]["osImageURL"], image);
    assert_eq!(
        mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "worker"
    );
    assert_eq!(
        p.config_status.current_image_pull_spec.as_deref(),
        Some(image.as_str())
    );
    assert_eq!(cond(&p.config_status, ct::READY).status, "True");
    assert_eq!(cond(&p.config_status, ct::POOL_UPDATED).status, "True");
    assert!(!p.delete_secrets_of.is_empty());
}

#[test]
fn unverified_digest_waits_and_missing_digest_fails_without_touching_the_pool() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = Some(ImageCheck::Unknown("registry timeout".into()));
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    assert_eq!(p.requeue_after_secs, Some(15));
    let building = cond(&p.config_status, ct::BUILDING);
    assert_eq!(building.reason, "VerifyingDigest");
    assert!(
        building.message.contains("registry timeout"),
        "{}",
        building.message
    );

    o.image_check = Some(ImageCheck::Missing);
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    assert_eq!(
        p.build_status[0].1.failure.as_ref().unwrap().reason,
        "DigestNotFound"
    );
}

#[test]
fn failed_build_keeps_the_current_image_and_never_touches_the_pool() {
    let mut cfg = config("RUN false\n");
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
        message: "container builder exited with 3".into(),
        termination: Some(TerminationMessage::Failure {
            class: crate::builder::FailureClass::Terminal,
            reason: "StepFailed".into(),
            message: "step RUN false failed: exit status 1 (Containerfile line 7)".into(),
            log_tail: "STEP 2/3: RUN false".into(),
        }),
    };
    let p = plan(&o, &Settings::for_tests());
    assert!(p.machine_config.is_none());
    let failure = p.build_status[0].1.failure.clone().unwrap();
    assert_eq!(failure.reason, "StepFailed");
    assert!(failure.message.contains("line 7"));
    assert_eq!(
        p.config_status.current_image_pull_spec.as_deref(),
        Some(previous.as_str())
    );
    let ready = cond(&p.config_status, ct::READY);
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(&previous));
    assert_eq!(cond(&p.config_status, ct::DEGRADED).status, "True");
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "BuildFailed")
    );

    // Once recorded, a failed build stays failed: nothing to write, no retry by itself.
    let mut settled = o.clone();
    settled.builds[0].status = Some(p.build_status[0].1.clone());
    let again = plan(&settled, &Settings::for_tests());
    assert!(
        again.build_status.is_empty()
            && again.create_build.is_none()
            && again.delete_build.is_none()
    );
}

#[test]
fn new_inputs_interrupt_the_build_in_flight() {
    let mut o = observed(config("RUN echo one\n"));
    let old = created(&o);
    o.config = config("RUN echo two\n");
    o.builds = vec![old.clone()];
    let p = plan(&o, &Settings::for_tests());
    let new = p.create_build.as_ref().unwrap();
    assert_ne!(new.metadata.name, old.metadata.name);
    let (name, status) = &p.build_status[0];
    assert_eq!(Some(name), old.metadata.name.as_ref());
    assert_eq!(status.phase(), Some(BuildPhase::Interrupted));
    assert_eq!(status.failure.as_ref().unwrap().reason, "Superseded");
    assert!(status.build_end.as_ref().unwrap().0 > status.build_start.as_ref().unwrap().0);
}

#[test]
fn identical_inputs_reuse_a_succeeded_build_with_no_writes_to_it() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = Some(ImageCheck::Present);
    let first = plan(&o, &Settings::for_tests());
    o.builds[0].status = Some(first.build_status[0].1.clone());
    o.job = JobObservation::Missing; // the Job may be gone; the record is what counts
    let again = plan(&o, &Settings::for_tests());
    assert!(
        again.create_build.is_none()
            && again.build_objects.is_none()
            && again.build_status.is_empty()
    );
    assert_eq!(again.machine_config, first.machine_config);
    // Once the MachineConfig and the status are in place, a resync plans no write at all.
    o.machine_config = first.machine_config.clone();
    o.config.status = Some(again.config_status.clone());
    let steady = plan(&o, &Settings::for_tests());
    assert!(
        steady.machine_config.is_none()
            && steady.build_status.is_empty()
            && steady.events.is_empty()
    );
    assert_eq!(Some(&steady.config_status), o.config.status.as_ref());
    assert!(
        steady.delete_secrets_of.is_empty()
            && steady.prune_builds.is_empty()
            && !steady.remove_rebuild_annotation
    );
}

#[test]
fn rebuild_annotation_or_a_vanished_image_rebuilds_the_same_inputs() {
    let mut o = observed(config("RUN true\n"));
    o.builds = vec![created(&o)];
    o.job = succeeded_job();
    o.image_check = Some(ImageCheck::Present);
    let done = plan(&o, &Settings::for_tests());
    o.builds[0].status = Some(done.build_status[0].1.clone());

    let mut gone = o.clone();
    gone.image_check = Some(ImageCheck::Missing);
    assert_eq!(
        plan(&gone, &Settings::for_tests()).delete_build,
        o.builds[0].metadata.name
    );

    let mut asked = o.clone();
    asked.config.metadata.annotations =
        Some([(REBUILD_ANNOTATION.to_string(), "1".to_string())].into());
    let p = plan(&asked, &Settings::for_tests());
    assert_eq!(p.delete_build, o.builds[0].metadata.name);
    assert!(
        !p.remove_rebuild_annotation,
        "kept until the new build starts"
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
        let mut status = b.status.clone().unwrap();
        status.conditions.iter_mut().for_each(|c| {
            c.status = if c.type_ == "Failed" {
                "True".into()
            } else {
                "False".into()
            }
        });
        if i == 0 {
            status.conditions.iter_mut().for_each(|c| {
                c.status = if c.type_ == "Succeeded" {
                    "True".into()
                } else {
                    "False".into()
                }
            });
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
    // Keep 2 newest (4, 3) and the one in use (0); prune 2 and 1.
    let mut pruned = p.prune_builds.clone();
    pruned.sort();
    let mut expected = vec![
        old[1].metadata.name.clone().unwrap(),
        old[2].metadata.name.clone().unwrap(),
    ];
    expected.sort();
    assert_eq!(pruned, expected);
}
