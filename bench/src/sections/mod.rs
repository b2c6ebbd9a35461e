//! The bench's sections (builds, the MCO's way, the cache claim, scale, boot, machines): each sets up the
//! cluster, measures through build.rs, mco_way.rs and scale/, keeps what it found in [`State`]
//! and adds its figures to the report (report/).

mod boot;
mod builds;
mod claim;
mod machines;
mod mco;
mod scale;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use strata_e2e::Cluster;
use strata_e2e::measure::deploy::{DeployOptions, deploy, wait_for_leader};
use strata_e2e::measure::registry_log::AccessLog;

use crate::build::{self, Base, Runner, StrataRun};
use crate::report::bytes;
use crate::{RunArgs, host, mco_way, objects};

/// What sections hand to each other and to the conclusions.
#[derive(Default)]
pub struct State {
    pub builder_image: String,
    pub builder_agent: Option<String>,
    pub base: Option<Base>,
    pub base_uncompressed: Option<(u64, usize)>,
    pub vfs_estimate: Option<u64>,
    pub cold: Vec<StrataRun>,
    /// The cold build on the host by the builder image's buildah (the pod's version).
    pub host: Vec<host::HostBuild>,
    /// The same by the host's own buildah.
    pub host_own: Vec<host::HostBuild>,
    pub rebuild: Vec<StrataRun>,
    /// Per rebuild: bytes its pod uploaded, and the compressed bytes of its new layers and config.
    pub rebuild_push: Vec<(u64, u64)>,
    /// Four pools rebuilt at once: seconds from the applies to each one's pin.
    pub concurrent: Vec<f64>,
    /// The release upgrade: the rebuild on the next base.
    pub upgrade: Option<Upgrade>,
    pub second: Option<StrataRun>,
    pub mco: Vec<mco_way::McoRun>,
    pub mco_skipped: Option<String>,
    pub claim_first: Option<StrataRun>,
    pub claim_rebuild: Vec<StrataRun>,
    pub claim_second: Option<StrataRun>,
    pub claim_growth: Vec<(String, u64)>,
    /// A rebuild without a cache claim (`--cache-claim=off`).
    pub emptydir_rebuild: Option<StrataRun>,
    pub scale: Option<crate::scale::ScaleResult>,
    pub section_seconds: Vec<(String, f64)>,
}

/// A rebuild onto the next release's base (some of its layers changed), fragments unchanged.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub run: StrataRun,
    /// Layers of the next base that the previous one does not have, and their compressed bytes.
    pub changed_layers: usize,
    pub changed_bytes: u64,
}

/// The cluster, the binary under test and the run's settings, shared by the sections.
pub struct Bench<'a> {
    pub cluster: &'a Cluster,
    pub client: kube::Client,
    pub strata_bin: PathBuf,
    pub args: &'a RunArgs,
}

/// Holds the cluster lock while alive (dropping the file releases it).
pub struct Lock(#[allow(dead_code)] Option<std::fs::File>);

/// A number no earlier run used, for image tags and the last step's text.
fn nonce() -> String {
    format!(
        "{}",
        jiff::Timestamp::now()
            .as_millisecond()
            .rem_euclid(10_000_000_000)
    )
}

impl Bench<'_> {
    pub async fn lock(&self) -> Result<Lock> {
        if self.args.no_lock {
            return Ok(Lock(None));
        }
        let path = self.args.lock_file.clone();
        eprintln!("bench: waiting for the cluster lock {}", path.display());
        let waited = Instant::now();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await??;
        eprintln!(
            "bench: got the cluster lock after {:.0} s",
            waited.elapsed().as_secs_f64()
        );
        Ok(Lock(Some(file)))
    }

    fn deploy_options(&self, controller_args: Vec<String>) -> DeployOptions {
        DeployOptions {
            strata_bin: Some(self.strata_bin.clone()),
            controller_args,
            ..DeployOptions::default()
        }
    }

    /// The controller deployed with `controller_args`, leading; returns the builder image.
    async fn deploy(&self, controller_args: Vec<String>) -> Result<String> {
        let builder = deploy(self.cluster, &self.deploy_options(controller_args)).await?;
        wait_for_leader(&self.client, None, Duration::from_secs(180)).await?;
        Ok(builder)
    }

    /// Removes the bench's objects and redeploys the controller with its defaults.
    pub async fn reset(&self) -> Result<()> {
        objects::cleanup(&self.client).await?;
        deploy(self.cluster, &self.deploy_options(Vec::new())).await?;
        let _ = tokio::fs::remove_dir_all(host::work_dir()).await;
        Ok(())
    }

    fn fragment(&self, last: &str) -> Result<String> {
        objects::fragment(&self.cluster.package_repo, last)
    }

    async fn base(&self, state: &mut State) -> Result<Base> {
        if let Some(b) = &state.base {
            return Ok(b.clone());
        }
        let base = build::base(&self.cluster.os_image, &self.cluster.registry).await?;
        eprintln!(
            "bench: the base {} has {} layers, {} compressed; pulling it on the host once \
             (its uncompressed size; the registry's page cache warmed)",
            base.image,
            base.layers.len(),
            bytes(base.compressed_bytes() as f64)
        );
        let pulled = host::pull_only(&base.image).await?;
        state.base_uncompressed = pulled.as_ref().map(|p| (p.total, p.layers));
        state.vfs_estimate = pulled.map(|p| p.vfs_estimate);
        state.base = Some(base.clone());
        Ok(base)
    }

    fn runner<'b>(&'b self, base: &'b Base) -> Runner<'b> {
        Runner {
            cluster: self.cluster,
            client: self.client.clone(),
            base,
            log: AccessLog::of(self.cluster),
        }
    }
}
