//! What runs on the host: buildah as the limit the cluster path is compared to (the builder's
//! storage settings: overlay, chroot isolation, --layers, OCI, a fresh storage root like a new
//! pod's emptyDir), the scale run's no-op builder image, and the machine's description.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use strata_e2e::measure::pod_usage::Sampler;
use tokio::process::Command;

/// Where the bench keeps its buildah storage roots and files.
pub fn work_dir() -> PathBuf {
    std::env::var_os("STRATA_BENCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/strata-bench"))
}

/// Runs a command, failing with its output when it fails; returns stdout.
pub async fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Which buildah runs on the host.
#[derive(Debug, Clone)]
pub enum Buildah {
    /// The host's own (Debian's package).
    Host,
    /// The builder image's, in a privileged container of the node's containerd with the host's
    /// network and the work dir at the same path: the builder pod's buildah version without
    /// Kubernetes (no pod, no steps, no hand-over).
    Image {
        /// The node's containerd socket.
        address: PathBuf,
        /// The builder image, `repo@sha256:…`, pulled into the namespace [`CTR_NAMESPACE`].
        image: String,
    },
}

/// The node's containerd namespace the bench's own containers run in (not Kubernetes').
const CTR_NAMESPACE: &str = "strata-bench";

impl Buildah {
    /// The builder image's buildah on `cluster`'s node, its image pulled first.
    pub async fn image(cluster: &strata_e2e::Cluster, image: &str) -> Result<Self> {
        let address = cluster.dir.join("containerd/containerd.sock");
        let address_s = address.display().to_string();
        run(
            "ctr",
            &[
                "--address",
                &address_s,
                "-n",
                CTR_NAMESPACE,
                "images",
                "pull",
                "--plain-http",
                image,
            ],
            &[],
        )
        .await?;
        Ok(Self::Image {
            address,
            image: image.to_string(),
        })
    }

    /// `buildah args…` with `envs`, run as this buildah runs. In a container, `blob_cache` is its
    /// `/var/lib/containers/cache` (where buildah records which repository each blob came from,
    /// so a push mounts a blob across repositories instead of sending it), kept from one run to
    /// the next as the builder pod keeps it from step to step.
    async fn run(&self, args: &[&str], envs: &[(&str, &str)], blob_cache: &Path) -> Result<String> {
        match self {
            Self::Host => run("buildah", args, envs).await,
            Self::Image { address, image } => {
                let address = address.display().to_string();
                let work = work_dir().display().to_string();
                let mount = format!("type=bind,src={work},dst={work},options=rbind:rw");
                std::fs::create_dir_all(blob_cache)?;
                let cache = format!(
                    "type=bind,src={},dst={},options=rbind:rw",
                    blob_cache.display(),
                    strata_crds::contract::builder_pod::BLOB_INFO_CACHE_DIR
                );
                let id = format!("strata-bench-buildah-{}", std::process::id());
                // `--env` replaces the image's environment: PATH given again.
                let env: Vec<String> = std::iter::once(
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                )
                .chain(envs.iter().map(|(k, v)| format!("{k}={v}")))
                .collect();
                let mut all = vec![
                    "--address",
                    address.as_str(),
                    "-n",
                    CTR_NAMESPACE,
                    "run",
                    "--rm",
                    "--privileged",
                    "--net-host",
                    "--mount",
                    mount.as_str(),
                    "--mount",
                    cache.as_str(),
                ];
                for e in &env {
                    all.extend(["--env", e.as_str()]);
                }
                all.extend([image.as_str(), id.as_str(), "/usr/bin/buildah"]);
                all.extend_from_slice(args);
                run("ctr", &all, &[]).await
            }
        }
    }
}

/// A fresh buildah storage root (and run root and temporary directory) under the work dir.
pub struct Storage {
    pub dir: PathBuf,
    pub root: PathBuf,
    runroot: PathBuf,
    tmp: PathBuf,
    driver: &'static str,
    buildah: Buildah,
}

impl Storage {
    pub async fn fresh(name: &str, driver: &'static str) -> Result<Self> {
        Self::fresh_with(name, driver, Buildah::Host).await
    }

    /// A fresh storage that `buildah` works in.
    pub async fn fresh_with(name: &str, driver: &'static str, buildah: Buildah) -> Result<Self> {
        let dir = work_dir().join(name);
        remove_dir(&dir).await;
        let storage = Self {
            root: dir.join("root"),
            runroot: dir.join("run"),
            tmp: dir.join("tmp"),
            dir,
            driver,
            buildah,
        };
        for d in [&storage.root, &storage.runroot, &storage.tmp] {
            std::fs::create_dir_all(d)?;
        }
        Ok(storage)
    }

    /// `buildah <storage flags> <args>`, its temporary files in this storage's `tmp` (as the
    /// builder keeps them in its work directory).
    pub async fn buildah(&self, args: &[&str]) -> Result<String> {
        let driver = format!("--storage-driver={}", self.driver);
        let root = format!("--root={}", self.root.display());
        let runroot = format!("--runroot={}", self.runroot.display());
        let mut all = vec![driver.as_str(), root.as_str(), runroot.as_str()];
        all.extend_from_slice(args);
        let tmp = self.tmp.display().to_string();
        self.buildah
            .run(
                &all,
                &[("BUILDAH_ISOLATION", "chroot"), ("TMPDIR", &tmp)],
                &self.dir.join("blob-info-cache"),
            )
            .await
    }

    /// The layers in the storage as containers/storage records them (`<driver>-layers/layers.json`).
    pub fn layers(&self) -> Option<StoredLayers> {
        let file = self
            .root
            .join(format!("{}-layers/layers.json", self.driver));
        let layers: serde_json::Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        Some(StoredLayers::from_json(&layers))
    }

    pub async fn remove(self) {
        let _ = self.buildah(&["rmi", "--all", "--force"]).await;
        remove_dir(&self.dir).await;
    }
}

/// Removes a storage directory, unmounting what containers/storage left mounted in it.
async fn remove_dir(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = run("umount", &["-l", p], &[]).await;
    }
    let _ = tokio::fs::remove_dir_all(dir).await;
}

/// The layers of one image in a storage: their uncompressed sizes in order, bottom first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredLayers {
    /// Uncompressed bytes of every layer, bottom first (the chain of `parent` links).
    pub sizes: Vec<u64>,
}

impl StoredLayers {
    /// From containers/storage's layers.json: `[{"id", "parent", "diff-size"}, …]`, one chain.
    pub fn from_json(layers: &serde_json::Value) -> Self {
        let Some(list) = layers.as_array() else {
            return Self::default();
        };
        let parent_of =
            |l: &serde_json::Value| l["parent"].as_str().unwrap_or_default().to_string();
        let parents: std::collections::HashSet<String> = list.iter().map(parent_of).collect();
        // The top: the layer no other names as its parent; walk down to the bottom.
        let mut sizes = Vec::new();
        let mut at = list
            .iter()
            .find(|l| !parents.contains(l["id"].as_str().unwrap_or_default()));
        while let Some(layer) = at {
            sizes.push(layer["diff-size"].as_u64().unwrap_or(0));
            let parent = parent_of(layer);
            at = list
                .iter()
                .find(|l| l["id"].as_str() == Some(parent.as_str()));
            if sizes.len() > list.len() {
                break;
            }
        }
        sizes.reverse();
        Self { sizes }
    }

    pub fn total(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// What vfs stores for the chain: every layer a full copy of the tree up to it.
    pub fn vfs_bytes(&self) -> u64 {
        let mut tree = 0;
        let mut all = 0;
        for s in &self.sizes {
            tree += s;
            all += tree;
        }
        all
    }
}

/// The base as pulled on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PulledBase {
    pub total: u64,
    pub layers: usize,
    pub vfs_estimate: u64,
}

/// One build on the host with the builder's storage settings, each step timed.
#[derive(Debug, Clone)]
pub struct HostBuild {
    pub pull_seconds: f64,
    pub bud_seconds: f64,
    pub push_seconds: f64,
    pub peak_disk_bytes: u64,
}

impl HostBuild {
    pub fn total(&self) -> f64 {
        self.pull_seconds + self.bud_seconds + self.push_seconds
    }
}

/// `buildah pull` of the base, `buildah bud --pull=never --isolation=chroot --layers
/// --format=oci` of `containerfile`, `buildah push --digestfile` to `image` — the builder's three
/// steps without Strata (no image gate) — in a fresh overlay storage, by `buildah`.
pub async fn overlay_build(
    containerfile: &str,
    base: &str,
    image: &str,
    buildah: Buildah,
) -> Result<HostBuild> {
    let storage = Storage::fresh_with("host-overlay", "overlay", buildah).await?;
    let result = build_in(&storage, containerfile, base, image).await;
    storage.remove().await;
    result
}

async fn build_in(
    storage: &Storage,
    containerfile: &str,
    base: &str,
    image: &str,
) -> Result<HostBuild> {
    let file = storage.dir.join("Containerfile");
    let context = storage.dir.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(&file, containerfile)?;
    let sampler = Sampler::disk_only(vec![storage.dir.clone()]);
    let started = Instant::now();
    storage
        .buildah(&["pull", "--tls-verify=false", "-q", base])
        .await?;
    let pull_seconds = started.elapsed().as_secs_f64();
    let file_s = file.display().to_string();
    let ctx_s = context.display().to_string();
    let started = Instant::now();
    storage
        .buildah(&[
            "bud",
            "--pull=never",
            "--isolation=chroot",
            "--layers",
            "--format=oci",
            "-f",
            &file_s,
            "-t",
            image,
            &ctx_s,
        ])
        .await?;
    let bud_seconds = started.elapsed().as_secs_f64();
    let digestfile = storage.dir.join("digest");
    let digest_arg = format!("--digestfile={}", digestfile.display());
    let dest = format!("docker://{image}");
    let started = Instant::now();
    storage
        .buildah(&["push", "--tls-verify=false", &digest_arg, image, &dest])
        .await?;
    let push_seconds = started.elapsed().as_secs_f64();
    let usage = sampler.stop().await;
    let digest = std::fs::read_to_string(&digestfile)?;
    if !digest.trim().starts_with("sha256:") {
        bail!("buildah push wrote no digest for {image}");
    }
    Ok(HostBuild {
        pull_seconds,
        bud_seconds,
        push_seconds,
        peak_disk_bytes: usage.peak_disk_bytes,
    })
}

/// Only the pull of `base` into a fresh overlay storage (to warm the registry's page cache before
/// timed runs, and to read the base's uncompressed size).
pub async fn pull_only(base: &str) -> Result<Option<PulledBase>> {
    let storage = Storage::fresh("host-pull", "overlay").await?;
    let result = storage
        .buildah(&["pull", "--tls-verify=false", "-q", base])
        .await
        .map(|_| {
            storage.layers().map(|l| PulledBase {
                total: l.total(),
                layers: l.sizes.len(),
                vfs_estimate: l.vfs_bytes(),
            })
        });
    storage.remove().await;
    result
}

/// The scale run's no-op builder: the builder image with `strata-bench` as its entrypoint
/// (`strata-bench noop-builder build <step>`, see noop.rs), pushed to `dest`; returns `repo@digest`.
pub async fn noop_builder_image(builder: &str, bench: &Path, dest: &str) -> Result<String> {
    let storage = Storage::fresh("noop-builder", "vfs").await?;
    let result = async {
        let container = storage
            .buildah(&["from", "--tls-verify=false", "-q", builder])
            .await?
            .trim()
            .to_string();
        let bench_s = bench.display().to_string();
        storage
            .buildah(&[
                "copy",
                "--chmod",
                "0755",
                &container,
                &bench_s,
                "/usr/local/bin/strata-bench",
            ])
            .await?;
        storage
            .buildah(&[
                "config",
                "--entrypoint",
                r#"["/usr/local/bin/strata-bench","noop-builder"]"#,
                "--cmd",
                "",
                &container,
            ])
            .await?;
        storage
            .buildah(&[
                "commit",
                "-q",
                "--rm",
                &container,
                "localhost/strata-bench/noop-builder:latest",
            ])
            .await?;
        let digestfile = storage.dir.join("digest");
        let digest_arg = format!("--digestfile={}", digestfile.display());
        let dest_arg = format!("docker://{dest}");
        storage
            .buildah(&[
                "push",
                "--tls-verify=false",
                &digest_arg,
                "localhost/strata-bench/noop-builder:latest",
                &dest_arg,
            ])
            .await?;
        let digest = std::fs::read_to_string(&digestfile)?.trim().to_string();
        Ok(format!(
            "{}@{digest}",
            dest.rsplit_once(':').map_or(dest, |(r, _)| r)
        ))
    }
    .await;
    storage.remove().await;
    result
}

/// Free bytes on the filesystem holding `path` (`df`).
pub async fn free_bytes(path: &Path) -> Option<u64> {
    let p = path.display().to_string();
    let out = run("df", &["-B1", "--output=avail", &p], &[]).await.ok()?;
    out.lines().nth(1)?.trim().parse().ok()
}

/// `key → value` describing the machine and the versions under test.
pub async fn machine(strata: &Path, builder_image: &str) -> Vec<(String, String)> {
    let mem = memory();
    let cpu = cpu_model();
    let (rev, dirty) = checkout().await;
    let kube = kubernetes_version().await;
    let cgroup = if Path::new("/sys/fs/cgroup/memory/kubepods").is_dir() {
        "v1 (hybrid)"
    } else {
        "v2"
    };
    let strata_s = strata.display().to_string();
    vec![
        ("nproc".into(), text(run("nproc", &[], &[]).await)),
        ("CPU".into(), cpu),
        ("memory".into(), mem),
        ("kernel".into(), text(run("uname", &["-r"], &[]).await)),
        ("cgroup".into(), cgroup.into()),
        (
            "free disk at start".into(),
            free_bytes(work_dir().parent().unwrap_or(Path::new("/")))
                .await
                .map(|b| format!("{:.1} GiB", b as f64 / 1024f64.powi(3)))
                .unwrap_or_default(),
        ),
        ("Kubernetes (API server)".into(), kube),
        (
            "buildah on the host".into(),
            text(run("buildah", &["--version"], &[]).await),
        ),
        (
            "buildah in the builder image".into(),
            "buildah 1.39 (Debian trixie, builder-image/local/packages.txt)".into(),
        ),
        (
            "strata".into(),
            strata_version(&strata_s, &rev, dirty).await,
        ),
        ("strata binary".into(), strata_s),
        ("builder image".into(), builder_image.to_string()),
    ]
}

/// A command's trimmed output, or why there is none.
fn text(r: Result<String>) -> String {
    r.map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// MemTotal of /proc/meminfo in GiB.
fn memory() -> String {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default()
}

/// The first CPU's model name in /proc/cpuinfo.
fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default()
}

/// This checkout's commit and how many tracked files differ from it.
async fn checkout() -> (String, usize) {
    let root = strata_e2e::repo_root().display().to_string();
    let rev = text(
        run(
            "git",
            &["-C", &root, "rev-parse", "--short=12", "HEAD"],
            &[],
        )
        .await,
    );
    let dirty = run(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
        &[],
    )
    .await
    .map(|s| s.lines().count())
    .unwrap_or(0);
    (rev, dirty)
}

/// The API server's version (`kubectl version`).
async fn kubernetes_version() -> String {
    run("kubectl", &["version", "-o", "json"], &[])
        .await
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["serverVersion"]["gitVersion"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

/// `strata --version`, the build profile read from the binary's path, and the checkout's commit
/// (`rev`, with `dirty` changed files).
async fn strata_version(strata: &str, rev: &str, dirty: usize) -> String {
    let profile = if strata.contains("/release/") {
        "release"
    } else if strata.contains("/debug/") {
        "debug"
    } else {
        "unknown profile"
    };
    format!(
        "{} ({profile} build) — git {rev}{}",
        text(run(strata, &["--version"], &[]).await),
        if dirty > 0 {
            format!(" + {dirty} uncommitted changed files in the checkout")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_layers_follow_the_parent_chain() {
        let layers = serde_json::json!([
            {"id": "c", "parent": "b", "diff-size": 30},
            {"id": "a", "diff-size": 10},
            {"id": "b", "parent": "a", "diff-size": 20},
        ]);
        let l = StoredLayers::from_json(&layers);
        assert_eq!(l.sizes, vec![10, 20, 30]);
        assert_eq!(l.total(), 60);
        // vfs: 10, then 10+20, then 10+20+30.
        assert_eq!(l.vfs_bytes(), 10 + 30 + 60);
        assert_eq!(StoredLayers::from_json(&serde_json::json!({})).total(), 0);
    }
}
