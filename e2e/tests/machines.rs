//! The local pool's machines (`e2e/scripts/machines.sh`, started with the cluster): QEMU VMs booted
//! from UEFI firmware off Strata's first-boot disk image of the CoreOS-like base.
//!
//! - every machine boots the base's ostree deployment (the kernel's command line names it) to its
//!   login prompt, under its own name;
//! - each has its own address on the machines' bridge: the DHCP server's lease names the machine's
//!   MAC, and ssh to that address reaches the machine of that name;
//! - every console is kept with the cluster's logs;
//! - inside (ssh as root with the cluster's key, which the host hands over by QEMU's firmware
//!   config), each calls itself by its name and ostree shows the deployment it booted.

use std::time::Duration;

use anyhow::{Result, ensure};
use strata_e2e::{Cluster, machines, needs};

/// A boot under software emulation, niced behind the builds beside it (~2–4 min alone).
const BOOT_TIMEOUT: Duration = Duration::from_secs(1200);

#[test]
fn machines_boot_the_base_each_on_its_own_address() -> Result<()> {
    let test = "machines_boot_the_base_each_on_its_own_address";
    let cluster = needs!(Cluster::shared_or_skip(test));
    let machines = machines::of(cluster)?;
    ensure!(
        machines.len() >= 2,
        "the cluster has {} machines; the pool needs at least two (STRATA_MACHINES)",
        machines.len()
    );
    for m in &machines {
        let console = m.wait_for_console(&format!("{} login:", m.name), BOOT_TIMEOUT)?;
        let cmdline = console
            .lines()
            .find(|l| l.contains("Kernel command line:"))
            .unwrap_or_default();
        ensure!(
            cmdline.contains("ostree=/ostree/boot."),
            "{} did not boot an ostree deployment: {cmdline:?}",
            m.name
        );
        ensure!(
            m.console.starts_with(cluster.dir.join("logs")),
            "{}'s console is not kept with the cluster's logs",
            m.name
        );
        eprintln!("{}: booted ({cmdline})", m.name);
    }
    // Leases are written once a machine's DHCP exchange ended: read after every machine is up.
    let leases = std::fs::read_to_string(cluster.dir.join("machines/leases"))?;
    for m in &machines {
        ensure!(
            leases
                .lines()
                .any(|l| l.contains(&m.mac) && l.contains(&m.ip) && l.contains(&m.name)),
            "no DHCP lease of {} ({}) for {}:\n{leases}",
            m.ip,
            m.mac,
            m.name
        );
        // Inside, reached at its address: its name, and the ostree deployment it booted
        // (ostree's own account).
        let inside = m.ssh(
            cluster,
            "hostname; ostree admin status; cat /proc/cmdline",
            Duration::from_secs(120),
        )?;
        ensure!(
            inside.lines().next() == Some(m.name.as_str()),
            "{} calls itself otherwise:\n{inside}",
            m.name
        );
        ensure!(
            inside.lines().any(|l| l.starts_with("* strata ")),
            "{}: ostree shows no booted deployment of the stateroot strata:\n{inside}",
            m.name
        );
        eprintln!("{}: inside:\n{inside}", m.name);
    }
    Ok(())
}
