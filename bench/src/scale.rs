//! Item 4: N MachineOSConfigs and pools in the real API server, built by a no-op builder image
//! (real pods on the real kubelet, no buildah), then a leader restart and its resync.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};

use crate::cluster::{self, BENCH_LABEL, NAMESPACE};
use crate::stats::{self, AuditCounts};

pub const CONTROLLER_USER: &str = "system:serviceaccount:strata-system:strata-controller";

pub struct ScaleResult {
    pub configs: usize,
    /// MachineOSConfigs in the cluster at the restart (the bench's and any others').
    pub total_configs: usize,
    pub all_pinned_seconds: f64,
    pub build_phase_cpu_seconds: f64,
    pub rss_after_builds_mib: f64,
    pub build_phase_reconciles: f64,
    pub build_phase_p50: Option<f64>,
    pub build_phase_p99: Option<f64>,
    pub takeover_seconds: f64,
    pub settle_seconds: f64,
    pub resync_reconciles: f64,
    pub resync_cpu_seconds: f64,
    pub rss_after_resync_mib: f64,
    pub resync_p50: Option<f64>,
    pub resync_p99: Option<f64>,
    pub audit: AuditCounts,
    pub audit_window_seconds: f64,
}

fn name(i: usize) -> String {
    format!("bench-s{i:04}")
}

async fn pinned_count(client: &kube::Client, image: &str) -> Result<usize> {
    let configs = cluster::all(client, &cluster::configs_ar());
    let list = configs
        .list(&ListParams::default().labels(&format!("{BENCH_LABEL}=scale")))
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|c| c.data["status"]["currentImagePullSpec"] == image)
        .count())
}

struct Sample {
    cpu: f64,
    rss_mib: f64,
    reconciles: f64,
    histogram: Vec<(f64, f64)>,
}

async fn sample(ip: &str) -> Result<Sample> {
    let text = cluster::metrics(ip).await?;
    let get = |n: &str| stats::metric(&text, n).unwrap_or(0.0);
    Ok(Sample {
        cpu: get("strata_process_cpu_seconds"),
        rss_mib: get("strata_process_resident_memory_bytes") / 1024.0 / 1024.0,
        reconciles: get("strata_reconcile_duration_seconds_count"),
        histogram: stats::histogram(&text, "strata_reconcile_duration_seconds"),
    })
}

/// Polls the reconcile count until it has not moved for `quiet`; returns the last sample.
async fn wait_quiet(ip: &str, quiet: Duration, limit: Duration) -> Result<(Sample, Instant)> {
    let deadline = Instant::now() + limit;
    let mut last = sample(ip).await?;
    let mut moved = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = sample(ip).await?;
        if now.reconciles != last.reconciles {
            moved = Instant::now();
        }
        last = now;
        if moved.elapsed() >= quiet || Instant::now() > deadline {
            return Ok((last, moved));
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: &kube::Client,
    root: &Path,
    audit_log: &Path,
    registry: &str,
    image: &str,
    noop_builder: &str,
    count: usize,
    batch: usize,
) -> Result<ScaleResult> {
    eprintln!("bench scale: deploying the controller with the no-op builder {noop_builder}");
    cluster::deploy(root, Some(noop_builder)).await?;
    let (leader_pod, leader_ip) = cluster::wait_for_leader(client, None).await?;
    let push_spec = format!("{registry}/bench/scale:latest");

    eprintln!("bench scale: {count} pools");
    futures::stream::iter((0..count).map(|i| {
        let client = client.clone();
        async move { cluster::apply_pool(&client, &name(i), "scale").await }
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await?;

    let before = sample(&leader_ip).await?;
    let started = Instant::now();
    for first in (0..count).step_by(batch.max(1)) {
        let last = (first + batch).min(count);
        futures::stream::iter((first..last).map(|i| {
            let client = client.clone();
            let push_spec = push_spec.clone();
            async move {
                let fragment = format!("RUN echo 'pool {i}' > /etc/strata-bench\n");
                cluster::apply_config(&client, &name(i), "scale", &push_spec, &fragment).await
            }
        }))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let pinned = pinned_count(client, image).await?;
            if pinned >= last {
                eprintln!(
                    "bench scale: {pinned}/{count} pinned after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            if Instant::now() > deadline {
                bail!("scale: only {pinned}/{last} pools pinned after 900 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let all_pinned_seconds = started.elapsed().as_secs_f64();
    let (after_builds, _) = wait_quiet(
        &leader_ip,
        Duration::from_secs(10),
        Duration::from_secs(180),
    )
    .await?;
    let build_hist = stats::histogram_delta(&after_builds.histogram, &before.histogram);

    // Restart: delete the leader pod; the standby takes over and reconciles everything once.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let standby = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=strata-controller"))
        .await?
        .items
        .into_iter()
        .find(|p| {
            p.metadata.name.as_deref() != Some(leader_pod.as_str())
                && p.metadata.deletion_timestamp.is_none()
        })
        .context("no standby replica")?;
    let standby_ip = standby
        .status
        .and_then(|s| s.pod_ip)
        .context("standby without IP")?;
    let standby_before = sample(&standby_ip).await?;
    let total_configs = cluster::all(client, &cluster::configs_ar())
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let audit_offset = std::fs::metadata(audit_log).map(|m| m.len()).unwrap_or(0);
    let window_start = jiff::Timestamp::now();
    eprintln!("bench scale: deleting the leader {leader_pod}");
    let deleted = Instant::now();
    pods.delete(&leader_pod, &DeleteParams::default()).await?;
    let (new_leader, new_ip) = cluster::wait_for_leader(client, Some(&leader_pod)).await?;
    let takeover_seconds = deleted.elapsed().as_secs_f64();
    let settle_deadline = Instant::now() + Duration::from_secs(600);
    let settled = loop {
        let s = sample(&new_ip).await?;
        if s.reconciles >= total_configs as f64 {
            break Instant::now();
        }
        if Instant::now() > settle_deadline {
            bail!(
                "scale: {new_leader} reconciled {} of {total_configs} in 600 s",
                s.reconciles
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (after_resync, last_move) =
        wait_quiet(&new_ip, Duration::from_secs(10), Duration::from_secs(180)).await?;
    let window_end = jiff::Timestamp::now();
    let audit_text = read_from(audit_log, audit_offset)?;
    let audit = AuditCounts::from_log(
        &audit_text,
        CONTROLLER_USER,
        &stats::audit_timestamp(window_start),
        &stats::audit_timestamp(window_end),
        &["strata-controller", "machine-config-osimageurl"],
    );
    let resync_hist = stats::histogram_delta(&after_resync.histogram, &standby_before.histogram);
    let _ = last_move;
    Ok(ScaleResult {
        configs: count,
        total_configs,
        all_pinned_seconds,
        build_phase_cpu_seconds: after_builds.cpu - before.cpu,
        rss_after_builds_mib: after_builds.rss_mib,
        build_phase_reconciles: after_builds.reconciles - before.reconciles,
        build_phase_p50: stats::quantile(&build_hist, 0.5),
        build_phase_p99: stats::quantile(&build_hist, 0.99),
        takeover_seconds,
        settle_seconds: (settled - deleted).as_secs_f64(),
        resync_reconciles: after_resync.reconciles - standby_before.reconciles,
        resync_cpu_seconds: after_resync.cpu - standby_before.cpu,
        rss_after_resync_mib: after_resync.rss_mib,
        resync_p50: stats::quantile(&resync_hist, 0.5),
        resync_p99: stats::quantile(&resync_hist, 0.99),
        audit,
        audit_window_seconds: (window_end - window_start)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0),
    })
}

fn read_from(path: &Path, offset: u64) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("opening the audit log {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
