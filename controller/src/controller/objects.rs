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
use strata_crds::contract::{annotations, exit_code, labels, mco};

use super::names::{self, fit_63};
use super::settings::Settings;

/// Key of the rendered Containerfile in the build's ConfigMap.
pub const CONTAINERFILE_KEY: &str = "Containerfile";

/// What one build needs in the controller namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildObjects {
    pub containerfile: ConfigMap,
    pub push_secret: Secret,
    pub base_secret: Option<Secret>,
    pub job: Job,
}

fn owner(build: &MachineOSBuild) -> Vec<OwnerReference> {
    build.controller_owner_ref(&()).into_iter().collect()
}

fn build_labels(build: &MachineOSBuild) -> BTreeMap<String, String> {
    let name = build.metadata.name.clone().unwrap_or_default();
    BTreeMap::from([
        (
            labels::CONFIG.to_string(),
            fit_63(&build.spec.machine_os_config.name),
        ),
        (labels::BUILD.to_string(), fit_63(&name)),
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
    ])
}

fn build_annotations(build: &MachineOSBuild) -> BTreeMap<String, String> {
    BTreeMap::from([(
        annotations::CONFIG.to_string(),
        build.spec.machine_os_config.name.clone(),
    )])
}

fn meta(name: String, settings: &Settings, build: &MachineOSBuild) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(settings.namespace.clone()),
        labels: Some(build_labels(build)),
        annotations: Some(build_annotations(build)),
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
        metadata: meta(names::containerfile_configmap(&name), settings, build),
        data: Some(BTreeMap::from([(
            CONTAINERFILE_KEY.to_string(),
            containerfile.to_string(),
        )])),
        ..ConfigMap::default()
    };
    let push_secret = auth_secret(names::push_secret(&name), settings, build, push_auth);
    let base_secret =
        base_auth.map(|auth| auth_secret(names::base_secret(&name), settings, build, auth));
    let job = builder_job(build, base_secret.is_some(), settings);
    BuildObjects {
        containerfile,
        push_secret,
        base_secret,
        job,
    }
}

/// Capabilities every step keeps; all others are dropped. Measured on the local cluster by dropping
/// all and adding back one at a time until each step works (builder-image/README.md,
/// "Privileges"): buildah runs as root without CAP_SYS_ADMIN, so it enters a user namespace of its
/// own, which takes CAP_SETUID and CAP_SETGID (to map the full ID range) and CAP_SETFCAP (to map
/// root); inside it, chown, mknod and the like need nothing more.
const STEP_CAPABILITIES: &[&str] = &["SETFCAP", "SETGID", "SETUID"];

/// The architecture builder pods build for (and run on).
pub const BUILD_ARCH: &str = "amd64";

/// One step's container: `strata build <name>`, its mounts and capabilities, the common
/// resources.
fn step(
    name: &str,
    settings: &Settings,
    env: &[Value],
    mounts: Vec<Value>,
    capabilities: &[&str],
) -> Value {
    let r = &settings.builder_resources;
    let mut limits = serde_json::Map::new();
    limits.insert("memory".into(), json!(r.memory_limit));
    limits.insert("ephemeral-storage".into(), json!(r.ephemeral_storage_limit));
    if !r.cpu_limit.is_empty() {
        limits.insert("cpu".into(), json!(r.cpu_limit));
    }
    json!({
        "name": name,
        "image": settings.builder_image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["build", name],
        "env": env,
        "volumeMounts": mounts,
        // A step that dies without writing its message (OOM, a crash) still reports its log's end.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"], "add": capabilities},
        },
        "resources": {
            "requests": {
                "cpu": r.cpu_request,
                "memory": r.memory_request,
                "ephemeral-storage": r.ephemeral_storage_request,
            },
            "limits": limits,
        },
    })
}

fn builder_job(build: &MachineOSBuild, has_pull_auth: bool, settings: &Settings) -> Job {
    use strata_crds::contract::builder_pod as pod;
    let name = build.metadata.name.clone().unwrap_or_default();
    let image = names::image_for_build(&build.spec.rendered_image_push_spec, &name);
    let storage = match &settings.cache_claim {
        Some(claim) => json!({"name": "storage", "persistentVolumeClaim": {"claimName": claim}}),
        None => {
            json!({"name": "storage", "emptyDir": {"sizeLimit": settings.builder_resources.storage_size_limit}})
        }
    };
    let mut volumes = vec![
        json!({"name": "containerfile", "configMap": {"name": names::containerfile_configmap(&name)}}),
        json!({"name": "push-auth", "secret": {"secretName": names::push_secret(&name)}}),
        storage,
        json!({"name": "work", "emptyDir": {"sizeLimit": settings.builder_resources.storage_size_limit}}),
    ];
    let containerfile =
        json!({"name": "containerfile", "mountPath": pod::CONTAINERFILE_DIR, "readOnly": true});
    let shared = [
        json!({"name": "storage", "mountPath": pod::STORAGE_DIR}),
        json!({"name": "work", "mountPath": pod::WORK_DIR}),
    ];
    let mut pull_mounts = vec![containerfile.clone()];
    if has_pull_auth {
        volumes.push(
            json!({"name": "pull-auth", "secret": {"secretName": names::base_secret(&name)}}),
        );
        pull_mounts
            .push(json!({"name": "pull-auth", "mountPath": pod::PULL_AUTH_DIR, "readOnly": true}));
    }
    pull_mounts.extend(shared.iter().cloned());
    let mut build_mounts = vec![containerfile];
    build_mounts.extend(shared.iter().cloned());
    let mut push_mounts =
        vec![json!({"name": "push-auth", "mountPath": pod::PUSH_AUTH_DIR, "readOnly": true})];
    push_mounts.extend(shared.iter().cloned());

    let mut env = vec![json!({"name": "STRATA_IMAGE", "value": image})];
    if !settings.insecure_registries.is_empty() {
        env.push(json!({"name": "STRATA_INSECURE_REGISTRIES", "value": settings.insecure_registries.join(",")}));
    }
    let mut pod_labels = build_labels(build);
    pod_labels.insert(labels::COMPONENT.into(), labels::BUILDER.into());
    let placement = &settings.builder_placement;
    let mut node_selector =
        BTreeMap::from([("kubernetes.io/arch".to_string(), BUILD_ARCH.to_string())]);
    for entry in &placement.node_selector {
        if let Some((k, v)) = entry.split_once('=') {
            node_selector.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let tolerations: Value = placement
        .tolerations
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| json!([]));
    let steps =
        |name: &str, mounts: Vec<Value>, caps: &[&str]| step(name, settings, &env, mounts, caps);
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(names::job(build), settings, build),
        "spec": {
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.build_deadline_seconds,
            "podFailurePolicy": {"rules": [
                // A failing step, refused credentials or a bad reference: retrying cannot help.
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [exit_code::TERMINAL]}},
                // Evictions and preemptions are not the build's fault.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": build_annotations(build)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.builder_service_account,
                    // No API access from any step, and no service addresses in the environment.
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {"seccompProfile": settings.builder_placement.seccomp_profile()},
                    "nodeSelector": node_selector,
                    "tolerations": tolerations,
                    "priorityClassName": placement.priority_class,
                    "initContainers": [
                        steps(pod::PULL, pull_mounts, STEP_CAPABILITIES),
                        steps(pod::BUILD, build_mounts, STEP_CAPABILITIES),
                    ],
                    "containers": [steps(pod::PUSH, push_mounts, STEP_CAPABILITIES)],
                    "volumes": volumes,
                }
            }
        }
    });
    // The JSON above only uses fields of batch/v1 Job, so this conversion cannot fail.
    serde_json::from_value(job).unwrap_or_default()
}

/// The labels that make the pool's MachineConfigPool select a MachineConfig: its
/// `machineConfigSelector.matchLabels`, else the role label (`…/role: <pool>`), which also
/// satisfies the usual `role In [worker, <pool>]` expression of custom pools.
pub fn pool_selector_labels(pool_name: &str, pool: &Value) -> serde_json::Map<String, Value> {
    let selected = pool["spec"]["machineConfigSelector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if selected.is_empty() {
        serde_json::Map::from_iter([(labels::ROLE.to_string(), Value::from(pool_name))])
    } else {
        selected
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
    let mut mc_labels = selector.clone();
    mc_labels.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
    mc_labels.insert(labels::CONFIG.into(), fit_63(config_name).into());
    json!({
        "apiVersion": format!("{}/{}", mco::GROUP, mco::VERSION),
        "kind": "MachineConfig",
        "metadata": {
            "name": names::machine_config(pool),
            "labels": mc_labels,
            "annotations": {annotations::CONFIG: config_name},
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
            assert_eq!(
                meta.annotations.as_ref().unwrap()[annotations::CONFIG],
                long
            );
        }
        let selector = pool_selector_labels(&long, &json!({}));
        let mc = machine_config(&long, &selector, "r.example.com/os@sha256:x", &long);
        assert!(
            mc["metadata"]["labels"][labels::CONFIG]
                .as_str()
                .unwrap()
                .len()
                <= 63
        );
        assert_eq!(
            mc["metadata"]["annotations"][annotations::CONFIG],
            long.as_str()
        );
    }

    #[test]
    fn no_credential_reaches_the_build_step() {
        let objects = build_objects(
            &build(),
            "FROM x AS base\n",
            "{}",
            Some("{}"),
            &Settings::for_tests(),
        );
        let pod = objects.job.spec.and_then(|s| s.template.spec).unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let containers: Vec<_> = pod
            .init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .collect();
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pull", "build", "push"]);
        let secret_volumes: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.secret.is_some())
            .map(|v| v.name.as_str())
            .collect();
        let mounts = |c: &k8s_openapi::api::core::v1::Container| -> Vec<String> {
            c.volume_mounts
                .iter()
                .flatten()
                .map(|m| m.name.clone())
                .collect()
        };
        let build_mounts = mounts(containers[1]);
        assert!(
            secret_volumes
                .iter()
                .all(|s| !build_mounts.contains(&s.to_string())),
            "the build step mounts a Secret: {build_mounts:?}"
        );
        assert!(mounts(containers[0]).contains(&"pull-auth".to_string()));
        assert!(!mounts(containers[0]).contains(&"push-auth".to_string()));
        assert!(mounts(containers[2]).contains(&"push-auth".to_string()));
        assert!(!mounts(containers[2]).contains(&"pull-auth".to_string()));
        for c in &containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop,
                Some(vec!["ALL".to_string()])
            );
        }
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/arch"], "amd64");
    }

    #[test]
    fn machine_config_carries_the_pools_selector_labels() {
        let role = pool_selector_labels("infra", &json!({"spec": {}}));
        let mc = machine_config("infra", &role, "r.example.com/os@sha256:x", "infra");
        assert_eq!(mc["metadata"]["labels"][labels::ROLE], "infra");
        // A pool selecting by other labels gets those.
        let pool = json!({"spec": {"machineConfigSelector": {"matchLabels": {"example.com/pool": "gpu"}}}});
        let mc = machine_config(
            "gpu",
            &pool_selector_labels("gpu", &pool),
            "r.example.com/os@sha256:x",
            "gpu",
        );
        assert_eq!(mc["metadata"]["labels"]["example.com/pool"], "gpu");
        assert!(mc["metadata"]["labels"].get(labels::ROLE).is_none());
        assert_eq!(mc["spec"]["osImageURL"], "r.example.com/os@sha256:x");
    }
}
