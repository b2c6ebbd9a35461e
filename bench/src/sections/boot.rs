//! Images that boot: `strata disk-image` and `strata boot-check` on the CoreOS-like base, from the
//! cluster's registry (docs/booting.md). Software emulation on these machines (their KVM is PVM).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use super::{Bench, State};
use crate::report::{Report, bytes};

impl Bench<'_> {
    /// One disk image (raw and qcow2) and one boot check of the base.
    pub async fn boot(&self, state: &mut State, report: &mut Report) -> Result<()> {
        let base = self.base(state).await?;
        let image = format!("docker://{}", base.image);
        let work =
            std::path::PathBuf::from(format!("/var/tmp/strata-bench-boot-{}", std::process::id()));
        let result = self.boot_figures(&image, &work, base.compressed_bytes(), report);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn boot_figures(
        &self,
        image: &str,
        work: &std::path::Path,
        image_bytes: u64,
        report: &mut Report,
    ) -> Result<()> {
        let started = Instant::now();
        let made = strata_json(
            Command::new(&self.strata_bin)
                .args(["disk-image", image, "--tls-verify=false", "--output"])
                .arg(work.join("disk")),
        )?;
        let disk_seconds = started.elapsed().as_secs_f64();
        let qcow2 = made["qcow2Bytes"].as_u64().context("no qcow2Bytes")?;
        let raw = made["rawAllocatedBytes"]
            .as_u64()
            .context("no rawAllocatedBytes")?;
        eprintln!(
            "bench: disk image of {image}: {disk_seconds:.0} s ({}), qcow2 {}, raw {} allocated of {} MiB",
            made["seconds"],
            bytes(qcow2 as f64),
            bytes(raw as f64),
            made["diskMib"]
        );
        report.key("disk_image_seconds", disk_seconds);
        report.key(
            "disk_image_over_image_size",
            qcow2 as f64 / image_bytes as f64,
        );
        report.key("disk_image_qcow2_bytes", qcow2);
        report.key("disk_image_raw_allocated_bytes", raw);
        report.key("disk_image_phases_seconds", made["seconds"].clone());

        let checked = strata_json(
            Command::new(&self.strata_bin)
                .args(["boot-check", image, "--tls-verify=false", "--work-dir"])
                .arg(work.join("check")),
        )?;
        ensure!(
            checked["passed"] == true,
            "the base failed its boot check: {checked:#}"
        );
        let boot = checked["seconds"].as_f64().context("no seconds")?;
        eprintln!(
            "bench: boot check: {boot:.0} s to the report ({})",
            checked["accel"]
        );
        report.key("boot_check_seconds", boot);
        report.key("boot_check_accel", checked["accel"].clone());
        Ok(())
    }
}

/// Runs a strata subcommand that prints JSON.
fn strata_json(cmd: &mut Command) -> Result<Value> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{cmd:?} ({}) printed no JSON: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
