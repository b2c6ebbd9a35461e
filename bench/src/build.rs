//! Builds through the deployed controller, followed from outside as a user sees them: the
//! MachineOSConfig applied → the builder pod → each step's container ending → the MachineConfig
//! naming the pushed digest. Meanwhile the pod's containers are sampled on the node (memory and
//! CPU from their cgroups, disk from the kubelet's volume directories), and afterwards the
//! registry's access log says what the pod and the controller fetched.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::watcher;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use strata_crds::MachineOSBuild;
use strata_crds::contract::{TerminationMessage, builder_pod, labels};
use strata_e2e::Cluster;
use strata_e2e::deployed::{NAMESPACE, apply_config, controller_pods, machine_configs};
use strata_e2e::measure::pod_usage::{ContainerUsage, PodUsage, Sampler, pod_volumes_dir};
use strata_e2e::measure::registry_log::{AccessLog, Counts, Request};

use crate::lifecycle::{self, Phase, PodTimes};
use crate::objects;
use crate::watch::{Seen, Watch, watch};

/// The OS base image as its registry serves it.
#[derive(Debug, Clone)]
pub struct Base {
    pub image: String,
    /// Layer digests and compressed sizes, in order.
    pub layers: Vec<(String, u64)>,
    pub config_digest: String,
    pub config_bytes: u64,
}

impl Base {
    pub fn compressed_bytes(&self) -> u64 {
        self.layers.iter().map(|(_, s)| s).sum::<u64>() + self.config_bytes
    }

    /// This image's layers (digest, compressed size) that `before` does not have.
    pub fn new_layers(&self, before: &Base) -> Vec<&(String, u64)> {
        let old: HashSet<&str> = before.layers.iter().map(|(d, _)| d.as_str()).collect();
        self.layers
            .iter()
            .filter(|(d, _)| !old.contains(d.as_str()))
            .collect()
    }

    /// Compressed bytes of this image's layers that `before` does not have.
    pub fn new_layer_bytes(&self, before: &Base) -> u64 {
        self.new_layers(before).iter().map(|(_, s)| s).sum()
    }

    /// The compressed size of this image's blob `digest` (a layer or the config).
    pub fn blob_bytes(&self, digest: &str) -> Option<u64> {
        if digest == self.config_digest {
            return Some(self.config_bytes);
        }
        self.layers
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, s)| *s)
    }

    /// Bytes of the base's layers downloaded in `requests`.
    pub fn bytes_pulled(&self, requests: &[&Request]) -> u64 {
        let digests: HashSet<&str> = self.layers.iter().map(|(d, _)| d.as_str()).collect();
        requests
            .iter()
            .filter(|r| {
                r.is_blob_download() && r.blob_digest().is_some_and(|d| digests.contains(d))
            })
            .map(|r| r.bytes)
            .sum()
    }
}

/// The manifest of `image` (`host:port/repo@sha256:…`) in the plain-HTTP registry.
pub async fn base(image: &str, registry: &str) -> Result<Base> {
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.to_string()]),
        ..ClientConfig::default()
    });
    let reference: oci_client::Reference = image.parse()?;
    let (manifest, _) = client
        .pull_image_manifest(&reference, &RegistryAuth::Anonymous)
        .await
        .with_context(|| format!("reading the manifest of {image}"))?;
    Ok(Base {
        image: image.to_string(),
        layers: manifest
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size.max(0) as u64))
            .collect(),
        config_digest: manifest.config.digest.clone(),
        config_bytes: manifest.config.size.max(0) as u64,
    })
}

/// One builder step's container.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub usage: ContainerUsage,
    /// Its requests and limits as the pod spec gives them (`requests cpu=…, memory=…; limits …`).
    pub resources: String,
}

/// The requests and limits of each container of `pod`, by name.
fn resources(pod: &Pod) -> Vec<(String, String)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let list = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| {
        m.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.0))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| {
            let r = c.resources.as_ref();
            (
                c.name.clone(),
                format!(
                    "requests {}; limits {}",
                    list(r.and_then(|r| r.requests.as_ref())),
                    list(r.and_then(|r| r.limits.as_ref()))
                ),
            )
        })
        .collect()
}

/// One build through Strata.
#[derive(Debug, Clone)]
pub struct StrataRun {
    pub build: String,
    /// The apply request sent → the builder pod's first watch event.
    pub apply_to_pod: f64,
    /// The builder pod's first event → its push container seen terminated.
    pub pod_to_done: f64,
    /// The push container seen terminated → the MachineConfig naming the digest.
    pub done_to_pinned: f64,
    /// The apply request sent → the MachineConfig naming the digest: the whole path.
    pub apply_to_pinned: f64,
    /// The builder's own timings (MachineOSBuild `status.phases`): pull, build, lint, push.
    pub phases: Vec<(String, f64)>,
    /// The pod's time split between its steps' work and its lifecycle (`lifecycle::split`).
    pub lifecycle: Vec<(String, f64)>,
    /// Of the pod's span, the seconds outside its steps' work.
    pub lifecycle_seconds: f64,
    pub steps: Vec<Step>,
    /// The largest disk sample of the pod's volumes (and the cache claim, when used).
    pub peak_disk_bytes: u64,
    /// The built image, config and layers uncompressed (the builder's `sizeBytes`).
    pub image_size_bytes: u64,
    /// The pushed image's digest (the push step's message).
    pub digest: String,
    /// The blobs whose upload the pod completed (a blob mounted or already there is not one).
    pub uploaded: Vec<String>,
    /// The builder pod's requests to the registry (by its IP in the access log).
    pub pod_registry: Counts,
    /// Bytes of the base's layers the pod downloaded.
    pub base_bytes_pulled: u64,
    /// The controller replicas' registry requests during the build.
    pub controller_registry: Counts,
    /// The user agent of the pod's registry requests (buildah's version in the builder image).
    pub agent: Option<String>,
    pub containerfile: String,
}

impl StrataRun {
    pub fn phase(&self, name: &str) -> Option<f64> {
        self.phases.iter().find(|(p, _)| p == name).map(|(_, s)| *s)
    }

    pub fn step(&self, name: &str) -> Option<&ContainerUsage> {
        self.steps.iter().find(|s| s.name == name).map(|s| &s.usage)
    }
}

/// Runs builds of bench MachineOSConfigs and follows them.
pub struct Runner<'a> {
    pub cluster: &'a Cluster,
    pub client: kube::Client,
    pub base: &'a Base,
    pub log: AccessLog,
}

/// The longest a build on the CoreOS-sized base may take here.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

fn terminated(statuses: Option<&Vec<ContainerStatus>>, name: &str) -> Option<(i32, String)> {
    let status = statuses?.iter().find(|c| c.name == name)?;
    let t = status.state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.message.clone().unwrap_or_default()))
}

fn container_ids(pod: &Pod) -> Vec<(String, String)> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| Some((c.name.clone(), c.container_id.clone()?)))
        .collect()
}

/// What following one build saw, up to the MachineConfig naming its digest.
#[derive(Default)]
struct Followed {
    /// The builder pod's first event, and its UID.
    pod: Option<(Instant, String)>,
    /// Samples the pod's containers from its first event to its push step's end.
    sampler: Option<Sampler>,
    usage: Option<PodUsage>,
    last_pod: Option<Pod>,
    /// The push container seen terminated, and its message.
    done: Option<(Instant, TerminationMessage)>,
    /// The pod's containers' times from the node, read when the push container was seen ended.
    times: Option<PodTimes>,
    /// Each MachineConfig event: its `osImageURL`.
    mc_seen: Vec<(Instant, String)>,
}

impl Followed {
    /// When the MachineConfig first named the digest the push step reported.
    fn pinned(&self) -> Option<Instant> {
        let Some((_, TerminationMessage::Success { digest, .. })) = &self.done else {
            return None;
        };
        self.mc_seen
            .iter()
            .find(|(_, url)| url.ends_with(digest.as_str()))
            .map(|(at, _)| *at)
    }
}

impl Runner<'_> {
    /// Applies the MachineOSConfig `config` (pool of the same name) with `fragment`, pushing to
    /// `push_spec`, and follows its new build to the pinned MachineConfig.
    pub async fn run(
        &mut self,
        config: &str,
        push_spec: &str,
        fragment: &str,
    ) -> Result<StrataRun> {
        let mut pods: Watch<Pod> = watch(
            Api::namespaced(self.client.clone(), NAMESPACE),
            watcher::Config::default().labels(&format!("{}={config}", labels::CONFIG)),
        )
        .await?;
        let mut mcs: Watch<DynamicObject> = watch(
            machine_configs(&self.client),
            watcher::Config::default().fields(&format!("metadata.name=zz-strata-2-{config}")),
        )
        .await?;
        self.log.read_new()?;
        let object = objects::config(config, push_spec, &self.base.image, fragment)?;
        let t0 = Instant::now();
        apply_config(&self.client, &object).await?;
        let (followed, pinned) = self.follow(config, &mut pods, &mut mcs).await?;
        self.measured(config, t0, pinned, followed).await
    }

    /// Follows the build's pod and MachineConfig until the MachineConfig names the pushed
    /// digest; returns what was seen and when it was pinned.
    async fn follow(
        &self,
        config: &str,
        pods: &mut Watch<Pod>,
        mcs: &mut Watch<DynamicObject>,
    ) -> Result<(Followed, Instant)> {
        let deadline = tokio::time::Instant::now() + BUILD_TIMEOUT;
        let mut followed = Followed::default();
        loop {
            if let Some(at) = followed.pinned() {
                return Ok((followed, at));
            }
            tokio::select! {
                seen = pods.rx.recv() => {
                    let seen = seen.context("the pod watch ended")?;
                    if !pods.initial.contains(&seen.object.uid().unwrap_or_default()) {
                        self.on_pod(config, seen, &mut followed).await?;
                    }
                }
                seen = mcs.rx.recv() => {
                    let Seen { at, object } = seen.context("the MachineConfig watch ended")?;
                    let url = object.data["spec"]["osImageURL"].as_str().unwrap_or_default().to_string();
                    followed.mc_seen.push((at, url));
                }
                _ = tokio::time::sleep_until(deadline) => bail!("{config}: not pinned within {BUILD_TIMEOUT:?}"),
            }
        }
    }

    /// An event of the build's pod: sampling starts at the first; a failed step fails the run;
    /// the push step's end stops sampling and keeps its message.
    async fn on_pod(&self, config: &str, seen: Seen<Pod>, followed: &mut Followed) -> Result<()> {
        let Seen { at, object } = seen;
        let uid = object.uid().unwrap_or_default();
        match &followed.pod {
            None => {
                // The pod's emptyDirs, and the claim its image storage is on, if any.
                let mut disk =
                    vec![pod_volumes_dir(self.cluster, &uid).join("kubernetes.io~empty-dir")];
                disk.extend(crate::claim::dirs_of(&self.client, &object).await?);
                followed.sampler = Some(Sampler::start(&uid, disk));
                followed.pod = Some((at, uid.clone()));
            }
            Some((_, first)) if *first != uid => {
                bail!(
                    "{config}: a second builder pod {} started (the first failed and was retried)",
                    object.name_any()
                );
            }
            Some(_) => {}
        }
        let status = object.status.as_ref();
        for step in [builder_pod::PULL, builder_pod::BUILD] {
            if let Some((code, message)) = terminated(
                status.and_then(|s| s.init_container_statuses.as_ref()),
                step,
            ) && code != 0
            {
                bail!("{config}: the {step} step failed (exit {code}): {message}");
            }
        }
        if followed.done.is_none()
            && let Some((code, message)) = terminated(
                status.and_then(|s| s.container_statuses.as_ref()),
                builder_pod::PUSH,
            )
        {
            if code != 0 {
                bail!("{config}: the push step failed (exit {code}): {message}");
            }
            let parsed = TerminationMessage::parse(&message)
                .with_context(|| format!("{config}: push step message {message:?}"))?;
            followed.done = Some((at, parsed));
            let seen = followed.pod.as_ref().map_or(at, |(seen, _)| *seen);
            followed.times = Some(
                lifecycle::read(self.cluster, &object, seen, at)
                    .with_context(|| format!("{config}: the builder pod's times on the node"))?,
            );
            // The pod's volumes go with its Job once the controller pins: stop now.
            if let Some(s) = followed.sampler.take() {
                followed.usage = Some(s.stop().await);
            }
        }
        followed.last_pod = Some(object);
        Ok(())
    }

    /// The run's figures from what was followed, the build's status and Containerfile, and the
    /// registry's access log.
    async fn measured(
        &mut self,
        config: &str,
        t0: Instant,
        pinned: Instant,
        followed: Followed,
    ) -> Result<StrataRun> {
        let (pod_at, _) = followed.pod.context("no builder pod")?;
        let usage = followed.usage.unwrap_or_default();
        let (done_at, message) = followed.done.context("no termination message")?;
        let TerminationMessage::Success {
            size_bytes, digest, ..
        } = message
        else {
            bail!("{config}: the build failed");
        };
        let last_pod = followed.last_pod.context("no pod status")?;
        let build = last_pod
            .labels()
            .get(labels::BUILD)
            .cloned()
            .context("builder pod without its build label")?;
        let pod_ip = last_pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let declared = resources(&last_pod);
        let steps = container_ids(&last_pod)
            .into_iter()
            .filter(|(name, _)| builder_pod::STEPS.contains(&name.as_str()))
            .map(|(name, id)| Step {
                usage: usage.container(&id).cloned().unwrap_or_default(),
                resources: declared
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_default(),
                name,
            })
            .collect();
        let phase_times = self.phases(&build).await?;
        let times = followed.times.context("no pod times")?;
        let phases = phase_times
            .iter()
            .map(|p| (p.name.clone(), (p.end_ms - p.start_ms) as f64 / 1000.0))
            .collect();
        let containerfile = self.containerfile(&build).await?;
        let registry = self.registry(&pod_ip).await?;
        Ok(StrataRun {
            build,
            apply_to_pod: (pod_at - t0).as_secs_f64(),
            pod_to_done: done_at.saturating_duration_since(pod_at).as_secs_f64(),
            done_to_pinned: pinned.saturating_duration_since(done_at).as_secs_f64(),
            apply_to_pinned: (pinned - t0).as_secs_f64(),
            phases,
            lifecycle: lifecycle::split(&times, &phase_times),
            lifecycle_seconds: lifecycle::lifecycle_seconds(&times, &phase_times),
            steps,
            peak_disk_bytes: usage.peak_disk_bytes,
            image_size_bytes: size_bytes,
            digest,
            uploaded: registry.uploaded,
            pod_registry: registry.pod,
            base_bytes_pulled: registry.base_bytes_pulled,
            controller_registry: registry.controllers,
            agent: registry.agent,
            containerfile,
        })
    }

    /// The builder's own timings of `build` (its `status.phases`).
    async fn phases(&self, build: &str) -> Result<Vec<Phase>> {
        let built: MachineOSBuild = Api::<MachineOSBuild>::all(self.client.clone())
            .get(build)
            .await
            .with_context(|| format!("reading MachineOSBuild {build}"))?;
        Ok(built
            .status
            .map(|s| {
                s.phases
                    .into_iter()
                    .map(|p| Phase {
                        name: p.phase,
                        start_ms: p.start_ms,
                        end_ms: p.end_ms,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The Containerfile the controller rendered for `build`.
    async fn containerfile(&self, build: &str) -> Result<String> {
        Api::<ConfigMap>::namespaced(self.client.clone(), NAMESPACE)
            .list(&ListParams::default().labels(&format!("{}={build}", labels::BUILD)))
            .await?
            .items
            .into_iter()
            .find_map(|cm| cm.data?.get("Containerfile").cloned())
            .context("no Containerfile ConfigMap for the build")
    }

    /// The registry requests since the build was applied: the builder pod's (at `pod_ip`) and
    /// the controller replicas'.
    async fn registry(&mut self, pod_ip: &str) -> Result<Registry> {
        // The registry logs a request when it completes; the last ones are in by now.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let requests = self.log.read_new()?;
        let controllers: HashSet<String> = controller_pods(&self.client)
            .await?
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let from_pod: Vec<&Request> = requests.iter().filter(|r| r.client == pod_ip).collect();
        // Every build pushes: a pod with no request is one the log does not attribute, and each
        // of its counts (the base bytes it pulled among them) would read 0 for nothing.
        anyhow::ensure!(
            !from_pod.is_empty(),
            "no registry request came from the builder pod's address {pod_ip} ({} requests \
             logged meanwhile): its counts would read 0 without measuring anything",
            requests.len()
        );
        Ok(Registry {
            pod: Counts::of(from_pod.iter().copied()),
            base_bytes_pulled: self.base.bytes_pulled(&from_pod),
            controllers: Counts::of(requests.iter().filter(|r| controllers.contains(&r.client))),
            agent: from_pod.first().map(|r| r.agent.clone()),
            uploaded: from_pod
                .iter()
                .filter_map(|r| r.uploaded_digest())
                .collect(),
        })
    }
}

/// A build's registry requests.
struct Registry {
    pod: Counts,
    /// Bytes of the base's layers the pod downloaded.
    base_bytes_pulled: u64,
    controllers: Counts,
    /// The user agent of the pod's requests.
    agent: Option<String>,
    /// The blobs the pod uploaded.
    uploaded: Vec<String>,
}
