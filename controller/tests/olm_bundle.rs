//! The OLM bundle (`bundle/`) is generated from the manifests and is valid.
//!
//! `tools/olm/bundle.sh check` regenerates the bundle into a temp dir (`strata-olm generate`:
//! `kubectl kustomize manifests/overlays/openshift`, `examples/`, `Cargo.toml`), fails on any
//! difference from `bundle/`, then runs operator-framework/api's validators over it
//! (`strata-olm validate`). The other tests show that the check catches drift in either direction
//! and that validation and generation refuse broken input. `strata-olm` is built from
//! `tools/olm` by `tools/olm/build.sh` (Go module proxy; cached outside the repo). Without Go or
//! kubectl the tests say SKIPPED, except under `make test` and CI, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The prerequisite, or None when it is missing (skipped; a failure under `make test` and CI).
fn require(test: &str, what: Result<PathBuf, String>) -> Option<PathBuf> {
    match what {
        Ok(p) => Some(p),
        Err(e) => {
            strata_e2e::skip(test, &e);
            None
        }
    }
}

/// strata-olm, built once per test process (tools/olm/build.sh caches it across runs).
fn strata_olm() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if Command::new("go").arg("version").output().is_err() {
            return Err("go is not installed (Go >= 1.26 builds tools/olm)".into());
        }
        let out = Command::new(repo().join("tools/olm/build.sh"))
            .output()
            .unwrap();
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "tools/olm/build.sh failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        Ok(PathBuf::from(stdout.lines().last().unwrap().trim()))
    })
    .clone()
}

/// kubectl as tools/olm/bundle.sh finds it: $KUBECTL, PATH, or the e2e build in the strata cache.
fn kubectl() -> Result<PathBuf, String> {
    if let Ok(k) = std::env::var("KUBECTL") {
        return Ok(PathBuf::from(k));
    }
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(PathBuf::from("kubectl"));
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"))
        .join("strata");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("kube-"))
        .map(|e| e.path().join("bin/kubectl"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| "kubectl not found (set KUBECTL, or run make e2e-setup)".into())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn bundle_sh(kubectl: &Path, args: &[&str]) -> Output {
    Command::new(repo().join("tools/olm/bundle.sh"))
        .args(args)
        .env("KUBECTL", kubectl)
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The generator's inputs and the committed bundle, copied into a temp "repository".
fn repo_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = repo();
    for dir in ["crds", "manifests", "examples", "bundle"] {
        copy_dir(&root.join(dir), &tmp.path().join(dir));
    }
    std::fs::copy(root.join("Cargo.toml"), tmp.path().join("Cargo.toml")).unwrap();
    // The console plugin's supported console releases set the bundle's OpenShift versions.
    std::fs::create_dir_all(tmp.path().join("console-plugin")).unwrap();
    std::fs::copy(
        root.join("console-plugin/package.json"),
        tmp.path().join("console-plugin/package.json"),
    )
    .unwrap();
    std::fs::create_dir_all(tmp.path().join("tools/olm")).unwrap();
    for f in ["csv-metadata.yaml", "icon.svg"] {
        std::fs::copy(
            root.join("tools/olm").join(f),
            tmp.path().join("tools/olm").join(f),
        )
        .unwrap();
    }
    tmp
}

fn edit(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(
        s.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    std::fs::write(path, s.replacen(from, to, 1)).unwrap();
}

#[test]
fn committed_bundle_matches_the_manifests_and_validates() {
    let test = "committed_bundle_matches_the_manifests_and_validates";
    let Some(_) = require(test, strata_olm()) else {
        return;
    };
    let Some(kubectl) = require(test, kubectl()) else {
        return;
    };
    let out = bundle_sh(&kubectl, &["check"]);
    eprint!("{}", text(&out));
    assert!(
        out.status.success(),
        "bundle/ is stale or invalid: run `tools/olm/bundle.sh generate` (make bundle) and commit bundle/"
    );
}

#[test]
fn check_catches_drift_both_ways() {
    let test = "check_catches_drift_both_ways";
    let Some(_) = require(test, strata_olm()) else {
        return;
    };
    let Some(kubectl) = require(test, kubectl()) else {
        return;
    };

    // A manifest changes, the bundle does not: the check fails and shows the change.
    let tmp = repo_copy();
    let root = tmp.path().to_str().unwrap();
    edit(
        &tmp.path().join("manifests/base/deployment.yaml"),
        "replicas: 2",
        "replicas: 3",
    );
    let out = bundle_sh(&kubectl, &["check", root]);
    let t = text(&out);
    assert!(
        !out.status.success(),
        "a changed manifest went unnoticed:\n{t}"
    );
    assert!(
        t.contains("-          replicas: 2") && t.contains("+          replicas: 3"),
        "{t}"
    );
    assert!(
        t.contains("bundle/ differs from what the manifests generate"),
        "{t}"
    );
    // Regenerating fixes it.
    let out = bundle_sh(&kubectl, &["generate", root]);
    assert!(out.status.success(), "{}", text(&out));
    let out = bundle_sh(&kubectl, &["check", root]);
    assert!(out.status.success(), "{}", text(&out));

    // The bundle is edited by hand: the check fails too.
    let tmp = repo_copy();
    let root = tmp.path().to_str().unwrap();
    edit(
        &tmp.path()
            .join("bundle/manifests/strata.clusterserviceversion.yaml"),
        "maturity: alpha",
        "maturity: stable",
    );
    let out = bundle_sh(&kubectl, &["check", root]);
    let t = text(&out);
    assert!(
        !out.status.success(),
        "a hand-edited bundle went unnoticed:\n{t}"
    );
    assert!(
        t.contains("-  maturity: stable") && t.contains("+  maturity: alpha"),
        "{t}"
    );

    // A stray file in bundle/ counts as drift.
    let tmp = repo_copy();
    std::fs::write(tmp.path().join("bundle/manifests/extra.yaml"), "{}\n").unwrap();
    let out = bundle_sh(&kubectl, &["check", tmp.path().to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("extra.yaml"), "{t}");
}

/// Copies bundle/, changes its CSV (parsed), runs `strata-olm validate`, returns (success, output).
fn validate_with(change: impl FnOnce(&Path, &mut Value)) -> (bool, String) {
    let bin = strata_olm().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // In a subdirectory: operator-framework/api's loader skips directories named .* (like .tmpXXX).
    let dir = tmp.path().join("bundle");
    copy_dir(&repo().join("bundle"), &dir);
    let csv_path = dir.join("manifests/strata.clusterserviceversion.yaml");
    let mut csv: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&csv_path).unwrap()).unwrap();
    change(&dir, &mut csv);
    std::fs::write(&csv_path, serde_saphyr::to_string(&csv).unwrap()).unwrap();
    let out = Command::new(bin)
        .arg("validate")
        .arg(&dir)
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn validation_catches_broken_bundles() {
    let test = "validation_catches_broken_bundles";
    let Some(_) = require(test, strata_olm()) else {
        return;
    };

    // The copy itself validates (after a round trip through serde_saphyr).
    let (ok, out) = validate_with(|_, _| {});
    assert!(ok, "the unchanged bundle should validate:\n{out}");

    // The CSV stops owning a CRD the bundle ships.
    let (ok, out) = validate_with(|_, csv| {
        csv["spec"]["customresourcedefinitions"]["owned"]
            .as_array_mut()
            .unwrap()
            .retain(|o| o["kind"] != "MachineOSBuild");
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains("ERROR [default/bundle]")
            && out.contains("Kind=MachineOSBuild\" is present in bundle")
            && out.contains("but not defined in CSV"),
        "{out}"
    );

    // The CSV owns a CRD the bundle does not ship.
    let (ok, out) = validate_with(|dir, _| {
        std::fs::remove_file(dir.join("manifests/strata.dev_machineosconfigs.yaml")).unwrap();
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains("owned CRD \"strata.dev/v1alpha1, Kind=MachineOSConfig\" not found in bundle"),
        "{out}"
    );

    // No install mode, an example of an API the bundle does not own.
    let (ok, out) = validate_with(|_, csv| {
        for m in csv["spec"]["installModes"].as_array_mut().unwrap() {
            m["supported"] = json!(false);
        }
        let examples =
            json!([{"apiVersion": "example.com/v1", "kind": "Nope", "metadata": {"name": "x"}}]);
        csv["metadata"]["annotations"]["alm-examples"] = json!(examples.to_string());
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains("none of InstallModeTypes are supported"),
        "{out}"
    );
    assert!(out.contains("example must have a provided API"), "{out}");

    // OpenShift: the plugin annotation names a plugin the bundle lacks; a bad versions label.
    let (ok, out) = validate_with(|dir, csv| {
        csv["metadata"]["annotations"]["console.openshift.io/plugins"] = json!("[\"nope\"]");
        edit(
            &dir.join("metadata/annotations.yaml"),
            "com.redhat.openshift.versions: v4.",
            "com.redhat.openshift.versions: 4.x",
        );
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains("names nope, but the bundle has no ConsolePlugin nope"),
        "{out}"
    );
    assert!(out.contains("com.redhat.openshift.versions"), "{out}");

    // Registry format: a kind OLM cannot install, two objects in one file.
    let (ok, out) = validate_with(|dir, _| {
        std::fs::write(
            dir.join("manifests/job.yaml"),
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n",
        )
        .unwrap();
        let svc = dir.join("manifests/strata-controller_v1_service.yaml");
        let s = std::fs::read_to_string(&svc).unwrap();
        std::fs::write(&svc, format!("{s}---\n{s}")).unwrap();
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains("manifests/job.yaml: kind Job is not supported"),
        "{out}"
    );
    assert!(out.contains("holds 2 objects"), "{out}");

    // Claiming disconnected support while an image is by tag: mirrors work by digest only.
    let (ok, out) = validate_with(|_, csv| {
        csv["metadata"]["annotations"]["features.operators.openshift.io/disconnected"] =
            json!("true");
    });
    assert!(!ok, "{out}");
    assert!(out.contains("is not pinned by digest"), "{out}");
}

#[test]
fn bundle_versions_follow_the_console_plugin() {
    let test = "bundle_versions_follow_the_console_plugin";
    let Some(_) = require(test, strata_olm()) else {
        return;
    };
    let Some(kubectl) = require(test, kubectl()) else {
        return;
    };
    let plugin: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("console-plugin/package.json")).unwrap(),
    )
    .unwrap();
    let api = plugin["consolePlugin"]["dependencies"]["@console/pluginAPI"]
        .as_str()
        .unwrap();
    let sdk = plugin["devDependencies"]["@openshift-console/dynamic-plugin-sdk"]
        .as_str()
        .unwrap();
    let minor = |v: &str| {
        v.trim_start_matches(">=")
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
    };
    assert_eq!(minor(api), minor(sdk), "pluginAPI {api} vs SDK {sdk}");
    let annotations =
        std::fs::read_to_string(repo().join("bundle/metadata/annotations.yaml")).unwrap();
    assert!(
        annotations.contains(&format!("com.redhat.openshift.versions: v{}\n", minor(api))),
        "{annotations}"
    );

    // A plugin for a console the table does not know stops generation.
    let tmp = repo_copy();
    edit(
        &tmp.path().join("console-plugin/package.json"),
        api,
        ">=4.99.0-0",
    );
    let out = bundle_sh(&kubectl, &["generate", tmp.path().to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("console 4.99 is not in the OpenShift table"),
        "{t}"
    );
}

#[test]
fn generation_refuses_what_olm_cannot_express() {
    let test = "generation_refuses_what_olm_cannot_express";
    let Some(bin) = require(test, strata_olm()) else {
        return;
    };
    let Some(kubectl) = require(test, kubectl()) else {
        return;
    };
    let generate = |root: &Path| {
        let out = Command::new(&bin)
            .args(["generate", "--repo"])
            .arg(root)
            .arg("--out")
            .arg(root.join("out"))
            .arg("--kubectl")
            .arg(&kubectl)
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };

    // A kind no registry+v1 bundle carries, not listed under notShipped.
    let tmp = repo_copy();
    let overlay = tmp.path().join("manifests/overlays/openshift");
    std::fs::write(
        overlay.join("job.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: stray, namespace: strata-system}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    )
    .unwrap();
    edit(
        &overlay.join("kustomization.yaml"),
        "resources:\n",
        "resources:\n- job.yaml\n",
    );
    let (ok, out) = generate(tmp.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains("Job strata-system/stray: a registry+v1 bundle cannot carry this kind"),
        "{out}"
    );

    // A grant in another namespace that is not limited to named objects: OLM could only make it
    // cluster-wide, so generation stops instead of widening it.
    let tmp = repo_copy();
    let overlay = tmp.path().join("manifests/overlays/openshift");
    std::fs::write(
        overlay.join("wide.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: wide, namespace: openshift-config}\nrules:\n- {apiGroups: [\"\"], resources: [secrets], verbs: [get]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: wide, namespace: openshift-config}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: wide}\nsubjects:\n- {kind: ServiceAccount, name: strata-controller, namespace: strata-system}\n",
    )
    .unwrap();
    edit(
        &overlay.join("kustomization.yaml"),
        "resources:\n",
        "resources:\n- wide.yaml\n",
    );
    let (ok, out) = generate(tmp.path());
    assert!(!ok, "{out}");
    assert!(out.contains("without resourceNames"), "{out}");
}
