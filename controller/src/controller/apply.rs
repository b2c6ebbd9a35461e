//! Apply (thin): send what the planner decided. Server-side apply with one field manager for
//! everything Strata owns; creates only where an object must not be overwritten.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use strata_crds::{MachineOSBuild, MachineOSConfig, REBUILD_ANNOTATION};

use super::Context;
use super::error::Error;
use super::objects::{self, build_objects};
use super::observe::{self, machine_config_resource};
use super::plan::Plan;

/// The one field manager for every object and status Strata writes.
pub const FIELD_MANAGER: &str = "strata-controller";

fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn ignore_not_found<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

pub async fn apply(
    ctx: &Context,
    config: &MachineOSConfig,
    plan: &Plan,
    builds: &[MachineOSBuild],
) -> Result<(), Error> {
    let client = &ctx.client;
    let ns = &ctx.settings.namespace;
    let build_api: Api<MachineOSBuild> = Api::all(client.clone());

    let mut created = None;
    if let Some(build) = &plan.create_build {
        created = Some(match build_api.create(&create_params(), build).await {
            Ok(build) => build,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = build_api.get(&build.name_any()).await?;
                if !observe::belongs_to(&existing, config) {
                    // Left by a deleted MachineOSConfig of the same name: wait for the garbage
                    // collector rather than take over its status.
                    return Err(Error::Kube(kube::Error::Api(status)));
                }
                existing
            }
            Err(err) => return Err(err.into()),
        });
    }
    for (name, status) in &plan.build_status {
        let patch = json!({"apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild", "status": status});
        build_api
            .patch_status(name, &ssa(), &Patch::Apply(&patch))
            .await?;
    }
    if let Some(request) = &plan.build_objects {
        let build = match created.clone().or_else(|| {
            builds
                .iter()
                .find(|b| b.name_any() == request.build)
                .cloned()
        }) {
            Some(build) => build,
            None => build_api.get(&request.build).await?,
        };
        let objects = build_objects(
            &build,
            &request.containerfile,
            &request.auth.push,
            request.auth.base.as_deref(),
            &ctx.settings,
        );
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        cms.patch(
            &objects.containerfile.name_any(),
            &ssa(),
            &Patch::Apply(&objects.containerfile),
        )
        .await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        for secret in std::iter::once(&objects.push_secret).chain(objects.base_secret.as_ref()) {
            secrets
                .patch(&secret.name_any(), &ssa(), &Patch::Apply(secret))
                .await?;
        }
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        match jobs.create(&create_params(), &objects.job).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for build in &plan.delete_secrets_of {
        for name in [
            objects::push_secret_name(build),
            objects::base_secret_name(build),
        ] {
            ignore_not_found(secrets.delete(&name, &DeleteParams::default()).await)?;
        }
    }
    if let Some(build) = &plan.delete_build {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        ignore_not_found(build_api.delete(build, &dp).await)?;
    }
    if let Some(mc) = &plan.machine_config {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &machine_config_resource());
        let name = mc["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(name, &ssa(), &Patch::Apply(mc)).await?;
    }
    let config_api: Api<MachineOSConfig> = Api::all(client.clone());
    let name = config.name_any();
    if config.status.as_ref() != Some(&plan.config_status) {
        let patch = json!({"apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig", "status": plan.config_status});
        config_api
            .patch_status(&name, &ssa(), &Patch::Apply(&patch))
            .await?;
    }
    if plan.remove_rebuild_annotation {
        let patch = json!({"metadata": {"annotations": {REBUILD_ANNOTATION: null}}});
        config_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let reference = config.object_ref(&());
    for event in &plan.events {
        let event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(event.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%err, "cannot record an Event");
        }
    }
    Ok(())
}

/// Finalizer cleanup: the MachineConfig goes, returning the pool to the stock image. Builds go
/// with the MachineOSConfig through their owner references.
pub async fn cleanup(ctx: &Context, config: &MachineOSConfig) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &machine_config_resource());
    let name = objects::machine_config_name(&config.spec.machine_config_pool.name);
    // Only ours: the label says which MachineOSConfig wrote it.
    if let Some(mc) = api.get_opt(&name).await?
        && mc.labels().get(objects::CONFIG_LABEL) == Some(&objects::fit_63(&config.name_any()))
    {
        ignore_not_found(api.delete(&name, &DeleteParams::default()).await)?;
    }
    Ok(())
}
