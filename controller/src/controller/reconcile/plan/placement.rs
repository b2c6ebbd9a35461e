//! A builder Job that waits for a node (or for its pod to be admitted) and that the controller's
//! settings would now place elsewhere: an administrator changed `--builder-node-selector`,
//! `--builder-tolerations`, `--builder-priority-class` or the cache claim to let the build run.
//! A Job keeps the pod template it was made with, so the build would wait on for the old
//! placement; the Job goes instead, and the next round makes it again with the new one.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Toleration;
use strata_crds::MachineOSBuild;

use super::build_status::{NO_POD_CREATED, UNSCHEDULABLE, Waiting, desired_objects};
use super::{EventType, Planner};
use crate::controller::names;
use crate::render::Rendered;

/// What decides where a builder pod may run.
#[derive(Debug, Default, PartialEq)]
struct Placement {
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<Toleration>,
    priority_class: Option<String>,
    /// The claims its volumes name (the cache claim may be bound to one node).
    claims: Vec<String>,
}

impl Placement {
    fn of(job: &Job) -> Placement {
        let Some(spec) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
            return Placement::default();
        };
        Placement {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            priority_class: spec.priority_class_name.clone(),
            claims: spec
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
                .collect(),
        }
    }
}

/// When the current build's Job `waiting` for a node or a pod was made with another placement than
/// the settings give now, plans its deletion (with an Event).
pub(super) fn replace_if_moved(
    planner: &mut Planner<'_>,
    build: &MachineOSBuild,
    rendered: &Rendered,
    waiting: &Waiting,
) {
    if ![UNSCHEDULABLE, NO_POD_CREATED].contains(&waiting.reason.as_str()) {
        return;
    }
    let job_name = names::job(build);
    let Some(made) = planner
        .observed
        .jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(job_name.as_str()))
    else {
        return;
    };
    let Ok(desired) = desired_objects(planner, build, rendered) else {
        return;
    };
    if Placement::of(made) == Placement::of(&desired.job) {
        return;
    }
    planner.plan.delete_jobs.push(job_name.clone());
    planner.event(
        EventType::Normal,
        "BuilderReplaced",
        "StartBuild",
        format!(
            "build {}: Job {job_name} waited ({}) with a placement the controller's settings no \
             longer give; it is made again with the new one",
            build.metadata.name.as_deref().unwrap_or_default(),
            waiting.reason
        ),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(selector: serde_json::Value, claim: &str) -> Job {
        serde_json::from_value(json!({"spec": {"template": {"spec": {
            "nodeSelector": selector,
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "containers": [],
            "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": claim}},
                        {"name": "tmp", "emptyDir": {}}]}}}}))
        .unwrap()
    }

    #[test]
    fn placement_is_the_selector_tolerations_priority_and_claims() {
        let here = job(json!({"kubernetes.io/hostname": "a"}), "cache");
        assert_eq!(Placement::of(&here), Placement::of(&here.clone()));
        assert_ne!(
            Placement::of(&here),
            Placement::of(&job(json!({"kubernetes.io/hostname": "b"}), "cache"))
        );
        assert_ne!(
            Placement::of(&here),
            Placement::of(&job(json!({"kubernetes.io/hostname": "a"}), "other"))
        );
        assert_eq!(Placement::of(&here).claims, ["cache"]);
    }
}
