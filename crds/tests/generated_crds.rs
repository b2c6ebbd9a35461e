//! The committed CRD YAML is exactly what the Rust types generate, and the CRDs carry what
//! `kubectl explain`, `kubectl get` and the console need.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};

#[test]
fn committed_yaml_matches_the_rust_types() {
    let committed = include_str!("../crds.yaml");
    let generated = strata_crds::crds_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/crds.yaml is stale: run `cargo run -p strata-controller -- crds > crds/crds.yaml`"
    );
}

#[test]
fn committed_yaml_round_trips_as_two_crds() {
    let docs: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(include_str!("../crds.yaml")).unwrap();
    let names: Vec<_> = docs
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        vec!["machineosconfigs.strata.dev", "machineosbuilds.strata.dev"]
    );
}

fn missing_descriptions(schema: &JSONSchemaProps, path: &str, out: &mut Vec<String>) {
    for (name, prop) in schema.properties.iter().flatten() {
        let child = format!("{path}.{name}");
        // apiVersion/kind/metadata are described by Kubernetes itself.
        let standard =
            path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&name.as_str());
        if prop
            .description
            .as_deref()
            .unwrap_or_default()
            .trim()
            .is_empty()
            && !standard
        {
            out.push(child.clone());
        }
        missing_descriptions(prop, &child, out);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        missing_descriptions(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_has_a_description_and_the_kinds_are_complete() {
    for crd in strata_crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        assert_eq!(crd.spec.scope, "Cluster", "{name}");
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["strata".to_string()]),
            "{name}"
        );
        assert_eq!(
            crd.spec.names.short_names.as_ref().map(Vec::len),
            Some(1),
            "{name}"
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name}"
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Age") && columns.len() >= 5,
            "{name}: {columns:?}"
        );
        let schema = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap();
        let mut missing = Vec::new();
        missing_descriptions(schema, "", &mut missing);
        assert!(
            missing.is_empty(),
            "{name}: fields without a description: {missing:?}"
        );
    }
}

fn collect_rules<'a>(schema: &'a JSONSchemaProps, out: &mut Vec<(&'a str, Option<&'a str>)>) {
    for rule in schema.x_kubernetes_validations.iter().flatten() {
        out.push((rule.rule.as_str(), rule.message.as_deref()));
    }
    for prop in schema.properties.iter().flat_map(|p| p.values()) {
        collect_rules(prop, out);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        collect_rules(items, out);
    }
}

#[test]
fn cel_rules_have_messages() {
    let mut rules = Vec::new();
    let crds = strata_crds::all_crds();
    for crd in &crds {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap();
        collect_rules(schema, &mut rules);
    }
    assert!(rules.len() >= 15, "only {} CEL rules", rules.len());
    for (rule, message) in rules {
        assert!(
            message.is_some_and(|m| m.len() > 10),
            "rule without a clear message: {rule}"
        );
    }
}
