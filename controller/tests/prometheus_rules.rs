//! The PrometheusRule of the OpenShift overlay is valid, fires as intended, and speaks of the
//! metrics the controller really emits:
//! - `promtool check rules` and `promtool test rules` (Debian's prometheus package; `make test`
//!   installs it, and fails without it);
//! - every `strata_*` series named in the rules and in the test input is a sample of a real
//!   exposition of the controller's metrics;
//! - every alert has a test where it fires;
//! - every alert follows OpenShift's alerting conventions: a `severity` of `critical`, `warning` or
//!   `info`, `summary` and `description`, and a `runbook_url` whose path ends in its own page in
//!   docs/runbooks/, which exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use strata::controller::metrics::Metrics;
use strata_crds::BuildPhase;

fn overlay() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/overlays/openshift")
}

fn yaml(name: &str) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(overlay().join(name)).unwrap()).unwrap()
}

/// The `strata_*` sample names of an exposition of the controller's metrics, with every family
/// holding at least one series.
fn emitted() -> BTreeSet<String> {
    let m = Metrics::default();
    m.set_leader(true);
    m.set_phase("worker", Some(BuildPhase::Building));
    m.set_waiting("worker", Some("ImagePullBackOff"));
    m.set_pool_updated("worker", false);
    m.set_pool_held("worker", true);
    m.set_pool_machines("worker", &[("updated", 1), ("degraded", 1)]);
    m.set_config("worker", "worker", Some(true), Some("NodeDegraded"));
    m.build_started("worker", 1.0);
    m.builder_phase("worker", "build", 1.0);
    m.build_ended("worker", BuildPhase::Failed, Some(1.0), 1.0);
    m.build_ended("worker", BuildPhase::Succeeded, Some(1.0), 1.0);
    m.reconciled(0.1);
    m.reconcile_failed("kube");
    m.boot_checked("worker", true, "TCG", 1.0);
    m.image_deletion("ImageDeleted");
    m.encode()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| n.starts_with("strata_"))
        .map(str::to_string)
        .collect()
}

fn strata_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("strata_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn rules_and_their_tests_name_only_metrics_the_controller_emits() {
    let emitted = emitted();
    let rule = yaml("prometheusrule.yaml");
    let tests = yaml("prometheusrule.test.yaml");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    for r in rules {
        for name in strata_names(r["expr"].as_str().unwrap()) {
            assert!(
                emitted.contains(&name),
                "alert {} uses {name}, which the controller does not emit; it emits {emitted:?}",
                r["alert"]
            );
        }
    }
    for series in tests["tests"][0]["input_series"].as_array().unwrap() {
        for name in strata_names(series["series"].as_str().unwrap()) {
            assert!(emitted.contains(&name), "test input {name} is not emitted");
        }
    }
    let firing: BTreeSet<&str> = tests["tests"][0]["alert_rule_test"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|t| t["alertname"].as_str())
        .collect();
    for r in rules {
        let alert = r["alert"].as_str().unwrap();
        assert!(
            firing.contains(alert),
            "alert {alert} has no test where it fires"
        );
    }
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_its_runbook() {
    let rule = yaml("prometheusrule.yaml");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    assert!(rules.len() >= 7, "only {} rules", rules.len());
    let runbooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks");
    for r in rules {
        let alert = r["alert"].as_str().unwrap();
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "alert {alert}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                r["annotations"][key]
                    .as_str()
                    .is_some_and(|v| !v.is_empty()),
                "alert {alert} has no {key}"
            );
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let page = format!("{alert}.md");
        assert!(
            url.starts_with("https://") && url.ends_with(&format!("/docs/runbooks/{page}")),
            "alert {alert}: runbook_url {url} does not name docs/runbooks/{page}"
        );
        let text = std::fs::read_to_string(runbooks.join(&page))
            .unwrap_or_else(|e| panic!("alert {alert}: docs/runbooks/{page}: {e}"));
        assert!(
            text.starts_with(&format!("# {alert}\n")),
            "docs/runbooks/{page} does not start with its alert's name"
        );
    }
}

/// Whether promtool runs here; when not, `test` is skipped (which fails under CI).
fn promtool_or_skip(test: &str) -> bool {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        strata_e2e::skip(
            test,
            "promtool is not installed (apt-get install prometheus; `make test` installs it)",
        );
    }
    found
}

#[test]
fn prometheus_rules_pass_promtool() {
    if !promtool_or_skip("prometheus_rules_pass_promtool") {
        return;
    }
    let rule = yaml("prometheusrule.yaml");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        serde_saphyr::to_string(&json!({"groups": rule["spec"]["groups"]})).unwrap(),
    )
    .unwrap();
    let mut tests = yaml("prometheusrule.test.yaml");
    tests["rule_files"] = json!([rules.display().to_string()]);
    let tests_file = dir.path().join("tests.yaml");
    std::fs::write(&tests_file, serde_saphyr::to_string(&tests).unwrap()).unwrap();

    promtool_passes(["check", "rules"], &rules);
    promtool_passes(["test", "rules"], &tests_file);
}

/// `promtool ARGS FILE` succeeds; its output is the failure message otherwise.
fn promtool_passes(args: [&str; 2], file: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} {} failed:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every query of the console dashboard (`console-dashboard.yaml`): (panel title, expr).
fn dashboard_queries() -> Vec<(String, String)> {
    let config = yaml("console-dashboard.yaml");
    assert_eq!(
        config["metadata"]["labels"]["console.openshift.io/dashboard"], "true",
        "the console finds dashboards by this label"
    );
    assert_eq!(config["metadata"]["namespace"], "openshift-config-managed");
    let json = config["data"]["strata-builds.json"].as_str().unwrap();
    let dashboard: Value = serde_json::from_str(json).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    queries
}

#[test]
fn the_console_dashboard_queries_only_metrics_the_controller_emits() {
    let emitted = emitted();
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    for (panel, expr) in &queries {
        let names = strata_names(expr);
        assert!(
            !names.is_empty(),
            "panel {panel}: {expr} names no Strata series"
        );
        for name in names {
            assert!(
                emitted.contains(&name),
                "panel {panel} queries {name}, which the controller does not emit"
            );
        }
    }
}

#[test]
fn the_console_dashboard_queries_pass_promtool() {
    if !promtool_or_skip("the_console_dashboard_queries_pass_promtool") {
        return;
    }
    // promtool parses PromQL in rules: each query as a recording rule.
    let rules: Vec<Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("strata:dashboard_{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.yaml");
    std::fs::write(
        &file,
        serde_saphyr::to_string(&json!({"groups": [{"name": "dashboard", "rules": rules}]}))
            .unwrap(),
    )
    .unwrap();
    promtool_passes(["check", "rules"], &file);
}
