//! Small helpers for tests against the real cluster.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::Value;
use std::process::Command;

/// Poll `f` every 250 ms until it returns `Ok(Some(t))`, or fail after `timeout` with the last
/// error / state.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::from("no result yet");
    loop {
        match f().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The port of an address (`host:port`, `https://host:port`, `https://host:port/`).
pub fn port_of(address: &str) -> Result<u16> {
    let port = address
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .context("no port")?;
    port.parse()
        .with_context(|| format!("no port in {address}"))
}

/// Wait until pod `name` is Ready with its IP published, and return the IP; a pod that failed
/// fails at once.
pub async fn ready_pod_ip(pods: &Api<Pod>, name: &str, timeout: Duration) -> Result<String> {
    wait_for(&format!("pod {name} Ready with an IP"), timeout, || async {
        let st = pods.get(name).await?.status.unwrap_or_default();
        if st.phase.as_deref() == Some("Failed") {
            bail!("pod {name} failed: {:?}", st.container_statuses);
        }
        let ready = st
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        Ok(st.pod_ip.filter(|ip| ready && !ip.is_empty()))
    })
    .await
}

/// Create a namespace with a unique name derived from `prefix`; delete it with
/// [`delete_namespace`].
pub async fn test_namespace(client: &kube::Client, prefix: &str) -> Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!("{prefix}-{:x}{:x}", std::process::id(), nanos);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    // The ServiceAccount admission plugin rejects pods until the SA controller made `default`.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &name);
    wait_for(
        "ServiceAccount default",
        Duration::from_secs(30),
        || async { Ok(sas.get_opt("default").await?.map(|_| ())) },
    )
    .await?;
    Ok(name)
}

/// Delete a namespace (background; the namespace controller finishes it).
pub async fn delete_namespace(client: &kube::Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

/// Parse a (multi-document) YAML string into JSON values, skipping empty documents.
pub fn yaml_docs(text: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(text).context("parsing YAML")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The message of an API error (`kube::Error::Api`), or the error's display form.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// The HTTP status code of an API error, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Replaces CRD `name`'s spec with `spec` (retrying on conflicts).
pub async fn set_crd_spec(
    crds: &Api<CustomResourceDefinition>,
    name: &str,
    spec: &Value,
) -> Result<()> {
    for _ in 0..10 {
        let mut cur = serde_json::to_value(crds.get(name).await?)?;
        cur["spec"] = spec.clone();
        let crd: CustomResourceDefinition = serde_json::from_value(cur)?;
        match crds.replace(name, &PostParams::default(), &crd).await {
            Ok(_) => return Ok(()),
            Err(e) if api_code(&e) == Some(409) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("could not update CRD {name}: conflicts")
}

/// Apply RFC 6902 `add` / `remove` / `replace` operations (what OpenShift's test suites use in
/// `initialCRDPatches`) to a JSON value.
pub fn json_patch(target: &mut Value, ops: &[Value]) -> Result<()> {
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .context("patch op without 'op'")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .context("patch op without 'path'")?;
        let (parent, last) = path.rsplit_once('/').context("patch path without '/'")?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let parent_v = target
            .pointer_mut(parent)
            .with_context(|| format!("patch path {path}: parent not found"))?;
        match (kind, parent_v) {
            ("remove", Value::Object(m)) => {
                m.remove(&last)
                    .with_context(|| format!("patch remove {path}: not found"))?;
            }
            ("remove", Value::Array(a)) => {
                let i: usize = last.parse()?;
                if i >= a.len() {
                    bail!("patch remove {path}: index out of range");
                }
                a.remove(i);
            }
            ("add" | "replace", Value::Object(m)) => {
                let v = op
                    .get("value")
                    .cloned()
                    .context("patch add without value")?;
                m.insert(last, v);
            }
            ("add", Value::Array(a)) => {
                let v = op
                    .get("value")
                    .cloned()
                    .context("patch add without value")?;
                if last == "-" {
                    a.push(v);
                } else {
                    a.insert(last.parse()?, v);
                }
            }
            ("replace", Value::Array(a)) => {
                let v = op
                    .get("value")
                    .cloned()
                    .context("patch replace without value")?;
                let i: usize = last.parse()?;
                *a.get_mut(i).context("patch replace: index out of range")? = v;
            }
            (k, _) => bail!("unsupported patch op {k} at {path}"),
        }
    }
    Ok(())
}

/// Install `crds/crds.yaml` (server-side apply) and wait until every CRD is Established.
pub async fn install_strata_crds(client: &kube::Client) -> Result<Vec<String>> {
    let path = crate::repo_root().join("crds/crds.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (generate it with `cargo run -p strata-controller --bin strata -- crds > crds/crds.yaml`)",
            path.display()
        )
    })?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for doc in yaml_docs(&text)? {
        let crd: CustomResourceDefinition = serde_json::from_value(doc)?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        crds.patch(
            &name,
            &PatchParams::apply("strata-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    for name in &names {
        wait_for(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            || async {
                let crd = crds.get(name).await?;
                let ok = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(ok.then_some(()))
            },
        )
        .await?;
    }
    Ok(names)
}

/// An OpenShift MachineOSConfig as Strata's: `apiVersion` changed and — Strata's one deliberate
/// difference from OpenShift's rules — the repository path of `spec.renderedImagePushSpec` in
/// lowercase (OpenShift accepts capitals there, which every registry then refuses at push; Strata
/// rejects them at apply).
pub fn strata_equivalent(mut object: Value) -> Value {
    object["apiVersion"] = Value::from("strata.dev/v1alpha1");
    if let Some(spec) = object["spec"]["renderedImagePushSpec"].as_str() {
        object["spec"]["renderedImagePushSpec"] = Value::from(lowercase_repository_path(spec));
    }
    object
}

/// `host[:port]/Path/Name:Tag` → `host[:port]/path/name:Tag`.
pub fn lowercase_repository_path(spec: &str) -> String {
    let Some((host, rest)) = spec.split_once('/') else {
        return spec.to_string();
    };
    let (path, tag) = match rest.rsplit_once(':') {
        Some((path, tag)) => (path, format!(":{tag}")),
        None => (rest, String::new()),
    };
    format!("{host}/{}{tag}", path.to_ascii_lowercase())
}

/// A token of ServiceAccount `ns/name` (created when missing), valid for ten minutes.
pub async fn service_account_token(client: &kube::Client, ns: &str, name: &str) -> Result<String> {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), ns);
    if sas.get_opt(name).await?.is_none() {
        sas.create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?,
        )
        .await?;
    }
    let request: TokenRequest = serde_json::from_value(
        serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 600}}),
    )?;
    let issued = sas
        .create_token_request(name, &kube::api::PostParams::default(), &request)
        .await?;
    Ok(issued
        .status
        .ok_or_else(|| anyhow::anyhow!("TokenRequest for {ns}/{name} without status"))?
        .token)
}

/// Adds `address/32` to the host's loopback device for the life of the guard (a destination
/// pods reach through the node, as they reach any address the node routes).
pub struct HostAddress(&'static str);

impl HostAddress {
    pub fn add(address: &'static str) -> Result<Self> {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{address}/32"), "dev", "lo"])
            .output();
        let out = Command::new("ip")
            .args(["addr", "add", &format!("{address}/32"), "dev", "lo"])
            .output()
            .context("running ip addr add")?;
        ensure!(
            out.status.success(),
            "ip addr add {address}/32 dev lo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self(address))
    }
}

impl Drop for HostAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

/// A listener on `address` (`0.0.0.0:443`: every address of the host) that accepts and closes
/// every connection, for the life of the test process: a target that answers, so a probe that
/// does not connect was blocked.
pub fn listen_and_close(address: &str) -> Result<()> {
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("binding a listener on {address}"))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patch_remove_and_add() -> Result<()> {
        let mut v = serde_json::json!({"spec": {"versions": [{"schema": {"x": 1, "y": 2}}]}});
        json_patch(
            &mut v,
            &[
                serde_json::json!({"op": "remove", "path": "/spec/versions/0/schema/x"}),
                serde_json::json!({"op": "add", "path": "/spec/versions/0/schema/z", "value": 3}),
            ],
        )?;
        assert_eq!(
            v,
            serde_json::json!({"spec": {"versions": [{"schema": {"y": 2, "z": 3}}]}})
        );
        Ok(())
    }
}
