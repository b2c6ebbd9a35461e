//! The controller deployed by `e2e/scripts/deploy-controller.sh` with chosen options (the strata
//! binary, replicas, flags, a builder image of one's own), and its leader.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::deployed::{controller_pods, lease_holder, metric, scrape};
use crate::{Cluster, repo_root};

/// How to deploy the controller; the default is the script's own (its environment variables are
/// cleared, so nothing leaks in from the caller's shell).
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// The `strata` binary in the controller and builder image (`STRATA_BIN`); `None`: the
    /// script's default (the workspace's debug build) unless the caller's environment sets it.
    pub strata_bin: Option<PathBuf>,
    /// Controller replicas (`STRATA_REPLICAS`; the manifests' 2 when `None`).
    pub replicas: Option<u32>,
    /// Extra controller flags (`STRATA_CONTROLLER_ARGS`), e.g. `--cache-claim=NAME`.
    pub controller_args: Vec<String>,
    /// The image builder Jobs run instead of the controller's own (`STRATA_BUILDER_IMAGE_OVERRIDE`).
    pub builder_image_override: Option<String>,
    /// Further variables for the script (e.g. `STRATA_BUILDER_CPU_REQUEST`).
    pub env: Vec<(String, String)>,
}

/// Variables of deploy-controller.sh that a caller's shell must not leak into a deployment.
const SCRIPT_KNOBS: [&str; 5] = [
    "STRATA_CONTROLLER_ARGS",
    "STRATA_REPLICAS",
    "STRATA_BUILDER_IMAGE_OVERRIDE",
    "STRATA_METRICS_TLS",
    "STRATA_BUILDER_CPU_REQUEST",
];

/// Runs deploy-controller.sh with `options`; returns the builder image it deployed
/// (digest-pinned; the controller's own image).
pub async fn deploy(cluster: &Cluster, options: &DeployOptions) -> Result<String> {
    let script = repo_root().join("e2e/scripts/deploy-controller.sh");
    let mut cmd = tokio::process::Command::new(&script);
    for knob in SCRIPT_KNOBS {
        cmd.env_remove(knob);
    }
    cmd.env(
        "PATH",
        format!(
            "{}:{}",
            cluster.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    if let Some(bin) = &options.strata_bin {
        cmd.env("STRATA_BIN", bin);
    }
    if let Some(replicas) = options.replicas {
        cmd.env("STRATA_REPLICAS", replicas.to_string());
    }
    if !options.controller_args.is_empty() {
        cmd.env("STRATA_CONTROLLER_ARGS", options.controller_args.join(" "));
    }
    if let Some(image) = &options.builder_image_override {
        cmd.env("STRATA_BUILDER_IMAGE_OVERRIDE", image);
    }
    for (k, v) in &options.env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    deployed_builder(&script, &out)
}

/// The builder image deploy-controller.sh printed last, once it succeeded.
pub(crate) fn deployed_builder(
    script: &std::path::Path,
    out: &std::process::Output,
) -> Result<String> {
    ensure!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let builder = stdout.lines().last().unwrap_or_default().trim().to_string();
    ensure!(
        builder.contains("@sha256:"),
        "deploy-controller.sh printed {stdout:?}"
    );
    Ok(builder)
}

/// The replica that leads: its pod name and IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub pod: String,
    pub ip: String,
}

/// Waits until a ready controller pod (other than `not`) holds the Lease and its `/metrics` says
/// `strata_leader 1`.
pub async fn wait_for_leader(
    client: &kube::Client,
    not: Option<&str>,
    timeout: Duration,
) -> Result<Leader> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(holder) = lease_holder(client).await?
            && Some(holder.as_str()) != not
            && let Some((pod, ip)) = controller_pods(client)
                .await?
                .into_iter()
                .find(|(pod, _)| *pod == holder)
            && let Ok(text) = scrape(&ip).await
            && metric(&text, "strata_leader") == Some(1.0)
        {
            return Ok(Leader { pod, ip });
        }
        if Instant::now() > deadline {
            bail!("no controller replica took the lead within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restarts the deployed controller (`kubectl rollout restart`), as after a change it reads only at
/// start (which APIs the cluster serves); returns the new leader, a pod started by the restart.
pub async fn restart_controller(cluster: &Cluster, client: &kube::Client) -> Result<Leader> {
    let before: Vec<String> = controller_pods(client)
        .await?
        .into_iter()
        .map(|(pod, _)| pod)
        .collect();
    for args in [
        &["rollout", "restart", "deployment/strata-controller"][..],
        &[
            "rollout",
            "status",
            "deployment/strata-controller",
            "--timeout=180s",
        ][..],
    ] {
        let out = cluster
            .kubectl()
            .args(["-n", crate::deployed::NAMESPACE])
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let leader = wait_for_leader(client, None, Duration::from_secs(120)).await?;
        if !before.contains(&leader.pod) {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            bail!("no restarted controller replica took the lead within 120 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
