//! Our stand-in CRDs — MachineConfig and MachineConfigPool (`e2e/openshift/crds.yaml`), the cluster
//! configuration Strata reads (`e2e/openshift/config-crds.yaml`) — are a faithful subset of
//! OpenShift's: every field path in ours exists in theirs with the same type, and every enum of
//! ours is theirs. Runs without a cluster; a conformance test (`make conformance`), since OpenShift's
//! CRDs are in `../shared/fixtures/openshift-api/crds/`, not in the repository.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use strata_e2e::util::yaml_docs;

/// field path -> type ("string", "integer", "int-or-string", "object(preserve-unknown)", …)
fn field_types(schema: &Value, path: &str, out: &mut BTreeMap<String, String>) {
    let mut ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        ty = "int-or-string".into();
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        ty = format!("{ty}(preserve-unknown)");
    }
    out.insert(
        if path.is_empty() {
            ".".into()
        } else {
            path.to_string()
        },
        ty,
    );
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            field_types(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        field_types(items, &format!("{path}[]"), out);
    }
    if let Some(ap) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        field_types(ap, &format!("{path}{{*}}"), out);
    }
}

/// field path -> its `enum`, for every field that has one.
fn enums(schema: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    if let Some(values) = schema.get("enum") {
        out.insert(path.to_string(), values.clone());
    }
    for (key, child) in schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        enums(child, &format!("{path}.{key}"), out);
    }
    if let Some(items) = schema.get("items") {
        enums(items, &format!("{path}[]"), out);
    }
}

fn crds_by_name(docs: Vec<Value>) -> BTreeMap<String, Value> {
    docs.into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .filter_map(|d| Some((d["metadata"]["name"].as_str()?.to_string(), d)))
        .collect()
}

#[test]
#[ignore = "conformance: needs ../shared/fixtures (make conformance)"]
fn standin_crds_are_a_subset_of_openshift_crds() -> Result<()> {
    let theirs_dir = strata_e2e::shared_fixture("openshift-api/crds")?;
    let mut ours = BTreeMap::new();
    for file in ["e2e/openshift/crds.yaml", "e2e/openshift/config-crds.yaml"] {
        ours.extend(crds_by_name(yaml_docs(&std::fs::read_to_string(
            strata_e2e::repo_root().join(file),
        )?)?));
    }
    ensure!(
        ours.len() == 6,
        "expected 6 stand-in CRDs (MachineConfig, MachineConfigPool, Proxy, Image, \
         ImageDigestMirrorSet, ImageTagMirrorSet), found {:?}",
        ours.keys()
    );
    let mut theirs = BTreeMap::new();
    for e in std::fs::read_dir(&theirs_dir)?.flatten() {
        if e.path().extension().is_some_and(|x| x == "yaml") {
            theirs.extend(crds_by_name(yaml_docs(&std::fs::read_to_string(
                e.path(),
            )?)?));
        }
    }
    let mut problems = Vec::new();
    for (name, our) in &ours {
        let their = theirs
            .get(name)
            .with_context(|| format!("OpenShift has no CRD {name}"))?;
        for key in ["group", "scope"] {
            if our["spec"][key] != their["spec"][key] {
                problems.push(format!(
                    "{name}: spec.{key} {} != {}",
                    our["spec"][key], their["spec"][key]
                ));
            }
        }
        for key in ["kind", "plural", "singular", "listKind"] {
            if our["spec"]["names"][key] != their["spec"]["names"][key] {
                problems.push(format!("{name}: names.{key} differs"));
            }
        }
        for ov in our["spec"]["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let vname = ov["name"].as_str().unwrap_or_default();
            let Some(tv) = their["spec"]["versions"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == vname))
            else {
                problems.push(format!("{name}: OpenShift has no version {vname}"));
                continue;
            };
            if ov.get("subresources") != tv.get("subresources") {
                problems.push(format!("{name}/{vname}: subresources differ"));
            }
            let (mut o, mut t) = (BTreeMap::new(), BTreeMap::new());
            field_types(&ov["schema"]["openAPIV3Schema"], "", &mut o);
            field_types(&tv["schema"]["openAPIV3Schema"], "", &mut t);
            for (path, ty) in &o {
                match t.get(path) {
                    None => problems.push(format!(
                        "{name}/{vname}: {path} does not exist in OpenShift's CRD"
                    )),
                    Some(tt) if tt != ty => problems.push(format!(
                        "{name}/{vname}: {path} is {ty}, OpenShift has {tt}"
                    )),
                    Some(_) => {}
                }
            }
            let (mut oe, mut te) = (BTreeMap::new(), BTreeMap::new());
            enums(&ov["schema"]["openAPIV3Schema"], "", &mut oe);
            enums(&tv["schema"]["openAPIV3Schema"], "", &mut te);
            for (path, values) in &oe {
                if te.get(path) != Some(values) {
                    problems.push(format!(
                        "{name}/{vname}: {path} allows {values}, OpenShift {:?}",
                        te.get(path)
                    ));
                }
            }
            eprintln!(
                "{name}/{vname}: {} of OpenShift's {} field paths, all matching",
                o.len(),
                t.len()
            );
        }
    }
    ensure!(
        problems.is_empty(),
        "stand-in CRDs diverge from OpenShift's:\n{}",
        problems.join("\n")
    );
    Ok(())
}
