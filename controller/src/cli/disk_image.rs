//! `strata disk-image` and `strata boot-check`: the first-boot disk image of an OS image, and
//! its boot in a VM, from the command line (root, buildah, the image's own ostree and GRUB;
//! `docs/booting.md`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::boot::check;
use crate::boot::disk::{self, Format};
use crate::boot::report::Expectations;
use crate::boot::vm::Accel;

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The OS image, as buildah names it: docker://REPO@sha256:…, oci:DIR[:TAG], or a name in
    /// buildah's storage.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Registry credentials (a docker config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Verify the registry's TLS certificate.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub tls_verify: bool,
    /// The root partition's size (default: twice the sysroot plus 1 GiB, room for an update).
    #[arg(long, value_name = "MIB")]
    pub root_size_mib: Option<u64>,
    /// An extra kernel argument (repeatable).
    #[arg(long = "karg", value_name = "ARG")]
    pub kernel_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DiskImageArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// The directory the disk images are written to (disk.raw, disk.qcow2).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// The formats to write (repeatable).
    #[arg(long = "format", value_enum, default_values_t = [Format::Raw, Format::Qcow2])]
    pub formats: Vec<Format>,
    /// A text file written into the deployment's `/etc`, as Ignition writes a machine's files
    /// on its first boot: DEST relative to `/etc`, SOURCE a file here whose mode is kept
    /// (repeatable).
    #[arg(long = "etc-file", value_name = "DEST=SOURCE", value_parser = parse_etc_file)]
    pub etc_files: Vec<(String, PathBuf)>,
    /// Also keep each of the image's layers as an ostree commit of its own (refs
    /// `strata/layers/<diff ID>`), as ostree-ext does when it imports an image, so an update that
    /// imports the same way fetches only the layers the machine lacks (the local cluster's
    /// machines do). Adds the layers' import to the disk's making.
    #[arg(long)]
    pub layer_commits: bool,
}

/// `DEST=SOURCE`, DEST a relative path that stays inside `/etc`.
fn parse_etc_file(arg: &str) -> Result<(String, PathBuf), String> {
    let (dest, source) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not DEST=SOURCE"))?;
    let escapes = dest
        .split('/')
        .any(|c| c == ".." || c.is_empty() || c == ".");
    if dest.starts_with('/') || escapes {
        return Err(format!(
            "{dest:?} must be a path relative to /etc, without empty, . or .. parts"
        ));
    }
    Ok((dest.to_string(), PathBuf::from(source)))
}

/// The `--etc-file` entries, read.
fn etc_entries(files: &[(String, PathBuf)]) -> Result<Vec<disk::EtcEntry>, String> {
    use std::os::unix::fs::PermissionsExt;
    files
        .iter()
        .map(|(dest, source)| {
            let read = |e: std::io::Error| format!("--etc-file {dest}: {}: {e}", source.display());
            let content = std::fs::read_to_string(source).map_err(read)?;
            let mode = std::fs::metadata(source)
                .map_err(read)?
                .permissions()
                .mode()
                & 0o7777;
            Ok(disk::EtcEntry::file(dest, content, mode))
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct BootCheckArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Where the disk, the firmware variables and the console log go (kept).
    #[arg(short, long, value_name = "DIR")]
    pub work_dir: PathBuf,
    /// How long the boot may take.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    /// The target the system must reach.
    #[arg(long, default_value = "multi-user.target")]
    pub target: String,
    /// A unit that must be active after boot (repeatable).
    #[arg(long = "expect-active", value_name = "UNIT")]
    pub active_units: Vec<String>,
    /// A shell command that must exit 0 after boot, run as root (repeatable).
    #[arg(long = "check-command", value_name = "COMMAND")]
    pub commands: Vec<String>,
    /// A unit the base image itself fails, not held against this image (repeatable).
    #[arg(long = "baseline-failed", value_name = "UNIT")]
    pub baseline_failed: Vec<String>,
    /// KVM or software emulation.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
}

fn request(args: &ImageArgs, output: PathBuf, formats: Vec<Format>) -> disk::Request {
    disk::Request {
        image: args.image.clone(),
        output,
        formats,
        authfile: args.authfile.clone(),
        tls_verify: args.tls_verify,
        root_mib: args.root_size_mib,
        kernel_args: args.kernel_args.clone(),
        etc_files: Vec::new(),
        layer_commits: false,
        buildah: disk::Buildah::default(),
    }
}

pub fn run_disk_image(args: &DiskImageArgs) -> ExitCode {
    let mut req = request(&args.image, args.output.clone(), args.formats.clone());
    req.layer_commits = args.layer_commits;
    match etc_entries(&args.etc_files) {
        Ok(entries) => req.etc_files = entries,
        Err(err) => {
            eprintln!("strata disk-image: {err}");
            return ExitCode::FAILURE;
        }
    }
    match disk::make(&req) {
        Ok(made) => print_json(&made),
        Err(err) => {
            eprintln!("strata disk-image: {}: {err}", args.image.image);
            ExitCode::FAILURE
        }
    }
}

pub fn run_boot_check(args: &BootCheckArgs) -> ExitCode {
    let expectations = Expectations::new(
        Some(args.target.clone()),
        args.active_units.clone(),
        args.commands.clone(),
    );
    let mut req = request(&args.image, args.work_dir.clone(), vec![Format::Raw]);
    req.etc_files = expectations.etc_files();
    req.kernel_args.push(check::PANIC_KERNEL_ARG.into());
    let made = match disk::make(&req) {
        Ok(made) => made,
        Err(err) => {
            eprintln!("strata boot-check: {}: {err}", args.image.image);
            return ExitCode::FAILURE;
        }
    };
    let Some(raw) = made.raw else {
        eprintln!("strata boot-check: no raw disk was written");
        return ExitCode::FAILURE;
    };
    match check::boot(
        &raw,
        &args.work_dir,
        args.accel,
        Duration::from_secs(args.timeout),
        &args.baseline_failed,
    ) {
        Ok(outcome) => {
            let passed = outcome.passed;
            let code = print_json(&outcome);
            if passed { code } else { ExitCode::FAILURE }
        }
        Err(err) => {
            eprintln!("strata boot-check: {}: {err}", args.image.image);
            ExitCode::FAILURE
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("strata: cannot print the result: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_files_stay_inside_etc() {
        assert_eq!(
            parse_etc_file("ssh/sshd_config.d/50-x.conf=/tmp/x").unwrap(),
            (
                "ssh/sshd_config.d/50-x.conf".to_string(),
                PathBuf::from("/tmp/x")
            )
        );
        for bad in [
            "/etc/passwd=/x",
            "../usr/bin/x=/x",
            "a//b=/x",
            "a/./b=/x",
            "nosource",
        ] {
            let err = parse_etc_file(bad).unwrap_err();
            assert!(err.contains(bad.split('=').next().unwrap()), "{bad}: {err}");
        }
    }
}
