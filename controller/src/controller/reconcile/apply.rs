//! Apply (thin): execute a [`Plan`] as it is. Every field is taken apart by name, without a
//! catch-all, so a field nobody executes does not compile. Server-side apply with the one field
//! manager for what Strata owns; create where an object must never be overwritten (a build, a
//! Job); the one merge patch (removing a user's rebuild annotation, which SSA cannot take from
//! another manager) is sent under the same field manager.

use futures::future::{try_join, try_join_all, try_join3, try_join4};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::api::{
    Api, DeleteParams, DynamicObject, LogParams, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy,
};
use kube::{Resource, ResourceExt};
use serde_json::json;
use strata_crds::contract::{FIELD_MANAGER, annotations, builder_pod, labels, mco};
use strata_crds::{MachineOSBuild, MachineOSBuildStatus, MachineOSConfig, MachineOSConfigStatus};

use super::objects::{BuildObjects, DiskImageObjects, KEPT_LOG_BYTES};
use super::plan::{EventType, ImageDeletion, MetricsUpdate, Observed, Plan, PlannedEvent};
use crate::controller::Context;
use crate::controller::error::{Error, Write};
use crate::controller::names;
use crate::controller::registry_client::Transport;

fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn create_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn background() -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
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

fn ignore_conflict<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

/// The APIs a round writes to.
struct Apis {
    builds: Api<MachineOSBuild>,
    jobs: Api<Job>,
    secrets: Api<Secret>,
    configmaps: Api<ConfigMap>,
    claims: Api<PersistentVolumeClaim>,
    configs: Api<MachineOSConfig>,
}

impl Apis {
    fn new(client: &kube::Client, ns: &str) -> Self {
        Self {
            builds: Api::all(client.clone()),
            jobs: Api::namespaced(client.clone(), ns),
            secrets: Api::namespaced(client.clone(), ns),
            configmaps: Api::namespaced(client.clone(), ns),
            claims: Api::namespaced(client.clone(), ns),
            configs: Api::all(client.clone()),
        }
    }
}

/// How an error names the object `name`: `namespace/name`, or the name of a cluster-scoped one.
fn object_name(ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// What deleting a pruned build's image needs from the round's observation (the push Secret's
/// auth, the cluster's registry transport), read only when a round deletes one.
pub struct RegistryAccess<'a>(&'a Observed);

impl<'a> RegistryAccess<'a> {
    pub fn of(observed: &'a Observed) -> Self {
        Self(observed)
    }
}

/// Deletes the images in order, each once; what happened to each, as an Event. A registry that
/// refuses (no deletion allowed, no right to delete) is named in a Warning and the build still
/// goes: pruning does not wait on the registry.
async fn delete_pushed_images(
    ctx: &Context,
    access: &RegistryAccess<'_>,
    images: &[ImageDeletion],
) -> Vec<PlannedEvent> {
    if images.is_empty() {
        return Vec::new();
    }
    let push_auth = access.0.auth.as_ref().ok().map(|a| a.push.as_str());
    let transport = Transport::from_environment(&access.0.environment);
    let mut events = Vec::new();
    for ImageDeletion { build, image, why } in images {
        let result = ctx.registry.delete(image, push_auth, &transport).await;
        let of = why.build(build);
        let (type_, reason, note) = match result {
            Ok(()) => (
                EventType::Normal,
                "ImageDeleted",
                format!("deleted {image} of {of} from the registry"),
            ),
            Err(err) => {
                tracing::warn!(%image, %build, %err, "cannot delete a build's image");
                (
                    EventType::Warning,
                    "ImageNotDeleted",
                    format!(
                        "cannot delete {image} of {of} from the registry: {err} (the build goes \
                         all the same; --registry-cleanup=off stops trying)"
                    ),
                )
            }
        };
        ctx.metrics.image_deletion(reason);
        events.push(PlannedEvent {
            type_,
            reason,
            action: "DeleteImage",
            note,
            build: Some(build.clone()),
        });
    }
    events
}

/// Fills `logs` (the build's logs ConfigMap) with the end of each step's log of the build's
/// newest builder pod (from the cache of Strata's pods), and applies it. No pod (gone already):
/// nothing is kept.
async fn keep_step_logs(
    ctx: &Context,
    configmaps: &Api<ConfigMap>,
    mut logs: ConfigMap,
) -> Result<(), Error> {
    let ns = logs.metadata.namespace.clone().unwrap_or_default();
    let build = logs
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::BUILD));
    let Some(pod) = ctx
        .stores
        .pods
        .state()
        .into_iter()
        .filter(|p| p.labels().get(labels::BUILD) == build)
        .max_by_key(|p| p.metadata.creation_timestamp.clone())
    else {
        return Ok(());
    };
    let pod_name = pod.name_any();
    // The steps this pod has (no boot step with the boot check off), read at once: one round
    // waits for the slowest log, not for their sum.
    let steps = builder_pod::steps_of(&pod);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let read = steps.iter().map(|step| {
        let params = LogParams {
            container: Some((*step).to_string()),
            tail_lines: Some(400),
            ..LogParams::default()
        };
        let (pods, pod_name) = (&pods, &pod_name);
        async move { (*step, pods.logs(pod_name, &params).await) }
    });
    let mut data = std::collections::BTreeMap::new();
    for (step, result) in futures::future::join_all(read).await {
        match result {
            Ok(text) => {
                data.insert(
                    step.to_string(),
                    tail_bytes(&text, KEPT_LOG_BYTES).to_string(),
                );
            }
            // A step that never started.
            Err(kube::Error::Api(status)) if status.code == 400 || status.code == 404 => {}
            Err(err) => {
                return Err(Write::ReadLogs.failed(object_name(Some(&ns), &pod_name))(
                    err,
                ));
            }
        }
    }
    logs.data = Some(data);
    let name = logs.name_any();
    configmaps
        .patch(&name, &ssa(), &Patch::Apply(&logs))
        .await
        .map(drop)
        .map_err(Write::ApplyConfigMap.failed(object_name(Some(&ns), &name)))
}

/// The last `max` bytes of `text`, starting at a line when one starts within them.
fn tail_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    tail.find('\n').map_or(tail, |at| &tail[at + 1..])
}

/// Executes `plan` for `config`; once its writes succeeded, hands its Events to the sink (sent in
/// the background) and records its metric transitions. `registry` is for the images to delete.
pub async fn apply(
    ctx: &Context,
    config: &MachineOSConfig,
    plan: Plan,
    registry: &RegistryAccess<'_>,
) -> Result<(), Error> {
    let Plan {
        create_build,
        build_objects,
        disk_image_objects,
        build_status,
        delete_jobs,
        delete_secrets,
        delete_builds,
        delete_images,
        keep_logs,
        machine_config,
        pool_paused,
        config_status,
        remove_rebuild_annotation,
        mut events,
        metrics,
        requeue_after: _, // the reconciler's, not apply's
    } = plan;
    let apis = &Apis::new(&ctx.client, &ctx.settings.namespace);
    // A builder pod reaches its registries from its first moment.
    if build_objects.is_some() || disk_image_objects.is_some() {
        ctx.builder_egress.ensure(ctx, false).await?;
    }
    // Writes go at once where nothing orders them: while builds run, every write waits on a busy
    // API server, and a round's time is its longest chain of writes in series.
    // A build is recorded as ended before its Job goes: else the next round, finding no Job,
    // would build it again.
    // A pruned build's image goes before the build that names it; a succeeded build's logs are
    // kept before its Job (and pod) go.
    events.extend(delete_pushed_images(ctx, registry, &delete_images).await);
    // Best effort: a log that cannot be kept (no right to read pod logs, say) never holds the
    // pin back; the Job then goes without it.
    if let Some(logs) = keep_logs
        && let Err(err) = keep_step_logs(ctx, &apis.configmaps, logs).await
    {
        tracing::warn!(%err, "cannot keep a succeeded build's step logs");
    }
    let builds_then_deletes = async {
        try_join4(
            create(apis, create_build),
            write_build_objects(apis, build_objects),
            write_disk_image_objects(apis, disk_image_objects),
            patch_build_statuses(apis, build_status),
        )
        .await?;
        try_join3(
            delete_all(&apis.jobs, Write::DeleteJob, &delete_jobs, &background()),
            delete_all(
                &apis.secrets,
                Write::DeleteSecret,
                &delete_secrets,
                &DeleteParams::default(),
            ),
            delete_all(
                &apis.builds,
                Write::DeleteBuild,
                &delete_builds,
                &background(),
            ),
        )
        .await
        .map(drop)
    };
    // The config's status tells of the pin once it is written.
    let pin_then_config = async {
        let pool = &config.spec.machine_config_pool.name;
        pin(&ctx.client, pool, machine_config, pool_paused).await?;
        let name = config.name_any();
        try_join(
            patch_config_status(apis, &name, config_status),
            remove_annotation(apis, &name, remove_rebuild_annotation),
        )
        .await
        .map(drop)
    };
    try_join(builds_then_deletes, pin_then_config).await?;
    let build_ref = |name: &str| {
        ctx.stores
            .builds
            .get(&kube::runtime::reflector::ObjectRef::new(name))
            .map(|build| build.object_ref(&()))
    };
    ctx.events.send(&config.object_ref(&()), events, build_ref);
    record(ctx, metrics);
    Ok(())
}

/// Creates the build of the current inputs. A 409 means the cache was behind; the next round
/// sees the build.
async fn create(apis: &Apis, build: Option<MachineOSBuild>) -> Result<(), Error> {
    let Some(build) = build else { return Ok(()) };
    apis.builds
        .create(&create_params(), &build)
        .await
        .map(drop)
        .map_err(Write::CreateBuild.failed(build.name_any()))
}

/// The Job goes with what its pod mounts. One of those whose write failed is made again by the
/// plan once the Job has run a while without it (plan/build_status.rs), and the pod waits for its
/// volume meanwhile.
async fn write_build_objects(apis: &Apis, objects: Option<BuildObjects>) -> Result<(), Error> {
    let Some(BuildObjects {
        containerfile,
        environment,
        credentials,
        job,
        cache_claim,
    }) = objects
    else {
        return Ok(());
    };
    try_join4(
        apply_all(
            &apis.configmaps,
            Write::ApplyConfigMap,
            [containerfile, environment],
        ),
        apply_all(&apis.secrets, Write::ApplySecret, [credentials]),
        // The Job's name carries its build's uid: a 409 is this very Job, made by an earlier
        // round.
        async {
            ignore_conflict(apis.jobs.create(&create_params(), &job).await).map_err(
                Write::CreateJob.failed(object_name(apis.jobs.namespace(), &job.name_any())),
            )
        },
        // The cache claim is made once (a 409: another round made it) and never changed: its
        // spec is immutable but for growing, which is the admin's call.
        async {
            let Some(claim) = cache_claim else {
                return Ok(());
            };
            ignore_conflict(apis.claims.create(&create_params(), &claim).await).map_err(
                Write::CreateCacheClaim
                    .failed(object_name(apis.claims.namespace(), &claim.name_any())),
            )
        },
    )
    .await
    .map(drop)
}

/// The disk image Job goes with its Secret and environment, as a build's (a 409: this very Job).
async fn write_disk_image_objects(
    apis: &Apis,
    objects: Option<DiskImageObjects>,
) -> Result<(), Error> {
    let Some(DiskImageObjects {
        environment,
        credentials,
        job,
    }) = objects
    else {
        return Ok(());
    };
    try_join3(
        apply_all(&apis.configmaps, Write::ApplyConfigMap, [environment]),
        apply_all(&apis.secrets, Write::ApplySecret, [credentials]),
        async {
            ignore_conflict(apis.jobs.create(&create_params(), &job).await).map_err(
                Write::CreateJob.failed(object_name(apis.jobs.namespace(), &job.name_any())),
            )
        },
    )
    .await
    .map(drop)
}

/// Server-side applies the builds' new statuses, all at once.
async fn patch_build_statuses(
    apis: &Apis,
    statuses: Vec<(String, MachineOSBuildStatus)>,
) -> Result<(), Error> {
    try_join_all(statuses.into_iter().map(|(name, status)| async move {
        let patch = json!({"apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild", "status": status});
        apis.builds
            .patch_status(&name, &ssa(), &Patch::Apply(&patch))
            .await
            .map(drop)
            .map_err(Write::PatchBuildStatus.failed(name))
    }))
    .await
    .map(drop)
}

/// Server-side applies the MachineOSConfig's new status.
async fn patch_config_status(
    apis: &Apis,
    name: &str,
    status: Option<MachineOSConfigStatus>,
) -> Result<(), Error> {
    let Some(status) = status else { return Ok(()) };
    let patch =
        json!({"apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig", "status": status});
    apis.configs
        .patch_status(name, &ssa(), &Patch::Apply(&patch))
        .await
        .map(drop)
        .map_err(Write::PatchConfigStatus.failed(name))
}

/// Removes the user's rebuild annotation with a merge patch (SSA cannot take a field from
/// another manager).
async fn remove_annotation(apis: &Apis, name: &str, remove: bool) -> Result<(), Error> {
    if !remove {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {(annotations::REBUILD): null}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    apis.configs
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(Write::RemoveRebuildAnnotation.failed(name))
}

/// Server-side applies each of `objects`, all at once.
async fn apply_all<K>(
    api: &Api<K>,
    write: Write,
    objects: impl IntoIterator<Item = K>,
) -> Result<(), Error>
where
    K: Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    try_join_all(objects.into_iter().map(|object| async move {
        let name = object.name_any();
        api.patch(&name, &ssa(), &Patch::Apply(&object))
            .await
            .map(drop)
            .map_err(write.failed(object_name(api.namespace(), &name)))
    }))
    .await
    .map(drop)
}

/// Deletes each of `names`, all at once; one already gone is fine.
async fn delete_all<K>(
    api: &Api<K>,
    write: Write,
    names: &[String],
    params: &DeleteParams,
) -> Result<(), Error>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    try_join_all(names.iter().map(|name| async move {
        ignore_not_found(api.delete(name, params).await)
            .map_err(write.failed(object_name(api.namespace(), name)))
    }))
    .await
    .map(drop)
}

/// Writes the MachineConfig. A hold is taken before the pin is written and released after it, so
/// the MCO never rolls the pool in between.
async fn pin(
    client: &kube::Client,
    pool: &str,
    machine_config: Option<serde_json::Value>,
    pool_paused: Option<bool>,
) -> Result<(), Error> {
    if pool_paused == Some(true) {
        hold_pool(client, pool, true).await?;
    }
    if let Some(mc) = machine_config {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &mco::machine_config());
        let name = mc["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(name, &ssa(), &Patch::Apply(&mc))
            .await
            .map_err(Write::ApplyMachineConfig.failed(name))?;
    }
    if pool_paused == Some(false) {
        hold_pool(client, pool, false).await?;
    }
    Ok(())
}

/// Sets the pool's `spec.paused` (Strata's hold; see plan/hold.rs).
async fn hold_pool(client: &kube::Client, pool: &str, paused: bool) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &mco::machine_config_pool());
    let patch = json!({
        "apiVersion": format!("{}/{}", mco::GROUP, mco::VERSION), "kind": "MachineConfigPool",
        "metadata": {"name": pool}, "spec": {"paused": paused},
    });
    api.patch(pool, &ssa(), &Patch::Apply(&patch))
        .await
        .map_err(Write::HoldPool.failed(pool))?;
    Ok(())
}

/// Records the round's metric transitions.
fn record(ctx: &Context, update: MetricsUpdate) {
    let MetricsUpdate {
        pool,
        phase,
        started_after,
        ended,
        pool_updated,
        waiting,
        pool_held,
        pool_machines,
        phase_seconds,
        config,
        latest_build_failed,
        waiting_for_pool,
        boot_check,
        disk_image,
    } = update;
    let m = &ctx.metrics;
    m.set_config(
        &config,
        &pool,
        latest_build_failed,
        waiting_for_pool.as_deref(),
    );
    m.set_phase(&pool, phase);
    m.set_waiting(&pool, waiting.as_deref());
    if let Some(seconds) = started_after {
        m.build_started(&pool, seconds);
    }
    if let Some((result, seconds)) = ended {
        m.build_ended(&pool, result, seconds, jiff_now());
    }
    if let Some(updated) = pool_updated {
        m.set_pool_updated(&pool, updated);
    }
    if let Some(held) = pool_held {
        m.set_pool_held(&pool, held);
    }
    m.set_pool_machines(&pool, &pool_machines);
    for (phase, seconds) in phase_seconds {
        m.builder_phase(&pool, &phase, seconds);
    }
    if let Some((passed, seconds, accelerator)) = boot_check {
        m.boot_checked(&pool, passed, &accelerator, seconds);
    }
    if let Some((succeeded, seconds)) = disk_image {
        m.disk_image_ended(&pool, succeeded, seconds);
    }
}

fn jiff_now() -> f64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

/// Finalizer cleanup: the images `deletion` names go from the registry (plan_deletion: the builds'
/// images no machine may run), the MachineConfig goes, returning the pool to the stock image, and
/// a hold Strata has on the pool is released. Builds go with the MachineOSConfig through their
/// owner references.
pub async fn cleanup(
    ctx: &Context,
    config: &MachineOSConfig,
    deletion: Plan,
    registry: &RegistryAccess<'_>,
) -> Result<(), Error> {
    let mut events = deletion.events;
    events.extend(delete_pushed_images(ctx, registry, &deletion.delete_images).await);
    ctx.events.send(&config.object_ref(&()), events, |_| None);
    let held = config.status.as_ref().is_some_and(|s| {
        crate::controller::conditions::is_true(
            &s.conditions,
            strata_crds::condition_types::POOL_HELD,
        )
    });
    if held {
        hold_pool(&ctx.client, &config.spec.machine_config_pool.name, false).await?;
    }
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &mco::machine_config());
    let name = names::machine_config(&config.spec.machine_config_pool.name);
    let cached = ctx
        .stores
        .machine_configs
        .get(&kube::runtime::reflector::ObjectRef::new_with(
            &name,
            mco::machine_config(),
        ));
    // Only ours: the label says which MachineOSConfig wrote it. The precondition keeps a rival
    // config that took the pool over (and rewrote the MachineConfig) since the cache saw it: the
    // conflict requeues, and the next round sees the rival's label.
    if let Some(mc) = cached
        && mc.labels().get(labels::CONFIG) == Some(&names::fit_63(&config.name_any()))
    {
        let only_this_version = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: mc.resource_version(),
                uid: mc.uid(),
            }),
            ..DeleteParams::default()
        };
        ignore_not_found(api.delete(&name, &only_this_version).await)
            .map_err(Write::DeleteMachineConfig.failed(&name))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
