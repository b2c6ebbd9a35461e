//! A stand-in for the machine-config-daemon on the local pool's machines (`e2e/scripts/machines.sh`
//! VMs). It runs on the host and acts on each machine over ssh (`machines.sh ssh`); the machine
//! itself pulls, deploys and reboots (`e2e/machines/rebase.sh`). What it does, and where in
//! openshift/machine-config-operator that comes from:
//!
//! - **Registration and heartbeat**, as the kubelet would: a Node named after the machine, with its
//!   address, the label `e2e.strata.dev/machine` and a `NoSchedule` taint of that key (no kubelet
//!   runs pods there); `Ready` true while the machine's sshd accepts connections, false while it
//!   does not (rebooting).
//! - **The update loop** (`pkg/daemon/daemon.go`, `update.go`): when `desiredConfig` (set by the
//!   node controller, `crate::mco_nodes`) differs from `currentConfig`: state `Working`, cordon,
//!   the cluster's pull secret to `/var/lib/kubelet/config.json` and its insecure registries to
//!   `/etc/containers/registries.conf.d` (where the MCO renders them), a new `osImageURL` deployed
//!   (`updateLayeredOS`: `rpm-ostree rebase ostree-unverified-registry:…`; here skopeo's image
//!   proxy and ostree, `e2e/machines/rebase.sh`), reboot. After the boot, the booted
//!   deployment's image is checked against the config's `osImageURL` (`validateOnDiskState`):
//!   the same → `currentConfig` = desired, state `Done`, uncordon; not the same → state
//!   `Degraded` with the reason. A config whose image the machine
//!   already runs completes without a reboot.
//! - The booted image is read from ostree (the booted deployment's commit metadata
//!   `strata.dev/image-digest`, written by `strata disk-image` and by `rebase.sh`) and shown in the
//!   annotation `e2e.strata.dev/booted-image` (the desired config's `osImageURL` when the digests
//!   agree, else the reference the deployment recorded).
//!
//! Not emulated: Ignition files and units of a config (the local MachineConfigs carry none a machine
//! needs), draining pods (none run there), MachineConfigNode objects. The state is level-based: a
//! machine killed mid-update, or this process restarted, is updated again from where it stands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use strata_crds::contract::mco;
use tokio::io::AsyncWriteExt;

use crate::machines::Machine;
use crate::mco_nodes::{
    CURRENT_CONFIG, MACHINE_LABEL, NodeView, REASON, STATE, STATE_DEGRADED, STATE_DONE,
    STATE_WORKING,
};

/// Field manager of what the stand-in writes (the daemon's name).
const MANAGER: &str = "machine-config-daemon";
pub const BOOTED_IMAGE_ANNOTATION: &str = "e2e.strata.dev/booted-image";
/// The deployment script, piped to the machine's shell.
const REBASE_SCRIPT: &str = include_str!("../machines/rebase.sh");
/// What the machine booted: its boot id, then the booted deployment's image digest and reference.
const PROBE: &str = "cat /proc/sys/kernel/random/boot_id; \
    c=$(ostree admin status | awk '$1 == \"*\" {print $3}'); c=${c%.*}; \
    ostree show --print-metadata-key=strata.dev/image-digest \"$c\" 2>/dev/null || echo; \
    ostree show --print-metadata-key=strata.dev/image \"$c\" 2>/dev/null || echo";

/// What a machine booted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Booted {
    pub boot_id: String,
    /// `sha256:…` of the booted deployment's image manifest; empty when unknown.
    pub digest: String,
    pub image: String,
}

impl Booted {
    pub fn parse(probe: &str) -> Result<Self> {
        let mut lines = probe
            .lines()
            .map(|l| l.trim().trim_matches('\'').to_string());
        let boot_id = lines.next().unwrap_or_default();
        if boot_id.len() < 32 {
            bail!("no boot id in the machine's answer: {probe:?}");
        }
        Ok(Self {
            boot_id,
            digest: lines.next().unwrap_or_default(),
            image: lines.next().unwrap_or_default(),
        })
    }

    fn runs(&self, image: &str) -> bool {
        !self.digest.is_empty() && image.rsplit_once('@').map(|(_, d)| d) == Some(&self.digest)
    }
}

/// A rebase this daemon started: to what, from which boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebased {
    pub image: String,
    pub boot_id: String,
}

/// What the daemon remembers of one machine (lost when it restarts, as the MCD's is).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rebased: Option<Rebased>,
    /// The desired config its update failed on: not tried again until another is desired.
    pub failed: Option<String>,
    /// The config the machine was found running when it was `Done` on it: not probed again
    /// while that holds (the MCD checks the on-disk state at start and before an update).
    pub validated: Option<String>,
}

/// What the daemon does next for one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Idle,
    /// The machine runs the desired config's image: the config is current.
    Complete,
    /// Deploy this image and reboot.
    Rebase(String),
    Degrade(String),
}

/// The daemon's decision from the node's annotations, what the machine booted, the desired
/// config's `osImageURL` and what it remembers.
pub fn next_step(node: &NodeView, booted: &Booted, image: &str, memory: &Memory) -> Step {
    if node.desired.is_empty() {
        return Step::Idle;
    }
    if node.done() {
        return if booted.runs(image) {
            Step::Idle
        } else {
            Step::Degrade(format!(
                "unexpected on-disk state validating against {}: expected target osImageURL {image:?}, have {:?}",
                node.desired, booted.image
            ))
        };
    }
    if booted.runs(image) {
        return Step::Complete;
    }
    if node.state == STATE_DEGRADED && memory.failed.as_deref() == Some(node.desired.as_str()) {
        return Step::Idle;
    }
    match &memory.rebased {
        // Deployed, the reboot not seen yet.
        Some(r) if r.image == image && r.boot_id == booted.boot_id => Step::Idle,
        // Rebooted, and not into it: ostree booted another deployment.
        Some(r) if r.image == image => Step::Degrade(format!(
            "expected target osImageURL {image:?}, have {:?}",
            booted.image
        )),
        _ => Step::Rebase(image.to_string()),
    }
}

/// Where the machines are and how to reach them.
#[derive(Clone)]
pub struct Daemon {
    pub client: Client,
    /// The cluster's directory (`machines.sh ssh --dir`).
    pub dir: PathBuf,
    pub machines_sh: PathBuf,
}

/// Runs the stand-in for every machine until the process is stopped.
pub async fn run(daemon: Daemon, machines: Vec<Machine>) -> Result<()> {
    let mut tasks = Vec::new();
    for machine in machines {
        tasks.push(tokio::spawn(heartbeat(daemon.clone(), machine.clone())));
        tasks.push(tokio::spawn(tend(daemon.clone(), machine)));
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}

impl Daemon {
    /// Runs `command` on the machine (stdin from `input`); its stdout, or an error.
    async fn ssh(&self, machine: &str, command: &str, input: Option<&[u8]>) -> Result<String> {
        let mut child = tokio::process::Command::new(&self.machines_sh)
            .arg("ssh")
            .arg("--dir")
            .arg(&self.dir)
            .args([machine, command])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        stdin.write_all(input.unwrap_or_default()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            // What it said last: on stderr, or on stdout for a command that merges the two.
            let err = String::from_utf8_lossy(&out.stderr);
            let said = String::from_utf8_lossy(&out.stdout);
            let last = |text: &str| {
                text.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| l.trim().to_string())
            };
            let what = last(&err).or_else(|| last(&said));
            bail!(
                "{} ({})",
                what.as_deref().unwrap_or("no output"),
                out.status
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// Sets the daemon's annotations on the node and, when `cordoned` is given, cordons or
    /// uncordons it: one write.
    async fn report(&self, node: &str, annotations: Value, cordoned: Option<bool>) -> Result<()> {
        let mut patch = json!({"metadata": {"annotations": annotations}});
        if let Some(on) = cordoned {
            patch["spec"] = json!({"unschedulable": on});
        }
        self.nodes()
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// The Node of `machine`, as the kubelet registers it (its status is the heartbeat's).
async fn register(daemon: &Daemon, machine: &Machine) -> Result<()> {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": machine.name, "labels": {
            MACHINE_LABEL: "true", "kubernetes.io/hostname": machine.name, "kubernetes.io/os": "linux"}},
        "spec": {"taints": [{"key": MACHINE_LABEL, "value": "no-kubelet", "effect": "NoSchedule"}]},
    });
    daemon
        .nodes()
        .patch(
            &machine.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await?;
    Ok(())
}

/// Registers the machine's Node and keeps its `Ready` condition: true while the machine answers.
async fn heartbeat(daemon: Daemon, machine: Machine) {
    let mut ready: Option<bool> = None;
    loop {
        let answer = answers(&machine).await;
        let now = crate::mco::now();
        let on = answer.is_ok();
        let result = async {
            if on && ready.is_none() {
                register(&daemon, &machine).await?;
            }
            let mut condition = json!({
                "type": "Ready", "status": if on { "True" } else { "False" },
                "reason": if on { "KubeletReady" } else { "KubeletNotReady" },
                "message": match &answer { Ok(()) => "the machine's sshd accepts connections (MCD stand-in)".to_string(),
                                            Err(e) => format!("the machine does not answer: {e}") },
                "lastHeartbeatTime": now,
            });
            if ready != Some(on) {
                condition["lastTransitionTime"] = json!(now);
            }
            let status = json!({"status": {"conditions": [condition], "addresses": [
                {"type": "InternalIP", "address": machine.ip}, {"type": "Hostname", "address": machine.name}]}});
            daemon
                .nodes()
                .patch_status(
                    &machine.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&status),
                )
                .await?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => ready = Some(on),
            Err(err) if ready.is_some() || on => {
                eprintln!("strata-e2e-mcd: {}: heartbeat: {err:#}", machine.name);
            }
            Err(_) => {} // not registered yet and not answering: nothing to say
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Whether the machine's sshd accepts a connection at its address: the heartbeat's test, far
/// cheaper than a login (seconds of emulated CPU for the key exchange).
async fn answers(machine: &Machine) -> Result<()> {
    let address: std::net::SocketAddr = format!("{}:22", machine.ip).parse()?;
    tokio::task::spawn_blocking(move || {
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5)).map(drop)
    })
    .await??;
    Ok(())
}

/// The update loop of one machine.
async fn tend(daemon: Daemon, machine: Machine) {
    let mut memory = Memory::default();
    loop {
        if let Err(err) = tend_once(&daemon, &machine, &mut memory).await {
            eprintln!("strata-e2e-mcd: {}: {err:#}", machine.name);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

async fn tend_once(daemon: &Daemon, machine: &Machine, memory: &mut Memory) -> Result<()> {
    let Some(node) = daemon.nodes().get_opt(&machine.name).await? else {
        return Ok(()); // not registered yet
    };
    let view = NodeView::of(&node);
    let done = view.done();
    if view.desired.is_empty() || (done && memory.validated.as_ref() == Some(&view.desired)) {
        return Ok(());
    }
    let Ok(probe) = daemon.ssh(&machine.name, PROBE, None).await else {
        return Ok(()); // down or rebooting: the heartbeat says so
    };
    let booted = Booted::parse(&probe)?;
    let configs: Api<DynamicObject> = Api::all_with(daemon.client.clone(), &mco::machine_config());
    let config = configs
        .get(&view.desired)
        .await
        .with_context(|| format!("reading the desired config {}", view.desired))?;
    let image = config.data["spec"]["osImageURL"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Named as the cluster names it when the digests agree (a disk made from an OCI layout
    // recorded the layout's path).
    let shown = if booted.runs(&image) {
        &image
    } else {
        &booted.image
    };
    if node.annotations().get(BOOTED_IMAGE_ANNOTATION) != Some(shown) {
        daemon
            .report(&machine.name, json!({BOOTED_IMAGE_ANNOTATION: shown}), None)
            .await?;
    }
    match next_step(&view, &booted, &image, memory) {
        // Done and found running the config's image: nothing to probe until that changes.
        Step::Idle if done => memory.validated = Some(view.desired.clone()),
        Step::Idle => {}
        Step::Complete => {
            eprintln!(
                "strata-e2e-mcd: {}: runs {image}: {} is current",
                machine.name, view.desired
            );
            daemon
                .report(
                    &machine.name,
                    json!({CURRENT_CONFIG: view.desired, STATE: STATE_DONE, REASON: ""}),
                    Some(false),
                )
                .await?;
            *memory = Memory::default();
        }
        Step::Degrade(reason) => {
            *memory = Memory {
                failed: Some(view.desired.clone()),
                ..Memory::default()
            };
            degrade(daemon, machine, &reason).await?;
        }
        Step::Rebase(image) => match rebase(daemon, machine, &image).await {
            Ok(()) => {
                memory.rebased = Some(Rebased {
                    image,
                    boot_id: booted.boot_id,
                });
            }
            // Down mid-update (its power cut, a reset): the MCD would have gone down with it and
            // update it again after the boot, from where it stands; so does the stand-in.
            Err(err) if went_down(daemon, machine, &booted.boot_id).await => {
                eprintln!(
                    "strata-e2e-mcd: {}: went down mid-update ({err:#}); updating it again once it is back",
                    machine.name
                );
            }
            Err(err) => {
                memory.failed = Some(view.desired.clone());
                degrade(daemon, machine, &format!("{err:#}")).await?;
            }
        },
    }
    Ok(())
}

/// Whether the machine went down since the boot `boot_id`: it does not answer, or it booted
/// again.
async fn went_down(daemon: &Daemon, machine: &Machine, boot_id: &str) -> bool {
    match daemon
        .ssh(&machine.name, "cat /proc/sys/kernel/random/boot_id", None)
        .await
    {
        Ok(now) => now.trim() != boot_id,
        Err(_) => true,
    }
}

async fn degrade(daemon: &Daemon, machine: &Machine, reason: &str) -> Result<()> {
    eprintln!("strata-e2e-mcd: {}: degraded: {reason}", machine.name);
    daemon
        .report(
            &machine.name,
            json!({STATE: STATE_DEGRADED, REASON: reason}),
            None,
        )
        .await
}

/// Working, cordoned, the node's container configuration written, the image deployed, reboot.
async fn rebase(daemon: &Daemon, machine: &Machine, image: &str) -> Result<()> {
    eprintln!("strata-e2e-mcd: {}: rebasing to {image}", machine.name);
    daemon
        .report(
            &machine.name,
            json!({STATE: STATE_WORKING, REASON: ""}),
            Some(true),
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(daemon.client.clone(), "openshift-config");
    let pull_secret = secrets
        .get("pull-secret")
        .await
        .context("reading the cluster's pull secret openshift-config/pull-secret")?;
    let auth = pull_secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .context("openshift-config/pull-secret has no .dockerconfigjson")?;
    daemon
        .ssh(
            &machine.name,
            "install -D -m 0600 /dev/stdin /var/lib/kubelet/config.json",
            Some(&auth.0),
        )
        .await
        .context("writing the pull secret")?;
    let registries = insecure_registries_conf(&daemon.client).await?;
    daemon
        .ssh(
            &machine.name,
            "install -D -m 0644 /dev/stdin /etc/containers/registries.conf.d/50-openshift-insecure.conf",
            Some(registries.as_bytes()),
        )
        .await
        .context("writing the registries configuration")?;
    let command = format!("sh -s -- '{image}' 2>&1");
    let said = daemon
        .ssh(&machine.name, &command, Some(REBASE_SCRIPT.as_bytes()))
        .await
        .with_context(|| format!("deploying {image}"))?;
    for line in said.lines().filter(|l| l.starts_with("rebase: ")) {
        eprintln!("strata-e2e-mcd: {}: {line}", machine.name);
    }
    eprintln!(
        "strata-e2e-mcd: {}: deployed {image}; rebooting",
        machine.name
    );
    // The connection drops as the machine goes down: its answer does not matter.
    let _ = daemon.ssh(&machine.name, "systemctl reboot", None).await;
    Ok(())
}

/// The cluster's insecure registries (`images.config.openshift.io/cluster`), as the MCO renders
/// them into a node's containers registries configuration.
async fn insecure_registries_conf(client: &Client) -> Result<String> {
    let resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("config.openshift.io", "v1", "Image"));
    let images: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let insecure = match images.get_opt("cluster").await? {
        Some(config) => config.data["spec"]["registrySources"]["insecureRegistries"].clone(),
        None => Value::Null,
    };
    Ok(insecure
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|r| format!("[[registry]]\nlocation = \"{r}\"\ninsecure = true\n\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "r/os@sha256:new";

    fn node(current: &str, desired: &str, state: &str) -> NodeView {
        NodeView {
            name: "worker-0".into(),
            current: current.into(),
            desired: desired.into(),
            state: state.into(),
            ..NodeView::default()
        }
    }

    fn booted(digest: &str, boot: &str) -> Booted {
        Booted {
            boot_id: boot.into(),
            digest: digest.into(),
            image: format!("r/os@{digest}"),
        }
    }

    #[test]
    fn a_new_image_is_deployed_then_checked_after_the_reboot() {
        let told = node("r-old", "r-new", STATE_DONE);
        let old = booted("sha256:old", "boot-1");
        assert_eq!(
            next_step(&told, &old, IMAGE, &Memory::default()),
            Step::Rebase(IMAGE.into())
        );
        let working = node("r-old", "r-new", STATE_WORKING);
        let started = Memory {
            rebased: Some(Rebased {
                image: IMAGE.into(),
                boot_id: "boot-1".into(),
            }),
            ..Memory::default()
        };
        // Not rebooted yet: wait.
        assert_eq!(next_step(&working, &old, IMAGE, &started), Step::Idle);
        // Rebooted into it: the config is current.
        let new = booted("sha256:new", "boot-2");
        assert_eq!(next_step(&working, &new, IMAGE, &started), Step::Complete);
        // Rebooted into the old deployment: degraded, saying what it has.
        let back = booted("sha256:old", "boot-2");
        assert_eq!(
            next_step(&working, &back, IMAGE, &started),
            Step::Degrade(
                "expected target osImageURL \"r/os@sha256:new\", have \"r/os@sha256:old\"".into()
            )
        );
    }

    #[test]
    fn a_machine_killed_mid_update_is_updated_again() {
        // Working, but no rebase of this daemon's in memory (restarted, or the machine was reset
        // before the deployment finished): deploy again.
        let working = node("r-old", "r-new", STATE_WORKING);
        assert_eq!(
            next_step(
                &working,
                &booted("sha256:old", "boot-3"),
                IMAGE,
                &Memory::default()
            ),
            Step::Rebase(IMAGE.into())
        );
    }

    #[test]
    fn done_machines_are_checked_and_configs_without_a_new_image_complete() {
        let none = Memory::default();
        let done = node("r-new", "r-new", STATE_DONE);
        assert_eq!(
            next_step(&done, &booted("sha256:new", "b"), IMAGE, &none),
            Step::Idle
        );
        assert!(matches!(
            next_step(&done, &booted("sha256:old", "b"), IMAGE, &none),
            Step::Degrade(r) if r.starts_with("unexpected on-disk state validating against r-new")
        ));
        // A config whose image the machine runs already: current without a reboot.
        let told = node("r-old", "r-new", STATE_DONE);
        assert_eq!(
            next_step(&told, &booted("sha256:new", "b"), IMAGE, &none),
            Step::Complete
        );
        // Nothing desired yet (a node no pool has told anything): nothing to do.
        assert_eq!(
            next_step(&node("", "", ""), &booted("", "b"), IMAGE, &none),
            Step::Idle
        );
        // Degraded on this config: no retry until another config is desired.
        let failed = node("r-old", "r-new", STATE_DEGRADED);
        let memory = Memory {
            failed: Some("r-new".into()),
            ..Memory::default()
        };
        let old = booted("sha256:old", "b");
        assert_eq!(next_step(&failed, &old, IMAGE, &memory), Step::Idle);
        let next = node("r-old", "r-newer", STATE_DEGRADED);
        assert_eq!(
            next_step(&next, &old, "r/os@sha256:newer", &memory),
            Step::Rebase("r/os@sha256:newer".into())
        );
    }

    #[test]
    fn the_probe_reads_ostrees_answer() {
        let b = Booted::parse(
            "0f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0\n'sha256:abc'\n'r/os@sha256:abc'\n",
        )
        .unwrap();
        assert_eq!(b.digest, "sha256:abc");
        assert_eq!(b.image, "r/os@sha256:abc");
        assert!(b.runs("other/repo@sha256:abc"));
        assert!(!b.runs("r/os:latest"));
        let unknown = Booted::parse("0f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0\n\n\n").unwrap();
        assert!(!unknown.runs("r/os@sha256:"));
        assert!(Booted::parse("").is_err());
    }
}
