//! In-memory caches of every kind the controller reads, fed by watches. Observe reads these and
//! never GETs a watched kind. `managedFields` are stripped, and MachineConfigs keep only what
//! Strata reads (their Ignition payload can be hundreds of KiB).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::DynamicObject;
use kube::runtime::reflector::Store;
use serde_json::json;
use strata_crds::{MachineOSBuild, MachineOSConfig};

/// Readers of every cache.
#[derive(Clone)]
pub struct Stores {
    pub configs: Store<MachineOSConfig>,
    pub builds: Store<MachineOSBuild>,
    /// Strata's Jobs in the controller namespace.
    pub jobs: Store<Job>,
    /// Strata's builder pods in the controller namespace.
    pub pods: Store<Pod>,
    /// Every Secret in the controller namespace (users' and the per-build copies).
    pub secrets: Store<Secret>,
    /// The builds' ConfigMaps (Containerfile, environment), without their data: only whether
    /// they exist is read.
    pub build_config_maps: Store<ConfigMap>,
    /// The release ConfigMap (only that one object).
    pub release: Store<ConfigMap>,
    pub pools: Store<DynamicObject>,
    pub machine_configs: Store<DynamicObject>,
    /// OpenShift's own MachineOSConfigs (empty where OpenShift's layering API is not served).
    pub openshift_configs: Store<DynamicObject>,
    /// The cluster's environment: pull secret, CAs, proxy, mirrors, entitlements.
    pub environment: super::environment::watches::EnvironmentStores,
}

/// Drops what no reader needs from any object.
pub fn strip_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// A build's ConfigMap as Strata reads it: whether it exists.
pub fn strip_config_map(cm: &mut ConfigMap) {
    strip_managed_fields(cm);
    cm.data = None;
    cm.binary_data = None;
}

/// A MachineConfig as Strata reads it: metadata and `spec.osImageURL`.
pub fn strip_machine_config(obj: &mut DynamicObject) {
    strip_managed_fields(obj);
    obj.metadata
        .annotations
        .as_mut()
        .map(|a| a.remove("kubectl.kubernetes.io/last-applied-configuration"));
    let image = obj.data["spec"]["osImageURL"].clone();
    obj.data = json!({"spec": {"osImageURL": image}});
}

#[cfg(test)]
mod tests {
    use super::*;

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
