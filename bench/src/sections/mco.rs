//! The MCO's way, on the Containerfile Strata renders for a rebuild, when the node has the disk.

use anyhow::Result;
use strata_e2e::measure::registry_log::AccessLog;

use super::{Bench, State, nonce};
use crate::build::Base;
use crate::mco_way::{self, GIB};
use crate::report::{self, Report, bytes};
use crate::{host, objects};

impl Bench<'_> {
    /// The MCO's way, on the Containerfile Strata renders for a rebuild.
    pub async fn mco(&self, state: &mut State, report: &mut Report) -> Result<()> {
        if state.builder_image.is_empty() {
            objects::cleanup(&self.client).await?;
            state.builder_image = self.deploy(Vec::new()).await?;
        }
        let base = self.base(state).await?;
        let min_free = (self.args.min_free_gib * GIB) as u64;
        if let Some(why) = self.no_room_for_vfs(state, min_free).await {
            eprintln!("bench: MCO's way {why}");
            state.mco_skipped = Some(why);
            return Ok(());
        }
        let mut log = AccessLog::of(self.cluster);
        for i in 1..=self.args.mco_runs {
            let n = nonce();
            let containerfile = self
                .render(
                    "bench-build",
                    &self.fragment(&format!("strata bench mco {n}"))?,
                    &base,
                )
                .await?;
            let run = mco_way::run(mco_way::McoArgs {
                cluster: self.cluster,
                client: &self.client,
                builder_image: &state.builder_image,
                base: &base,
                containerfile: &containerfile,
                image: &format!("{}/bench/mco-{n}:latest", self.cluster.registry),
                min_free_bytes: min_free,
                log: &mut log,
            })
            .await?;
            eprintln!(
                "bench: MCO's way {i}: {:.1} s (bud {:.1} s, push {:.1} s), peak disk {}{}",
                run.create_to_done,
                run.bud_seconds,
                run.push_seconds,
                bytes(run.peak_disk_bytes as f64),
                run.aborted
                    .as_deref()
                    .map(|a| format!(" — {a}"))
                    .unwrap_or_default()
            );
            let aborted = run.aborted.is_some();
            state.mco.push(run);
            if aborted {
                break;
            }
        }
        report::mco::rows(state, report);
        Ok(())
    }

    /// Why the MCO's way is not run, when the node lacks the disk a vfs build of the base needs
    /// on top of the `min_free` guard.
    async fn no_room_for_vfs(&self, state: &State, min_free: u64) -> Option<String> {
        let free = host::free_bytes(&self.cluster.dir).await.unwrap_or(0);
        let need = state.vfs_estimate.unwrap_or(0) + min_free;
        (free < need).then(|| {
            format!(
                "not run: the node has {:.1} GiB free; a vfs build of this base needs about {:.1} GiB \
                 (every layer a full copy of the tree below it) plus the {:.1} GiB guard",
                free as f64 / GIB,
                state.vfs_estimate.unwrap_or(0) as f64 / GIB,
                self.args.min_free_gib
            )
        })
    }

    /// `strata render` of a bench MachineOSConfig on the base.
    async fn render(&self, name: &str, fragment: &str, base: &Base) -> Result<String> {
        let config = objects::config(name, "example.invalid/bench:latest", &base.image, fragment)?;
        let dir = host::work_dir();
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(&config)?)?;
        host::run(
            &self.strata_bin.display().to_string(),
            &[
                "render",
                "-f",
                &file.display().to_string(),
                "--base-image",
                &base.image,
            ],
            &[],
        )
        .await
    }
}
