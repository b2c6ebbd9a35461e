//! What runs on the host: buildah (the limit the cluster path is compared to), `strata build`
//! (the registry cache), the images the scale run needs, and the machine's description.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

/// Where the bench keeps its buildah storage roots (one fresh root per build, like a new pod).
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

/// A fresh buildah storage root (vfs), removed on [`Storage::remove`].
pub struct Storage {
    pub root: PathBuf,
    runroot: PathBuf,
}

impl Storage {
    pub fn fresh(name: &str) -> Result<Self> {
        let base = work_dir().join(name);
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let runroot = base.join("run");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&runroot)?;
        Ok(Self { root, runroot })
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--storage-driver=vfs".into(),
            format!("--root={}", self.root.display()),
            format!("--runroot={}", self.runroot.display()),
        ]
    }

    /// `buildah <storage flags> <args>`.
    pub async fn buildah(&self, args: &[&str]) -> Result<String> {
        let flags = self.flags();
        let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run("buildah", &all, &[("BUILDAH_ISOLATION", "chroot")]).await
    }

    /// Bytes under the storage root (`du -sb`).
    pub async fn bytes(&self) -> Result<u64> {
        du_bytes(&self.root).await
    }

    pub async fn remove(self) {
        // vfs layers may hold read-only directories; buildah cleans its own storage best.
        let _ = self.buildah(&["rmi", "--all", "--force"]).await;
        if let Some(parent) = self.root.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

pub async fn du_bytes(path: &Path) -> Result<u64> {
    let out = run("du", &["-sb", &path.display().to_string()], &[]).await?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du printed no size")
}

/// One `buildah bud` + `buildah push` on the host, as the builder pod runs them (vfs, chroot
/// isolation, --layers, OCI format, fresh storage, digest file).
pub struct HostBuild {
    pub bud_seconds: f64,
    pub push_seconds: f64,
    pub storage_bytes: u64,
}

pub async fn buildah_build_and_push(
    name: &str,
    containerfile: &str,
    image: &str,
) -> Result<HostBuild> {
    let storage = Storage::fresh(name)?;
    let dir = storage.root.parent().context("storage dir")?.to_path_buf();
    let file = dir.join("Containerfile");
    let context = dir.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(&file, containerfile)?;
    let digestfile = dir.join("digest");
    let started = Instant::now();
    let file_s = file.display().to_string();
    let ctx_s = context.display().to_string();
    storage
        .buildah(&[
            "bud",
            "--isolation=chroot",
            "--layers",
            "--format=oci",
            "--tls-verify=false",
            "-f",
            &file_s,
            "-t",
            image,
            &ctx_s,
        ])
        .await?;
    let bud_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let digest_arg = format!("--digestfile={}", digestfile.display());
    let dest = format!("docker://{image}");
    storage
        .buildah(&["push", "--tls-verify=false", &digest_arg, image, &dest])
        .await?;
    let push_seconds = started.elapsed().as_secs_f64();
    let digest = std::fs::read_to_string(&digestfile)?;
    if !digest.trim().starts_with("sha256:") {
        bail!("buildah push wrote no digest for {image}");
    }
    let storage_bytes = storage.bytes().await?;
    storage.remove().await;
    Ok(HostBuild {
        bud_seconds,
        push_seconds,
        storage_bytes,
    })
}

/// `strata build` on the host with a fresh storage root (a new pod) and optionally the registry
/// cache; returns (seconds, digest).
pub async fn strata_build(
    strata: &str,
    name: &str,
    containerfile: &str,
    image: &str,
    registry: &str,
    registry_cache: Option<&str>,
) -> Result<(f64, String)> {
    let storage = Storage::fresh(name)?;
    let dir = storage.root.parent().context("storage dir")?.to_path_buf();
    let file = dir.join("Containerfile");
    std::fs::write(&file, containerfile)?;
    let log = dir.join("termination-log");
    let mut args = vec![
        "build".to_string(),
        format!("--containerfile={}", file.display()),
        format!("--image={image}"),
        format!("--insecure-registries={registry}"),
        format!("--cache-dir={}", storage.root.display()),
        format!("--termination-log={}", log.display()),
        // No auth files: the local registry needs none.
        format!("--base-authfile={}", dir.join("none").display()),
        format!("--push-authfile={}", dir.join("none").display()),
    ];
    if let Some(cache) = registry_cache {
        args.push(format!("--registry-cache={cache}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let result = run(strata, &args, &[]).await;
    let seconds = started.elapsed().as_secs_f64();
    let message = std::fs::read_to_string(&log).unwrap_or_default();
    storage.remove().await;
    result.with_context(|| format!("strata build: {message}"))?;
    let parsed: serde_json::Value = serde_json::from_str(message.trim())?;
    let digest = parsed["digest"]
        .as_str()
        .context("no digest in the termination message")?
        .to_string();
    Ok((seconds, digest))
}

/// Pushes a copy of `source` to `dest` and returns the pushed digest.
pub async fn copy_image(storage: &Storage, source: &str, dest: &str) -> Result<String> {
    storage
        .buildah(&["pull", "--tls-verify=false", "-q", source])
        .await?;
    push(storage, source, dest).await
}

async fn push(storage: &Storage, local: &str, dest: &str) -> Result<String> {
    let digestfile = storage.root.join("digest");
    let digest_arg = format!("--digestfile={}", digestfile.display());
    let dest_arg = format!("docker://{dest}");
    storage
        .buildah(&["push", "--tls-verify=false", &digest_arg, local, &dest_arg])
        .await?;
    Ok(std::fs::read_to_string(&digestfile)?.trim().to_string())
}

/// The no-op builder for the scale run: the OS base stand-in (busybox) with a `strata` script at
/// the builder's entrypoint that reports `digest` as built, in the builder contract's termination
/// message format, without building anything. Returns `repo@digest`.
pub async fn noop_builder_image(
    storage: &Storage,
    base: &str,
    digest: &str,
    dest: &str,
) -> Result<String> {
    let script = format!(
        "#!/bin/sh\n# strata-bench no-op builder: reports a prebuilt image as built (make bench, scale run).\n\
         echo \"strata build (bench no-op): $STRATA_IMAGE -> {digest}\"\n\
         printf '%s\\n' '{{\"digest\":\"{digest}\",\"sizeBytes\":0,\"buildSeconds\":0.0,\"pushSeconds\":0.0}}' > /dev/termination-log\n"
    );
    let dir = storage.root.parent().context("storage dir")?.to_path_buf();
    let path = dir.join("strata");
    std::fs::write(&path, script)?;
    let container = storage
        .buildah(&["from", "--tls-verify=false", "-q", base])
        .await?
        .trim()
        .to_string();
    let path_s = path.display().to_string();
    storage
        .buildah(&[
            "copy",
            "--chmod",
            "0755",
            &container,
            &path_s,
            "/usr/local/bin/strata",
        ])
        .await?;
    storage
        .buildah(&[
            "config",
            "--entrypoint",
            "[\"/usr/local/bin/strata\"]",
            "--cmd",
            "build",
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
    let pushed = push(storage, "localhost/strata-bench/noop-builder:latest", dest).await?;
    Ok(format!(
        "{}@{pushed}",
        dest.rsplit_once(':').map_or(dest, |(r, _)| r)
    ))
}

/// `key: value` lines describing the machine and the versions under test.
pub async fn machine(strata: &str, root: &Path) -> Vec<(String, String)> {
    let text = |r: Result<String>| {
        r.map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"))
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let root_s = root.display().to_string();
    let rev = text(
        run(
            "git",
            &["-C", &root_s, "rev-parse", "--short=12", "HEAD"],
            &[],
        )
        .await,
    );
    let dirty = run(
        "git",
        &[
            "-C",
            &root_s,
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
        &[],
    )
    .await
    .map(|s| {
        let files: Vec<&str> = s.lines().filter_map(|l| l.get(3..)).collect();
        if files.is_empty() {
            String::new()
        } else {
            format!(
                " + uncommitted changes in the checkout, built in: {}",
                files.join(", ")
            )
        }
    })
    .unwrap_or_default();
    let kube = run("kubectl", &["version", "-o", "json"], &[])
        .await
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["serverVersion"]["gitVersion"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into());
    vec![
        ("nproc".into(), text(run("nproc", &[], &[]).await)),
        ("CPU".into(), cpu),
        ("memory".into(), mem),
        ("kernel".into(), text(run("uname", &["-r"], &[]).await)),
        ("Kubernetes (API server)".into(), kube),
        (
            "buildah (host and builder image)".into(),
            text(run("buildah", &["--version"], &[]).await),
        ),
        (
            "strata".into(),
            format!(
                "{} — git {rev}{dirty}",
                text(run(strata, &["--version"], &[]).await)
            ),
        ),
        ("strata binary".into(), strata.to_string()),
    ]
}
