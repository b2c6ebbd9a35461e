//! OpenShift admits Strata's pods, and grants them no more than they use.
//!
//! - The builder pod, built the way the controller builds it (`build_objects`, with every volume
//!   it can have), fits the SCC `strata-builder` of `manifests/overlays/openshift/builder-scc.yaml`;
//!   that SCC allows exactly the capabilities, volume kinds and seccomp profile the pod uses and
//!   nothing of the host, and only the builder's ServiceAccount may use it.
//! - The controller (`manifests/base/deployment.yaml` with the OpenShift overlay's JSON patches,
//!   applied here by hand) and the console plugin fit OpenShift's `restricted-v2`: no fixed UID
//!   (the SCC assigns one from the namespace's range), non-root, RuntimeDefault seccomp, no
//!   privilege escalation, every capability dropped.
//!
//! [`refusals`] follows OpenShift's SCC admission (openshift/apiserver-library-go,
//! `pkg/securitycontextconstraints`) for the fields these pods set; the last test shows it refuses
//! what OpenShift refuses, so a green run means something.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::ByteString;
use serde_json::{Value, json};
use strata::controller::Settings;
use strata::controller::environment::Environment;
use strata::controller::objects::build_objects;
use strata_crds::MachineOSBuild;
use strata_crds::contract::BootPlan;

const OVERLAY: &str = "manifests/overlays/openshift";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn find(docs: &[Value], kind: &str, name: &str) -> Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .clone()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

// ---- the builder pod, as the controller builds it -------------------------------------------

fn settings(extra: &[&str]) -> Settings {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }
    let mut args = vec![
        "strata",
        "--builder-image",
        "registry.example.com/strata/builder@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ];
    args.extend_from_slice(extra);
    Cli::parse_from(args).settings
}

fn build() -> MachineOSBuild {
    serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
        "metadata": {"name": "worker-0123456789ab", "uid": "11111111-2222-3333-4444-555555555555"},
        "spec": {
            "machineOSConfig": {"name": "worker"}, "machineConfigPool": {"name": "worker"},
            "baseImage": format!("registry.example.com/os@sha256:{}", "a".repeat(64)),
            "renderedImagePushSpec": "registry.example.com/strata/os:latest",
        }
    }))
    .unwrap()
}

/// The builder pod's spec in its shapes: the defaults, and with every optional volume (a cache
/// claim, per-registry CAs, the entitlement, yum repositories, RPM GPG keys).
fn builder_pods() -> Vec<(&'static str, Settings, Value)> {
    let full_env = Environment {
        registry_cas: [("mirror.local:5000".to_string(), "PEM".to_string())].into(),
        entitlement: Some([("entitlement.pem".to_string(), ByteString(b"c".to_vec()))].into()),
        yum_repos: true,
        rpm_gpg: true,
        ..Environment::default()
    };
    [
        ("default", settings(&[]), Environment::default()),
        (
            "every volume",
            settings(&["--cache-claim", "strata-cache"]),
            full_env,
        ),
    ]
    .into_iter()
    .map(|(name, settings, env)| {
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{\"auths\":{}}",
            Some("{\"auths\":{}}"),
            &env,
            // With the boot step: every step must fit the SCC.
            Some(&BootPlan::default()),
            &settings,
        );
        let job = serde_json::to_value(&objects.job).unwrap();
        let pod = job["spec"]["template"]["spec"].clone();
        assert!(pod.is_object(), "{name}: the Job has no pod spec");
        (name, settings, pod)
    })
    .collect()
}

// ---- SCC admission, for the fields these pods set -------------------------------------------

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        .collect()
}

fn volume_kind(volume: &Value) -> String {
    let kinds: Vec<&String> = volume
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "name")
        .collect();
    assert_eq!(kinds.len(), 1, "volume {volume}");
    kinds[0].clone()
}

/// A seccompProfile field as an SCC names it (`localhost/<file>`, `runtime/default`…); "" when
/// unset.
fn seccomp_name(profile: &Value) -> String {
    match profile["type"].as_str() {
        Some("Localhost") => format!(
            "localhost/{}",
            profile["localhostProfile"].as_str().unwrap_or_default()
        ),
        Some("RuntimeDefault") => "runtime/default".into(),
        Some("Unconfined") => "unconfined".into(),
        Some(other) => format!("unknown type {other}"),
        None => String::new(),
    }
}

/// Why `scc` refuses `pod` (empty: it admits it).
fn refusals(scc: &Value, pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let allows = |field: &str| scc[field].as_bool().unwrap_or(false);
    for (field, scc_field) in [
        ("hostNetwork", "allowHostNetwork"),
        ("hostPID", "allowHostPID"),
        ("hostIPC", "allowHostIPC"),
    ] {
        if pod[field] == true && !allows(scc_field) {
            out.push(format!("{field}: not allowed"));
        }
    }
    let scc_volumes = strings(&scc["volumes"]);
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let kind = volume_kind(v);
        if !scc_volumes.contains(&kind) && !scc_volumes.contains("*") {
            out.push(format!(
                "volume {}: {kind} volumes are not allowed",
                v["name"]
            ));
        }
    }
    let psc = &pod["securityContext"];
    if !psc["fsGroup"].is_null() && scc["fsGroup"]["type"] != "RunAsAny" {
        out.push("fsGroup: set, and the SCC's range decides".into());
    }
    if !psc["supplementalGroups"].is_null() && scc["supplementalGroups"]["type"] != "RunAsAny" {
        out.push("supplementalGroups: set, and the SCC's range decides".into());
    }
    let profiles = strings(&scc["seccompProfiles"]);
    let seccomp_ok = |name: &str| {
        if profiles.is_empty() {
            return name.is_empty(); // "seccomp may not be set"
        }
        let runtime_default = |p: &str| p == "runtime/default" || p == "docker/default";
        name.is_empty() // the SCC sets its first profile
            || profiles.contains("*")
            || profiles.contains(name)
            || (runtime_default(name) && profiles.iter().any(|p| runtime_default(p)))
    };
    let pod_profile = seccomp_name(&psc["seccompProfile"]);
    if !seccomp_ok(&pod_profile) {
        out.push(format!(
            "pod seccomp profile {pod_profile:?} is not in {profiles:?}"
        ));
    }
    let allowed_caps = strings(&scc["allowedCapabilities"]);
    let default_caps = strings(&scc["defaultAddCapabilities"]);
    let required_drop = strings(&scc["requiredDropCapabilities"]);
    for c in containers(pod) {
        let name = c["name"].as_str().unwrap_or_default();
        let sc = &c["securityContext"];
        if sc["privileged"] == true && !allows("allowPrivilegedContainer") {
            out.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] == true && !allows("allowPrivilegeEscalation") {
            out.push(format!("{name}: allowPrivilegeEscalation"));
        }
        if scc["readOnlyRootFilesystem"] == true && sc["readOnlyRootFilesystem"] == false {
            out.push(format!("{name}: a writable root filesystem"));
        }
        // The UID: the container's, else the pod's; unset means the SCC (or the image) decides.
        let uid = sc["runAsUser"].as_i64().or(psc["runAsUser"].as_i64());
        let non_root = sc["runAsNonRoot"] == true
            || (sc["runAsNonRoot"].is_null() && psc["runAsNonRoot"] == true);
        match (scc["runAsUser"]["type"].as_str().unwrap_or_default(), uid) {
            ("RunAsAny", _) | (_, None) => {}
            ("MustRunAsNonRoot", Some(u)) if u != 0 => {}
            ("MustRunAs", Some(u)) if scc["runAsUser"]["uid"].as_i64() == Some(u) => {}
            ("MustRunAsRange", Some(u))
                if scc["runAsUser"]["uidRangeMin"]
                    .as_i64()
                    .zip(scc["runAsUser"]["uidRangeMax"].as_i64())
                    .is_some_and(|(lo, hi)| (lo..=hi).contains(&u)) => {}
            (strategy, Some(u)) => out.push(format!(
                "{name}: runAsUser {u} under {strategy} (MustRunAsRange: the namespace's range \
                 decides, and a fixed UID is refused)"
            )),
        }
        if non_root && uid == Some(0) {
            out.push(format!("{name}: runAsNonRoot with runAsUser 0"));
        }
        if !sc["seLinuxOptions"].is_null() || !psc["seLinuxOptions"].is_null() {
            out.push(format!("{name}: seLinuxOptions set (the SCC assigns them)"));
        }
        if !sc["seccompProfile"].is_null() {
            let profile = seccomp_name(&sc["seccompProfile"]);
            if !seccomp_ok(&profile) {
                out.push(format!(
                    "{name}: seccomp profile {profile:?} is not in {profiles:?}"
                ));
            }
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if !p["hostPort"].is_null() && !allows("allowHostPorts") {
                out.push(format!("{name}: hostPort"));
            }
        }
        let caps = &sc["capabilities"];
        if caps.is_null() {
            if !required_drop.is_empty() || !default_caps.is_empty() {
                out.push(format!("{name}: required capabilities are not set"));
            }
            continue;
        }
        if allowed_caps.contains("*") {
            continue;
        }
        for add in strings(&caps["add"]) {
            if !allowed_caps.contains(&add) && !default_caps.contains(&add) {
                out.push(format!("{name}: capability {add} may not be added"));
            }
        }
        let drops = strings(&caps["drop"]);
        for d in &required_drop {
            if !drops.contains(d) {
                out.push(format!("{name}: {d} is required to be dropped"));
            }
        }
    }
    out
}

/// Strata's own rule for every pod it runs, stricter than any SCC: each container says
/// `allowPrivilegeEscalation: false` and drops ALL, and none is privileged.
fn unhardened(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in containers(pod) {
        let name = c["name"].as_str().unwrap_or_default();
        let sc = &c["securityContext"];
        if sc["allowPrivilegeEscalation"] != false {
            out.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if sc["privileged"] == true {
            out.push(format!("{name}: privileged"));
        }
        if !strings(&sc["capabilities"]["drop"]).contains("ALL") {
            out.push(format!("{name}: does not drop ALL"));
        }
    }
    out
}

/// OpenShift's `restricted-v2` (what every authenticated user's pods get), as OpenShift 4.20 ships it.
fn restricted_v2() -> Value {
    json!({
        "apiVersion": "security.openshift.io/v1", "kind": "SecurityContextConstraints",
        "metadata": {"name": "restricted-v2"},
        "allowHostDirVolumePlugin": false, "allowHostIPC": false, "allowHostNetwork": false,
        "allowHostPID": false, "allowHostPorts": false,
        "allowPrivilegeEscalation": false, "allowPrivilegedContainer": false,
        "allowedCapabilities": ["NET_BIND_SERVICE"], "defaultAddCapabilities": null,
        "requiredDropCapabilities": ["ALL"],
        "fsGroup": {"type": "MustRunAs"}, "supplementalGroups": {"type": "RunAsAny"},
        "runAsUser": {"type": "MustRunAsRange"}, "seLinuxContext": {"type": "MustRunAs"},
        "seccompProfiles": ["runtime/default"], "readOnlyRootFilesystem": false,
        "volumes": ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                    "persistentVolumeClaim", "projected", "secret"],
    })
}

/// OpenShift's stock `anyuid`: root, but no added capability and no seccomp profile.
fn anyuid() -> Value {
    json!({
        "apiVersion": "security.openshift.io/v1", "kind": "SecurityContextConstraints",
        "metadata": {"name": "anyuid"},
        "allowPrivilegedContainer": false, "allowPrivilegeEscalation": true,
        "allowedCapabilities": null, "defaultAddCapabilities": null,
        "requiredDropCapabilities": ["MKNOD"],
        "fsGroup": {"type": "RunAsAny"}, "supplementalGroups": {"type": "RunAsAny"},
        "runAsUser": {"type": "RunAsAny"}, "seLinuxContext": {"type": "MustRunAs"},
        "volumes": ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                    "persistentVolumeClaim", "projected", "secret"],
    })
}

fn builder_scc_docs() -> Vec<Value> {
    yaml_docs(&format!("{OVERLAY}/builder-scc.yaml"))
}

fn builder_scc() -> Value {
    find(
        &builder_scc_docs(),
        "SecurityContextConstraints",
        "strata-builder",
    )
}

// ---- the controller and console plugin Deployments as the overlay renders them ------------

/// RFC 6902 add, replace and remove (what the overlays use), as kustomize applies them: a path
/// that does not resolve fails.
fn apply_json_patch(doc: &mut Value, ops: &Value) {
    for op in ops.as_array().unwrap() {
        let path = op["path"].as_str().unwrap();
        let (parent, last) = path.rsplit_once('/').unwrap();
        let last = last.replace("~1", "/").replace("~0", "~");
        let target = doc
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{path}: {parent} does not exist"));
        let value = op["value"].clone();
        match (op["op"].as_str().unwrap(), target) {
            ("remove", Value::Object(m)) => {
                assert!(m.remove(&last).is_some(), "{path}: nothing to remove");
            }
            ("remove", Value::Array(a)) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            ("add", Value::Object(m)) => {
                m.insert(last, value);
            }
            ("replace", Value::Object(m)) => {
                assert!(
                    m.insert(last, value).is_some(),
                    "{path}: nothing to replace"
                );
            }
            ("add", Value::Array(a)) if last == "-" => a.push(value),
            ("add", Value::Array(a)) => a.insert(last.parse().unwrap(), value),
            ("replace", Value::Array(a)) => {
                *a.get_mut(last.parse::<usize>().unwrap())
                    .unwrap_or_else(|| panic!("{path}: nothing to replace")) = value;
            }
            (other, _) => panic!("{path}: op {other} on a scalar, or not supported here"),
        }
    }
}

/// The JSON patches a kustomization (and its components, applied before its own patches) makes
/// to `kind`/`name`.
fn patches_for(kustomization_dir: &str, kind: &str, name: &str) -> Vec<Value> {
    let k: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join(kustomization_dir).join("kustomization.yaml"))
            .unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for component in k["components"].as_array().into_iter().flatten() {
        let dir = Path::new(kustomization_dir).join(component.as_str().unwrap());
        out.extend(patches_for(dir.to_str().unwrap(), kind, name));
    }
    for p in k["patches"].as_array().into_iter().flatten() {
        let target = &p["target"];
        if target["kind"] == kind && target["name"] == name {
            let ops: Value = serde_saphyr::from_str(p["patch"].as_str().unwrap()).unwrap();
            out.push(ops);
        }
    }
    out
}

fn base_controller() -> Value {
    find(
        &yaml_docs("manifests/base/deployment.yaml"),
        "Deployment",
        "strata-controller",
    )
}

fn openshift_controller() -> Value {
    let mut d = base_controller();
    for ops in patches_for(OVERLAY, "Deployment", "strata-controller") {
        apply_json_patch(&mut d, &ops);
    }
    d
}

fn openshift_console_plugin() -> Value {
    let mut d = find(
        &yaml_docs(&format!("{OVERLAY}/console-plugin.yaml")),
        "Deployment",
        "strata-console-plugin",
    );
    for ops in patches_for(OVERLAY, "Deployment", "strata-console-plugin") {
        apply_json_patch(&mut d, &ops);
    }
    d
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn the_builder_pod_fits_the_strata_builder_scc() {
    let scc = builder_scc();
    for (name, _, pod) in builder_pods() {
        let refused = refusals(&scc, &pod);
        assert!(
            refused.is_empty(),
            "strata-builder refuses the {name} builder pod:\n{}\n(change \
             {OVERLAY}/builder-scc.yaml together with controller/src/controller/reconcile/objects.rs)",
            refused.join("\n")
        );
        let loose = unhardened(&pod);
        assert!(loose.is_empty(), "{name}: {loose:?}");
    }
}

/// Admission tries SCCs by priority and name; the annotation makes it use strata-builder (and
/// refuse the pod if it does not fit) rather than another SCC the pod happens to fit.
#[test]
fn builder_pods_ask_for_the_strata_builder_scc_by_name() {
    let scc_name = builder_scc()["metadata"]["name"].clone();
    for (name, settings, _) in builder_pods() {
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{\"auths\":{}}",
            None,
            &Environment::default(),
            None,
            &settings,
        );
        let job = serde_json::to_value(&objects.job).unwrap();
        assert_eq!(
            job["spec"]["template"]["metadata"]["annotations"]["openshift.io/required-scc"],
            scc_name,
            "{name}"
        );
    }
}

#[test]
fn the_strata_builder_scc_grants_only_what_the_builder_pod_uses() {
    let scc = builder_scc();
    let pods = builder_pods();
    let mut caps = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut profiles = BTreeSet::new();
    let mut root = false;
    for (_, settings, pod) in &pods {
        for v in pod["volumes"].as_array().unwrap() {
            kinds.insert(volume_kind(v));
        }
        profiles.insert(seccomp_name(&pod["securityContext"]["seccompProfile"]));
        // The seccomp profile is the one the controller is configured with.
        assert_eq!(
            pod["securityContext"]["seccompProfile"],
            serde_json::to_value(settings.builder_placement.seccomp_profile()).unwrap()
        );
        for c in containers(pod) {
            caps.extend(strings(&c["securityContext"]["capabilities"]["add"]));
            assert!(c["securityContext"]["seccompProfile"].is_null());
            root |= c["securityContext"]["runAsUser"] == 0;
        }
        assert!(pod["securityContext"]["fsGroup"].is_null());
        assert!(pod["securityContext"]["supplementalGroups"].is_null());
    }
    assert_eq!(
        strings(&scc["allowedCapabilities"]),
        caps,
        "allowedCapabilities must be exactly the capabilities the steps add"
    );
    assert!(strings(&scc["defaultAddCapabilities"]).is_empty());
    let drop = strings(&scc["requiredDropCapabilities"]);
    assert!(
        drop.is_disjoint(&caps),
        "the SCC requires dropping a capability it allows: {drop:?}"
    );
    assert_eq!(
        strings(&scc["volumes"]),
        kinds,
        "volumes must be exactly the kinds the builder pod uses (persistentVolumeClaim with --cache-claim)"
    );
    assert_eq!(
        strings(&scc["seccompProfiles"]),
        profiles,
        "seccompProfiles must name the pod's Localhost profile, and only it"
    );
    assert_eq!(
        profiles,
        BTreeSet::from(["localhost/strata/builder.json".to_string()])
    );
    assert!(
        root,
        "no step runs as root any more: runAsUser RunAsAny grants too much"
    );
    assert_eq!(scc["runAsUser"], json!({"type": "RunAsAny"}));
    assert_eq!(scc["seLinuxContext"], json!({"type": "MustRunAs"}));
    for field in [
        "allowPrivilegedContainer",
        "allowPrivilegeEscalation",
        "defaultAllowPrivilegeEscalation",
        "allowHostDirVolumePlugin",
        "allowHostIPC",
        "allowHostNetwork",
        "allowHostPID",
        "allowHostPorts",
    ] {
        assert_eq!(scc[field], false, "{field}");
    }
    assert!(scc["priority"].is_null(), "priority must be null");
    assert_eq!(scc["users"], json!([]), "granted to no user by name");
    assert_eq!(scc["groups"], json!([]), "granted to no group by name");
    assert!(scc["allowedUnsafeSysctls"].is_null() && scc["allowedFlexVolumes"].is_null());
}

#[test]
fn only_the_builder_service_account_may_use_the_scc() {
    let docs = builder_scc_docs();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["SecurityContextConstraints", "ClusterRole", "RoleBinding"]
    );
    let scc = builder_scc();
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(
        role["rules"],
        json!([{
            "apiGroups": ["security.openshift.io"],
            "resources": ["securitycontextconstraints"],
            "resourceNames": [scc["metadata"]["name"]],
            "verbs": ["use"],
        }])
    );
    let settings = settings(&[]);
    let binding = docs.iter().find(|d| d["kind"] == "RoleBinding").unwrap();
    assert_eq!(
        binding["metadata"]["namespace"],
        settings.namespace.as_str()
    );
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
               "name": role["metadata"]["name"]})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": settings.builder_service_account,
                "namespace": settings.namespace}])
    );
    for (name, _, pod) in builder_pods() {
        assert_eq!(
            pod["serviceAccountName"],
            settings.builder_service_account.as_str(),
            "{name}"
        );
    }
    let kustomization =
        std::fs::read_to_string(repo().join(OVERLAY).join("kustomization.yaml")).unwrap();
    let k: Value = serde_saphyr::from_str(&kustomization).unwrap();
    assert!(strings(&k["resources"]).contains("builder-scc.yaml"));
}

#[test]
fn the_controller_and_console_plugin_fit_restricted_v2() {
    let scc = restricted_v2();
    for deployment in [openshift_controller(), openshift_console_plugin()] {
        let name = deployment["metadata"]["name"].as_str().unwrap().to_string();
        let pod = &deployment["spec"]["template"]["spec"];
        let refused = refusals(&scc, pod);
        assert!(
            refused.is_empty(),
            "restricted-v2 refuses {name} as the OpenShift overlay renders it:\n{}",
            refused.join("\n")
        );
        let loose = unhardened(pod);
        assert!(loose.is_empty(), "{name}: {loose:?}");
        assert!(
            pod["securityContext"]["runAsUser"].is_null()
                && containers(pod)
                    .iter()
                    .all(|c| c["securityContext"]["runAsUser"].is_null()),
            "{name}: a fixed runAsUser (restricted-v2 assigns one from the namespace's range)"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"],
            json!({"type": "RuntimeDefault"}),
            "{name}"
        );
    }
    // The base keeps its fixed UID for the local cluster; the overlay is what removes it.
    assert_eq!(
        base_controller()["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        65532
    );
}

/// The checks above can fail: they refuse what OpenShift refuses.
#[test]
fn the_checks_refuse_what_openshift_refuses() {
    let (_, _, pod) = builder_pods().remove(0);
    let strata_builder = builder_scc();

    // restricted-v2 refuses the builder (root, added capabilities, a Localhost profile), and so
    // does the stock anyuid (capabilities, seccomp).
    let refused = refusals(&restricted_v2(), &pod).join("\n");
    for reason in [
        "runAsUser 0",
        "SETUID may not be added",
        "localhost/strata/builder.json",
    ] {
        assert!(refused.contains(reason), "{reason}: {refused}");
    }
    let refused = refusals(&anyuid(), &pod).join("\n");
    for reason in ["SETFCAP may not be added", "pod seccomp profile"] {
        assert!(refused.contains(reason), "{reason}: {refused}");
    }

    // The base's fixed UID is refused by restricted-v2.
    let base = base_controller();
    let refused = refusals(&restricted_v2(), &base["spec"]["template"]["spec"]).join("\n");
    assert!(refused.contains("runAsUser 65532"), "{refused}");

    // A pod that asks for more than strata-builder grants is refused.
    let mut more = pod.clone();
    more["containers"][0]["securityContext"]["capabilities"]["add"]
        .as_array_mut()
        .unwrap()
        .push(json!("SYS_ADMIN"));
    more["initContainers"][0]["securityContext"]["privileged"] = json!(true);
    more["initContainers"][1]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    more["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "host", "hostPath": {"path": "/"}}));
    more["hostNetwork"] = json!(true);
    more["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
    let refused = refusals(&strata_builder, &more).join("\n");
    for reason in [
        "SYS_ADMIN may not be added",
        "pull: privileged",
        "build: allowPrivilegeEscalation",
        "hostPath volumes are not allowed",
        "hostNetwork",
        "\"unconfined\"",
    ] {
        assert!(refused.contains(reason), "{reason}: {refused}");
    }

    // A container that keeps its capabilities is refused (required drop: ALL).
    let mut keeps = pod.clone();
    keeps["containers"][0]["securityContext"]["capabilities"]["drop"] = json!([]);
    let refused = refusals(&strata_builder, &keeps).join("\n");
    assert!(
        refused.contains("ALL is required to be dropped"),
        "{refused}"
    );
    assert!(!unhardened(&keeps).is_empty());

    // The hand-applied patch fails like kustomize on a path that does not resolve.
    let missing = std::panic::catch_unwind(|| {
        let mut d = json!({"spec": {}});
        apply_json_patch(
            &mut d,
            &json!([{"op": "remove", "path": "/spec/securityContext/runAsUser"}]),
        );
    });
    assert!(missing.is_err());
}
