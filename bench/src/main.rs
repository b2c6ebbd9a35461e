//! `strata-bench` (run by `make bench` through bench/run.sh): measures Strata on the local real
//! cluster and this machine, prints a table and writes bench/RESULTS.md. See README "Benchmarks".
//!
//! Needs the environment of `e2e/.state/env` (KUBECONFIG, STRATA_REGISTRY, STRATA_OS_BASE_IMAGE,
//! STRATA_E2E_DIR) and STRATA_BIN. Everything it creates is named `bench-*` and labelled
//! `strata.dev/bench`; it deletes it and redeploys the controller normally at the end.

mod cache;
mod cluster;
mod host;
mod overhead;
mod report;
mod scale;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use report::Report;

const MCO_REFERENCE: &str =
    "MCO: every event queued with a fixed 5 s delay (anchor-mco-ocl.md §2.1)";

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
    /// Delete every bench-* object, redeploy the controller normally, remove the work dir.
    Cleanup,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Runs per repeated measurement (items 1, 2, 3).
    #[arg(long, env = "STRATA_BENCH_RUNS", default_value_t = 5)]
    runs: usize,
    /// MachineOSConfigs and pools in the scale run (0 skips it).
    #[arg(long, env = "STRATA_BENCH_SCALE", default_value_t = 500)]
    scale: usize,
    /// MachineOSConfigs applied at once in the scale run before waiting for their builds.
    #[arg(long, env = "STRATA_BENCH_BATCH", default_value_t = 100)]
    batch: usize,
    /// Skip the cache measurement (item 3).
    #[arg(long)]
    skip_cache: bool,
    /// Where the results go.
    #[arg(long, default_value = "bench/RESULTS.md")]
    out: PathBuf,
}

struct Env {
    root: PathBuf,
    strata: String,
    registry: String,
    base: String,
    audit_log: PathBuf,
}

fn env() -> Result<Env> {
    let var = |k: &str| {
        std::env::var(k).with_context(|| format!("{k} is not set (source e2e/.state/env)"))
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repository root")?
        .to_path_buf();
    Ok(Env {
        strata: var("STRATA_BIN")?,
        registry: var("STRATA_REGISTRY")?,
        base: var("STRATA_OS_BASE_IMAGE")?,
        audit_log: PathBuf::from(var("STRATA_E2E_DIR")?).join("logs/audit.log"),
        root,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let env = env()?;
    let client = kube::Client::try_default().await?;
    if let Some(Cmd::Cleanup) = cli.command {
        return cleanup(&client, &env).await;
    }
    let started = Instant::now();
    let mut report = Report {
        machine: host::machine(&env.strata, &env.root).await,
        ..Report::default()
    };
    let result = measure(&client, &env, &cli.run, &mut report).await;
    eprintln!("bench: cleaning up (bench-* objects, controller redeployed normally)");
    let cleaned = cleanup(&client, &env).await;
    let elapsed = started.elapsed().as_secs_f64();
    let complete = result.is_ok();
    if let Err(err) = &result {
        report.note("Run incomplete", format!("The run stopped with: `{err:#}`"));
    }
    let header = format!(
        "# Strata benchmarks\n\nWritten by `make bench` (bench/run.sh → strata-bench) on {} in {:.0} s{}. \
         Repeated measurements: {} runs each (median, min, max); the scale run once (N = {}). \
         Targets sit next to each figure so a regression is visible at a glance.\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        elapsed,
        if complete {
            ""
        } else {
            " — INCOMPLETE, see the end"
        },
        cli.run.runs,
        cli.run.scale
    );
    println!("\n{}", report.table());
    std::fs::write(env.root.join(&cli.run.out), report.markdown(&header))?;
    eprintln!(
        "bench: wrote {} ({elapsed:.0} s)",
        env.root.join(&cli.run.out).display()
    );
    result?;
    cleaned
}

async fn cleanup(client: &kube::Client, env: &Env) -> Result<()> {
    cluster::cleanup(client).await?;
    cluster::deploy(&env.root, None).await?;
    let _ = std::fs::remove_dir_all(host::work_dir());
    Ok(())
}

fn nonce(i: usize) -> String {
    format!(
        "{}-{i}",
        jiff::Timestamp::now()
            .as_millisecond()
            .rem_euclid(100_000_000)
    )
}

async fn measure(
    client: &kube::Client,
    env: &Env,
    args: &RunArgs,
    report: &mut Report,
) -> Result<()> {
    eprintln!("bench: removing leftovers of earlier runs, deploying the controller");
    cluster::cleanup(client).await?;
    cluster::deploy(&env.root, None).await?;
    cluster::wait_for_leader(client, None).await?;
    cluster::apply_push_secret(client, &env.registry).await?;
    cluster::apply_pool(client, overhead::CONFIG, "overhead").await?;

    // Item 5: the builder image, from its manifest in the registry.
    let images = std::fs::read_to_string(env.root.join("e2e/.state/controller-images.env"))?;
    let builder = images
        .lines()
        .find_map(|l| l.strip_prefix("STRATA_BUILDER_IMAGE="))
        .context("no builder image in e2e/.state/controller-images.env")?
        .to_string();
    let size = image_size(&builder, &env.registry).await?;
    report.add(
        "5",
        "builder image size (layers + config, registry manifest)",
        "MiB",
        vec![size as f64 / 1024.0 / 1024.0],
        "—",
        "local builder image (Debian bookworm + buildah + strata, debug build)",
    );

    // Items 1 and 2: the cluster path and the host limit, alternating.
    let push_spec = format!("{}/bench/overhead:latest", env.registry);
    let mut watches = overhead::Watches::start(client).await?;
    eprintln!("bench: warm-up (builder image on the node, base in the registry; not counted)");
    let warm_nonce = nonce(0);
    let warm = overhead::cluster_run(client, &mut watches, &push_spec, &warm_nonce).await?;
    overhead::host_run(&warm.containerfile, &warm_nonce, &nonce(0), &env.registry).await?;
    let (mut to_pod, mut to_pin, mut full, mut in_pod, mut pod_bud, mut pod_push) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut to_job = vec![];
    let (mut host_total, mut host_bud, mut host_push, mut storage) =
        (vec![], vec![], vec![], vec![]);
    for i in 1..=args.runs {
        let n = nonce(i);
        let run = overhead::cluster_run(client, &mut watches, &push_spec, &n).await?;
        eprintln!(
            "bench: run {i}: apply→pod {:.3} s, terminated→pinned {:.3} s, apply→pinned {:.2} s",
            run.apply_to_pod, run.terminated_to_pinned, run.apply_to_pinned
        );
        let h = overhead::host_run(&run.containerfile, &n, &n, &env.registry).await?;
        eprintln!(
            "bench: run {i}: host bud {:.2} s + push {:.2} s",
            h.bud_seconds, h.push_seconds
        );
        to_pod.push(run.apply_to_pod);
        to_pin.push(run.terminated_to_pinned);
        to_job.push(run.terminated_to_job_complete);
        full.push(run.apply_to_pinned);
        in_pod.push(run.pod_to_terminated);
        pod_bud.push(run.builder_build);
        pod_push.push(run.builder_push);
        host_total.push(h.bud_seconds + h.push_seconds);
        host_bud.push(h.bud_seconds);
        host_push.push(h.push_seconds);
        storage.push(h.storage_bytes as f64 / 1024.0 / 1024.0);
    }
    report.add(
        "1",
        "MachineOSConfig applied → builder pod created",
        "s",
        to_pod,
        "< 1 s",
        MCO_REFERENCE,
    );
    report.add(
        "1",
        "builder terminated → MachineConfig pinned",
        "s",
        to_pin,
        "< 1 s",
        MCO_REFERENCE,
    );
    report.add(
        "1",
        "… for reference: builder terminated → its Job Complete (Kubernetes' Job controller)",
        "s",
        to_job,
        "—",
        "the controller acts on the builder pod's exit, not on this condition",
    );
    let ratio = stats::summarize(&full)
        .zip(stats::summarize(&host_total))
        .map(|(s, h)| s.median / h.median);
    report.add(
        "2",
        "Strata path: apply → digest pinned",
        "s",
        full,
        "—",
        ratio.map_or(String::new(), |r| {
            format!("{r:.2}× the host limit (medians)")
        }),
    );
    report.add(
        "2",
        "host limit: buildah bud + push (fresh vfs storage)",
        "s",
        host_total,
        "—",
        "reference",
    );
    report.add("2", "… host buildah bud", "s", host_bud, "—", "");
    report.add("2", "… host buildah push", "s", host_push, "—", "");
    report.add(
        "2",
        "… in the pod: pod created → builder terminated",
        "s",
        in_pod,
        "—",
        "",
    );
    report.add(
        "2",
        "… in the pod: buildah bud (builder's termination message)",
        "s",
        pod_bud,
        "—",
        "",
    );
    report.add(
        "2",
        "… in the pod: buildah push (builder's termination message)",
        "s",
        pod_push,
        "—",
        "",
    );
    report.add(
        "5",
        "buildah storage per build (du of the vfs root after bud + push)",
        "MiB",
        storage,
        "—",
        "the os-base stand-in is ~2 MiB; vfs copies the root per layer",
    );
    report.note(
        "1, 2 — controller overhead and build path",
        format!(
            "The deployed controller (manifests/, 2 replicas, the workspace's debug `strata`) builds \
             MachineOSConfig `{cfg}` with one fragment `RUN echo 'strata bench <nonce>' > /etc/strata-bench` \
             (a new nonce each run, so each run is a new build) on the os-base stand-in, pushing to \
             `{reg}/bench/overhead`. Timestamps are taken in the bench when its watches deliver each \
             event: the apply request is sent → the builder pod's first watch event; the builder \
             container's `terminated` state in a watch event → the MachineConfig `zz-strata-2-{cfg}` \
             with `osImageURL` = the digest from the termination message. \"Strata path\" is apply → \
             that MachineConfig. For reference, the first watch event showing the build's Job \
             `Complete` is timed too: the controller does not wait for it. The host limit builds the very Containerfile the controller \
             rendered for the run (its ConfigMap), with only the nonce changed, with the builder's \
             buildah flags (`bud --isolation=chroot --layers --format=oci`, vfs, a fresh storage \
             root like a new pod's emptyDir, then `push --digestfile`) to the same registry. Cluster \
             and host runs alternate; one warm-up of each (builder image pulled onto the node) is \
             not counted.",
            cfg = overhead::CONFIG,
            reg = env.registry
        ),
    );

    // Item 3: the registry cache.
    if !args.skip_cache {
        let (mut cold, mut cached, mut uncached) = (vec![], vec![], vec![]);
        for i in 1..=args.runs {
            let r = cache::run(&env.strata, &env.base, &env.registry, &nonce(i)).await?;
            eprintln!(
                "bench: cache run {i}: cold {:.2} s, rebuild with cache {:.2} s, without {:.2} s",
                r.cold, r.cached_rebuild, r.uncached_rebuild
            );
            cold.push(r.cold);
            cached.push(r.cached_rebuild);
            uncached.push(r.uncached_rebuild);
        }
        let ratio = |a: &[f64], b: &[f64]| {
            stats::summarize(a)
                .zip(stats::summarize(b))
                .map_or(String::new(), |(a, b)| {
                    format!("{:.2}× the cold build (medians)", a.median / b.median)
                })
        };
        let cached_note = ratio(&cached, &cold);
        let uncached_note = format!(
            "{}; what the MCO does on every change and retry",
            ratio(&uncached, &cold)
        );
        report.add(
            "3",
            "cold build, registry cache on (empty cache repository)",
            "s",
            cold,
            "—",
            "reference",
        );
        report.add(
            "3",
            "rebuild, last step changed, registry cache on",
            "s",
            cached,
            "< cold",
            cached_note,
        );
        report.add(
            "3",
            "rebuild, last step changed, no cache",
            "s",
            uncached,
            "—",
            uncached_note,
        );
        report.note(
            "3 — registry cache",
            format!(
                "`strata build` (the builder's own code) on the host, each build with a fresh buildah \
                 storage root (a new pod), of the Containerfile `strata render` makes from one fragment \
                 of {steps} steps: {costly} steps that each spin the shell and write 16 MiB (a stand-in \
                 for a package install), and a last `RUN echo … > /etc/strata-bench-last`. Per run: a \
                 cold build with `--registry-cache {reg}/bench/cache-<nonce>` (a new, empty cache \
                 repository), then a rebuild that changes only the last step with the same cache \
                 repository, then the same rebuild without a cache. Times are of the whole \
                 `strata build` (bud, cache pulls and pushes, push).",
                steps = cache::STEPS,
                costly = cache::STEPS - 1,
                reg = env.registry
            ),
        );
    }

    // Item 4: scale.
    if args.scale > 0 {
        let storage = host::Storage::fresh("noop")?;
        let seed = host::copy_image(
            &storage,
            &env.base,
            &format!("{}/bench/scale:seed", env.registry),
        )
        .await?;
        let image = format!("{}/bench/scale@{seed}", env.registry);
        let noop = host::noop_builder_image(
            &storage,
            &env.base,
            &seed,
            &format!("{}/bench/noop-builder:latest", env.registry),
        )
        .await?;
        storage.remove().await;
        let s = scale::run(
            client,
            &env.root,
            &env.audit_log,
            &env.registry,
            &image,
            &noop,
            args.scale,
            args.batch,
        )
        .await?;
        let n = s.configs;
        let opt = |v: Option<f64>| v.into_iter().collect::<Vec<_>>();
        report.add(
            "4",
            format!("{n} MachineOSConfigs applied → all pinned (no-op builder pods)"),
            "s",
            vec![s.all_pinned_seconds],
            "—",
            format!("batches of {}", args.batch),
        );
        report.add(
            "4",
            "controller CPU during those builds",
            "s",
            vec![s.build_phase_cpu_seconds],
            "—",
            format!("{:.0} reconciles", s.build_phase_reconciles),
        );
        report.add(
            "4",
            "controller RSS after the builds",
            "MiB",
            vec![s.rss_after_builds_mib],
            "< 256 MiB (the Deployment's limit)",
            "",
        );
        report.add(
            "4",
            "reconcile latency p50 during the builds",
            "s",
            opt(s.build_phase_p50),
            "—",
            "reconcile duration histogram",
        );
        report.add(
            "4",
            "reconcile latency p99 during the builds",
            "s",
            opt(s.build_phase_p99),
            "—",
            "",
        );
        report.add(
            "4",
            "leader pod deleted → standby leads",
            "s",
            vec![s.takeover_seconds],
            "≤ 20 s (Lease 15 s + grace 5 s)",
            "",
        );
        report.add(
            "4",
            format!("leader pod deleted → new leader has reconciled all {n}"),
            "s",
            vec![s.settle_seconds],
            "—",
            "time to settle after a restart",
        );
        report.add(
            "4",
            "API writes in that resync (leases excluded)",
            "",
            vec![s.audit.writes_excluding_leases() as f64],
            "0",
            "audit log, controller's ServiceAccount",
        );
        report.add(
            "4",
            "API requests in that resync (all verbs)",
            "",
            vec![s.audit.total() as f64],
            "—",
            format!(
                "{:.1} per MachineOSConfig",
                s.audit.total() as f64 / n as f64
            ),
        );
        report.add(
            "4",
            "reconcile latency p50 in the resync",
            "s",
            opt(s.resync_p50),
            "—",
            format!("{:.0} reconciles", s.resync_reconciles),
        );
        report.add(
            "4",
            "reconcile latency p99 in the resync",
            "s",
            opt(s.resync_p99),
            "—",
            "",
        );
        report.add(
            "4",
            "new leader's CPU for the resync",
            "s",
            vec![s.resync_cpu_seconds],
            "—",
            "",
        );
        report.add(
            "4",
            "new leader's RSS after the resync",
            "MiB",
            vec![s.rss_after_resync_mib],
            "< 256 MiB (the Deployment's limit)",
            "",
        );
        report.note(
            "4 — scale (one run)",
            format!(
                "{n} MachineConfigPool stand-ins and {n} MachineOSConfigs `bench-s0000…` in the real \
                 API server, applied in batches of {batch} (the bench waits for a batch's pools to be \
                 pinned before the next). Builds are real Jobs and pods on the real kubelet running a \
                 no-op builder image (the os-base stand-in with a `strata` script at the builder's \
                 entrypoint that writes the builder contract's success message naming the digest of one \
                 image the bench pushed beforehand to `{reg}/bench/scale`, which every bench \
                 MachineOSConfig pushes to), deployed with `STRATA_BUILDER_IMAGE_OVERRIDE`; the \
                 controller verifies that digest in the registry as for any build. CPU and RSS are the \
                 controller's own `/metrics` (`strata_process_cpu_seconds`, \
                 `strata_process_resident_memory_bytes`), read from the leader pod's IP; latencies from \
                 `strata_reconcile_duration_seconds` (exponential buckets 5 ms…10.24 s, interpolated). \
                 The controller has no resync flag (settled objects are requeued every 600 s), so the \
                 resync was triggered by deleting the leader pod: the standby takes the Lease and \
                 reconciles every MachineOSConfig ({total} in the cluster, {foreign} of them not the \
                 bench's; {reconciles:.0} reconciles in all, {per:.1} per MachineOSConfig). \"Settled\" is \
                 the new leader's reconcile count reaching {total}; the window for API requests runs from \
                 the deletion until the count had not moved for 10 s ({window:.0} s). Requests of the \
                 controller's ServiceAccount (both replicas and the replacement pod) in the API \
                 server's audit log, by verb and resource: {audit}.",
                batch = args.batch,
                reg = env.registry,
                total = s.total_configs,
                foreign = s.total_configs.saturating_sub(n + 1),
                reconciles = s.resync_reconciles,
                per = s.resync_reconciles / s.total_configs.max(1) as f64,
                window = s.audit_window_seconds,
                audit = s.audit.describe()
            ),
        );
    }
    Ok(())
}

/// Layers plus config of `image`'s manifest in the registry.
async fn image_size(image: &str, registry: &str) -> Result<u64> {
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.to_string()]),
        ..ClientConfig::default()
    });
    let reference: oci_client::Reference = image.parse()?;
    let (manifest, _) = client
        .pull_image_manifest(&reference, &RegistryAuth::Anonymous)
        .await?;
    Ok(manifest
        .layers
        .iter()
        .map(|l| l.size.max(0) as u64)
        .sum::<u64>()
        + manifest.config.size.max(0) as u64)
}
