//! Where a builder pod's time goes besides its steps' work: the pod's sandbox, each container's
//! creation and start, the kubelet noticing a container's exit before it creates the next, and
//! the pod's status reaching the API. The pod's status has second-resolution times only, so the
//! times come from the node's containerd: its CRI plugin keeps each container's created, started
//! and finished times in nanoseconds (`<root>/io.containerd.grpc.v1.cri/containers/<id>/status`)
//! and its containers (the sandbox's among them) carry a creation time; read while the pod
//! exists, when its last container has ended.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use strata_crds::contract::builder_pod;
use strata_e2e::Cluster;

/// One container of the pod, times in Unix nanoseconds.
#[derive(Debug, Clone)]
pub struct ContainerTimes {
    pub name: String,
    pub created_ns: i64,
    pub started_ns: i64,
    pub finished_ns: i64,
}

/// A builder pod's times: when the bench first saw it, its sandbox's creation, its containers in
/// the order they ran, when the bench saw the last one ended (all in Unix nanoseconds).
#[derive(Debug, Clone)]
pub struct PodTimes {
    pub seen_ns: i64,
    pub sandbox_created_ns: i64,
    pub containers: Vec<ContainerTimes>,
    pub done_seen_ns: i64,
}

/// A builder phase (`status.phases`) in Unix milliseconds.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The wall-clock time of `at` (an `Instant` of this process) in Unix nanoseconds.
pub fn wall_ns(at: Instant) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let wall = now.saturating_sub(at.elapsed());
    i64::try_from(wall.as_nanos()).unwrap_or(i64::MAX)
}

/// The CRI plugin's record of one container.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CriStatus {
    /// The container's process on the node (0 once it ended).
    #[serde(default)]
    pub pid: u32,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
}

fn containerd_root(cluster: &Cluster) -> PathBuf {
    cluster.dir.join("containerd")
}

/// The node's containerd record of the container `id` (a pod status's `containerd://<id>`).
pub fn container_status(cluster: &Cluster, id: &str) -> Result<CriStatus> {
    cri_status(
        &containerd_root(cluster),
        id.strip_prefix("containerd://").unwrap_or(id),
    )
}

fn cri_status(root: &Path, id: &str) -> Result<CriStatus> {
    let path = root
        .join("root/io.containerd.grpc.v1.cri/containers")
        .join(id)
        .join("status");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading containerd's record {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The creation time of the pod's sandbox, from containerd's container list.
fn sandbox_created_ns(root: &Path, pod_uid: &str) -> Result<i64> {
    let address = root.join("containerd.sock");
    let ctr = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new("ctr")
            .arg("--address")
            .arg(&address)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .context("running ctr")?;
        if !out.status.success() {
            bail!(
                "ctr {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let filter = format!(
        "labels.\"io.kubernetes.pod.uid\"=={pod_uid},labels.\"io.cri-containerd.kind\"==sandbox"
    );
    let ids = ctr(&["containers", "ls", "-q", &filter])?;
    let id = ids
        .split_whitespace()
        .next()
        .with_context(|| format!("containerd has no sandbox of pod {pod_uid}"))?;
    let info: serde_json::Value = serde_json::from_str(&ctr(&["containers", "info", id])?)?;
    let created = info["CreatedAt"]
        .as_str()
        .context("the sandbox's info has no CreatedAt")?;
    let at: jiff::Timestamp = created
        .parse()
        .with_context(|| format!("the sandbox's CreatedAt {created:?}"))?;
    i64::try_from(at.as_nanosecond()).context("the sandbox's CreatedAt is out of range")
}

/// Reads the times of `pod` (all its step containers ended) from the node's containerd.
pub fn read(cluster: &Cluster, pod: &Pod, seen: Instant, done_seen: Instant) -> Result<PodTimes> {
    let root = containerd_root(cluster);
    let uid = pod.metadata.uid.as_deref().context("pod without a UID")?;
    let status = pod.status.as_ref().context("pod without a status")?;
    let mut containers = Vec::new();
    for c in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter(|c| builder_pod::STEPS.contains(&c.name.as_str()))
    {
        let id = c
            .container_id
            .as_deref()
            .and_then(|id| id.strip_prefix("containerd://"))
            .with_context(|| format!("container {} has no containerd ID", c.name))?;
        let s = cri_status(&root, id)?;
        if s.finished_at == 0 {
            bail!("container {} has not ended", c.name);
        }
        containers.push(ContainerTimes {
            name: c.name.clone(),
            created_ns: s.created_at,
            started_ns: s.started_at,
            finished_ns: s.finished_at,
        });
    }
    containers.sort_by_key(|c| c.created_ns);
    if containers.is_empty() {
        bail!("the pod has no step container");
    }
    Ok(PodTimes {
        seen_ns: wall_ns(seen),
        sandbox_created_ns: sandbox_created_ns(&root, uid)?,
        containers,
        done_seen_ns: wall_ns(done_seen),
    })
}

/// The container a builder phase runs in.
fn container_of(phase: &str) -> &str {
    match phase {
        "lint" => builder_pod::BUILD,
        other => other,
    }
}

/// The pod's time split: (what, seconds), in the order it passed. Steps' work is the phases;
/// the rest is the pod's lifecycle.
pub fn split(times: &PodTimes, phases: &[Phase]) -> Vec<(String, f64)> {
    let secs = |from_ns: i64, to_ns: i64| (to_ns - from_ns) as f64 / 1e9;
    let ms = |m: i64| m * 1_000_000;
    let mut out = vec![(
        "pod seen → sandbox created (scheduling, kubelet)".to_string(),
        secs(times.seen_ns, times.sandbox_created_ns),
    )];
    let mut previous: Option<&ContainerTimes> = None;
    for c in &times.containers {
        let (from, what) = match previous {
            None => (
                times.sandbox_created_ns,
                format!("sandbox → {} created (pod network, volumes)", c.name),
            ),
            Some(p) => (
                p.finished_ns,
                format!("{} ended → {} created (kubelet noticing)", p.name, c.name),
            ),
        };
        out.push((what, secs(from, c.created_ns)));
        out.push((
            format!("{} created → started", c.name),
            secs(c.created_ns, c.started_ns),
        ));
        let own: Vec<&Phase> = phases
            .iter()
            .filter(|p| container_of(&p.name) == c.name)
            .collect();
        if let (Some(first), Some(last)) = (own.first(), own.last()) {
            out.push((
                format!("{} started → its work", c.name),
                secs(c.started_ns, ms(first.start_ms)),
            ));
            for p in &own {
                out.push((
                    format!("phase {} (work)", p.name),
                    secs(ms(p.start_ms), ms(p.end_ms)),
                ));
            }
            out.push((
                format!("{} work → ended", c.name),
                secs(ms(last.end_ms), c.finished_ns),
            ));
        }
        previous = Some(c);
    }
    if let Some(last) = times.containers.last() {
        out.push((
            format!("{} ended → seen ended through the API", last.name),
            secs(last.finished_ns, times.done_seen_ns),
        ));
    }
    out
}

/// Of the pod's span (seen → its end seen), the seconds not spent in a phase.
pub fn lifecycle_seconds(times: &PodTimes, phases: &[Phase]) -> f64 {
    let work: i64 = phases.iter().map(|p| p.end_ms - p.start_ms).sum();
    (times.done_seen_ns - times.seen_ns) as f64 / 1e9 - work as f64 / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, created: i64, started: i64, finished: i64) -> ContainerTimes {
        ContainerTimes {
            name: name.into(),
            created_ns: created * 1_000_000,
            started_ns: started * 1_000_000,
            finished_ns: finished * 1_000_000,
        }
    }

    fn phase(name: &str, start_ms: i64, end_ms: i64) -> Phase {
        Phase {
            name: name.into(),
            start_ms,
            end_ms,
        }
    }

    /// The rebuild measured by hand on this cluster (2026-12-08), in ms.
    fn rebuild() -> (PodTimes, Vec<Phase>) {
        let times = PodTimes {
            seen_ns: 117_923 * 1_000_000,
            sandbox_created_ns: 118_200 * 1_000_000,
            containers: vec![
                container("pull", 118_387, 118_458, 118_717),
                container("build", 119_172, 119_254, 120_175),
                container("push", 121_178, 121_272, 121_657),
            ],
            done_seen_ns: 122_100 * 1_000_000,
        };
        let phases = vec![
            phase("pull", 118_464, 118_714),
            phase("build", 119_256, 119_918),
            phase("lint", 119_918, 120_123),
            phase("push", 121_276, 121_654),
        ];
        (times, phases)
    }

    #[test]
    fn the_split_walks_the_pod_in_order_and_adds_up_to_its_span() {
        let (times, phases) = rebuild();
        let split = split(&times, &phases);
        let names: Vec<&str> = split.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(names[0], "pod seen → sandbox created (scheduling, kubelet)");
        assert_eq!(names[1], "sandbox → pull created (pod network, volumes)");
        assert!(names.contains(&"pull ended → build created (kubelet noticing)"));
        assert!(names.contains(&"build ended → push created (kubelet noticing)"));
        assert_eq!(
            names.last(),
            Some(&"push ended → seen ended through the API")
        );
        let get = |w: &str| split.iter().find(|(n, _)| n == w).map(|(_, s)| *s);
        assert_eq!(
            get("build ended → push created (kubelet noticing)"),
            Some(1.003)
        );
        assert_eq!(get("phase lint (work)"), Some(0.205));
        // Every interval is counted once: the parts sum to the span.
        let total: f64 = split.iter().map(|(_, s)| s).sum();
        let span = (times.done_seen_ns - times.seen_ns) as f64 / 1e9;
        assert!((total - span).abs() < 1e-9, "{total} vs {span}");
        let lifecycle = lifecycle_seconds(&times, &phases);
        assert!((lifecycle - (span - 1.495)).abs() < 1e-9, "{lifecycle}");
    }

    #[test]
    fn a_phase_of_the_build_container_is_counted_there() {
        assert_eq!(container_of("lint"), "build");
        assert_eq!(container_of("boot"), "boot");
    }
}
