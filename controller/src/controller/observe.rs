//! Observe: read what the planner needs about one MachineOSConfig from the cluster and the
//! registry. Reads only.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};

use super::Context;
use super::error::Error;
use super::objects::{self, BUILDER_CONTAINER, CONFIG_LABEL, canonical_auth, fit_63};
use super::plan::{BuildAuth, JobObservation, Observed};
use crate::builder::TerminationMessage;
use crate::render::{BuildInputs, is_digest_pinned};

pub fn pool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "machineconfiguration.openshift.io",
            "v1",
            "MachineConfigPool",
        ),
        "machineconfigpools",
    )
}

pub fn machine_config_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("machineconfiguration.openshift.io", "v1", "MachineConfig"),
        "machineconfigs",
    )
}

pub async fn observe(ctx: &Context, config: &MachineOSConfig) -> Result<Observed, Error> {
    let name = config.metadata.name.clone().unwrap_or_default();
    let pools: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &pool_resource());
    let pool = pools.get_opt(&config.spec.machine_config_pool.name).await?;
    let pool = pool.map(serde_json::to_value).transpose()?;

    let auth = read_auth(ctx, config).await?;
    let base_auth = auth.as_ref().ok().and_then(|a| a.base.clone());
    let builds: Api<MachineOSBuild> = Api::all(ctx.client.clone());
    let builds = builds
        .list(&ListParams::default().labels(&format!("{CONFIG_LABEL}={}", fit_63(&name))))
        .await?;
    let builds: Vec<MachineOSBuild> = builds
        .items
        .into_iter()
        .filter(|b| belongs_to(b, config))
        .collect();

    let base = match &config.spec.base_image {
        Some(base) => Ok(base.clone()),
        None => release_base(ctx).await?,
    };
    let base = match base {
        Ok(base) if already_built_on(&base, &builds) => Ok(base),
        Ok(base) => ctx.registry.resolve(&base, base_auth.as_deref()).await,
        Err(why) => Err(why),
    };

    let current_name = base
        .as_ref()
        .ok()
        .map(|b| BuildInputs::from_config(config, b).build_name());
    let current = current_name
        .as_ref()
        .and_then(|n| builds.iter().find(|b| b.metadata.name.as_ref() == Some(n)));
    let job = match current {
        Some(build) if build.phase().is_none_or(|p| !p.is_terminal()) => {
            observe_job(ctx, &objects::job_name(build)).await?
        }
        _ => JobObservation::Missing,
    };

    let push_auth = auth.as_ref().ok().map(|a| a.push.clone());
    let image_to_check = match (&job, current) {
        (
            JobObservation::Succeeded {
                message: Some(TerminationMessage::Success { digest, .. }),
                ..
            },
            Some(build),
        ) => Some(format!(
            "{}@{digest}",
            objects::repository(&build.spec.rendered_image_push_spec)
        )),
        (_, Some(build)) if build.phase() == Some(BuildPhase::Succeeded) => build
            .status
            .as_ref()
            .and_then(|s| s.digested_image_push_spec.clone()),
        _ => None,
    };
    let image_check = match image_to_check {
        Some(image) => Some(ctx.registry.check(&image, push_auth.as_deref()).await),
        None => None,
    };
    let machine_configs: Api<DynamicObject> =
        Api::all_with(ctx.client.clone(), &machine_config_resource());
    let machine_config = machine_configs
        .get_opt(&objects::machine_config_name(
            &config.spec.machine_config_pool.name,
        ))
        .await?
        .map(serde_json::to_value)
        .transpose()?;
    Ok(Observed {
        config: config.clone(),
        machine_config,
        pool,
        base,
        builds,
        job,
        auth,
        image_check,
        now: k8s_openapi::jiff::Timestamp::now(),
    })
}

/// The release's OS base image from the release ConfigMap.
async fn release_base(ctx: &Context) -> Result<Result<String, String>, Error> {
    let s = &ctx.settings;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &s.release_configmap_namespace);
    let where_ = format!(
        "ConfigMap {}/{} key {}",
        s.release_configmap_namespace, s.release_configmap, s.release_configmap_key
    );
    Ok(match api.get_opt(&s.release_configmap).await? {
        None => Err(format!("{where_}: the ConfigMap does not exist")),
        Some(cm) => match cm
            .data
            .and_then(|d| d.get(&s.release_configmap_key).cloned())
        {
            Some(base) if !base.trim().is_empty() => Ok(base.trim().to_string()),
            _ => Err(format!("{where_}: the key is missing or empty")),
        },
    })
}

/// Canonical push and pull auth from the Secrets the MachineOSConfig names.
async fn read_auth(
    ctx: &Context,
    config: &MachineOSConfig,
) -> Result<Result<BuildAuth, String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let read = |name: String| {
        let api = api.clone();
        let ns = ctx.settings.namespace.clone();
        async move {
            Ok::<_, Error>(match api.get_opt(&name).await? {
                None => Err(format!("Secret {ns}/{name} does not exist")),
                Some(secret) => canonical_auth(&secret.data.unwrap_or_default())
                    .map_err(|e| format!("Secret {ns}/{name} {e}")),
            })
        }
    };
    let push = match read(config.spec.rendered_image_push_secret.name.clone()).await? {
        Ok(push) => push,
        Err(why) => return Ok(Err(format!("renderedImagePushSecret: {why}"))),
    };
    let base = match &config.spec.base_image_pull_secret {
        Some(secret) => match read(secret.name.clone()).await? {
            Ok(base) => Some(base),
            Err(why) => return Ok(Err(format!("baseImagePullSecret: {why}"))),
        },
        None => None,
    };
    Ok(Ok(BuildAuth { push, base }))
}

/// The Job's state and, when it ended, the builder's termination message.
async fn observe_job(ctx: &Context, job_name: &str) -> Result<JobObservation, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let Some(job) = jobs.get_opt(job_name).await? else {
        return Ok(JobObservation::Missing);
    };
    let status = job.status.unwrap_or_default();
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
    let complete = condition("Complete");
    let failed = condition("Failed");
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let pods = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}")))
        .await?;
    let ended = ended_builders(&pods.items);
    if complete.is_none() && failed.is_none() {
        // A builder that exited 0 with its digest is done: acting on it now saves the ~2 s the
        // Job controller takes to mark the Job Complete (see bench/RESULTS.md).
        return Ok(match success_message(&ended) {
            Some(message) => JobObservation::Succeeded {
                attempts: attempts.max(1),
                message: Some(message),
            },
            None => JobObservation::Running {
                attempts: attempts.max(1),
            },
        });
    }
    if complete.is_some() {
        return Ok(JobObservation::Succeeded {
            attempts,
            message: success_message(&ended),
        });
    }
    let failed = failed.unwrap_or_default();
    let termination = ended
        .iter()
        .rev()
        .find_map(|(_, _, m)| m.as_deref().and_then(TerminationMessage::parse));
    Ok(JobObservation::Failed {
        attempts,
        reason: failed.reason.unwrap_or_else(|| "JobFailed".into()),
        message: failed.message.unwrap_or_default(),
        termination,
    })
}

/// (finishedAt, exit code, termination message) of every builder container that ended, oldest
/// first.
fn ended_builders(pods: &[Pod]) -> Vec<(String, i32, Option<String>)> {
    let mut ended: Vec<(String, i32, Option<String>)> = pods
        .iter()
        .filter_map(|pod| {
            let status = pod
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find(|c| c.name == BUILDER_CONTAINER)?;
            let terminated = status.state.as_ref()?.terminated.as_ref()?;
            let finished = terminated
                .finished_at
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            Some((finished, terminated.exit_code, terminated.message.clone()))
        })
        .collect();
    ended.sort();
    ended
}

/// The success message of the last builder that exited 0 with one.
fn success_message(ended: &[(String, i32, Option<String>)]) -> Option<TerminationMessage> {
    ended
        .iter()
        .rev()
        .filter(|(_, code, _)| *code == 0)
        .filter_map(|(_, _, m)| m.as_deref().and_then(TerminationMessage::parse))
        .find(|m| matches!(m, TerminationMessage::Success { .. }))
}

/// Whether `build` was made for this very MachineOSConfig: a config deleted and created again
/// under the same name must not inherit the old one's builds (the garbage collector removes them,
/// but not at once).
pub fn belongs_to(build: &MachineOSBuild, config: &MachineOSConfig) -> bool {
    build.spec.machine_os_config.name == config.metadata.name.as_deref().unwrap_or_default()
        && build
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == config.metadata.uid.as_ref())
}

/// Whether `base` is pinned by a digest some build of this config was already made from. That digest
/// was checked when the build was created and cannot change: asking the registry again on every
/// reconcile would cost a round trip per resync, and a registry outage would stop Strata from
/// following the build in flight.
fn already_built_on(base: &str, builds: &[MachineOSBuild]) -> bool {
    is_digest_pinned(base) && builds.iter().any(|b| b.spec.base_image == base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_of_a_deleted_config_with_the_same_name_are_not_ours() {
        let config: MachineOSConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
            "metadata": {"name": "worker", "uid": "new-uid"},
            "spec": {
                "machineConfigPool": {"name": "worker"},
                "imageBuilder": {"imageBuilderType": "Job"},
                "renderedImagePushSecret": {"name": "push"},
                "renderedImagePushSpec": "r.example.com/os:latest",
                "containerFile": [],
            }
        }))
        .unwrap();
        let build_owned_by = |uid: &str| -> MachineOSBuild {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
                "metadata": {"name": "worker-0123456789ab", "ownerReferences": [{
                    "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
                    "name": "worker", "uid": uid, "controller": true,
                }]},
                "spec": {
                    "machineOSConfig": {"name": "worker"},
                    "machineConfigPool": {"name": "worker"},
                    "baseImage": "r.example.com/os@sha256:0",
                    "renderedImagePushSpec": "r.example.com/os:latest",
                    "containerFile": [],
                }
            }))
            .unwrap()
        };
        assert!(belongs_to(&build_owned_by("new-uid"), &config));
        assert!(!belongs_to(&build_owned_by("old-uid"), &config));
    }

    #[test]
    fn only_a_builder_that_exited_0_with_a_digest_counts_as_done() {
        let success = TerminationMessage::Success {
            digest: format!("sha256:{}", "c".repeat(64)),
            size_bytes: 1,
            build_seconds: 1.0,
            push_seconds: 1.0,
        }
        .to_line();
        let failure =
            r#"{"class":"transient","reason":"RegistryUnavailable","message":"down","logTail":""}"#;
        let at = |t: &str, code: i32, m: &str| (t.to_string(), code, Some(m.to_string()));
        assert!(success_message(&[]).is_none());
        assert!(success_message(&[at("1", 4, failure)]).is_none());
        // Exit 0 without a parsable message is not done.
        assert!(success_message(&[at("1", 0, "garbage")]).is_none());
        let found = success_message(&[at("1", 4, failure), at("2", 0, &success)]);
        assert!(matches!(found, Some(TerminationMessage::Success { .. })));
    }

    #[test]
    fn a_digest_already_built_on_is_not_asked_again() {
        let base = format!("r.example.com/os@sha256:{}", "a".repeat(64));
        let build: MachineOSBuild = serde_json::from_value(serde_json::json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
            "metadata": {"name": "worker-0123456789ab"},
            "spec": {
                "machineOSConfig": {"name": "worker"},
                "machineConfigPool": {"name": "worker"},
                "baseImage": base,
                "renderedImagePushSpec": "r.example.com/os:latest",
                "containerFile": [],
            }
        }))
        .unwrap();
        assert!(already_built_on(&base, std::slice::from_ref(&build)));
        assert!(!already_built_on(&base, &[]));
        let other = format!("r.example.com/os@sha256:{}", "b".repeat(64));
        assert!(!already_built_on(&other, std::slice::from_ref(&build)));
        // A tag can move: it is always resolved.
        let mut tagged = build.clone();
        tagged.spec.base_image = "r.example.com/os:latest".into();
        assert!(!already_built_on("r.example.com/os:latest", &[tagged]));
    }
}
