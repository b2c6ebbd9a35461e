//! Builds on a cluster of two nodes (the local cluster's second node, `second-node.sh`: its own
//! kubelet, containerd and network namespace, tainted `e2e.strata.dev/second-node`). The
//! controller is redeployed with `--builder-tolerations` for that taint and:
//! - `--builder-node-selector` naming the second node: a build runs there (pulls the builder image
//!   into that node's containerd, pushes from its pod network) and pins its pool; redeployed naming
//!   the first node, the next pool's build runs there while the first still runs on the second;
//!   both pin. Strata's own claim (the hostPath provisioner's) is mounted by both nodes at once: on
//!   this one host it is one directory, where an attachable ReadWriteOnce volume would make the
//!   second pod wait for the first (docs/reference.md, the cache claim);
//! - an administrator's claim bound to the first node (a volume with node affinity, as a
//!   local-storage class makes) with the selector naming the second: the builder pod cannot be
//!   scheduled, and the MachineOSConfig says so (Building, `BuilderCannotStart`, the scheduler's
//!   message), with an Event and `strata_build_waiting{reason="Unschedulable"}`; the pool is not
//!   touched;
//! - redeployed with that claim and no selector: Strata replaces the waiting Job, made with the
//!   old selector (Event `BuilderReplaced`), the scheduler places the new pod on the claim's node,
//!   and it pins.
//!
//! Redeploys the controller, so it is a test binary of its own.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use strata_crds::MachineOSBuild;
use strata_e2e::cache_claim;
use strata_e2e::deployed::{
    NAMESPACE, apply_config, create_pool, create_push_secret, current_build, delete_config,
    delete_pool, expect_event, leader_metrics, machine_os_config, pinned_by, pool_machine_config,
    running_builder_pod, wait_for_condition,
};
use strata_e2e::measure::deploy::{DeployOptions, deploy};
use strata_e2e::{Cluster, needs, skip};

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const PUSH_SECRET: &str = "e2e-nodes-push";
const CLAIM: &str = "e2e-node-local";
const POOLS: [&str; 3] = ["e2e-nodes-a", "e2e-nodes-b", "e2e-nodes-c"];

#[tokio::test]
async fn builds_run_on_the_nodes_they_are_sent_to() -> Result<()> {
    let test = "builds_run_on_the_nodes_they_are_sent_to";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let Some((second, taint)) = cluster.second_node.clone() else {
        skip(
            test,
            "the cluster has no second node (started with STRATA_SECOND_NODE=0)",
        );
        return Ok(());
    };
    let client = cluster.client().await?;
    let first = first_node(cluster, &client).await?;
    let nodes = Nodes {
        first,
        second,
        tolerate: format!(
            r#"--builder-tolerations=[{{"key":"{taint}","operator":"Exists","effect":"NoSchedule"}}]"#
        ),
    };
    let dir = cluster.dir.join(CLAIM);
    let result = check(cluster, &client, &nodes, &dir).await;
    deploy(cluster, &DeployOptions::default()).await?;
    for pool in POOLS {
        delete_config(&client, pool).await?;
        delete_pool(&client, pool).await;
    }
    cache_claim::remove(&client, CLAIM, &dir).await;
    result
}

struct Nodes {
    first: String,
    second: String,
    /// The controller flag that lets builder pods onto the second node.
    tolerate: String,
}

impl Nodes {
    /// Controller flags: tolerate the second node; select `node`, when given; `extra`.
    fn deployment(&self, node: Option<&str>, extra: &[String]) -> DeployOptions {
        let mut controller_args = vec![self.tolerate.clone()];
        controller_args
            .extend(node.map(|n| format!("--builder-node-selector=kubernetes.io/hostname={n}")));
        controller_args.extend(extra.iter().cloned());
        DeployOptions {
            controller_args,
            ..DeployOptions::default()
        }
    }
}

/// The name of the node whose address is the cluster's node IP (the first kubelet's).
async fn first_node(cluster: &Cluster, client: &kube::Client) -> Result<String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await?;
    nodes
        .items
        .iter()
        .find(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .is_some_and(|a| a.iter().any(|a| a.address == cluster.node_ip))
        })
        .and_then(|n| n.metadata.name.clone())
        .context("no node has the cluster's node IP")
}

/// The nodes whose kubelet started a container of build `build`'s builder pods, from the
/// kubelet's `Started` Events (they outlive the pods; the Job's pods are named after it,
/// `build-<build>-<uid>-<suffix>`).
async fn nodes_that_ran(client: &kube::Client, build: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let prefix = format!("build-{build}-");
    let mut nodes: Vec<String> = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("Started")
                && e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("Pod")
                        && r.name.as_deref().is_some_and(|n| n.starts_with(&prefix))
                })
        })
        .filter_map(|e| {
            e.reporting_instance
                .filter(|i| !i.is_empty())
                .or_else(|| e.deprecated_source.and_then(|s| s.host))
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

async fn check(
    cluster: &Cluster,
    client: &kube::Client,
    nodes: &Nodes,
    dir: &std::path::Path,
) -> Result<()> {
    create_push_secret(client, PUSH_SECRET).await?;
    for pool in POOLS {
        delete_config(client, pool).await?;
        create_pool(client, pool).await?;
    }
    let [a, b, c] = POOLS;
    // A nonce in every RUN: the layers of an earlier run, left in the configs' stores on the
    // claim, must not turn a step into a cache hit.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let apply = |pool: &'static str, run: &'static str| async move {
        let fragment = format!("RUN {run} && echo {pool}-{nonce} > /etc/e2e-node\n");
        apply_config(
            client,
            &machine_os_config(cluster, pool, PUSH_SECRET, &fragment)?,
        )
        .await
    };
    let builds: Api<MachineOSBuild> = Api::all(client.clone());

    // The selector names the second node: pool a's build runs there, long enough to outlast a
    // redeployment of the controller.
    deploy(cluster, &nodes.deployment(Some(&nodes.second), &[])).await?;
    apply(a, "sleep 75").await?;
    let build_a = current_build(client, a, None).await?;
    let pod_a = running_builder_pod(client, &build_a).await?;
    ensure!(
        node_of(&pod_a) == nodes.second,
        "{a}'s builder pod runs on {:?}, not on {} the node selector names",
        node_of(&pod_a),
        nodes.second
    );
    eprintln!("ok: {build_a} runs on {}", nodes.second);

    // Now the first node: pool b's build runs there, from apply to pin, while a's still runs on
    // the second. b's build takes seconds: where it ran is read after, from the kubelet's Events
    // (a poll for its running pod could come too late to see it).
    deploy(cluster, &nodes.deployment(Some(&nodes.first), &[])).await?;
    apply(b, "true").await?;
    let build_b = current_build(client, b, None).await?;
    let (image_a, image_b) = futures::future::try_join(
        pinned_by(client, BUILD_TIMEOUT, a, &build_a),
        pinned_by(client, BUILD_TIMEOUT, b, &build_b),
    )
    .await?;
    let ran_b = nodes_that_ran(client, &build_b).await?;
    ensure!(
        ran_b == [nodes.first.clone()],
        "{b}'s builder pod ran on {ran_b:?}, not on {}",
        nodes.first
    );
    // b began after a's pod was seen running; it overlapped a if it ended first.
    let ended = |build: MachineOSBuild| build.status.and_then(|s| s.build_end).map(|t| t.0);
    let (end_a, end_b) = (
        ended(builds.get(&build_a).await?),
        ended(builds.get(&build_b).await?),
    );
    ensure!(
        end_a.is_some() && end_b.is_some() && end_b < end_a,
        "{build_b} ended at {end_b:?}, not before {build_a} at {end_a:?}: the builds did not \
         overlap"
    );
    eprintln!(
        "ok: {build_b} ran on {} while {build_a} ran on {}",
        nodes.first, nodes.second
    );
    ensure!(image_a != image_b, "both pools were pinned to {image_a}");
    eprintln!("ok: both pinned ({image_a}, {image_b})");

    // A claim bound to the first node, builds sent to the second: no node can take the pod.
    cache_claim::create_on_node(client, CLAIM, dir, Some(&nodes.first)).await?;
    let claim = [format!("--cache-claim={CLAIM}")];
    deploy(cluster, &nodes.deployment(Some(&nodes.second), &claim)).await?;
    apply(c, "true").await?;
    let build_c = current_build(client, c, None).await?;
    let said = wait_for_condition(client, c, "Building", ("True", "BuilderCannotStart")).await?;
    ensure!(
        said.contains("(Unschedulable)") && said.contains("PersistentVolume's node affinity"),
        "{c}'s Building condition does not give the scheduler's reason: {said}"
    );
    expect_event(
        client,
        c,
        "BuilderCannotStart",
        "PersistentVolume's node affinity",
    )
    .await?;
    let metrics = leader_metrics(client).await?;
    let waiting = metrics.lines().find(|l| {
        l.starts_with("strata_build_waiting{")
            && l.contains(&format!("pool=\"{c}\""))
            && l.contains("reason=\"Unschedulable\"")
    });
    ensure!(
        waiting.is_some_and(|l| l.ends_with(" 1")),
        "no strata_build_waiting{{pool=\"{c}\",reason=\"Unschedulable\"}} 1 in the leader's metrics"
    );
    ensure!(
        pool_machine_config(client, c).await?.is_none(),
        "{c}'s pool was given a MachineConfig by a build that never ran"
    );
    eprintln!("ok: {build_c} cannot be scheduled, and {c} says why: {said}");

    // The way out: the controller redeployed with that claim and no selector. The waiting Job
    // was made with the old selector: Strata replaces it (Event BuilderReplaced), and the
    // scheduler puts the new pod on the claim's node.
    // It may have run and pinned before the redeployment is seen through: where it ran is read
    // from the kubelet's Events (CI once looked for its running pod after it had ended).
    deploy(cluster, &nodes.deployment(None, &claim)).await?;
    expect_event(client, c, "BuilderReplaced", "placement").await?;
    pinned_by(client, BUILD_TIMEOUT, c, &build_c).await?;
    let ran_c = nodes_that_ran(client, &build_c).await?;
    ensure!(
        ran_c == [nodes.first.clone()],
        "{build_c}, made again, mounts a claim bound to {} but ran on {ran_c:?}",
        nodes.first
    );
    eprintln!(
        "ok: {build_c}'s Job, replaced with the new placement, ran on its claim's node {} and pinned",
        nodes.first
    );
    Ok(())
}
