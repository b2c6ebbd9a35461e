//! A disk image artifact as a new machine gets it: fetched from the local plain-HTTP registry by
//! its digests (index → artifact manifest → blob, each checked), then booted the way a machine
//! boots, from UEFI firmware (OVMF) in QEMU with the disk on virtio, no `-kernel`, no network.
//! What the machine prints on its serial console is what the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::console;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn get_json(url: &str, accept: &str) -> Result<Value> {
    let out = Command::new("curl")
        .args(["-sf", "-H", &format!("Accept: {accept}"), url])
        .output()?;
    ensure!(out.status.success(), "GET {url} failed");
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// An artifact manifest of the disk image index `index` (`host:port/repo@sha256:…`), the one
/// whose digest is `manifest`, with its layer fetched to `dir`: (the manifest, the file).
pub fn fetch_disk(index: &str, manifest: &str, dir: &Path) -> Result<(Value, PathBuf)> {
    let (name, index_digest) = index.split_once('@').context("not pinned by digest")?;
    let (host, repo) = name.split_once('/').context("no registry host")?;
    let base = format!("http://{host}/v2/{repo}");
    let listed = get_json(
        &format!("{base}/manifests/{index_digest}"),
        "application/vnd.oci.image.index.v1+json",
    )?;
    ensure!(
        listed["manifests"]
            .as_array()
            .is_some_and(|m| m.iter().any(|d| d["digest"] == manifest)),
        "index {index} does not list {manifest}: {listed}"
    );
    let artifact = get_json(
        &format!("{base}/manifests/{manifest}"),
        "application/vnd.oci.image.manifest.v1+json",
    )?;
    let layer = &artifact["layers"][0];
    let digest = layer["digest"].as_str().context("no layer")?;
    let file = dir.join("disk.qcow2");
    let out = Command::new("curl")
        .args(["-sfL", "-o"])
        .arg(&file)
        .arg(format!("{base}/blobs/{digest}"))
        .output()?;
    ensure!(out.status.success(), "GET blob {digest} failed");
    let sum = Command::new("sha256sum").arg(&file).output()?;
    let sum = String::from_utf8_lossy(&sum.stdout);
    let got = format!(
        "sha256:{}",
        sum.split_whitespace().next().unwrap_or_default()
    );
    ensure!(got == digest, "blob {digest} arrived as {got}");
    Ok((artifact, file))
}

/// A VM booting `disk` from firmware; killed when dropped.
pub struct FirstBoot {
    child: Child,
    pub console: PathBuf,
}

impl Drop for FirstBoot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FirstBoot {
    /// Powers on a VM with `disk` (qcow2, opened copy-on-write) in software emulation.
    pub fn start(disk: &Path, dir: &Path) -> Result<Self> {
        let vars = dir.join("vars.fd");
        std::fs::copy(OVMF_VARS, &vars).context("OVMF (Debian's ovmf) is not installed")?;
        let console = dir.join("console.log");
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-smp", "1"])
            .args(["-m", "2048", "-nographic", "-no-reboot", "-nic", "none"])
            .args(["-monitor", "none"])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()))
            .arg("-drive")
            .arg(format!(
                "file={},format=qcow2,if=virtio,snapshot=on",
                disk.display()
            ))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting qemu-system-x86_64")?;
        Ok(Self { child, console })
    }

    /// Waits until the console shows every one of `lines` (substrings), or fails with its end.
    pub fn wait_for(&mut self, lines: &[&str], timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let text = console::read(&self.console);
            if lines.iter().all(|l| text.contains(l)) {
                return Ok(text);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the VM stopped ({status}) before {lines:?}; console:\n{}",
                    console::tail(&text, 30)
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "no {lines:?} on the console in {timeout:?}; console:\n{}",
                    console::tail(&text, 30)
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}
