//! `/metrics` the OpenShift way, on the real API server: the controller deployed with
//! manifests/components/metrics-tls serves it over TLS only to callers whose token the API server
//! authenticates (TokenReview) and allows `get /metrics` (SubjectAccessReview); the health probes
//! stay plain. Redeploys the controller (TLS on, then off again), so it has its own test binary.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use strata_e2e::deployed::{
    NAMESPACE, controller_pods, metrics_reader_token, remove_metrics_reader,
};
use strata_e2e::service_ca::serving_cert_secret;
use strata_e2e::util::{service_account_token, test_namespace, wait_for};
use strata_e2e::{Cluster, needs};
use strata_e2e::{repo_root, state_dir};

fn redeploy(cluster: &Cluster, tls: bool) -> Result<()> {
    let out = Command::new(repo_root().join("e2e/scripts/deploy-controller.sh"))
        .env("STRATA_METRICS_TLS", if tls { "1" } else { "" })
        .env(
            "PATH",
            format!(
                "{}:{}",
                cluster.bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("STRATA_E2E_STATE", state_dir())
        .output()?;
    ensure!(
        out.status.success(),
        "deploy-controller.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn metrics_over_tls_for_authorised_callers_only() -> Result<()> {
    let test = "metrics_over_tls_for_authorised_callers_only";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let service = (NAMESPACE, "strata-controller");
    serving_cert_secret(cluster, &client, service, "strata-controller-metrics-tls").await?;
    redeploy(cluster, true)?;
    let result = check(cluster, &client).await;
    redeploy(cluster, false)?;
    result
}

async fn check(_cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let ns = test_namespace(client, "e2e-metrics").await?;
    let reader = metrics_reader_token(client, &ns, "reader").await?;
    let nobody = service_account_token(client, &ns, "nobody").await?;
    let (pod, ip) = controller_pods(client)
        .await?
        .into_iter()
        .next()
        .context("no controller pod")?;
    // Signed by the local service CA, as on OpenShift; this test looks at authentication only.
    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("https://{ip}:8443/metrics");
    let status = |token: Option<String>| {
        let (https, url) = (https.clone(), url.clone());
        async move {
            let mut request = https.get(&url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await?;
            Ok::<_, anyhow::Error>((response.status().as_u16(), response.text().await?))
        }
    };
    let (anonymous, _) = wait_for(
        "the TLS metrics endpoint",
        Duration::from_secs(60),
        || async { Ok(status(None).await.ok()) },
    )
    .await?;
    ensure!(anonymous == 401, "no token: {anonymous}");
    let (bogus, _) = status(Some("not-a-token".into())).await?;
    ensure!(bogus == 401, "an invalid token: {bogus}");
    let (forbidden, _) = status(Some(nobody)).await?;
    ensure!(forbidden == 403, "a user without get /metrics: {forbidden}");
    let (ok, body) = status(Some(reader)).await?;
    ensure!(
        ok == 200 && body.contains("strata_leader"),
        "the reader: {ok}\n{body}"
    );
    eprintln!(
        "ok: https://{pod}:8443/metrics → 401 without or with a bad token, 403 without the right, 200 with get /metrics"
    );

    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let healthz = plain
        .get(format!("http://{ip}:8080/healthz"))
        .send()
        .await?
        .status()
        .as_u16();
    let plain_metrics = plain
        .get(format!("http://{ip}:8080/metrics"))
        .send()
        .await?
        .status()
        .as_u16();
    ensure!(healthz == 200, "plain /healthz: {healthz}");
    ensure!(
        plain_metrics == 404,
        "/metrics is still plain: {plain_metrics}"
    );
    eprintln!("ok: /healthz plain, /metrics not served in the clear");
    remove_metrics_reader(client).await;
    Ok(())
}
