//! The objects a build needs and the MachineConfig that pins a pool, built from values only.
//! Pure: the apply layer sends them as they are.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Value, json};
use strata_crds::MachineOSBuild;

use super::settings::Settings;
use crate::builder::exit_code;

/// Label on every object Strata makes for a build: the MachineOSConfig it belongs to.
pub const CONFIG_LABEL: &str = "strata.dev/machine-os-config";
/// Label on every object Strata makes for a build: the build's name.
pub const BUILD_LABEL: &str = "strata.dev/machine-os-build";
/// The MachineOSConfig's full name, as an annotation: a label value is cut to 63 characters
/// ([`fit_63`]), an annotation is not, so the watches map a build's objects back by this.
pub const CONFIG_ANNOTATION: &str = "strata.dev/machine-os-config";
/// The MCO's pool-role label on MachineConfigs.
pub const ROLE_LABEL: &str = "machineconfiguration.openshift.io/role";
/// Key of the rendered Containerfile in the build's ConfigMap.
pub const CONTAINERFILE_KEY: &str = "Containerfile";
/// Name of the builder container (the podFailurePolicy refers to it).
pub const BUILDER_CONTAINER: &str = "builder";

/// Job and label values must be at most 63 characters.
const MAX_LABEL_NAME: usize = 63;

/// What one build needs in the controller namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildObjects {
    pub containerfile: ConfigMap,
    pub push_secret: Secret,
    pub base_secret: Option<Secret>,
    pub job: Job,
}

/// `name` shortened to 63 characters (Job names, label values), keeping its last `-` segment
/// (a build's hash) so shortened names stay unique.
pub fn fit_63(name: &str) -> String {
    if name.len() <= MAX_LABEL_NAME {
        return name.to_string();
    }
    let hash = name.rsplit('-').next().unwrap_or_default();
    let hash = &hash[..hash.len().min(MAX_LABEL_NAME / 2)];
    let head: String = name.chars().take(MAX_LABEL_NAME - hash.len() - 1).collect();
    format!("{}-{hash}", head.trim_end_matches(['-', '.']))
}

fn short_name(prefix: &str, build: &str) -> String {
    fit_63(&format!("{prefix}-{build}"))
}

pub fn containerfile_configmap_name(build: &str) -> String {
    short_name("containerfile", build)
}
pub fn push_secret_name(build: &str) -> String {
    short_name("push", build)
}
pub fn base_secret_name(build: &str) -> String {
    short_name("base", build)
}
/// The Job of one incarnation of a build: a rebuild deletes and recreates the MachineOSBuild
/// under the same name, so the Job name carries the build's uid to never meet the old Job.
pub fn job_name(build: &MachineOSBuild) -> String {
    let name = build.metadata.name.clone().unwrap_or_default();
    let uid: String = build
        .metadata
        .uid
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(5)
        .collect();
    if uid.is_empty() {
        short_name("build", &name)
    } else {
        fit_63(&format!("build-{name}-{uid}"))
    }
}

/// The push spec's repository with the tag replaced by the build's name.
pub fn image_for_build(push_spec: &str, build: &str) -> String {
    format!("{}:{build}", repository(push_spec))
}

/// `host[:port]/path/name` of a push spec `host[:port]/path/name:tag` (or of `repo@digest`).
pub fn repository(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

fn owner(build: &MachineOSBuild) -> Vec<OwnerReference> {
    build.controller_owner_ref(&()).into_iter().collect()
}

fn labels(build: &MachineOSBuild) -> BTreeMap<String, String> {
    let name = build.metadata.name.clone().unwrap_or_default();
    BTreeMap::from([
        (
            CONFIG_LABEL.to_string(),
            fit_63(&build.spec.machine_os_config.name),
        ),
        (BUILD_LABEL.to_string(), fit_63(&name)),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "strata".to_string(),
        ),
    ])
}

fn annotations(build: &MachineOSBuild) -> BTreeMap<String, String> {
    BTreeMap::from([(
        CONFIG_ANNOTATION.to_string(),
        build.spec.machine_os_config.name.clone(),
    )])
}

fn meta(name: String, settings: &Settings, build: &MachineOSBuild) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(settings.namespace.clone()),
        labels: Some(labels(build)),
        annotations: Some(annotations(build)),
        owner_references: Some(owner(build)),
        ..ObjectMeta::default()
    }
}

fn auth_secret(
    name: String,
    settings: &Settings,
    build: &MachineOSBuild,
    dockerconfigjson: &str,
) -> Secret {
    Secret {
        metadata: meta(name, settings, build),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".into(),
            ByteString(dockerconfigjson.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The ConfigMap, auth Secrets and Job of `build`. `push_auth`/`base_auth` are canonical
/// `.dockerconfigjson` documents.
pub fn build_objects(
    build: &MachineOSBuild,
    containerfile: &str,
    push_auth: &str,
    base_auth: Option<&str>,
    settings: &Settings,
) -> BuildObjects {
    let name = build.metadata.name.clone().unwrap_or_default();
    let containerfile = ConfigMap {
        metadata: meta(containerfile_configmap_name(&name), settings, build),
        data: Some(BTreeMap::from([(
            CONTAINERFILE_KEY.to_string(),
            containerfile.to_string(),
        )])),
        ..ConfigMap::default()
    };
    let push_secret = auth_secret(push_secret_name(&name), settings, build, push_auth);
    let base_secret =
        base_auth.map(|auth| auth_secret(base_secret_name(&name), settings, build, auth));
    let job = builder_job(build, base_secret.is_some(), settings);
    BuildObjects {
        containerfile,
        push_secret,
        base_secret,
        job,
    }
}

fn builder_job(build: &MachineOSBuild, has_base_auth: bool, settings: &Settings) -> Job {
    let name = build.metadata.name.clone().unwrap_or_default();
    let image = image_for_build(&build.spec.rendered_image_push_spec, &name);
    let mut volumes = vec![
        json!({"name": "containerfile", "configMap": {"name": containerfile_configmap_name(&name)}}),
        json!({"name": "push-auth", "secret": {"secretName": push_secret_name(&name)}}),
        match &settings.cache_claim {
            Some(claim) => json!({"name": "cache", "persistentVolumeClaim": {"claimName": claim}}),
            None => json!({"name": "cache", "emptyDir": {}}),
        },
    ];
    let mut mounts = vec![
        json!({"name": "containerfile", "mountPath": "/etc/strata/build", "readOnly": true}),
        json!({"name": "push-auth", "mountPath": "/etc/strata/push-auth", "readOnly": true}),
        json!({"name": "cache", "mountPath": "/var/lib/containers/storage"}),
    ];
    if has_base_auth {
        volumes
            .push(json!({"name": "base-auth", "secret": {"secretName": base_secret_name(&name)}}));
        mounts.push(
            json!({"name": "base-auth", "mountPath": "/etc/strata/base-auth", "readOnly": true}),
        );
    }
    let mut env = vec![json!({"name": "STRATA_IMAGE", "value": image})];
    if let Some(cache) = &settings.registry_cache {
        env.push(json!({"name": "STRATA_REGISTRY_CACHE", "value": cache}));
    }
    if !settings.insecure_registries.is_empty() {
        env.push(json!({"name": "STRATA_INSECURE_REGISTRIES", "value": settings.insecure_registries.join(",")}));
    }
    let labels = labels(build);
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(job_name(build), settings, build),
        "spec": {
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.build_deadline_seconds,
            "podFailurePolicy": {"rules": [
                // A failing step, refused credentials or a bad reference: retrying cannot help.
                {"action": "FailJob", "onExitCodes": {"containerName": BUILDER_CONTAINER, "operator": "In", "values": [exit_code::TERMINAL]}},
                // Evictions and preemptions are not the build's fault.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations(build)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.builder_service_account,
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": BUILDER_CONTAINER,
                        "image": settings.builder_image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["build"],
                        "env": env,
                        "volumeMounts": mounts,
                        "terminationMessagePolicy": "File",
                        "securityContext": {"privileged": false, "allowPrivilegeEscalation": false},
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                    }],
                    "volumes": volumes,
                }
            }
        }
    });
    // The JSON above only uses fields of batch/v1 Job, so this conversion cannot fail.
    serde_json::from_value(job).unwrap_or_default()
}

/// Name of the MachineConfig pinning `pool`. The MCO takes the osImageURL of the last
/// MachineConfig by name, so ours sort after every other (`zz-…`, after the MCO's `99-…`); the
/// worker pool's sorts before every custom pool's, since custom pools also select worker configs.
pub fn machine_config_name(pool: &str) -> String {
    if pool == "worker" {
        "zz-strata-1-worker".into()
    } else {
        format!("zz-strata-2-{pool}")
    }
}

/// The labels that make the pool's MachineConfigPool select a MachineConfig: its
/// `machineConfigSelector.matchLabels`, else the role label (`…/role: <pool>`), which also
/// satisfies the usual `role In [worker, <pool>]` expression of custom pools.
pub fn pool_selector_labels(pool_name: &str, pool: &Value) -> serde_json::Map<String, Value> {
    let labels = pool["spec"]["machineConfigSelector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if labels.is_empty() {
        serde_json::Map::from_iter([(ROLE_LABEL.to_string(), Value::from(pool_name))])
    } else {
        labels
    }
}

/// The MachineConfig pinning `pool` to `image` (repo@sha256:…), carrying the pool's
/// `selector` labels; owned by nothing: it is removed by the MachineOSConfig's finalizer.
pub fn machine_config(
    pool: &str,
    selector: &serde_json::Map<String, Value>,
    image: &str,
    config_name: &str,
) -> Value {
    let mut labels = selector.clone();
    labels.insert("app.kubernetes.io/managed-by".into(), "strata".into());
    labels.insert(CONFIG_LABEL.into(), fit_63(config_name).into());
    json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {
            "name": machine_config_name(pool),
            "labels": labels,
            "annotations": {CONFIG_ANNOTATION: config_name},
        },
        "spec": {"osImageURL": image},
    })
}

/// Whether `current` already carries every label and the osImageURL of `desired`.
pub fn machine_config_matches(current: Option<&Value>, desired: &Value) -> bool {
    let Some(current) = current else { return false };
    let labels_match = desired["metadata"]["labels"]
        .as_object()
        .is_some_and(|labels| {
            labels
                .iter()
                .all(|(k, v)| &current["metadata"]["labels"][k] == v)
        });
    labels_match && current["spec"]["osImageURL"] == desired["spec"]["osImageURL"]
}

/// Canonical auth: only `auths.<registry>.{auth|username|password|identitytoken}` survive, from a
/// `.dockerconfigjson` (`{"auths": …}`) or a legacy `.dockercfg` (the map itself). Credential
/// helpers and other client settings are dropped: the builder has none.
pub fn canonical_auth(data: &BTreeMap<String, ByteString>) -> Result<String, String> {
    let (key, nested) = if let Some(v) = data.get(".dockerconfigjson") {
        (v, true)
    } else if let Some(v) = data.get(".dockercfg") {
        (v, false)
    } else {
        return Err("has neither .dockerconfigjson nor .dockercfg".into());
    };
    let parsed: Value =
        serde_json::from_slice(&key.0).map_err(|e| format!("is not valid JSON: {e}"))?;
    let auths = if nested {
        parsed.get("auths").cloned().unwrap_or(Value::Null)
    } else {
        parsed
    };
    let Value::Object(auths) = auths else {
        return Err("has no registry entries".into());
    };
    let mut out = serde_json::Map::new();
    for (registry, entry) in auths {
        let mut kept = serde_json::Map::new();
        for field in ["auth", "username", "password", "identitytoken"] {
            if let Some(Value::String(v)) = entry.get(field)
                && !v.is_empty()
            {
                kept.insert(field.into(), Value::String(v.clone()));
            }
        }
        if !kept.is_empty() {
            out.insert(registry, Value::Object(kept));
        }
    }
    serde_json::to_string(&json!({"auths": out})).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn job_snapshot() {
        let settings = Settings::for_tests();
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{\"auths\":{}}",
            Some("{\"auths\":{}}"),
            &settings,
        );
        insta::assert_yaml_snapshot!(objects.job);
    }

    #[test]
    fn long_config_names_fit_labels_and_keep_the_full_name_in_an_annotation() {
        let long = "p".repeat(100);
        let mut build = build();
        build.spec.machine_os_config.name = long.clone();
        build.metadata.name = Some(format!("{long}-0123456789ab"));
        let objects = build_objects(
            &build,
            "FROM x AS base\n",
            "{}",
            None,
            &Settings::for_tests(),
        );
        let job_meta = &objects.job.metadata;
        let pod_meta = objects
            .job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.clone())
            .unwrap();
        for meta in [job_meta, &pod_meta, &objects.containerfile.metadata] {
            for value in meta.labels.as_ref().unwrap().values() {
                assert!(value.len() <= 63, "label value {value}");
            }
            assert_eq!(meta.annotations.as_ref().unwrap()[CONFIG_ANNOTATION], long);
        }
        let selector = pool_selector_labels(&long, &json!({}));
        let mc = machine_config(&long, &selector, "r.example.com/os@sha256:x", &long);
        assert!(
            mc["metadata"]["labels"][CONFIG_LABEL]
                .as_str()
                .unwrap()
                .len()
                <= 63
        );
        assert_eq!(
            mc["metadata"]["annotations"][CONFIG_ANNOTATION],
            long.as_str()
        );
    }

    #[test]
    fn registry_cache_reaches_the_builder_only_when_set() {
        let env_of = |settings: &Settings| {
            let objects = build_objects(&build(), "FROM x AS base\n", "{}", None, settings);
            let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
            pod.containers[0].env.clone().unwrap_or_default()
        };
        let cache = |env: &[k8s_openapi::api::core::v1::EnvVar]| {
            env.iter()
                .find(|e| e.name == "STRATA_REGISTRY_CACHE")
                .and_then(|e| e.value.clone())
        };
        let mut settings = Settings::for_tests();
        assert_eq!(cache(&env_of(&settings)), None);
        settings.registry_cache = Some("10.0.0.1:5000/strata/cache".into());
        assert_eq!(
            cache(&env_of(&settings)).as_deref(),
            Some("10.0.0.1:5000/strata/cache")
        );
    }

    #[test]
    fn names_fit_in_63_characters_and_keep_the_hash() {
        let long = format!("{}-0123456789ab", "p".repeat(240));
        let name = short_name("build", &long);
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-0123456789ab"));
        assert_eq!(job_name(&build()), "build-worker-0123456789ab-11111");
    }

    #[test]
    fn image_tag_is_the_build_name() {
        assert_eq!(
            image_for_build("registry.example.com:5000/a/os:latest", "worker-1"),
            "registry.example.com:5000/a/os:worker-1"
        );
        assert_eq!(
            repository("registry.example.com:5000/a/os@sha256:abc"),
            "registry.example.com:5000/a/os"
        );
        assert_eq!(
            repository("registry.example.com:5000/a/os"),
            "registry.example.com:5000/a/os"
        );
    }

    #[test]
    fn machine_config_names_sort_after_the_mcos_and_worker_first() {
        let worker = machine_config_name("worker");
        let infra = machine_config_name("infra");
        assert!(worker.as_str() > "99-worker-generated-registries");
        assert!(infra > worker);
        let role = pool_selector_labels("infra", &json!({"spec": {}}));
        let mc = machine_config("infra", &role, "r.example.com/os@sha256:x", "infra");
        assert_eq!(mc["metadata"]["labels"][ROLE_LABEL], "infra");
        // A pool selecting by other labels gets those.
        let pool = json!({"spec": {"machineConfigSelector": {"matchLabels": {"example.com/pool": "gpu"}}}});
        let mc = machine_config(
            "gpu",
            &pool_selector_labels("gpu", &pool),
            "r.example.com/os@sha256:x",
            "gpu",
        );
        assert_eq!(mc["metadata"]["labels"]["example.com/pool"], "gpu");
        assert!(mc["metadata"]["labels"].get(ROLE_LABEL).is_none());
        assert_eq!(mc["spec"]["osImageURL"], "r.example.com/os@sha256:x");
    }

    #[test]
    fn auth_is_canonicalised_from_both_formats() {
        let modern = BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(br#"{"auths":{"r.example.com":{"auth":"dTpw","email":"x@y"}},"credHelpers":{"r.example.com":"evil"}}"#.to_vec()),
        )]);
        assert_eq!(
            canonical_auth(&modern).unwrap(),
            r#"{"auths":{"r.example.com":{"auth":"dTpw"}}}"#
        );
        let legacy = BTreeMap::from([(
            ".dockercfg".to_string(),
            ByteString(br#"{"r.example.com":{"username":"u","password":"p"}}"#.to_vec()),
        )]);
        assert_eq!(
            canonical_auth(&legacy).unwrap(),
            r#"{"auths":{"r.example.com":{"password":"p","username":"u"}}}"#
        );
        assert!(canonical_auth(&BTreeMap::new()).is_err());
    }
}
