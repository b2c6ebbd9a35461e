//! The most one MachineOSConfig's store on the cache claim may hold (`--cache-claim-store-quota-gib`).
//! Every pool builds on the same claim, and a `RUN` step writes into its store outside the pod's
//! ephemeral-storage accounting, so without a bound one pool's fragments could fill the claim and
//! fail every other pool's builds. The claim's file system offers no quota Strata could set, so
//! the builder keeps it:
//!
//! - the pull step empties its config's store (when no other build uses it) if what the store
//!   holds and what one build may add (`--cache-claim-min-free-gib`) would pass the quota;
//! - the build step measures the store every [`CHECK_EVERY`] and stops buildah once the store
//!   holds more than the quota (`StoreQuotaExceeded`, terminal: the fragments wrote it).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{FailureClass, TerminationMessage, failure};

/// How often the build step measures its store. A walk of a CoreOS-sized store takes a fraction
/// of a second; a `RUN` step may write some GiB past the quota before it is noticed.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Whether the pull step empties the store first: what it holds and what one build may add
/// would pass the quota.
pub fn over_quota(used_bytes: u64, min_free_bytes: u64, quota_bytes: u64) -> bool {
    used_bytes.saturating_add(min_free_bytes) > quota_bytes
}

/// Bytes the tree at `root` takes on disk: each inode once (hard links), within `root`'s file
/// system (buildah's mounts inside it are other file systems), unreadable directories skipped.
pub fn usage_bytes(root: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    let device = top.dev();
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != device {
                continue;
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
                continue;
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

/// Resolves once the store at `store` holds more than `quota_bytes` (measured `every`, the build
/// step's [`CHECK_EVERY`]), with the build's failure; never otherwise (the build step races it
/// against buildah).
pub async fn exceeded(store: PathBuf, quota_bytes: u64, every: Duration) -> TerminationMessage {
    let mut every = tokio::time::interval(every);
    loop {
        every.tick().await;
        let root = store.clone();
        let used = tokio::task::spawn_blocking(move || usage_bytes(&root))
            .await
            .unwrap_or(0);
        if used > quota_bytes {
            let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
            return failure(
                FailureClass::Terminal,
                "StoreQuotaExceeded",
                format!(
                    "the build grew its MachineOSConfig's store on the cache claim to {:.1} GiB, \
                     past the {:.1} GiB each config may keep there (--cache-claim-store-quota-gib): \
                     a RUN step wrote too much; buildah was stopped",
                    gib(used),
                    gib(quota_bytes)
                ),
                String::new(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_store_is_emptied_when_one_more_build_would_pass_the_quota() {
        assert!(!over_quota(10 * GIB, 5 * GIB, 20 * GIB));
        assert!(!over_quota(15 * GIB, 5 * GIB, 20 * GIB));
        assert!(over_quota(15 * GIB + 1, 5 * GIB, 20 * GIB));
        assert!(over_quota(u64::MAX, 5 * GIB, 20 * GIB));
    }

    #[test]
    fn usage_counts_what_lies_on_disk_and_hard_links_once() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let empty = usage_bytes(dir.path());
        std::fs::create_dir_all(dir.path().join("a/b"))?;
        std::fs::write(dir.path().join("a/b/data"), vec![7u8; 1 << 20])?;
        let one = usage_bytes(dir.path());
        assert!(one >= empty + (1 << 20), "{one} after writing 1 MiB");
        std::fs::hard_link(dir.path().join("a/b/data"), dir.path().join("a/again"))?;
        assert_eq!(usage_bytes(dir.path()), one, "a hard link is the same data");
        // A sparse file takes what it wrote, not its length.
        let sparse = std::fs::File::create(dir.path().join("sparse"))?;
        sparse.set_len(1 << 30)?;
        assert!(usage_bytes(dir.path()) < one + (1 << 20));
        assert_eq!(usage_bytes(&dir.path().join("missing")), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_store_past_its_quota_stops_the_build_with_a_terminal_failure() -> std::io::Result<()>
    {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("layer"), vec![1u8; 64 << 10])?;
        let tick = Duration::from_millis(10);
        let message = exceeded(dir.path().to_path_buf(), 4 << 10, tick).await;
        let TerminationMessage::Failure {
            class,
            reason,
            message,
            ..
        } = message
        else {
            panic!("a success from the quota");
        };
        assert_eq!(class, FailureClass::Terminal);
        assert_eq!(reason, "StoreQuotaExceeded");
        assert!(
            message.contains("--cache-claim-store-quota-gib"),
            "{message}"
        );
        // Under the quota it never resolves.
        let under = exceeded(dir.path().to_path_buf(), 1 << 30, tick);
        assert!(
            tokio::time::timeout(20 * tick, under).await.is_err(),
            "a store under its quota stopped the build"
        );
        Ok(())
    }
}
