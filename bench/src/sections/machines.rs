//! The pool's machines (docs/machines.md): the local cluster's QEMU machines in a pool of their own
//! roll to what Strata builds. Apply → every machine running the image, and for each later update
//! the bytes each machine fetched against the compressed bytes of the layers that changed: a
//! fragment edit (one more package) and a release whose base changed in five of its 48 layers
//! (`e2e/scripts/os-image-next.sh`). The same watch as `e2e/tests/rollout.rs`
//! (`strata_e2e::machine_roll`), without the test's reset and checks inside the machines.

use std::time::Duration;

use anyhow::{Result, ensure};
use strata_e2e::deployed::{apply_config, machine_os_config, set_release_base, with_release_base};
use strata_e2e::machine_roll::{MachinePool, Roll, examples_fragment};
use strata_e2e::machines;

use super::{Bench, State};
use crate::objects;
use crate::report::{Report, bytes};

const POOL: &str = "bench-machines";
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// Every machine at once (maxUnavailable = their number), minutes each under emulation.
const ROLL_TIMEOUT: Duration = Duration::from_secs(1800);

impl Bench<'_> {
    pub async fn machines(&self, _state: &mut State, report: &mut Report) -> Result<()> {
        let machines = machines::of(self.cluster)?;
        ensure!(
            !machines.is_empty(),
            "the cluster has no machines (it was started with STRATA_MACHINES=0)"
        );
        objects::cleanup(&self.client).await?;
        self.deploy(Vec::new()).await?;
        objects::push_secret(&self.client).await?;
        let pool = MachinePool {
            name: POOL,
            machines: &machines,
        };
        let client = &self.client;
        let result = with_release_base(client, &self.cluster.os_image, || async {
            let rolls = self.machine_rolls(&pool).await;
            pool.remove(client).await;
            rolls
        })
        .await;
        let [applied, edited, upgraded] = result?;
        figures(report, &applied, &edited, &upgraded);
        Ok(())
    }

    /// The pool made on the release base, then three rolls: the first apply, a fragment edit, the
    /// next release.
    async fn machine_rolls(&self, pool: &MachinePool<'_>) -> Result<[Roll; 3]> {
        let (cluster, client) = (self.cluster, &self.client);
        // Machines an earlier run left on another image roll back to the base first.
        let base = pool
            .create(client, pool.machines.len(), &cluster.os_image, ROLL_TIMEOUT)
            .await?;
        let timeouts = (BUILD_TIMEOUT, ROLL_TIMEOUT);
        let config =
            |fragment: &str| machine_os_config(cluster, POOL, objects::PUSH_SECRET, fragment);
        let applied_config = config(&examples_fragment(cluster, false)?)?;
        let apply = || apply_config(client, &applied_config);
        let applied = pool.roll(cluster, client, &base, apply, timeouts).await?;
        say("apply", &applied);
        let edited_config = config(&examples_fragment(cluster, true)?)?;
        let edit = || apply_config(client, &edited_config);
        let edited = pool
            .roll(cluster, client, &applied.to, edit, timeouts)
            .await?;
        say("fragment edit", &edited);
        let upgrade = || set_release_base(client, &cluster.os_image_next);
        let upgraded = pool
            .roll(cluster, client, &edited.to, upgrade, timeouts)
            .await?;
        say("release upgrade", &upgraded);
        Ok([applied, edited, upgraded])
    }
}

fn say(what: &str, roll: &Roll) {
    eprintln!(
        "bench: machines, {what}: pinned after {:.0} s, every machine runs it after {:.0} s; \
         {} layers changed ({})",
        roll.pinned_after.as_secs_f64(),
        roll.rolled_after.as_secs_f64(),
        roll.changed.0,
        bytes(roll.changed.1 as f64)
    );
    for m in &roll.machines {
        eprintln!("bench:   {}", m.summary(roll.changed));
    }
}

/// The worst machine's bytes over the changed layers (each fetched by every machine).
fn worst_ratio(roll: &Roll) -> f64 {
    roll.machines
        .iter()
        .map(|m| m.fetched_over(roll.changed.1))
        .fold(0.0, f64::max)
}

fn figures(report: &mut Report, applied: &Roll, edited: &Roll, upgraded: &Roll) {
    let machines = applied.machines.len();
    report.key(
        "apply_to_all_machines_seconds",
        applied.rolled_after.as_secs_f64(),
    );
    report.key("node_bytes_over_changed_layers", worst_ratio(edited));
    report.key(
        "node_upgrade_bytes_over_changed_layers",
        worst_ratio(upgraded),
    );
    for (what, roll) in [
        ("apply", applied),
        ("fragment edit", edited),
        ("release upgrade (5 of 48 base layers changed)", upgraded),
    ] {
        report.add(
            "machines",
            format!("{what}: → pinned"),
            "s",
            vec![roll.pinned_after.as_secs_f64()],
            "",
        );
        report.add(
            "machines",
            format!("{what}: → every machine runs it ({machines} at once)"),
            "s",
            vec![roll.rolled_after.as_secs_f64()],
            "",
        );
        report.add(
            "machines",
            format!("{what}: bytes each machine fetched / changed layers"),
            "x",
            roll.machines
                .iter()
                .map(|m| m.fetched_over(roll.changed.1))
                .collect(),
            format!(
                "{} layers changed, {}; reboots per machine {:?}",
                roll.changed.0,
                bytes(roll.changed.1 as f64),
                roll.machines
                    .iter()
                    .map(|m| m.power_ons)
                    .collect::<Vec<_>>()
            ),
        );
    }
}
