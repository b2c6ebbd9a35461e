//! Every example in examples/ (user-facing, for RHCOS) and e2e/examples/ (the local cluster's
//! Debian-based CoreOS-like image) loads, passes the CRD's rules and renders; the user-facing ones
//! have distinct names (they are the OLM bundle's `alm-examples`) and no Debian-only step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const BASE: &str = "registry.example.com/rhcos@sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// Debian tools and paths a fragment for RHCOS cannot use: they belong in e2e/examples/.
const DEBIAN_ONLY: [&str; 5] = ["apt-get", "apt ", "dpkg", "/etc/apt/", "/etc/default/"];

fn examples(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    paths.sort();
    paths
}

fn render(path: &Path) -> strata_crds::MachineOSConfig {
    let config =
        strata::cli::render::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let inputs = strata::render::BuildInputs::from_config(&config, BASE);
    let out = strata::render::render(&inputs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(out.containerfile.contains(&format!("FROM {BASE} AS base")));
    config
}

#[test]
fn every_example_renders() {
    let user = examples("examples");
    let e2e = examples("e2e/examples");
    for path in user.iter().chain(&e2e) {
        render(path);
    }
    assert!(user.len() >= 4, "only {} examples", user.len());
    assert!(e2e.len() >= 3, "only {} e2e examples", e2e.len());
}

#[test]
fn user_examples_have_distinct_names_and_no_debian_steps() {
    let mut names = BTreeSet::new();
    for path in examples("examples") {
        let config = render(&path);
        let name = config.metadata.name.clone().unwrap();
        assert!(
            names.insert(name.clone()),
            "{}: name {name} is used by another example",
            path.display()
        );
        for fragment in &config.spec.container_file {
            for word in DEBIAN_ONLY {
                assert!(
                    !fragment.content.contains(word),
                    "{}: {word:?} is Debian-only (RHCOS has rpm-ostree/dnf); such fragments belong in e2e/examples/",
                    path.display()
                );
            }
        }
    }
}
