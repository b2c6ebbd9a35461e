//! "The MCO's way", for comparison: one fresh pod per build running what the Machine Config
//! Operator's build pod runs (its `buildah-build.sh`): `buildah bud --storage-driver vfs` (the base
//! pulled by bud itself, no layer cache, no `--layers`), then `buildah push`. Same builder image,
//! node, security context, NetworkPolicy and registry as Strata's pods; the Containerfile is the
//! one Strata rendered. Not a Strata object: the controller does not see it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use strata_crds::contract::{install, labels};
use strata_e2e::Cluster;
use strata_e2e::deployed::NAMESPACE;
use strata_e2e::measure::pod_usage::{ContainerUsage, Sampler, pod_volumes_dir};
use strata_e2e::measure::registry_log::{AccessLog, Counts};

use crate::build::Base;
use crate::host;
use crate::objects::MANAGER;
use crate::watch::{Seen, Watch, watch};

const CONFIGMAP: &str = "bench-mco-way-containerfile";

/// What the MCO's build pod runs (buildah-build.sh, without its `--log-level=DEBUG`, retries and
/// credentials: the local registry needs none), with millisecond stamps for the message.
const SCRIPT: &str = r#"set -eu
now() { date +%s%3N; }
start=$(now)
mkdir -p /tmp/context
buildah --storage-driver vfs bud --tls-verify=false --isolation chroot --format oci \
  --file /etc/bench-mco/Containerfile --tag "$IMAGE" /tmp/context
built=$(now)
buildah --storage-driver vfs push --tls-verify=false --digestfile /tmp/digest "$IMAGE" "docker://$IMAGE"
pushed=$(now)
printf '{"digest":"%s","startMs":%s,"builtMs":%s,"pushedMs":%s}\n' "$(cat /tmp/digest)" "$start" "$built" "$pushed" > /dev/termination-log
"#;

/// One build the MCO's way.
#[derive(Debug, Clone, Default)]
pub struct McoRun {
    /// The pod's create request sent → its container seen terminated.
    pub create_to_done: f64,
    /// `buildah bud` (pull included) and `buildah push`, by the pod's own clock.
    pub bud_seconds: f64,
    pub push_seconds: f64,
    pub usage: ContainerUsage,
    pub peak_disk_bytes: u64,
    pub base_bytes_pulled: u64,
    pub registry: Counts,
    /// Why the run was stopped before it ended (the disk guard).
    pub aborted: Option<String>,
}

pub struct McoArgs<'a> {
    pub cluster: &'a Cluster,
    pub client: &'a kube::Client,
    pub builder_image: &'a str,
    pub base: &'a Base,
    pub containerfile: &'a str,
    pub image: &'a str,
    /// The build is stopped (and says so) when the node's free disk falls below this.
    pub min_free_bytes: u64,
    pub log: &'a mut AccessLog,
}

/// Runs one MCO's-way build.
pub async fn run(a: McoArgs<'_>) -> Result<McoRun> {
    let McoArgs {
        cluster,
        client,
        builder_image,
        base,
        containerfile,
        image,
        min_free_bytes,
        log,
    } = a;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE},
        "data": {"Containerfile": containerfile},
    });
    cms.patch(
        CONFIGMAP,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    let name = format!(
        "bench-mco-way-{}",
        jiff::Timestamp::now().as_second().rem_euclid(1_000_000)
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut w = watch(
        pods.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .await?;
    let pod = pod(&name, builder_image, image)?;
    log.read_new()?;
    let t0 = Instant::now();
    let created = pods.create(&PostParams::default(), &pod).await?;
    let uid = created.uid().unwrap_or_default();
    let volumes = pod_volumes_dir(cluster, &uid).join("kubernetes.io~empty-dir");
    let sampler = Sampler::start(&uid, vec![volumes.clone()]);
    let guard = Guard {
        kubelet_dir: cluster.dir.join("kubelet"),
        min_free_bytes,
    };
    let (mut result, message, pod_ip) = follow(&mut w, t0, sampler, guard).await?;
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
    if result.aborted.is_none() {
        let m: serde_json::Value = serde_json::from_str(message.trim())
            .with_context(|| format!("the MCO's-way message {message:?}"))?;
        let ms = |k: &str| m[k].as_f64().unwrap_or(0.0);
        result.bud_seconds = (ms("builtMs") - ms("startMs")) / 1000.0;
        result.push_seconds = (ms("pushedMs") - ms("builtMs")) / 1000.0;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests = log.read_new()?;
    let mine: Vec<_> = requests.iter().filter(|r| r.client == pod_ip).collect();
    result.base_bytes_pulled = base.bytes_pulled(&mine);
    result.registry = Counts::of(mine.iter().copied());
    // Wait for the pod (and its emptyDirs) to be gone before anything else runs.
    let gone = Instant::now() + Duration::from_secs(300);
    while pods.get_opt(&name).await?.is_some() && Instant::now() < gone {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = cms.delete(CONFIGMAP, &DeleteParams::default()).await;
    Ok(result)
}

/// The build pod `name`: the builder image running [`SCRIPT`] with the MCO's build pod's
/// settings, its storage and temporary files on emptyDirs.
fn pod(name: &str, builder_image: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "labels": {labels::COMPONENT: labels::BUILDER, "strata.dev/bench": "mco-way"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": install::BUILDER_SERVICE_ACCOUNT,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "strata/builder.json"}},
            "nodeSelector": {"kubernetes.io/arch": "amd64"},
            "containers": [{
                "name": "build",
                "image": builder_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", SCRIPT],
                "env": [
                    {"name": "IMAGE", "value": image},
                    {"name": "BUILDAH_ISOLATION", "value": "chroot"},
                    {"name": "TMPDIR", "value": "/var/tmp/build"},
                ],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "privileged": false, "allowPrivilegeEscalation": false, "runAsUser": 0,
                    "capabilities": {"drop": ["ALL"], "add": ["SETFCAP", "SETGID", "SETUID"]},
                },
                "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "4Gi"}},
                "volumeMounts": [
                    {"name": "containerfile", "mountPath": "/etc/bench-mco", "readOnly": true},
                    {"name": "storage", "mountPath": "/var/lib/containers/storage"},
                    {"name": "tmp", "mountPath": "/var/tmp/build"},
                ],
            }],
            "volumes": [
                {"name": "containerfile", "configMap": {"name": CONFIGMAP}},
                {"name": "storage", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
            ],
        }
    }))?)
}

/// The disk guard: the build is stopped when the node's free disk (where the kubelet keeps the
/// pod's volumes) falls below `min_free_bytes`.
struct Guard {
    kubelet_dir: PathBuf,
    min_free_bytes: u64,
}

/// Follows the pod until its container ends, the disk guard stops it or 90 minutes pass; then
/// stops `sampler`. Returns the run so far (time, usage, why stopped), the container's message
/// and the pod's IP.
async fn follow(
    w: &mut Watch<Pod>,
    t0: Instant,
    sampler: Sampler,
    guard: Guard,
) -> Result<(McoRun, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(90 * 60);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut result = McoRun::default();
    let mut pod_ip = String::new();
    let message = loop {
        tokio::select! {
            seen = w.rx.recv() => {
                let Seen { at, object } = seen.context("the pod watch ended")?;
                if let Some(ip) = object.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                    pod_ip = ip;
                }
                let t = object.status.as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref()?.terminated.clone());
                if let Some(t) = t {
                    result.create_to_done = (at - t0).as_secs_f64();
                    if t.exit_code != 0 {
                        let _ = sampler.stop().await;
                        bail!("the MCO's-way build failed (exit {}): {}", t.exit_code, t.message.unwrap_or_default());
                    }
                    break t.message.unwrap_or_default();
                }
            }
            _ = tick.tick() => {
                let free = host::free_bytes(&guard.kubelet_dir).await.unwrap_or(u64::MAX);
                if free < guard.min_free_bytes {
                    result.aborted = Some(format!(
                        "stopped after {:.0} s: the node's free disk fell to {:.1} GiB (guard {:.1} GiB)",
                        t0.elapsed().as_secs_f64(), free as f64 / GIB, guard.min_free_bytes as f64 / GIB));
                    break String::new();
                }
                if Instant::now() > deadline {
                    result.aborted = Some("not done within 90 minutes".into());
                    break String::new();
                }
            }
        }
    };
    let usage = sampler.stop().await;
    result.usage = usage
        .containers
        .values()
        .max_by(|a, b| a.seen_seconds.total_cmp(&b.seen_seconds))
        .cloned()
        .unwrap_or_default();
    result.peak_disk_bytes = usage.peak_disk_bytes;
    Ok((result, message, pod_ip))
}

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
