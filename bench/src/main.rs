//! `strata-bench` (run by `make bench` through bench/run.sh): measures Strata on the local real
//! cluster and this machine, on the CoreOS-sized base, and writes bench/RESULTS.md and
//! bench/results.json. See README "Benchmarks" and bench/RESULTS.md for what each figure is.
//!
//! Needs a running local cluster (`e2e/.state/env`; bench/run.sh reuses or starts one with
//! e2e/scripts/with-cluster.sh) and the strata binary to measure (`--strata-bin`). Each section
//! takes the cluster lock (`/tmp/strata-cluster.lock`) while it runs, so others' e2e runs can go
//! in between. Everything it makes is named `bench-*`; each section removes it and redeploys the
//! controller with its default settings.
//!
//! This file: the command line, the sections in order, the results written. sections/ runs each
//! section, report/ renders what they found; build.rs, mco_way.rs, scale/, host.rs measure.

mod build;
mod claim;
mod host;
mod lifecycle;
mod mco_way;
mod noop;
mod objects;
mod report;
mod scale;
mod sections;
mod stats;
mod watch;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use strata_e2e::Cluster;

use report::Report;
use sections::{Bench, State};

#[derive(Parser)]
#[command(name = "strata-bench")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Delete every bench-* object and redeploy the controller with its defaults.
    Cleanup,
    /// The scale run's builder (the no-op builder image's entrypoint); not for use by hand.
    #[command(hide = true)]
    NoopBuilder {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    /// Builds through Strata (cold, rebuild, second pool) beside host buildah.
    Builds,
    /// The MCO's way: a fresh pod, vfs, bud pulls the base, push.
    Mco,
    /// The controller's --cache-claim: builds on a persistent image storage.
    Claim,
    /// The controller core at scale, with a leader change.
    Scale,
    /// A first-boot disk image of the base and its boot check (strata disk-image, boot-check).
    Boot,
    /// The local pool's machines roll: apply, a fragment edit, a release upgrade.
    Machines,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The strata binary under test: put into the controller and builder image (a release build).
    #[arg(long, env = "STRATA_BENCH_STRATA_BIN")]
    strata_bin: Option<PathBuf>,
    /// Cold builds through Strata, each followed by the same build on the host and a rebuild.
    #[arg(long, env = "STRATA_BENCH_RUNS", default_value_t = 3)]
    runs: usize,
    /// Builds the MCO's way (vfs needs ~15 GiB of free disk per build on this base).
    #[arg(long, env = "STRATA_BENCH_MCO_RUNS", default_value_t = 1)]
    mco_runs: usize,
    /// Rebuilds on the cache claim.
    #[arg(long, env = "STRATA_BENCH_CLAIM_RUNS", default_value_t = 3)]
    claim_runs: usize,
    /// MachineOSConfigs and pools in the scale run.
    #[arg(long, env = "STRATA_BENCH_SCALE", default_value_t = 500)]
    scale: usize,
    /// MachineOSConfigs applied at once in the scale run before waiting for their builds.
    #[arg(long, env = "STRATA_BENCH_BATCH", default_value_t = 100)]
    batch: usize,
    /// Extra controller flags for the scale run (e.g. `--concurrency=4`), to compare settings.
    #[arg(long, allow_hyphen_values = true)]
    scale_controller_arg: Vec<String>,
    /// Sections to leave out (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    skip: Vec<Section>,
    /// The cluster lock each section holds while it runs.
    #[arg(
        long,
        env = "STRATA_CLUSTER_LOCK",
        default_value = "/tmp/strata-cluster.lock"
    )]
    lock_file: PathBuf,
    /// Do not take the lock (the caller holds it).
    #[arg(long)]
    no_lock: bool,
    /// An MCO's-way build is stopped when the node's free disk falls below this.
    #[arg(long, default_value_t = 4.0)]
    min_free_gib: f64,
    /// Where RESULTS.md and results.json go (default: bench/ of this checkout).
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::NoopBuilder { args }) = &cli.command {
        // Runs in the scale run's builder pods: no cluster, no kube client.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::process::exit(runtime.block_on(noop::main(args)));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(cli))
}

async fn bench(cli: Cli) -> Result<()> {
    let env_file = strata_e2e::state_dir().join("env");
    let cluster = Cluster::from_env_file(&env_file, false).with_context(|| {
        format!(
            "no running cluster ({}): use bench/run.sh",
            env_file.display()
        )
    })?;
    let client = cluster.client().await?;
    // A cluster bench/run.sh just started has no Strata CRDs yet (make demo and the e2e tests
    // install them the same way).
    strata_e2e::util::install_strata_crds(&client).await?;
    let args = &cli.run;
    let strata_bin = args.strata_bin.clone().context(
        "--strata-bin (STRATA_BENCH_STRATA_BIN) is required: the strata binary to measure",
    )?;
    let bench = Bench {
        cluster: &cluster,
        client: client.clone(),
        strata_bin: strata_bin.clone(),
        args,
    };
    if let Some(Cmd::Cleanup) = cli.command {
        let _lock = bench.lock().await?;
        return bench.reset().await;
    }
    let started = Instant::now();
    let mut report = Report::default();
    let mut state = State::default();
    for section in [
        Section::Builds,
        Section::Mco,
        Section::Claim,
        Section::Scale,
        Section::Boot,
        Section::Machines,
    ] {
        if !args.skip.contains(&section) {
            run_section(&bench, section, &mut state, &mut report).await?;
        }
    }
    report::goals::conclude(&state, &mut report, args.runs);
    report.machine = host::machine(&strata_bin, &state.builder_image).await;
    if let Some(agent) = &state.builder_agent {
        report.machine.push((
            "buildah in the builder pods (registry user agent)".into(),
            agent.clone(),
        ));
    }
    let elapsed = started.elapsed().as_secs_f64();
    write_results(&report, &state, args, elapsed)?;
    let missed = report.missed_goals();
    match (report.errors.len(), missed.is_empty()) {
        (0, true) => Ok(()),
        (0, false) => bail!("goal(s) missed: {}; see RESULTS.md", missed.join(", ")),
        (n, _) => bail!(
            "{n} section(s) failed{}; see RESULTS.md",
            if missed.is_empty() {
                String::new()
            } else {
                format!(", goal(s) missed: {}", missed.join(", "))
            }
        ),
    }
}

/// One section under the cluster lock, then the cleanup after it; its failure is recorded in
/// the report, not returned.
async fn run_section(
    bench: &Bench<'_>,
    section: Section,
    state: &mut State,
    report: &mut Report,
) -> Result<()> {
    let lock = bench.lock().await?;
    eprintln!("\nbench: === section {section:?} ===");
    let section_started = Instant::now();
    let result = match section {
        Section::Builds => bench.builds(state, report).await,
        Section::Mco => bench.mco(state, report).await,
        Section::Claim => bench.claim(state, report).await,
        Section::Scale => bench.scale(state, report).await,
        Section::Boot => bench.boot(state, report).await,
        Section::Machines => bench.machines(state, report).await,
    };
    if let Err(err) = &result {
        eprintln!("bench: section {section:?} failed: {err:#}");
        report
            .errors
            .push(format!("section {section:?} failed: {err:#}"));
    }
    eprintln!("bench: section {section:?}: cleaning up, redeploying the controller's defaults");
    if let Err(err) = bench.reset().await {
        report
            .errors
            .push(format!("cleanup after {section:?} failed: {err:#}"));
    }
    state.section_seconds.push((
        format!("{section:?}"),
        section_started.elapsed().as_secs_f64(),
    ));
    drop(lock);
    Ok(())
}

/// RESULTS.md and results.json into `--out-dir` (default: bench/ of this checkout).
fn write_results(report: &Report, state: &State, args: &RunArgs, elapsed: f64) -> Result<()> {
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| strata_e2e::repo_root().join("bench"));
    let now = jiff::Timestamp::now();
    let meta = report::results::meta(report, state, args, elapsed, now);
    let header = report::results::header(report, state, elapsed, now);
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("RESULTS.md"), report.markdown(&header))?;
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&report.json(meta))? + "\n",
    )?;
    eprintln!(
        "bench: wrote {}/RESULTS.md and results.json ({:.0} min)",
        out_dir.display(),
        elapsed / 60.0
    );
    Ok(())
}
