//! The controller core at scale with the no-op builder.

use anyhow::Result;

use super::{Bench, State};
use crate::report::{self, Report};
use crate::{host, objects, scale};

impl Bench<'_> {
    /// The no-op builder image made from the builder image, then scale/'s run.
    pub async fn scale(&self, state: &mut State, report: &mut Report) -> Result<()> {
        objects::cleanup(&self.client).await?;
        if state.builder_image.is_empty() {
            state.builder_image = self.deploy(Vec::new()).await?;
        }
        let bench_bin = std::env::current_exe()?;
        let noop = host::noop_builder_image(
            &state.builder_image,
            &bench_bin,
            &format!("{}/bench/noop-builder:latest", self.cluster.registry),
        )
        .await?;
        let result = scale::run(scale::ScaleArgs {
            cluster: self.cluster,
            client: &self.client,
            strata_bin: &self.strata_bin,
            noop_builder: &noop,
            count: self.args.scale,
            batch: self.args.batch,
            controller_args: self.args.scale_controller_arg.clone(),
        })
        .await?;
        eprintln!(
            "bench scale: {} pinned in {:.0} s; reconcile p99 {:?} s; RSS {:.0} MiB; resync: {} requests beyond lists, settled {:.2} s after the takeover",
            result.configs,
            result.all_pinned_seconds,
            result.build_phase_p99,
            result.rss_after_builds_mib,
            result.audit.beyond_lists_and_leases(),
            result.settle_seconds
        );
        state.scale = Some(result);
        report::scale::rows(state, report);
        Ok(())
    }
}
