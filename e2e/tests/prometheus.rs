//! The shipped alerts in a real Prometheus (Debian's `prometheus`), on real failures: the
//! controller deployed with `/metrics` over TLS (`manifests/components/metrics-tls`, its serving
//! certificate signed by the local service CA) is scraped as the shipped ServiceMonitor says
//! (https, the service CA, the server name, a token allowed `get /metrics`), with the shipped
//! PrometheusRule loaded (each `for` shortened: `strata_e2e::prometheus`). Each alert fires on the
//! failure and resolves after the fix:
//! - `StrataBuildFailed`: a fragment whose `RUN` fails; fixed by editing the fragment;
//! - `StrataPoolNotUpdated`: the fix built and pinned while the pool is paused; fixed by unpausing;
//! - `StrataBuilderCannotStart`: the builder image missing from the registry (the controller
//!   redeployed naming a tag nobody pushed); fixed by pushing it;
//! - `StrataControllerDown`: the Deployment scaled to 0; fixed by deploying it again.
//!
//! Redeploys the controller (TLS, a missing builder image, then as it was): its own test binary.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, create_pool, create_push_secret, current_build, delete_config,
    delete_pool, machine_os_config, metrics_reader_token, pinned_by, pools, remove_metrics_reader,
};
use strata_e2e::measure::deploy::{DeployOptions, deploy};
use strata_e2e::prometheus::{Prometheus, ScrapeFiles, rule_groups, scrape_job};
use strata_e2e::service_ca::{ca_file, serving_cert_secret};
use strata_e2e::util::{delete_namespace, test_namespace, wait_for, yaml_docs};
use strata_e2e::{Cluster, needs, repo_root};

const POOL: &str = "e2e-alerts";
/// A build, or an alert after its `for`, on the small base.
const WAIT: Duration = Duration::from_secs(300);

/// The first document of `manifests/overlays/openshift/<file>`.
fn shipped(file: &str) -> Result<Value> {
    let path = repo_root().join("manifests/overlays/openshift").join(file);
    yaml_docs(&std::fs::read_to_string(&path)?)?
        .into_iter()
        .next()
        .with_context(|| format!("{} is empty", path.display()))
}

fn with_tls(builder_image: Option<String>) -> DeployOptions {
    DeployOptions {
        env: vec![("STRATA_METRICS_TLS".into(), "1".into())],
        builder_image_override: builder_image,
        ..DeployOptions::default()
    }
}

#[tokio::test]
async fn the_shipped_alerts_fire_on_real_failures_and_resolve_after_the_fix() -> Result<()> {
    let test = "the_shipped_alerts_fire_on_real_failures_and_resolve_after_the_fix";
    let (cluster, builder) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let service = (NAMESPACE, "strata-controller");
    serving_cert_secret(cluster, &client, service, "strata-controller-metrics-tls").await?;
    deploy(cluster, &with_tls(None)).await?;
    let ns = test_namespace(&client, "e2e-prometheus").await?;
    let result = check((cluster, &client), &ns, &builder).await;
    delete_config(&client, POOL).await?;
    delete_pool(&client, POOL).await;
    remove_metrics_reader(&client).await;
    delete_namespace(&client, &ns).await;
    deploy(cluster, &DeployOptions::default()).await?;
    result
}

async fn check(
    (cluster, client): (&Cluster, &kube::Client),
    ns: &str,
    builder: &str,
) -> Result<()> {
    let dir = cluster.dir.join("prometheus");
    std::fs::create_dir_all(&dir)?;
    // Prometheus's own ServiceAccount on OpenShift is prometheus-k8s.
    std::fs::write(
        dir.join("token"),
        metrics_reader_token(client, ns, "prometheus-k8s").await?,
    )?;
    let files = ScrapeFiles {
        token: dir.join("token"),
        ca: ca_file(cluster),
        targets: dir.join("targets.json"),
    };
    let rule = shipped("prometheusrule.yaml")?;
    let job = scrape_job(&shipped("monitoring.yaml")?, &files)?;
    let prometheus = Prometheus::start(
        &dir,
        (client, NAMESPACE),
        &files,
        (job, rule_groups(&rule)?),
    )
    .await?;
    let result = alerts((cluster, client), &prometheus, &rule, builder).await;
    if result.is_err() {
        eprintln!("Prometheus's log:\n{}", prometheus.log());
    }
    result
}

async fn alerts(
    (cluster, client): (&Cluster, &kube::Client),
    prometheus: &Prometheus,
    rule: &Value,
    builder: &str,
) -> Result<()> {
    let shipped_alerts: Vec<String> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect();
    let loaded = prometheus.alerting_rules().await?;
    ensure!(
        loaded == shipped_alerts,
        "Prometheus loaded {loaded:?}, the PrometheusRule has {shipped_alerts:?}"
    );
    let targets = wait_for(
        "both controller replicas scraped over TLS",
        Duration::from_secs(90),
        || async {
            let targets = prometheus.targets().await?;
            let up = targets
                .iter()
                .filter(|(_, health, _)| health == "up")
                .count();
            Ok((up == 2).then_some(targets))
        },
    )
    .await
    .with_context(|| "the targets never were both up".to_string())?;
    eprintln!("ok: {} alerts loaded; scraped: {targets:?}", loaded.len());

    build_failed_and_pool_not_updated(cluster, client, prometheus).await?;
    builder_cannot_start(cluster, client, prometheus, builder).await?;
    controller_down(cluster, prometheus).await
}

async fn build_failed_and_pool_not_updated(
    cluster: &Cluster,
    client: &kube::Client,
    prometheus: &Prometheus,
) -> Result<()> {
    let push_secret = "e2e-alerts-push";
    create_push_secret(client, push_secret).await?;
    delete_config(client, POOL).await?;
    create_pool(client, POOL).await?;
    let ours = [("config", POOL), ("pool", POOL)];
    let failing = machine_os_config(cluster, POOL, push_secret, "RUN exit 1\n")?;
    apply_config(client, &failing).await?;
    prometheus.firing("StrataBuildFailed", &ours, WAIT).await?;
    eprintln!("ok: StrataBuildFailed fires for a failing RUN");

    set_paused(client, true).await?;
    let failed = current_build(client, POOL, None).await?;
    let fixed = machine_os_config(cluster, POOL, push_secret, "RUN echo fixed > /etc/fixed\n")?;
    apply_config(client, &fixed).await?;
    let build = current_build(client, POOL, Some(&failed)).await?;
    pinned_by(client, WAIT, POOL, &build).await?;
    prometheus
        .resolved("StrataBuildFailed", &ours, WAIT)
        .await?;
    eprintln!("ok: StrataBuildFailed resolves once the fixed fragment built");
    let pool = [("pool", POOL)];
    prometheus
        .firing("StrataPoolNotUpdated", &pool, WAIT)
        .await?;
    eprintln!("ok: StrataPoolNotUpdated fires while the paused pool does not roll {build}");
    set_paused(client, false).await?;
    prometheus
        .resolved("StrataPoolNotUpdated", &pool, WAIT)
        .await?;
    eprintln!("ok: StrataPoolNotUpdated resolves once the pool rolled");
    Ok(())
}

async fn set_paused(client: &kube::Client, paused: bool) -> Result<()> {
    pools(client)
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": paused}})),
        )
        .await?;
    Ok(())
}

/// `builder`: the builder image deployed (digest-pinned), copied to the missing tag as the fix.
async fn builder_cannot_start(
    cluster: &Cluster,
    client: &kube::Client,
    prometheus: &Prometheus,
    builder: &str,
) -> Result<()> {
    // A tag nobody pushed yet: the builder pod cannot pull it.
    let late = format!(
        "{}/strata-e2e/late-builder:{}",
        cluster.registry,
        std::process::id()
    );
    deploy(cluster, &with_tls(Some(late.clone()))).await?;
    let push_secret = "e2e-alerts-push";
    let before = current_build(client, POOL, None).await?;
    let next = machine_os_config(cluster, POOL, push_secret, "RUN echo late > /etc/late\n")?;
    apply_config(client, &next).await?;
    let build = current_build(client, POOL, Some(&before)).await?;
    let pool = [("pool", POOL)];
    let alert = prometheus
        .firing("StrataBuilderCannotStart", &pool, WAIT)
        .await?;
    eprintln!(
        "ok: StrataBuilderCannotStart fires ({}) while {late} is missing",
        alert.labels["reason"]
    );
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{builder}"))
        .arg(format!("docker://{late}"))
        .output()?;
    ensure!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    prometheus
        .resolved("StrataBuilderCannotStart", &pool, WAIT)
        .await?;
    pinned_by(client, WAIT, POOL, &build).await?;
    eprintln!("ok: StrataBuilderCannotStart resolves once the image is pushed; {build} pinned");
    Ok(())
}

async fn controller_down(cluster: &Cluster, prometheus: &Prometheus) -> Result<()> {
    let out = cluster
        .kubectl()
        .args([
            "-n",
            NAMESPACE,
            "scale",
            "deployment/strata-controller",
            "--replicas=0",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    prometheus.firing("StrataControllerDown", &[], WAIT).await?;
    eprintln!("ok: StrataControllerDown fires with no replica");
    deploy(cluster, &with_tls(None)).await?;
    prometheus
        .resolved("StrataControllerDown", &[], WAIT)
        .await?;
    eprintln!("ok: StrataControllerDown resolves once it is deployed again");
    Ok(())
}
