//! Upgrades roll each machine once. When the release base changes, Strata's MachineConfig still
//! names the image built on the old base, and it wins the MCO's merge: the MCO would roll the
//! pool with the new release's configuration on the old OS (kubelet and CRI-O skew), then roll it
//! again once Strata's rebuild lands. So Strata holds (`spec.paused`) each pool it rebuilds for a
//! new base, from the round it sees the new base, and releases it once its rebuild is pinned and
//! the MCO has rendered the pool with that image. A failed build keeps the hold and says so. A
//! pause Strata did not set is never undone, a hold someone released is not taken again, and a
//! degraded pool is not held (pool_wait.rs).

use strata_crds::contract::mco;
use strata_crds::{BuildPhase, MachineOSBuild, condition_types as ct};

use super::{EventType, Planner};

pub(super) fn decide(planner: &mut Planner<'_>) {
    let o = planner.observed;
    let Some(pool) = &o.pool else { return };
    let Some(round) = Round::read(planner, pool) else {
        report(planner);
        return;
    };
    if planner.status.is_true(ct::POOL_HELD) {
        while_held(planner, &round);
    } else if !released_by_others(planner, &round.current) {
        hold_for_new_base(planner, &round);
    }
    report(planner);
}

/// What the hold depends on this round: the pool and the current build after this plan.
struct Round {
    pool_name: String,
    paused: bool,
    /// The current build and its base image.
    current: String,
    base: String,
    phase: Option<BuildPhase>,
    /// The image pinned after this plan.
    pinned: Option<String>,
    /// Whether the current build succeeded and its image is the one pinned.
    pinned_now: bool,
}

impl Round {
    /// None when the current inputs did not render (no current build).
    fn read(planner: &Planner<'_>, pool: &mco::MachineConfigPool) -> Option<Self> {
        let o = planner.observed;
        let (Some(current), Some(base)) = (planner.current.clone(), planner.current_base.clone())
        else {
            return None;
        };
        let pool_name = o.config.spec.machine_config_pool.name.clone();
        let paused = pool.spec.paused;
        // The current build after this plan: its phase and, once it succeeded, its image.
        let planned = planner
            .plan
            .build_status
            .iter()
            .find(|(name, _)| *name == current)
            .map(|(_, s)| s.clone());
        let build = o
            .builds
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(current.as_str()));
        let status = planned.or_else(|| build.and_then(|b| b.status.clone()));
        let phase = status.as_ref().and_then(|s| s.phase());
        let built = status
            .as_ref()
            .and_then(|s| s.digested_image_push_spec.clone());
        let pinned = planner.status.current_image_pull_spec.clone();
        let pinned_now = phase == Some(BuildPhase::Succeeded) && built.is_some() && built == pinned;
        Some(Self {
            pool_name,
            paused,
            current,
            base,
            phase,
            pinned,
            pinned_now,
        })
    }
}

/// Strata holds the pool: it notices a release by someone else, releases the pool once the
/// rebuild is pinned and rendered, or says why it keeps holding it.
fn while_held(planner: &mut Planner<'_>, round: &Round) {
    let Round {
        pool_name,
        paused,
        current,
        phase,
        pinned_now,
        ..
    } = round;
    if !paused {
        planner.status.set(
            ct::POOL_HELD,
            false,
            "ReleasedByOthers",
            format!(
                "someone unpaused pool {pool_name} while Strata held it for build {current}; \
                 Strata does not pause it again for this build"
            ),
        );
        planner.event(
            EventType::Warning,
            "PoolReleasedByOthers",
            "HoldPool",
            format!("pool {pool_name} was unpaused while Strata held it for its rebuild"),
        );
    } else if *pinned_now {
        release_once_rendered(planner, round);
    } else if *phase == Some(BuildPhase::Failed) {
        planner.status.set(
            ct::POOL_HELD,
            true,
            "BuildFailed",
            format!(
                "holding pool {pool_name}: the rebuild on the new release base failed ({current}); \
                 fix the MachineOSConfig, or unpause the pool to roll it with the previous image"
            ),
        );
    }
}

/// The rebuild is pinned: the pool is released once the MCO has rendered it with that image.
fn release_once_rendered(planner: &mut Planner<'_>, round: &Round) {
    let o = planner.observed;
    let pool_name = &round.pool_name;
    let image = round.pinned.clone().unwrap_or_default();
    let target = o
        .target_config
        .as_ref()
        .and_then(|t| t.spec.os_image_url.as_deref());
    if target == Some(image.as_str()) {
        planner.plan.pool_paused = Some(false);
        planner.status.set(
            ct::POOL_HELD,
            false,
            "Released",
            format!("released pool {pool_name}: its machines roll once, to {image}"),
        );
        planner.event(
            EventType::Normal,
            "PoolReleased",
            "HoldPool",
            format!("released pool {pool_name}: its machines roll once, to {image}"),
        );
    } else {
        planner.status.set(
            ct::POOL_HELD,
            true,
            "WaitingForRender",
            format!("holding pool {pool_name} until the MCO has rendered it with {image}"),
        );
        planner.requeue(5);
    }
}

/// Released by someone during this very rebuild: not taken again.
fn released_by_others(planner: &Planner<'_>, current: &str) -> bool {
    planner.status.conditions.iter().any(|c| {
        c.type_ == ct::POOL_HELD
            && c.reason == "ReleasedByOthers"
            && c.message.contains(&format!("build {current};"))
    })
}

/// The pool is not held: Strata holds it when the release base changed under the pinned image
/// (unless someone else paused it).
fn hold_for_new_base(planner: &mut Planner<'_>, round: &Round) {
    let o = planner.observed;
    let Round {
        pool_name,
        paused,
        current,
        base,
        phase,
        ..
    } = round;
    let from_release = o.config.spec.base_image.is_none();
    // The image the pool ran when this round began: a build reused for the new base is pinned in
    // this very round, and the MCO may render the new release with the old image before it sees
    // Strata's MachineConfig, so the pool is held then too (paused before the pin is written).
    let was_pinned = o
        .config
        .status
        .as_ref()
        .and_then(|s| s.current_image_pull_spec.clone());
    let pinned_base = was_pinned
        .as_ref()
        .and_then(|image| built_on(&o.builds, image));
    let base_changed = pinned_base.is_some_and(|b| b != *base);
    // A degraded pool is not paused: that would keep the MCO from rolling out the fix that
    // clears it (pool_wait.rs). Its rebuild waits anyway; the hold is taken once it recovers.
    let degraded = planner.degraded.is_some();
    if from_release && base_changed && !degraded && *phase != Some(BuildPhase::Failed) {
        if *paused {
            planner.status.set(
                ct::POOL_HELD,
                false,
                "PausedByAdmin",
                format!("pool {pool_name} is paused by someone else; Strata leaves it as it is"),
            );
        } else {
            planner.plan.pool_paused = Some(true);
            // A build that already succeeded on this base is reused: it is pinned as soon as its
            // image is confirmed (maybe a round later), nothing is built.
            let message = if *phase == Some(BuildPhase::Succeeded) {
                format!(
                    "holding pool {pool_name} while the MCO renders it with {current}, built on \
                     this release base before, so that its machines roll once, to that image"
                )
            } else {
                format!(
                    "holding pool {pool_name} while {current} is built on the new release base, \
                     so that its machines roll once, to the new image"
                )
            };
            planner
                .status
                .set(ct::POOL_HELD, true, "BaseImageChanged", message.clone());
            planner.event(EventType::Normal, "PoolHeld", "HoldPool", message);
        }
    }
}

/// The base image of the build that pushed `image`.
fn built_on(builds: &[MachineOSBuild], image: &str) -> Option<String> {
    builds
        .iter()
        .find(|b| {
            b.status
                .as_ref()
                .and_then(|s| s.digested_image_push_spec.as_deref())
                == Some(image)
        })
        .map(|b| b.spec.base_image.clone())
}

fn report(planner: &mut Planner<'_>) {
    let held = match planner.plan.pool_paused {
        Some(paused) => paused,
        None => planner.status.is_true(ct::POOL_HELD),
    };
    planner.plan.metrics.pool_held = Some(held);
}
