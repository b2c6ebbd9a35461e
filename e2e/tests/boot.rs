//! Images that boot, from the command line: `strata boot-check` makes the first-boot disk of an
//! image (the image's own ostree and GRUB, a GPT disk), boots it from UEFI firmware in QEMU and
//! reads what the system reports.
//!
//! - An image without an initramfs is refused before any boot, saying so.
//! - The boot itself is proved elsewhere, and not again here (it took four minutes of CI's
//!   90): the same customisation (a package, a unit, a module option) boots through the
//!   controller in `boot_check.rs` (the builder's `boot` step runs the same disk and check code
//!   as this command), a broken one fails there naming its unit, and `make bench`'s boot section
//!   runs this very command on the CoreOS-like base and fails unless it passes.
//!
//! Needs `STRATA_E2E`, root, buildah (e2e/ci-setup.sh installs it) and `STRATA_BIN`; no cluster,
//! no QEMU.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use strata_e2e::{e2e_run_or_skip, needs, repo_root, skip};

const TEST: &str = "boot_check_refuses_an_image_without_initramfs_before_any_boot";
/// Where the test's images are named in buildah's storage.
const NAME: &str = "localhost/strata-e2e-boot";

fn strata() -> Result<PathBuf> {
    Ok(PathBuf::from(std::env::var("STRATA_BIN").context(
        "STRATA_BIN is not set (run through `make e2e-test`)",
    )?))
}

/// The refusal comes before any disk is made or VM started: buildah (to read the image) and root
/// are all it needs.
fn tools_missing() -> Option<String> {
    let mut why = Vec::new();
    if !Command::new("sh")
        .args(["-c", "command -v buildah >/dev/null"])
        .status()
        .is_ok_and(|s| s.success())
    {
        why.push("buildah is not on PATH".to_string());
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

#[test]
fn boot_check_refuses_an_image_without_initramfs_before_any_boot() -> Result<()> {
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
        // No initramfs next to the kernel.
        let no_initramfs = build(
            work,
            "no-initramfs",
            "FROM localhost/strata-e2e-boot/base:latest\nRUN rm /usr/lib/modules/*/initramfs.img\n",
        )?;
        let started = std::time::Instant::now();
        let out = Command::new(strata()?)
            .args(["boot-check", &no_initramfs, "--work-dir"])
            .arg(work.join("check-no-initramfs"))
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success(),
            "an image without an initramfs passed the boot check: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // No verdict is printed for an image that cannot become a disk: the error says why.
        ensure!(
            out.stdout.is_empty() && stderr.contains("has a vmlinuz but no initramfs.img"),
            "strata boot-check did not say the initramfs is missing: {stderr}"
        );
        ensure!(
            !work.join("check-no-initramfs/disk.raw").exists(),
            "a disk was written for an image that cannot boot"
        );
        eprintln!(
            "{TEST}: refused in {:.0} s: {}",
            started.elapsed().as_secs_f64(),
            stderr.trim()
        );
        Ok(())
    })();
    // The test's images, the derived ones before the base they are built on.
    for tag in ["no-initramfs", "base"] {
        let _ = Command::new("buildah")
            .args(["rmi", &format!("{NAME}/{tag}:latest")])
            .output();
    }
    let _ = std::fs::remove_dir_all(&work);
    result
}
