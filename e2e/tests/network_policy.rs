//! NetworkPolicy is enforced in the local cluster: kube-network-policies (started by
//! `cluster-up.sh`, see `e2e/README.md`) judges the first packet of every pod connection. Pods run
//! `sleep`; every probe is a fresh TCP connection made with `kubectl exec` once the pod's IP is
//! published (the agent learns pod IPs from the API server), and each blocked one must also show up
//! as a dropped packet in the agent's own metrics.
//!
//! Needs `STRATA_E2E` (else skipped like every e2e test) and a cluster whose `e2e/.state/env`
//! records the agent (`STRATA_E2E_NETPOL_METRICS`); without it the tests fail under `CI=true` and
//! are skipped with a message otherwise.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use serde_json::json;
use strata_crds::contract::labels;
use strata_e2e::deployed::NAMESPACE;
use strata_e2e::util::{
    HostAddress, delete_namespace, listen_and_close, port_of, ready_pod_ip, test_namespace,
    wait_for,
};
use strata_e2e::{Cluster, in_ci, needs, parse_env_file, skip, state_dir};

/// The tests read the agent's global drop counter: one at a time, so a drop is ours.
static NETPOL_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Seconds `nc` waits for a connection; a dropped SYN takes this long to fail.
const CONNECT_TIMEOUT_S: u32 = 3;

/// The cluster and the agent's metrics URL, `None` when skipped. Fails under `CI=true` when the
/// running cluster has no NetworkPolicy agent.
fn cluster_with_netpol(test: &str) -> Result<Option<(&'static Cluster, String)>> {
    let Some(cluster) = Cluster::shared_or_skip(test) else {
        return Ok(None);
    };
    let env_path = state_dir().join("env");
    let env = parse_env_file(&std::fs::read_to_string(&env_path).unwrap_or_default());
    let Some(url) = env.get("STRATA_E2E_NETPOL_METRICS").cloned() else {
        let why = format!(
            "the running cluster ({}) records no NetworkPolicy agent (STRATA_E2E_NETPOL_METRICS); \
             restart it with `make e2e-down e2e-up`",
            env_path.display()
        );
        ensure!(!in_ci(), "{test}: {why}");
        skip(test, &why);
        return Ok(None);
    };
    Ok(Some((cluster, url)))
}

/// GET `http://127.0.0.1:<port>/<path>` (HTTP/1.0, the server closes) and return the body.
fn http_get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http URL: {url}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    ensure!(head.contains(" 200 "), "GET {url}: {head}");
    Ok(body.to_string())
}

/// Packets the agent dropped so far (`kube_network_policies_packet_count{verdict="drop"}`).
fn dropped(metrics_url: &str) -> Result<u64> {
    let text = http_get(metrics_url)?;
    ensure!(
        text.contains("kube_network_policies_"),
        "{metrics_url} does not look like kube-network-policies' metrics"
    );
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("kube_network_policies_packet_count{") && l.contains("verdict=\"drop\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// A pod that sleeps (probes are run in it with `kubectl exec`), with the given labels.
fn sleeper(name: &str, image: &str, labels: serde_json::Value, command: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": ["/bin/sh", "-c", command]}]
        }
    }))?)
}

/// Wait until the pod runs and its IP is published (the agent matches packets to pods by that IP).
async fn running_ip(pods: &Api<Pod>, name: &str) -> Result<String> {
    ready_pod_ip(pods, name, Duration::from_secs(120)).await
}

/// Whether `pod` can open a TCP connection to `host:port` (busybox `nc -e true`: exits 0 as soon
/// as it is connected). A refused or timed-out connection is `false`; anything else (exec failed)
/// is an error, so a broken probe is never mistaken for a blocked connection.
fn connects(cluster: &Cluster, ns: &str, pod: &str, host: &str, port: u16) -> Result<bool> {
    let out = cluster.exec(
        ns,
        pod,
        "/bin/sh",
        &format!("nc -w {CONNECT_TIMEOUT_S} {host} {port} -e true"),
    )?;
    if out.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("nc: timed out") || stderr.contains("nc: can't connect") {
        return Ok(false);
    }
    bail!(
        "probe {pod} -> {host}:{port} failed oddly ({}): {stderr}",
        out.status
    )
}

/// Wait until `pod` can no longer connect to `host:port` (the policy reached the agent).
async fn wait_blocked(cluster: &Cluster, ns: &str, pod: &str, host: &str, port: u16) -> Result<()> {
    wait_for(
        &format!("{pod} -> {host}:{port} blocked"),
        Duration::from_secs(30),
        || async { Ok((!connects(cluster, ns, pod, host, port)?).then_some(())) },
    )
    .await
}

/// `pod` cannot connect to `host:port`, and the agent counted the drop.
fn assert_blocked(
    cluster: &Cluster,
    metrics: &str,
    ns: &str,
    pod: &str,
    host: &str,
    port: u16,
) -> Result<()> {
    let before = dropped(metrics)?;
    ensure!(
        !connects(cluster, ns, pod, host, port)?,
        "{pod} reached {host}:{port} despite the NetworkPolicy"
    );
    let after = dropped(metrics)?;
    ensure!(
        after > before,
        "{pod} -> {host}:{port} failed but kube-network-policies dropped nothing ({before} -> {after})"
    );
    eprintln!("ok: {pod} -> {host}:{port} blocked (agent drops {before} -> {after})");
    Ok(())
}

/// The agent's last log lines, when a test's `result` is a failure.
fn print_agent_log_on_failure(cluster: &Cluster, result: &Result<()>) {
    if result.is_ok() {
        return;
    }
    let log = std::fs::read_to_string(cluster.dir.join("logs/kube-network-policies.log"))
        .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    eprintln!(
        "kube-network-policies log tail:\n{}",
        lines[lines.len().saturating_sub(20)..].join("\n")
    );
}

#[tokio::test]
async fn egress_policy_allows_only_dns_and_the_registry_port() -> Result<()> {
    let test = "egress_policy_allows_only_dns_and_the_registry_port";
    let (cluster, metrics) = needs!(cluster_with_netpol(test)?);
    let _guard = NETPOL_LOCK.lock().await;
    let client = cluster.client().await?;
    let ns = test_namespace(&client, "e2e-netpol-egress").await?;
    let node = cluster.node_ip.as_str();
    let registry_port = port_of(&cluster.registry)?;
    let apiserver_port = port_of(&cluster.apiserver)?;
    // Another port on the node, with a listener (so "blocked" cannot be "nothing listens there").
    let listener = TcpListener::bind("0.0.0.0:0").context("binding a test listener")?;
    let other_port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &sleeper(
            "probe",
            &cluster.os_base_image,
            json!({"app": "probe"}),
            "sleep 3600",
        )?,
    )
    .await?;
    running_ip(&pods, "probe").await?;

    // Without a policy everything on the node is reachable (so the checks below can fail).
    for (what, port) in [
        ("API server", apiserver_port),
        ("registry", registry_port),
        ("test listener", other_port),
    ] {
        ensure!(
            connects(cluster, &ns, "probe", node, port)?,
            "without a NetworkPolicy the pod cannot reach the {what} at {node}:{port}"
        );
    }
    eprintln!(
        "ok: without a policy the pod reaches {node}:{{{apiserver_port},{registry_port},{other_port}}}"
    );

    let policy: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "egress-dns-and-registry"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "probe"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"to": [{"ipBlock": {"cidr": format!("{node}/32")}}],
                 "ports": [{"protocol": "TCP", "port": registry_port}]}
            ]
        }
    }))?;
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &policy)
        .await?;

    let result = async {
        wait_blocked(cluster, &ns, "probe", node, apiserver_port).await?;
        assert_blocked(cluster, &metrics, &ns, "probe", node, apiserver_port)?;
        assert_blocked(cluster, &metrics, &ns, "probe", node, other_port)?;
        // Only probed once enforcement is proven above: the SYN is dropped on the node.
        assert_blocked(cluster, &metrics, &ns, "probe", "169.254.169.254", 80)?;
        // The allowed port still works, with a real HTTP exchange.
        let out = cluster.exec(
            &ns,
            "probe",
            "/bin/sh",
            &format!(
                "timeout 10 wget -q -O - http://{}/v2/_catalog",
                cluster.registry
            ),
        )?;
        let body = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && body.contains("repositories"),
            "the registry port allowed by the policy is not reachable: {} {body} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "ok: the registry ({}) is still reachable: {}",
            cluster.registry,
            body.trim()
        );
        Ok(())
    }
    .await;
    print_agent_log_on_failure(cluster, &result);
    delete_namespace(&client, &ns).await;
    result
}

#[tokio::test]
async fn ingress_policy_admits_only_labelled_pods() -> Result<()> {
    let test = "ingress_policy_admits_only_labelled_pods";
    let (cluster, metrics) = needs!(cluster_with_netpol(test)?);
    let _guard = NETPOL_LOCK.lock().await;
    let client = cluster.client().await?;
    let ns = test_namespace(&client, "e2e-netpol-ingress").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let image = &cluster.os_base_image;
    for pod in [
        sleeper(
            "server",
            image,
            json!({"app": "server"}),
            "exec httpd -f -p 8080 -h /etc",
        )?,
        sleeper("allowed", image, json!({"access": "granted"}), "sleep 3600")?,
        sleeper("denied", image, json!({"app": "other"}), "sleep 3600")?,
    ] {
        pods.create(&PostParams::default(), &pod).await?;
    }
    let server = running_ip(&pods, "server").await?;
    running_ip(&pods, "allowed").await?;
    running_ip(&pods, "denied").await?;
    let fetch = |pod: &str| -> Result<bool> {
        let out = cluster.exec(
            &ns,
            pod,
            "/bin/sh",
            // busybox 1.35's `wget -T` segfaults: bound it with `timeout` instead
            &format!("timeout {CONNECT_TIMEOUT_S} wget -q -O - http://{server}:8080/os-release"),
        )?;
        Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("PRETTY_NAME"))
    };

    // Without a policy both clients reach the server.
    for pod in ["allowed", "denied"] {
        ensure!(
            fetch(pod)?,
            "without a policy {pod} cannot reach the server at {server}:8080"
        );
    }
    eprintln!("ok: without a policy both clients reach {server}:8080");

    let policy: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "server-from-granted"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"access": "granted"}}}],
                "ports": [{"protocol": "TCP", "port": 8080}]
            }]
        }
    }))?;
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &policy)
        .await?;

    let result = async {
        wait_blocked(cluster, &ns, "denied", &server, 8080).await?;
        assert_blocked(cluster, &metrics, &ns, "denied", &server, 8080)?;
        ensure!(
            fetch("allowed")?,
            "the labelled pod cannot reach the server despite the policy admitting it"
        );
        eprintln!("ok: the labelled pod still reaches {server}:8080");
        Ok(())
    }
    .await;
    print_agent_log_on_failure(cluster, &result);
    delete_namespace(&client, &ns).await;
    result
}

/// The policy the deployed controller keeps for builder pods (`--builder-egress`, default
/// `Internet`), probed from a pod labelled as a builder, with real listeners on 443: on the API
/// server's address (where managed clusters serve it), on a pod in the cluster network (a router,
/// an in-cluster service), on a link-local address (cloud metadata), and — the positive control —
/// on an address outside the cluster, which a build may reach (package repositories). The
/// registry and the package repository stay reachable on their own ports; the API server's own
/// port does not.
#[tokio::test]
async fn the_controllers_builder_policy_keeps_builds_off_the_cluster_on_443() -> Result<()> {
    let test = "the_controllers_builder_policy_keeps_builds_off_the_cluster_on_443";
    let (cluster, metrics) = needs!(cluster_with_netpol(test)?);
    needs!(Cluster::with_deployed_controller_or_skip(test));
    let _guard = NETPOL_LOCK.lock().await;
    let client = cluster.client().await?;
    let node = cluster.node_ip.clone();
    let policy = wait_for(
        "the controller's NetworkPolicy strata-builder excepting the API server's address",
        Duration::from_secs(60),
        || async {
            let policy = Api::<NetworkPolicy>::namespaced(client.clone(), NAMESPACE)
                .get_opt("strata-builder")
                .await?;
            // The one the controller applied (labelled as Strata's), not one applied by hand.
            Ok(policy.filter(|p| {
                labels::managed_by_strata(&p.metadata)
                    && serde_json::to_string(&p.spec)
                        .is_ok_and(|t| t.contains(&format!("\"{node}/32\"")))
            }))
        },
    )
    .await?;
    eprintln!(
        "the controller's policy: {}",
        serde_json::to_string(&policy.spec)?
    );
    let outside = "198.51.100.7";
    let link_local = "169.254.77.1";
    let _addresses = (HostAddress::add(outside)?, HostAddress::add(link_local)?);
    listen_and_close("0.0.0.0:443")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let (builder, other) = ("e2e-netpol-builder", "e2e-netpol-in-cluster");
    for name in [builder, other] {
        let _ = pods.delete(name, &Default::default()).await;
    }
    wait_for(
        "earlier probe pods gone",
        Duration::from_secs(60),
        || async {
            let left = [pods.get_opt(builder).await?, pods.get_opt(other).await?];
            Ok(left.iter().all(Option::is_none).then_some(()))
        },
    )
    .await?;
    let image = &cluster.os_base_image;
    for (name, labels, command) in [
        (other, json!({"app": other}), "exec httpd -f -p 443 -h /etc"),
        (
            builder,
            json!({"app.kubernetes.io/component": "builder"}),
            "sleep 3600",
        ),
    ] {
        pods.create(
            &PostParams::default(),
            &sleeper(name, image, labels, command)?,
        )
        .await?;
    }
    let in_cluster = running_ip(&pods, other).await?;
    running_ip(&pods, builder).await?;
    let result = async {
        // Every listener answers a pod the policy does not select (so a block is the policy's).
        for host in [node.as_str(), outside, link_local] {
            ensure!(
                connects(cluster, NAMESPACE, other, host, 443)?,
                "a pod without the builder label cannot reach {host}:443: the probe is broken"
            );
        }
        ensure!(
            connects(cluster, NAMESPACE, other, &in_cluster, 443)?,
            "the in-cluster listener {in_cluster}:443 does not answer"
        );
        ensure!(
            connects(cluster, NAMESPACE, builder, outside, 443)?,
            "the builder cannot reach {outside}:443, outside the cluster"
        );
        eprintln!("ok: {builder} reaches {outside}:443 (outside the cluster)");
        let registry_port = port_of(&cluster.registry)?;
        let package_port = port_of(&cluster.package_repo)?;
        for (what, port) in [
            ("registry", registry_port),
            ("package repository", package_port),
        ] {
            ensure!(
                connects(cluster, NAMESPACE, builder, &node, port)?,
                "the builder cannot reach the {what} at {node}:{port}"
            );
        }
        eprintln!("ok: {builder} reaches the registry and the package repository");
        let apiserver_port = port_of(&cluster.apiserver)?;
        for (host, port) in [
            (node.as_str(), 443),
            (node.as_str(), apiserver_port),
            (in_cluster.as_str(), 443),
            (link_local, 443),
        ] {
            assert_blocked(cluster, &metrics, NAMESPACE, builder, host, port)?;
        }
        Ok(())
    }
    .await;
    print_agent_log_on_failure(cluster, &result);
    for name in [builder, other] {
        let _ = pods.delete(name, &Default::default()).await;
    }
    result
}
