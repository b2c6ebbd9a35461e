//! What the scale run reads and waits for: a controller replica's /metrics, the Lease, a pod's
//! IP, the pinned configs, the controller replicas' IPs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use strata_crds::MachineOSConfig;
use strata_e2e::Cluster;
use strata_e2e::deployed::{NAMESPACE, controller_pods, lease, scrape};

use crate::stats;

/// A replica's process and reconcile figures at one moment.
#[derive(Debug, Clone, Default)]
pub(super) struct Sample {
    pub(super) cpu: f64,
    pub(super) rss_mib: f64,
    pub(super) reconciles: f64,
    pub(super) histogram: Vec<(f64, f64)>,
    /// `strata_reconcile_queue_wait_seconds`' buckets.
    pub(super) queue_wait: Vec<(f64, f64)>,
}

pub(super) async fn sample(ip: &str) -> Result<Sample> {
    let text = scrape(ip).await?;
    let get = |n: &str| stats::metric(&text, n);
    Ok(Sample {
        cpu: get("process_cpu_seconds_total")
            .or_else(|| get("process_cpu_seconds"))
            .unwrap_or(0.0),
        rss_mib: get("process_resident_memory_bytes").unwrap_or(0.0) / 1024.0 / 1024.0,
        reconciles: get("strata_reconcile_duration_seconds_count").unwrap_or(0.0),
        histogram: stats::histogram(&text, "strata_reconcile_duration_seconds"),
        queue_wait: stats::histogram(&text, "strata_reconcile_queue_wait_seconds"),
    })
}

/// Polls the reconcile count until it has not moved for `quiet`; returns the last sample and
/// when the count last rose.
pub(super) async fn wait_quiet(
    ip: &str,
    quiet: Duration,
    limit: Duration,
) -> Result<(Sample, jiff::Timestamp)> {
    let deadline = Instant::now() + limit;
    let mut last = sample(ip).await?;
    let mut moved = Instant::now();
    let mut moved_at = jiff::Timestamp::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sample(ip).await?;
        if now.reconciles != last.reconciles {
            moved = Instant::now();
            moved_at = jiff::Timestamp::now();
        }
        last = now;
        if moved.elapsed() >= quiet || Instant::now() > deadline {
            return Ok((last, moved_at));
        }
    }
}

/// The bench's scale configs whose current image is in the scale run's repository.
pub(super) async fn pinned_count(client: &kube::Client, registry: &str) -> Result<usize> {
    let prefix = format!("{registry}/bench/scale@");
    Ok(Api::<MachineOSConfig>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("bench-s"))
        })
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.current_image_pull_spec.as_deref())
                .is_some_and(|i| i.starts_with(&prefix))
        })
        .count())
}

/// Waits for the Lease to name a holder other than `old`; returns it and its `acquireTime`.
pub(super) async fn new_lease_holder(
    client: &kube::Client,
    old: &str,
    timeout: Duration,
) -> Result<(String, jiff::Timestamp)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(spec) = lease(client).await?
            && let Some(holder) = spec.holder_identity
            && holder != old
            && let Some(acquired) = spec.acquire_time
        {
            return Ok((holder, acquired.0));
        }
        if Instant::now() > deadline {
            bail!(
                "scale: no other replica took the Lease within {timeout:?} of the leader's deletion"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The IP of pod `name` once it has one (ready or not).
pub(super) async fn pod_ip(client: &kube::Client, name: &str, timeout: Duration) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(ip) = pods
            .get_opt(name)
            .await?
            .and_then(|p| p.status)
            .and_then(|s| s.pod_ip)
        {
            return Ok(ip);
        }
        if Instant::now() > deadline {
            bail!("scale: pod {name} had no IP within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The resident memory of pod `name`'s (first) container process, split as the kernel counts
/// it: (anonymous, file-backed — the executable's pages, mostly), in MiB.
pub(super) async fn process_memory(
    cluster: &Cluster,
    client: &kube::Client,
    name: &str,
) -> Result<(f64, f64)> {
    let pod = Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .get(name)
        .await?;
    let id = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.container_id)
        .with_context(|| format!("pod {name} has no container ID"))?;
    let pid = crate::lifecycle::container_status(cluster, &id)?.pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status of pod {name}"))?;
    let kib = |key: &str| -> Result<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .with_context(|| format!("/proc/{pid}/status has no {key}"))
    };
    Ok((kib("RssAnon:")? / 1024.0, kib("RssFile:")? / 1024.0))
}

/// The IPs of the controller's pods now.
pub(super) async fn controller_ips(client: &kube::Client) -> Result<HashSet<String>> {
    Ok(controller_pods(client)
        .await?
        .into_iter()
        .map(|(_, ip)| ip)
        .collect())
}
