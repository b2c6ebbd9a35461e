//! Images that boot, from the command line: `strata boot-check` makes the first-boot disk of an
//! image (the image's own ostree and GRUB, a GPT disk), boots it from UEFI firmware in QEMU and
//! reads what the system reports.
//!
//! - The CoreOS-like base with a fragment's worth of changes (a systemd unit enabled, a kernel
//!   module loaded with an option from modprobe.d) reaches multi-user.target with no failed unit
//!   (an empty baseline: the base itself boots clean), the unit is active and the option took.
//! - A broken image failing the check, naming its unit, is proved in the cluster, through the
//!   controller (`boot_check.rs`).
//! - An image without an initramfs is refused before any boot, saying so.
//!
//! Needs `STRATA_E2E`, root, buildah, qemu-system-x86_64, OVMF, mtools, sfdisk, mke2fs
//! (e2e/ci-setup.sh installs them) and `STRATA_BIN`; no cluster. Each boot takes about 3 minutes
//! in software emulation (docs/measurements.md), so this boots once.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use strata_e2e::{e2e_run_or_skip, needs, repo_root, skip};

const TEST: &str = "boot_check_passes_a_customised_image_and_refuses_one_without_initramfs";
/// Where the test's images are named in buildah's storage.
const NAME: &str = "localhost/strata-e2e-boot";

fn strata() -> Result<PathBuf> {
    Ok(PathBuf::from(std::env::var("STRATA_BIN").context(
        "STRATA_BIN is not set (run through `make e2e-test`)",
    )?))
}

fn tools_missing() -> Option<String> {
    let missing: Vec<&str> = [
        "buildah",
        "qemu-system-x86_64",
        "qemu-img",
        "mcopy",
        "sfdisk",
        "mke2fs",
    ]
    .into_iter()
    .filter(|tool| {
        !Command::new("sh")
            .args(["-c", "command -v \"$1\" >/dev/null", "_", tool])
            .status()
            .is_ok_and(|s| s.success())
    })
    .collect();
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!("not on PATH: {}", missing.join(", ")));
    }
    if !Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists() {
        why.push("no OVMF firmware (Debian's ovmf)".to_string());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    if String::from_utf8_lossy(&uid).trim() != "0" {
        why.push("not root".to_string());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The CoreOS-like base in buildah's storage, as `NAME/base` (build-os-image.sh's cached OCI
/// layout; buildah cannot name an image from a path with a dot in it, hence the link).
fn base_image(work: &Path) -> Result<String> {
    let layout = run(&mut Command::new(
        repo_root().join("e2e/scripts/build-os-image.sh"),
    ))?;
    let layout = layout
        .lines()
        .last()
        .context("build-os-image.sh printed nothing")?;
    let link = work.join("os-coreos");
    std::os::unix::fs::symlink(layout, &link)?;
    let base = format!("{NAME}/base:latest");
    run(Command::new("buildah")
        .args(["pull", "--quiet"])
        .arg(format!("oci:{}:latest", link.display())))
    .and_then(|id| run(Command::new("buildah").args(["tag", &id, &base])))?;
    // Only the test's own name stays (the cleanup removes it): the pull named the image after
    // the link's path.
    if let Err(e) =
        run(Command::new("buildah").args(["rmi", &format!("localhost{}:latest", link.display())]))
    {
        eprintln!("{TEST}: the pulled image keeps its path name: {e:#}");
    }
    Ok(base)
}

/// Builds `containerfile` as `NAME/<tag>`.
fn build(work: &Path, tag: &str, containerfile: &str) -> Result<String> {
    let dir = work.join(tag);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("Containerfile"), containerfile)?;
    let name = format!("{NAME}/{tag}:latest");
    run(Command::new("buildah")
        .args([
            "bud",
            "--quiet",
            "--pull=never",
            "--layers=false",
            "-t",
            &name,
        ])
        .arg(&dir))?;
    Ok(name)
}

/// `strata boot-check`: its JSON and whether it passed.
fn boot_check(work: &Path, image: &str, extra: &[&str]) -> Result<(bool, Value)> {
    let dir = work.join(format!(
        "check-{}",
        image.rsplit('/').next().unwrap_or("x").replace(':', "-")
    ));
    let out = Command::new(strata()?)
        .args(["boot-check", image, "--timeout", "900", "--work-dir"])
        .arg(&dir)
        .args(extra)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("boot-check printed no verdict; stderr: {stderr}"))?;
    eprintln!(
        "{TEST}: {image}: passed={} in {:.0} s ({}), reason: {}",
        json["passed"],
        json["seconds"].as_f64().unwrap_or(0.0),
        json["accel"],
        json["reason"]
    );
    Ok((out.status.success(), json))
}

const CUSTOM: &str = "\
FROM localhost/strata-e2e-boot/base:latest
RUN printf '[Unit]\\nDescription=Strata e2e hello\\n[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/echo hello from a fragment\\n[Install]\\nWantedBy=multi-user.target\\n' > /usr/lib/systemd/system/strata-hello.service \\
 && systemctl enable strata-hello.service \\
 && echo 'options nbd nbds_max=3' > /etc/modprobe.d/strata-nbd.conf \\
 && echo nbd > /etc/modules-load.d/strata-nbd.conf
";

#[test]
fn boot_check_passes_a_customised_image_and_refuses_one_without_initramfs() -> Result<()> {
    needs!(e2e_run_or_skip(TEST));
    if let Some(why) = tools_missing() {
        skip(TEST, &why);
        return Ok(());
    }
    // Not under a dot directory (see base_image); removed at the end.
    let work = PathBuf::from(format!("/var/tmp/strata-e2e-boot-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = (|| -> Result<()> {
        let work = work.as_path();
        base_image(work)?;
        let custom = build(work, "custom", CUSTOM)?;

        // Refused before any boot: no initramfs next to the kernel.
        let no_initramfs = build(
            work,
            "no-initramfs",
            "FROM localhost/strata-e2e-boot/base:latest\nRUN rm /usr/lib/modules/*/initramfs.img\n",
        )?;
        let (passed, _) = boot_check(work, &no_initramfs, &[]).or_else(|e| {
            // No verdict is printed for an image that cannot become a disk: the error says why.
            let msg = format!("{e:#}");
            ensure!(
                msg.contains("has a vmlinuz but no initramfs.img"),
                "unexpected: {msg}"
            );
            Ok::<_, anyhow::Error>((false, Value::Null))
        })?;
        ensure!(
            !passed,
            "an image without an initramfs passed the boot check"
        );

        let (passed, json) = boot_check(
            work,
            &custom,
            &[
                "--expect-active",
                "strata-hello.service",
                "--check-command",
                // The module loaded at boot with the option (the default is 16).
                "test \"$(cat /sys/module/nbd/parameters/nbds_max)\" = 3",
            ],
        )?;
        ensure!(
            passed,
            "the customised image failed its boot check: {json:#}"
        );
        ensure!(json["report"]["state"] == "running", "{json:#}");
        ensure!(
            json["report"]["failedUnits"] == serde_json::json!([]),
            "{json:#}"
        );
        Ok(())
    })();
    // The test's images, the derived ones before the base they are built on.
    for tag in ["no-initramfs", "custom", "base"] {
        let _ = Command::new("buildah")
            .args(["rmi", &format!("{NAME}/{tag}:latest")])
            .output();
    }
    let _ = std::fs::remove_dir_all(&work);
    result
}
