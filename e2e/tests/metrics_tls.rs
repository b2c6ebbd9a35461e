//! `/metrics` the OpenShift way, on the real API server: the controller deployed with
//! manifests/components/metrics-tls serves it over TLS only to callers whose token the API server
//! authenticates (TokenReview) and allows `get /metrics` (SubjectAccessReview); the health probes
//! stay plain. Redeploys the controller (TLS on, then off again), so it has its own test binary.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use strata_e2e::deployed::{NAMESPACE, controller_pods};
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

/// A self-signed serving certificate as a `kubernetes.io/tls` Secret (what the service CA makes).
async fn serving_cert(client: &kube::Client) -> Result<()> {
    let dir = tempfile_dir()?;
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=strata-controller.strata-system.svc"])
        .arg("-keyout")
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .output()?;
    ensure!(
        status.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "strata-controller-metrics-tls", "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "stringData": {
            "tls.crt": std::fs::read_to_string(dir.join("tls.crt"))?,
            "tls.key": std::fs::read_to_string(dir.join("tls.key"))?,
        },
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .patch(
            "strata-controller-metrics-tls",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("e2e-metrics-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::test]
async fn metrics_over_tls_for_authorised_callers_only() -> Result<()> {
    let test = "metrics_over_tls_for_authorised_callers_only";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    serving_cert(&client).await?;
    redeploy(cluster, true)?;
    let result = check(cluster, &client).await;
    redeploy(cluster, false)?;
    result
}

async fn check(_cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let ns = test_namespace(client, "e2e-metrics").await?;
    let reader = service_account_token(client, &ns, "reader").await?;
    let nobody = service_account_token(client, &ns, "nobody").await?;
    // What OpenShift's prometheus-k8s ClusterRole grants a scraper.
    let role: ClusterRole = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "e2e-strata-metrics-reader"},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
    }))?;
    Api::<ClusterRole>::all(client.clone())
        .patch(
            "e2e-strata-metrics-reader",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&role),
        )
        .await?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "e2e-strata-metrics-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-strata-metrics-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
    }))?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(
            "e2e-strata-metrics-reader",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&binding),
        )
        .await?;
    let (pod, ip) = controller_pods(client)
        .await?
        .into_iter()
        .next()
        .context("no controller pod")?;
    // The serving certificate is self-signed here (the service CA signs it on OpenShift).
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
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete("e2e-strata-metrics-reader", &Default::default())
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete("e2e-strata-metrics-reader", &Default::default())
        .await;
    Ok(())
}
