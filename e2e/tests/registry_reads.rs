//! A hostile registry against the deployed controller (issue 32, "unbounded registry reads"): a
//! MachineOSConfig names as its `spec.baseImage` an image on a registry that answers the
//! manifest read with a body without end. The controller resolves a config's base itself, with
//! a memory limit of 256 MiB: reading that body whole would have it OOM-killed, on every replica
//! in turn. It must stop reading at its cap, say so on the config (`BaseImageUnavailable`,
//! "larger than the 4 MiB Strata reads"), and keep running.
//!
//! The registry is a few lines of Python (HTTPS with the openshift-env internal registry's
//! certificate: signed by the service CA the controller trusts, valid for the node's address)
//! answering every read with 1 GiB of spaces, on the node's 443: the controller reaches it through
//! the cluster proxy, which tunnels to 443. Its own test binary: `hostile.rs` listens on 443 too.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use strata_crds::MachineOSConfig;
use strata_e2e::deployed::{
    NAMESPACE, apply_config, create_pool, create_push_secret, delete_config, delete_pool,
    machine_os_config, wait_for_condition,
};
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-endless-manifest";
/// The size of the manifest the registry serves: four times the controller's memory limit.
const MANIFEST_BYTES: u64 = 1 << 30;

/// The registry: a process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTPS server (Python's, TLS with `cert` and `key`) on `address` answering every GET with
/// 200 and [`MANIFEST_BYTES`] of spaces (JSON whitespace: a reader without a cap keeps it all),
/// HTTP/1.0 without a length; each request's line goes to `log`.
const ENDLESS_SERVER: &str = r#"
import http.server, ssl, sys
host, port, cert, key, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
class Endless(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.end_headers()
        chunk = b" " * 65536
        try:
            for _ in range(size // len(chunk)):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.command, self.path))
        sys.stderr.flush()
server = http.server.ThreadingHTTPServer((host, port), Endless)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

fn serve(address: &str, cert: &Path, key: &Path, log: &Path) -> Result<Server> {
    let (host, port) = address.rsplit_once(':').context("host:port")?;
    let child = Command::new("python3")
        .arg("-c")
        .arg(ENDLESS_SERVER)
        .args([host, port])
        .arg(cert)
        .arg(key)
        .arg(MANIFEST_BYTES.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting the endless registry (python3)")?;
    let mut server = Server(child);
    // Listening once a connection is accepted (and it is still running).
    for _ in 0..100 {
        if let Some(status) = server.0.try_wait()? {
            anyhow::bail!(
                "the endless registry on {address} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok(server);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("the endless registry does not listen on {address} after 10 s")
}

/// Each controller container's restarts and last termination reason.
async fn controller_restarts(client: &kube::Client) -> Result<Vec<(String, i32, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=strata-controller"))
        .await?;
    Ok(list
        .items
        .into_iter()
        .flat_map(|p| {
            let name = p.metadata.name.unwrap_or_default();
            p.status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
                .into_iter()
                .map(move |c| {
                    let last = c
                        .last_state
                        .and_then(|s| s.terminated)
                        .and_then(|t| t.reason)
                        .unwrap_or_default();
                    (name.clone(), c.restart_count, last)
                })
        })
        .collect())
}

#[tokio::test]
async fn a_base_whose_registry_serves_an_endless_manifest_is_refused_and_the_controller_stays_up()
-> Result<()> {
    let test =
        "a_base_whose_registry_serves_an_endless_manifest_is_refused_and_the_controller_stays_up";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let pki = cluster.openshift.dir.join("pki");
    let root = cluster.dir.join("e2e-endless-manifest");
    std::fs::create_dir_all(&root)?;
    let digest = format!("sha256:{}", "e".repeat(64));
    let registry = format!("{}:443", cluster.node_ip);
    let log = root.join("requests.log");
    let _server = serve(
        &registry,
        &pki.join("internal.crt"),
        &pki.join("internal.key"),
        &log,
    )?;
    // The positive control: the server answers the manifest read with more than the cap (from
    // the host, directly; the first 8 MiB are enough).
    let probe = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --max-time 30 --cacert '{}' https://{registry}/v2/e2e/endless/manifests/{digest} \
             | head -c {} | wc -c",
            pki.join("service-ca.crt").display(),
            8 << 20
        ))
        .output()?;
    let answer = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    ensure!(
        answer == (8u64 << 20).to_string(),
        "the endless registry does not answer the manifest read with 8 MiB: {answer:?} {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let before = controller_restarts(&client).await?;

    let push = "e2e-endless-push";
    create_push_secret(&client, push).await?;
    delete_config(&client, POOL).await?;
    create_pool(&client, POOL).await?;
    let base = format!("{registry}/e2e/endless@{digest}");
    let mut config = serde_json::to_value(machine_os_config(
        cluster,
        POOL,
        push,
        "RUN echo never built\n",
    )?)?;
    config["spec"]["baseImage"] = json!(base);
    let config: MachineOSConfig = serde_json::from_value(config)?;
    apply_config(&client, &config).await?;
    let message =
        wait_for_condition(&client, POOL, "Degraded", ("True", "BaseImageUnavailable")).await?;
    ensure!(
        message.contains("larger than the 4 MiB") && message.contains("e2e/endless"),
        "{POOL} is BaseImageUnavailable, but not for the manifest's size: {message}"
    );
    let requests = std::fs::read_to_string(&log)?;
    let asked = requests
        .lines()
        .filter(|l| l.starts_with(&format!("GET /v2/e2e/endless/manifests/{digest}")))
        .count();
    ensure!(
        asked >= 2,
        "the endless registry saw no manifest read but the probe's: {requests}"
    );
    eprintln!("ok: {POOL}: {message}");
    let after = controller_restarts(&client).await?;
    ensure!(
        after == before,
        "the controller restarted while reading the endless manifest: {before:?} -> {after:?}"
    );
    eprintln!("ok: no controller container restarted ({after:?})");
    delete_config(&client, POOL).await?;
    delete_pool(&client, POOL).await;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
