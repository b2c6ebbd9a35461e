//! `strata-e2e-mco`: the local cluster's stand-in for the Machine Config Operator's render and
//! node controllers (see `strata_e2e::mco`). cluster-up.sh starts it with the admin kubeconfig.
//! Usage: strata-e2e-mco [--render-delay-ms N] [--machine-update-ms N]
//!
//! `strata-e2e-mco service-ca --ca-bundle FILE` runs instead the stand-in for OpenShift's service
//! CA publication (`strata_e2e::service_ca`: `openshift-service-ca.crt` in every namespace, the
//! ConfigMap CA-bundle injector, `openshift-config-managed/service-ca`); openshift-env.sh starts it.
//!
//! `strata-e2e-mco machine-daemon --dir CLUSTER_DIR` runs the machine-config-daemon stand-in
//! (`strata_e2e::mcd`) for the machines of `CLUSTER_DIR/machines/machines.tsv`; cluster-up.sh
//! starts it when the cluster has machines.

use std::time::Duration;

use anyhow::Context;
use strata_e2e::mco::{Pace, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("service-ca") {
        args.next();
        let (Some(flag), Some(path), None) = (args.next(), args.next(), args.next()) else {
            anyhow::bail!("usage: strata-e2e-mco service-ca --ca-bundle FILE");
        };
        anyhow::ensure!(flag == "--ca-bundle", "unknown flag {flag}");
        let bundle = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the CA bundle {path}"))?;
        anyhow::ensure!(
            bundle.contains("-----BEGIN CERTIFICATE-----"),
            "{path} holds no PEM certificate"
        );
        let client = kube::Client::try_default().await?;
        return strata_e2e::service_ca::run(client, bundle).await;
    }
    if args.peek().map(String::as_str) == Some("machine-daemon") {
        args.next();
        let (Some(flag), Some(dir), None) = (args.next(), args.next(), args.next()) else {
            anyhow::bail!("usage: strata-e2e-mco machine-daemon --dir CLUSTER_DIR");
        };
        anyhow::ensure!(flag == "--dir", "unknown flag {flag}");
        let dir = std::path::PathBuf::from(dir);
        let table = dir.join("machines/machines.tsv");
        let machines = strata_e2e::machines::parse(
            &std::fs::read_to_string(&table)
                .with_context(|| format!("reading {}", table.display()))?,
            &dir.join("logs"),
        )?;
        let daemon = strata_e2e::mcd::Daemon {
            client: kube::Client::try_default().await?,
            dir,
            machines_sh: strata_e2e::repo_root().join("e2e/scripts/machines.sh"),
        };
        eprintln!("strata-e2e-mcd: tending {} machines", machines.len());
        return strata_e2e::mcd::run(daemon, machines).await;
    }
    let mut pace = Pace::default();
    while let Some(flag) = args.next() {
        let ms: u64 = args
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{flag} takes milliseconds"))?;
        match flag.as_str() {
            "--render-delay-ms" => pace.render_delay = Duration::from_millis(ms),
            "--machine-update-ms" => pace.machine_update = Duration::from_millis(ms),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let client = kube::Client::try_default().await?;
    eprintln!("strata-e2e-mco: rendering pools and rolling their machines ({pace:?})");
    run(
        client,
        pace,
        "openshift-machine-config-operator",
        "machine-config-osimageurl",
    )
    .await
}
