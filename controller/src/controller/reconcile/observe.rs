//! Observe: what the planner needs about one MachineOSConfig, read from the caches; the registry
//! is asked only for what the caches cannot know (a tag's digest, whether an image exists), and
//! its answers are cached too. Reads only.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use strata_crds::contract::{annotations, labels, mco};
use strata_crds::{BuildPhase, DiskImagePhase, MachineOSBuild, MachineOSConfig};

use super::plan::{
    AuthProblem, AuthReason, BaseUnknown, BuildAuth, JobObservation, Observed, job_observation,
};
use crate::controller::Context;
use crate::controller::environment::Environment;
use crate::controller::names::{self, fit_63};
use crate::controller::registry_client::{Transport, Unresolved};
use crate::docker_config::{merge, secret_auths};
use crate::render::{BuildInputs, is_digest_pinned};
use strata_crds::contract::TerminationMessage;

pub async fn observe(ctx: &Context, config: &MachineOSConfig) -> Observed {
    let stores = &ctx.stores;
    let now = Timestamp::now();
    let pool_name = &config.spec.machine_config_pool.name;
    let pool: Option<mco::MachineConfigPool> = stores
        .pools
        .get(&ObjectRef::new_with(pool_name, mco::machine_config_pool()))
        .and_then(|pool| mco_view(&pool));
    let rendered = pool
        .as_ref()
        .and_then(|p| p.status.configuration.name.as_deref());
    let rendered_config = machine_config(ctx, rendered);
    let target = pool
        .as_ref()
        .and_then(|p| p.spec.configuration.name.as_deref());
    let target_config = machine_config(ctx, target);
    let machines = machines_of(ctx, pool_name);
    let layered_by_openshift = layered_by_openshift(ctx, pool_name);
    let rivals = rivals(ctx, config);
    let (builds, foreign) = builds_of(ctx, config);
    let owned = OwnedObjects::of(ctx, &config.name_any());
    let environment = Environment::from_sources(
        &stores
            .environment
            .sources(&stores.secrets, &ctx.settings.namespace),
    );
    let transport = Transport::from_environment(&environment);
    let auth = read_auth(ctx, config, &environment);
    let base_auth = auth.as_ref().ok().and_then(|a| a.base.clone());
    let base = base(ctx, config, base_auth.as_deref(), &builds, &transport).await;
    let current = base
        .as_ref()
        .ok()
        .map(|b| BuildInputs::from_config(config, b).build_name())
        .and_then(|n| builds.iter().find(|b| b.metadata.name.as_ref() == Some(&n)));
    let job = job_of(ctx, current, &owned.jobs, now);
    let disk_job = disk_job_of(ctx, current, &owned.jobs, now);
    // A pre-built image is read as the machines will pull it: with the pull credentials.
    let check_auth = match current.and_then(MachineOSBuild::pre_built_image) {
        Some(_) => base_auth.clone(),
        None => auth.as_ref().ok().map(|a| a.push.clone()),
    };
    let image_check = match image_to_check(ctx, &job, current) {
        Some(image) => Some(
            ctx.registry
                .inspect(&image, check_auth.as_deref(), &transport, now)
                .await,
        ),
        None => None,
    };
    let machine_config = machine_config(ctx, Some(&names::machine_config(pool_name)));
    let base_failed_units = base.as_ref().ok().and_then(|base| {
        let all = ctx.stores.builds.state();
        recorded_base_failures(base, all.iter().map(|b| b.as_ref()))
    });
    Observed {
        config: config.clone(),
        pool,
        rendered_config,
        target_config,
        machines,
        layered_by_openshift,
        rivals,
        base,
        builds,
        foreign_builds: foreign.iter().map(|b| b.name_any()).collect(),
        jobs: owned.jobs,
        job,
        disk_job,
        build_secrets: owned.secrets,
        build_config_maps: owned.config_maps,
        auth,
        image_check,
        machine_config,
        environment,
        base_failed_units,
        now,
    }
}

/// The units `base` fails by itself, as the newest build of any config on that base recorded
/// them (its boot step boots the base only when nothing recorded them yet).
pub fn recorded_base_failures<'b>(
    base: &str,
    builds: impl Iterator<Item = &'b MachineOSBuild>,
) -> Option<Vec<String>> {
    builds
        .filter(|b| b.spec.base_image == base)
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            let units = status
                .boot_check
                .as_ref()?
                .base_image_failed_units
                .clone()?;
            Some((status.build_end.clone(), units))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, units)| units)
}

/// The typed view of a cached MCO object. One that does not read as the view (a field of another
/// type than the MCO's) counts as absent, with a warning: the MCO's API validates its objects.
fn mco_view<T: DeserializeOwned>(object: &DynamicObject) -> Option<T> {
    match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(view) => Some(view),
        Err(err) => {
            let kind = object.types.as_ref().map(|t| t.kind.as_str());
            let name = object.name_any();
            tracing::warn!(?kind, %name, %err, "cannot read it; taken as absent");
            None
        }
    }
}

/// The cached MachineConfig `name`.
fn machine_config(ctx: &Context, name: Option<&str>) -> Option<mco::MachineConfig> {
    let cached = ctx
        .stores
        .machine_configs
        .get(&ObjectRef::new_with(name?, mco::machine_config()))?;
    mco_view(&cached)
}

/// The Nodes that belong to `pool_name` (as the MCO assigns them), by name.
fn machines_of(ctx: &Context, pool_name: &str) -> Vec<mco::NodeView> {
    let pools = ctx.stores.pools.state();
    let selectors = mco::PoolSelectors::of(pools.iter().map(|p| p.as_ref()));
    let mut machines: Vec<mco::NodeView> = ctx
        .stores
        .nodes
        .state()
        .iter()
        .filter(|node| selectors.pool_of(node.labels()) == Some(pool_name))
        .map(|node| mco::NodeView::of(node))
        .collect();
    machines.sort_by(|a, b| a.name.cmp(&b.name));
    machines
}

/// OpenShift's own MachineOSConfig naming `pool_name`, if any.
fn layered_by_openshift(ctx: &Context, pool_name: &str) -> Option<String> {
    ctx.stores
        .openshift_configs
        .state()
        .iter()
        .find(|ocl| {
            mco_view::<mco::OpenShiftMachineOSConfig>(ocl)
                .is_some_and(|v| v.spec.machine_config_pool.name.as_deref() == Some(pool_name))
        })
        .map(|ocl| ocl.name_any())
}

/// The other MachineOSConfigs (not being deleted) naming `config`'s pool: (name, created at).
fn rivals(ctx: &Context, config: &MachineOSConfig) -> Vec<(String, Option<Timestamp>)> {
    let name = config.name_any();
    let pool_name = &config.spec.machine_config_pool.name;
    ctx.stores
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
        .collect()
}

/// The builds carrying `config`'s name: (its own, those of a deleted config of the same name).
fn builds_of(
    ctx: &Context,
    config: &MachineOSConfig,
) -> (Vec<MachineOSBuild>, Vec<MachineOSBuild>) {
    let name = config.name_any();
    ctx.stores
        .builds
        .state()
        .iter()
        .filter(|b| b.spec.machine_os_config.name == name)
        .map(|b| b.as_ref().clone())
        .partition(|b| belongs_to(b, config))
}

/// The objects made for the builds of one MachineOSConfig that exist.
struct OwnedObjects {
    jobs: Vec<Job>,
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
}

impl OwnedObjects {
    /// Those of the MachineOSConfig `name`: by the annotation with its full name, else (objects
    /// made before it) by the label with the name cut to 63 characters.
    fn of(ctx: &Context, name: &str) -> Self {
        let stores = &ctx.stores;
        let is_ours = |meta: &ObjectMeta| match meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::CONFIG))
        {
            Some(full) => full == name,
            None => meta.labels.as_ref().and_then(|l| l.get(labels::CONFIG)) == Some(&fit_63(name)),
        };
        let jobs = stores.jobs.state();
        let secrets = stores.secrets.state();
        let config_maps = stores.build_config_maps.state();
        Self {
            jobs: jobs
                .iter()
                .filter(|j| is_ours(&j.metadata))
                .map(|j| j.as_ref().clone())
                .collect(),
            secrets: secrets
                .iter()
                .filter(|s| labels::managed_by_strata(&s.metadata) && is_ours(&s.metadata))
                .map(|s| s.name_any())
                .collect(),
            config_maps: config_maps
                .iter()
                .filter(|cm| is_ours(&cm.metadata))
                .map(|cm| cm.name_any())
                .collect(),
        }
    }
}

/// The base image pinned by digest: the config's or the release's, resolved unless a build was
/// already made from that very digest.
async fn base(
    ctx: &Context,
    config: &MachineOSConfig,
    base_auth: Option<&str>,
    builds: &[MachineOSBuild],
    transport: &Transport,
) -> Result<String, BaseUnknown> {
    let base = match &config.spec.base_image {
        Some(base) => base.clone(),
        None => release_base(ctx)?,
    };
    if already_built_on(&base, builds) {
        return Ok(base);
    }
    ctx.registry
        .resolve(&base, base_auth, transport)
        .await
        .map_err(|e| match e {
            Unresolved::Failed(why) => BaseUnknown::Unresolved(why),
            Unresolved::Refused(why) => BaseUnknown::Refused(why),
        })
}

/// What the Job of `current` is doing, while the build has not ended.
fn job_of(
    ctx: &Context,
    current: Option<&MachineOSBuild>,
    jobs: &[Job],
    now: Timestamp,
) -> JobObservation {
    let Some(build) = current.filter(|b| b.phase().is_none_or(|p| !p.is_terminal())) else {
        return JobObservation::Missing;
    };
    observe_job(ctx, &names::job(build), jobs, now)
}

/// What the disk image Job of `current` is doing, while its status says it is being made.
fn disk_job_of(
    ctx: &Context,
    current: Option<&MachineOSBuild>,
    jobs: &[Job],
    now: Timestamp,
) -> JobObservation {
    let Some(build) = current.filter(|b| {
        b.status
            .as_ref()
            .and_then(|s| s.disk_image.as_ref())
            .is_some_and(|d| d.phase == DiskImagePhase::Building)
    }) else {
        return JobObservation::Missing;
    };
    observe_job(ctx, &names::disk_image_job(build), jobs, now)
}

/// What the Job `job_name` and its pods say.
fn observe_job(ctx: &Context, job_name: &str, jobs: &[Job], now: Timestamp) -> JobObservation {
    let pods = ctx.stores.pods.state();
    let pods: Vec<_> = pods
        .iter()
        .filter(|p| {
            p.labels()
                .get("batch.kubernetes.io/job-name")
                .map(String::as_str)
                == Some(job_name)
        })
        .map(AsRef::as_ref)
        .collect();
    job_observation(
        jobs.iter()
            .find(|j| j.metadata.name.as_deref() == Some(job_name)),
        &pods,
        now,
    )
}

/// The image of `current` to ask the registry about: the one its builder just pushed, or the
/// periodic re-check of one verified when its build ended.
fn image_to_check(
    ctx: &Context,
    job: &JobObservation,
    current: Option<&MachineOSBuild>,
) -> Option<String> {
    match (job, current) {
        (
            JobObservation::Succeeded {
                message: Some(TerminationMessage::Success { digest, .. }),
                ..
            },
            Some(build),
        ) => Some(match build.pre_built_image() {
            Some(image) => image.to_string(),
            None => format!(
                "{}@{digest}",
                names::repository(&build.spec.rendered_image_push_spec)
            ),
        }),
        (_, Some(build)) if build.phase() == Some(BuildPhase::Succeeded) => build
            .status
            .as_ref()
            .and_then(|s| s.digested_image_push_spec.clone())
            .filter(|image| ctx.registry.recheck_due(image)),
        _ => None,
    }
}

/// The release's OS base image from the release ConfigMap.
pub(crate) fn release_base(ctx: &Context) -> Result<String, BaseUnknown> {
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
        None => Err(BaseUnknown::NoReleaseConfigMap { where_ }),
        Some(cm) => match cm
            .data
            .as_ref()
            .and_then(|d| d.get(&s.release_configmap_key))
        {
            Some(base) if !base.trim().is_empty() => Ok(base.trim().to_string()),
            _ => Err(BaseUnknown::NoReleaseKey { where_ }),
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
            reason: AuthReason::SecretUnavailable,
            message: format!("{field}: Secret {ns}/{secret_name} {why}"),
        };
        let secret = ctx
            .stores
            .secrets
            .get(&ObjectRef::new(secret_name).within(ns))
            .ok_or_else(|| unavailable("does not exist".into()))?;
        if !allows(&secret, &name) {
            return Err(AuthProblem {
                reason: AuthReason::SecretNotAllowed,
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
    use crate::controller::fixtures::{self, CONFIG_UID};

    fn config() -> MachineOSConfig {
        fixtures::config("RUN true\n")
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
        assert!(belongs_to(&build(CONFIG_UID, "x"), &config()));
        assert!(!belongs_to(&build("old-uid", "x"), &config()));
    }

    #[test]
    fn a_digest_already_built_on_is_not_asked_again() {
        let base = format!("r.example.com/os@sha256:{}", "a".repeat(64));
        let built = build(CONFIG_UID, &base);
        assert!(already_built_on(&base, std::slice::from_ref(&built)));
        assert!(!already_built_on(&base, &[]));
        let other = format!("r.example.com/os@sha256:{}", "b".repeat(64));
        assert!(!already_built_on(&other, std::slice::from_ref(&built)));
        // A tag can move: it is always resolved.
        let tagged = build(CONFIG_UID, "r.example.com/os:latest");
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
