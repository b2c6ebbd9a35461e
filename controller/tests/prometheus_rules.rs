//! The PrometheusRule of the OpenShift overlay is valid and its alerts fire as intended:
//! `promtool check rules` and `promtool test rules` (Debian's prometheus package; .ci/run
//! installs it). The test says SKIPPED when promtool is absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

#[test]
fn prometheus_rules_pass_promtool() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED prometheus_rules_pass_promtool: promtool is not installed (apt-get install prometheus)"
        );
        return;
    }
    let overlay = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/overlays/openshift");
    let rule: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(overlay.join("prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("strata-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        serde_saphyr::to_string(&json!({"groups": rule["spec"]["groups"]})).unwrap(),
    )
    .unwrap();
    let mut tests: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(overlay.join("prometheusrule.test.yaml")).unwrap(),
    )
    .unwrap();
    tests["rule_files"] = json!([rules.display().to_string()]);
    let tests_file = dir.join("tests.yaml");
    std::fs::write(&tests_file, serde_saphyr::to_string(&tests).unwrap()).unwrap();

    for args in [vec!["check", "rules"], vec!["test", "rules"]] {
        let file = if args[0] == "check" {
            &rules
        } else {
            &tests_file
        };
        let out = Command::new("promtool")
            .args(&args)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
