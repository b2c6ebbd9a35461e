//! A cache claim for the controller's `--cache-claim`: a PersistentVolumeClaim in the controller's
//! namespace bound to a hostPath PersistentVolume of its own (a directory on the node). The local
//! cluster's hostPath provisioner is not used; the builders see an ordinary ReadWriteOnce claim.
//! [`create_on_node`] makes it a node's local volume (as LVMS or a local-storage class offer): the
//! scheduler places every pod that mounts it on that node.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::deployed::NAMESPACE;
use crate::util::wait_for;

const MANAGER: &str = "strata-e2e";

/// Creates the empty directory `dir`, the PersistentVolume `name` on it and the claim `name`
/// bound to it; waits until the claim is bound.
pub async fn create(client: &kube::Client, name: &str, dir: &Path) -> Result<()> {
    create_on_node(client, name, dir, None).await
}

/// [`create`], the volume bound to `node` (its `nodeAffinity`) when one is given.
pub async fn create_on_node(
    client: &kube::Client,
    name: &str,
    dir: &Path,
    node: Option<&str>,
) -> Result<()> {
    remove(client, name, dir).await;
    std::fs::create_dir_all(dir)?;
    let mut pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": name,
            "hostPath": {"path": dir.display().to_string(), "type": "Directory"},
            "claimRef": {"namespace": NAMESPACE, "name": name},
        },
    });
    if let Some(node) = node {
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions":
            [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}});
    }
    let apply = PatchParams::apply(MANAGER).force();
    Api::<PersistentVolume>::all(client.clone())
        .patch(name, &apply, &Patch::Apply(&pv))
        .await?;
    let pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": name,
            "volumeName": name,
            "resources": {"requests": {"storage": "100Gi"}},
        },
    });
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    claims.patch(name, &apply, &Patch::Apply(&pvc)).await?;
    wait_for("the cache claim bound", Duration::from_secs(60), || async {
        let phase = claims
            .get(name)
            .await?
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        Ok((phase == "Bound").then_some(()))
    })
    .await
}

/// Deletes the claim `name`, its volume and the directory `dir` (best effort).
pub async fn remove(client: &kube::Client, name: &str, dir: &Path) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let _ = claims.delete(name, &DeleteParams::default()).await;
    let _ = volumes.delete(name, &DeleteParams::default()).await;
    for _ in 0..60 {
        let claim = claims.get_opt(name).await.ok().flatten();
        let volume = volumes.get_opt(name).await.ok().flatten();
        if claim.is_none() && volume.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = tokio::fs::remove_dir_all(dir).await;
}
