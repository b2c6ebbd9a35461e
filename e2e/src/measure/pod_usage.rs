//! What a pod's containers use while they run, sampled from the node: memory and CPU from each
//! container's cgroup (cgroup v1 as on the local cluster's machine, or v2), and the disk used under
//! chosen paths (`du`), by default the kubelet's directories of the pod's volumes.
//!
//! Memory figures per container: the peak of its resident anonymous memory (`rss`), the peak of its
//! working set as the kubelet counts it for eviction and limits (usage minus inactive file pages),
//! and the kernel's own peak of usage, page cache included (`memory.max_usage_in_bytes` on v1,
//! `memory.peak` on v2). A container's cgroup goes when it exits, so figures are those of the
//! last sample (every 250 ms) before it went.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Cluster;

/// Peaks of one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerUsage {
    pub peak_rss_bytes: u64,
    pub peak_working_set_bytes: u64,
    /// The kernel's peak of the cgroup's usage, page cache included.
    pub max_usage_bytes: u64,
    /// CPU time used (user + system), as of the last sample.
    pub cpu_seconds: f64,
    /// The largest disk sample taken while this container ran (0: none taken).
    pub peak_disk_bytes: u64,
    /// Seconds between the first and the last sample that saw it running.
    pub seen_seconds: f64,
}

/// Everything sampled for one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodUsage {
    /// By container ID (as in a pod status' `containerID`, without the `containerd://` prefix);
    /// the sandbox's pause container is among them.
    pub containers: BTreeMap<String, ContainerUsage>,
    pub peak_disk_bytes: u64,
    pub last_disk_bytes: u64,
    pub disk_samples: usize,
    /// Whether the pod's cgroup was found at all (not on this node, or gone too soon: false).
    pub cgroup_found: bool,
}

impl PodUsage {
    /// The usage of the container with this status `containerID` (`containerd://<id>` or `<id>`).
    pub fn container(&self, status_id: &str) -> Option<&ContainerUsage> {
        let id = status_id.rsplit("://").next().unwrap_or(status_id);
        self.containers.get(id)
    }
}

/// `<cluster dir>/kubelet/pods/<uid>/volumes`: the pod's emptyDirs, Secrets and ConfigMaps as the
/// kubelet keeps them (a persistent volume's data lives where its volume source says).
pub fn pod_volumes_dir(cluster: &Cluster, pod_uid: &str) -> PathBuf {
    cluster
        .dir
        .join("kubelet/pods")
        .join(pod_uid)
        .join("volumes")
}

/// Bytes used on disk under `paths` (`du -s -B1 -c`, hard links counted once; missing paths
/// count 0).
pub async fn disk_bytes(paths: &[PathBuf]) -> u64 {
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return 0;
    }
    let out = tokio::process::Command::new("du")
        .args(["-s", "-B1", "-c"])
        .args(&existing)
        .stderr(std::process::Stdio::null())
        .output()
        .await;
    // du exits 1 when a file vanished while it walked (a step deleting its temporary files):
    // its total is still what it saw.
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples one pod until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<PodUsage>,
}

impl Sampler {
    /// Starts sampling the pod `pod_uid`: its containers' cgroups every 250 ms, and the disk used
    /// under `disk_paths` as often as `du` allows (at least 2 s apart, and at most a third of the
    /// time spent in `du`, so the walk does not slow the build much).
    pub fn start(pod_uid: &str, disk_paths: Vec<PathBuf>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sample(Some(pod_uid.to_string()), disk_paths, stop.clone()));
        Self { stop, task }
    }

    /// Samples only the disk used under `disk_paths` (a build on the host, say), as
    /// [`Sampler::start`] does.
    pub fn disk_only(disk_paths: Vec<PathBuf>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sample(None, disk_paths, stop.clone()));
        Self { stop, task }
    }

    /// Stops sampling (after one last disk sample) and returns the figures.
    pub async fn stop(self) -> PodUsage {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

async fn sample(uid: Option<String>, disk_paths: Vec<PathBuf>, stop: Arc<AtomicBool>) -> PodUsage {
    let mut usage = PodUsage::default();
    let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
    let mut running: Vec<String> = Vec::new();
    let mut pod_dir: Option<PodCgroup> = None;
    let mut du: Option<(Instant, tokio::task::JoinHandle<u64>)> = None;
    let mut next_du = Instant::now();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if pod_dir.is_none()
            && let Some(uid) = uid.as_deref().filter(|u| !u.is_empty())
        {
            pod_dir = PodCgroup::find(uid);
        }
        if let Some(pod) = &pod_dir {
            usage.cgroup_found = true;
            running.clear();
            for (id, stats) in pod.containers() {
                let c = usage.containers.entry(id.clone()).or_default();
                let first = *first_seen.entry(id.clone()).or_insert_with(Instant::now);
                c.seen_seconds = first.elapsed().as_secs_f64();
                c.peak_rss_bytes = c.peak_rss_bytes.max(stats.rss);
                c.peak_working_set_bytes = c.peak_working_set_bytes.max(stats.working_set);
                c.max_usage_bytes = c.max_usage_bytes.max(stats.max_usage);
                if stats.cpu_seconds > 0.0 {
                    c.cpu_seconds = stats.cpu_seconds;
                }
                if stats.has_processes {
                    running.push(id);
                }
            }
        }
        if let Some((_, handle)) = &du
            && handle.is_finished()
            && let Some((started, handle)) = du.take()
        {
            let bytes = handle.await.unwrap_or(0);
            record_disk(&mut usage, &running, bytes);
            let took = started.elapsed();
            next_du = Instant::now() + (took * 2).max(Duration::from_secs(2));
        }
        if stopping {
            if let Some((_, handle)) = du.take() {
                let bytes = handle.await.unwrap_or(0);
                record_disk(&mut usage, &running, bytes);
            }
            if !disk_paths.is_empty() {
                let bytes = disk_bytes(&disk_paths).await;
                record_disk(&mut usage, &[], bytes);
            }
            return usage;
        }
        if du.is_none() && !disk_paths.is_empty() && Instant::now() >= next_du {
            let paths = disk_paths.clone();
            du = Some((
                Instant::now(),
                tokio::spawn(async move { disk_bytes(&paths).await }),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn record_disk(usage: &mut PodUsage, running: &[String], bytes: u64) {
    usage.disk_samples += 1;
    usage.last_disk_bytes = bytes;
    usage.peak_disk_bytes = usage.peak_disk_bytes.max(bytes);
    for id in running {
        if let Some(c) = usage.containers.get_mut(id) {
            c.peak_disk_bytes = c.peak_disk_bytes.max(bytes);
        }
    }
}

/// One sample of a container's cgroup.
#[derive(Debug, Default)]
struct Stats {
    rss: u64,
    working_set: u64,
    max_usage: u64,
    cpu_seconds: f64,
    has_processes: bool,
}

/// The pod's cgroup directories: memory (and, on v1, cpuacct).
struct PodCgroup {
    memory: PathBuf,
    cpuacct: Option<PathBuf>,
    v2: bool,
}

const V1_MEMORY: &str = "/sys/fs/cgroup/memory";
const V1_CPUACCT: &str = "/sys/fs/cgroup/cpuacct";
const V2_ROOT: &str = "/sys/fs/cgroup";

impl PodCgroup {
    /// The pod's directory under `kubepods` (cgroupfs: `pod<uid>`; systemd:
    /// `kubepods-…-pod<uid with underscores>.slice`), at most three levels down.
    fn find(uid: &str) -> Option<Self> {
        let v1 = Path::new(V1_MEMORY).join("kubepods").is_dir();
        let root = if v1 { V1_MEMORY } else { V2_ROOT };
        let names = [format!("pod{uid}"), uid.replace('-', "_")];
        let memory = search(Path::new(root), &names, 4)?;
        let cpuacct = v1
            .then(|| {
                memory
                    .strip_prefix(V1_MEMORY)
                    .ok()
                    .map(|rel| Path::new(V1_CPUACCT).join(rel))
            })
            .flatten();
        Some(Self {
            memory,
            cpuacct,
            v2: !v1,
        })
    }

    /// Container ID → its stats, for every container cgroup under the pod's.
    fn containers(&self) -> Vec<(String, Stats)> {
        let Ok(entries) = std::fs::read_dir(&self.memory) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = container_id(&name) else {
                continue;
            };
            let stats = if self.v2 {
                v2_stats(&path)
            } else {
                v1_stats(&path, self.cpuacct.as_ref().map(|c| c.join(&name)))
            };
            if let Some(stats) = stats {
                out.push((id, stats));
            }
        }
        out
    }
}

fn search(dir: &Path, names: &[String], depth: u32) -> Option<PathBuf> {
    if depth == 0 {
        return None;
    }
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if names
            .iter()
            .any(|n| name == *n || name.contains(&format!("pod{n}")))
        {
            return Some(path);
        }
        if name.starts_with("kubepods") || name == "burstable" || name == "besteffort" {
            subdirs.push(path);
        }
    }
    subdirs
        .into_iter()
        .find_map(|d| search(&d, names, depth - 1))
}

/// The 64-hex container ID in a cgroup directory's name (`<id>` or `cri-containerd-<id>.scope`).
fn container_id(name: &str) -> Option<String> {
    let trimmed = name.trim_end_matches(".scope");
    let id = trimmed.rsplit('-').next().unwrap_or(trimmed);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn has_processes(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
}

fn v1_stats(dir: &Path, cpuacct: Option<PathBuf>) -> Option<Stats> {
    let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    let inactive = stat_value(&stat, "total_inactive_file").unwrap_or(0);
    Some(Stats {
        rss: stat_value(&stat, "total_rss").unwrap_or(0),
        working_set: usage.saturating_sub(inactive),
        max_usage: read_u64(&dir.join("memory.max_usage_in_bytes")).unwrap_or(usage),
        cpu_seconds: cpuacct
            .and_then(|c| read_u64(&c.join("cpuacct.usage")))
            .map_or(0.0, |ns| ns as f64 / 1e9),
        has_processes: has_processes(dir),
    })
}

fn v2_stats(dir: &Path) -> Option<Stats> {
    let current = read_u64(&dir.join("memory.current"))?;
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    let cpu = std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
    Some(Stats {
        rss: stat_value(&stat, "anon").unwrap_or(0),
        working_set: current.saturating_sub(stat_value(&stat, "inactive_file").unwrap_or(0)),
        max_usage: read_u64(&dir.join("memory.peak")).unwrap_or(current),
        cpu_seconds: stat_value(&cpu, "usage_usec").map_or(0.0, |us| us as f64 / 1e6),
        has_processes: has_processes(dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_cgroup_names() {
        let id = "a".repeat(64);
        assert_eq!(container_id(&id), Some(id.clone()));
        assert_eq!(
            container_id(&format!("cri-containerd-{id}.scope")),
            Some(id.clone())
        );
        assert_eq!(container_id("memory.stat"), None);
        assert_eq!(container_id("podabc"), None);
    }

    #[test]
    fn memory_stat_values() {
        let stat = "cache 10\nrss 5\ntotal_cache 100\ntotal_rss 50\ntotal_inactive_file 30\n";
        assert_eq!(stat_value(stat, "total_rss"), Some(50));
        assert_eq!(stat_value(stat, "rss"), Some(5));
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(30));
        assert_eq!(stat_value(stat, "missing"), None);
    }

    #[test]
    fn usage_by_status_container_id() {
        let mut usage = PodUsage::default();
        usage
            .containers
            .insert("abc".into(), ContainerUsage::default());
        assert!(usage.container("containerd://abc").is_some());
        assert!(usage.container("abc").is_some());
        assert!(usage.container("containerd://def").is_none());
    }
}
