//! OpenShift's own MachineOSConfig validation suite (../shared/fixtures) against our API: every
//! object OpenShift accepts on create (its repository path in lowercase: Strata's one deliberate
//! difference, capitals there are refused at apply) is accepted by our CRD's OpenAPI schema and by our copy of
//! its CEL rules (`validate_config`, which `strata render` runs before rendering); every object
//! it rejects is rejected, with the same message. The suite's update cases need CEL ratcheting and
//! run against the real API server in strata-e2e. A conformance test: `make conformance` runs it,
//! `cargo test` lists it as ignored (a clone alone has no ../shared/fixtures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use strata_crds::MachineOSConfig;

fn fixture_path() -> PathBuf {
    strata_e2e::shared_fixture("openshift-api/tests/machineosconfigs.yaml").unwrap()
}

fn our_schema() -> Value {
    let crd = strata_crds::all_crds().remove(0);
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .unwrap()
        .open_api_v3_schema
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

#[test]
#[ignore = "conformance: needs ../shared/fixtures (make conformance)"]
fn openshift_machineosconfig_create_suite_holds_for_our_schema() {
    let text = std::fs::read_to_string(fixture_path()).unwrap();
    let suite: Value = serde_saphyr::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&our_schema()).unwrap();
    let cases = suite["tests"]["onCreate"].as_array().unwrap();
    assert!(
        cases.len() >= 6,
        "the suite shrank: {} create cases",
        cases.len()
    );

    for case in cases {
        let name = case["name"].as_str().unwrap();
        let openshift: Value = serde_saphyr::from_str(case["initial"].as_str().unwrap()).unwrap();
        let object = strata_e2e::util::strata_equivalent(openshift.clone());
        // Strata's one deliberate difference: capitals in the repository path are refused at apply.
        if case["expectedError"].is_null()
            && object["spec"]["renderedImagePushSpec"] != openshift["spec"]["renderedImagePushSpec"]
        {
            let mut as_is = object.clone();
            as_is["spec"]["renderedImagePushSpec"] =
                openshift["spec"]["renderedImagePushSpec"].clone();
            let config: MachineOSConfig = serde_json::from_value(as_is).unwrap();
            let refused = strata::render::validate_config(&config)
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains(strata_crds::rules::PUSH_SPEC_LOWERCASE_MESSAGE),
                "{name}: {refused}"
            );
        }
        let schema_errors: Vec<String> = validator
            .iter_errors(&object)
            .map(|e| e.to_string())
            .collect();
        let rule_error = serde_json::from_value::<MachineOSConfig>(object.clone())
            .map_err(|e| e.to_string())
            .and_then(|config| strata::render::validate_config(&config).map_err(|e| e.to_string()))
            .err();

        match case["expectedError"].as_str() {
            None => {
                assert!(
                    schema_errors.is_empty(),
                    "{name}: our schema rejects it: {schema_errors:?}"
                );
                assert_eq!(rule_error, None, "{name}: our rules reject it");
            }
            Some(expected) => {
                // OpenShift's message, without the field path and type prefix the API server adds.
                let message = expected.rsplit(": ").next().unwrap();
                let ours =
                    rule_error.unwrap_or_else(|| panic!("{name}: accepted, expected: {expected}"));
                assert!(
                    ours.contains(message),
                    "{name}: we said '{ours}', OpenShift says '{expected}'"
                );
            }
        }
    }
}
