//! Seeding a MachineOSConfig with a pre-built image, as the MCO's
//! `machineconfiguration.openshift.io/pre-built-image` annotation does: an image built elsewhere
//! (by a release pipeline, say) is taken by the config's first build instead of building: the
//! builder pod pulls it with the pull credentials (as the machines will), runs the image gate and
//! the boot check on it and pushes nothing; verified in its registry (with the pull credentials),
//! it is pinned as it is (`Seeded`, reason `PreBuiltImageSeeded`), and never deleted by the
//! registry cleanup (Strata did not push it). Only while the config was never seeded: once it was,
//! the annotation is history and every later input builds as usual.

use strata_crds::contract::annotations::PRE_BUILT_IMAGE;
use strata_crds::{BuildPhase, MachineOSBuild, condition_types as ct};

use super::{EventType, Planner};
use crate::render::is_digest_pinned;

/// What the config's annotation asks of its next build.
pub(super) enum Seed {
    /// Build as usual.
    Build,
    /// Take this image instead.
    Image(String),
    /// The annotation is not a digest-pinned image: refused (Degraded), nothing built.
    Refused,
}

/// The pre-built image the config's next build takes: the annotation's, while the config was not
/// seeded yet.
pub(super) fn next(planner: &mut Planner<'_>) -> Seed {
    let config = &planner.observed.config;
    let Some(image) = config
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PRE_BUILT_IMAGE))
        .map(|i| i.trim().to_string())
    else {
        return Seed::Build;
    };
    if planner.status.is_true(ct::SEEDED) {
        return Seed::Build;
    }
    if !is_digest_pinned(&image) {
        planner.refuse(
            "InvalidPreBuiltImage",
            "Validate",
            format!(
                "metadata.annotations[\"{PRE_BUILT_IMAGE}\"]: '{image}' is not an image pinned \
                 by digest (host[:port]/path/name@sha256:<64 hex>); fix or remove it"
            ),
        );
        return Seed::Refused;
    }
    Seed::Image(image)
}

/// Marks `build` as seeding the config with `image`: the label the MCO puts on its synthetic
/// builds, the image in the annotation. Its push spec stays the config's (a disk image goes
/// there); the image it verifies and pins is `image` itself.
pub(super) fn mark(build: &mut MachineOSBuild, image: &str) {
    build
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(PRE_BUILT_IMAGE.into(), "true".into());
    build
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(PRE_BUILT_IMAGE.into(), image.into());
}

/// `Seeded` on the config as its seeding build goes: False while it runs, is made again after an
/// interruption, or when it failed (with what to do), True once the image is verified.
pub(super) fn record(planner: &mut Planner<'_>, build: &MachineOSBuild, phase: BuildPhase) {
    let Some(image) = build.pre_built_image() else {
        return;
    };
    let name = build.metadata.name.as_deref().unwrap_or_default();
    match phase {
        BuildPhase::Succeeded => {
            if !planner.status.is_true(ct::SEEDED) {
                planner.event(
                    EventType::Normal,
                    "PreBuiltImageSeeded",
                    "Seed",
                    format!("the pre-built image {image} passed the checks of build {name}"),
                );
            }
            planner.status.set(
                ct::SEEDED,
                true,
                "PreBuiltImageSeeded",
                format!(
                    "the pre-built image {image} passed the checks of build {name} and is the \
                     pool's image, built nowhere here; later changes build as usual"
                ),
            );
        }
        // An interrupted build of the current inputs is made again (`rebuild_ended`): the
        // image is still being checked, nothing failed.
        BuildPhase::Interrupted => planner.status.set(
            ct::SEEDED,
            false,
            "Seeding",
            format!(
                "build {name} was interrupted before it finished checking the pre-built image \
                 {image}; it is made again"
            ),
        ),
        BuildPhase::Failed => planner.status.set(
            ct::SEEDED,
            false,
            "PreBuiltImageFailed",
            format!(
                "the pre-built image {image} did not pass build {name} (its status says why); \
                 fix or remove the annotation, then rebuild (kubectl strata rebuild)"
            ),
        ),
        BuildPhase::Prepared | BuildPhase::Building => planner.status.set(
            ct::SEEDED,
            false,
            "Seeding",
            format!("build {name} checks the pre-built image {image}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use strata_crds::contract::TerminationMessage;
    use strata_crds::contract::builder_pod::SEED_IMAGE_ENV;

    use super::super::tests::{NODE_DEGRADED, applied, created, degrade, succeeded_job};
    use super::super::{JobObservation, Observed, Plan, plan, plan_deletion};
    use super::*;
    use crate::controller::fixtures::{DIGEST, config, observed};
    use crate::controller::registry_client::ImageCheck;
    use crate::controller::settings::Settings;

    fn pre_built() -> String {
        format!("quay.example.com/team/os@{DIGEST}")
    }

    fn seeding(fragment: &str, image: &str) -> Observed {
        let mut c = config(fragment);
        c.metadata.annotations = Some([(PRE_BUILT_IMAGE.to_string(), image.to_string())].into());
        observed(c)
    }

    fn condition(p: &Plan, ty: &str) -> (String, String) {
        let c = p
            .config_status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == ty))
            .unwrap_or_else(|| panic!("no {ty} condition"));
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_pre_built_image_is_checked_and_pinned_as_it_is_and_later_edits_build() {
        let settings = Settings::for_tests();
        let mut o = seeding("RUN true\n", &pre_built());
        let p = plan(&o, &settings);
        let build = p.create_build.as_ref().unwrap();
        assert_eq!(build.pre_built_image(), Some(pre_built().as_str()));
        assert!(
            p.events[0].note.contains("pre-built image"),
            "{:?}",
            p.events
        );

        // Its builder pod's pull, build and push steps take the pre-built image; the boot step
        // boots what the build step left, as for a built image.
        o.builds = vec![created(&o)];
        let p = plan(&o, &settings);
        let job = &p.build_objects.as_ref().unwrap().job;
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let steps: Vec<_> = pod
            .init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .collect();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["pull", "build", "boot", "push"]);
        for step in steps.iter().filter(|s| s.name != "boot") {
            let env = step.env.as_deref().unwrap_or_default();
            assert!(
                env.iter()
                    .any(|e| e.name == SEED_IMAGE_ENV && e.value.as_deref() == Some(&pre_built())),
                "step {} lacks {SEED_IMAGE_ENV}",
                step.name
            );
        }
        assert_eq!(
            condition(&p, ct::SEEDED),
            ("False".into(), "Seeding".into())
        );

        // The builder reports the pre-built digest; the registry serves the image, which
        // carries no inputs hash of Strata's: it is pinned as it is.
        let mut o = applied(o, &p);
        o.job = succeeded_job();
        o.image_check = Some(ImageCheck::Present { inputs_hash: None });
        let p = plan(&o, &settings);
        let status = &p.build_status[0].1;
        assert_eq!(status.phase(), Some(BuildPhase::Succeeded));
        assert_eq!(
            status.digested_image_push_spec.as_deref(),
            Some(pre_built().as_str())
        );
        assert_eq!(
            p.machine_config.as_ref().unwrap()["spec"]["osImageURL"],
            pre_built()
        );
        assert_eq!(
            condition(&p, ct::SEEDED),
            ("True".into(), "PreBuiltImageSeeded".into())
        );
        assert!(p.events.iter().any(|e| e.reason == "PreBuiltImageSeeded"));

        // Strata never pushed it: the registry cleanup never deletes it, even with nothing
        // pinning it any more.
        let mut gone = applied(o.clone(), &p);
        gone.config.status.as_mut().unwrap().current_image_pull_spec = None;
        gone.machine_config = None;
        assert!(plan_deletion(&gone, &settings).delete_images.is_empty());

        // Seeded: a fragment edit builds as usual, the annotation still there.
        let mut edited = applied(o, &p);
        let status = edited.config.status.clone();
        edited.config = seeding("RUN echo edited\n", &pre_built()).config;
        edited.config.status = status;
        edited.job = JobObservation::Missing;
        edited.image_check = None;
        let p = plan(&edited, &settings);
        let build = p.create_build.as_ref().unwrap();
        assert_eq!(build.pre_built_image(), None);
    }

    #[test]
    fn an_interrupted_seeding_build_is_made_again_and_still_seeding() {
        let settings = Settings::for_tests();
        let mut o = seeding("RUN true\n", &pre_built());
        let mut build = created(&o);
        build.status = Some(super::super::build_status::ended(
            &build,
            BuildPhase::Interrupted,
            "Terminated",
            "the builder pod was deleted",
            k8s_openapi::jiff::Timestamp::now(),
        ));
        o.builds = vec![build.clone()];
        // The pool held: the interrupted build stays for now; the image is still being checked.
        degrade(&mut o, &[NODE_DEGRADED]);
        let p = plan(&o, &settings);
        assert!(p.delete_builds.is_empty());
        assert_eq!(
            condition(&p, ct::SEEDED),
            ("False".into(), "Seeding".into())
        );
        let seeded = p.config_status.as_ref().unwrap().conditions.iter();
        assert!(
            seeded
                .filter(|c| c.type_ == ct::SEEDED)
                .any(|c| c.message.contains("was interrupted") && c.message.contains("made again"))
        );
        // The pool well again: the build is made again.
        let mut o = seeding("RUN true\n", &pre_built());
        o.builds = vec![build.clone()];
        let p = plan(&o, &settings);
        assert_eq!(p.delete_builds, vec![build.metadata.name.clone().unwrap()]);
    }

    #[test]
    fn a_pre_built_image_not_pinned_by_digest_is_refused() {
        let p = plan(
            &seeding("RUN true\n", "quay.example.com/team/os:latest"),
            &Settings::for_tests(),
        );
        assert!(p.create_build.is_none());
        assert_eq!(
            condition(&p, ct::DEGRADED),
            ("True".into(), "InvalidPreBuiltImage".into())
        );
        let message = &p.config_status.as_ref().unwrap().conditions;
        assert!(message.iter().any(|c| c.message.contains(
            "metadata.annotations[\"machineconfiguration.openshift.io/pre-built-image\"]"
        )));
    }

    #[test]
    fn a_pre_built_image_whose_digest_the_builder_does_not_report_fails() {
        let settings = Settings::for_tests();
        let mut o = seeding("RUN true\n", &pre_built());
        o.builds = vec![created(&o)];
        let other = format!("sha256:{}", "e".repeat(64));
        o.job = JobObservation::Succeeded {
            attempts: 1,
            message: Some(TerminationMessage::Success {
                files: Vec::new(),
                digest: other,
                size_bytes: 1,
                boot_check: None,
                phases: Vec::new(),
            }),
        };
        o.image_check = Some(ImageCheck::Present { inputs_hash: None });
        let p = plan(&o, &settings);
        let status = &p.build_status[0].1;
        assert_eq!(status.phase(), Some(BuildPhase::Failed));
        assert_eq!(status.failure.as_ref().unwrap().reason, "DigestMismatch");
        assert!(p.machine_config.is_none());
        assert_eq!(
            condition(&p, ct::SEEDED),
            ("False".into(), "PreBuiltImageFailed".into())
        );
    }
}
