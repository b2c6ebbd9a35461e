//! Observe: what the planner needs about one MachineOSConfig, read from the caches; the registry
//! is asked only for what the caches cannot know (a tag's digest, whether an image exists), and
//! its answers are cached too. Reads only.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use strata_crds::contract::{annotations, labels, mco};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};

use super::Context;
use super::environment::Environment;
use super::error::Error;
use super::names::{self, fit_63};
use super::plan::{AuthProblem, BuildAuth, JobObservation, Observed, job_observation};
use super::registry_client::{ImageCheck, Transport};
use crate::docker_config::{merge, secret_auths};
use crate::render::{BuildInputs, is_digest_pinned};
use strata_crds::contract::TerminationMessage;

pub async fn observe(ctx: &Context, config: &MachineOSConfig) -> Result<Observed, Error> {
    let stores = &ctx.stores;
    let now = k8s_openapi::jiff::Timestamp::now();
    let name = config.name_any();
    let pool_name = &config.spec.machine_config_pool.name;
    let pool = stores
        .pools
        .get(&ObjectRef::new_with(pool_name, mco::machine_config_pool()))
        .map(|p| serde_json::to_value(p.as_ref()))
        .transpose()?;
    let rendered_config = pool
        .as_ref()
        .and_then(|p| p["status"]["configuration"]["name"].as_str())
        .and_then(|rendered| {
            stores
                .machine_configs
                .get(&ObjectRef::new_with(rendered, mco::machine_config()))
        })
        .map(|mc| serde_json::to_value(mc.as_ref()))
        .transpose()?;
    let target_config = pool
        .as_ref()
        .and_then(|p| p["spec"]["configuration"]["name"].as_str())
        .and_then(|rendered| {
            stores
                .machine_configs
                .get(&ObjectRef::new_with(rendered, mco::machine_config()))
        })
        .map(|mc| serde_json::to_value(mc.as_ref()))
        .transpose()?;
    let layered_by_openshift = stores
        .openshift_configs
        .state()
        .iter()
        .find(|ocl| ocl.data["spec"]["machineConfigPool"]["name"] == pool_name.as_str())
        .map(|ocl| ocl.name_any());
    let rivals = stores
        .configs
        .state()
        .iter()
        .filter(|c| {
            c.spec.machine_config_pool.name == *pool_name
                && c.name_any() != name
                && c.metadata.deletion_timestamp.is_none()
        })
        .map(|c| {
            (
                c.name_any(),
                c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        })
        .collect();

    let (builds, foreign): (Vec<MachineOSBuild>, Vec<MachineOSBuild>) = stores
        .builds
        .state()
        .iter()
        .filter(|b| b.spec.machine_os_config.name == name)
        .map(|b| b.as_ref().clone())
        .partition(|b| belongs_to(b, config));
    let is_ours = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| match meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::CONFIG))
    {
        Some(full) => *full == name,
        None => meta.labels.as_ref().and_then(|l| l.get(labels::CONFIG)) == Some(&fit_63(&name)),
    };
    let jobs: Vec<_> = stores
        .jobs
        .state()
        .iter()
        .filter(|j| is_ours(&j.metadata))
        .map(|j| j.as_ref().clone())
        .collect();
    let build_secrets: BTreeSet<String> = stores
        .secrets
        .state()
        .iter()
        .filter(|s| labels::managed_by_strata(&s.metadata) && is_ours(&s.metadata))
        .map(|s| s.name_any())
        .collect();
    let build_config_maps: BTreeSet<String> = stores
        .build_config_maps
        .state()
        .iter()
        .filter(|cm| is_ours(&cm.metadata))
        .map(|cm| cm.name_any())
        .collect();

    let environment = Environment::from_sources(
        &stores
            .environment
            .sources(&stores.secrets, &ctx.settings.namespace),
    );
    let transport = Transport::from_environment(&environment);
    let auth = read_auth(ctx, config, &environment);
    let base_auth = auth.as_ref().ok().and_then(|a| a.base.clone());
    let base = match &config.spec.base_image {
        Some(base) => Ok(base.clone()),
        None => release_base(ctx),
    };
    let base = match base {
        Ok(base) if already_built_on(&base, &builds) => Ok(base),
        Ok(base) => {
            ctx.registry
                .resolve(&base, base_auth.as_deref(), &transport)
                .await
        }
        Err(why) => Err(why),
    };

    let current = base
        .as_ref()
        .ok()
        .map(|b| BuildInputs::from_config(config, b).build_name())
        .and_then(|n| builds.iter().find(|b| b.metadata.name.as_ref() == Some(&n)));
    let job = match current {
        Some(build) if build.phase().is_none_or(|p| !p.is_terminal()) => {
            let job_name = names::job(build);
            let pods = stores.pods.state();
            let pods: Vec<_> = pods
                .iter()
                .filter(|p| p.labels().get("batch.kubernetes.io/job-name") == Some(&job_name))
                .map(AsRef::as_ref)
                .collect();
            job_observation(
                jobs.iter()
                    .find(|j| j.metadata.name.as_ref() == Some(&job_name)),
                &pods,
            )
        }
        _ => JobObservation::Missing,
    };

    let image_to_check = match (&job, current) {
        (
            JobObservation::Succeeded {
                message: Some(TerminationMessage::Success { digest, .. }),
                ..
            },
            Some(build),
        ) => Some(format!(
            "{}@{digest}",
            names::repository(&build.spec.rendered_image_push_spec)
        )),
        // The periodic re-check of an image verified when its build ended.
        (_, Some(build)) if build.phase() == Some(BuildPhase::Succeeded) => build
            .status
            .as_ref()
            .and_then(|s| s.digested_image_push_spec.clone())
            .filter(|image| ctx.registry.recheck_due(image)),
        _ => None,
    };
    let push_auth = auth.as_ref().ok().map(|a| a.push.clone());
    let image_check: Option<ImageCheck> = match image_to_check {
        Some(image) => Some(
            ctx.registry
                .inspect(&image, push_auth.as_deref(), &transport, now)
                .await,
        ),
        None => None,
    };
    let machine_config = stores
        .machine_configs
        .get(&ObjectRef::new_with(
            &names::machine_config(pool_name),
            mco::machine_config(),
        ))
        .map(|mc| serde_json::to_value(mc.as_ref()))
        .transpose()?;
    Ok(Observed {
        config: config.clone(),
        pool,
        rendered_config,
        target_config,
        layered_by_openshift,
        rivals,
        base,
        builds,
        foreign_builds: foreign.iter().map(|b| b.name_any()).collect(),
        jobs,
        job,
        build_secrets,
        build_config_maps,
        auth,
        image_check,
        machine_config,
        environment,
        now,
    })
}

/// The release's OS base image from the release ConfigMap.
fn release_base(ctx: &Context) -> Result<String, String> {
    let s = &ctx.settings;
    let where_ = format!(
        "ConfigMap {}/{} key {}",
        s.release_configmap_namespace, s.release_configmap, s.release_configmap_key
    );
    let cm = ctx
        .stores
        .release
        .get(&ObjectRef::new(&s.release_configmap).within(&s.release_configmap_namespace));
    match cm {
        None => Err(format!("{where_}: the ConfigMap does not exist")),
        Some(cm) => match cm
            .data
            .as_ref()
            .and_then(|d| d.get(&s.release_configmap_key))
        {
            Some(base) if !base.trim().is_empty() => Ok(base.trim().to_string()),
            _ => Err(format!("{where_}: the key is missing or empty")),
        },
    }
}

/// Whether the Secret lets MachineOSConfig `config` use it (the opt-in annotation).
fn allows(secret: &Secret, config: &str) -> bool {
    secret
        .annotations()
        .get(annotations::ALLOWED_CONFIGS)
        .is_some_and(|allowed| {
            allowed
                .split(',')
                .map(str::trim)
                .any(|a| a == "*" || a == config)
        })
}

/// Canonical push and pull auth from the Secrets the MachineOSConfig names, each used only when
/// it allows this MachineOSConfig (otherwise anyone allowed to create a MachineOSConfig could
/// make Strata use any Secret of its namespace). Base pulls use the cluster's global pull secret,
/// with the config's own Secret merged over it per registry.
fn read_auth(
    ctx: &Context,
    config: &MachineOSConfig,
    environment: &Environment,
) -> Result<BuildAuth, AuthProblem> {
    let ns = &ctx.settings.namespace;
    let name = config.name_any();
    let read = |field: &str, secret_name: &str| {
        let unavailable = |why: String| AuthProblem {
            reason: "SecretUnavailable",
            message: format!("{field}: Secret {ns}/{secret_name} {why}"),
        };
        let secret = ctx
            .stores
            .secrets
            .get(&ObjectRef::new(secret_name).within(ns))
            .ok_or_else(|| unavailable("does not exist".into()))?;
        if !allows(&secret, &name) {
            return Err(AuthProblem {
                reason: "SecretNotAllowed",
                message: format!(
                    "{field}: Secret {ns}/{secret_name} does not allow MachineOSConfig {name} to \
                     use it; its owner opts in with the annotation {}={name}",
                    annotations::ALLOWED_CONFIGS
                ),
            });
        }
        secret_auths(&secret.data.clone().unwrap_or_default()).map_err(unavailable)
    };
    let push = read(
        "renderedImagePushSecret",
        &config.spec.rendered_image_push_secret.name,
    )?;
    let own = match &config.spec.base_image_pull_secret {
        Some(secret) => Some(read("baseImagePullSecret", &secret.name)?),
        None => None,
    };
    let global = &environment.global_auths;
    let base = match own {
        Some(own) => Some(merge(&[global.clone(), own])),
        None if !global.is_empty() => Some(merge(std::slice::from_ref(global))),
        None => None,
    };
    Ok(BuildAuth {
        push: merge(&[push]),
        base,
    })
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

    fn config() -> MachineOSConfig {
        serde_json::from_value(serde_json::json!({
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
        .unwrap()
    }

    fn build(uid: &str, base: &str) -> MachineOSBuild {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
            "metadata": {"name": "worker-0123456789ab", "ownerReferences": [{
                "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
                "name": "worker", "uid": uid, "controller": true,
            }]},
            "spec": {
                "machineOSConfig": {"name": "worker"},
                "machineConfigPool": {"name": "worker"},
                "baseImage": base,
                "renderedImagePushSpec": "r.example.com/os:latest",
                "containerFile": [],
            }
        }))
        .unwrap()
    }

    #[test]
    fn builds_of_a_deleted_config_with_the_same_name_are_not_ours() {
        assert!(belongs_to(&build("new-uid", "x"), &config()));
        assert!(!belongs_to(&build("old-uid", "x"), &config()));
    }

    #[test]
    fn a_digest_already_built_on_is_not_asked_again() {
        let base = format!("r.example.com/os@sha256:{}", "a".repeat(64));
        let built = build("new-uid", &base);
        assert!(already_built_on(&base, std::slice::from_ref(&built)));
        assert!(!already_built_on(&base, &[]));
        let other = format!("r.example.com/os@sha256:{}", "b".repeat(64));
        assert!(!already_built_on(&other, std::slice::from_ref(&built)));
        // A tag can move: it is always resolved.
        let tagged = build("new-uid", "r.example.com/os:latest");
        assert!(!already_built_on("r.example.com/os:latest", &[tagged]));
    }

    #[test]
    fn a_secret_is_used_only_by_the_configs_it_names() {
        let secret = |annotation: Option<&str>| -> Secret {
            let mut s = Secret::default();
            if let Some(a) = annotation {
                s.metadata.annotations =
                    Some([(annotations::ALLOWED_CONFIGS.to_string(), a.to_string())].into());
            }
            s
        };
        assert!(!allows(&secret(None), "worker"));
        assert!(allows(&secret(Some("infra, worker")), "worker"));
        assert!(!allows(&secret(Some("infra")), "worker"));
        assert!(!allows(&secret(Some("workers")), "worker"));
        assert!(allows(&secret(Some("*")), "worker"));
    }
}
