//! The image storage on the cache claim, shared by every build (the controller's `--cache-claim`).
//! Nothing else removes what builds leave there (each build's image, its layer cache, every base
//! a release brought), so it would fill up and fail every later build. The builds keep it in
//! bounds themselves:
//!
//! - a build registers while it uses the storage: a marker file named after its image tag,
//!   written by the pull step before it pulls and removed when the build ends (the push step, or
//!   the step that failed); every step refreshes it while it runs ([`HEARTBEAT`]), so a marker
//!   not refreshed for [`STALE_AFTER`] is a build that died (its pod killed, evicted or gone with
//!   its node) and no longer holds the storage;
//! - the pull step, before pulling, empties the storage (`buildah rm --all`, `rmi --all`) when
//!   less than `--shared-storage-min-free` is left on it, but only when no other build is
//!   registered: images and containers another build uses stay. Registration and the decision
//!   happen under one file lock, so no build registers while another empties the storage.
//!
//! A full storage with other builds running is left as it is; a build that runs out of space
//! fails transiently (OutOfSpace) and its retry finds it emptied once the others ended.
//!
//! Each MachineOSConfig has a store of its own on the claim (`configs/<name>`): the steps of its
//! builds mount only that one. The pull step also sees the whole claim, and when it is short of
//! space it first empties the stores no build is registered in ([`idle_stores`]: other configs',
//! deleted configs', and the single store of claims made before per-config stores), each under
//! its own lock, then its own as above.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where the markers live, beside containers/storage's own directories in the storage root.
const MARKERS: &str = "strata-builds";
/// The lock taken while registering and deciding.
const LOCK: &str = "strata-builds.lock";
/// How often a running step refreshes its build's marker.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// The age of a marker that is a build that died: twenty missed heartbeats, far more than the
/// kubelet takes to start a pod's next step, or a step its slowest synchronous work.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// What the pull step does about the storage's free space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Enough is free.
    Keep,
    /// Too little is free and no other build uses the storage: empty it.
    Empty,
    /// Too little is free, but other builds use the storage.
    Busy { others: usize },
}

/// The decision, from the free bytes and the other builds registered.
pub fn decide(free_bytes: u64, min_free_bytes: u64, others: usize) -> Decision {
    if free_bytes >= min_free_bytes {
        Decision::Keep
    } else if others == 0 {
        Decision::Empty
    } else {
        Decision::Busy { others }
    }
}

/// What [`Registration::register`] found, with the lock still held: the caller empties the
/// storage (if so decided) before dropping it.
#[derive(Debug)]
pub struct Registered {
    pub decision: Decision,
    /// Free bytes on the storage when the decision was taken.
    pub free_bytes: u64,
    /// The other builds registered then.
    pub others: usize,
    pub lock: File,
}

/// One build's registration in the shared storage.
#[derive(Debug, Clone)]
pub struct Registration {
    storage: PathBuf,
    marker: String,
    stale_after: Duration,
}

impl Registration {
    /// The registration of the build pushing `image` (its tag, the build's name, names the
    /// marker). A marker not refreshed for `stale_after` ([`STALE_AFTER`]) is a build that died.
    pub fn new(storage: &Path, image: &str, stale_after: Duration) -> Self {
        let tag = image.rsplit(':').next().unwrap_or(image);
        let marker: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            storage: storage.to_path_buf(),
            marker,
            stale_after,
        }
    }

    /// The registration of one pod of the build: its UID joins the marker's name, so a retry's
    /// pod never shares a marker with the pod before it (whose late release would remove it).
    pub fn of_pod(mut self, uid: Option<&str>) -> Self {
        if let Some(uid) = uid.filter(|u| !u.is_empty()) {
            let uid: String = uid
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            self.marker = format!("{}.{uid}", self.marker);
        }
        self
    }

    fn markers(&self) -> PathBuf {
        self.storage.join(MARKERS)
    }

    /// Takes the lock (blocking), registers this build and returns what to do.
    pub fn register(&self, min_free_bytes: u64) -> std::io::Result<Registered> {
        std::fs::create_dir_all(self.markers())?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.storage.join(LOCK))?;
        lock.lock()?;
        let others = self.others_alive(SystemTime::now())?;
        std::fs::write(self.markers().join(&self.marker), b"")?;
        let free = free_bytes(&self.storage)?;
        Ok(Registered {
            decision: decide(free, min_free_bytes, others),
            free_bytes: free,
            others,
            lock,
        })
    }

    /// The other builds registered and not stale at `now`; stale markers are removed.
    fn others_alive(&self, now: SystemTime) -> std::io::Result<usize> {
        let mut alive = 0;
        for entry in std::fs::read_dir(self.markers())? {
            let entry = entry?;
            if entry.file_name().to_string_lossy() == self.marker {
                continue;
            }
            let modified = entry.metadata()?.modified()?;
            let age = now.duration_since(modified).unwrap_or_default();
            if age > self.stale_after {
                let _ = std::fs::remove_file(entry.path());
            } else {
                alive += 1;
            }
        }
        Ok(alive)
    }

    /// Marks this build alive now. A marker that is gone stays gone: registering is the pull
    /// step's, under the lock.
    pub fn refresh(&self) {
        if let Ok(marker) = OpenOptions::new()
            .write(true)
            .open(self.markers().join(&self.marker))
        {
            let _ = marker.set_modified(SystemTime::now());
        }
    }

    /// Ends this build's registration (best effort: a marker left behind goes stale).
    pub fn release(&self) {
        let _ = std::fs::remove_file(self.markers().join(&self.marker));
    }
}

/// A store on the claim that no build uses, its lock held until dropped: empty it meanwhile.
#[derive(Debug)]
pub struct IdleStore {
    pub root: PathBuf,
    pub lock: File,
}

/// The stores on the claim `claim` other than `own` that no live build is registered in, each
/// locked: the per-config stores under `stores` (`configs/*`) and, on a claim made before them,
/// the claim's root (which held one store for every build). A store being used, or whose lock
/// another build holds, is skipped.
pub fn idle_stores(
    claim: &Path,
    stores: &str,
    own: &Path,
    stale_after: Duration,
) -> std::io::Result<Vec<IdleStore>> {
    let own = own.canonicalize().unwrap_or_else(|_| own.to_path_buf());
    let mut candidates = Vec::new();
    if let Ok(entries) = std::fs::read_dir(claim.join(stores)) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                candidates.push(entry.path());
            }
        }
    }
    // A claim of an earlier version: containers/storage's own directories at its root.
    if std::fs::read_dir(claim)?.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with("-images") || name.ends_with("-layers")
    }) {
        candidates.push(claim.to_path_buf());
    }
    let mut idle = Vec::new();
    for root in candidates {
        if root.canonicalize().unwrap_or_else(|_| root.clone()) == own {
            continue;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK))?;
        // Another build registering there holds it: that store is in use.
        if lock.try_lock().is_err() {
            continue;
        }
        // No marker is a fresh one: an empty name never matches, so every marker counts.
        let probe = Registration {
            storage: root.clone(),
            marker: String::new(),
            stale_after,
        };
        let alive = match std::fs::read_dir(probe.markers()) {
            Ok(_) => probe.others_alive(SystemTime::now())?,
            Err(_) => 0,
        };
        if alive == 0 {
            idle.push(IdleStore { root, lock });
        }
    }
    Ok(idle)
}

/// Bytes an unprivileged writer can still use on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_storage_is_emptied_only_when_short_of_space_and_alone() {
        assert_eq!(decide(6 * GIB, 5 * GIB, 0), Decision::Keep);
        assert_eq!(decide(5 * GIB, 5 * GIB, 3), Decision::Keep);
        assert_eq!(decide(4 * GIB, 5 * GIB, 0), Decision::Empty);
        assert_eq!(decide(4 * GIB, 5 * GIB, 2), Decision::Busy { others: 2 });
    }

    #[test]
    fn a_build_registers_counts_the_others_and_releases() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let hour = Duration::from_secs(3600);
        let a = Registration::new(dir.path(), "registry:5000/os/image:worker-aaa", hour);
        let b = Registration::new(dir.path(), "registry:5000/os/image:infra-bbb", hour);
        // Nothing can be free enough: the decision shows how many others were seen.
        // Each registration's lock is dropped with it, at the end of its statement.
        assert_eq!(a.register(u64::MAX)?.decision, Decision::Empty);
        assert_eq!(b.register(u64::MAX)?.decision, Decision::Busy { others: 1 });
        a.release();
        assert_eq!(
            b.register(u64::MAX)?.decision,
            Decision::Empty,
            "b alone once a released"
        );
        let enough = b.register(0)?;
        assert_eq!(enough.decision, Decision::Keep);
        assert!(enough.free_bytes > 0);
        Ok(())
    }

    #[test]
    fn a_marker_not_refreshed_for_stale_after_is_a_dead_build() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let age = |marker: &Path, age: Duration| {
            File::options()
                .write(true)
                .open(marker)?
                .set_modified(SystemTime::now() - age)
        };
        let running = Registration::new(dir.path(), "r/i:running", STALE_AFTER);
        let dead = Registration::new(dir.path(), "r/i:dead", STALE_AFTER);
        running.register(0)?;
        dead.register(0)?;
        let markers = dir.path().join(MARKERS);
        // Both registered long ago; only the running build's step refreshed its marker since.
        age(&markers.join("running"), 2 * STALE_AFTER)?;
        age(&markers.join("dead"), 2 * STALE_AFTER)?;
        running.refresh();
        let live = Registration::new(dir.path(), "r/i:live", STALE_AFTER);
        assert_eq!(
            live.register(u64::MAX)?.decision,
            Decision::Busy { others: 1 }
        );
        assert!(
            !markers.join("dead").exists(),
            "the stale marker is removed"
        );
        // A refresh does not bring a removed marker back.
        dead.refresh();
        assert!(!markers.join("dead").exists());
        Ok(())
    }

    #[test]
    fn the_marker_is_the_tag_made_safe_as_a_file_name() {
        let r = Registration::new(Path::new("/s"), "host:5000/a/b:worker-1f2e", Duration::ZERO);
        assert_eq!(r.marker, "worker-1f2e");
        let odd = Registration::new(Path::new("/s"), "x/../..", Duration::ZERO);
        assert!(!odd.marker.contains('/'));
        let pod = r.clone().of_pod(Some("5f0c-11aa/.."));
        assert_eq!(pod.marker, "worker-1f2e.5f0c-11aa");
        assert_eq!(r.clone().of_pod(None).marker, "worker-1f2e");
    }

    #[test]
    fn only_stores_no_live_build_uses_are_idle() -> std::io::Result<()> {
        let claim = tempfile::tempdir()?;
        let store = |name: &str| claim.path().join("configs").join(name);
        for name in ["mine", "busy", "idle"] {
            std::fs::create_dir_all(store(name))?;
        }
        let hour = Duration::from_secs(3600);
        Registration::new(&store("mine"), "r/i:mine-1", hour).register(0)?;
        Registration::new(&store("busy"), "r/i:busy-1", hour).register(0)?;
        let ended = Registration::new(&store("idle"), "r/i:idle-1", hour);
        ended.register(0)?;
        ended.release();
        // A claim of an earlier version: one store at the root.
        std::fs::create_dir_all(claim.path().join("overlay-images"))?;
        let idle = idle_stores(claim.path(), "configs", &store("mine"), hour)?;
        let mut roots: Vec<PathBuf> = idle.iter().map(|s| s.root.clone()).collect();
        roots.sort();
        assert_eq!(roots, [claim.path().to_path_buf(), store("idle")]);
        // While one is held, another build cannot take it.
        let again = idle_stores(claim.path(), "configs", &store("mine"), hour)?;
        assert!(again.is_empty(), "{again:?}");
        drop(idle);
        assert_eq!(
            idle_stores(claim.path(), "configs", &store("mine"), hour)?.len(),
            2
        );
        Ok(())
    }

    #[test]
    fn free_bytes_reads_the_filesystem() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(free_bytes(dir.path())? > 0);
        Ok(())
    }
}
