//! The watches of the kinds a reconcile reads besides the environment: MachineOSConfigs and
//! MachineOSBuilds, the builds' Jobs, Pods, Secrets and ConfigMaps, the release ConfigMap, pools,
//! MachineConfigs, the pools' Nodes and OpenShift's own MachineOSConfigs; for each, which changes
//! matter and which MachineOSConfigs they reconcile.

use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use strata_crds::contract::{annotations, labels, mco};
use strata_crds::{MachineOSBuild, MachineOSConfig};

use super::watch::{
    Trigger, Watch, changed_by, empty, named, strip_config_map, strip_machine_config, strip_node,
};
use crate::controller::settings::Settings;

/// MachineOSConfigs: spec, annotation (rebuild), finalizer and deletion changes; not status.
/// (kube's finalizer helper adds the finalizer and waits for that change to reconcile again.)
pub fn configs(
    client: &Client,
    writer: Writer<MachineOSConfig>,
    trigger: &Trigger,
) -> Store<MachineOSConfig> {
    Watch::new(Api::<MachineOSConfig>::all(client.clone()), writer)
        .filter(changed_by(config_key))
        .maps_to(config_and_rivals)
        .spawn(trigger)
}

/// A changed MachineOSConfig and the others of its pool: its claim on the pool decides theirs
/// (`PoolClaimed`), so a refused one builds as soon as the holder goes, not at the next resync.
fn config_and_rivals(
    config: &MachineOSConfig,
    configs: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    let me = ObjectRef::from_obj(config);
    let mut refs = configs_of_pool(&config.spec.machine_config_pool.name, configs);
    // A deleted config is no longer in the store.
    if !refs.contains(&me) {
        refs.push(me);
    }
    refs
}

/// MachineOSBuilds: created or deleted (their spec never changes; their status is ours).
pub fn builds(client: &Client, trigger: &Trigger) -> Store<MachineOSBuild> {
    Watch::new(
        Api::<MachineOSBuild>::all(client.clone()),
        Writer::default(),
    )
    .filter(changed_by(|_: &MachineOSBuild| ()))
    .maps_to(|b: &MachineOSBuild, _: &Store<MachineOSConfig>| {
        vec![ObjectRef::new(&b.spec.machine_os_config.name)]
    })
    .spawn(trigger)
}

/// Strata's objects of kind `K` in its namespace (Jobs, Pods), every change reconciling their
/// MachineOSConfig.
pub fn build_objects<K>(client: &Client, settings: &Settings, trigger: &Trigger) -> Store<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    Watch::new(
        Api::<K>::namespaced(client.clone(), &settings.namespace),
        Writer::default(),
    )
    .selecting(ours())
    .maps_to(by_config_annotation)
    .spawn(trigger)
}

/// Users' Secrets on any change; a per-build one only when it goes (made again while its build
/// runs; see plan/build_status).
pub fn secrets(client: &Client, settings: &Settings, trigger: &Trigger) -> Store<Secret> {
    Watch::new(
        Api::<Secret>::namespaced(client.clone(), &settings.namespace),
        Writer::default(),
    )
    .filter(|s: &Secret, deleted: bool| deleted || !labels::managed_by_strata(&s.metadata))
    .maps_to(configs_of_secret)
    .spawn(trigger)
}

/// The builds' ConfigMaps: one gone while its build runs is made again (see plan/build_status).
pub fn build_config_maps(
    client: &Client,
    settings: &Settings,
    trigger: &Trigger,
) -> Store<ConfigMap> {
    Watch::new(
        Api::<ConfigMap>::namespaced(client.clone(), &settings.namespace),
        Writer::default(),
    )
    .selecting(ours())
    .modify(strip_config_map)
    .filter(|_: &ConfigMap, deleted: bool| deleted)
    .maps_to(by_config_annotation)
    .spawn(trigger)
}

/// The release ConfigMap: every change reconciles every MachineOSConfig.
pub fn release(client: &Client, settings: &Settings, trigger: &Trigger) -> Store<ConfigMap> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), &settings.release_configmap_namespace);
    Watch::new(api, Writer::default())
        .selecting(named(&settings.release_configmap))
        .spawn(trigger)
}

pub fn pools(client: &Client, trigger: &Trigger) -> Store<DynamicObject> {
    let resource = mco::machine_config_pool();
    Watch::new(
        Api::<DynamicObject>::all_with(client.clone(), &resource),
        Writer::new(resource),
    )
    .maps_to(|pool: &DynamicObject, configs: &Store<MachineOSConfig>| {
        configs_of_pool(&pool.name_any(), configs)
    })
    .spawn(trigger)
}

/// Nodes, for how far each pool's machines got: a change of what the MCO says of one (its
/// annotations, `Ready`, the cordon) or of its labels reconciles the MachineOSConfigs of the pool
/// it belongs to. Without the right to list Nodes, an empty cache: progress is then the pool's
/// counts alone.
pub async fn nodes(
    client: &Client,
    pools: &Store<DynamicObject>,
    trigger: &Trigger,
) -> Store<Node> {
    let pools = pools.clone();
    Watch::new(Api::<Node>::all(client.clone()), Writer::default())
        .modify(strip_node)
        .filter(changed_by(|node: &Node| {
            (node.metadata.labels.clone(), mco::NodeView::of(node))
        }))
        .maps_to(move |node: &Node, configs: &Store<MachineOSConfig>| {
            pool_of(node, &pools)
                .map(|pool| configs_of_pool(&pool, configs))
                .unwrap_or_default()
        })
        .spawn_if_readable("Nodes", trigger)
        .await
}

/// The pool `node` belongs to among the cached pools, as the MCO assigns it
/// (`mco::primary_pool`).
pub fn pool_of(node: &Node, pools: &Store<DynamicObject>) -> Option<String> {
    let pools = pools.state();
    let selectors = mco::PoolSelectors::of(pools.iter().map(|p| p.as_ref()));
    selectors.pool_of(node.labels()).map(str::to_string)
}

/// MachineConfigs: ours changed by someone else, or gone.
pub fn machine_configs(client: &Client, trigger: &Trigger) -> Store<DynamicObject> {
    let resource = mco::machine_config();
    Watch::new(
        Api::<DynamicObject>::all_with(client.clone(), &resource),
        Writer::new(resource),
    )
    .modify(strip_machine_config)
    .filter(changed_by(|mc: &DynamicObject| {
        (mc.metadata.generation, mc.metadata.labels.clone())
    }))
    .maps_to(by_config_annotation)
    .spawn(trigger)
}

/// OpenShift's MachineOSConfigs: a pool they name is refused. Where OpenShift's layering API is
/// not `served`, an empty cache, ready at once.
pub fn openshift_configs(client: &Client, served: bool, trigger: &Trigger) -> Store<DynamicObject> {
    let resource = mco::openshift_machine_os_config();
    let writer = Writer::<DynamicObject>::new(resource.clone());
    if !served {
        return empty(writer);
    }
    Watch::new(
        Api::<DynamicObject>::all_with(client.clone(), &resource),
        writer,
    )
    .maps_to(|ocl: &DynamicObject, configs: &Store<MachineOSConfig>| {
        let pool = ocl.data["spec"]["machineConfigPool"]["name"]
            .as_str()
            .unwrap_or_default();
        configs_of_pool(pool, configs)
    })
    .spawn(trigger)
}

/// Only the objects Strata made (by their label).
fn ours() -> watcher::Config {
    watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::MANAGED_BY_VALUE
    ))
}

type ConfigKey = (
    Option<i64>,
    Option<std::collections::BTreeMap<String, String>>,
    Option<Vec<String>>,
    bool,
);

/// What of a MachineOSConfig starts a reconcile: its spec (generation), annotations (rebuild),
/// finalizers and deletion — not its status, which Strata writes.
fn config_key(c: &MachineOSConfig) -> ConfigKey {
    (
        c.metadata.generation,
        c.metadata.annotations.clone(),
        c.metadata.finalizers.clone(),
        c.metadata.deletion_timestamp.is_some(),
    )
}

/// The MachineOSConfig a build object (Job, Pod) belongs to: its annotation (the full name), else
/// its label (cut to 63 characters, so only a fallback).
fn by_config_annotation<K: Resource>(
    obj: &K,
    _: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::CONFIG))
        .or_else(|| {
            obj.meta()
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::CONFIG))
        })
        .map(|name| vec![ObjectRef::new(name)])
        .unwrap_or_default()
}

/// The MachineOSConfigs naming `pool`.
fn configs_of_pool(
    pool: &str,
    configs: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    configs
        .state()
        .iter()
        .filter(|c| c.spec.machine_config_pool.name == pool || c.name_any() == pool)
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// The MachineOSConfigs that name `secret`; for a per-build Secret Strata makes, its build's.
fn configs_of_secret(
    secret: &Secret,
    configs: &Store<MachineOSConfig>,
) -> Vec<ObjectRef<MachineOSConfig>> {
    if labels::managed_by_strata(&secret.metadata) {
        return by_config_annotation(secret, configs);
    }
    let name = secret.name_any();
    configs
        .state()
        .iter()
        .filter(|c| {
            c.spec.rendered_image_push_secret.name == name
                || c.spec
                    .base_image_pull_secret
                    .as_ref()
                    .is_some_and(|s| s.name == name)
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::reflector;

    use super::*;
    use serde_json::json;

    #[test]
    fn build_objects_map_back_to_their_config_even_with_long_names() {
        let (store, _writer) = reflector::store::<MachineOSConfig>();
        let long = "p".repeat(100);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "build-x",
                "labels": {labels::CONFIG: crate::controller::names::fit_63(&long)},
                "annotations": {annotations::CONFIG: long},
            }
        }))
        .unwrap();
        let refs = by_config_annotation(&pod, &store);
        assert_eq!(refs[0].name, long);
        // Objects made before the annotation existed still map by their label.
        let old: Pod = serde_json::from_value(json!({
            "metadata": {"name": "build-y", "labels": {labels::CONFIG: "worker"}}
        }))
        .unwrap();
        assert_eq!(by_config_annotation(&old, &store)[0].name, "worker");
    }

    fn config(name: &str, pool: &str) -> MachineOSConfig {
        serde_json::from_value(json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
            "spec": {
                "machineConfigPool": {"name": pool},
                "imageBuilder": {"imageBuilderType": "Job"},
                "renderedImagePushSecret": {"name": "push"},
                "renderedImagePushSpec": "r.example.com/os:latest",
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_config_change_reconciles_the_other_configs_of_its_pool() {
        let (store, mut writer) = reflector::store::<MachineOSConfig>();
        for c in [
            config("worker", "worker"),
            config("rival", "worker"),
            config("infra", "infra"),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(c));
        }
        let names = |refs: Vec<ObjectRef<MachineOSConfig>>| {
            let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
            names.sort();
            names
        };
        assert_eq!(
            names(config_and_rivals(&config("worker", "worker"), &store)),
            ["rival", "worker"]
        );
        // The holder deleted (gone from the store): its rival still looks again.
        let holder = config("worker", "worker");
        writer.apply_watcher_event(&watcher::Event::Delete(holder.clone()));
        assert_eq!(
            names(config_and_rivals(&holder, &store)),
            ["rival", "worker"]
        );
        assert_eq!(
            names(config_and_rivals(&config("infra", "infra"), &store)),
            ["infra"]
        );
    }

    #[test]
    fn status_writes_do_not_pass_the_config_filter() {
        let mut filter = changed_by(config_key);
        let mut config = config("worker", "worker");
        assert!(filter(&config, false), "a new object passes");
        config.status = Some(Default::default());
        config.metadata.resource_version = Some("2".into());
        assert!(!filter(&config, false), "a status write does not");
        // The finalizer helper adds the finalizer and waits for that change to come back.
        config.metadata.finalizers = Some(vec!["strata.dev/machine-config".into()]);
        assert!(filter(&config, false), "a finalizer edit does");
        config.metadata.resource_version = Some("3".into());
        assert!(!filter(&config, false), "the same again does not");
        config.metadata.generation = Some(2);
        assert!(filter(&config, false), "a spec change does");
        config.metadata.annotations = Some([("strata.dev/rebuild".into(), "1".into())].into());
        assert!(filter(&config, false), "the rebuild annotation does");
        assert!(filter(&config, true), "a deletion does");
    }
}
