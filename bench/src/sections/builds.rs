//! Cold builds through Strata beside the same build on the host, rebuilds, a second pool.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kube::Api;
use strata_crds::MachineOSConfig;
use strata_e2e::deployed::{apply_config, create_pool};

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
        for pool in ["bench-build", "bench-second", "bench-third", "bench-fourth"] {
            create_pool(&self.client, pool).await?;
        }
        let base = self.base(state).await?;
        let mut runner = self.runner(&base);
        let image_buildah = host::Buildah::image(self.cluster, &state.builder_image).await?;
        let mut last = None;
        for i in 1..=self.args.runs {
            last = Some(
                self.cold_host_rebuild(i, &base, &image_buildah, &mut runner, state)
                    .await?,
            );
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
        self.concurrent_pools(&base, &mut runner, state).await?;
        report::builds::rows(state, report);
        Ok(())
    }

    /// Run `i`: a cold build through Strata, the same Containerfile built on the host (by
    /// `image_buildah`, then the host's own), a rebuild through Strata changing the last step.
    /// Returns the push spec and the rebuild's fragment.
    async fn cold_host_rebuild(
        &self,
        i: usize,
        base: &Base,
        image_buildah: &host::Buildah,
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
        // The same build on the host: by the builder image's buildah (the graded comparison, the
        // same version as in the pod), then by the host's own.
        for (which, buildah) in [
            ("image", image_buildah.clone()),
            ("own", host::Buildah::Host),
        ] {
            let h = host::overlay_build(
                &cold
                    .containerfile
                    .replace(&cold_last, &format!("strata bench host {which} {n}")),
                &base.image,
                &format!("{reg}/bench/host-{which}-{n}:latest"),
                buildah,
            )
            .await?;
            eprintln!(
                "bench: run {i}: host ({which} buildah) pull {:.1} s + bud {:.1} s + push {:.1} s \
                 = {:.1} s, peak disk {}",
                h.pull_seconds,
                h.bud_seconds,
                h.push_seconds,
                h.total(),
                bytes(h.peak_disk_bytes as f64)
            );
            if which == "image" {
                state.host.push(h);
            } else {
                state.host_own.push(h);
            }
        }
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
        let changed_layers = next.new_layers(base).len();
        anyhow::ensure!(
            changed_bytes > 0,
            "the next release's base {} has no layer the base lacks",
            next.image
        );
        let mut runner = self.runner(&next);
        let run = runner.run("bench-build", push, fragment).await?;
        // The changed layers are not in the config's store: a rebuild that pulled none of the
        // next base was not counted (a zero here would meet the goal for nothing).
        anyhow::ensure!(
            run.base_bytes_pulled > 0,
            "the release upgrade pulled no byte of the next base by the registry's log"
        );
        eprintln!(
            "bench: release upgrade ({changed_layers} of {} base layers changed, {}): \
             apply→pinned {:.1} s, {} of the next base pulled",
            next.layers.len(),
            bytes(changed_bytes as f64),
            run.apply_to_pinned,
            bytes(run.base_bytes_pulled as f64)
        );
        state.upgrade = Some(Upgrade {
            run,
            changed_layers,
            changed_bytes,
        });
        Ok(())
    }
}

/// The pools rebuilt at once.
const CONCURRENT: [&str; 4] = ["bench-build", "bench-second", "bench-third", "bench-fourth"];

impl Bench<'_> {
    /// Four pools, each built once, rebuilt at once (each its last step changed): apply → the
    /// last of them pinned, against one pool's rebuild.
    async fn concurrent_pools(
        &self,
        base: &Base,
        runner: &mut Runner<'_>,
        state: &mut State,
    ) -> Result<()> {
        let reg = &self.cluster.registry;
        let push = |config: &str| format!("{reg}/bench/{config}:latest");
        for config in &CONCURRENT[2..] {
            let fragment = self.fragment(&format!("strata bench {config} {}", nonce()))?;
            runner.run(config, &push(config), &fragment).await?;
        }
        let api: Api<MachineOSConfig> = Api::all(self.client.clone());
        let mut before = Vec::new();
        for config in CONCURRENT {
            before.push(current_image(&api, config).await?);
        }
        let n = nonce();
        let started = Instant::now();
        for config in CONCURRENT {
            let fragment = self.fragment(&format!("strata bench at once {n}"))?;
            apply_config(
                &self.client,
                &objects::config(config, &push(config), &base.image, &fragment)?,
            )
            .await?;
        }
        let deadline = started + Duration::from_secs(600);
        let mut pinned = vec![None; CONCURRENT.len()];
        while pinned.iter().any(Option::is_none) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "4 pools rebuilt at once: not all pinned within 600 s"
            );
            for (i, config) in CONCURRENT.iter().enumerate() {
                if pinned[i].is_none() && current_image(&api, config).await? != before[i] {
                    pinned[i] = Some(started.elapsed().as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let each: Vec<f64> = pinned.into_iter().flatten().collect();
        eprintln!("bench: 4 pools rebuilt at once: each pinned after {each:?} s");
        state.concurrent = each;
        Ok(())
    }
}

/// The image a MachineOSConfig's pool runs (`status.currentImagePullSpec`).
async fn current_image(api: &Api<MachineOSConfig>, config: &str) -> Result<Option<String>> {
    Ok(api
        .get(config)
        .await
        .with_context(|| format!("reading MachineOSConfig {config}"))?
        .status
        .and_then(|s| s.current_image_pull_spec))
}
