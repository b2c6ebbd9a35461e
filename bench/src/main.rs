//! `strata-bench` (run by `make bench` through bench/run.sh): measures Strata on the local real
//! cluster and this machine, on the CoreOS-sized base, and writes bench/RESULTS.md and
//! bench/results.json. See README "Benchmarks" and bench/RESULTS.md for what each figure is.
//!
//! Needs a running local cluster (`e2e/.state/env`; bench/run.sh reuses or starts one with
//! e2e/scripts/with-cluster.sh) and the strata binary to measure (`--strata-bin`). Each section
//! takes the cluster lock (`/tmp/strata-cluster.lock`) while it runs, so others' e2e runs can go
//! in between. Everything it makes is named `bench-*`; each section removes it and redeploys the
//! controller with its default settings.

mod build;
mod claim;
mod host;
mod mco_way;
mod noop;
mod objects;
mod report;
mod scale;
mod stats;
mod watch;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use strata_e2e::Cluster;
use strata_e2e::deployed::create_pool;
use strata_e2e::measure::deploy::{DeployOptions, deploy, wait_for_leader};
use strata_e2e::measure::pod_usage::disk_bytes;
use strata_e2e::measure::registry_log::AccessLog;

use build::{Base, Runner, StrataRun};
use report::{Report, bytes};
use stats::summarize;

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

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

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
    ] {
        if args.skip.contains(&section) {
            continue;
        }
        let lock = bench.lock().await?;
        eprintln!("\nbench: === section {section:?} ===");
        let section_started = Instant::now();
        let result = match section {
            Section::Builds => bench.builds(&mut state, &mut report).await,
            Section::Mco => bench.mco(&mut state, &mut report).await,
            Section::Claim => bench.claim(&mut state, &mut report).await,
            Section::Scale => bench.scale(&mut state, &mut report).await,
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
    }
    conclude(&state, &mut report, args);
    report.machine = host::machine(&strata_bin, &state.builder_image).await;
    if let Some(agent) = &state.builder_agent {
        report.machine.push((
            "buildah in the builder pods (registry user agent)".into(),
            agent.clone(),
        ));
    }
    let elapsed = started.elapsed().as_secs_f64();
    write_results(&report, &state, args, elapsed)?;
    if report.errors.is_empty() {
        Ok(())
    } else {
        bail!("{} section(s) failed; see RESULTS.md", report.errors.len())
    }
}

/// What sections hand to each other and to the conclusions.
#[derive(Default)]
struct State {
    builder_image: String,
    builder_agent: Option<String>,
    base: Option<Base>,
    base_uncompressed: Option<(u64, usize)>,
    vfs_estimate: Option<u64>,
    cold: Vec<StrataRun>,
    host: Vec<host::HostBuild>,
    rebuild: Vec<StrataRun>,
    second: Option<StrataRun>,
    mco: Vec<mco_way::McoRun>,
    mco_skipped: Option<String>,
    claim_first: Option<StrataRun>,
    claim_rebuild: Vec<StrataRun>,
    claim_second: Option<StrataRun>,
    claim_growth: Vec<(String, u64)>,
    scale: Option<scale::ScaleResult>,
    section_seconds: Vec<(String, f64)>,
}

struct Bench<'a> {
    cluster: &'a Cluster,
    client: kube::Client,
    strata_bin: PathBuf,
    args: &'a RunArgs,
}

/// Holds the cluster lock while alive (dropping the file releases it).
struct Lock(#[allow(dead_code)] Option<std::fs::File>);

fn nonce() -> String {
    format!(
        "{}",
        jiff::Timestamp::now()
            .as_millisecond()
            .rem_euclid(10_000_000_000)
    )
}

impl Bench<'_> {
    async fn lock(&self) -> Result<Lock> {
        if self.args.no_lock {
            return Ok(Lock(None));
        }
        let path = self.args.lock_file.clone();
        eprintln!("bench: waiting for the cluster lock {}", path.display());
        let waited = Instant::now();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await??;
        eprintln!(
            "bench: got the cluster lock after {:.0} s",
            waited.elapsed().as_secs_f64()
        );
        Ok(Lock(Some(file)))
    }

    fn deploy_options(&self, controller_args: Vec<String>) -> DeployOptions {
        DeployOptions {
            strata_bin: Some(self.strata_bin.clone()),
            controller_args,
            ..DeployOptions::default()
        }
    }

    /// The controller deployed with `controller_args`, leading; returns the builder image.
    async fn deploy(&self, controller_args: Vec<String>) -> Result<String> {
        let builder = deploy(self.cluster, &self.deploy_options(controller_args)).await?;
        wait_for_leader(&self.client, None, Duration::from_secs(180)).await?;
        Ok(builder)
    }

    /// Removes the bench's objects and redeploys the controller with its defaults.
    async fn reset(&self) -> Result<()> {
        objects::cleanup(&self.client).await?;
        deploy(self.cluster, &self.deploy_options(Vec::new())).await?;
        let _ = tokio::fs::remove_dir_all(host::work_dir()).await;
        Ok(())
    }

    fn fragment(&self, last: &str) -> Result<String> {
        objects::fragment(&self.cluster.package_repo, last)
    }

    async fn base(&self, state: &mut State) -> Result<Base> {
        if let Some(b) = &state.base {
            return Ok(b.clone());
        }
        let base = build::base(&self.cluster.os_image, &self.cluster.registry).await?;
        eprintln!(
            "bench: the base {} has {} layers, {} compressed; pulling it on the host once \
             (its uncompressed size; the registry's page cache warmed)",
            base.image,
            base.layers.len(),
            bytes(base.compressed_bytes() as f64)
        );
        let pulled = host::pull_only(&base.image).await?;
        state.base_uncompressed = pulled.as_ref().map(|p| (p.total, p.layers));
        state.vfs_estimate = pulled.map(|p| p.vfs_estimate);
        state.base = Some(base.clone());
        Ok(base)
    }

    fn runner<'b>(&'b self, base: &'b Base) -> Runner<'b> {
        Runner {
            cluster: self.cluster,
            client: self.client.clone(),
            base,
            log: AccessLog::of(self.cluster),
        }
    }

    /// Cold builds through Strata beside the same build on the host, rebuilds changing the
    /// last step, a second pool on the same base — the controller's default settings.
    async fn builds(&self, state: &mut State, report: &mut Report) -> Result<()> {
        objects::cleanup(&self.client).await?;
        state.builder_image = self.deploy(Vec::new()).await?;
        objects::push_secret(&self.client).await?;
        for pool in ["bench-build", "bench-second"] {
            create_pool(&self.client, pool).await?;
        }
        let base = self.base(state).await?;
        let mut runner = self.runner(&base);
        let reg = &self.cluster.registry;
        for i in 1..=self.args.runs {
            // Cold: nothing cached. Strata's own claim (the default where the cluster has a
            // default StorageClass, as this one has) is removed; the build makes it again.
            claim::remove_own(&self.client).await?;
            let n = nonce();
            let push = format!("{reg}/bench/cold-{n}:latest");
            let cold_last = format!("strata bench cold {n}");
            let cold = runner
                .run("bench-build", &push, &self.fragment(&cold_last)?)
                .await?;
            eprintln!(
                "bench: run {i}: Strata cold apply→pinned {:.1} s (phases {:?}), peak disk {}, image {}",
                cold.apply_to_pinned,
                cold.phases,
                bytes(cold.peak_disk_bytes as f64),
                bytes(cold.image_size_bytes as f64)
            );
            if state.builder_agent.is_none() {
                state.builder_agent = cold_agent(&cold);
            }
            let host_containerfile = cold
                .containerfile
                .replace(&cold_last, &format!("strata bench host {n}"));
            let h = host::overlay_build(
                &host_containerfile,
                &base.image,
                &format!("{reg}/bench/host-{n}:latest"),
            )
            .await?;
            eprintln!(
                "bench: run {i}: host pull {:.1} s + bud {:.1} s + push {:.1} s = {:.1} s, peak disk {}",
                h.pull_seconds,
                h.bud_seconds,
                h.push_seconds,
                h.total(),
                bytes(h.peak_disk_bytes as f64)
            );
            let rebuild = runner
                .run(
                    "bench-build",
                    &push,
                    &self.fragment(&format!("strata bench rebuild {n}"))?,
                )
                .await?;
            eprintln!(
                "bench: run {i}: Strata rebuild (last step changed) apply→pinned {:.1} s",
                rebuild.apply_to_pinned
            );
            state.cold.push(cold);
            state.host.push(h);
            state.rebuild.push(rebuild);
        }
        let second = runner
            .run(
                "bench-second",
                &format!("{reg}/bench/second:latest"),
                &self.fragment(&format!("strata bench second pool {}", nonce()))?,
            )
            .await?;
        eprintln!(
            "bench: second pool on the same base: {} of the base's layers pulled again",
            bytes(second.base_bytes_pulled as f64)
        );
        state.second = Some(second);
        report_builds(state, report);
        Ok(())
    }

    /// The MCO's way, on the Containerfile Strata renders for a rebuild.
    async fn mco(&self, state: &mut State, report: &mut Report) -> Result<()> {
        if state.builder_image.is_empty() {
            objects::cleanup(&self.client).await?;
            state.builder_image = self.deploy(Vec::new()).await?;
        }
        let base = self.base(state).await?;
        let free = host::free_bytes(&self.cluster.dir).await.unwrap_or(0);
        let min_free = (self.args.min_free_gib * GIB) as u64;
        let need = state.vfs_estimate.unwrap_or(0) + min_free;
        if free < need {
            let why = format!(
                "not run: the node has {:.1} GiB free; a vfs build of this base needs about {:.1} GiB \
                 (every layer a full copy of the tree below it) plus the {:.1} GiB guard",
                free as f64 / GIB,
                state.vfs_estimate.unwrap_or(0) as f64 / GIB,
                self.args.min_free_gib
            );
            eprintln!("bench: MCO's way {why}");
            state.mco_skipped = Some(why);
            return Ok(());
        }
        let mut log = AccessLog::of(self.cluster);
        for i in 1..=self.args.mco_runs {
            let n = nonce();
            let containerfile = self
                .render(
                    "bench-build",
                    &self.fragment(&format!("strata bench mco {n}"))?,
                    &base,
                )
                .await?;
            let run = mco_way::run(mco_way::McoArgs {
                cluster: self.cluster,
                client: &self.client,
                builder_image: &state.builder_image,
                base: &base,
                containerfile: &containerfile,
                image: &format!("{}/bench/mco-{n}:latest", self.cluster.registry),
                min_free_bytes: min_free,
                log: &mut log,
            })
            .await?;
            eprintln!(
                "bench: MCO's way {i}: {:.1} s (bud {:.1} s, push {:.1} s), peak disk {}{}",
                run.create_to_done,
                run.bud_seconds,
                run.push_seconds,
                bytes(run.peak_disk_bytes as f64),
                run.aborted
                    .as_deref()
                    .map(|a| format!(" — {a}"))
                    .unwrap_or_default()
            );
            let aborted = run.aborted.is_some();
            state.mco.push(run);
            if aborted {
                break;
            }
        }
        report_mco(state, report);
        Ok(())
    }

    /// `strata render` of a bench MachineOSConfig on the base.
    async fn render(&self, name: &str, fragment: &str, base: &Base) -> Result<String> {
        let config = objects::config(name, "example.invalid/bench:latest", &base.image, fragment)?;
        let dir = host::work_dir();
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(&config)?)?;
        host::run(
            &self.strata_bin.display().to_string(),
            &[
                "render",
                "-f",
                &file.display().to_string(),
                "--base-image",
                &base.image,
            ],
            &[],
        )
        .await
    }

    /// Builds with the controller's --cache-claim: the image storage kept from build to build.
    async fn claim(&self, state: &mut State, report: &mut Report) -> Result<()> {
        objects::cleanup(&self.client).await?;
        claim::create(&self.client).await?;
        state.builder_image = self
            .deploy(vec![format!("--cache-claim={}", claim::NAME)])
            .await?;
        objects::push_secret(&self.client).await?;
        for pool in ["bench-claim-a", "bench-claim-b"] {
            create_pool(&self.client, pool).await?;
        }
        let base = self.base(state).await?;
        let mut runner = self.runner(&base);
        let reg = &self.cluster.registry;
        let push = format!("{reg}/bench/claim-a:latest");
        let first = runner
            .run(
                "bench-claim-a",
                &push,
                &self.fragment(&format!("strata bench claim {}", nonce()))?,
            )
            .await?;
        let after_first = disk_bytes(&[claim::dir()]).await;
        eprintln!(
            "bench: claim, first build (empty storage): {:.1} s, {} of the base pulled, storage {}",
            first.apply_to_pinned,
            bytes(first.base_bytes_pulled as f64),
            bytes(after_first as f64)
        );
        state
            .claim_growth
            .push(("after the first build".into(), after_first));
        state.claim_first = Some(first);
        for i in 1..=self.args.claim_runs {
            let run = runner
                .run(
                    "bench-claim-a",
                    &push,
                    &self.fragment(&format!("strata bench claim rebuild {}", nonce()))?,
                )
                .await?;
            let size = disk_bytes(&[claim::dir()]).await;
            eprintln!(
                "bench: claim rebuild {i}: {:.1} s (phases {:?}), {} of the base pulled, storage {}",
                run.apply_to_pinned,
                run.phases,
                bytes(run.base_bytes_pulled as f64),
                bytes(size as f64)
            );
            state
                .claim_growth
                .push((format!("after rebuild {i}"), size));
            state.claim_rebuild.push(run);
        }
        let second = runner
            .run(
                "bench-claim-b",
                &format!("{reg}/bench/claim-b:latest"),
                &self.fragment(&format!("strata bench claim second pool {}", nonce()))?,
            )
            .await?;
        let size = disk_bytes(&[claim::dir()]).await;
        eprintln!(
            "bench: claim, second pool: {:.1} s, {} of the base pulled, storage {}",
            second.apply_to_pinned,
            bytes(second.base_bytes_pulled as f64),
            bytes(size as f64)
        );
        state
            .claim_growth
            .push(("after the second pool's build".into(), size));
        state.claim_second = Some(second);
        report_claim(state, report);
        Ok(())
    }

    /// The controller core at scale with the no-op builder.
    async fn scale(&self, state: &mut State, report: &mut Report) -> Result<()> {
        objects::cleanup(&self.client).await?;
        if state.builder_image.is_empty() {
            state.builder_image = self.deploy(Vec::new()).await?;
        }
        let bench_bin = std::env::current_exe()?;
        let noop = host::noop_builder_image(
            &state.builder_image,
            &bench_bin,
            &format!("{}/bench/noop-builder:latest", self.cluster.registry),
        )
        .await?;
        let result = scale::run(scale::ScaleArgs {
            cluster: self.cluster,
            client: &self.client,
            strata_bin: &self.strata_bin,
            noop_builder: &noop,
            count: self.args.scale,
            batch: self.args.batch,
            controller_args: self.args.scale_controller_arg.clone(),
        })
        .await?;
        eprintln!(
            "bench scale: {} pinned in {:.0} s; reconcile p99 {:?} s; RSS {:.0} MiB; resync: {} requests beyond lists, settled {:.2} s after the takeover",
            result.configs,
            result.all_pinned_seconds,
            result.build_phase_p99,
            result.rss_after_builds_mib,
            result.audit.beyond_lists_and_leases(),
            result.settle_seconds
        );
        state.scale = Some(result);
        report_scale(state, report);
        Ok(())
    }
}

fn cold_agent(run: &StrataRun) -> Option<String> {
    run.agent.clone()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    summarize(&values.into_iter().collect::<Vec<_>>()).map(|s| s.median)
}

/// Cold builds, the host's, rebuilds, the second pool; per builder step its resources.
fn report_builds(state: &State, report: &mut Report) {
    let runs = |rs: &[StrataRun], f: fn(&StrataRun) -> f64| rs.iter().map(f).collect::<Vec<_>>();
    let cold = &state.cold;
    report.add(
        "builds",
        "Strata cold: apply → pinned",
        "s",
        runs(cold, |r| r.apply_to_pinned),
        "",
    );
    report.add(
        "builds",
        "Strata cold: apply → builder pod",
        "s",
        runs(cold, |r| r.apply_to_pod),
        "",
    );
    report.add(
        "builds",
        "Strata cold: pod → push done",
        "s",
        runs(cold, |r| r.pod_to_done),
        "",
    );
    report.add(
        "builds",
        "Strata cold: push done → pinned",
        "s",
        runs(cold, |r| r.done_to_pinned),
        "",
    );
    for phase in ["pull", "build", "lint", "push"] {
        let values: Vec<f64> = cold.iter().filter_map(|r| r.phase(phase)).collect();
        report.add(
            "builds",
            format!("Strata cold: builder phase {phase}"),
            "s",
            values,
            "status.phases",
        );
    }
    for step in ["pull", "build", "push"] {
        let usage: Vec<_> = cold.iter().filter_map(|r| r.step(step)).collect();
        report.add(
            "builds",
            format!("Strata cold: step {step} peak RSS"),
            "B",
            usage.iter().map(|u| u.peak_rss_bytes as f64).collect(),
            "",
        );
        report.add(
            "builds",
            format!("Strata cold: step {step} CPU"),
            "s",
            usage.iter().map(|u| u.cpu_seconds).collect(),
            "",
        );
    }
    report.add(
        "builds",
        "Strata cold: peak disk (pod volumes and cache claim)",
        "B",
        runs(cold, |r| r.peak_disk_bytes as f64),
        "",
    );
    report.add(
        "builds",
        "Strata cold: image size (uncompressed)",
        "B",
        runs(cold, |r| r.image_size_bytes as f64),
        "",
    );
    report.add(
        "builds",
        "host buildah (pull + bud + push)",
        "s",
        state.host.iter().map(host::HostBuild::total).collect(),
        "overlay storage, same Containerfile",
    );
    report.add(
        "builds",
        "host buildah peak disk",
        "B",
        state
            .host
            .iter()
            .map(|h| h.peak_disk_bytes as f64)
            .collect(),
        "",
    );
    report.add(
        "builds",
        "Strata rebuild (last step changed): apply → pinned",
        "s",
        runs(&state.rebuild, |r| r.apply_to_pinned),
        "",
    );
    if let Some(second) = &state.second {
        report.add(
            "builds",
            "second pool: base bytes pulled",
            "B",
            vec![second.base_bytes_pulled as f64],
            "",
        );
        report.add(
            "builds",
            "second pool: apply → pinned",
            "s",
            vec![second.apply_to_pinned],
            "",
        );
    }
    report.add(
        "builds",
        "Strata cold: registry requests by the builder pod",
        "",
        cold.iter()
            .map(|r| requests(&r.pod_registry) as f64)
            .collect(),
        "",
    );
    report.add(
        "builds",
        "Strata cold: registry requests by the controller",
        "",
        cold.iter()
            .map(|r| requests(&r.controller_registry) as f64)
            .collect(),
        "digest checks while the build ran",
    );
    if let Some(last) = cold.last() {
        report.key("last_cold_build", last.build.clone());
    }
    if let Some((total, layers)) = state.base_uncompressed {
        report.key("base_uncompressed_bytes", total);
        report.key("base_layers", layers as u64);
    }
}

/// The MCO's way (vfs, no cache, full pull, fresh pod).
fn report_mco(state: &State, report: &mut Report) {
    let done: Vec<&mco_way::McoRun> = state.mco.iter().filter(|r| r.aborted.is_none()).collect();
    report.add(
        "mco",
        "MCO's way: pod create → done",
        "s",
        done.iter().map(|r| r.create_to_done).collect(),
        "",
    );
    report.add(
        "mco",
        "MCO's way: peak disk",
        "B",
        state.mco.iter().map(|r| r.peak_disk_bytes as f64).collect(),
        "",
    );
    report.add(
        "mco",
        "MCO's way: base bytes pulled",
        "B",
        done.iter().map(|r| r.base_bytes_pulled as f64).collect(),
        "",
    );
    for r in &state.mco {
        if let Some(why) = &r.aborted {
            report
                .errors
                .push(format!("an MCO's-way build was stopped: {why}"));
        }
    }
}

/// Builds on the persistent image storage (--cache-claim).
fn report_claim(state: &State, report: &mut Report) {
    if let Some(first) = &state.claim_first {
        report.add(
            "claim",
            "cache claim: first build apply → pinned",
            "s",
            vec![first.apply_to_pinned],
            "",
        );
    }
    report.add(
        "claim",
        "cache claim: rebuild apply → pinned",
        "s",
        state
            .claim_rebuild
            .iter()
            .map(|r| r.apply_to_pinned)
            .collect(),
        "",
    );
    report.add(
        "claim",
        "cache claim: rebuild base bytes pulled",
        "B",
        state
            .claim_rebuild
            .iter()
            .map(|r| r.base_bytes_pulled as f64)
            .collect(),
        "",
    );
    if let Some(second) = &state.claim_second {
        report.add(
            "claim",
            "cache claim: second pool base bytes pulled",
            "B",
            vec![second.base_bytes_pulled as f64],
            "",
        );
    }
    for (when, size) in &state.claim_growth {
        report.add(
            "claim",
            format!("cache claim storage {when}"),
            "B",
            vec![*size as f64],
            "",
        );
    }
}

/// The controller core at scale and its resync after a leader change.
fn report_scale(state: &State, report: &mut Report) {
    let Some(s) = &state.scale else { return };
    report.add(
        "scale",
        format!("{} configs: all pinned", s.configs),
        "s",
        vec![s.all_pinned_seconds],
        "",
    );
    report.add(
        "scale",
        "builds running: reconcile p99",
        "s",
        s.build_phase_p99.into_iter().collect(),
        "",
    );
    report.add(
        "scale",
        "leader RSS after the builds",
        "MiB",
        vec![s.rss_after_builds_mib],
        "",
    );
    report.add(
        "scale",
        "leader change: takeover",
        "s",
        vec![s.takeover_seconds],
        s.takeover_by,
    );
    report.add(
        "scale",
        "resync: settle (last reconcile)",
        "s",
        vec![s.settle_seconds],
        settle_note(s),
    );
    report.add(
        "scale",
        "resync: API requests beyond lists",
        "",
        vec![s.audit.beyond_lists_and_leases() as f64],
        s.audit.describe(),
    );
    report.add(
        "scale",
        "resync: writes (leases left out)",
        "",
        vec![s.audit.writes_excluding_leases() as f64],
        "",
    );
    report.add(
        "scale",
        "resync: reconciles",
        "",
        vec![s.resync_reconciles],
        format!("{} configs in the cluster", s.total_configs),
    );
    report.add(
        "scale",
        "leader RSS after the resync",
        "MiB",
        vec![s.rss_after_resync_mib],
        "",
    );
    report.add(
        "scale",
        "leader change: all configs reconciled",
        "s",
        vec![s.all_reconciled_seconds],
        settle_note(s),
    );
    report.add(
        "scale",
        "resync: leader CPU",
        "s",
        vec![s.resync_cpu_seconds],
        "",
    );
    report.add(
        "scale",
        "resync: reconcile p50",
        "s",
        s.resync_p50.into_iter().collect(),
        "",
    );
    report.add(
        "scale",
        "resync: reconcile p99",
        "s",
        s.resync_p99.into_iter().collect(),
        "",
    );
    report.add(
        "scale",
        "resync: registry requests (controller)",
        "",
        vec![requests(&s.resync_registry) as f64],
        "beside the API requests",
    );
    report.add(
        "scale",
        "builds running: reconciles",
        "",
        vec![s.build_phase_reconciles],
        "",
    );
    report.add(
        "scale",
        "builds running: leader CPU",
        "s",
        vec![s.build_phase_cpu_seconds],
        "",
    );
    report.add(
        "scale",
        "builds running: reconcile p50",
        "s",
        s.build_phase_p50.into_iter().collect(),
        "",
    );
    report.add(
        "scale",
        "builds running: API requests",
        "",
        vec![s.build_phase_api.total() as f64],
        s.build_phase_api.describe(),
    );
    report.add(
        "scale",
        "builds running: registry requests (controller)",
        "",
        vec![requests(&s.build_phase_registry) as f64],
        "",
    );
    let bound = |b: Option<f64>| {
        b.map_or("above the last finite bucket".to_string(), |b| {
            format!("≤ {b} s")
        })
    };
    report.note(
        "Histogram buckets",
        format!(
            "Every reconcile while builds ran fell in the bucket {}; in the resync {}. The audit window \
             of the resync was {:.1} s.",
            bound(s.build_phase_slowest_bound),
            bound(s.resync_slowest_bound),
            s.audit_window_seconds
        ),
    );
    report.key("resync_api_requests_total", s.audit.total());
}

/// From the Lease's acquireTime; an upper bound when the resync had ended before the new
/// leader's /metrics first answered.
fn settle_note(s: &scale::ScaleResult) -> &'static str {
    if s.settle_upper_bound {
        "from the Lease's acquireTime; at most (done before /metrics first answered)"
    } else {
        "from the Lease's acquireTime"
    }
}

/// Requests in a registry access-log count.
fn requests(counts: &strata_e2e::measure::registry_log::Counts) -> u64 {
    counts.requests.values().sum()
}

/// The goals of issues 16 and 17 from what the sections measured.
fn conclude(state: &State, report: &mut Report, args: &RunArgs) {
    let cold = median(state.cold.iter().map(|r| r.apply_to_pinned));
    let host = median(state.host.iter().map(host::HostBuild::total));
    report.goal(
        "path_over_host",
        "cold build through Strata / host buildah, same Containerfile",
        ratio(cold, host),
        "x",
        "≤ 1.15",
        1.15,
        format!("medians of {} runs", args.runs),
    );
    let rebuild = median(state.rebuild.iter().map(|r| r.apply_to_pinned));
    let mco = median(
        state
            .mco
            .iter()
            .filter(|r| r.aborted.is_none())
            .map(|r| r.create_to_done),
    );
    report.goal(
        "rebuild_over_mco_way",
        "rebuild changing the last fragment / the MCO's way",
        ratio(rebuild, mco),
        "x",
        "≤ 0.2",
        0.2,
        state.mco_skipped.clone().unwrap_or_default(),
    );
    report.goal(
        "second_pool_base_bytes_pulled",
        "second pool on the same base: base bytes pulled",
        state.second.as_ref().map(|s| s.base_bytes_pulled as f64),
        "B",
        "0",
        0.0,
        "default settings: Strata's own cache claim",
    );
    let disk = median(state.cold.iter().map(|r| r.peak_disk_bytes as f64));
    let size = median(state.cold.iter().map(|r| r.image_size_bytes as f64));
    report.goal(
        "disk_over_image_size",
        "builder ephemeral disk per build / image size",
        ratio(disk, size),
        "x",
        "≤ 1.5",
        1.5,
        "cold build: its emptyDirs and the claim it started empty",
    );
    let scale = state.scale.as_ref();
    report.goal(
        "resync_requests_per_config",
        "API requests per config in a resync beyond the initial lists",
        scale.map(|s| s.audit.beyond_lists_and_leases() as f64 / s.total_configs.max(1) as f64),
        "",
        "≤ 1",
        1.0,
        "",
    );
    report.goal(
        "resync_writes",
        "writes in a resync (leader Lease left out)",
        scale.map(|s| s.audit.writes_excluding_leases() as f64),
        "",
        "0",
        0.0,
        "",
    );
    report.goal(
        "resync_settle_seconds",
        "new leader → its last reconcile of the resync",
        scale.map(|s| s.settle_seconds),
        "s",
        "≤ 5 s",
        5.0,
        "",
    );
    report.goal(
        "rss_mib",
        "steady leader RSS",
        scale.map(|s| s.rss_after_resync_mib),
        "MiB",
        "< 64 MiB",
        64.0,
        "",
    );
    report.goal(
        "reconcile_p99_seconds",
        "reconcile p99 while builds run",
        scale.and_then(|s| s.build_phase_p99),
        "s",
        "< 1 s",
        1.0,
        "",
    );
}

fn write_results(report: &Report, state: &State, args: &RunArgs, elapsed: f64) -> Result<()> {
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| strata_e2e::repo_root().join("bench"));
    let sections: Vec<Value> = state
        .section_seconds
        .iter()
        .map(|(s, t)| json!({"section": s, "seconds": t}))
        .collect();
    let meta = json!({
        "written": jiff::Timestamp::now().to_string(),
        "duration_seconds": elapsed,
        "complete": report.errors.is_empty(),
        "sections": sections,
        "runs": args.runs, "mco_runs": args.mco_runs, "claim_runs": args.claim_runs,
        "scale": args.scale, "batch": args.batch, "scale_controller_args": args.scale_controller_arg,
    });
    let header = format!(
        "# Strata benchmarks\n\nWritten by `make bench` (bench/run.sh → strata-bench) on {} in {:.0} min{}; \
         the same numbers are in `bench/results.json`. Sections: {}.\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        elapsed / 60.0,
        if report.errors.is_empty() {
            ""
        } else {
            " — INCOMPLETE, see below"
        },
        state
            .section_seconds
            .iter()
            .map(|(s, t)| format!("{s} {:.0} min", t / 60.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
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

#[allow(dead_code)]
fn unused(_: &Path) {}
