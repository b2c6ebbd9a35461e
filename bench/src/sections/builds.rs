//! Cold builds through Strata beside the same build on the host, rebuilds, a second pool.

use anyhow::Result;
use strata_e2e::deployed::create_pool;

use super::{Bench, State, nonce};
use crate::build::{Base, Runner};
use crate::report::{self, Report, bytes};
use crate::{claim, host, objects};

impl Bench<'_> {
    /// Cold builds through Strata beside the same build on the host, rebuilds changing the
    /// last step, a second pool on the same base — the controller's default settings.
    pub async fn builds(&self, state: &mut State, report: &mut Report) -> Result<()> {
        objects::cleanup(&self.client).await?;
        state.builder_image = self.deploy(Vec::new()).await?;
        objects::push_secret(&self.client).await?;
        for pool in ["bench-build", "bench-second"] {
            create_pool(&self.client, pool).await?;
        }
        let base = self.base(state).await?;
        let mut runner = self.runner(&base);
        for i in 1..=self.args.runs {
            self.cold_host_rebuild(i, &base, &mut runner, state).await?;
        }
        let second = runner
            .run(
                "bench-second",
                &format!("{}/bench/second:latest", self.cluster.registry),
                &self.fragment(&format!("strata bench second pool {}", nonce()))?,
            )
            .await?;
        eprintln!(
            "bench: second pool on the same base: {} of the base's layers pulled again",
            bytes(second.base_bytes_pulled as f64)
        );
        state.second = Some(second);
        report::builds::rows(state, report);
        Ok(())
    }

    /// Run `i`: a cold build through Strata, the same Containerfile built on the host, a
    /// rebuild through Strata changing the last step.
    async fn cold_host_rebuild(
        &self,
        i: usize,
        base: &Base,
        runner: &mut Runner<'_>,
        state: &mut State,
    ) -> Result<()> {
        let reg = &self.cluster.registry;
        // Cold: nothing cached. Strata's own claim (the default where the cluster has a
        // default StorageClass, as this one has) is removed; the build makes it again.
        claim::remove_own(&self.client).await?;
        let n = nonce();
        let push = format!("{reg}/bench/cold-{n}:latest");
        let cold_last = format!("strata bench cold {n}");
        let cold = runner
            .run("bench-build", &push, &self.fragment(&cold_last)?)
            .await?;
        eprintln!(
            "bench: run {i}: Strata cold apply→pinned {:.1} s (phases {:?}), peak disk {}, image {}",
            cold.apply_to_pinned,
            cold.phases,
            bytes(cold.peak_disk_bytes as f64),
            bytes(cold.image_size_bytes as f64)
        );
        // The positive control of the second pool's count: on an empty claim the same counter
        // must see the base pulled.
        anyhow::ensure!(
            cold.base_bytes_pulled > 0,
            "the cold build, on an empty claim, pulled no byte of the base by the registry's log: \
             the second pool's base bytes pulled would read 0 without measuring anything"
        );
        if state.builder_agent.is_none() {
            state.builder_agent = cold.agent.clone();
        }
        let host_containerfile = cold
            .containerfile
            .replace(&cold_last, &format!("strata bench host {n}"));
        let h = host::overlay_build(
            &host_containerfile,
            &base.image,
            &format!("{reg}/bench/host-{n}:latest"),
        )
        .await?;
        eprintln!(
            "bench: run {i}: host pull {:.1} s + bud {:.1} s + push {:.1} s = {:.1} s, peak disk {}",
            h.pull_seconds,
            h.bud_seconds,
            h.push_seconds,
            h.total(),
            bytes(h.peak_disk_bytes as f64)
        );
        let rebuild = runner
            .run(
                "bench-build",
                &push,
                &self.fragment(&format!("strata bench rebuild {n}"))?,
            )
            .await?;
        eprintln!(
            "bench: run {i}: Strata rebuild (last step changed) apply→pinned {:.1} s",
            rebuild.apply_to_pinned
        );
        state.cold.push(cold);
        state.host.push(h);
        state.rebuild.push(rebuild);
        Ok(())
    }
}
