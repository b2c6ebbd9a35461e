//! The pushed images of pruned builds (`--registry-cleanup`), as the MCO deletes a deleted
//! build's image unless a node still runs it. An image is never deleted while anything may use
//! it: the pool's pin (its MachineConfig and the config's status) and a kept build's (a rebuild
//! of the same inputs can push the same digest) keep the image and let the build go; the images
//! of the MachineConfigs the pool runs and moves to (machines may run them), and every image while
//! one of the pool's machines reports a rendered config other than those two (a machine left
//! behind, whose image Strata cannot tell), keep the build for a later round, so that its image
//! goes with it once the pool has moved on instead of staying in the registry for good.

use std::collections::BTreeSet;

use super::{EventType, PlannedEvent, Planner};
use crate::controller::settings::RegistryCleanup;

/// Why a build goes, and its image with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Beyond `--build-history`.
    Pruned,
    /// With its MachineOSConfig.
    ConfigDeleted,
}

impl Removal {
    /// "pruned build B" / "build B of the deleted MachineOSConfig", for Events.
    pub fn build(self, build: &str) -> String {
        match self {
            Self::Pruned => format!("pruned build {build}"),
            Self::ConfigDeleted => format!("build {build} of the deleted MachineOSConfig"),
        }
    }
}

/// A pushed image to delete from the registry (`repo@sha256:…`), its build's name and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDeletion {
    pub build: String,
    pub image: String,
    pub why: Removal,
}

/// Of `pruned` (builds that go: beyond the history, or with their config), those to delete this
/// round; their images go to the plan's deletions (`on`) or an Event (`dry-run`).
pub(super) fn plan(planner: &mut Planner<'_>, pruned: Vec<String>, why: Removal) -> Vec<String> {
    let mode = planner.settings.registry_cleanup;
    if mode == RegistryCleanup::Off || pruned.is_empty() {
        return pruned;
    }
    let observed = planner.observed;
    // A seeding build's image is a pre-built one Strata never pushed: never deleted.
    let image_of = |name: &str| {
        observed
            .builds
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(name))
            .filter(|b| b.pre_built_image().is_none())
            .and_then(|b| b.status.as_ref()?.digested_image_push_spec.clone())
    };
    let url = |mc: &Option<strata_crds::contract::mco::MachineConfig>| {
        mc.as_ref().and_then(|mc| mc.spec.os_image_url.clone())
    };
    let mut in_use: BTreeSet<String> = [
        planner.status.current_image_pull_spec.clone(),
        url(&observed.machine_config),
    ]
    .into_iter()
    .flatten()
    .collect();
    let on_machines: BTreeSet<String> =
        [url(&observed.rendered_config), url(&observed.target_config)]
            .into_iter()
            .flatten()
            .collect();
    for build in &observed.builds {
        let name = build.metadata.name.as_deref().unwrap_or_default();
        if !pruned.iter().any(|p| p == name)
            && let Some(image) = image_of(name)
        {
            in_use.insert(image);
        }
    }
    let known: Vec<&str> = [&observed.rendered_config, &observed.target_config]
        .into_iter()
        .flatten()
        .filter_map(|mc| mc.metadata.name.as_deref())
        .collect();
    let unknown_machine = observed.machines.iter().find(|m| {
        [&m.current, &m.desired]
            .iter()
            .any(|c| !c.is_empty() && !known.contains(&c.as_str()))
    });
    let mut now = Vec::new();
    for build in pruned {
        let Some(image) = image_of(&build).filter(|i| !in_use.contains(i)) else {
            now.push(build);
            continue;
        };
        if unknown_machine.is_some() || on_machines.contains(&image) {
            continue;
        }
        match mode {
            RegistryCleanup::On => planner.plan.delete_images.push(ImageDeletion {
                build: build.clone(),
                image,
                why,
            }),
            RegistryCleanup::DryRun => planner.plan.events.push(PlannedEvent {
                type_: EventType::Normal,
                reason: "ImageCleanupDryRun",
                action: "DeleteImage",
                note: format!(
                    "{image} of {} would be deleted from the registry \
                     (--registry-cleanup=dry-run)",
                    why.build(&build)
                ),
                build: Some(build.clone()),
            }),
            RegistryCleanup::Off => {}
        }
        now.push(build);
    }
    now
}
