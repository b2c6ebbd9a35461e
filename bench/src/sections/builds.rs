//! Cold builds through Strata beside the same build on the host, rebuilds, a second pool.

use anyhow::{Context, Result};
use strata_e2e::deployed::create_pool;

use super::{Bench, State, Upgrade, nonce};
use crate::build::{self, Base, Runner, StrataRun};
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
        let mut last = None;
        for i in 1..=self.args.runs {
            last = Some(self.cold_host_rebuild(i, &base, &mut runner, state).await?);
        }
        if let Some((push, fragment)) = last {
            self.upgrade(&base, &push, &fragment, state).await?;
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
    /// rebuild through Strata changing the last step. Returns the push spec and the rebuild's
    /// fragment.
    async fn cold_host_rebuild(
        &self,
        i: usize,
        base: &Base,
        runner: &mut Runner<'_>,
        state: &mut State,
    ) -> Result<(String, String)> {
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
        let fragment = self.fragment(&format!("strata bench rebuild {n}"))?;
        let rebuild = runner.run("bench-build", &push, &fragment).await?;
        let pushed = self.push_bytes(&push, &cold, &rebuild).await?;
        eprintln!(
            "bench: run {i}: Strata rebuild (last step changed) apply→pinned {:.1} s, uploaded {} \
             for {} of new layers and config",
            rebuild.apply_to_pinned,
            bytes(pushed.0 as f64),
            bytes(pushed.1 as f64)
        );
        state.rebuild_push.push(pushed);
        state.cold.push(cold);
        state.host.push(h);
        state.rebuild.push(rebuild);
        Ok((push, fragment))
    }
}

impl Bench<'_> {
    /// What the rebuild's pod uploaded against what it had to: (uploaded, new layers + config),
    /// compressed bytes, from the two images' manifests in the registry.
    async fn push_bytes(
        &self,
        push_spec: &str,
        before: &StrataRun,
        after: &StrataRun,
    ) -> Result<(u64, u64)> {
        let repo = push_spec.rsplit_once(':').map_or(push_spec, |(r, _)| r);
        let reg = &self.cluster.registry;
        let old = build::base(&format!("{repo}@{}", before.digest), reg).await?;
        let new = build::base(&format!("{repo}@{}", after.digest), reg).await?;
        let mut uploaded = 0;
        for digest in &after.uploaded {
            uploaded += new.blob_bytes(digest).with_context(|| {
                format!("the rebuild uploaded {digest}, which its image does not name")
            })?;
        }
        let needed = new.new_layer_bytes(&old) + new.config_bytes;
        // The count's positive control: a rebuild changing a step has a new layer to send.
        anyhow::ensure!(
            uploaded > 0 && needed > 0,
            "the rebuild uploaded {uploaded} B for {needed} B of new layers and config by the \
             registry's log: the upload count would read 0 without measuring anything"
        );
        Ok((uploaded, needed))
    }

    /// The release upgrade: the config last built is rebuilt, its fragment unchanged, on the
    /// next release's base (`os-image-next.sh`: some of its layers changed).
    async fn upgrade(
        &self,
        base: &Base,
        push: &str,
        fragment: &str,
        state: &mut State,
    ) -> Result<()> {
        let next = build::base(&self.cluster.os_image_next, &self.cluster.registry).await?;
        let changed_bytes = next.new_layer_bytes(base);
        let changed_layers = next
            .layers
            .iter()
            .filter(|(d, _)| !base.layers.iter().any(|(b, _)| b == d))
            .count();
        anyhow::ensure!(
            changed_bytes > 0,
            "the next release's base {} has no layer the base lacks",
            next.image
        );
        let mut runner = self.runner(&next);
        let run = runner.run("bench-build", push, fragment).await?;
        eprintln!(
            "bench: release upgrade ({changed_layers} of {} base layers changed, {}): \
             apply→pinned {:.1} s, {} of the next base pulled",
            next.layers.len(),
            bytes(changed_bytes as f64),
            run.apply_to_pinned,
            bytes(run.base_bytes_pulled as f64)
        );
        state.upgrade = Some(Upgrade {
            pulled: run.base_bytes_pulled,
            run,
            changed_layers,
            changed_bytes,
        });
        Ok(())
    }
}
