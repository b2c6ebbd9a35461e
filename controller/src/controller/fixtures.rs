//! Test fixtures of the controller: a MachineOSConfig, its pool and what observe would see of
//! them, shared by the plan, apply and observe tests.

use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use strata_crds::contract::mco;
use strata_crds::{ContainerfileArch, ContainerfileEntry, MachineOSBuild, MachineOSConfig};

use super::plan::{BuildAuth, JobObservation, Observed};

/// The release's base image, by digest.
pub const BASE: &str = "registry.example.com/rhcos@sha256:1111111111111111111111111111111111111111111111111111111111111111";
/// The digest the builder pushes.
pub const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
/// The uid of [`config`].
pub const CONFIG_UID: &str = "aaaaaaaa-0000-0000-0000-000000000000";

/// `value` read as `T` (a typed view of an MCO object, a Kubernetes object).
pub fn view<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// MachineOSConfig `worker` for pool `worker`, with one NoArch `fragment`.
pub fn config(fragment: &str) -> MachineOSConfig {
    let mut config: MachineOSConfig = view(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
        "metadata": {"name": "worker", "uid": CONFIG_UID, "generation": 3},
        "spec": {
            "machineConfigPool": {"name": "worker"},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": "push"},
            "renderedImagePushSpec": "registry.example.com/strata/os:latest",
        }
    }));
    config.spec.container_file = vec![ContainerfileEntry {
        containerfile_arch: ContainerfileArch::NoArch,
        content: fragment.into(),
    }];
    config
}

/// Pool `worker`: one machine, updated, running `rendered-worker-1`.
pub fn pool() -> mco::MachineConfigPool {
    view(json!({"metadata": {"name": "worker"}, "status": {
        "configuration": {"name": "rendered-worker-1"},
        "machineCount": 1, "updatedMachineCount": 1, "degradedMachineCount": 0,
        "conditions": [{"type": "Updated", "status": "True"}]}}))
}

/// A MachineConfig naming `image` (a rendered one, as the MCO makes it).
pub fn rendered(image: &str) -> mco::MachineConfig {
    view(json!({"spec": {"osImageURL": image}}))
}

/// What observe sees of `config` before anything was built: its pool, the base, push auth.
pub fn observed(config: MachineOSConfig) -> Observed {
    Observed {
        base_failed_units: None,
        config,
        pool: Some(pool()),
        rendered_config: None,
        target_config: None,
        machines: Vec::new(),
        layered_by_openshift: None,
        rivals: vec![],
        base: Ok(BASE.into()),
        builds: vec![],
        foreign_builds: vec![],
        jobs: vec![],
        job: JobObservation::Missing,
        disk_job: JobObservation::Missing,
        build_secrets: Default::default(),
        build_config_maps: Default::default(),
        auth: Ok(BuildAuth {
            push: "{\"auths\":{}}".into(),
            base: None,
        }),
        image_check: None,
        machine_config: None,
        environment: Default::default(),
        now: Timestamp::from_second(1_800_000_000).unwrap(),
    }
}

/// A build of `worker` on an `a…a` base, for the tests of the objects a build needs and their names.
pub fn build() -> MachineOSBuild {
    view(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
        "metadata": {"name": "worker-0123456789ab", "uid": "11111111-2222-3333-4444-555555555555"},
        "spec": {
            "machineOSConfig": {"name": "worker"}, "machineConfigPool": {"name": "worker"},
            "baseImage": format!("registry.example.com/os@sha256:{}", "a".repeat(64)),
            "renderedImagePushSpec": "registry.example.com/strata/os:latest",
        }
    }))
}
