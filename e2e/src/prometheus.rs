//! A real Prometheus (Debian's `prometheus`) on the host, set up from Strata's shipped monitoring
//! objects as the Prometheus Operator would: the scrape job from the ServiceMonitor
//! (`manifests/overlays/openshift/monitoring.yaml`) and the rules from the PrometheusRule
//! (`prometheusrule.yaml`).
//!
//! What differs from the operator's output, and why: the files the ServiceMonitor names inside the
//! Prometheus pod (`bearerTokenFile`, `tlsConfig.caFile`) are this test's token and CA files; the
//! scrape and evaluation intervals are 2 s and each alert's `for` is shortened (`FOR_IN_TESTS`), so
//! an alert fires within seconds instead of minutes. Debian builds Prometheus without its
//! Kubernetes service discovery, so a small stand-in (`discover`) writes the Service's
//! EndpointSlices, every second, as a `file_sd` target file carrying the same `__meta_kubernetes_*`
//! labels as Prometheus's `role: endpoints` discovery (`discovery/kubernetes/endpointslice.go`); the
//! operator's relabelling then runs on them unchanged. The expressions, labels and TLS settings are
//! the shipped ones.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::util::wait_for;

/// Every alert's `for` in the tests.
pub const FOR_IN_TESTS: &str = "5s";
const INTERVAL: &str = "2s";

/// The files the ServiceMonitor names inside a Prometheus pod, here, and the discovery stand-in's
/// target file.
pub struct ScrapeFiles {
    pub token: PathBuf,
    pub ca: PathBuf,
    pub targets: PathBuf,
}

/// The scrape job the Prometheus Operator makes of `service_monitor`'s first endpoint
/// (`pkg/prometheus/promcfg.go`: endpoints discovery in the monitor's namespace, the Service's
/// labels matched, the endpoint port by name, `job` the Service's name).
pub fn scrape_job(service_monitor: &Value, files: &ScrapeFiles) -> Result<Value> {
    let namespace = service_monitor["metadata"]["namespace"]
        .as_str()
        .context("ServiceMonitor without a namespace")?;
    let name = service_monitor["metadata"]["name"]
        .as_str()
        .context("ServiceMonitor without a name")?;
    let endpoint = &service_monitor["spec"]["endpoints"][0];
    let port = endpoint["port"]
        .as_str()
        .context("endpoint without a port name")?;
    ensure!(
        endpoint.get("bearerTokenFile").is_some(),
        "the ServiceMonitor no longer authenticates with the token file"
    );
    let mut relabel = Vec::new();
    for (label, value) in service_monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .context("ServiceMonitor selector without matchLabels")?
    {
        relabel.push(json!({
            "action": "keep",
            "source_labels": [format!("__meta_kubernetes_service_label_{}", sanitize(label))],
            "regex": value,
        }));
    }
    relabel.push(json!({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": port}));
    for (source, target) in [
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_service_name", "service"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_service_name", "job"),
    ] {
        relabel.push(json!({"source_labels": [source], "target_label": target}));
    }
    relabel.push(json!({"target_label": "endpoint", "replacement": port}));
    Ok(json!({
        "job_name": format!("serviceMonitor/{namespace}/{name}/0"),
        "scrape_interval": INTERVAL,
        "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
        "scheme": endpoint["scheme"].as_str().unwrap_or("http"),
        "authorization": {"type": "Bearer", "credentials_file": files.token},
        "tls_config": {
            "ca_file": files.ca,
            "server_name": endpoint["tlsConfig"]["serverName"],
        },
        "file_sd_configs": [{"files": [files.targets], "refresh_interval": INTERVAL}],
        "relabel_configs": relabel,
    }))
}

/// The targets Prometheus's `role: endpoints` discovery finds in `namespace`: an entry per
/// address and port of each Service's EndpointSlices, with the `__meta_kubernetes_*` labels the
/// ServiceMonitor's relabelling reads.
pub async fn discover(client: &kube::Client, namespace: &str) -> Result<Value> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let mut groups = Vec::new();
    for service in services.list(&ListParams::default()).await?.items {
        let name = service.name_any();
        let selector = format!("kubernetes.io/service-name={name}");
        let mut service_labels = json!({
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_service_name": name,
        });
        for (k, v) in service.labels() {
            service_labels[format!("__meta_kubernetes_service_label_{}", sanitize(k))] = json!(v);
        }
        for slice in slices
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            for port in slice.ports.iter().flatten() {
                for endpoint in &slice.endpoints {
                    let ready = endpoint
                        .conditions
                        .as_ref()
                        .and_then(|c| c.ready)
                        .unwrap_or(true);
                    let mut labels = service_labels.clone();
                    labels["__meta_kubernetes_endpoint_port_name"] =
                        json!(port.name.clone().unwrap_or_default());
                    labels["__meta_kubernetes_endpoint_ready"] = json!(ready.to_string());
                    if let Some(pod) = endpoint.target_ref.as_ref().and_then(|r| r.name.clone()) {
                        labels["__meta_kubernetes_pod_name"] = json!(pod);
                    }
                    let targets: Vec<String> = endpoint
                        .addresses
                        .iter()
                        .map(|a| format!("{a}:{}", port.port.unwrap_or_default()))
                        .collect();
                    groups.push(json!({"targets": targets, "labels": labels}));
                }
            }
        }
    }
    Ok(Value::Array(groups))
}

/// Rewrites `path` with `discover`'s targets every second (atomically: Prometheus watches it).
fn keep_discovering(client: kube::Client, namespace: String, path: PathBuf) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(groups) = discover(&client, &namespace).await
                && let Ok(bytes) = serde_json::to_vec(&groups)
            {
                let next = path.with_extension("next");
                if std::fs::write(&next, bytes).is_ok() {
                    let _ = std::fs::rename(&next, &path);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// A label name as Prometheus's Kubernetes discovery writes it.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The rule groups of `prometheus_rule` (a PrometheusRule), each alert's `for` set to
/// `FOR_IN_TESTS` where it has one.
pub fn rule_groups(prometheus_rule: &Value) -> Result<Value> {
    let mut groups = prometheus_rule["spec"]["groups"].clone();
    for group in groups
        .as_array_mut()
        .context("PrometheusRule without groups")?
    {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if rule.get("for").is_some() {
                rule["for"] = json!(FOR_IN_TESTS);
            }
        }
    }
    Ok(json!({ "groups": groups }))
}

/// An alert as Prometheus's API reports it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub labels: Value,
    /// `pending` or `firing`.
    pub state: String,
}

/// A Prometheus server, stopped (and its data removed) when dropped.
pub struct Prometheus {
    child: Child,
    discovery: JoinHandle<()>,
    dir: PathBuf,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus in `dir` with `scrape_job` and `rules`, its targets found in
    /// `namespace` (written to `files.targets`); returns once it is ready.
    pub async fn start(
        dir: &Path,
        (client, namespace): (&kube::Client, &str),
        files: &ScrapeFiles,
        (scrape_job, rules): (Value, Value),
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            &files.targets,
            serde_json::to_vec(&discover(client, namespace).await?)?,
        )?;
        let discovery = keep_discovering(client.clone(), namespace.into(), files.targets.clone());
        let config = json!({
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [dir.join("rules.yaml")],
            "scrape_configs": [scrape_job],
        });
        // JSON is YAML: Prometheus reads both files as they are.
        std::fs::write(
            dir.join("prometheus.yaml"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        std::fs::write(dir.join("rules.yaml"), serde_json::to_vec_pretty(&rules)?)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yaml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus (Debian's prometheus package: make e2e-setup)")?;
        let prometheus = Self {
            child,
            discovery,
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        wait_for("Prometheus ready", Duration::from_secs(60), || async {
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await;
            Ok(ready.is_ok_and(|r| r.status().is_success()).then_some(()))
        })
        .await
        .with_context(|| prometheus.log())?;
        Ok(prometheus)
    }

    /// The end of Prometheus's own log (for a failure's message).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn api(&self, path: &str) -> Result<Value> {
        let text = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .send()
            .await?
            .text()
            .await?;
        let body: Value = serde_json::from_str(&text)?;
        if body["status"] != "success" {
            bail!("Prometheus answered {path} with {body}");
        }
        Ok(body["data"].clone())
    }

    /// The alerting rules loaded, by name.
    pub async fn alerting_rules(&self) -> Result<Vec<String>> {
        let data = self.api("rules?type=alert").await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["name"].as_str().map(String::from))
            .collect())
    }

    /// The scrape targets' health (`up`, `down`, `unknown`) and last error, by their pod label.
    pub async fn targets(&self) -> Result<Vec<(String, String, String)>> {
        let data = self.api("targets?state=active").await?;
        Ok(data["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    field(&t["labels"]["pod"]),
                    field(&t["health"]),
                    field(&t["lastError"]),
                )
            })
            .collect())
    }

    /// The alerts pending or firing.
    pub async fn alerts(&self) -> Result<Vec<Alert>> {
        let data = self.api("alerts").await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Alert {
                name: a["labels"]["alertname"].as_str().unwrap_or_default().into(),
                labels: a["labels"].clone(),
                state: a["state"].as_str().unwrap_or_default().into(),
            })
            .collect())
    }

    /// Waits until alert `name` fires with `labels` (each `(label, value)` matching); returns it.
    pub async fn firing(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Alert> {
        wait_for(
            &format!("alert {name} {labels:?} firing"),
            timeout,
            || async {
                Ok(self
                    .alerts()
                    .await?
                    .into_iter()
                    .find(|a| a.name == name && a.state == "firing" && matches(a, labels)))
            },
        )
        .await
    }

    /// Waits until alert `name` with `labels` is neither pending nor firing.
    pub async fn resolved(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<()> {
        wait_for(
            &format!("alert {name} {labels:?} resolved"),
            timeout,
            || async {
                let alerts = self.alerts().await?;
                Ok((!alerts.iter().any(|a| a.name == name && matches(a, labels))).then_some(()))
            },
        )
        .await
    }
}

fn matches(alert: &Alert, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| alert.labels[*k] == *v)
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.discovery.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_monitoring_objects_make_a_scrape_job_and_short_rules() {
        let root = crate::repo_root().join("manifests/overlays/openshift");
        let monitor =
            crate::util::yaml_docs(&std::fs::read_to_string(root.join("monitoring.yaml")).unwrap())
                .unwrap()
                .remove(0);
        let files = ScrapeFiles {
            token: "/t".into(),
            ca: "/ca".into(),
            targets: "/targets.json".into(),
        };
        let job = scrape_job(&monitor, &files).unwrap();
        assert_eq!(job["scheme"], "https");
        assert_eq!(
            job["tls_config"]["server_name"],
            "strata-controller.strata-system.svc"
        );
        let relabel = job["relabel_configs"].as_array().unwrap();
        assert!(relabel.iter().any(|r| r["source_labels"][0]
            == "__meta_kubernetes_service_label_app_kubernetes_io_name"
            && r["regex"] == "strata-controller"));
        assert!(relabel.iter().any(|r| r["target_label"] == "job"));

        let rule = crate::util::yaml_docs(
            &std::fs::read_to_string(root.join("prometheusrule.yaml")).unwrap(),
        )
        .unwrap()
        .remove(0);
        let groups = rule_groups(&rule).unwrap();
        let rules = groups["groups"][0]["rules"].as_array().unwrap();
        assert!(rules.len() >= 4);
        assert!(
            rules
                .iter()
                .all(|r| r.get("for").is_none() || r["for"] == FOR_IN_TESTS)
        );
        // The expressions are the shipped ones.
        assert_eq!(
            rules.iter().map(|r| r["expr"].clone()).collect::<Vec<_>>(),
            rule["spec"]["groups"][0]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["expr"].clone())
                .collect::<Vec<_>>()
        );
    }
}
