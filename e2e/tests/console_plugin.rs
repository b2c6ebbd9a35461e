//! The console plugin's browser tests (`console-plugin/tests/browser`, Playwright driving Debian's
//! headless Chromium) against the shared real cluster: the plugin's form (Containerfiles and YAML in
//! Monaco) creates MachineOSConfigs in the API server and shows its rejections next to the fields,
//! reading Secrets as metadata only (the test checks every response the page got for Secret data);
//! the build views read real MachineOSBuilds (watched by label selector), ConfigMaps and builder
//! pods. The harness page reaches the API server through `kubectl proxy`.
//!
//! Needs `STRATA_E2E` (else not run, like every e2e test), `console-plugin/node_modules` (`make
//! console-test` runs `npm ci`) and `/usr/bin/chromium` (`apt-get install chromium`). Without the
//! last two it fails under `make test` and CI, and is skipped with a message otherwise.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use strata_e2e::util::install_strata_crds;
use strata_e2e::{Cluster, needs, repo_root, skip};

const TEST: &str = "console_plugin_browser_tests_pass_against_the_real_api_server";
const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test]
async fn console_plugin_browser_tests_pass_against_the_real_api_server() -> Result<()> {
    let cluster = needs!(Cluster::shared_or_skip(TEST));
    let dir = repo_root().join("console-plugin");
    let chromium = std::env::var("STRATA_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    let mut missing = Vec::new();
    if !dir.join("node_modules/@playwright/test").is_dir() {
        missing.push(
            "console-plugin/node_modules (run `make console-test`, which runs `npm ci`)"
                .to_string(),
        );
    }
    if !Path::new(&chromium).exists() {
        missing.push(format!("{chromium} (apt-get install -y chromium)"));
    }
    if !missing.is_empty() {
        let why = format!("missing {}", missing.join(" and "));
        skip(TEST, &why);
        return Ok(());
    }

    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    // The plugin reads and writes Secrets and ConfigMaps in the controller's namespace, which
    // exists once the controller is deployed — not yet when this binary runs first.
    let namespace = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "strata-system"}
    });
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            "strata-system",
            &kube::api::PatchParams::apply("e2e"),
            &kube::api::Patch::Apply(&namespace),
        )
        .await?;

    let path = format!(
        "{}:{}",
        cluster.bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    // On the plugin's Node (package.json `engines`), as `make console-test` runs it.
    let out = Command::new("scripts/node.sh")
        .args(["npx", "--no-install", "playwright", "test"])
        .current_dir(&dir)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PATH", path)
        .env("STRATA_CHROMIUM", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .context("running `npx playwright test` in console-plugin/")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "`npx playwright test` failed ({}) after {:.0?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        started.elapsed()
    );
    // The passing summary (test names and count) in the test's output.
    eprintln!(
        "console plugin browser tests passed in {:.0?}:\n{stdout}",
        started.elapsed()
    );
    ensure!(
        stdout.contains(" passed") && !stdout.contains(" skipped"),
        "unexpected Playwright summary:\n{stdout}"
    );
    Ok(())
}
