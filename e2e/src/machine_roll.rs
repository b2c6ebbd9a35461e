//! A pool of the local cluster's machines rolling to a new image, watched from outside: what each
//! machine fetched from the registry (its own address in the access log), how often QEMU powered
//! it on again (each guest reboot ends QEMU under `-no-reboot` and `machines.sh power-cycle` logs
//! the next power-on), and which rendered configs its Node was told (`desiredConfig`, from a
//! watch, so none is missed). Against that, what changed between the two images: the layers of
//! the new one the old lacks. Shared by `tests/rollout.rs` and the bench's machines section.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use strata_crds::MachineOSConfig;

use crate::Cluster;
use crate::deployed::{current_build, example_fragment, machine_configs, pinned_by, pools};
use crate::machines::Machine;
use crate::mco_nodes::DESIRED_CONFIG;
use crate::measure::registry_log::{AccessLog, Counts};
use crate::util::wait_for;

/// The examples the machines' pool is built from (the package and systemd-unit ones).
const EXAMPLES: [&str; 2] = [
    "e2e/examples/package-install.yaml",
    "e2e/examples/systemd-unit-from-package.yaml",
];
/// A fragment edit appended to them: one more package from the local repository, a layer of its
/// own.
const FRAGMENT_EDIT: &str = "RUN apt-get update && apt-get install -y --no-install-recommends \
    jq && rm -rf /run/apt && jq --version\n";

/// The fragment of [`EXAMPLES`] (their package repository the cluster's), with
/// [`FRAGMENT_EDIT`] appended when `edited`.
pub fn examples_fragment(cluster: &Cluster, edited: bool) -> Result<String> {
    let mut fragment = String::new();
    for file in EXAMPLES {
        fragment.push_str(&example_fragment(file, &cluster.package_repo)?);
    }
    if edited {
        fragment.push_str(FRAGMENT_EDIT);
    }
    Ok(fragment)
}

/// What QEMU's supervisor logs each time it powers a machine on again (`machines.sh`).
const POWERED_ON_AGAIN: &str = "rebooted: powered on again";

/// A custom pool of the cluster's machines, as an administrator makes one: a pool taking its own
/// configs only, the machines moved into it by a node-role label.
pub struct MachinePool<'a> {
    pub name: &'a str,
    pub machines: &'a [Machine],
}

impl MachinePool<'_> {
    fn role_label(&self) -> String {
        format!("node-role.kubernetes.io/{}", self.name)
    }

    /// The pool, rolling up to `max_unavailable` machines at once, and the machines in it; waits
    /// until they run its first config, which must name `base` (the release base): at once when
    /// they booted it, after a roll back when an earlier run left them on another image. Its own
    /// configs only: a pool that also took the worker configs would inherit a worker pin (`make
    /// demo` leaves one) and roll to that image first.
    pub async fn create(
        &self,
        client: &Client,
        max_unavailable: usize,
        base: &str,
        timeout: Duration,
    ) -> Result<Rolled> {
        let pool = json!({
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
            "metadata": {"name": self.name},
            "spec": {
                "machineConfigSelector": {
                    "matchLabels": {"machineconfiguration.openshift.io/role": self.name}
                },
                "nodeSelector": {"matchLabels": {self.role_label(): ""}},
                "paused": false, "maxUnavailable": max_unavailable,
            },
        });
        pools(client)
            .patch(
                self.name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&pool),
            )
            .await?;
        self.label(client, true).await?;
        let first_image = self.rendered_image(client).await?;
        ensure!(
            first_image == base,
            "pool {}'s first config names {first_image}, not the release base {base}",
            self.name
        );
        let (rendered, _) = self.updated_past(client, "", timeout).await?;
        Ok(Rolled {
            build: String::new(),
            image: base.to_string(),
            rendered,
        })
    }

    /// How many machines the pool may roll at once from now on.
    pub async fn set_max_unavailable(&self, client: &Client, max_unavailable: usize) -> Result<()> {
        let patch = json!({"spec": {"maxUnavailable": max_unavailable}});
        pools(client)
            .patch(self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Takes the machines out of the pool first (nothing then rolls them back), then deletes the
    /// MachineOSConfig of the pool's name, if any, and the pool.
    pub async fn remove(&self, client: &Client) {
        let _ = self.label(client, false).await;
        let _ = crate::deployed::delete_config(client, self.name).await;
        crate::deployed::delete_pool(client, self.name).await;
    }

    async fn label(&self, client: &Client, on: bool) -> Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        for m in self.machines {
            let value = if on { json!("") } else { Value::Null };
            let patch = json!({"metadata": {"labels": {self.role_label(): value}}});
            nodes
                .patch(&m.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }

    /// The `osImageURL` of the pool's rendered config, once the MCO stand-in has rendered one.
    async fn rendered_image(&self, client: &Client) -> Result<String> {
        let rendered = wait_for(
            "the pool's rendered config",
            Duration::from_secs(60),
            || async {
                let pool = pools(client).get(self.name).await?;
                let name = pool.data["spec"]["configuration"]["name"].as_str();
                Ok(name.filter(|n| !n.is_empty()).map(str::to_string))
            },
        )
        .await?;
        let config = machine_configs(client).get(&rendered).await?;
        Ok(config.data["spec"]["osImageURL"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Waits until the pool reports every machine updated on a rendered config other than
    /// `past` (any, when empty); says the counts as they change and fails at once when a
    /// machine is degraded. Returns the config's name and what the MachineOSConfig of the same
    /// name said in its PoolUpdated condition meanwhile, in order.
    pub async fn updated_past(
        &self,
        client: &Client,
        past: &str,
        timeout: Duration,
    ) -> Result<(String, Vec<String>)> {
        self.watch_until(client, Until::UpdatedPast(past), timeout)
            .await
    }

    /// Follows the pool as [`Self::updated_past`] does until `until`: the pool updated past a
    /// config, or a machine degraded (the pool's `NodeDegraded`; then the config returned is
    /// the pool's target).
    async fn watch_until(
        &self,
        client: &Client,
        until: Until<'_>,
        timeout: Duration,
    ) -> Result<(String, Vec<String>)> {
        let (api, pool_name, count) = (pools(client), self.name, self.machines.len() as u64);
        let start = Instant::now();
        let mut said = String::new();
        let mut strata_said: Vec<String> = Vec::new();
        loop {
            let progress = pool_updated_condition(client, pool_name).await?;
            if strata_said.last() != Some(&progress) {
                let at = start.elapsed().as_secs_f64();
                eprintln!("{pool_name} at {at:.0} s: Strata: {progress}");
                strata_said.push(progress);
            }
            let pool = api.get(pool_name).await?;
            let status = &pool.data["status"];
            let counts = format!(
                "{} of {} machines updated, {} unavailable, {} degraded; configuration {}",
                status["updatedMachineCount"],
                status["machineCount"],
                status["unavailableMachineCount"],
                status["degradedMachineCount"],
                status["configuration"]["name"]
            );
            if counts != said {
                let at = start.elapsed().as_secs_f64();
                eprintln!("{pool_name} at {at:.0} s: {counts}");
                said = counts;
            }
            let condition = |ty: &str| {
                status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == ty && c["status"] == "True")
                    .cloned()
            };
            let target = pool.data["spec"]["configuration"]["name"].as_str();
            let name = status["configuration"]["name"].as_str().unwrap_or_default();
            let all_updated_on_target = condition("Updated").is_some()
                && status["machineCount"].as_u64() == Some(count)
                && status["updatedMachineCount"].as_u64() == Some(count)
                && !name.is_empty()
                && target == Some(name);
            match (until, condition("NodeDegraded")) {
                (Until::Degraded, Some(_)) => {
                    return Ok((target.unwrap_or_default().to_string(), strata_said));
                }
                (Until::UpdatedPast(_), Some(degraded)) => {
                    bail!("pool {pool_name} is degraded: {}", degraded["message"])
                }
                (Until::UpdatedPast(past), None) if all_updated_on_target && name != past => {
                    return Ok((name.to_string(), strata_said));
                }
                _ => {}
            }
            ensure!(
                start.elapsed() < timeout,
                "pool {pool_name} not {} after {timeout:?}: {said}",
                match until {
                    Until::UpdatedPast(_) => "updated",
                    Until::Degraded => "degraded",
                }
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// What [`MachinePool::watch_until`] waits for.
#[derive(Clone, Copy)]
enum Until<'a> {
    /// Every machine updated on a config other than this one (any, when empty).
    UpdatedPast(&'a str),
    /// A machine degraded.
    Degraded,
}

/// What a pool runs after a roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolled {
    /// The MachineOSBuild that made the image (empty for the release base).
    pub build: String,
    pub image: String,
    /// The rendered config every machine runs.
    pub rendered: String,
}

/// One roll, as seen from outside.
#[derive(Debug, Clone)]
pub struct Roll {
    pub to: Rolled,
    /// From the change to the image pinned, and to every machine running it (or, for
    /// [`MachinePool::roll_until_degraded`], to a machine degraded on it).
    pub pinned_after: Duration,
    pub rolled_after: Duration,
    /// The layers of the new image the old one lacks: how many, and their compressed bytes.
    pub changed: (usize, u64),
    pub machines: Vec<MachineRoll>,
    /// What the MachineOSConfig's PoolUpdated said while the machines rolled, in order.
    pub strata_said: Vec<String>,
}

impl MachinePool<'_> {
    /// `change` makes Strata build the pool's MachineOSConfig (named as the pool) again: waits
    /// until the new build is pinned and every machine runs it, watching the machines meanwhile.
    pub async fn roll<F, Fut>(
        &self,
        cluster: &Cluster,
        client: &Client,
        before: &Rolled,
        change: F,
        timeouts: (Duration, Duration),
    ) -> Result<Roll>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let until = Until::UpdatedPast(&before.rendered);
        self.roll_until(cluster, client, before, change, timeouts, until)
            .await
    }

    /// As [`Self::roll`], for an image a machine cannot boot: waits until the new build is pinned
    /// and a machine is degraded on it. The roll's `to.rendered` is the pool's target and
    /// `rolled_after` the time until the degradation.
    pub async fn roll_until_degraded<F, Fut>(
        &self,
        cluster: &Cluster,
        client: &Client,
        before: &Rolled,
        change: F,
        timeouts: (Duration, Duration),
    ) -> Result<Roll>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        self.roll_until(cluster, client, before, change, timeouts, Until::Degraded)
            .await
    }

    async fn roll_until<F, Fut>(
        &self,
        cluster: &Cluster,
        client: &Client,
        before: &Rolled,
        change: F,
        (build_timeout, roll_timeout): (Duration, Duration),
        until: Until<'_>,
    ) -> Result<Roll>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let watch = RollWatch::start(cluster, client, self.machines).await?;
        let start = Instant::now();
        change().await?;
        let build = current_build(client, self.name, Some(&before.build)).await?;
        let image = pinned_by(client, build_timeout, self.name, &build).await?;
        let pinned_after = start.elapsed();
        let (rendered, strata_said) = self.watch_until(client, until, roll_timeout).await?;
        let rolled_after = start.elapsed();
        let machines = watch.finish()?;
        Ok(Roll {
            changed: changed_layers(&before.image, &image)?,
            to: Rolled {
                build,
                image,
                rendered,
            },
            pinned_after,
            rolled_after,
            machines,
            strata_said,
        })
    }
}

/// The MachineOSConfig `name`'s PoolUpdated condition: `status reason: message`.
pub async fn pool_updated_condition(client: &Client, name: &str) -> Result<String> {
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let Some(config) = configs.get_opt(name).await? else {
        return Ok("no MachineOSConfig".into());
    };
    let status = serde_json::to_value(config.status)?;
    let condition = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PoolUpdated")
        .cloned()
        .unwrap_or_default();
    Ok(format!(
        "{} {}: {}",
        condition["status"].as_str().unwrap_or("-"),
        condition["reason"].as_str().unwrap_or("-"),
        condition["message"].as_str().unwrap_or("-")
    ))
}

/// What one machine did during a roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRoll {
    pub name: String,
    /// Requests it made to the registry, by kind, and the bytes the registry sent it.
    pub fetched: Counts,
    /// Times QEMU powered it on again (its reboots, and resets).
    pub power_ons: usize,
    /// The rendered configs its Node was told, in order (the one it had before not counted).
    pub configs: Vec<String>,
}

impl MachineRoll {
    /// What it fetched over `changed` bytes (the layers it lacked).
    pub fn fetched_over(&self, changed: u64) -> f64 {
        self.fetched.bytes_sent as f64 / changed.max(1) as f64
    }

    /// One line: what it fetched against the `changed` layers (count, bytes), its power-ons and
    /// the configs it was told.
    pub fn summary(&self, changed: (usize, u64)) -> String {
        format!(
            "{}: fetched {:.2} MiB ({}) = {:.3}× the {} changed layers' {:.2} MiB; powered on {} \
             times; told {:?}",
            self.name,
            self.fetched.bytes_sent as f64 / 1_048_576.0,
            self.fetched.describe(),
            self.fetched_over(changed.1),
            changed.0,
            changed.1 as f64 / 1_048_576.0,
            self.power_ons,
            self.configs
        )
    }
}

/// Watches the machines from `start` until `finish`.
struct RollWatch {
    machines: Vec<Machine>,
    log: AccessLog,
    power_ons: Vec<usize>,
    cluster_dir: std::path::PathBuf,
    configs: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RollWatch {
    async fn start(cluster: &Cluster, client: &Client, machines: &[Machine]) -> Result<Self> {
        let power_ons = machines
            .iter()
            .map(|m| power_ons(&cluster.dir, m))
            .collect::<Result<Vec<_>>>()?;
        let nodes: Api<Node> = Api::all(client.clone());
        let names: HashSet<String> = machines.iter().map(|m| m.name.clone()).collect();
        // Each Node's desiredConfig as first seen, then every change.
        let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
        let configs = seen.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut events = watcher(nodes, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node))
                        if names.contains(&node.name_any()) =>
                    {
                        // None as "": the first entry is what the Node had when the watch
                        // started, even when that was nothing.
                        let desired = node.annotations().get(DESIRED_CONFIG).cloned();
                        let desired = desired.unwrap_or_default();
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        let list = seen.entry(node.name_any()).or_default();
                        if list.last() != Some(&desired) {
                            list.push(desired);
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(60), ready_rx)
            .await
            .context("the Node watch did not list the nodes in 60 s")??;
        Ok(Self {
            machines: machines.to_vec(),
            log: AccessLog::of(cluster),
            power_ons,
            cluster_dir: cluster.dir.clone(),
            configs,
            task,
        })
    }

    /// What each machine did since `start`.
    fn finish(mut self) -> Result<Vec<MachineRoll>> {
        self.task.abort();
        let requests = self.log.read_new()?;
        let seen = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        self.machines
            .iter()
            .zip(&self.power_ons)
            .map(|(m, before)| {
                Ok(MachineRoll {
                    name: m.name.clone(),
                    fetched: Counts::of(requests.iter().filter(|r| r.client == m.ip)),
                    power_ons: power_ons(&self.cluster_dir, m)? - before,
                    configs: seen
                        .get(&m.name)
                        .map(|l| l.iter().skip(1).cloned().collect())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// Power-ons after the first, from the machine's supervisor log.
fn power_ons(cluster_dir: &std::path::Path, machine: &Machine) -> Result<usize> {
    let path = cluster_dir.join(format!("logs/machine-{}.log", machine.name));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(text.matches(POWERED_ON_AGAIN).count())
}

/// The layers of `new` that `old` lacks (both `host:port/repo@sha256:…` in the plain-HTTP
/// registry): their count and compressed bytes.
fn changed_layers(old: &str, new: &str) -> Result<(usize, u64)> {
    Ok(new_layers(
        &crate::deployed::plain_registry_layer_sizes(old)?,
        &crate::deployed::plain_registry_layer_sizes(new)?,
    ))
}

/// Of `new`'s layers (digest, size), those not in `old`: how many, and their bytes. A layer that
/// moved keeps its digest and is not new (a machine has it).
fn new_layers(old: &[(String, u64)], new: &[(String, u64)]) -> (usize, u64) {
    let old: HashSet<&str> = old.iter().map(|(d, _)| d.as_str()).collect();
    new.iter()
        .filter(|(d, _)| !old.contains(d.as_str()))
        .fold((0, 0), |(n, bytes), (_, size)| (n + 1, bytes + size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    #[test]
    fn new_layers_are_those_the_old_image_lacks() {
        let old = layers(&[("a", 10), ("b", 20), ("c", 30)]);
        // b changed, d added, a and c shared (c moved).
        let new = layers(&[("a", 10), ("c", 30), ("b2", 21), ("d", 5)]);
        assert_eq!(new_layers(&old, &new), (2, 26));
        assert_eq!(new_layers(&old, &old), (0, 0));
        assert_eq!(new_layers(&[], &new), (4, 66));
    }

    #[test]
    fn power_ons_count_the_supervisor_lines() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("strata-roll-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs"))?;
        let machine = Machine {
            name: "worker-9".into(),
            mac: String::new(),
            ip: String::new(),
            console: dir.join("logs/machine-worker-9.console"),
        };
        let log = "qemu: started\nmachines: worker-9 rebooted: powered on again (12:00:01)\n\
                   machines: worker-9 rebooted: powered on again (12:04:09)\n";
        std::fs::write(dir.join("logs/machine-worker-9.log"), log)?;
        let counted = power_ons(&dir, &machine);
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(counted?, 2);
        Ok(())
    }
}
