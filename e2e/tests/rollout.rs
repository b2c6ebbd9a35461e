//! The pool's machines boot what Strata builds: two QEMU machines (`e2e/scripts/machines.sh`) join a
//! pool, as an administrator moves nodes into a custom pool (a node-role label); the release base is
//! the CoreOS-like image they booted. A MachineOSConfig with the package and systemd-unit examples
//! is built and pinned; the MCO stand-in tells the machines the new rendered config within the
//! pool's `maxUnavailable` (2 here: both at once), and the machine-config-daemon stand-in
//! (`strata_e2e::mcd`) has each machine pull the image by digest with the cluster's pull secret,
//! deploy it with ostree beside the booted deployment and reboot into it. Checked from outside
//! (each Node's annotations, the pool's counts and `status.configuration`, which moves only when
//! both machines run it) and inside each machine over ssh: the booted ostree deployment's image
//! digest is the pinned one, the previous deployment stays as the rollback, the fragment's packages
//! are installed and its unit is active. Meanwhile the MachineOSConfig's `PoolUpdated` says how
//! many machines run the image and names each machine while it reboots (`PoolUpdating`), then
//! `PoolUpdated` once all do; the controller's `strata_pool_machines` then counts both updated.
//!
//! One machine is reset in the middle of that first update (QMP `system_reset`, as a power cut):
//! it comes back on its old deployment, the daemon stand-in updates it again, and the roll ends as
//! for the other; the daemon's log says it went down mid-update.
//!
//! Then a release upgrade to the next release of the base (`os-image-next.sh`: five of its 48
//! layers changed), counted (`strata_e2e::machine_roll`): Strata holds the pool until the rebuild
//! is pinned so the machines roll once, not twice; every machine is told one rendered config and
//! powered on once (QEMU's supervisor sees each reboot), and fetches only the changed layers (it
//! keeps each layer as a commit of its own, as ostree-ext does, and the disk image made the
//! base's). A fragment edit's roll is the same path with one changed layer: `make bench`'s
//! machines section rolls one and reports each machine's bytes over that layer
//! (`node_bytes_over_changed_layers`, 1.03× in bench/RESULTS.md); it is not rolled again here,
//! where it took five minutes of CI's 90.
//!
//! Last, an image the machines cannot boot (its kernel panics on them; the boot check's VM boots
//! it): one machine at a time, the first falls back to its previous deployment (GRUB boot
//! counting, docs/machines.md) and is degraded, the roll stops there, and Strata says so.
//!
//! The release base is cluster-wide: this test binary runs alone, and puts the base back when it
//! ends; the machines leave the pool first, so nothing rolls them back.

use std::future::Future;
use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::{Client, ResourceExt};
use strata_crds::{BootCheck, BootCheckMode, MachineOSBuild};
use strata_e2e::deployed::{
    apply_config, create_push_secret, leader_metrics, machine_os_config, metric, set_release_base,
    with_release_base,
};
use strata_e2e::machine_roll::{
    MachinePool, Roll, Rolled, examples_fragment, pool_updated_condition,
};
use strata_e2e::machines::{self, Machine};
use strata_e2e::mcd::BOOTED_IMAGE_ANNOTATION;
use strata_e2e::mco_nodes::{
    CURRENT_CONFIG, DESIRED_CONFIG, NodeView, REASON, STATE, STATE_DEGRADED, STATE_WORKING,
};
use strata_e2e::util::{install_strata_crds, wait_for};
use strata_e2e::{Cluster, console, needs};

const POOL: &str = "e2e-machines";
/// The build on the 1.3 GiB base (its layers usually cached by earlier tests).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// Both machines (one vCPU each, software emulation): pull, commit, deploy, reboot.
const ROLL_TIMEOUT: Duration = Duration::from_secs(1800);
/// A boot under emulation, for machines still coming up when the test starts.
const BOOT_TIMEOUT: Duration = Duration::from_secs(1200);
/// How long a machine's update runs before the test resets it (see `reset_mid_update`).
const INTERRUPT_AFTER: Duration = Duration::from_secs(30);
/// A machine fetches the manifest, the config and the new layers: a little over the layers.
const MAX_FETCHED_OVER_CHANGED: f64 = 1.1;

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
    let pool = MachinePool {
        name: POOL,
        machines: &machines,
    };
    with_release_base(&client, &cluster.os_image, || async {
        let result = check(cluster, &client, &pool).await;
        // Out of the pool first: nothing then tells the machines to roll back.
        pool.remove(&client).await;
        result
    })
    .await
}

async fn check(cluster: &Cluster, client: &Client, pool: &MachinePool<'_>) -> Result<()> {
    let machines = pool.machines;
    let nodes: Api<Node> = Api::all(client.clone());
    for m in machines {
        wait_for(
            &format!("{}'s Node registered by the daemon stand-in", m.name),
            Duration::from_secs(300),
            || async { Ok(nodes.get_opt(&m.name).await?.map(|_| ())) },
        )
        .await?;
    }
    // Both machines at once: each update is minutes under emulation (one at a time,
    // maxUnavailable 1, is the unit tests' in mco_nodes.rs). The machines run the release base
    // already: the pool's first config completes without a reboot, once the daemon has checked
    // what each booted (minutes when an earlier run left them on another image).
    let base = pool
        .create(client, 2, &cluster.os_image, ROLL_TIMEOUT)
        .await?;
    let release = vec![cluster.os_image.clone(); machines.len()];
    wait_for(
        "the machines to report the release base as booted",
        Duration::from_secs(120),
        || async { Ok((booted_images(&nodes, machines).await? == release).then_some(())) },
    )
    .await?;

    let applied = first_roll(cluster, client, pool, &base).await?;

    let upgrade = || set_release_base(client, &cluster.os_image_next);
    let upgraded = roll_once(
        cluster,
        client,
        pool,
        ("a release upgrade", Some(MAX_FETCHED_OVER_CHANGED)),
        &applied,
        upgrade,
    )
    .await?;
    check_inside(
        cluster,
        machines,
        (&upgraded.image, 2),
        &[
            (
                "grep ^IMAGE_VERSION= /usr/lib/os-release",
                "IMAGE_VERSION=2",
            ),
            ("htop --version | head -1", "htop "),
            ("systemctl is-active sysstat.service", "active"),
        ],
    )
    .await?;

    failing_image(cluster, client, pool, &upgraded).await
}

/// Apply → build → pinned → both machines roll to it, one of them reset in the middle of its
/// update; Strata follows the roll machine by machine.
async fn first_roll(
    cluster: &Cluster,
    client: &Client,
    pool: &MachinePool<'_>,
    base: &Rolled,
) -> Result<Rolled> {
    let machines = pool.machines;
    let nodes: Api<Node> = Api::all(client.clone());
    let push_secret = format!("{POOL}-push");
    create_push_secret(client, &push_secret).await?;
    let config = machine_os_config(
        cluster,
        POOL,
        &push_secret,
        &examples_fragment(cluster, false)?,
    )?;
    let apply = || apply_config(client, &config);
    let interrupted = &machines[machines.len() - 1];
    // The reset waits for that machine's update to get under way while the roll goes on.
    let (roll, ()) = tokio::try_join!(
        pool.roll(cluster, client, base, apply, (BUILD_TIMEOUT, ROLL_TIMEOUT)),
        reset_mid_update(cluster, &nodes, interrupted),
    )?;
    say("the first apply", &roll);
    check_strata_followed_the_roll(client, machines, &roll.strata_said).await?;
    let daemon_log = std::fs::read_to_string(cluster.dir.join("logs/mcd.log"))?;
    let went_down = format!("{}: went down mid-update", interrupted.name);
    ensure!(
        daemon_log.contains(&went_down),
        "the daemon stand-in's log does not say {went_down:?}"
    );
    // The reset is a power-on more, unless it came after the deployment was made and the
    // machine booted into it at once; either way the machine was told the config once. It may
    // fetch again what the reset cut off: no upper bound.
    let power_ons = |name: &str| {
        if name == interrupted.name {
            1..=2
        } else {
            1..=1
        }
    };
    check_counts("the first apply", &roll, power_ons, None)?;
    let Rolled {
        image, rendered, ..
    } = &roll.to;
    check_nodes(&nodes, machines, rendered, image).await?;
    check_inside(
        cluster,
        machines,
        (image, 2),
        &[
            ("htop --version | head -1", "htop "),
            ("tree --version", "tree v"),
            ("systemctl is-active sysstat.service", "active"),
        ],
    )
    .await?;
    Ok(roll.to)
}

/// `change` makes Strata build the pool again; once the build is pinned the machines roll, and
/// each is told one rendered config, powered on once, and fetches at least the layers it lacked
/// and, with `max_fetched` (bytes fetched over the changed layers' bytes), no more than that.
async fn roll_once<F, Fut>(
    cluster: &Cluster,
    client: &Client,
    pool: &MachinePool<'_>,
    (what, max_fetched): (&str, Option<f64>),
    before: &Rolled,
    change: F,
) -> Result<Rolled>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let nodes: Api<Node> = Api::all(client.clone());
    let roll = pool
        .roll(
            cluster,
            client,
            before,
            change,
            (BUILD_TIMEOUT, ROLL_TIMEOUT),
        )
        .await?;
    say(what, &roll);
    check_counts(what, &roll, |_| 1..=1, max_fetched)?;
    check_nodes(&nodes, pool.machines, &roll.to.rendered, &roll.to.image).await?;
    Ok(roll.to)
}

/// A unit that panics the kernel early in the boot, on the local machines only (a file they carry
/// in `/etc`, `e2e/machines/etc`): the boot check's VM boots the same image without it, so the
/// image passes the check and is pinned, as an image that fails only on some hardware would.
const CRASH_ON_THE_MACHINES: &str = r#"RUN printf '%s\n' '[Unit]' \
      'Description=e2e: an image that panics the kernel on the local machines' \
      'ConditionPathExists=/etc/ssh/sshd_config.d/50-strata-machine.conf' \
      'DefaultDependencies=no' 'After=local-fs.target' \
      '[Service]' 'Type=oneshot' 'ExecStart=/bin/sh -c "echo c > /proc/sysrq-trigger"' \
      '[Install]' 'WantedBy=sysinit.target' > /usr/lib/systemd/system/e2e-panic.service && \
    systemctl enable e2e-panic.service
"#;

/// An image the machines cannot boot, one machine at a time (`maxUnavailable: 1`): Strata pins it
/// (it passed the boot check); the first machine deploys it and reboots, its kernel panics, GRUB's
/// boot counting boots the previous deployment and the machine drops the one that failed; the
/// daemon reports it degraded and the roll stops there — the other machine is never told.
/// Strata names the machine, the image and the daemon's reason, and counts it degraded.
async fn failing_image(
    cluster: &Cluster,
    client: &Client,
    pool: &MachinePool<'_>,
    before: &Rolled,
) -> Result<()> {
    let machines = pool.machines;
    let (first, rest) = machines.split_first().context("no machines")?;
    pool.set_max_unavailable(client, 1).await?;
    let fragment = examples_fragment(cluster, true)? + CRASH_ON_THE_MACHINES;
    let mut config = machine_os_config(cluster, POOL, &format!("{POOL}-push"), &fragment)?;
    // The check this image passes: what keeps an image that fails everywhere off the pool.
    config.spec.boot_check = Some(BootCheck {
        mode: Some(BootCheckMode::Enabled),
        ..BootCheck::default()
    });
    let console_before = console::read(&first.console).len();
    let apply = || apply_config(client, &config);
    let roll = pool
        .roll_until_degraded(
            cluster,
            client,
            before,
            apply,
            (BUILD_TIMEOUT, ROLL_TIMEOUT),
        )
        .await?;
    let what = "an image the machines cannot boot";
    say(what, &roll);
    let (target, image) = (&roll.to.rendered, &roll.to.image);
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let check = builds.get(&roll.to.build).await?.status.unwrap_or_default();
    let check = check.boot_check.unwrap_or_default();
    ensure!(
        check.passed && check.failed_units.is_empty(),
        "{}: the boot check did not pass: {check:?}",
        roll.to.build
    );
    eprintln!(
        "{POOL}: {} passed the boot check ({} s, {}) and was pinned",
        roll.to.build, check.seconds, check.accelerator
    );
    // Told the config, rebooted into it, panicked and powered on again. What it fetched is not
    // bounded: the new layer is a unit file, smaller than the manifest and config around it.
    check_counts(
        what,
        &Roll {
            machines: roll.machines[..1].to_vec(),
            ..roll.clone()
        },
        |_| 2..=2,
        None,
    )?;
    for m in &roll.machines[1..] {
        ensure!(
            m.configs.is_empty() && m.power_ons == 0,
            "{what}: {} was told {:?} and powered on {} times while {} failed",
            m.name,
            m.configs,
            m.power_ons,
            first.name
        );
    }
    let console = console::read(&first.console);
    let since = console.get(console_before..).unwrap_or_default();
    ensure!(
        since.contains("Kernel panic") && since.contains("sysrq"),
        "{}: no kernel panic on its console since the apply:\n{}",
        first.name,
        console::tail(since, 40)
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get(&first.name).await?;
    let a = node.annotations();
    let get = |k: &str| a.get(k).map(String::as_str).unwrap_or_default();
    let digest = |i: &str| {
        i.rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_default()
    };
    ensure!(
        get(DESIRED_CONFIG) == target
            && get(STATE) == STATE_DEGRADED
            && get(REASON).contains(&format!("expected target osImageURL {image:?}"))
            && get(BOOTED_IMAGE_ANNOTATION).contains(&digest(&before.image)),
        "{}: not degraded on {target} while booted on the previous image: {a:?}",
        first.name
    );
    for m in rest {
        let node = nodes.get(&m.name).await?;
        let desired = node.annotations().get(DESIRED_CONFIG).cloned();
        ensure!(
            desired.as_deref() == Some(before.rendered.as_str()),
            "{} was told {desired:?} while {} failed",
            m.name,
            first.name
        );
    }
    // Inside, once the boot's completion has run: the previous image booted alone (the
    // deployment that failed removed, after GRUB's fall-back), the count cleared.
    first.ssh(
        cluster,
        "for i in $(seq 150); do systemctl is-active -q strata-boot-complete.service && break; \
         sleep 2; done",
        Duration::from_secs(300),
    )?;
    check_inside(
        cluster,
        std::slice::from_ref(first),
        (&before.image, 1),
        &[
            (
                "journalctl -b -u strata-boot-complete.service --no-pager -o cat",
                "strata-boot-complete: the new deployment did not boot",
            ),
            (
                "grub-editenv /boot/grub/grubenv list | grep -c '^strata_boot_pending=[12]$' || true",
                "0",
            ),
        ],
    )
    .await?;
    // Strata: the machine, the image and the daemon's reason; counted degraded.
    let said = wait_for(
        "Strata's PoolDegraded",
        Duration::from_secs(120),
        || async {
            let said = pool_updated_condition(client, POOL).await?;
            Ok((said.starts_with("False PoolDegraded:")
                && said.contains(&format!("{} (expected target osImageURL", first.name))
                && said.contains(image.as_str()))
            .then_some(said))
        },
    )
    .await?;
    eprintln!("{POOL}: Strata says {said}");
    let metrics = leader_metrics(client).await?;
    let degraded = metric(
        &metrics,
        &format!("strata_pool_machines{{pool=\"{POOL}\",stage=\"degraded\"}}"),
    );
    ensure!(
        degraded == Some(1.0),
        "strata_pool_machines degraded: {degraded:?}, want 1"
    );
    Ok(())
}

/// Prints how `roll` went, machine by machine.
fn say(what: &str, roll: &Roll) {
    eprintln!(
        "{POOL}: {what}: pinned {} after {:.0} s, every machine runs {} after {:.0} s",
        roll.to.image,
        roll.pinned_after.as_secs_f64(),
        roll.to.rendered,
        roll.rolled_after.as_secs_f64()
    );
    for machine in &roll.machines {
        eprintln!("{}", machine.summary(roll.changed));
    }
}

/// Each machine of `roll` was told only the roll's config, powered on as often as `power_ons`
/// allows for it, and fetched at least the layers it lacked (a positive control of the
/// attribution by address) and, with `max_fetched`, no more than that many times them.
fn check_counts(
    what: &str,
    roll: &Roll,
    power_ons: impl Fn(&str) -> RangeInclusive<usize>,
    max_fetched: Option<f64>,
) -> Result<()> {
    let rendered = roll.to.rendered.as_str();
    let max = max_fetched.unwrap_or(f64::INFINITY);
    for machine in &roll.machines {
        let allowed = power_ons(&machine.name);
        ensure!(
            allowed.contains(&machine.power_ons) && machine.configs == [rendered],
            "{what}: {} was powered on {} times (want {allowed:?}) and told {:?} (want only \
             {rendered})",
            machine.name,
            machine.power_ons,
            machine.configs
        );
        let ratio = machine.fetched_over(roll.changed.1);
        ensure!(
            (1.0..=max).contains(&ratio),
            "{what}: {} fetched {ratio:.2}× the layers that changed (want 1–{max})",
            machine.name
        );
    }
    Ok(())
}

/// Resets `machine` in the middle of its update, as a power cut would: once its Node is `Working`
/// (after the build and the pin, when called beside the roll)
/// and its daemon has had `INTERRUPT_AFTER` to get the update under way (the fetch alone takes a
/// minute). The machine comes back on its old deployment and its daemon updates it again; the
/// roll the caller waits for then ends as for the others.
async fn reset_mid_update(cluster: &Cluster, nodes: &Api<Node>, machine: &Machine) -> Result<()> {
    let view = || async { Ok::<_, anyhow::Error>(NodeView::of(&nodes.get(&machine.name).await?)) };
    wait_for(
        &format!("{} to start its update", machine.name),
        BUILD_TIMEOUT + Duration::from_secs(300),
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
        Ok(pool_updated_condition(client, POOL)
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

/// Inside each machine: ostree's booted deployment is `image`'s digest, `deployments` in all (2:
/// the booted one and the rollback), and each of `checks` (a command, and the start of a line it
/// must print) holds.
async fn check_inside(
    cluster: &Cluster,
    machines: &[Machine],
    (image, deployments): (&str, usize),
    checks: &[(&str, &str)],
) -> Result<()> {
    let digest = image.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let mut script = String::from(
        "ostree admin status; c=$(ostree admin status | awk '$1 == \"*\" {print $3}'); \
         ostree show --print-metadata-key=strata.dev/image-digest \"${c%.*}\"",
    );
    for (i, (command, _)) in checks.iter().enumerate() {
        script.push_str(&format!("; echo '## check {i}'; {command} 2>&1"));
    }
    for m in machines {
        let inside = m.ssh(cluster, &script, Duration::from_secs(300))?;
        eprintln!("{}: inside:\n{inside}", m.name);
        let mut parts = inside.split("## check ");
        let status = parts.next().unwrap_or_default();
        ensure!(
            status.contains(&format!("'{digest}'")),
            "{}: the booted deployment is not {digest}:\n{inside}",
            m.name
        );
        let found = status
            .lines()
            .filter(|l| l.trim_start_matches(['*', ' ']).starts_with("strata "))
            .count();
        ensure!(
            found == deployments,
            "{}: {found} deployments, not {deployments}:\n{inside}",
            m.name
        );
        for ((command, want), out) in checks.iter().zip(parts) {
            ensure!(
                out.lines().skip(1).any(|l| l.starts_with(want)),
                "{}: `{command}` printed no line starting {want:?}:\n{inside}",
                m.name
            );
        }
    }
    Ok(())
}
