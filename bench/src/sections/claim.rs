//! Builds with the controller's --cache-claim: the image storage kept from build to build.

use anyhow::Result;
use strata_e2e::deployed::create_pool;
use strata_e2e::measure::pod_usage::disk_bytes;

use super::{Bench, State, nonce};
use crate::build::{Runner, StrataRun};
use crate::report::{self, Report, bytes};
use crate::{claim, objects};

impl Bench<'_> {
    /// A first build on the empty storage, rebuilds, a second pool's build; the storage's size
    /// after each.
    pub async fn claim(&self, state: &mut State, report: &mut Report) -> Result<()> {
        objects::cleanup(&self.client).await?;
        claim::create(&self.client).await?;
        state.builder_image = self
            .deploy(vec![format!("--cache-claim={}", claim::NAME)])
            .await?;
        objects::push_secret(&self.client).await?;
        for pool in ["bench-claim-a", "bench-claim-b"] {
            create_pool(&self.client, pool).await?;
        }
        let base = self.base(state).await?;
        let mut runner = self.runner(&base);
        let reg = &self.cluster.registry;
        let push = format!("{reg}/bench/claim-a:latest");
        let (first, after_first) = self
            .on_claim(&mut runner, "bench-claim-a", &push, "strata bench claim")
            .await?;
        eprintln!(
            "bench: claim, first build (empty storage): {:.1} s, {} of the base pulled, storage {}",
            first.apply_to_pinned,
            bytes(first.base_bytes_pulled as f64),
            bytes(after_first as f64)
        );
        state
            .claim_growth
            .push(("after the first build".into(), after_first));
        state.claim_first = Some(first);
        for i in 1..=self.args.claim_runs {
            let (run, size) = self
                .on_claim(
                    &mut runner,
                    "bench-claim-a",
                    &push,
                    "strata bench claim rebuild",
                )
                .await?;
            eprintln!(
                "bench: claim rebuild {i}: {:.1} s (phases {:?}), {} of the base pulled, storage {}",
                run.apply_to_pinned,
                run.phases,
                bytes(run.base_bytes_pulled as f64),
                bytes(size as f64)
            );
            state
                .claim_growth
                .push((format!("after rebuild {i}"), size));
            state.claim_rebuild.push(run);
        }
        let (second, size) = self
            .on_claim(
                &mut runner,
                "bench-claim-b",
                &format!("{reg}/bench/claim-b:latest"),
                "strata bench claim second pool",
            )
            .await?;
        eprintln!(
            "bench: claim, second pool: {:.1} s, {} of the base pulled, storage {}",
            second.apply_to_pinned,
            bytes(second.base_bytes_pulled as f64),
            bytes(size as f64)
        );
        state
            .claim_growth
            .push(("after the second pool's build".into(), size));
        state.claim_second = Some(second);
        self.emptydir(state).await?;
        report::claim::rows(state, report);
        Ok(())
    }

    /// Without a cache claim (`--cache-claim=off`, as on a cluster with no StorageClass): a build,
    /// then the measured rebuild, each on a fresh emptyDir that pulls the whole base.
    async fn emptydir(&self, state: &mut State) -> Result<()> {
        state.builder_image = self.deploy(vec!["--cache-claim=off".into()]).await?;
        create_pool(&self.client, "bench-emptydir").await?;
        let base = self.base(state).await?;
        let mut runner = self.runner(&base);
        let push = format!("{}/bench/emptydir:latest", self.cluster.registry);
        for last in ["strata bench emptydir", "strata bench emptydir rebuild"] {
            let fragment = self.fragment(&format!("{last} {}", nonce()))?;
            let run = runner.run("bench-emptydir", &push, &fragment).await?;
            eprintln!(
                "bench: no cache claim, {last}: {:.1} s, {} of the base pulled",
                run.apply_to_pinned,
                bytes(run.base_bytes_pulled as f64)
            );
            state.emptydir_rebuild = Some(run);
        }
        Ok(())
    }

    /// A build of `config` whose last step is `last` and a fresh nonce; then the claim's storage
    /// size.
    async fn on_claim(
        &self,
        runner: &mut Runner<'_>,
        config: &str,
        push: &str,
        last: &str,
    ) -> Result<(StrataRun, u64)> {
        let run = runner
            .run(
                config,
                push,
                &self.fragment(&format!("{last} {}", nonce()))?,
            )
            .await?;
        Ok((run, disk_bytes(&[claim::dir()]).await))
    }
}
