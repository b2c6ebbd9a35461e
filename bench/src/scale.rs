//! Controller core at scale: N pools and MachineOSConfigs in the real API server, built by the
//! no-op builder (real Jobs and pods on the real kubelet, no buildah: noop.rs), then a leader
//! change and the new leader's resync.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use strata_crds::MachineOSConfig;
use strata_e2e::Cluster;
use strata_e2e::deployed::{NAMESPACE, apply_config, controller_pods, lease, scrape};
use strata_e2e::measure::deploy::{DeployOptions, Leader, deploy, wait_for_leader};
use strata_e2e::measure::registry_log::{AccessLog, Counts};

use crate::objects;
use crate::stats::{self, AuditCounts};

pub const CONTROLLER_USER: &str = "system:serviceaccount:strata-system:strata-controller";

#[derive(Debug, Clone, Default)]
pub struct ScaleResult {
    pub configs: usize,
    /// MachineOSConfigs in the cluster at the leader change (the bench's and any others').
    pub total_configs: usize,
    pub all_pinned_seconds: f64,
    pub build_phase_cpu_seconds: f64,
    pub build_phase_reconciles: f64,
    pub build_phase_p50: Option<f64>,
    pub build_phase_p99: Option<f64>,
    /// The smallest bucket bound holding every reconcile of the build phase (None: some fell
    /// above the last finite bucket).
    pub build_phase_slowest_bound: Option<f64>,
    pub build_phase_api: AuditCounts,
    pub build_phase_registry: Counts,
    /// The leader's RSS once the builds settled.
    pub rss_after_builds_mib: f64,
    /// Leader pod deleted → another replica takes the Lease (its `acquireTime`).
    pub takeover_seconds: f64,
    /// Which replica took over: "the standby" or "the replacement pod".
    pub takeover_by: &'static str,
    /// The resync had ended when the new leader's /metrics first answered: the settle figures
    /// are upper bounds.
    pub settle_upper_bound: bool,
    /// The new leader takes the Lease → its last reconcile of the resync (the reconcile count's
    /// last rise).
    pub settle_seconds: f64,
    /// The new leader takes the Lease → its reconcile count reached the number of configs.
    pub all_reconciled_seconds: f64,
    pub resync_reconciles: f64,
    pub resync_cpu_seconds: f64,
    pub rss_after_resync_mib: f64,
    pub resync_p50: Option<f64>,
    pub resync_p99: Option<f64>,
    pub resync_slowest_bound: Option<f64>,
    pub audit: AuditCounts,
    pub audit_window_seconds: f64,
    pub resync_registry: Counts,
}

fn name(i: usize) -> String {
    format!("bench-s{i:04}")
}

async fn pinned_count(client: &kube::Client, registry: &str) -> Result<usize> {
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

#[derive(Debug, Clone, Default)]
struct Sample {
    cpu: f64,
    rss_mib: f64,
    reconciles: f64,
    histogram: Vec<(f64, f64)>,
}

async fn sample(ip: &str) -> Result<Sample> {
    let text = scrape(ip).await?;
    let get = |n: &str| stats::metric(&text, n);
    Ok(Sample {
        cpu: get("process_cpu_seconds_total")
            .or_else(|| get("process_cpu_seconds"))
            .unwrap_or(0.0),
        rss_mib: get("process_resident_memory_bytes").unwrap_or(0.0) / 1024.0 / 1024.0,
        reconciles: get("strata_reconcile_duration_seconds_count").unwrap_or(0.0),
        histogram: stats::histogram(&text, "strata_reconcile_duration_seconds"),
    })
}

/// Polls the reconcile count until it has not moved for `quiet`; returns the last sample and
/// when the count last rose.
async fn wait_quiet(
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

/// Waits for the Lease to name a holder other than `old`; returns it and its `acquireTime`.
async fn new_lease_holder(
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
async fn pod_ip(client: &kube::Client, name: &str, timeout: Duration) -> Result<String> {
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

pub struct ScaleArgs<'a> {
    pub cluster: &'a Cluster,
    pub client: &'a kube::Client,
    pub strata_bin: &'a Path,
    pub noop_builder: &'a str,
    pub count: usize,
    pub batch: usize,
    /// Extra controller flags.
    pub controller_args: Vec<String>,
}

pub async fn run(a: ScaleArgs<'_>) -> Result<ScaleResult> {
    let ScaleArgs {
        cluster,
        client,
        strata_bin,
        noop_builder,
        count,
        batch,
        controller_args,
    } = a;
    eprintln!("bench scale: deploying the controller with the no-op builder {noop_builder}");
    deploy(
        cluster,
        &DeployOptions {
            strata_bin: Some(strata_bin.to_path_buf()),
            builder_image_override: Some(noop_builder.to_string()),
            controller_args,
            ..DeployOptions::default()
        },
    )
    .await?;
    let Leader {
        pod: leader_pod,
        ip: leader_ip,
    } = wait_for_leader(client, None, Duration::from_secs(180)).await?;
    objects::push_secret(client).await?;
    let push_spec = format!("{}/bench/scale:latest", cluster.registry);
    let audit_log = cluster.dir.join("logs/audit.log");
    let mut registry_log = AccessLog::of(cluster);

    eprintln!("bench scale: {count} pools");
    futures::stream::iter(
        (0..count).map(|i| async move { objects::apply_pool_nowait(client, &name(i)).await }),
    )
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await?;

    let before = sample(&leader_ip).await?;
    let audit_offset = file_len(&audit_log);
    let build_start = jiff::Timestamp::now();
    let started = Instant::now();
    for first in (0..count).step_by(batch.max(1)) {
        let last = (first + batch).min(count);
        futures::stream::iter((first..last).map(|i| {
            let push_spec = push_spec.clone();
            async move {
                let fragment = format!("RUN echo 'pool {i}' > /etc/strata-bench\n");
                let config =
                    objects::config(&name(i), &push_spec, &cluster.os_base_image, &fragment)?;
                apply_config(client, &config).await
            }
        }))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let pinned = pinned_count(client, &cluster.registry).await?;
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
        Duration::from_secs(15),
        Duration::from_secs(300),
    )
    .await?;
    let build_end = jiff::Timestamp::now();
    let build_hist = stats::histogram_delta(&after_builds.histogram, &before.histogram);
    let controller_ips: HashSet<String> = controller_pods(client)
        .await?
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    let build_phase_registry = Counts::of(
        registry_log
            .read_new()?
            .iter()
            .filter(|r| controller_ips.contains(&r.client)),
    );
    let build_phase_api = AuditCounts::from_log(
        &read_from(&audit_log, audit_offset)?,
        CONTROLLER_USER,
        &stats::audit_timestamp(build_start),
        &stats::audit_timestamp(build_end),
        &["strata-controller", "machine-config-osimageurl"],
    );

    // The leader change: delete the leader pod; another replica takes over and reconciles
    // everything. Which one is a race: the standby sleeps until the released Lease's expiry
    // (kube-lease-manager's watcher), while the Deployment's replacement pod tries at start-up,
    // so the new leader is whoever the Lease names next.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let (standby_pod, standby_ip) = controller_pods(client)
        .await?
        .into_iter()
        .find(|(pod, _)| *pod != leader_pod)
        .context("no standby replica")?;
    let standby_before = sample(&standby_ip).await?;
    let total_configs = Api::<MachineOSConfig>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let audit_offset = file_len(&audit_log);
    registry_log.read_new()?;
    let window_start = jiff::Timestamp::now();
    eprintln!("bench scale: deleting the leader {leader_pod}");
    let deleted = jiff::Timestamp::now();
    pods.delete(&leader_pod, &DeleteParams::default()).await?;
    // Times come from the Lease (when the new leader took it) and this process's clock: one
    // machine, one clock.
    let (new_leader_pod, acquired) =
        new_lease_holder(client, &leader_pod, Duration::from_secs(120)).await?;
    let by_standby = new_leader_pod == standby_pod;
    let takeover_by = if by_standby {
        "the standby"
    } else {
        "the replacement pod"
    };
    eprintln!("bench scale: {new_leader_pod} leads ({takeover_by})");
    let (new_leader_ip, baseline) = if by_standby {
        (standby_ip.clone(), standby_before)
    } else {
        // A fresh process: its counters start at zero. It serves /metrics before it is Ready.
        (
            pod_ip(client, &new_leader_pod, Duration::from_secs(60)).await?,
            Sample::default(),
        )
    };
    let settle_deadline = Instant::now() + Duration::from_secs(600);
    let mut last_count = baseline.reconciles;
    let mut first_answer = None;
    let mut last_rise = acquired;
    let all_reconciled = loop {
        let Ok(s) = sample(&new_leader_ip).await else {
            if Instant::now() > settle_deadline {
                bail!("scale: the new leader's /metrics did not answer within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let now = jiff::Timestamp::now();
        first_answer.get_or_insert(now);
        if s.reconciles != last_count {
            last_count = s.reconciles;
            last_rise = now;
        }
        if s.reconciles - baseline.reconciles >= total_configs as f64 {
            break now;
        }
        if Instant::now() > settle_deadline {
            bail!(
                "scale: the new leader reconciled {} of {total_configs} in 600 s",
                s.reconciles - baseline.reconciles
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The resync may have ended before the new process's /metrics first answered: then the
    // figures are upper bounds.
    let settle_upper_bound = first_answer == Some(all_reconciled);
    let (after_resync, quiet_rise) = wait_quiet(
        &new_leader_ip,
        Duration::from_secs(15),
        Duration::from_secs(300),
    )
    .await?;
    if after_resync.reconciles != last_count {
        last_rise = quiet_rise;
    }
    let window_end = jiff::Timestamp::now();
    let audit = AuditCounts::from_log(
        &read_from(&audit_log, audit_offset)?,
        CONTROLLER_USER,
        &stats::audit_timestamp(window_start),
        &stats::audit_timestamp(window_end),
        &["strata-controller", "machine-config-osimageurl"],
    );
    let ips: HashSet<String> = controller_pods(client)
        .await?
        .into_iter()
        .map(|(_, ip)| ip)
        .chain([standby_ip, new_leader_ip])
        .collect();
    let resync_registry = Counts::of(
        registry_log
            .read_new()?
            .iter()
            .filter(|r| ips.contains(&r.client)),
    );
    let resync_hist = stats::histogram_delta(&after_resync.histogram, &baseline.histogram);
    Ok(ScaleResult {
        configs: count,
        total_configs,
        all_pinned_seconds,
        build_phase_cpu_seconds: after_builds.cpu - before.cpu,
        build_phase_reconciles: after_builds.reconciles - before.reconciles,
        build_phase_p50: stats::quantile(&build_hist, 0.5),
        build_phase_p99: stats::quantile(&build_hist, 0.99),
        build_phase_slowest_bound: stats::slowest_bound(&build_hist),
        build_phase_api,
        build_phase_registry,
        rss_after_builds_mib: after_builds.rss_mib,
        takeover_seconds: acquired.duration_since(deleted).as_secs_f64(),
        takeover_by,
        settle_seconds: last_rise.duration_since(acquired).as_secs_f64(),
        all_reconciled_seconds: all_reconciled.duration_since(acquired).as_secs_f64(),
        settle_upper_bound,
        resync_reconciles: after_resync.reconciles - baseline.reconciles,
        resync_cpu_seconds: after_resync.cpu - baseline.cpu,
        rss_after_resync_mib: after_resync.rss_mib,
        resync_p50: stats::quantile(&resync_hist, 0.5),
        resync_p99: stats::quantile(&resync_hist, 0.99),
        resync_slowest_bound: stats::slowest_bound(&resync_hist),
        audit,
        audit_window_seconds: (window_end - window_start)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0),
        resync_registry,
    })
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
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
