//! The leader change: the leader pod deleted, another replica takes the Lease and reconciles
//! every config; how long, at what cost.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use strata_crds::MachineOSConfig;
use strata_e2e::deployed::{NAMESPACE, controller_pods};

use super::probe::{Sample, controller_ips, new_lease_holder, pod_ip, sample, wait_quiet};
use super::{Logs, file_len};
use crate::stats::AuditCounts;
use strata_e2e::measure::registry_log::Counts;

/// What the leader change and the resync after it took.
pub(super) struct Resync {
    pub(super) total_configs: usize,
    /// The leader pod's delete request sent.
    pub(super) deleted: jiff::Timestamp,
    /// The Lease's `acquireTime` by the new leader.
    pub(super) acquired: jiff::Timestamp,
    pub(super) takeover_by: &'static str,
    /// The new leader's counters before the resync and once it went quiet.
    pub(super) baseline: Sample,
    pub(super) after: Sample,
    pub(super) all_reconciled: jiff::Timestamp,
    pub(super) last_rise: jiff::Timestamp,
    pub(super) settle_upper_bound: bool,
    pub(super) audit: AuditCounts,
    pub(super) audit_window_seconds: f64,
    pub(super) registry: Counts,
    /// The new leader's CPU over [`IDLE_WINDOW`] after the resync, in millicores.
    pub(super) idle_millicores: f64,
}

/// How long the settled leader is watched idle.
const IDLE_WINDOW: Duration = Duration::from_secs(30);

/// The new leader, and its counters before the resync.
struct Takeover {
    deleted: jiff::Timestamp,
    acquired: jiff::Timestamp,
    by: &'static str,
    ip: String,
    baseline: Sample,
}

/// The new leader's resync, followed on its /metrics.
struct Settle {
    all_reconciled: jiff::Timestamp,
    last_rise: jiff::Timestamp,
    upper_bound: bool,
    after: Sample,
}

/// Deletes the leader pod `leader` and follows the new leader's resync; the controller's API and
/// registry requests from just before the deletion to the resync's end.
pub(super) async fn leader_change(
    client: &kube::Client,
    leader: &str,
    logs: &mut Logs,
) -> Result<Resync> {
    let (standby_pod, standby_ip) = controller_pods(client)
        .await?
        .into_iter()
        .find(|(pod, _)| *pod != leader)
        .context("no standby replica")?;
    let standby_before = sample(&standby_ip).await?;
    let total_configs = Api::<MachineOSConfig>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .len();
    let audit_offset = file_len(&logs.audit);
    logs.registry.read_new()?;
    let window_start = jiff::Timestamp::now();
    let standby = (standby_pod, standby_ip.clone(), standby_before);
    let takeover = take_over(client, leader, standby).await?;
    let settle = settle(&takeover, total_configs).await?;
    let window_end = jiff::Timestamp::now();
    let audit = logs.controller_api(audit_offset, window_start, window_end)?;
    let mut ips = controller_ips(client).await?;
    ips.extend([standby_ip, takeover.ip.clone()]);
    let registry = logs.registry_from(&ips)?;
    // Idle: nothing changes in the cluster; what the leader spends is its own upkeep (watches,
    // Lease renewals, timers).
    let idle_from = sample(&takeover.ip).await?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_to = sample(&takeover.ip).await?;
    let idle_millicores = (idle_to.cpu - idle_from.cpu) / IDLE_WINDOW.as_secs_f64() * 1000.0;
    Ok(Resync {
        idle_millicores,
        total_configs,
        deleted: takeover.deleted,
        acquired: takeover.acquired,
        takeover_by: takeover.by,
        baseline: takeover.baseline,
        after: settle.after,
        all_reconciled: settle.all_reconciled,
        last_rise: settle.last_rise,
        settle_upper_bound: settle.upper_bound,
        audit,
        audit_window_seconds: (window_end - window_start)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0),
        registry,
    })
}

/// Deletes the leader pod; another replica takes over and reconciles everything. Which one is a
/// race: the standby (`standby`: its pod, IP and counters) sleeps until the released Lease's
/// expiry (kube-lease-manager's watcher), while the Deployment's replacement pod tries at
/// start-up, so the new leader is whoever the Lease names next.
async fn take_over(
    client: &kube::Client,
    leader: &str,
    standby: (String, String, Sample),
) -> Result<Takeover> {
    let (standby_pod, standby_ip, standby_before) = standby;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    eprintln!("bench scale: deleting the leader {leader}");
    let deleted = jiff::Timestamp::now();
    pods.delete(leader, &DeleteParams::default()).await?;
    // Times come from the Lease (when the new leader took it) and this process's clock: one
    // machine, one clock.
    let (new_leader_pod, acquired) =
        new_lease_holder(client, leader, Duration::from_secs(120)).await?;
    let by_standby = new_leader_pod == standby_pod;
    let by = if by_standby {
        "the standby"
    } else {
        "the replacement pod"
    };
    eprintln!("bench scale: {new_leader_pod} leads ({by})");
    let (ip, baseline) = if by_standby {
        (standby_ip, standby_before)
    } else {
        // A fresh process: its counters start at zero. It serves /metrics before it is Ready.
        (
            pod_ip(client, &new_leader_pod, Duration::from_secs(60)).await?,
            Sample::default(),
        )
    };
    Ok(Takeover {
        deleted,
        acquired,
        by,
        ip,
        baseline,
    })
}

/// Polls the new leader's reconcile count until it has reconciled `total_configs`, then until it
/// goes quiet; the last rise of the count is the resync's end.
async fn settle(t: &Takeover, total_configs: usize) -> Result<Settle> {
    let settle_deadline = Instant::now() + Duration::from_secs(600);
    let mut last_count = t.baseline.reconciles;
    let mut first_answer = None;
    let mut last_rise = t.acquired;
    let all_reconciled = loop {
        let Ok(s) = sample(&t.ip).await else {
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
        if s.reconciles - t.baseline.reconciles >= total_configs as f64 {
            break now;
        }
        if Instant::now() > settle_deadline {
            bail!(
                "scale: the new leader reconciled {} of {total_configs} in 600 s",
                s.reconciles - t.baseline.reconciles
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The resync may have ended before the new process's /metrics first answered: then the
    // figures are upper bounds.
    let upper_bound = first_answer == Some(all_reconciled);
    let (after, quiet_rise) =
        wait_quiet(&t.ip, Duration::from_secs(15), Duration::from_secs(300)).await?;
    if after.reconciles != last_count {
        last_rise = quiet_rise;
    }
    Ok(Settle {
        all_reconciled,
        last_rise,
        upper_bound,
        after,
    })
}
