//! Items 1, 2 and 5 (storage): the controller's own latency around a real build in the cluster,
//! the full Strata path against the same build run directly on the host, and buildah's storage
//! footprint per build.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::watcher;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::cluster::{self, NAMESPACE, Seen};
use crate::host;

pub const CONFIG: &str = "bench-overhead";

/// One run through the cluster: timestamps taken when the bench's watches delivered each event.
#[derive(Debug)]
pub struct ClusterRun {
    /// MachineOSConfig applied (request sent) → builder pod ADDED.
    pub apply_to_pod: f64,
    /// Builder container terminated → MachineConfig with the new osImageURL.
    pub terminated_to_pinned: f64,
    /// Builder container terminated → its Job `Complete` (Kubernetes' Job controller).
    pub terminated_to_job_complete: f64,
    /// Applied → MachineConfig pinned: the full Strata path.
    pub apply_to_pinned: f64,
    /// Builder pod ADDED → builder container terminated (the build in the pod).
    pub pod_to_terminated: f64,
    /// The builder's own figures from its termination message (buildah bud, buildah push).
    pub builder_build: f64,
    pub builder_push: f64,
    pub containerfile: String,
}

pub struct Watches {
    pods: UnboundedReceiver<Seen<Pod>>,
    mcs: UnboundedReceiver<Seen<DynamicObject>>,
    jobs: UnboundedReceiver<Seen<Job>>,
    known_pods: HashSet<String>,
}

impl Watches {
    pub async fn start(client: &kube::Client) -> Result<Self> {
        let label = format!("strata.dev/machine-os-config={CONFIG}");
        let pods = cluster::watch(
            Api::<Pod>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().labels(&label),
        )
        .await?;
        let mcs = cluster::watch(
            cluster::all(client, &cluster::machine_configs_ar()),
            watcher::Config::default().fields(&format!("metadata.name=zz-strata-2-{CONFIG}")),
        )
        .await?;
        let jobs = cluster::watch(
            Api::<Job>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().labels(&label),
        )
        .await?;
        Ok(Self {
            pods,
            mcs,
            jobs,
            known_pods: HashSet::new(),
        })
    }

    /// Forgets nothing: every pod seen so far is an old one.
    fn absorb(&mut self) {
        while let Ok(seen) = self.pods.try_recv() {
            self.known_pods
                .insert(seen.object.uid().unwrap_or_default());
        }
        while self.mcs.try_recv().is_ok() {}
        while self.jobs.try_recv().is_ok() {}
    }
}

fn builder_terminated(pod: &Pod) -> Option<(i32, Option<String>)> {
    let status = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "builder")?;
    let t = status.state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.message.clone()))
}

/// Applies the MachineOSConfig with a fragment unique to this run and follows it to the pinned
/// MachineConfig.
pub async fn cluster_run(
    client: &kube::Client,
    watches: &mut Watches,
    push_spec: &str,
    nonce: &str,
) -> Result<ClusterRun> {
    watches.absorb();
    let fragment = format!("RUN echo 'strata bench {nonce}' > /etc/strata-bench\n");
    let t0 = Instant::now();
    cluster::apply_config(client, CONFIG, "overhead", push_spec, &fragment).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut pod_added: Option<(Instant, String)> = None;
    let mut terminated: Option<Instant> = None;
    let mut message = serde_json::Value::Null;
    let mut digest: Option<String> = None;
    let mut mc_events: Vec<(Instant, String)> = Vec::new();
    let mut job_complete: Vec<(Instant, String)> = Vec::new();
    let pinned = loop {
        if let Some(d) = &digest
            && let Some((at, _)) = mc_events.iter().find(|(_, url)| url.ends_with(d.as_str()))
        {
            break *at;
        }
        tokio::select! {
            seen = watches.pods.recv() => {
                let seen = seen.context("pod watch ended")?;
                let uid = seen.object.uid().unwrap_or_default();
                if watches.known_pods.contains(&uid) {
                    continue;
                }
                if pod_added.is_none() {
                    pod_added = Some((seen.at, uid.clone()));
                }
                if pod_added.as_ref().is_some_and(|(_, u)| *u == uid)
                    && terminated.is_none()
                    && let Some((code, msg)) = builder_terminated(&seen.object)
                {
                    if code != 0 {
                        bail!("the builder failed (exit {code}): {}", msg.unwrap_or_default());
                    }
                    terminated = Some(seen.at);
                    message = serde_json::from_str(msg.as_deref().unwrap_or("{}").trim())?;
                    digest = message["digest"].as_str().map(String::from);
                }
            }
            seen = watches.jobs.recv() => {
                let seen = seen.context("Job watch ended")?;
                let complete = seen.object.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                    c.iter().any(|c| c.type_ == "Complete" && c.status == "True")
                });
                if complete {
                    job_complete.push((seen.at, seen.object.labels().get("strata.dev/machine-os-build").cloned().unwrap_or_default()));
                }
            }
            seen = watches.mcs.recv() => {
                let seen = seen.context("MachineConfig watch ended")?;
                let url = seen.object.data["spec"]["osImageURL"].as_str().unwrap_or_default().to_string();
                mc_events.push((seen.at, url));
            }
            _ = tokio::time::sleep_until(deadline) => bail!("run {nonce}: not pinned in 600 s"),
        }
    };
    let (added, uid) = pod_added.context("no builder pod")?;
    let terminated = terminated.context("no termination")?;
    // The rendered Containerfile of this build, for the same build on the host.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = pods
        .list(&ListParams::default().labels(&format!("strata.dev/machine-os-config={CONFIG}")))
        .await?
        .items
        .into_iter()
        .find(|p| p.uid().as_deref() == Some(uid.as_str()))
        .context("the builder pod is gone")?;
    let build = pod
        .labels()
        .get("strata.dev/machine-os-build")
        .cloned()
        .context("builder pod without build label")?;
    // The controller pins on the builder's exit; the Job controller marks the Job Complete
    // later. Wait for that too, for the reference figure.
    let complete = loop {
        if let Some((at, _)) = job_complete.iter().find(|(_, b)| *b == build) {
            break *at;
        }
        let seen = tokio::time::timeout(Duration::from_secs(60), watches.jobs.recv())
            .await
            .context("the build's Job was not seen Complete within 60 s")?
            .context("Job watch ended")?;
        let complete = seen
            .object
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            });
        if complete {
            job_complete.push((
                seen.at,
                seen.object
                    .labels()
                    .get("strata.dev/machine-os-build")
                    .cloned()
                    .unwrap_or_default(),
            ));
        }
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let containerfile = cms
        .list(&ListParams::default().labels(&format!("strata.dev/machine-os-build={build}")))
        .await?
        .items
        .into_iter()
        .find_map(|cm| cm.data?.get("Containerfile").cloned())
        .context("no Containerfile ConfigMap for the build")?;
    Ok(ClusterRun {
        apply_to_pod: (added - t0).as_secs_f64(),
        terminated_to_pinned: pinned.saturating_duration_since(terminated).as_secs_f64(),
        terminated_to_job_complete: complete.saturating_duration_since(terminated).as_secs_f64(),
        apply_to_pinned: (pinned - t0).as_secs_f64(),
        pod_to_terminated: (terminated - added).as_secs_f64(),
        builder_build: message["buildSeconds"].as_f64().unwrap_or(0.0),
        builder_push: message["pushSeconds"].as_f64().unwrap_or(0.0),
        containerfile,
    })
}

/// The same Containerfile (its run-specific line swapped for a host-specific one) built and
/// pushed on the host.
pub async fn host_run(
    containerfile: &str,
    cluster_nonce: &str,
    nonce: &str,
    registry: &str,
) -> Result<host::HostBuild> {
    let text = containerfile.replace(cluster_nonce, &format!("host-{nonce}"));
    let image = format!("{registry}/bench/limit:host-{nonce}");
    host::buildah_build_and_push("limit", &text, &image).await
}
