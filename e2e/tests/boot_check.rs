//! The boot check, through the deployed controller, on the CoreOS-like base: every build boots in
//! its builder pod before anything is pushed or pinned (QEMU from UEFI firmware, the disk a new
//! machine would boot; software emulation here, no KVM in pods).
//!
//! - A fragment that installs a package from the signed local repository, adds and enables a
//!   systemd unit and sets a kernel module option boots: the check asks for the unit to be active
//!   and the module option to have taken, the build records a passed check, and the pool is
//!   pinned.
//! - A fragment with a broken fstab line that also masks a unit the system needs
//!   (`systemd-tmpfiles-setup.service`: the directories services expect under `/var` are never
//!   made) fails the build with `BootFailed` naming the mount unit, the units that failed for
//!   the masked one, and the masked unit (after booting the base once to learn that the base
//!   itself fails nothing), with a Warning Event of that reason; the pool is never pointed at it.
//!   Both breakers share one boot.
//! - A fragment that removes the initramfs fails with `BootFailed` before any VM starts.
//! - A fragment whose module load panics the kernel (a modprobe.d `install` command standing for
//!   a driver option that crashes it) fails with `BootFailed` naming the panic and the unit that
//!   was loading modules, well before the timeout.
//! - The passing config also asks for a first-boot disk image: after the pin a Job pushes it as an
//!   OCI artifact beside the image; fetched from the registry by the digests the build's status
//!   names, it boots from UEFI firmware in QEMU on the host, and on its first boot the fragment's
//!   unit runs the fragment's package (its output on the serial console).
//!
//! The release base is cluster-wide: this binary runs alone, and puts the base back when it ends.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kube::api::Api;
use strata_crds::{
    BootCheck, BootCheckMode, BuildPhase, DiskImage, DiskImageFormat, DiskImagePhase,
    MachineOSBuild,
};
use strata_e2e::deployed::{
    apply_config, config_events, create_pool, create_push_secret, current_build, delete_config,
    delete_pool, ended_build, machine_configs, machine_os_config, pinned_by, with_release_base,
};
use strata_e2e::first_boot::{FirstBoot, fetch_disk};
use strata_e2e::util::install_strata_crds;
use strata_e2e::{Cluster, needs};

const PASSING: &str = "e2e-boot-ok";
const FAILING: &str = "e2e-boot-broken";
/// A build, the boot disk (~1.5 min) and a boot (~3 min), twice for the failing config (its
/// base is booted too), on 2 cores in software emulation.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1500);
/// The disk image Job after the pin: the pull, the disk (~1.5 min) and its qcow2 (~1.5 min), the
/// push; it runs beside the failing builds.
const DISK_IMAGE_TIMEOUT: Duration = Duration::from_secs(1500);
/// A first boot in software emulation (~3 min).
const FIRST_BOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// A package from the local repository (as `e2e/examples/package-install.yaml` installs it), a
/// unit, and a module loaded with an option.
fn customising_fragment(package_repo: &str) -> String {
    format!(
        "ARG PACKAGE_REPO={package_repo}\n\
         RUN printf 'Types: deb\\nURIs: %s\\nSuites: strata\\nComponents: main\\nSigned-By: /etc/apt/keyrings/strata-local.asc\\n' \
         \"$PACKAGE_REPO\" > /etc/apt/sources.list.d/strata-local.sources && \\\n \
         apt-get update && apt-get install -y --no-install-recommends tree && rm -rf /run/apt\n\
         RUN printf '[Unit]\\nDescription=Strata e2e hello\\n[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/usr/bin/tree /etc/systemd\\nExecStartPost=/usr/bin/tree --version\\nStandardOutput=journal+console\\n[Install]\\nWantedBy=multi-user.target\\n' \
         > /usr/lib/systemd/system/strata-hello.service && \\\n \
         systemctl enable strata-hello.service && \\\n \
         echo 'options nbd nbds_max=3' > /etc/modprobe.d/strata-nbd.conf && \\\n \
         echo nbd > /etc/modules-load.d/strata-nbd.conf\n"
    )
}

#[tokio::test]
async fn builds_boot_before_the_pin_and_a_broken_one_never_reaches_the_pool() -> Result<()> {
    let test = "builds_boot_before_the_pin_and_a_broken_one_never_reaches_the_pool";
    let (cluster, _builder) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    with_release_base(&client, &cluster.os_image, || async {
        let result = check(cluster, &client).await;
        for pool in [PASSING, FAILING] {
            let _ = delete_config(&client, pool).await;
            delete_pool(&client, pool).await;
        }
        result
    })
    .await
}

async fn check(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let push_secret = "e2e-boot-push";
    create_push_secret(client, push_secret).await?;
    for pool in [PASSING, FAILING] {
        create_pool(client, pool).await?;
    }
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let customised = customising_fragment(&cluster.package_repo);

    // Passes: the unit active, the module option taken, no failed unit.
    let mut config = machine_os_config(cluster, PASSING, push_secret, &customised)?;
    config.spec.boot_check = Some(BootCheck {
        mode: Some(BootCheckMode::Enabled),
        active_units: vec!["strata-hello.service".into()],
        commands: vec![
            // The module loaded at boot with the option (its default is 16), and the package's
            // program runs.
            "test \"$(cat /sys/module/nbd/parameters/nbds_max)\" = 3".into(),
            "tree --version".into(),
        ],
        ..BootCheck::default()
    });
    config.spec.disk_image = Some(DiskImage::default());
    apply_config(client, &config).await?;
    let build = current_build(client, PASSING, None).await?;
    let image = pinned_by(client, BUILD_TIMEOUT, PASSING, &build).await?;
    let passing_build = build.clone();
    let status = builds.get(&build).await?.status.unwrap_or_default();
    let check = status.boot_check.clone().unwrap_or_default();
    ensure!(
        check.passed && check.failed_units.is_empty() && check.accelerator == "TCG",
        "{build}: boot check {check:?}"
    );
    ensure!(
        status.phases.iter().any(|p| p.phase == "boot"),
        "{build}: no boot step in {:?}",
        status.phases
    );
    eprintln!(
        "ok: {build} booted in {} s ({}) and was pinned: {image}",
        check.seconds, check.accelerator
    );

    // Fails: a broken fstab line and a masked unit the system needs, on the same customisation.
    let broken = format!(
        "{customised}RUN echo 'LABEL=boot /var/broken xfs defaults 0 2' >> /etc/fstab && \\\n \
         systemctl mask systemd-tmpfiles-setup.service\n"
    );
    let mut config = machine_os_config(cluster, FAILING, push_secret, &broken)?;
    config.spec.boot_check = Some(BootCheck {
        mode: Some(BootCheckMode::Enabled),
        ..BootCheck::default()
    });
    apply_config(client, &config).await?;
    let build = current_build(client, FAILING, None).await?;
    let ended = ended_build(client, &build, BUILD_TIMEOUT).await?;
    let status = ended.status.clone().unwrap_or_default();
    let failure = status.failure.clone().unwrap_or_default();
    ensure!(
        ended.phase() == Some(BuildPhase::Failed) && failure.reason == "BootFailed",
        "{build} ended {:?}: {failure:?}",
        ended.phase()
    );
    ensure!(
        failure.message.contains("var-broken.mount")
            && failure
                .message
                .contains("masked units the boot asked for: systemd-tmpfiles-setup.service"),
        "the failure does not name the mount unit and the masked unit: {}",
        failure.message
    );
    let check = status.boot_check.clone().unwrap_or_default();
    ensure!(
        !check.passed
            && check.failed_units.contains(&"var-broken.mount".to_string())
            // What the masked unit broke: more than the mount.
            && check.failed_units.len() > 1
            && check.base_image_failed_units.is_some(),
        "{build}: boot check {check:?}"
    );
    ensure!(
        status.digested_image_push_spec.is_none(),
        "a build that did not boot was pushed: {:?}",
        status.digested_image_push_spec
    );
    let events = config_events(client, FAILING).await?;
    ensure!(
        events.iter().any(|(ty, reason, note)| ty == "Warning"
            && reason == "BootFailed"
            && note.contains("var-broken.mount")),
        "no BootFailed Warning Event naming the unit: {events:?}"
    );
    let pinned = machine_configs(client)
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .any(|mc| {
            mc.metadata
                .labels
                .unwrap_or_default()
                .get("strata.dev/machine-os-config")
                .is_some_and(|c| c == FAILING)
        });
    ensure!(
        !pinned,
        "pool {FAILING} got a MachineConfig from a build that did not boot"
    );
    eprintln!(
        "ok: {build} failed BootFailed: {} (base fails {:?} by itself)",
        failure.message, check.base_image_failed_units
    );

    // Refused before any boot: no initramfs next to the kernel.
    let no_initramfs = format!("{customised}RUN rm /usr/lib/modules/*/initramfs.img\n");
    apply_config(
        client,
        &machine_os_config(cluster, FAILING, push_secret, &no_initramfs).map(|mut c| {
            c.spec.boot_check = Some(BootCheck {
                mode: Some(BootCheckMode::Enabled),
                ..BootCheck::default()
            });
            c
        })?,
    )
    .await?;
    let refused = current_build(client, FAILING, Some(&build)).await?;
    let ended = ended_build(client, &refused, BUILD_TIMEOUT).await?;
    let failure = ended
        .status
        .clone()
        .and_then(|s| s.failure)
        .unwrap_or_default();
    ensure!(
        failure.reason == "BootFailed" && failure.message.contains("no initramfs.img"),
        "{refused}: {failure:?}"
    );

    // Fails fast: loading a module panics the kernel.
    let panics = format!(
        "{customised}RUN echo 'install nbd /bin/sh -c \"echo c > /proc/sysrq-trigger\"' \
         > /etc/modprobe.d/strata-crash.conf && echo nbd > /etc/modules-load.d/strata-crash.conf\n"
    );
    apply_config(
        client,
        &machine_os_config(cluster, FAILING, push_secret, &panics).map(|mut c| {
            c.spec.boot_check = Some(BootCheck {
                mode: Some(BootCheckMode::Enabled),
                ..BootCheck::default()
            });
            c
        })?,
    )
    .await?;
    let crashed = current_build(client, FAILING, Some(&refused)).await?;
    let ended = ended_build(client, &crashed, BUILD_TIMEOUT).await?;
    let status = ended.status.clone().unwrap_or_default();
    let failure = status.failure.clone().unwrap_or_default();
    let check = status.boot_check.clone().unwrap_or_default();
    ensure!(
        failure.reason == "BootFailed"
            && failure.message.contains("the kernel panicked")
            && failure.message.contains("systemd-modules-load.service")
            && check.seconds < 600,
        "{crashed}: {failure:?} after {} s",
        check.seconds
    );
    eprintln!(
        "ok: {crashed} failed BootFailed in {} s: {}",
        check.seconds, failure.message
    );
    first_boot_of_the_disk_image(client, &passing_build, &image).await
}

/// The passing build's disk image (its Job ran after the pin, beside the builds above): pushed
/// beside the image, it boots from firmware, and on first boot the fragment's unit runs the
/// fragment's package.
async fn first_boot_of_the_disk_image(
    client: &kube::Client,
    build: &str,
    image: &str,
) -> Result<()> {
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let start = std::time::Instant::now();
    let disk = loop {
        let status = builds.get(build).await?.status.unwrap_or_default();
        match status.disk_image {
            Some(d) if d.phase == DiskImagePhase::Succeeded => break d,
            Some(d) if d.phase == DiskImagePhase::Failed => bail!("{build}: disk image {d:?}"),
            other => ensure!(
                start.elapsed() < DISK_IMAGE_TIMEOUT,
                "{build}: no disk image in {DISK_IMAGE_TIMEOUT:?}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let index = disk.image.clone().unwrap_or_default();
    ensure!(
        index.starts_with(image.split('@').next().unwrap_or_default()),
        "{build}: the disk image {index} is not beside {image}"
    );
    let file = disk.files.first().context("no file")?;
    ensure!(
        file.format == DiskImageFormat::Qcow2 && disk.files.len() == 1,
        "{build}: files {:?}",
        disk.files
    );
    let dir = tempfile_dir("strata-e2e-first-boot")?;
    let (artifact, qcow2) = fetch_disk(&index, &file.manifest, &dir)?;
    let image_digest = image.split('@').nth(1).unwrap_or_default();
    ensure!(
        artifact["artifactType"] == "application/vnd.strata.disk-image.v1"
            && artifact["subject"]["digest"] == image_digest
            && artifact["layers"][0]["mediaType"]
                == "application/vnd.strata.disk-image.layer.v1.qcow2",
        "{build}: the artifact manifest {artifact}"
    );
    let size = std::fs::metadata(&qcow2)?.len();
    ensure!(
        i64::try_from(size)? == file.size_bytes,
        "{build}: {size} bytes fetched, status says {}",
        file.size_bytes
    );
    eprintln!(
        "ok: {build}'s disk image {index}: qcow2 {} MiB in {:?} s; booting it from firmware",
        size >> 20,
        disk.seconds
    );
    let booted = tokio::task::spawn_blocking(move || {
        let mut vm = FirstBoot::start(&qcow2, &dir)?;
        // The unit's ExecStartPost runs the package's program once the unit's own command
        // succeeded; the login prompt comes with multi-user.target's getty. (systemd's own
        // "Reached target multi-user.target" line is not reliable: once the getty owns the
        // serial console, systemd may print no more status there.)
        let text = vm.wait_for(&["tree v", "login:"], FIRST_BOOT_TIMEOUT);
        let _ = std::fs::remove_dir_all(&dir);
        text
    })
    .await??;
    let tree = booted
        .lines()
        .find(|l| l.contains("tree v"))
        .unwrap_or_default();
    eprintln!("ok: the disk image's first boot ran the fragment's unit: {tree}");
    Ok(())
}

fn tempfile_dir(prefix: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
