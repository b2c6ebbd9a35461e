//! The controller's `--cache-claim`: a PersistentVolumeClaim used as every builder pod's image
//! storage instead of a fresh emptyDir. The local cluster has no volume provisioner, so the bench
//! binds the claim to a hostPath PersistentVolume of its own (a directory on the node).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use strata_e2e::deployed::NAMESPACE;
use strata_e2e::util::wait_for;

use crate::host;
use crate::objects::MANAGER;

/// The claim (and its volume).
pub const NAME: &str = "bench-cache";

/// The directory on the node behind the claim.
pub fn dir() -> PathBuf {
    host::work_dir().join("cache-claim")
}

/// Creates an empty directory, the PersistentVolume on it and the claim bound to it.
pub async fn create(client: &kube::Client) -> Result<()> {
    remove(client).await;
    std::fs::create_dir_all(dir())?;
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": NAME},
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": NAME,
            "hostPath": {"path": dir().display().to_string(), "type": "Directory"},
            "claimRef": {"namespace": NAMESPACE, "name": NAME},
        },
    });
    Api::<PersistentVolume>::all(client.clone())
        .patch(
            NAME,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&pv),
        )
        .await?;
    let pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": NAME,
            "volumeName": NAME,
            "resources": {"requests": {"storage": "100Gi"}},
        },
    });
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    claims
        .patch(
            NAME,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&pvc),
        )
        .await?;
    wait_for("the cache claim bound", Duration::from_secs(60), || async {
        let phase = claims
            .get(NAME)
            .await?
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        Ok((phase == "Bound").then_some(()))
    })
    .await
}

/// Deletes the claim, its volume and the directory (best effort).
pub async fn remove(client: &kube::Client) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let _ = claims.delete(NAME, &DeleteParams::default()).await;
    let _ = volumes.delete(NAME, &DeleteParams::default()).await;
    for _ in 0..60 {
        let claim = claims.get_opt(NAME).await.ok().flatten();
        let volume = volumes.get_opt(NAME).await.ok().flatten();
        if claim.is_none() && volume.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = tokio::fs::remove_dir_all(dir()).await;
}
