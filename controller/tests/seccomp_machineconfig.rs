//! The MachineConfig that puts the builder's seccomp profile on the nodes
//! (`manifests/seccomp/machineconfig-strata-builder-seccomp.yaml`) carries exactly
//! `manifests/seccomp/strata-builder.json`, at the path the SCC and the builder pod name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use base64::Engine;
use serde_json::Value;

#[test]
fn seccomp_machineconfig_carries_the_profile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/seccomp");
    let profile = std::fs::read(dir.join("strata-builder.json")).unwrap();
    let mc: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.join("machineconfig-strata-builder-seccomp.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(mc["kind"], "MachineConfig");
    assert_eq!(
        mc["metadata"]["labels"]["machineconfiguration.openshift.io/role"],
        "worker"
    );
    let files = mc["spec"]["config"]["storage"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "one file: the profile");
    let file = &files[0];
    // The kubelet's seccomp directory + the profile the SCC allows (localhost/strata/builder.json).
    assert_eq!(file["path"], "/var/lib/kubelet/seccomp/strata/builder.json");
    assert_eq!(file["mode"], 0o644);
    let source = file["contents"]["source"].as_str().unwrap();
    let encoded = source
        .strip_prefix("data:application/json;base64,")
        .expect("a base64 data URL");
    let carried = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert!(
        carried == profile,
        "the MachineConfig's profile differs from manifests/seccomp/strata-builder.json: regenerate its data URL (see the file's header)"
    );
    let scc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/overlays/openshift/builder-scc.yaml"),
    )
    .unwrap();
    assert!(scc.contains("seccompProfiles: [localhost/strata/builder.json]"));
}
