//! What an ended build leaves behind, and how much history is kept: Jobs of builds other than the
//! current one are stopped and removed (a superseded build must not keep building and pushing),
//! the current build's Job goes once it succeeded (a failed one stays for its logs; a succeeded
//! one's step logs are kept in a ConfigMap first), and so does
//! its disk image Job once the disk image is pushed; per-build Secrets go when their build ended
//! (the disk image's when it did), and ended builds beyond `--build-history` are deleted —
//! never the one the pool uses — with their pushed images (registry_cleanup.rs).

use std::collections::BTreeMap;

use strata_crds::{BuildPhase, DiskImagePhase, MachineOSBuild};

use super::{Planner, disk_image};
use crate::controller::names;

/// Adds the deletions to the plan. `current` is the build of the current inputs (None when the
/// inputs could not be rendered: then nothing is tidied).
pub(super) fn tidy(planner: &mut Planner<'_>, current: Option<&str>) {
    let Some(current) = current else { return };
    let observed = planner.observed;
    // Each build's phase after this plan.
    let planned: BTreeMap<&str, Option<BuildPhase>> = planner
        .plan
        .build_status
        .iter()
        .map(|(name, status)| (name.as_str(), status.phase()))
        .collect();
    let phase_of = |b: &MachineOSBuild| {
        let name = b.metadata.name.as_deref().unwrap_or_default();
        planned.get(name).copied().unwrap_or_else(|| b.phase())
    };
    let deleted = &planner.plan.delete_builds;

    let is_current = |b: &MachineOSBuild| {
        b.metadata.name.as_deref() == Some(current) && !deleted.iter().any(|d| d == current)
    };
    let mut delete_jobs = Vec::new();
    let mut keep_logs = None;
    for job in &observed.jobs {
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let build = observed.builds.iter().find(|b| names::job(b) == job_name);
        let disk_of = observed
            .builds
            .iter()
            .find(|b| names::disk_image_job(b) == job_name);
        let keep = match (build, disk_of) {
            (Some(b), _) if is_current(b) => phase_of(b) != Some(BuildPhase::Succeeded),
            // A disk image Job goes once its image is pushed; a failed one stays for its logs.
            (_, Some(b)) if is_current(b) => {
                disk_image::planned_phase(planner, b) != Some(DiskImagePhase::Succeeded)
            }
            _ => false,
        };
        if !keep && job.metadata.deletion_timestamp.is_none() {
            // The current build's logs outlive its Job.
            if let Some(b) = build.filter(|b| is_current(b))
                && !observed
                    .build_config_maps
                    .contains(&names::logs_configmap(current))
            {
                keep_logs = Some(crate::controller::objects::logs_configmap(
                    planner.settings,
                    b,
                ));
            }
            delete_jobs.push(job_name);
        }
    }

    let mut delete_secrets = Vec::new();
    for build in &observed.builds {
        let name = build.metadata.name.as_deref().unwrap_or_default();
        let disk_secret = names::disk_image_secret(name);
        if observed.build_secrets.contains(&disk_secret)
            && disk_image::planned_phase(planner, build) != Some(DiskImagePhase::Building)
        {
            delete_secrets.push(disk_secret);
        }
        if phase_of(build).is_some_and(BuildPhase::is_terminal) {
            let secrets = std::iter::once(names::credentials_secret(name))
                .chain(names::earlier_secrets(name));
            for secret in secrets {
                if observed.build_secrets.contains(&secret) {
                    delete_secrets.push(secret);
                }
            }
        }
    }

    let prune = builds_to_prune(planner, current, &phase_of);
    let prune =
        super::registry_cleanup::plan(planner, prune, super::registry_cleanup::Removal::Pruned);

    planner.plan.keep_logs = keep_logs;
    planner.plan.delete_jobs.extend(delete_jobs);
    planner.plan.delete_secrets.extend(delete_secrets);
    planner.plan.delete_builds.extend(prune);
}

/// Ended builds beyond `--build-history`, newest kept first; never the current build or the one
/// the pool uses.
fn builds_to_prune(
    planner: &Planner<'_>,
    current: &str,
    phase_of: &dyn Fn(&MachineOSBuild) -> Option<BuildPhase>,
) -> Vec<String> {
    let in_use = |b: &MachineOSBuild| {
        let name = b.metadata.name.as_deref().unwrap_or_default();
        let image = b
            .status
            .as_ref()
            .and_then(|s| s.digested_image_push_spec.as_deref());
        name == current
            || planner
                .status
                .machine_os_build
                .as_ref()
                .is_some_and(|r| r.name == name)
            || (image.is_some() && image == planner.status.current_image_pull_spec.as_deref())
    };
    let mut ended: Vec<&MachineOSBuild> = planner
        .observed
        .builds
        .iter()
        .filter(|b| phase_of(b).is_some_and(BuildPhase::is_terminal) && !in_use(b))
        .collect();
    ended.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    ended
        .into_iter()
        .skip(planner.settings.build_history)
        .filter_map(|b| b.metadata.name.clone())
        .collect()
}
