//! The builders' image storage on a claim: the administrator's (`--cache-claim=NAME`, bound to a
//! directory on the node with e2e's kit) or Strata's own (`--cache-claim=auto`, the default,
//! provisioned by the local cluster's default StorageClass: a directory under /tmp/hostpath_pv).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams};
use strata_crds::contract::install;
use strata_e2e::deployed::NAMESPACE;

use crate::host;

/// The administrator's claim (and its volume).
pub const NAME: &str = "bench-cache";

/// The directory on the node behind the administrator's claim.
pub fn dir() -> PathBuf {
    host::work_dir().join("cache-claim")
}

/// Creates an empty directory, the PersistentVolume on it and the claim bound to it.
pub async fn create(client: &kube::Client) -> Result<()> {
    strata_e2e::cache_claim::create(client, NAME, &dir()).await
}

/// Deletes the claim, its volume and the directory (best effort).
pub async fn remove(client: &kube::Client) {
    strata_e2e::cache_claim::remove(client, NAME, &dir()).await
}

/// Deletes Strata's own claim and waits until its volume (and so its directory) is gone: the next
/// build starts on an empty one, made again by the controller.
pub async fn remove_own(client: &kube::Client) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let Some(claim) = claims.get_opt(install::CACHE_CLAIM).await? else {
        return Ok(());
    };
    let volume = claim.spec.and_then(|s| s.volume_name);
    claims
        .delete(install::CACHE_CLAIM, &DeleteParams::default())
        .await?;
    for _ in 0..120 {
        let claim_left = claims.get_opt(install::CACHE_CLAIM).await?.is_some();
        let volume_left = match &volume {
            Some(v) => volumes.get_opt(v).await?.is_some(),
            None => false,
        };
        if !claim_left && !volume_left {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("Strata's cache claim and its volume were not gone within 120 s")
}

/// The node directories behind the claims `pod` mounts, once they are bound (the pod cannot
/// start before); only hostPath volumes have one.
pub async fn dirs_of(client: &kube::Client, pod: &Pod) -> Result<Vec<PathBuf>> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect();
    let mut dirs = Vec::new();
    for name in names {
        let volume = strata_e2e::util::wait_for(
            &format!("claim {name} bound"),
            Duration::from_secs(60),
            || async {
                Ok(claims
                    .get_opt(&name)
                    .await?
                    .and_then(|c| c.spec?.volume_name)
                    .filter(|v| !v.is_empty()))
            },
        )
        .await?;
        let path = volumes
            .get(&volume)
            .await?
            .spec
            .and_then(|s| s.host_path)
            .map(|h| PathBuf::from(h.path))
            .with_context(|| format!("the volume {volume} of claim {name} has no hostPath"))?;
        dirs.push(path);
    }
    Ok(dirs)
}
