//! The console plugin's copy of the contract (`console-plugin/src/models.ts`) says what
//! `strata_crds::contract` and the CRDs say: group, version, kinds, plurals, short names,
//! namespace, labels, annotations, builder steps and condition types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kube::CustomResourceExt;
use strata_crds::contract::{annotations, builder_pod, install, labels, mco};
use strata_crds::{MachineOSBuild, MachineOSConfig, condition_types as ct};

/// `export const NAME = 'value';` string constants of a TypeScript file.
fn string_constants(ts: &str) -> BTreeMap<String, String> {
    ts.lines()
        .filter_map(|l| l.trim().strip_prefix("export const "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(" = ")?;
            let value = rest.trim().trim_end_matches(';');
            let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
            Some((name.trim().to_string(), value.to_string()))
        })
        .collect()
}

/// The `key: 'value'` fields of `export const <model>: K8sModel = { … };`.
fn model(ts: &str, name: &str) -> BTreeMap<String, String> {
    let start = ts
        .find(&format!("export const {name}: K8sModel = {{"))
        .unwrap_or_else(|| panic!("models.ts has no {name}"));
    let body = &ts[start..];
    let body = &body[..body.find("};").unwrap()];
    body.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            let v = v.trim_end_matches(',');
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// The `'a', 'b'` items of `export const NAME = [ … ] as const;`.
fn string_list(ts: &str, name: &str) -> Vec<String> {
    let start = ts.find(&format!("export const {name} = [")).unwrap();
    let body = &ts[start..];
    let body = &body[body.find('[').unwrap() + 1..body.find(']').unwrap()];
    body.split(',')
        .map(|s| s.trim().trim_matches('\'').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn the_console_plugins_models_follow_the_contract() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../console-plugin/src/models.ts"
    );
    let ts = std::fs::read_to_string(path).unwrap();
    let consts = string_constants(&ts);
    let expect = |name: &str, value: &str| {
        assert_eq!(
            consts.get(name).map(String::as_str),
            Some(value),
            "models.ts {name}"
        );
    };
    expect("GROUP", strata_crds::GROUP);
    expect("VERSION", strata_crds::VERSION);
    expect("CONTROLLER_NAMESPACE", install::NAMESPACE);
    expect("REBUILD_ANNOTATION", annotations::REBUILD);
    expect("BUILD_LABEL", labels::BUILD);
    expect("CONFIG_LABEL", labels::CONFIG);
    expect("CONFIG_ANNOTATION", annotations::CONFIG);
    expect("ALLOWED_CONFIGS_ANNOTATION", annotations::ALLOWED_CONFIGS);
    expect("COMPONENT_LABEL", labels::COMPONENT);
    expect("BUILDER_COMPONENT", labels::BUILDER);

    assert_eq!(string_list(&ts, "BUILDER_STEPS"), builder_pod::STEPS);
    let conditions = string_list(&ts, "CONFIG_CONDITIONS");
    for c in [
        ct::READY,
        ct::BUILDING,
        ct::DEGRADED,
        ct::POOL_UPDATED,
        ct::POOL_HELD,
        ct::WAITING_FOR_POOL,
    ] {
        assert!(
            conditions.iter().any(|x| x == c),
            "CONFIG_CONDITIONS lacks {c}"
        );
    }

    for (model_name, crd) in [
        ("MachineOSConfigModel", MachineOSConfig::crd()),
        ("MachineOSBuildModel", MachineOSBuild::crd()),
    ] {
        let m = model(&ts, model_name);
        assert_eq!(m["apiGroup"], "GROUP", "{model_name} apiGroup");
        assert_eq!(m["apiVersion"], "VERSION", "{model_name} apiVersion");
        assert_eq!(m["kind"], crd.spec.names.kind);
        assert_eq!(m["plural"], crd.spec.names.plural);
        let short = crd.spec.names.short_names.clone().unwrap_or_default();
        assert_eq!(m["abbr"].to_lowercase(), short[0], "{model_name} abbr");
    }
    let short = |kind: &str| {
        let crd = if kind == "config" {
            MachineOSConfig::crd()
        } else {
            MachineOSBuild::crd()
        };
        crd.spec.names.short_names.unwrap_or_default()[0].clone()
    };
    expect("MACHINE_OS_CONFIG_SHORT_NAME", &short("config"));
    expect("MACHINE_OS_BUILD_SHORT_NAME", &short("build"));

    let pool = model(&ts, "MachineConfigPoolModel");
    let ar = mco::machine_config_pool();
    assert_eq!(pool["apiGroup"], ar.group);
    assert_eq!(pool["apiVersion"], ar.version);
    assert_eq!(pool["kind"], ar.kind);
    assert_eq!(pool["plural"], ar.plural);
}
