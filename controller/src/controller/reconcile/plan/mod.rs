//! Plan (pure): from what was observed about one MachineOSConfig to everything that should
//! change — fully built objects to create, statuses to write, objects to delete, Events and metric
//! transitions. No I/O and no clock: `now` comes in [`Observed`]. Apply executes a [`Plan`] as it
//! is; every decision, including what a name clash means, is made here.

mod build_status;
mod config_status;
mod disk_image;
mod history;
mod hold;
mod machines;
mod placement;
mod pool_wait;
mod registry_cleanup;
mod seed;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
pub use kube::runtime::events::EventType;
use serde_json::Value;
use strata_crds::contract::{labels, mco};
use strata_crds::{
    BuildPhase, LocalObjectName, MachineOSBuild, MachineOSBuildSpec, MachineOSBuildStatus,
    MachineOSConfig, MachineOSConfigStatus, ObjectReference, REBUILD_ANNOTATION,
    condition_types as ct,
};

pub use build_status::{JobObservation, Waiting, job_observation};

use super::objects::{self, BuildObjects, DiskImageObjects};
use crate::controller::environment::Environment;
use crate::controller::names::{self, fit_63};
use crate::controller::registry_client::ImageCheck;
use crate::controller::settings::Settings;
use crate::render::{BuildInputs, Rendered, render};
use config_status::ConfigStatus;
pub use registry_cleanup::{ImageDeletion, Removal};

/// A pinned image that the registry stops serving is rebuilt only after this many misses…
const MISSES_BEFORE_REBUILD: u32 = 3;
/// …spread over at least this long: one 404 must not roll every machine of a pool.
const MISSING_FOR_BEFORE_REBUILD: i64 = 300;

/// Canonical `.dockerconfigjson` documents for a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildAuth {
    pub push: String,
    pub base: Option<String>,
}

/// Why a MachineOSConfig's credentials cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthProblem {
    pub reason: AuthReason,
    pub message: String,
}

/// The Degraded reason of an [`AuthProblem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthReason {
    /// The Secret does not exist or holds no usable auth.
    SecretUnavailable,
    /// The Secret does not opt in to this MachineOSConfig.
    SecretNotAllowed,
}

impl AuthReason {
    /// The condition reason.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthReason::SecretUnavailable => "SecretUnavailable",
            AuthReason::SecretNotAllowed => "SecretNotAllowed",
        }
    }
}

/// Why the base image is not known by digest (the message of Degraded/BaseImageUnavailable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BaseUnknown {
    /// The release ConfigMap (`where_`: which ConfigMap and key) does not exist.
    #[error("{where_}: the ConfigMap does not exist")]
    NoReleaseConfigMap { where_: String },
    /// The release ConfigMap lacks the key, or it is empty.
    #[error("{where_}: the key is missing or empty")]
    NoReleaseKey { where_: String },
    /// The registry did not resolve the reference (its error).
    #[error("{0}")]
    Unresolved(String),
    /// The registry's answer breaks Strata's limits (a manifest over its cap, a redirect to
    /// another host): not asked again until the inputs change or the periodic resync.
    #[error("{0}")]
    Refused(String),
}

/// Everything the planner needs about one MachineOSConfig, read from the caches (and the
/// registry, whose answers are cached too).
#[derive(Clone, Debug)]
pub struct Observed {
    pub config: MachineOSConfig,
    /// The MachineConfigPool; None when it does not exist (or does not read as one).
    pub pool: Option<mco::MachineConfigPool>,
    /// The MachineConfig the pool currently runs (`status.configuration.name`), when known.
    pub rendered_config: Option<mco::MachineConfig>,
    /// The MachineConfig the MCO rendered for the pool to move to (`spec.configuration.name`).
    pub target_config: Option<mco::MachineConfig>,
    /// The pool's machines as the MCO's node annotations describe them (empty when Strata may
    /// not read Nodes, or the pool has none).
    pub machines: Vec<mco::NodeView>,
    /// OpenShift's own MachineOSConfig naming the same pool, if any.
    pub layered_by_openshift: Option<String>,
    /// Other MachineOSConfigs naming the same pool: (name, created at).
    pub rivals: Vec<(String, Option<Timestamp>)>,
    /// The base image pinned by digest, or why it could not be resolved.
    pub base: Result<String, BaseUnknown>,
    /// This MachineOSConfig's builds (owned by its uid).
    pub builds: Vec<MachineOSBuild>,
    /// Builds carrying this MachineOSConfig's name that belong to a deleted one of the same name.
    pub foreign_builds: Vec<String>,
    /// The Jobs of this MachineOSConfig's builds.
    pub jobs: Vec<Job>,
    /// What the Job of the current inputs' build is doing.
    pub job: JobObservation,
    /// What the disk image Job of the current build is doing (Missing unless its status says
    /// it is being made).
    pub disk_job: JobObservation,
    /// The per-build Secrets of this MachineOSConfig that exist.
    pub build_secrets: BTreeSet<String>,
    /// The per-build ConfigMaps of this MachineOSConfig that exist.
    pub build_config_maps: BTreeSet<String>,
    pub auth: Result<BuildAuth, AuthProblem>,
    /// Registry check of the current build's image (its digest from the builder or its status).
    pub image_check: Option<ImageCheck>,
    /// The pool's pinning MachineConfig as it is now (None when absent).
    pub machine_config: Option<mco::MachineConfig>,
    /// The cluster's environment: what the builder pod gets beyond the config's own inputs.
    pub environment: Environment,
    /// The units the current base fails by itself, when a build recorded them (the boot check's
    /// baseline).
    pub base_failed_units: Option<Vec<String>>,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub type_: EventType,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What Strata did or tried: CreateBuild, StartBuild, Pin, Interrupt, Rebuild, …
    pub action: &'static str,
    pub note: String,
    /// The MachineOSBuild it concerns (the Event's `related`): Events of one reason about
    /// different builds stay apart instead of counting as one series with the first note.
    pub build: Option<String>,
}

/// Metric transitions of this round, applied once the writes succeeded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsUpdate {
    pub pool: String,
    /// The phase of the pool's current build after this round (None: no build).
    pub phase: Option<BuildPhase>,
    /// A build started running this round, after waiting this many seconds.
    pub started_after: Option<f64>,
    /// A build ended this round: its result and duration.
    pub ended: Option<(BuildPhase, Option<f64>)>,
    /// Whether the pool runs the pinned image (None: no pool).
    pub pool_updated: Option<bool>,
    /// The builder pod's waiting reason while it cannot start (ImagePullBackOff, …).
    pub waiting: Option<String>,
    /// Whether Strata holds the pool (None: no pool).
    pub pool_held: Option<bool>,
    /// How many of the pool's machines are at each stage (updated, waiting, updating,
    /// rebooting, degraded); empty when its machines are not known.
    pub pool_machines: Vec<(&'static str, i64)>,
    /// How long each builder step took, for a build that succeeded this round.
    pub phase_seconds: Vec<(String, f64)>,
    /// The MachineOSConfig, for its own series.
    pub config: String,
    /// Whether the build of the config's current inputs has failed (None: not known this round,
    /// the base could not be resolved).
    pub latest_build_failed: Option<bool>,
    /// The pool condition the config waits on (WaitingForPool True), if any.
    pub waiting_for_pool: Option<String>,
    /// A build's boot check ended this round: passed, its seconds, the accelerator.
    pub boot_check: Option<(bool, f64, String)>,
    /// A build's disk image ended this round: whether it was pushed, the Job's seconds.
    pub disk_image: Option<(bool, f64)>,
}

/// What to do. Apply destructures every field: a field nobody applies does not compile.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The build of the current inputs, to create. Its objects follow once it exists (they are
    /// owned by it, so they need its uid).
    pub create_build: Option<MachineOSBuild>,
    /// The current build's ConfigMaps, Secret and Job, complete, to write (all at once; see
    /// build_status::remake_missing_objects for one whose write failed).
    pub build_objects: Option<BuildObjects>,
    /// Status to write to builds, by name (only what changed).
    pub build_status: Vec<(String, MachineOSBuildStatus)>,
    /// The current build's disk image Secret, environment and Job, to write (after the pin).
    pub disk_image_objects: Option<DiskImageObjects>,
    /// Jobs to stop and remove (superseded or ended builds).
    pub delete_jobs: Vec<String>,
    /// Per-build Secrets no longer needed.
    pub delete_secrets: Vec<String>,
    /// Builds to delete: the current one to rebuild it, old ones beyond the history.
    pub delete_builds: Vec<String>,
    /// The current build succeeded and its Job goes: the end of each step's log is kept in this
    /// ConfigMap first (apply reads the pod's logs into it).
    pub keep_logs: Option<k8s_openapi::api::core::v1::ConfigMap>,
    /// Pushed images of pruned builds to delete from the registry (`--registry-cleanup=on`),
    /// before their builds go.
    pub delete_images: Vec<ImageDeletion>,
    /// The MachineConfig pinning the pool, when it must change.
    pub machine_config: Option<Value>,
    /// The pool's `spec.paused`, when Strata takes or releases its hold.
    pub pool_paused: Option<bool>,
    /// The MachineOSConfig's new status, when it changed.
    pub config_status: Option<MachineOSConfigStatus>,
    pub remove_rebuild_annotation: bool,
    pub events: Vec<PlannedEvent>,
    pub metrics: MetricsUpdate,
    /// Look again after this long (waiting on something that sends no event).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// The writes this plan makes, in short (`create-build,build-status×2,…`): the slow-round log
    /// line says what a round that took long was doing.
    pub fn writes(&self) -> String {
        let counted = [
            ("create-build", usize::from(self.create_build.is_some())),
            ("build-objects", usize::from(self.build_objects.is_some())),
            (
                "disk-image-objects",
                usize::from(self.disk_image_objects.is_some()),
            ),
            ("build-status", self.build_status.len()),
            ("delete-job", self.delete_jobs.len()),
            ("delete-secret", self.delete_secrets.len()),
            ("delete-build", self.delete_builds.len()),
            ("delete-image", self.delete_images.len()),
            ("keep-logs", usize::from(self.keep_logs.is_some())),
            ("machine-config", usize::from(self.machine_config.is_some())),
            ("pool-paused", usize::from(self.pool_paused.is_some())),
            ("config-status", usize::from(self.config_status.is_some())),
            (
                "remove-annotation",
                usize::from(self.remove_rebuild_annotation),
            ),
            ("event", self.events.len()),
        ];
        let parts: Vec<String> = counted
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| match n {
                1 => what.to_string(),
                n => format!("{what}×{n}"),
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }
}

/// The planner.
pub fn plan(observed: &Observed, settings: &Settings) -> Plan {
    let mut planner = Planner::new(observed, settings);
    planner.decide();
    planner.finish()
}

/// The plan for a MachineOSConfig being deleted: its builds go with it (owner references), and
/// with `--registry-cleanup` their pushed images too, by the pruning rules (registry_cleanup.rs):
/// never the pin, nor an image the pool's machines run or move to. Only `delete_images` and
/// `events` are set; the finalizer removes the MachineConfig.
pub fn plan_deletion(observed: &Observed, settings: &Settings) -> Plan {
    let mut planner = Planner::new(observed, settings);
    let builds = observed
        .builds
        .iter()
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    registry_cleanup::plan(
        &mut planner,
        builds,
        registry_cleanup::Removal::ConfigDeleted,
    );
    planner.plan
}

struct Planner<'a> {
    observed: &'a Observed,
    settings: &'a Settings,
    plan: Plan,
    status: ConfigStatus,
    /// The build of the current inputs, once they rendered.
    current: Option<String>,
    /// The base image of the current inputs.
    current_base: Option<String>,
    /// The pool's degradation, which holds builds and pins back (see pool_wait.rs).
    degraded: Option<pool_wait::Degradation>,
    /// What the degraded pool held back this round (a build, a rebuild, a pin).
    held_back: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(observed: &'a Observed, settings: &'a Settings) -> Self {
        Self {
            observed,
            settings,
            plan: Plan::default(),
            status: ConfigStatus::new(&observed.config, observed.now),
            current: None,
            current_base: None,
            degraded: None,
            held_back: Vec::new(),
        }
    }

    fn event(
        &mut self,
        type_: EventType,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
        self.plan.events.push(PlannedEvent {
            type_,
            reason,
            action,
            note,
            build: self.current.clone(),
        });
    }

    /// Whether the degraded pool holds `what` back; if so, it is recorded for WaitingForPool.
    fn held_by_pool(&mut self, what: String) -> bool {
        if self.degraded.is_none() {
            return false;
        }
        self.held_back.push(what);
        true
    }

    fn requeue(&mut self, secs: u64) {
        let next = Duration::from_secs(secs);
        self.plan.requeue_after = Some(self.plan.requeue_after.map_or(next, |r| r.min(next)));
    }

    /// Degraded with `reason`, nothing building; an Event when the message is new.
    fn refuse(&mut self, reason: &'static str, action: &'static str, message: String) {
        if !self.status.has_message(ct::DEGRADED, &message) {
            self.event(EventType::Warning, reason, action, message.clone());
        }
        self.status.set(ct::DEGRADED, true, reason, message);
        self.status.set(ct::BUILDING, false, reason, String::new());
    }

    fn decide(&mut self) {
        let o = self.observed;
        let config = &o.config;
        self.plan.metrics.pool = config.spec.machine_config_pool.name.clone();
        self.plan.metrics.config = config.metadata.name.clone().unwrap_or_default();
        self.plan.metrics.latest_build_failed = Some(false);
        let Some(pool) = self.claimed_pool() else {
            return;
        };
        self.degraded = pool_wait::degradation(pool);
        let Some(base) = self.base() else { return };
        let inputs = BuildInputs::from_config(config, &base);
        let Some(rendered) = self.rendered(&inputs) else {
            return;
        };
        let build_name = rendered.build_name.clone();
        self.current = Some(build_name.clone());
        self.current_base = Some(inputs.base_image.clone());
        self.interrupt_superseded(&build_name);

        let rebuild = config
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(REBUILD_ANNOTATION));
        let Some(current) = o
            .builds
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(build_name.as_str()))
        else {
            let seed = match seed::next(self) {
                seed::Seed::Refused => return,
                seed::Seed::Build => None,
                seed::Seed::Image(image) => Some(image),
            };
            self.start_build(&inputs, &rendered, rebuild, seed.as_deref());
            return;
        };
        if self.rebuild_ended(current, rebuild) {
            return;
        }
        let next = build_status::next(self, current, &rendered);
        let next_phase = next.phase().unwrap_or(BuildPhase::Prepared);
        if rebuild && !next_phase.is_terminal() {
            self.plan.remove_rebuild_annotation = true;
        }
        self.plan.metrics.phase = Some(next_phase);
        self.plan.metrics.latest_build_failed = Some(next_phase == BuildPhase::Failed);
        seed::record(self, current, next_phase);
        self.conclude(&build_name, &next, pool);
    }

    /// The pool this config builds for, when it exists and this config may build for it (else
    /// Degraded, with why).
    fn claimed_pool(&mut self) -> Option<&'a mco::MachineConfigPool> {
        let o = self.observed;
        let pool_name = o.config.spec.machine_config_pool.name.clone();
        let Some(pool) = &o.pool else {
            self.refuse(
                "PoolNotFound",
                "Validate",
                format!("MachineConfigPool {pool_name} does not exist; Strata builds once it does"),
            );
            return None;
        };
        if let Some(theirs) = &o.layered_by_openshift {
            self.refuse(
                "PoolLayeredByOpenShift",
                "Validate",
                format!(
                    "OpenShift's own on-cluster layering builds for pool {pool_name} \
                     (machineosconfigs.machineconfiguration.openshift.io/{theirs}); Strata does not \
                     fight it: delete one of the two"
                ),
            );
            return None;
        }
        if let Some(winner) = self.rival_winner() {
            self.refuse(
                "PoolClaimed",
                "Validate",
                format!(
                    "MachineOSConfig {winner} also builds for pool {pool_name}; only one \
                     MachineOSConfig may, the one named after the pool (or the oldest)"
                ),
            );
            return None;
        }
        Some(pool)
    }

    /// The base image pinned by digest; Degraded while it is not, and a look again in a minute
    /// unless the registry's answer was refused (the same again: the resync is soon enough).
    fn base(&mut self) -> Option<String> {
        match &self.observed.base {
            Ok(base) => Some(base.clone()),
            Err(why) => {
                self.status
                    .set(ct::DEGRADED, true, "BaseImageUnavailable", why.to_string());
                // The current inputs are not known: whether their build failed neither.
                self.plan.metrics.latest_build_failed = None;
                if !matches!(why, BaseUnknown::Refused(_)) {
                    self.requeue(60);
                }
                None
            }
        }
    }

    /// The Containerfile of `inputs`, rendered; Degraded when there is none for amd64 or it is
    /// invalid.
    fn rendered(&mut self, inputs: &BuildInputs) -> Option<Rendered> {
        let config = &self.observed.config;
        if !inputs.has_fragment_for_amd64() {
            let arches: Vec<String> = config
                .spec
                .container_file
                .iter()
                .map(|e| format!("{:?}", e.containerfile_arch))
                .collect();
            self.refuse(
                "NoFragmentForArchitecture",
                "Validate",
                format!(
                    "spec.containerFile has entries for {} only; Strata builds amd64 images: add \
                     an AMD64 or a NoArch entry",
                    arches.join(", ")
                ),
            );
            return None;
        }
        match render(inputs) {
            Ok(rendered) => Some(rendered),
            Err(err) => {
                self.refuse("InvalidContainerfile", "Validate", err.to_string());
                None
            }
        }
    }

    /// The current inputs have no build yet: it is created (to take `seed`, a pre-built image,
    /// when given), once a deleted config's build of the same name is gone and the credentials
    /// can be used.
    fn start_build(
        &mut self,
        inputs: &BuildInputs,
        rendered: &Rendered,
        rebuild: bool,
        seed: Option<&str>,
    ) {
        let o = self.observed;
        let build_name = rendered.build_name.clone();
        if o.foreign_builds.contains(&build_name) {
            // A deleted MachineOSConfig of the same name left it; the garbage collector
            // removes it shortly. Taking over its status would be wrong.
            self.status.set(
                ct::BUILDING,
                false,
                "WaitingForGarbageCollection",
                format!(
                    "build {build_name} of a deleted MachineOSConfig of the same name is \
                     being removed"
                ),
            );
            self.requeue(10);
            return;
        }
        if let Err(problem) = &o.auth {
            self.status.set(
                ct::DEGRADED,
                true,
                problem.reason.as_str(),
                problem.message.clone(),
            );
            self.requeue(60);
            return;
        }
        if self.held_by_pool(format!("build {build_name} of the current inputs")) {
            // Nothing exists yet to name in status.machineOSBuild; the rebuild annotation stays.
            self.status
                .set(ct::DEGRADED, false, "AsExpected", String::new());
            self.status.not_ready_while_building(&build_name);
            return;
        }
        self.create_build(inputs, rendered, rebuild, seed);
    }

    /// An ended build of the current inputs is deleted to build it again when asked to, when it
    /// was interrupted, or when its image is gone. Whether it was.
    fn rebuild_ended(&mut self, current: &MachineOSBuild, rebuild: bool) -> bool {
        let build_name = current.metadata.name.clone().unwrap_or_default();
        let phase = current.phase();
        let image_gone = self.image_gone();
        if phase.is_some_and(BuildPhase::is_terminal)
            && (rebuild || phase == Some(BuildPhase::Interrupted) || image_gone)
        {
            let why = if rebuild {
                format!("rebuild requested with the {REBUILD_ANNOTATION} annotation")
            } else if phase == Some(BuildPhase::Interrupted) {
                "the inputs of an interrupted build are current again".to_string()
            } else {
                "its image is gone from the registry".to_string()
            };
            if self.held_by_pool(format!("rebuilding {build_name} ({why})")) {
                // The ended build stays as it is until the pool recovers.
                return false;
            }
            self.plan.delete_builds.push(build_name.clone());
            self.event(
                EventType::Normal,
                "Rebuilding",
                "Rebuild",
                format!("building {build_name} again: {why}"),
            );
            self.status.set(ct::BUILDING, true, "Rebuilding", why);
            self.requeue(5);
            return true;
        }
        false
    }

    /// The config whose claim on the pool beats this one's, if any: the one named after the pool,
    /// else the oldest.
    fn rival_winner(&self) -> Option<String> {
        let o = self.observed;
        let pool = &o.config.spec.machine_config_pool.name;
        let me = o.config.metadata.name.clone().unwrap_or_default();
        if &me == pool {
            return None;
        }
        let created = o.config.metadata.creation_timestamp.as_ref().map(|t| t.0);
        o.rivals
            .iter()
            .find(|(name, at)| {
                name == pool || (at.is_some() && (created.is_none() || *at < created))
            })
            .map(|(name, _)| name.clone())
    }

    /// Whether the current build's pinned image has been missing long enough to rebuild it.
    fn image_gone(&mut self) -> bool {
        let Some(ImageCheck::Missing { first_seen, misses }) = self.observed.image_check else {
            return false;
        };
        let missing_for = self.observed.now.as_second() - first_seen.as_second();
        misses >= MISSES_BEFORE_REBUILD && missing_for >= MISSING_FOR_BEFORE_REBUILD
    }

    /// Builds of older inputs still running are interrupted: one active build per pool.
    fn interrupt_superseded(&mut self, build_name: &str) {
        let now = self.observed.now;
        for old in &self.observed.builds {
            let old_name = old.metadata.name.clone().unwrap_or_default();
            if old_name == build_name || old.phase().is_some_and(BuildPhase::is_terminal) {
                continue;
            }
            let why = format!(
                "superseded by build {build_name}: the MachineOSConfig or its base image changed"
            );
            self.plan.build_status.push((
                old_name.clone(),
                build_status::ended(old, BuildPhase::Interrupted, "Superseded", &why, now),
            ));
            self.event(
                EventType::Normal,
                "BuildInterrupted",
                "Interrupt",
                format!("build {old_name} {why}; its builder is stopped"),
            );
        }
    }

    fn create_build(
        &mut self,
        inputs: &BuildInputs,
        rendered: &Rendered,
        rebuild: bool,
        seed: Option<&str>,
    ) {
        let build_name = &rendered.build_name;
        let mut build = new_build(&self.observed.config, inputs, build_name);
        if let Some(image) = seed {
            seed::mark(&mut build, image);
        }
        // Its status is written with its objects in the next round: it names the Job, whose name
        // needs the uid the API server gives the build. Writing it now as well would cost a
        // write per build, in series after the create, while the API server is busiest.
        self.plan.create_build = Some(build);
        let note = match seed {
            Some(image) => format!(
                "build {build_name} created for the current inputs, to take the pre-built image \
                 {image} (checked, not built)"
            ),
            None => format!("build {build_name} created for the current inputs"),
        };
        self.event(EventType::Normal, "BuildCreated", "CreateBuild", note);
        self.plan.metrics.phase = Some(BuildPhase::Prepared);
        self.status
            .set(ct::BUILDING, true, "Building", under_way(build_name));
        self.status
            .set(ct::DEGRADED, false, "AsExpected", String::new());
        self.status.not_ready_while_building(build_name);
        self.status.machine_os_build = Some(build_ref(build_name));
        self.plan.remove_rebuild_annotation = rebuild;
        self.requeue(5);
    }

    /// Conditions, pinning and the MachineOSConfig's status from the current build's phase.
    fn conclude(
        &mut self,
        build_name: &str,
        next: &MachineOSBuildStatus,
        pool: &mco::MachineConfigPool,
    ) {
        match next.phase().unwrap_or(BuildPhase::Prepared) {
            BuildPhase::Succeeded => self.conclude_succeeded(build_name, next, pool),
            BuildPhase::Failed => self.conclude_failed(build_name, next),
            BuildPhase::Interrupted => {}
            BuildPhase::Prepared | BuildPhase::Building => self.conclude_building(build_name),
        }
    }

    /// The build succeeded: the pool is pinned to its image, Ready (and whether the registry
    /// still serves the image).
    fn conclude_succeeded(
        &mut self,
        build_name: &str,
        next: &MachineOSBuildStatus,
        pool: &mco::MachineConfigPool,
    ) {
        let pool_name = self.observed.config.spec.machine_config_pool.name.clone();
        let Some(image) = next.digested_image_push_spec.clone() else {
            return;
        };
        let config_name = self
            .observed
            .config
            .metadata
            .name
            .clone()
            .unwrap_or_default();
        let selector = objects::pool_selector_labels(&pool_name, pool);
        let desired = objects::machine_config(&pool_name, &selector, &image, &config_name);
        let new_image = self.status.current_image_pull_spec.as_deref() != Some(image.as_str());
        // Steady state writes nothing: apply only when what we own differs.
        let differs =
            !objects::machine_config_matches(self.observed.machine_config.as_ref(), &desired);
        if (new_image || differs) && self.pin_held(build_name, &image, new_image) {
            return;
        }
        if new_image {
            self.event(
                EventType::Normal,
                "PoolPinned",
                "Pin",
                format!("MachineConfigPool {pool_name} now uses {image}"),
            );
        }
        if differs {
            self.plan.machine_config = Some(desired);
        }
        self.status.current_image_pull_spec = Some(image.clone());
        self.status.machine_os_build = Some(build_ref(build_name));
        let ready = match &self.observed.image_check {
            Some(ImageCheck::Missing { first_seen, misses }) => format!(
                "pool {pool_name} is pinned to {image}, but the registry did not find it \
                     ({misses} checks since {first_seen}); Strata rebuilds it after \
                     {MISSES_BEFORE_REBUILD} misses over {} minutes",
                MISSING_FOR_BEFORE_REBUILD / 60
            ),
            _ => format!("pool {pool_name} is pinned to {image}"),
        };
        if let Some(ImageCheck::Missing { misses: 1, .. }) = &self.observed.image_check {
            self.event(
                EventType::Warning,
                "ImageMissing",
                "CheckImage",
                format!("the registry does not serve {image}, which pool {pool_name} uses"),
            );
            self.requeue(60);
        } else if let Some(ImageCheck::Missing { .. }) = &self.observed.image_check {
            self.requeue(60);
        }
        self.status.set(ct::READY, true, "BuildSucceeded", ready);
        self.status
            .set(ct::BUILDING, false, "BuildSucceeded", String::new());
        self.status
            .set(ct::DEGRADED, false, "AsExpected", String::new());
        disk_image::follow(self, build_name, next, &image);
    }

    /// Whether the degraded pool holds back pinning `image` of the succeeded `build_name` (a new
    /// image, or the MachineConfig of the pinned one written again); if so, Ready says what the
    /// pool keeps meanwhile.
    fn pin_held(&mut self, build_name: &str, image: &str, new_image: bool) -> bool {
        if !self.held_by_pool(format!("pinning {image} (build {build_name})")) {
            return false;
        }
        let ready = match (&self.status.current_image_pull_spec, new_image) {
            (Some(old), true) => format!(
                "build {build_name} succeeded with {image}; the pool keeps {old} until it is no \
                 longer degraded"
            ),
            (None, _) => format!(
                "build {build_name} succeeded with {image}; the pool keeps the release's image \
                 until it is no longer degraded"
            ),
            (Some(_), false) => format!(
                "the pool is pinned to {image}, but its MachineConfig differs; Strata writes it \
                 again once the pool is no longer degraded"
            ),
        };
        self.status.machine_os_build = Some(build_ref(build_name));
        self.status.set(ct::READY, false, "WaitingForPool", ready);
        self.status
            .set(ct::DEGRADED, false, "AsExpected", String::new());
        true
    }

    /// The build failed: Degraded, and the pool keeps the image it has.
    fn conclude_failed(&mut self, build_name: &str, next: &MachineOSBuildStatus) {
        let failure = next.failure.clone().unwrap_or_default();
        let message = format!(
            "build {build_name} failed ({}): {}",
            failure.reason, failure.message
        );
        self.status.machine_os_build = Some(build_ref(build_name));
        let keeps = match &self.status.current_image_pull_spec {
            Some(image) => format!("; the pool keeps {image}"),
            None => String::new(),
        };
        self.status
            .set(ct::READY, false, "BuildFailed", format!("{message}{keeps}"));
        self.status
            .set(ct::BUILDING, false, "BuildFailed", String::new());
        self.status.set(ct::DEGRADED, true, "BuildFailed", message);
    }

    /// The build runs: Building says what it is doing (or waiting on); not Ready yet.
    fn conclude_building(&mut self, build_name: &str) {
        self.status.machine_os_build = Some(build_ref(build_name));
        let (reason, message) = match (&self.status.verifying, &self.plan.metrics.waiting) {
            (Some(why), _) => ("VerifyingDigest", why.clone()),
            (None, Some(reason)) => (
                "BuilderCannotStart",
                format!(
                    "build {build_name}: the builder pod cannot start ({reason}): {}",
                    self.status.waiting_message.clone().unwrap_or_default()
                ),
            ),
            (None, None) => ("Building", under_way(build_name)),
        };
        self.status.set(ct::BUILDING, true, reason, message);
        self.status
            .set(ct::DEGRADED, false, "AsExpected", String::new());
        self.status.not_ready_while_building(build_name);
    }

    fn finish(mut self) -> Plan {
        let current = self.current.clone();
        if let Some(current) = current.as_deref() {
            disk_image::interrupt_superseded(&mut self, current);
        }
        history::tidy(&mut self, current.as_deref());
        hold::decide(&mut self);
        pool_wait::report(&mut self);
        // PoolUpdated: True only when the configuration the pool runs carries the image pinned
        // (after this round) and every machine has it; while it rolls, how far it got.
        if let Some(pool) = &self.observed.pool {
            let (value, reason, message) = config_status::pool_updated(
                pool,
                self.observed.rendered_config.as_ref(),
                self.observed.target_config.as_ref(),
                &self.observed.machines,
                self.status.current_image_pull_spec.as_deref(),
            );
            self.plan.metrics.pool_updated = Some(value);
            if !self.observed.machines.is_empty() {
                let target = (pool.spec.configuration.name.as_deref())
                    .or(pool.status.configuration.name.as_deref())
                    .unwrap_or_default();
                self.plan.metrics.pool_machines = machines::counts(&self.observed.machines, target)
                    .map(|(stage, n)| (stage.label(), i64::try_from(n).unwrap_or(i64::MAX)))
                    .to_vec();
            }
            self.status.set(ct::POOL_UPDATED, value, reason, message);
        }
        self.plan.config_status = self
            .status
            .into_change(self.observed.config.status.as_ref());
        self.plan
    }
}

/// The Building condition's message while a build runs. The same from creation to the end, so
/// the config's status is not written again as the build moves from Prepared to Building: its
/// MachineOSBuild has the phase.
fn under_way(build_name: &str) -> String {
    format!("build {build_name} is under way; its MachineOSBuild shows the phase")
}

fn build_ref(name: &str) -> ObjectReference {
    ObjectReference {
        group: strata_crds::GROUP.into(),
        resource: "machineosbuilds".into(),
        namespace: None,
        name: name.into(),
    }
}

fn new_build(config: &MachineOSConfig, inputs: &BuildInputs, name: &str) -> MachineOSBuild {
    let config_name = config.metadata.name.clone().unwrap_or_default();
    let mut build = MachineOSBuild::new(
        name,
        MachineOSBuildSpec {
            machine_os_config: LocalObjectName::new(config_name.clone()),
            machine_config_pool: config.spec.machine_config_pool.clone(),
            base_image: inputs.base_image.clone(),
            container_file: inputs.container_file.clone(),
            rendered_image_push_spec: names::image_for_build(
                &inputs.rendered_image_push_spec,
                name,
            ),
        },
    );
    build.metadata = ObjectMeta {
        name: Some(name.to_string()),
        labels: Some([(labels::CONFIG.to_string(), fit_63(&config_name))].into()),
        owner_references: config.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    build
}

#[cfg(test)]
mod tests;
