//! `strata-e2e-mco`: the local cluster's stand-in for the Machine Config Operator's render and
//! node controllers (see `strata_e2e::mco`). cluster-up.sh starts it with the admin kubeconfig.
//! Usage: strata-e2e-mco [--render-delay-ms N] [--machine-update-ms N]

use std::time::Duration;

use strata_e2e::mco::{Pace, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut pace = Pace::default();
    let mut args = std::env::args().skip(1);
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
