//! Controller core at scale: N pools and MachineOSConfigs in the real API server, built by the
//! no-op builder (real Jobs and pods on the real kubelet, no buildah: noop.rs), then a leader
//! change and the new leader's resync.

mod probe;
mod resync;

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use strata_e2e::Cluster;
use strata_e2e::deployed::apply_config;
use strata_e2e::measure::deploy::{DeployOptions, Leader, deploy, wait_for_leader};
use strata_e2e::measure::registry_log::{AccessLog, Counts};

use crate::objects;
use crate::stats::{self, AuditCounts};
use probe::{Sample, controller_ips, pinned_count, sample, wait_quiet};
use resync::Resync;

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
    /// Time configs waited for their reconcile while the builds ran (p99) and how many waits
    /// were counted.
    pub build_phase_queue_p99: Option<f64>,
    pub build_phase_queue_waits: f64,
    pub build_phase_api: AuditCounts,
    pub build_phase_registry: Counts,
    /// The leader's RSS once the builds settled.
    pub rss_after_builds_mib: f64,
    /// Of it, (anonymous, file-backed) MiB, as /proc/<pid>/status counts them.
    pub rss_split_after_builds_mib: Option<(f64, f64)>,
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
    /// The settled leader's CPU while nothing changes, in millicores.
    pub idle_millicores: f64,
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

/// The controller with the no-op builder, `count` pools and configs built in batches, then the
/// leader change and the new leader's resync.
pub async fn run(a: ScaleArgs<'_>) -> Result<ScaleResult> {
    let leader = deploy_with_noop_builder(&a).await?;
    objects::push_secret(a.client).await?;
    let mut logs = Logs {
        audit: a.cluster.dir.join("logs/audit.log"),
        registry: AccessLog::of(a.cluster),
    };
    eprintln!("bench scale: {} pools", a.count);
    futures::stream::iter(
        (0..a.count).map(|i| async move { objects::apply_pool_nowait(a.client, &name(i)).await }),
    )
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await?;
    let mut builds = build_phase(&a, &leader.ip, &mut logs).await?;
    builds.memory = Some(probe::process_memory(a.cluster, a.client, &leader.pod).await?);
    let resync = resync::leader_change(a.client, &leader.pod, &mut logs).await?;
    Ok(result(a.count, builds, resync))
}

async fn deploy_with_noop_builder(a: &ScaleArgs<'_>) -> Result<Leader> {
    eprintln!(
        "bench scale: deploying the controller with the no-op builder {}",
        a.noop_builder
    );
    deploy(
        a.cluster,
        &DeployOptions {
            strata_bin: Some(a.strata_bin.to_path_buf()),
            builder_image_override: Some(a.noop_builder.to_string()),
            controller_args: a.controller_args.clone(),
            ..DeployOptions::default()
        },
    )
    .await?;
    wait_for_leader(a.client, None, Duration::from_secs(180)).await
}

/// The logs the controller's requests are counted in: the API server's audit log (a file read
/// from an offset) and the registry's access log.
struct Logs {
    audit: PathBuf,
    registry: AccessLog,
}

impl Logs {
    /// The controller's API requests received in `[from, to]`, in the audit log from `offset`.
    fn controller_api(
        &self,
        offset: u64,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    ) -> Result<AuditCounts> {
        Ok(AuditCounts::from_log(
            &read_from(&self.audit, offset)?,
            CONTROLLER_USER,
            &stats::audit_timestamp(from),
            &stats::audit_timestamp(to),
            &["strata-controller", "machine-config-osimageurl"],
        ))
    }

    /// The registry requests from `ips` since the access log was last read.
    fn registry_from(&mut self, ips: &HashSet<String>) -> Result<Counts> {
        Ok(Counts::of(
            self.registry
                .read_new()?
                .iter()
                .filter(|r| ips.contains(&r.client)),
        ))
    }
}

/// The leader's figures before and after the builds and the controller's requests meanwhile.
struct BuildPhase {
    all_pinned_seconds: f64,
    before: Sample,
    after: Sample,
    api: AuditCounts,
    registry: Counts,
    /// The leader's process memory after the builds: (anonymous, file-backed) MiB.
    memory: Option<(f64, f64)>,
}

/// Applies the configs in batches, each batch waited for until pinned, then waits for the
/// leader to go quiet.
async fn build_phase(a: &ScaleArgs<'_>, leader_ip: &str, logs: &mut Logs) -> Result<BuildPhase> {
    let push_spec = format!("{}/bench/scale:latest", a.cluster.registry);
    let before = sample(leader_ip).await?;
    let audit_offset = file_len(&logs.audit);
    let build_start = jiff::Timestamp::now();
    let started = Instant::now();
    for first in (0..a.count).step_by(a.batch.max(1)) {
        let last = (first + a.batch).min(a.count);
        apply_configs(a, first..last, &push_spec).await?;
        wait_pinned(a, last, started).await?;
    }
    let all_pinned_seconds = started.elapsed().as_secs_f64();
    let (after, _) =
        wait_quiet(leader_ip, Duration::from_secs(15), Duration::from_secs(300)).await?;
    let build_end = jiff::Timestamp::now();
    let registry = logs.registry_from(&controller_ips(a.client).await?)?;
    let api = logs.controller_api(audit_offset, build_start, build_end)?;
    // The positive control of the resync's zero writes: the same counter over the builds, which
    // write every config's status, must see them.
    anyhow::ensure!(
        api.writes_excluding_leases() > 0,
        "scale: the audit log shows no write by the controller while {} configs built: the \
         resync's write count would read 0 without measuring anything",
        a.count
    );
    // Likewise the queue wait: every config was made due by its creation.
    anyhow::ensure!(
        stats::histogram_delta(&after.queue_wait, &before.queue_wait)
            .last()
            .is_some_and(|(_, n)| *n > 0.0),
        "scale: no reconcile queue wait was counted while {} configs built",
        a.count
    );
    Ok(BuildPhase {
        all_pinned_seconds,
        before,
        after,
        api,
        registry,
        memory: None,
    })
}

/// The MachineOSConfigs of pools `configs`, 16 at a time.
async fn apply_configs(a: &ScaleArgs<'_>, configs: Range<usize>, push_spec: &str) -> Result<()> {
    let (client, cluster) = (a.client, a.cluster);
    futures::stream::iter(configs.map(|i| async move {
        let fragment = format!("RUN echo 'pool {i}' > /etc/strata-bench\n");
        let config = objects::config(&name(i), push_spec, &cluster.os_base_image, &fragment)?;
        apply_config(client, &config).await
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(())
}

/// Waits (at most 900 s) until `last` configs are pinned.
async fn wait_pinned(a: &ScaleArgs<'_>, last: usize, started: Instant) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let pinned = pinned_count(a.client, &a.cluster.registry).await?;
        if pinned >= last {
            eprintln!(
                "bench scale: {pinned}/{} pinned after {:.0} s",
                a.count,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("scale: only {pinned}/{last} pools pinned after 900 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn result(configs: usize, b: BuildPhase, r: Resync) -> ScaleResult {
    let build_hist = stats::histogram_delta(&b.after.histogram, &b.before.histogram);
    let resync_hist = stats::histogram_delta(&r.after.histogram, &r.baseline.histogram);
    let queue_hist = stats::histogram_delta(&b.after.queue_wait, &b.before.queue_wait);
    ScaleResult {
        configs,
        total_configs: r.total_configs,
        all_pinned_seconds: b.all_pinned_seconds,
        build_phase_cpu_seconds: b.after.cpu - b.before.cpu,
        build_phase_reconciles: b.after.reconciles - b.before.reconciles,
        build_phase_p50: stats::quantile(&build_hist, 0.5),
        build_phase_p99: stats::quantile(&build_hist, 0.99),
        build_phase_slowest_bound: stats::slowest_bound(&build_hist),
        build_phase_queue_p99: stats::quantile(&queue_hist, 0.99),
        build_phase_queue_waits: queue_hist.last().map_or(0.0, |(_, n)| *n),
        build_phase_api: b.api,
        build_phase_registry: b.registry,
        rss_after_builds_mib: b.after.rss_mib,
        rss_split_after_builds_mib: b.memory,
        takeover_seconds: r.acquired.duration_since(r.deleted).as_secs_f64(),
        takeover_by: r.takeover_by,
        settle_seconds: r.last_rise.duration_since(r.acquired).as_secs_f64(),
        all_reconciled_seconds: r.all_reconciled.duration_since(r.acquired).as_secs_f64(),
        settle_upper_bound: r.settle_upper_bound,
        resync_reconciles: r.after.reconciles - r.baseline.reconciles,
        resync_cpu_seconds: r.after.cpu - r.baseline.cpu,
        rss_after_resync_mib: r.after.rss_mib,
        idle_millicores: r.idle_millicores,
        resync_p50: stats::quantile(&resync_hist, 0.5),
        resync_p99: stats::quantile(&resync_hist, 0.99),
        resync_slowest_bound: stats::slowest_bound(&resync_hist),
        audit: r.audit,
        audit_window_seconds: r.audit_window_seconds,
        resync_registry: r.registry,
    }
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
