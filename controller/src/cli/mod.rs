//! The `strata` command line: one binary; the controller, the builder's steps, and commands for
//! people (installed as `kubectl-strata` too: `kubectl strata status`).

mod crds;
mod day2;
mod disk_image;
pub mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for invalid input (bad YAML, a fragment error, a base image given by tag).
pub const EXIT_INVALID_INPUT: u8 = 2;

/// `strata --version`: the crate's version and the commit it was built from, stamped by
/// `controller/build.rs` (e.g. `0.1.0 (commit b734c98, 2026-11-29)`; `-dirty` when the binary's
/// sources differ from the commit; `commit unknown` outside a git checkout without
/// `STRATA_COMMIT`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("STRATA_BUILD_INFO"),
    ")"
);

/// strata — on-cluster OS image builds for CoreOS pools.
///
/// Apply a MachineOSConfig (strata.dev/v1alpha1) naming a MachineConfigPool and Containerfile
/// fragments; Strata builds the image in the cluster, pushes it, and pins the pool to it by digest.
#[derive(Debug, Parser)]
#[command(name = "strata", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the controller: watch MachineOSConfigs, run builds, pin pools by digest.
    Controller(crate::controller::Settings),
    /// Print the Containerfile (or JSON) the controller would build for a MachineOSConfig.
    Render(render::RenderArgs),
    /// Run one step of a build (pull, build or push) in its container of the builder pod (the
    /// builder contract: builder-image/README.md).
    Build(crate::builder::BuildArgs),
    /// Print the CustomResourceDefinitions of MachineOSConfig and MachineOSBuild as YAML.
    Crds,
    /// What the MachineOSConfigs, their builds and pools are doing (the cluster of your
    /// kubeconfig; as `kubectl strata status`).
    Status(day2::StatusArgs),
    /// Print a build's step logs from its builder pod (or what its status kept once the pod is
    /// gone).
    Logs(day2::LogsArgs),
    /// Build a MachineOSConfig's current inputs again (the `strata.dev/rebuild` annotation).
    Rebuild(day2::RebuildArgs),
    /// Make a first-boot disk image (raw, qcow2) of an OS image: an ostree sysroot made by the
    /// image's own ostree, booted by its own GRUB from UEFI. Needs root and buildah.
    DiskImage(disk_image::DiskImageArgs),
    /// Boot an OS image's disk in a VM (QEMU; KVM or software emulation) and check that the
    /// system reaches its target with no failed unit. Needs root, buildah, qemu and OVMF.
    BootCheck(disk_image::BootCheckArgs),
}

/// Runs one subcommand; errors are printed here, once, to stderr.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Render(args) => render::run(&args),
        Command::Crds => crds::run(),
        Command::Status(args) => day2::run("status", day2::status(&args)),
        Command::Logs(args) => day2::run("logs", day2::logs(&args)),
        Command::Rebuild(args) => day2::run("rebuild", day2::rebuild(&args)),
        Command::DiskImage(args) => disk_image::run_disk_image(&args),
        Command::BootCheck(args) => disk_image::run_boot_check(&args),
        Command::Build(args) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                ExitCode::from(runtime.block_on(crate::builder::run(&args)).clamp(0, 255) as u8)
            }
            Err(err) => {
                eprintln!("strata build: cannot start the async runtime: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Controller(settings) => run_controller(settings),
    }
}

fn run_controller(settings: crate::controller::Settings) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match settings.log_format {
        crate::controller::settings::LogFormat::Json => logs.json().init(),
        crate::controller::settings::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
    // 8 MiB per worker (tokio's default is 2): a TLS handshake's post-quantum key exchange
    // (aws-lc's ML-KEM) takes a large stack, at the bottom of a reconcile's chain of futures;
    // under a debug build that chain overflowed 2 MiB (seen in the e2e cluster).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("strata controller: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::controller::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("strata controller: {err:#}");
            ExitCode::FAILURE
        }
    }
}
