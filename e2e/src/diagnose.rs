//! What a build's Jobs and pods are doing, for the error of a test whose wait on them timed out:
//! a pod that never ran says why (the scheduler's condition, a container's waiting reason, the
//! kubelet's Events) where the timeout alone said nothing.

use std::fmt::Write as _;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use strata_crds::MachineOSBuild;

use crate::deployed::{NAMESPACE, builder_pods, jobs_of_build};

/// The build's phase and conditions, its Jobs, its pods (node, phase, conditions not met, each
/// step's state) and the Events about those Jobs and pods, newest last. Never fails: what cannot
/// be read is said instead.
pub async fn build_pods(client: &kube::Client, build: &str) -> String {
    let mut out = format!("what build {build} is doing:\n");
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    match builds.get_opt(build).await {
        Ok(Some(b)) => {
            let _ = writeln!(out, "  build phase {:?}", b.phase());
            for c in b.status.iter().flat_map(|s| &s.conditions) {
                let _ = writeln!(
                    out,
                    "  condition {} {} {}: {}",
                    c.type_, c.status, c.reason, c.message
                );
            }
        }
        Ok(None) => out.push_str("  the build does not exist\n"),
        Err(e) => {
            let _ = writeln!(out, "  cannot read the build: {e}");
        }
    }
    let mut names = Vec::new();
    match jobs_of_build(client, build).await {
        Ok(jobs) => {
            for job in &jobs {
                let _ = writeln!(out, "  {}", job_line(job));
                names.extend(job.metadata.name.clone());
            }
            if jobs.is_empty() {
                out.push_str("  no Job\n");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  cannot list Jobs: {e:#}");
        }
    }
    match builder_pods(client, build).await {
        Ok(pods) => {
            for pod in &pods {
                out.push_str(&pod_lines(pod));
                names.extend(pod.metadata.name.clone());
            }
            if pods.is_empty() {
                out.push_str("  no pod\n");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  cannot list pods: {e:#}");
        }
    }
    out.push_str(&events_about(client, &names).await);
    out
}

fn job_line(job: &Job) -> String {
    let status = job.status.clone().unwrap_or_default();
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={} ({})",
                c.type_,
                c.status,
                c.reason.clone().unwrap_or_default()
            )
        })
        .collect();
    format!(
        "Job {} uid {} made {:?}{}: active {} failed {} succeeded {} {}",
        job.metadata.name.clone().unwrap_or_default(),
        job.metadata.uid.clone().unwrap_or_default(),
        job.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        if job.metadata.deletion_timestamp.is_some() {
            ", deleting"
        } else {
            ""
        },
        status.active.unwrap_or(0),
        status.failed.unwrap_or(0),
        status.succeeded.unwrap_or(0),
        conditions.join(" ")
    )
}

fn pod_lines(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let mut out = format!(
        "  pod {} on {:?}{}: {}\n",
        pod.metadata.name.clone().unwrap_or_default(),
        pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        if pod.metadata.deletion_timestamp.is_some() {
            ", deleting"
        } else {
            ""
        },
        status.phase.clone().unwrap_or_default()
    );
    for c in status
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.status != "True")
    {
        let _ = writeln!(
            out,
            "    {} {}: {} {}",
            c.type_,
            c.status,
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        );
    }
    let steps = status.init_container_statuses.iter().flatten();
    for c in steps.chain(status.container_statuses.iter().flatten()) {
        let _ = writeln!(out, "    step {}: {}", c.name, step_state(c));
    }
    out
}

fn step_state(c: &ContainerStatus) -> String {
    let Some(state) = c.state.as_ref() else {
        return "no state".into();
    };
    if let Some(w) = &state.waiting {
        format!(
            "waiting {} {}",
            w.reason.clone().unwrap_or_default(),
            w.message.clone().unwrap_or_default()
        )
    } else if state.running.is_some() {
        "running".into()
    } else if let Some(t) = &state.terminated {
        format!(
            "terminated {} (exit {})",
            t.reason.clone().unwrap_or_default(),
            t.exit_code
        )
    } else {
        "no state".into()
    }
}

/// The Events in the controller's namespace about the objects `names`, oldest first.
async fn events_about(client: &kube::Client, names: &[String]) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let mut items = match events.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => return format!("  cannot list Events: {e}\n"),
    };
    items.retain(|e| {
        e.regarding
            .as_ref()
            .and_then(|r| r.name.as_ref())
            .is_some_and(|n| names.contains(n))
    });
    items.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    let mut out = String::new();
    for e in items {
        let _ = writeln!(
            out,
            "  event {} {}: {} {}",
            e.regarding.and_then(|r| r.name).unwrap_or_default(),
            e.type_.unwrap_or_default(),
            e.reason.unwrap_or_default(),
            e.note.unwrap_or_default()
        );
    }
    out
}
