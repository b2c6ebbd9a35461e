//! The pool's machines boot what Strata builds: two QEMU machines (`e2e/scripts/machines.sh`) join a
//! pool, as an administrator moves nodes into a custom pool (a node-role label); the release base is
//! the CoreOS-like image they booted. A MachineOSConfig with the package and systemd-unit examples
//! is built and pinned; the MCO stand-in tells the machines the new rendered config within the
//! pool's `maxUnavailable` (2 here: both at once), and the machine-config-daemon stand-in
//! (`strata_e2e::mcd`) has each machine pull the image by digest with the cluster's pull secret,
//! deploy it with ostree beside the booted deployment and reboot into it. Checked from outside
//! (each Node's annotations, the pool's counts and `status.configuration`, which moves only when
//! both machines run it) and inside each machine over ssh: the booted ostree deployment's image digest is the pinned one, the previous
//! deployment stays as the rollback, the fragment's packages are installed and its unit is active.
//! Meanwhile the MachineOSConfig's `PoolUpdated` says how many machines run the image and names
//! each machine while it reboots (`PoolUpdating`), then `PoolUpdated` once all do; the controller's
//! `strata_pool_machines` then counts both machines updated.
//!
//! One machine is reset in the middle of its update (QMP `system_reset`, as a power cut): it comes
//! back on its old deployment, the daemon stand-in updates it again, and the roll ends as for the
//! other; the daemon's log says it went down mid-update.
//!
//! The release base is cluster-wide: this test binary runs alone, and puts the base back when it
//! ends; the machines leave the pool first, so nothing rolls them back.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use strata_crds::MachineOSConfig;
use strata_crds::contract::mco;
use strata_e2e::deployed::{
    apply_examples, current_build, delete_config, delete_pool, leader_metrics, metric, pinned_by,
    pools, with_release_base,
};
use strata_e2e::machines::{self, Machine};
use strata_e2e::mcd::BOOTED_IMAGE_ANNOTATION;
use strata_e2e::mco_nodes::{CURRENT_CONFIG, DESIRED_CONFIG, NodeView, STATE, STATE_WORKING};
use strata_e2e::util::{install_strata_crds, wait_for};
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-machines";
const ROLE_LABEL: &str = "node-role.kubernetes.io/e2e-machines";
/// The build on the 1.3 GiB base (its layers usually cached by earlier tests).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// Both machines (one vCPU each, software emulation): pull, commit, deploy, reboot.
const ROLL_TIMEOUT: Duration = Duration::from_secs(1800);
/// A boot under emulation, for machines still coming up when the test starts.
const BOOT_TIMEOUT: Duration = Duration::from_secs(1200);
/// How long a machine's update runs before the test resets it (see `reset_mid_update`).
const INTERRUPT_AFTER: Duration = Duration::from_secs(30);
const EXAMPLES: [&str; 2] = [
    "e2e/examples/package-install.yaml",
    "e2e/examples/systemd-unit-from-package.yaml",
];

#[tokio::test]
async fn machines_boot_the_pinned_image() -> Result<()> {
    let test = "machines_boot_the_pinned_image";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    let machines = machines::of(cluster)?;
    ensure!(
        machines.len() >= 2,
        "the cluster has {} machines; this test needs two (STRATA_MACHINES)",
        machines.len()
    );
    for m in &machines {
        m.wait_for_console(&format!("{} login:", m.name), BOOT_TIMEOUT)?;
    }
    with_release_base(&client, &cluster.os_image, || async {
        let result = check(cluster, &client, &machines).await;
        // Out of the pool first: nothing then tells the machines to roll back.
        let _ = label_machines(&client, &machines, false).await;
        let _ = delete_config(&client, POOL).await;
        delete_pool(&client, POOL).await;
        result
    })
    .await
}

async fn check(cluster: &Cluster, client: &Client, machines: &[Machine]) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for m in machines {
        wait_for(
            &format!("{}'s Node registered by the daemon stand-in", m.name),
            Duration::from_secs(300),
            || async { Ok(nodes.get_opt(&m.name).await?.map(|_| ())) },
        )
        .await?;
    }
    create_machine_pool(client).await?;
    label_machines(client, machines, true).await?;
    // The machines run the release base already: the pool's first config completes without a
    // reboot, once the daemon has checked what each booted.
    let first_image = first_config_image(client).await?;
    ensure!(
        first_image == cluster.os_image,
        "the pool's first config names {first_image}, not the release base {} the machines booted",
        cluster.os_image
    );
    let (first, _) = pool_updated(client, machines.len(), Duration::from_secs(300)).await?;
    let release = vec![cluster.os_image.clone(); machines.len()];
    wait_for(
        "the machines to report the release base as booted",
        Duration::from_secs(120),
        || async { Ok((booted_images(&nodes, machines).await? == release).then_some(())) },
    )
    .await?;
    let boot_ids = ssh_all(cluster, machines, "cat /proc/sys/kernel/random/boot_id").await?;

    apply_examples(cluster, client, POOL, &EXAMPLES).await?;
    let build = current_build(client, POOL, None).await?;
    let image = pinned_by(client, BUILD_TIMEOUT, POOL, &build).await?;
    eprintln!("{POOL}: pinned {image}; the machines roll");
    let registry_log = cluster.dir.join("logs/registry.log");
    let log_offset = std::fs::metadata(&registry_log).map_or(0, |m| m.len());
    let start = Instant::now();
    let interrupted = &machines[machines.len() - 1];
    reset_mid_update(cluster, &nodes, interrupted).await?;
    let (rolled, strata_said) =
        pool_updated_past(client, machines.len(), &first, ROLL_TIMEOUT).await?;
    eprintln!(
        "{POOL}: every machine runs {rolled} after {:.0} s",
        start.elapsed().as_secs_f64()
    );
    check_strata_followed_the_roll(client, machines, &strata_said).await?;
    let daemon_log = std::fs::read_to_string(cluster.dir.join("logs/mcd.log"))?;
    let went_down = format!("{}: went down mid-update", interrupted.name);
    ensure!(
        daemon_log.contains(&went_down),
        "the daemon stand-in's log does not say {went_down:?}"
    );
    report_downloads(&registry_log, log_offset, machines)?;
    check_nodes(&nodes, machines, &rolled, &image).await?;
    check_inside(cluster, machines, &image, &boot_ids).await
}

/// Resets `machine` in the middle of its update, as a power cut would: once its Node is `Working`
/// and its daemon has had `INTERRUPT_AFTER` to get the update under way (the fetch alone takes a
/// minute). The machine comes back on its old deployment and its daemon updates it again; the
/// roll the caller waits for then ends as for the others.
async fn reset_mid_update(cluster: &Cluster, nodes: &Api<Node>, machine: &Machine) -> Result<()> {
    let view = || async { Ok::<_, anyhow::Error>(NodeView::of(&nodes.get(&machine.name).await?)) };
    wait_for(
        &format!("{} to start its update", machine.name),
        Duration::from_secs(300),
        || async { Ok((view().await?.state == STATE_WORKING).then_some(())) },
    )
    .await?;
    tokio::time::sleep(INTERRUPT_AFTER).await;
    let now = view().await?;
    ensure!(
        now.state == STATE_WORKING,
        "{} is no longer updating after {INTERRUPT_AFTER:?}: {now:?}",
        machine.name
    );
    machine.reset(cluster)?;
    eprintln!("{POOL}: {} reset in the middle of its update", machine.name);
    wait_for(
        &format!("{}'s Node not Ready after the reset", machine.name),
        Duration::from_secs(120),
        || async { Ok((!view().await?.ready).then_some(())) },
    )
    .await
}

/// A custom pool of its own configs only, the nodes labelled with its role. OpenShift supports
/// custom pools that also take the worker configs; such a pool would inherit a worker pool's pin
/// (`make demo` leaves one on the cluster the tests reuse) and roll the machines to that image
/// first (the last `osImageURL` by name wins, and Strata's names put the worker's first), so the
/// test would start differently on a fresh cluster and on the demo's.
async fn create_machine_pool(client: &Client) -> Result<()> {
    let pool = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
        "metadata": {"name": POOL},
        "spec": {
            "machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": POOL}},
            "nodeSelector": {"matchLabels": {ROLE_LABEL: ""}},
            // Both machines at once: each update is minutes under emulation (one at a time,
            // maxUnavailable 1, is the unit tests' in mco_nodes.rs).
            "paused": false, "maxUnavailable": 2,
        },
    });
    pools(client)
        .patch(
            POOL,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&pool),
        )
        .await?;
    Ok(())
}

/// The `osImageURL` of the pool's first rendered config, once the stand-in has rendered it.
async fn first_config_image(client: &Client) -> Result<String> {
    let configs: Api<DynamicObject> = Api::all_with(client.clone(), &mco::machine_config());
    let rendered = wait_for(
        "the pool's first rendered config",
        Duration::from_secs(60),
        || async {
            let pool = pools(client).get(POOL).await?;
            let name = pool.data["spec"]["configuration"]["name"].as_str();
            Ok(name.filter(|n| !n.is_empty()).map(str::to_string))
        },
    )
    .await?;
    let config = configs.get(&rendered).await?;
    Ok(config.data["spec"]["osImageURL"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

async fn label_machines(client: &Client, machines: &[Machine], on: bool) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for m in machines {
        let value = if on { json!("") } else { Value::Null };
        let patch = json!({"metadata": {"labels": {ROLE_LABEL: value}}});
        nodes
            .patch(&m.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Waits until the pool reports all `machines` updated on a rendered config; returns its name and
/// what Strata's PoolUpdated condition said meanwhile, in order.
async fn pool_updated(
    client: &Client,
    machines: usize,
    timeout: Duration,
) -> Result<(String, Vec<String>)> {
    pool_updated_past(client, machines, "", timeout).await
}

/// As `pool_updated`, on a rendered config other than `past`; says the counts as they change and
/// fails at once when a machine is degraded.
async fn pool_updated_past(
    client: &Client,
    machines: usize,
    past: &str,
    timeout: Duration,
) -> Result<(String, Vec<String>)> {
    let api = pools(client);
    let start = Instant::now();
    let mut said = String::new();
    let mut strata_said: Vec<String> = Vec::new();
    loop {
        // What Strata says meanwhile (its PoolUpdated condition), as it changes.
        let progress = pool_updated_condition(client).await?;
        if strata_said.last() != Some(&progress) {
            eprintln!(
                "{POOL} at {:.0} s: Strata: {progress}",
                start.elapsed().as_secs_f64()
            );
            strata_said.push(progress);
        }
        let pool = api.get(POOL).await?;
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
            eprintln!("{POOL} at {:.0} s: {counts}", start.elapsed().as_secs_f64());
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
        if let Some(degraded) = condition("NodeDegraded") {
            anyhow::bail!("pool {POOL} is degraded: {}", degraded["message"]);
        }
        let name = status["configuration"]["name"].as_str().unwrap_or_default();
        let done = condition("Updated").is_some()
            && status["machineCount"].as_u64() == Some(machines as u64)
            && status["updatedMachineCount"].as_u64() == Some(machines as u64)
            && !name.is_empty()
            && name != past
            && pool.data["spec"]["configuration"]["name"].as_str() == Some(name);
        if done {
            return Ok((name.to_string(), strata_said));
        }
        ensure!(
            start.elapsed() < timeout,
            "pool {POOL} not updated after {timeout:?}: {said}"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// What each machine fetched from the registry during the roll (its access log, from `offset`):
/// every fetch came from a machine's own address, and each machine fetched something.
fn report_downloads(log: &std::path::Path, offset: u64, machines: &[Machine]) -> Result<()> {
    let text = std::fs::read(log).with_context(|| log.display().to_string())?;
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let text = String::from_utf8_lossy(&text[start..]);
    for m in machines {
        let (mut blobs, mut bytes) = (0u64, 0u64);
        for line in text
            .lines()
            .filter(|l| l.starts_with(&format!("{} ", m.ip)))
        {
            // Combined log format: `… "GET /v2/<repo>/blobs/<digest> HTTP/1.1" 200 <bytes> …`.
            let Some((request, rest)) = line
                .split_once(" \"")
                .and_then(|(_, r)| r.split_once("\" "))
            else {
                continue;
            };
            if request.starts_with("GET ") && request.contains("/blobs/") {
                blobs += 1;
                bytes += rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|b| b.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        eprintln!(
            "{}: fetched {blobs} blobs, {:.1} MiB, from {} during the roll",
            m.name,
            bytes as f64 / 1_048_576.0,
            m.ip
        );
        ensure!(
            blobs > 0,
            "the registry saw no fetch from {} ({})",
            m.name,
            m.ip
        );
    }
    Ok(())
}

/// The MachineOSConfig's PoolUpdated condition: `status reason: message`.
async fn pool_updated_condition(client: &Client) -> Result<String> {
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let Some(config) = configs.get_opt(POOL).await? else {
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

/// While the machines rolled, Strata said how many ran the image (not "render pending" until the
/// last one), and it says PoolUpdated once they all do.
async fn check_strata_followed_the_roll(
    client: &Client,
    machines: &[Machine],
    seen: &[String],
) -> Result<()> {
    let count = machines.len();
    ensure!(
        seen.iter().any(|s| s.starts_with("False PoolUpdating:")
            && s.contains(&format!(" of {count} machines run "))),
        "Strata never said how far the roll got; it said: {seen:#?}"
    );
    // By name: each machine reboots for minutes, so Strata said so while it did ("worker-1 is
    // rebooting", "worker-0 and worker-1 are rebooting", one part of the message).
    let rebooting = |said: &str, name: &str| {
        said.split("; ").any(|part| {
            let names = part
                .strip_suffix(" is rebooting")
                .or_else(|| part.strip_suffix(" are rebooting"));
            names.is_some_and(|n| n.split([',', ' ']).any(|word| word == name))
        })
    };
    for m in machines {
        ensure!(
            seen.iter().any(|s| rebooting(s, &m.name)),
            "Strata never said {} was rebooting; it said: {seen:#?}",
            m.name
        );
    }
    wait_for("Strata's PoolUpdated", Duration::from_secs(120), || async {
        Ok(pool_updated_condition(client)
            .await?
            .starts_with("True PoolUpdated:")
            .then_some(()))
    })
    .await?;
    let metrics = leader_metrics(client).await?;
    let stage = |stage: &str| {
        metric(
            &metrics,
            &format!("strata_pool_machines{{pool=\"{POOL}\",stage=\"{stage}\"}}"),
        )
    };
    ensure!(
        stage("updated") == Some(count as f64) && stage("degraded") == Some(0.0),
        "strata_pool_machines: updated {:?}, degraded {:?}; want {count} and 0",
        stage("updated"),
        stage("degraded")
    );
    eprintln!("{POOL}: strata_pool_machines says {count} updated, 0 degraded");
    Ok(())
}

async fn booted_images(nodes: &Api<Node>, machines: &[Machine]) -> Result<Vec<String>> {
    let mut images = Vec::new();
    for m in machines {
        let node = nodes.get(&m.name).await?;
        let booted = node.annotations().get(BOOTED_IMAGE_ANNOTATION).cloned();
        images.push(booted.with_context(|| format!("{} reports no booted image", m.name))?);
    }
    Ok(images)
}

/// Each Node: current = desired = the rolled config, Done, schedulable, its booted image the pin.
async fn check_nodes(
    nodes: &Api<Node>,
    machines: &[Machine],
    rolled: &str,
    image: &str,
) -> Result<()> {
    for m in machines {
        let node = nodes.get(&m.name).await?;
        let a = node.annotations();
        let get = |k: &str| a.get(k).map(String::as_str).unwrap_or_default();
        ensure!(
            get(CURRENT_CONFIG) == rolled && get(DESIRED_CONFIG) == rolled && get(STATE) == "Done",
            "{}: annotations {a:?}",
            m.name
        );
        ensure!(
            get(BOOTED_IMAGE_ANNOTATION) == image,
            "{} booted {:?}, not {image}",
            m.name,
            get(BOOTED_IMAGE_ANNOTATION)
        );
        ensure!(
            !node.spec.and_then(|s| s.unschedulable).unwrap_or(false),
            "{} is still cordoned",
            m.name
        );
    }
    Ok(())
}

/// Inside each machine: rebooted, ostree's booted deployment is the pinned digest with the
/// release base's beside it, the fragment's packages are there and its unit ran.
async fn check_inside(
    cluster: &Cluster,
    machines: &[Machine],
    image: &str,
    boot_ids_before: &[String],
) -> Result<()> {
    let digest = image.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let script = "cat /proc/sys/kernel/random/boot_id; ostree admin status; \
        c=$(ostree admin status | awk '$1 == \"*\" {print $3}'); \
        ostree show --print-metadata-key=strata.dev/image-digest \"${c%.*}\"; \
        htop --version | head -1; tree --version; systemctl is-active sysstat.service";
    let answers = ssh_all(cluster, machines, script).await?;
    for ((m, inside), before) in machines.iter().zip(&answers).zip(boot_ids_before) {
        eprintln!("{}: inside:\n{inside}", m.name);
        let boot_id = inside.lines().next().unwrap_or_default();
        ensure!(boot_id != before.trim(), "{} did not reboot", m.name);
        ensure!(
            inside.contains(&format!("'{digest}'")),
            "{}: the booted deployment is not {digest}:\n{inside}",
            m.name
        );
        let deployments = inside
            .lines()
            .filter(|l| l.trim_start_matches(['*', ' ']).starts_with("strata "))
            .count();
        ensure!(
            deployments == 2,
            "{}: {deployments} deployments, not the new one and the rollback:\n{inside}",
            m.name
        );
        ensure!(
            inside.contains("htop ") && inside.contains("tree v"),
            "{}: the fragment's packages are missing:\n{inside}",
            m.name
        );
        ensure!(
            inside.lines().last() == Some("active"),
            "{}: sysstat.service is not active:\n{inside}",
            m.name
        );
    }
    Ok(())
}

async fn ssh_all(cluster: &Cluster, machines: &[Machine], command: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for m in machines {
        out.push(m.ssh(cluster, command, Duration::from_secs(300))?);
    }
    Ok(out)
}
