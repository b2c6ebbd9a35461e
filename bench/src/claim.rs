//! The controller's `--cache-claim`: a PersistentVolumeClaim used as every builder pod's image
//! storage instead of a fresh emptyDir, bound to a directory on the node (e2e's kit).

use std::path::PathBuf;

use anyhow::Result;

use crate::host;

/// The claim (and its volume).
pub const NAME: &str = "bench-cache";

/// The directory on the node behind the claim.
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
