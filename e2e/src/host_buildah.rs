//! buildah on the host, on a storage of its own under the cluster's directory: images made from
//! ones in the local registry (plain HTTP) and pushed back there, and the configs of pushed
//! images, for tests that need an image the builds did not make.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// A host buildah storage; removed when dropped.
pub struct HostBuildah {
    dir: PathBuf,
}

impl HostBuildah {
    /// A storage in `dir` (made if missing).
    pub fn new(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// `buildah ARGS` on this storage; its trimmed standard output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("buildah")
            .args(["--storage-driver=vfs", "--root"])
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(args)
            .output()
            .context("running buildah")?;
        ensure!(
            out.status.success(),
            "buildah {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Image `from` (a registry reference) with each `(path in the image, content)` of `files`
    /// added as one layer, its history entry saying `created_by` when given; pushed as `repo` and
    /// returned digest-pinned (`repo@sha256:…`).
    pub fn derive(
        &self,
        from: &str,
        files: &[(&str, &str)],
        created_by: Option<&str>,
        repo: &str,
    ) -> Result<String> {
        let container = self.run(&[
            "from",
            "--tls-verify=false",
            "--quiet",
            &format!("docker://{from}"),
        ])?;
        for (i, (path, content)) in files.iter().enumerate() {
            let source = self.dir.join(format!("file-{i}"));
            std::fs::write(&source, content)?;
            self.run(&["copy", &container, &source.display().to_string(), path])?;
        }
        if let Some(created_by) = created_by {
            self.run(&["config", "--created-by", created_by, &container])?;
        }
        let local = format!("localhost/e2e-derived-{}:latest", std::process::id());
        self.run(&["commit", "--quiet", "--rm", &container, &local])?;
        let digest_file = self.dir.join("digest");
        self.run(&[
            "push",
            "--tls-verify=false",
            "--digestfile",
            &digest_file.display().to_string(),
            &local,
            &format!("docker://{repo}:latest"),
        ])?;
        self.run(&["rmi", &local])?;
        let digest = std::fs::read_to_string(&digest_file)?;
        Ok(format!("{repo}@{}", digest.trim()))
    }

    /// The OCI configuration of registry image `image` (pulled into this storage): `history`,
    /// `rootfs.diff_ids`, `config.Labels` …
    pub fn image_config(&self, image: &str) -> Result<Value> {
        self.run(&[
            "pull",
            "--tls-verify=false",
            "--quiet",
            &format!("docker://{image}"),
        ])?;
        let inspect: Value =
            serde_json::from_str(&self.run(&["inspect", "--type", "image", image])?)
                .with_context(|| format!("buildah inspect {image}"))?;
        Ok(inspect["OCIv1"].clone())
    }
}

impl Drop for HostBuildah {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The layers (diff IDs) of an image configuration from [`HostBuildah::image_config`].
pub fn diff_ids(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect()
}

/// The `created_by` of each history entry of an image configuration.
pub fn created_by(config: &Value) -> Vec<String> {
    config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["created_by"].as_str().unwrap_or_default().to_string())
        .collect()
}
