//! One watch: a cache filled from the API server, and which MachineOSConfigs its changes
//! reconcile. The leaf of the caches: it knows no kind in particular.
//!
//! Each watch runs in its own task: it updates its cache first, then maps what changed to the
//! MachineOSConfigs concerned. Changes Strata itself makes and nobody needs to react to (status
//! written to builds and MachineOSConfigs, finalizer edits) are filtered out there, so a write
//! does not start another round of reconciles.

use std::collections::HashMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeSpec, NodeStatus};
use kube::Resource;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use serde_json::json;
use strata_crds::MachineOSConfig;
use tokio::sync::mpsc;

/// Where watches send the MachineOSConfigs to reconcile, with the cache their mappers read.
#[derive(Clone)]
pub struct Trigger {
    sender: mpsc::Sender<ObjectRef<MachineOSConfig>>,
    configs: Store<MachineOSConfig>,
}

impl Trigger {
    pub fn new(
        sender: mpsc::Sender<ObjectRef<MachineOSConfig>>,
        configs: Store<MachineOSConfig>,
    ) -> Self {
        Self { sender, configs }
    }
}

/// What a watch does with a changed object: the MachineOSConfigs to reconcile.
pub type Mapper<K> =
    Box<dyn Fn(&K, &Store<MachineOSConfig>) -> Vec<ObjectRef<MachineOSConfig>> + Send + Sync>;
/// Whether a change matters: the object and whether it was deleted.
pub type Filter<K> = Box<dyn FnMut(&K, bool) -> bool + Send>;

/// A watch to start: `Watch::new(api, writer)`, then what differs from the defaults (every
/// object, stripped of `managedFields`, every change reconciling every MachineOSConfig), then
/// [`Watch::spawn`].
pub struct Watch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    api: Api<K>,
    writer: Writer<K>,
    selector: watcher::Config,
    modify: fn(&mut K),
    filter: Filter<K>,
    mapper: Mapper<K>,
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    /// Every object of `api` into the cache `writer` fills.
    pub fn new(api: Api<K>, writer: Writer<K>) -> Self {
        Self {
            api,
            writer,
            selector: watcher::Config::default(),
            modify: strip_managed_fields,
            filter: Box::new(|_, _| true),
            mapper: Box::new(all_configs),
        }
    }

    /// Only the objects `selector` selects (by label or field).
    pub fn selecting(mut self, selector: watcher::Config) -> Self {
        self.selector = selector;
        self
    }

    /// What is kept of each object.
    pub fn modify(mut self, modify: fn(&mut K)) -> Self {
        self.modify = modify;
        self
    }

    /// Only the changes `filter` passes reconcile anything.
    pub fn filter(mut self, filter: impl FnMut(&K, bool) -> bool + Send + 'static) -> Self {
        self.filter = Box::new(filter);
        self
    }

    /// The MachineOSConfigs a change reconciles.
    pub fn maps_to(
        mut self,
        mapper: impl Fn(&K, &Store<MachineOSConfig>) -> Vec<ObjectRef<MachineOSConfig>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.mapper = Box::new(mapper);
        self
    }

    /// Starts the watch in its own task; returns the cache's reader.
    pub fn spawn(self, trigger: &Trigger) -> Store<K> {
        let reader = self.writer.as_reader();
        tokio::spawn(self.run(trigger.clone()));
        reader
    }

    /// Starts the watch when its objects can be listed; else warns and returns an empty ready
    /// cache (a kind the cluster does not serve, objects Strata may not read).
    pub async fn spawn_if_readable(self, what: &str, trigger: &Trigger) -> Store<K> {
        if !readable(&self.api, &self.selector, what).await {
            return empty(self.writer);
        }
        self.spawn(trigger)
    }

    async fn run(self, trigger: Trigger) {
        let Self {
            api,
            mut writer,
            selector,
            modify,
            mut filter,
            mapper,
        } = self;
        let mut synced = false;
        let mut events = watcher(api, selector)
            .default_backoff()
            .modify(modify)
            .boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    tracing::warn!(%err, "watch error; retrying");
                    continue;
                }
            };
            writer.apply_watcher_event(&event);
            let changed = match &event {
                watcher::Event::Apply(obj) => Some((obj, false)),
                watcher::Event::Delete(obj) => Some((obj, true)),
                // After the first list, a relist (the watch was lost) may carry missed changes.
                watcher::Event::InitApply(obj) if synced => Some((obj, false)),
                watcher::Event::InitDone => {
                    synced = true;
                    None
                }
                _ => None,
            };
            if let Some((obj, deleted)) = changed
                && filter(obj, deleted)
            {
                for config in mapper(obj, &trigger.configs) {
                    let _ = trigger.sender.send(config).await;
                }
            }
        }
    }
}

/// Whether `api` can be listed with `selector` (so a watch will work); warns when it cannot.
async fn readable<K>(api: &Api<K>, selector: &watcher::Config, what: &str) -> bool
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut list = ListParams::default().limit(1);
    if let Some(fields) = &selector.field_selector {
        list = list.fields(fields);
    }
    match api.list(&list).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(%err, what, "not readable; Strata builds without it");
            false
        }
    }
}

/// An empty cache that is ready at once.
pub fn empty<K>(mut writer: Writer<K>) -> Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    let reader = writer.as_reader();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

/// Only objects named `name`.
pub fn named(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// Passes new and deleted objects, and those whose `key` changed.
pub fn changed_by<K: Resource, T: PartialEq + Send + 'static>(
    key: impl Fn(&K) -> T + Send + 'static,
) -> Filter<K> {
    let mut seen: HashMap<String, T> = HashMap::new();
    Box::new(move |obj: &K, deleted: bool| {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        if deleted {
            seen.remove(&uid);
            return true;
        }
        let now = key(obj);
        let changed = seen.get(&uid) != Some(&now);
        seen.insert(uid, now);
        changed
    })
}

/// Every MachineOSConfig: what the next builds use changed.
fn all_configs<K>(_: &K, configs: &Store<MachineOSConfig>) -> Vec<ObjectRef<MachineOSConfig>> {
    configs
        .state()
        .iter()
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Drops what no reader needs from any object.
pub fn strip_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// A build's ConfigMap as Strata reads it: whether it exists.
pub fn strip_config_map(cm: &mut ConfigMap) {
    strip_managed_fields(cm);
    cm.data = None;
    cm.binary_data = None;
}

/// A MachineConfig as Strata reads it: metadata and `spec.osImageURL` (its Ignition payload can
/// be hundreds of KiB).
pub fn strip_machine_config(obj: &mut DynamicObject) {
    strip_managed_fields(obj);
    obj.metadata
        .annotations
        .as_mut()
        .map(|a| a.remove("kubectl.kubernetes.io/last-applied-configuration"));
    let image = obj.data["spec"]["osImageURL"].clone();
    obj.data = json!({"spec": {"osImageURL": image}});
}

/// A Node as Strata reads it: labels, the MCO's annotations, `Ready`, the cordon (its image list
/// and the rest of its status are most of its size).
pub fn strip_node(node: &mut Node) {
    strip_managed_fields(node);
    if let Some(spec) = node.spec.as_mut() {
        *spec = NodeSpec {
            unschedulable: spec.unschedulable,
            ..NodeSpec::default()
        };
    }
    if let Some(status) = node.status.as_mut() {
        let ready = status
            .conditions
            .take()
            .into_iter()
            .flatten()
            .filter(|c| c.type_ == "Ready")
            .collect();
        *status = NodeStatus {
            conditions: Some(ready),
            ..NodeStatus::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_labels_annotations_ready_and_the_cordon() {
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "worker-0", "labels": {"node-role.kubernetes.io/worker": ""},
                "annotations": {"machineconfiguration.openshift.io/state": "Working"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"unschedulable": true, "podCIDR": "10.0.0.0/24", "providerID": "x"},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}],
                "images": [{"names": ["quay.io/a@sha256:1"], "sizeBytes": 1}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            },
        }))
        .unwrap();
        let before = strata_crds::contract::mco::NodeView::of(&node);
        strip_node(&mut node);
        assert_eq!(strata_crds::contract::mco::NodeView::of(&node), before);
        assert!(node.metadata.managed_fields.is_none());
        assert!(node.metadata.labels.is_some());
        let spec = node.spec.as_ref().unwrap();
        assert_eq!(
            (spec.unschedulable, spec.pod_cidr.as_ref()),
            (Some(true), None)
        );
        let status = node.status.as_ref().unwrap();
        assert!(status.images.is_none() && status.addresses.is_none());
        let kept: Vec<&str> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(kept, ["Ready"]);
    }

    #[test]
    fn machine_configs_keep_only_the_image() {
        let mut mc: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
            "metadata": {"name": "rendered-worker-1", "managedFields": [{"manager": "x"}]},
            "spec": {"osImageURL": "r.example.com/os@sha256:1", "config": {"ignition": {"version": "3.4.0"}, "storage": {"files": ["big"]}}},
        }))
        .unwrap();
        strip_machine_config(&mut mc);
        assert_eq!(
            mc.data,
            json!({"spec": {"osImageURL": "r.example.com/os@sha256:1"}})
        );
        assert!(mc.metadata.managed_fields.is_none());
    }
}
