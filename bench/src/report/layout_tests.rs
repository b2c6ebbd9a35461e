//! RESULTS.md and results.json rendered from a fixed run, compared with the files in testdata/:
//! docs and README quote their layout. `STRATA_BENCH_BLESS=1 cargo test -p strata-bench` rewrites
//! the files after a deliberate change.

use std::collections::BTreeMap;
use std::path::Path;

use clap::Parser;
use serde_json::json;
use strata_e2e::measure::pod_usage::ContainerUsage;
use strata_e2e::measure::registry_log::Counts;

use super::Report;
use crate::build::{Step, StrataRun};
use crate::sections::State;
use crate::stats::AuditCounts;
use crate::{Cli, host, mco_way, scale};

fn counts(requests: &[(&str, u64)]) -> Counts {
    Counts {
        requests: requests.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        bytes_sent: 1000,
    }
}

fn strata_run(n: u64) -> StrataRun {
    let f = n as f64;
    let usage = |rss: u64| ContainerUsage {
        peak_rss_bytes: rss << 20,
        cpu_seconds: 2.0 * f,
        ..ContainerUsage::default()
    };
    StrataRun {
        build: format!("bench-build-{n}"),
        apply_to_pod: 0.5 * f,
        pod_to_done: 40.0 * f,
        done_to_pinned: 0.25,
        apply_to_pinned: 41.0 * f,
        phases: ["pull", "build", "lint", "push"]
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), f + i as f64))
            .collect(),
        lifecycle: vec![
            (
                "pull ended → build created (kubelet noticing)".into(),
                0.5 * f,
            ),
            ("phase build (work)".into(), f),
        ],
        lifecycle_seconds: 2.0 * f,
        steps: ["pull", "build", "push"]
            .iter()
            .map(|s| Step {
                resources: "requests cpu=100m, memory=64Mi; limits memory=1Gi".into(),
                name: s.to_string(),
                usage: usage(100 * n),
            })
            .collect(),
        peak_disk_bytes: (3 << 30) * n,
        image_size_bytes: 2 << 30,
        digest: format!("sha256:{n:064}"),
        uploaded: Vec::new(),
        pod_registry: counts(&[("GET blob", 40 + n), ("HEAD manifest", 2)]),
        base_bytes_pulled: (1 << 30) * (n - 1),
        controller_registry: counts(&[("HEAD manifest", n)]),
        agent: Some("buildah/1.39".into()),
        containerfile: String::new(),
    }
}

fn audit(pairs: &[(&str, u64)]) -> AuditCounts {
    AuditCounts {
        by_verb: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        foreign: BTreeMap::new(),
    }
}

/// Every section measured, one MCO's-way build stopped by the disk guard.
fn state() -> State {
    let host = |n: f64| host::HostBuild {
        pull_seconds: 10.0 * n,
        bud_seconds: 20.0,
        push_seconds: 5.0,
        peak_disk_bytes: 5 << 30,
    };
    let mco = |done: f64, aborted: Option<&str>| mco_way::McoRun {
        create_to_done: done,
        peak_disk_bytes: 12 << 30,
        base_bytes_pulled: 1 << 30,
        aborted: aborted.map(String::from),
        ..mco_way::McoRun::default()
    };
    State {
        builder_image: "registry/builder@sha256:1".into(),
        builder_agent: Some("buildah/1.39".into()),
        base: Some(crate::build::Base {
            image: "registry/os@sha256:2".into(),
            layers: vec![("sha256:3".into(), 1 << 30)],
            config_digest: "sha256:4".into(),
            config_bytes: 0,
        }),
        base_uncompressed: Some((4 << 30, 48)),
        vfs_estimate: Some(90 << 30),
        cold: vec![strata_run(1), strata_run(2), strata_run(3)],
        host: vec![host(1.0), host(2.0), host(3.0)],
        host_own: vec![host(2.0)],
        rebuild: vec![strata_run(1), strata_run(1)],
        rebuild_push: vec![(1100, 1000), (1000, 1000)],
        concurrent: vec![50.0, 60.0, 70.0, 80.0],
        upgrade: Some(crate::sections::Upgrade {
            run: StrataRun {
                base_bytes_pulled: 26 << 20,
                ..strata_run(1)
            },
            changed_layers: 5,
            changed_bytes: 25 << 20,
        }),
        second: Some(strata_run(1)),
        mco: vec![mco(600.0, None), mco(0.0, Some("stopped: disk"))],
        mco_skipped: None,
        claim_first: Some(strata_run(2)),
        claim_rebuild: vec![strata_run(1), strata_run(2)],
        claim_second: Some(strata_run(1)),
        claim_growth: vec![("after the first build".into(), 6 << 30)],
        emptydir_rebuild: Some(strata_run(2)),
        scale: Some(scale::ScaleResult {
            configs: 50,
            total_configs: 52,
            all_pinned_seconds: 120.0,
            build_phase_cpu_seconds: 3.5,
            build_phase_reconciles: 400.0,
            build_phase_p50: Some(0.004),
            build_phase_p99: Some(0.2),
            build_phase_slowest_bound: Some(0.5),
            build_phase_queue_p99: Some(0.3),
            build_phase_queue_waits: 420.0,
            build_phase_api: audit(&[("get pods", 10), ("patch machineosconfigs", 50)]),
            build_phase_registry: counts(&[("HEAD manifest", 50)]),
            rss_after_builds_mib: 30.0,
            rss_split_after_builds_mib: Some((20.0, 10.0)),
            takeover_seconds: 2.5,
            takeover_by: "the standby",
            settle_upper_bound: true,
            settle_seconds: 1.5,
            all_reconciled_seconds: 1.25,
            resync_reconciles: 52.0,
            resync_cpu_seconds: 0.75,
            rss_after_resync_mib: 31.0,
            idle_millicores: 2.5,
            resync_p50: Some(0.002),
            resync_p99: None,
            resync_slowest_bound: None,
            audit: audit(&[("list pods", 3), ("update leases", 2), ("get secrets", 4)]),
            audit_window_seconds: 20.0,
            resync_registry: counts(&[]),
        }),
        section_seconds: vec![("Builds".into(), 600.0), ("Scale".into(), 300.0)],
    }
}

/// RESULTS.md and results.json of a fixed run: the layout docs and README read.
#[test]
fn report_of_a_fixture_run_keeps_its_layout() {
    let state = state();
    let cli = Cli::parse_from(["strata-bench"]);
    let mut report = Report::default();
    super::builds::rows(&state, &mut report);
    super::mco::rows(&state, &mut report);
    super::claim::rows(&state, &mut report);
    super::scale::rows(&state, &mut report);
    super::goals::conclude(&state, &mut report, cli.run.runs);
    report.machine = vec![("nproc".into(), "2".into())];
    let markdown = report.markdown("# header\n");
    let json = serde_json::to_string_pretty(&report.json(json!({"meta": 1}))).unwrap() + "\n";
    if std::env::var_os("STRATA_BENCH_BLESS").is_some() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report/testdata");
        std::fs::write(dir.join("results.md"), &markdown).unwrap();
        std::fs::write(dir.join("results.json"), &json).unwrap();
    }
    assert_eq!(markdown, include_str!("testdata/results.md"));
    assert_eq!(json, include_str!("testdata/results.json"));
}
