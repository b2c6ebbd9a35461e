//! Every example in examples/ loads, passes the CRD's rules and renders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

const BASE: &str = "registry.example.com/rhcos@sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn every_example_renders() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut rendered = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let config =
            strata::cli::render::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let inputs = strata::render::BuildInputs::from_config(&config, BASE);
        let out =
            strata::render::render(&inputs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(out.containerfile.contains(&format!("FROM {BASE} AS base")));
        rendered += 1;
    }
    assert!(rendered >= 4, "only {rendered} examples");
}
