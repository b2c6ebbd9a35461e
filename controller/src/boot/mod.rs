//! Images that boot: a first-boot disk image made from an OS image with the image's own ostree
//! and GRUB ([`disk`]), and a boot check that starts it in a VM and reads what the system reports
//! ([`vm`], [`report`], [`check`]).
//!
//! The disk is what `bootc install to-disk` and bootc-image-builder make: GPT with an EFI system
//! partition (GRUB's EFI binary), `/boot` (ostree's kernels, boot loader entries and `grub.cfg`)
//! and root (the ostree sysroot: the repository and one deployment). The firmware (OVMF) starts
//! GRUB, GRUB reads the menu ostree generated, the initramfs's `ostree-prepare-root` mounts the
//! deployment. No step plays the boot loader: the VM boots from the disk's firmware path.

pub mod check;
pub mod disk;
pub mod report;
pub mod vm;

/// Errors of making or booting a disk image: what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A tool (buildah, ostree in the image, mke2fs, qemu, …) could not start or exited non-zero.
    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },
    /// A file of the disk or the VM could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The image cannot become a bootable disk (no kernel, two kernels, no initramfs, …).
    #[error("the image cannot boot: {0}")]
    Image(String),
}

impl BootError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        BootError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Runs a command, returning its stdout; a non-zero exit is [`BootError::Tool`] with the tail
/// of its stderr.
pub(crate) fn run_tool(cmd: &mut std::process::Command) -> Result<String, BootError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| BootError::Tool {
        tool: tool.clone(),
        detail: format!("cannot start: {e}"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(BootError::Tool {
            tool,
            detail: format!("{}: {}", out.status, tail.join("\n")),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
