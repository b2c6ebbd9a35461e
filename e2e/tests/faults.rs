//! Faults, with the controller deployed from `manifests/` (two replicas, leader election): the
//! leader killed mid-build, the builder pod evicted, a build's ConfigMap and Secret gone mid-build,
//! the registry stopped mid-build, the registry unreachable for the controller's digest check, a
//! user without rights. Each ends with one build,
//! the pool pinned, and no 403 for Strata's ServiceAccounts in the API server's audit log. The
//! tests take turns (they kill shared pieces: the leader, the registry).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, EvictParams, ListParams};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, assert_no_forbidden_requests, builder_jobs, controller_pods,
    create_pool, create_push_secret, current_build, delete_config, delete_pool, ended_build,
    lease_holder, machine_configs, machine_os_config, metric, pod_logs, running_builder_pod,
    scrape,
};
use strata_e2e::util::{install_strata_crds, wait_for};
use strata_e2e::{Cluster, needs, repo_root};

/// One fault at a time: they take away pieces every test shares.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// A fresh pool `name` with a MachineOSConfig building `fragment`; returns the build's name.
async fn start_build(
    cluster: &Cluster,
    client: &kube::Client,
    name: &str,
    fragment: &str,
) -> Result<String> {
    install_strata_crds(client).await?;
    delete_config(client, name).await?;
    create_pool(client, name).await?;
    let secret = format!("{name}-push");
    create_push_secret(client, &secret).await?;
    apply_config(
        client,
        &machine_os_config(cluster, name, &secret, fragment)?,
    )
    .await?;
    current_build(client, name, None).await
}

/// The build succeeded, it is the only build of `name`, its Job is gone, and the pool is pinned
/// to its image.
async fn assert_one_build_pinned(
    client: &kube::Client,
    name: &str,
    build: &str,
) -> Result<MachineOSBuild> {
    let ended = ended_build(client, build, BUILD_TIMEOUT).await?;
    ensure!(
        ended.phase() == Some(BuildPhase::Succeeded),
        "{build} ended {:?}: {:?}",
        ended.phase(),
        ended.status.as_ref().and_then(|s| s.failure.clone())
    );
    let image = ended
        .status
        .as_ref()
        .and_then(|s| s.digested_image_push_spec.clone())
        .context("no image")?;
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let mcs = machine_configs(client);
    wait_for(
        &format!("{name} pinned to {image}"),
        Duration::from_secs(60),
        || async {
            let status = configs.get(name).await?.status.unwrap_or_default();
            let mc = mcs.get_opt(&format!("zz-strata-2-{name}")).await?;
            Ok(
                (status.current_image_pull_spec.as_deref() == Some(image.as_str())
                    && mc.is_some_and(|mc| mc.data["spec"]["osImageURL"] == image.as_str()))
                .then_some(()),
            )
        },
    )
    .await?;
    let selector = format!("strata.dev/machine-os-config={name}");
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let all = builds
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    ensure!(
        all.len() == 1,
        "{} builds of {name}: {:?}",
        all.len(),
        all.iter()
            .map(|b| b.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    // The Job is named after the build's uid, so a second replica cannot make another; once the
    // build succeeded it is removed (finished Jobs do not pile up).
    let job = ended
        .status
        .as_ref()
        .and_then(|s| s.builder.as_ref())
        .and_then(|b| b.job.as_ref())
        .map(|j| j.name.clone())
        .context("the build names no Job")?;
    wait_for(
        &format!("the succeeded build's Job {job} removed"),
        Duration::from_secs(60),
        || async {
            let jobs = builder_jobs(client)
                .list(&ListParams::default().labels(&selector))
                .await?
                .items;
            Ok(jobs.is_empty().then_some(()))
        },
    )
    .await?;
    Ok(ended)
}

async fn clean_up(cluster: &Cluster, client: &kube::Client, name: &str) -> Result<()> {
    delete_config(client, name).await?;
    delete_pool(client, name).await;
    let checked = assert_no_forbidden_requests(cluster)?;
    ensure!(
        checked > 0,
        "no request of Strata's ServiceAccounts in the audit log"
    );
    Ok(())
}

/// Both replicas ready again (the Deployment replaces a killed one).
async fn two_replicas(client: &kube::Client) -> Result<Vec<(String, String)>> {
    wait_for(
        "two ready controller replicas",
        Duration::from_secs(120),
        || async {
            let pods = controller_pods(client).await?;
            Ok((pods.len() == 2).then_some(pods))
        },
    )
    .await
}

#[tokio::test]
async fn two_replicas_elect_one_leader() -> Result<()> {
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(
        "two_replicas_elect_one_leader"
    ));
    let _turn = TURN.lock().await;
    let client = cluster.client().await?;
    let pods = two_replicas(&client).await?;
    let holder = wait_for("a leader", Duration::from_secs(60), || async {
        let holder = lease_holder(&client).await?;
        Ok(holder.filter(|h| pods.iter().any(|(p, _)| p == h)))
    })
    .await?;
    let mut leaders = Vec::new();
    for (pod, ip) in &pods {
        let text = scrape(ip).await?;
        let leading =
            metric(&text, "strata_leader").with_context(|| format!("{pod}: no strata_leader"))?;
        if leading == 1.0 {
            leaders.push(pod.clone());
        }
    }
    ensure!(
        leaders == [holder.clone()],
        "Lease held by {holder}; replicas reporting strata_leader 1: {leaders:?}"
    );
    eprintln!("ok: two replicas, one leader ({holder}), the other waits");
    Ok(())
}

#[tokio::test]
async fn leader_killed_mid_build_another_replica_finishes_it() -> Result<()> {
    let test = "leader_killed_mid_build_another_replica_finishes_it";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let _turn = TURN.lock().await;
    let client = cluster.client().await?;
    two_replicas(&client).await?;
    let name = "e2e-leader";
    let build = start_build(cluster, &client, name, "RUN sleep 12\n").await?;
    running_builder_pod(&client, &build).await?;
    let old = lease_holder(&client).await?.context("no leader")?;
    // SIGKILL, no grace: the Lease is not released; the other replica takes it when it expires.
    Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .delete(
            &old,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await?;
    eprintln!("killed the leader {old} while {build} was building");
    let new = wait_for("a new leader", Duration::from_secs(60), || async {
        Ok(lease_holder(&client).await?.filter(|h| *h != old))
    })
    .await?;
    let ended = assert_one_build_pinned(&client, name, &build).await?;
    let started = ended.status.as_ref().and_then(|s| s.build_start.clone());
    ensure!(started.is_some(), "no buildStart recorded");
    eprintln!("ok: {new} took over and finished {build} (one build, one Job, pool pinned)");
    two_replicas(&client).await?;
    clean_up(cluster, &client, name).await
}

#[tokio::test]
async fn evicted_builder_pod_is_retried() -> Result<()> {
    let test = "evicted_builder_pod_is_retried";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let _turn = TURN.lock().await;
    let client = cluster.client().await?;
    let name = "e2e-evict";
    let build = start_build(cluster, &client, name, "RUN sleep 10\n").await?;
    let first = running_builder_pod(&client, &build).await?;
    let first = first.metadata.name.context("pod without a name")?;
    Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .evict(&first, &EvictParams::default())
        .await?;
    eprintln!("evicted builder pod {first}");
    // While the replacement runs, the Job has counted no failure: its podFailurePolicy ignores
    // disruptions. (Once the build succeeded, the Job is removed.)
    let selector = format!("strata.dev/machine-os-config={name}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let (winner, failed) = wait_for(
        "a replacement builder pod",
        Duration::from_secs(120),
        || async {
            let Some(job) = builder_jobs(&client)
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .pop()
            else {
                return Ok(None);
            };
            let replacement = pods
                .list(
                    &ListParams::default().labels(&format!("strata.dev/machine-os-build={build}")),
                )
                .await?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .find(|n| *n != first);
            let failed = job.status.and_then(|s| s.failed).unwrap_or(0);
            Ok(replacement.map(|r| (r, failed)))
        },
    )
    .await?;
    ensure!(
        failed == 0,
        "the Job counted {failed} failures for an eviction"
    );
    let ended = assert_one_build_pinned(&client, name, &build).await?;
    // The evicted pod is not an attempt: the Job ignores disruptions.
    let attempts = ended.status.as_ref().and_then(|s| s.attempts).unwrap_or(0);
    ensure!(
        attempts == 1,
        "attempts {attempts}: an eviction counted as an attempt"
    );
    eprintln!("ok: eviction ignored by the Job's failure policy; {winner} built it");
    clean_up(cluster, &client, name).await
}

/// The controller writes a build's ConfigMaps and Secret at the same time as its Job; one that is
/// missing while the build runs (its write failed, or someone deleted it) is made again.
#[tokio::test]
async fn a_running_builds_deleted_configmap_and_secret_are_made_again() -> Result<()> {
    let test = "a_running_builds_deleted_configmap_and_secret_are_made_again";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let _turn = TURN.lock().await;
    let client = cluster.client().await?;
    let name = "e2e-remake";
    let build = start_build(cluster, &client, name, "RUN sleep 30\n").await?;
    running_builder_pod(&client, &build).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let cm_name = format!("environment-{build}");
    let secret_name = format!("credentials-{build}");
    let old_cm = config_maps.get(&cm_name).await?.metadata.uid;
    let old_secret = secrets.get(&secret_name).await?.metadata.uid;
    config_maps
        .delete(&cm_name, &DeleteParams::default())
        .await?;
    secrets
        .delete(&secret_name, &DeleteParams::default())
        .await?;
    let deleted = std::time::Instant::now();
    eprintln!("deleted {cm_name} and {secret_name} while {build} runs");
    wait_for(
        "the build's ConfigMap and Secret made again",
        Duration::from_secs(60),
        || async {
            let cm = config_maps.get_opt(&cm_name).await?;
            let secret = secrets.get_opt(&secret_name).await?;
            Ok(match (cm, secret) {
                (Some(cm), Some(secret)) => {
                    ensure!(
                        cm.metadata.uid != old_cm && secret.metadata.uid != old_secret,
                        "the deleted objects are still there"
                    );
                    ensure!(
                        cm.data.is_some_and(|d| d.contains_key("registries.conf")),
                        "the ConfigMap made again lacks registries.conf"
                    );
                    Some(())
                }
                _ => None,
            })
        },
    )
    .await?;
    eprintln!(
        "made again {:.1} s after the delete",
        deleted.elapsed().as_secs_f64()
    );
    assert_one_build_pinned(&client, name, &build).await?;
    eprintln!("ok: {build} succeeded and pinned the pool");
    clean_up(cluster, &client, name).await
}

/// Runs `e2e/scripts/registry.sh stop|start`.
fn registry(action: &str) -> Result<()> {
    let ok = Command::new(repo_root().join("e2e/scripts/registry.sh"))
        .arg(action)
        .status()?
        .success();
    ensure!(ok, "registry.sh {action} failed");
    Ok(())
}

/// Starts the registry again however the test ends.
struct RegistryBack;
impl Drop for RegistryBack {
    fn drop(&mut self) {
        let _ = registry("start");
    }
}

#[tokio::test]
async fn registry_stopped_mid_build_is_retried_until_it_is_back() -> Result<()> {
    let test = "registry_stopped_mid_build_is_retried_until_it_is_back";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let _turn = TURN.lock().await;
    let client = cluster.client().await?;
    let name = "e2e-registry";
    let build = start_build(cluster, &client, name, "RUN sleep 8\n").await?;
    let pod = running_builder_pod(&client, &build)
        .await?
        .metadata
        .name
        .context("no pod name")?;
    // The base is pulled at the first STEP; stop the registry once the RUN step runs, so the push fails.
    wait_for(
        "the RUN step to start",
        Duration::from_secs(120),
        || async {
            Ok(pod_logs(cluster, &pod)
                .contains("RUN sleep 8")
                .then_some(()))
        },
    )
    .await?;
    let back = RegistryBack;
    registry("stop")?;
    eprintln!("stopped the registry while {pod} runs its RUN step");
    let selector = format!("strata.dev/machine-os-config={name}");
    let transient = wait_for(
        "the builder to fail transiently",
        Duration::from_secs(180),
        || async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
            let failed = pods
                .get(&pod)
                .await?
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default();
            Ok(failed.into_iter().find_map(|c| c.state?.terminated))
        },
    )
    .await?;
    ensure!(
        transient.exit_code == 4,
        "builder exit code {} (want 4, transient): {:?}",
        transient.exit_code,
        transient.message
    );
    let message = transient.message.unwrap_or_default();
    ensure!(
        message.contains("RegistryUnavailable"),
        "termination message {message}"
    );
    // Still building, and the pool untouched.
    let b: Api<MachineOSBuild> = Api::all(client.clone());
    let phase = b.get(&build).await?.phase();
    ensure!(
        phase.is_none_or(|p| !p.is_terminal()),
        "{build} ended {phase:?} on a transient failure"
    );
    ensure!(
        machine_configs(&client)
            .get_opt(&format!("zz-strata-2-{name}"))
            .await?
            .is_none()
    );
    // The Job counts the transient failure (and retries) before the registry is back.
    wait_for(
        "the Job to count the failure",
        Duration::from_secs(60),
        || async {
            let failed = builder_jobs(&client)
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .first()
                .and_then(|j| j.status.as_ref()?.failed)
                .unwrap_or(0);
            Ok((failed >= 1).then_some(()))
        },
    )
    .await?;
    drop(back);
    eprintln!("registry back; the Job retries");
    let ended = assert_one_build_pinned(&client, name, &build).await?;
    let attempts = ended.status.as_ref().and_then(|s| s.attempts).unwrap_or(0);
    ensure!(attempts >= 2, "attempts {attempts}");
    eprintln!(
        "ok: registry down mid-build → exit 4 RegistryUnavailable → retried → pinned after {attempts} attempts"
    );
    clean_up(cluster, &client, name).await
}

/// iptables rules that cut the controller pods off the registry; removed on drop.
struct RegistryCutOff(Vec<Vec<String>>);
impl RegistryCutOff {
    fn new(sources: &[String], registry: &str) -> Result<Self> {
        let port = registry
            .rsplit_once(':')
            .map(|x| x.1)
            .context("registry without port")?;
        let mut rules = Vec::new();
        for source in sources {
            let rule: Vec<String> = [
                "INPUT",
                "-s",
                source,
                "-p",
                "tcp",
                "--dport",
                port,
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ]
            .map(String::from)
            .to_vec();
            let ok = Command::new("iptables")
                .arg("-I")
                .args(&rule)
                .status()?
                .success();
            if !ok {
                bail!("iptables -I {}", rule.join(" "));
            }
            rules.push(rule);
        }
        Ok(Self(rules))
    }
}
impl Drop for RegistryCutOff {
    fn drop(&mut self) {
        for rule in &self.0 {
            let _ = Command::new("iptables").arg("-D").args(rule).status();
        }
    }
}

#[tokio::test]
async fn digest_check_waits_for_an_unreachable_registry() -> Result<()> {
    let test = "digest_check_waits_for_an_unreachable_registry";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let _turn = TURN.lock().await;
    let client = cluster.client().await?;
    let pods = two_replicas(&client).await?;
    let name = "e2e-verify";
    let build = start_build(cluster, &client, name, "RUN sleep 3\n").await?;
    running_builder_pod(&client, &build).await?;
    // The builder still reaches the registry; only the controller's digest check cannot.
    let ips: Vec<String> = pods.into_iter().map(|(_, ip)| ip).collect();
    let cut = RegistryCutOff::new(&ips, &cluster.registry)?;
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let message = wait_for("Building/VerifyingDigest", BUILD_TIMEOUT, || async {
        let status = configs.get(name).await?.status.unwrap_or_default();
        Ok(status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Building" && c.status == "True" && c.reason == "VerifyingDigest")
            .map(|c| c.message))
    })
    .await?;
    ensure!(
        message.contains("cannot verify it in the registry yet, retrying"),
        "message {message}"
    );
    let b: Api<MachineOSBuild> = Api::all(client.clone());
    let phase = b.get(&build).await?.phase();
    ensure!(
        phase != Some(BuildPhase::Succeeded),
        "{build} Succeeded before its digest was verified"
    );
    ensure!(
        machine_configs(&client)
            .get_opt(&format!("zz-strata-2-{name}"))
            .await?
            .is_none(),
        "pinned unverified"
    );
    eprintln!("ok: registry unreachable for the controller → Building/VerifyingDigest: {message}");
    drop(cut);
    assert_one_build_pinned(&client, name, &build).await?;
    eprintln!("ok: registry reachable again → verified and pinned");
    clean_up(cluster, &client, name).await
}

#[tokio::test]
async fn user_without_rights_cannot_create_a_machineosconfig() -> Result<()> {
    let test = "user_without_rights_cannot_create_a_machineosconfig";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let config = serde_json::to_string(&machine_os_config(
        cluster,
        "e2e-nobody",
        "push",
        "RUN true\n",
    )?)?;
    let create = |who: &str| -> Result<std::process::Output> {
        use std::io::Write;
        let mut child = cluster
            .kubectl()
            .args(["create", "-f", "-", &format!("--as={who}")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(config.as_bytes())?;
        Ok(child.wait_with_output()?)
    };
    for who in [
        "e2e-nobody",
        "system:serviceaccount:strata-system:strata-builder",
    ] {
        let out = create(who)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{who} created a MachineOSConfig");
        ensure!(
            stderr.contains("is forbidden") && stderr.contains("machineosconfigs"),
            "{who}: {stderr}"
        );
        eprintln!("ok: {who}: {}", stderr.trim());
    }
    Ok(())
}
