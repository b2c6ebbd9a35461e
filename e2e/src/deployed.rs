//! The controller as users run it: deployed in the cluster from `manifests/` by
//! `e2e/scripts/deploy-controller.sh` (its own image, ServiceAccount and RBAC, two replicas with
//! leader election), and what the tests need around it: pools, push Secrets, MachineOSConfigs,
//! the leader, its metrics, its Events and the API server's audit log of its requests.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use strata_crds::contract::{annotations, install, mco};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};

use crate::util::wait_for;
use crate::{Cluster, repo_root, skip};

/// Where the controller runs and builds.
pub const NAMESPACE: &str = install::NAMESPACE;
const CONTROLLER_SELECTOR: &str = install::CONTROLLER_SELECTOR;
/// Prefix of the API server's username for Strata's ServiceAccounts.
pub const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:strata-system:";

static DEPLOYED: OnceLock<std::result::Result<String, String>> = OnceLock::new();

impl Cluster {
    /// The cluster with the controller deployed from `manifests/` (once per test binary), and the
    /// builder image; `None` with a printed skip message when there is no cluster or no builder.
    pub fn with_deployed_controller_or_skip(test: &str) -> Option<(&'static Cluster, String)> {
        let (cluster, _) = Self::with_builder_or_skip(test)?;
        let deployed =
            DEPLOYED.get_or_init(|| cluster.deploy_controller().map_err(|e| format!("{e:#}")));
        match deployed {
            Ok(builder) => Some((cluster, builder.clone())),
            Err(e) => {
                // The reason goes into the skip: under CI a skip fails the test at once.
                skip(test, &format!("the controller could not be deployed: {e}"));
                panic!("deploying the controller: {e}")
            }
        }
    }

    fn deploy_controller(&self) -> Result<String> {
        let script = repo_root().join("e2e/scripts/deploy-controller.sh");
        let out = Command::new(&script)
            .env("PATH", path_with(&self.bin_dir))
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        crate::measure::deploy::deployed_builder(&script, &out)
    }
}

fn path_with(dir: &std::path::Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A MachineConfigPool named `name`, rendered and rolled by the MCO stand-in (strata-e2e-mco);
/// returns once it reports its machines updated. It selects MachineConfigs by the role label, or —
/// a name too long for a label value — by `e2e.strata.dev/pool: long`.
pub async fn create_pool(client: &kube::Client, name: &str) -> Result<()> {
    let selector = if name.len() <= 63 {
        json!({"matchLabels": {"machineconfiguration.openshift.io/role": name}})
    } else {
        json!({"matchLabels": {"e2e.strata.dev/pool": "long"}})
    };
    create_pool_with(client, name, selector, 1).await
}

/// A pool selecting MachineConfigs with `selector`, of `machines` machines (see create_pool).
pub async fn create_pool_with(
    client: &kube::Client,
    name: &str,
    selector: Value,
    machines: u32,
) -> Result<()> {
    let api = pools(client);
    let pool = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
        "metadata": {"name": name, "annotations": {crate::mco::MACHINES_ANNOTATION: machines.to_string()}},
        "spec": {"machineConfigSelector": selector, "paused": false, "maxUnavailable": 1},
    });
    api.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&pool),
    )
    .await?;
    wait_for(
        &format!("pool {name} rendered and updated by the MCO stand-in"),
        Duration::from_secs(60),
        || async {
            let pool = api.get(name).await?;
            let status = &pool.data["status"];
            let updated = status["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Updated" && c["status"] == "True")
            });
            let rendered = status["configuration"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("rendered-{name}-")));
            Ok((updated && rendered).then_some(()))
        },
    )
    .await
}

pub async fn delete_pool(client: &kube::Client, name: &str) {
    let _ = pools(client).delete(name, &DeleteParams::default()).await;
}

pub fn pools(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &mco::machine_config_pool())
}

/// The builder Jobs, in the controller's namespace.
pub fn builder_jobs(client: &kube::Client) -> Api<Job> {
    Api::namespaced(client.clone(), NAMESPACE)
}

pub fn machine_configs(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &mco::machine_config())
}

/// The MachineConfig Strata writes for the tests' pool `pool` (`zz-strata-2-<pool>`: a custom
/// pool), if there is one.
pub async fn pool_machine_config(
    client: &kube::Client,
    pool: &str,
) -> Result<Option<DynamicObject>> {
    Ok(machine_configs(client)
        .get_opt(&format!("zz-strata-2-{pool}"))
        .await?)
}

/// A push Secret (legacy `.dockercfg`: the local registry needs no credentials) in the
/// controller's namespace, which every MachineOSConfig may use (the opt-in annotation says `*`).
pub async fn create_push_secret(client: &kube::Client, name: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "annotations": {annotations::ALLOWED_CONFIGS: "*"}},
        "type": "kubernetes.io/dockercfg",
        "stringData": {".dockercfg": "{}"}
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// A MachineOSConfig for pool `name` pushing to `<registry>/strata-e2e/<name>`, with the boot
/// check off: a test about booting turns it on (`boot_check.rs`); the others would each add
/// minutes of software-emulated boot.
pub fn machine_os_config(
    cluster: &Cluster,
    name: &str,
    push_secret: &str,
    fragment: &str,
) -> Result<MachineOSConfig> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
        "metadata": {"name": name},
        "spec": {
            "machineConfigPool": {"name": name},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": push_secret},
            "renderedImagePushSpec": format!("{}/strata-e2e/{name}:latest", cluster.registry),
            "containerFile": [{"containerfileArch": "NoArch", "content": fragment}],
            "bootCheck": {"mode": "Disabled"},
        }
    }))?)
}

/// Server-side apply `config` as the test's field manager.
pub async fn apply_config(client: &kube::Client, config: &MachineOSConfig) -> Result<()> {
    let name = config.metadata.name.clone().unwrap_or_default();
    Api::<MachineOSConfig>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(config),
        )
        .await?;
    Ok(())
}

/// Delete the MachineOSConfig `name` and wait until it and its builds are gone (the finalizer ran,
/// the garbage collector removed the builds).
pub async fn delete_config(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<MachineOSConfig> = Api::all(client.clone());
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    wait_for(
        &format!("MachineOSConfig {name} and its builds gone"),
        Duration::from_secs(90),
        || async {
            let config_gone = api.get_opt(name).await?.is_none();
            let builds_gone = builds
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .all(|b| b.spec.machine_os_config.name != name);
            Ok((config_gone && builds_gone).then_some(()))
        },
    )
    .await
}

/// `(status, reason, message)` of the MachineOSConfig `name`'s condition `ty`, if it has one.
pub async fn config_condition(
    configs: &Api<MachineOSConfig>,
    name: &str,
    ty: &str,
) -> Result<Option<(String, String, String)>> {
    let status = configs.get(name).await?.status.unwrap_or_default();
    Ok(status
        .conditions
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone())))
}

/// Waits until the MachineOSConfig `name`'s condition `ty` is `status` with `reason`; returns its
/// message.
pub async fn wait_for_condition(
    client: &kube::Client,
    name: &str,
    ty: &str,
    (status, reason): (&str, &str),
) -> Result<String> {
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    wait_for(
        &format!("{name}: {ty}={status} ({reason})"),
        Duration::from_secs(60),
        || async {
            Ok(config_condition(&configs, name, ty)
                .await?
                .filter(|(s, r, _)| s == status && r == reason)
                .map(|(_, _, message)| message))
        },
    )
    .await
}

/// The Jobs made for build `build` (owned by it; its label value may be cut to 63 characters).
pub async fn jobs_of_build(client: &kube::Client, build: &str) -> Result<Vec<Job>> {
    Ok(builder_jobs(client)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.name == build)
        })
        .collect())
}

/// The name of the config's current build once it is set and differs from `previous`.
pub async fn current_build(
    client: &kube::Client,
    config: &str,
    previous: Option<&str>,
) -> Result<String> {
    let api: Api<MachineOSConfig> = Api::all(client.clone());
    wait_for(
        &format!("a new build of {config}"),
        Duration::from_secs(120),
        || async {
            let status = api.get(config).await?.status.unwrap_or_default();
            Ok(status
                .machine_os_build
                .map(|b| b.name)
                .filter(|n| Some(n.as_str()) != previous))
        },
    )
    .await
}

/// Wait until build `name` has ended; returns it.
pub async fn ended_build(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<MachineOSBuild> {
    let api: Api<MachineOSBuild> = Api::all(client.clone());
    wait_for(&format!("build {name} to end"), timeout, || async {
        Ok(api
            .get_opt(name)
            .await?
            .filter(|b| b.phase().is_some_and(BuildPhase::is_terminal)))
    })
    .await
}

/// Wait until the config's current build is `build` and it succeeded and the pool is pinned to
/// its image (MachineConfig `zz-strata-2-<name>`); returns the image.
pub async fn pinned_by(
    client: &kube::Client,
    timeout: Duration,
    name: &str,
    build: &str,
) -> Result<String> {
    let built = match ended_build(client, build, timeout).await {
        Ok(built) => built,
        Err(err) => return Err(err.context(crate::diagnose::build_pods(client, build).await)),
    };
    ensure!(
        built.phase() == Some(BuildPhase::Succeeded),
        "build {build} ended {:?}: {:?}",
        built.phase(),
        built.status.and_then(|s| s.failure)
    );
    let image = built
        .status
        .and_then(|s| s.digested_image_push_spec)
        .context("no digestedImagePushSpec")?;
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let mcs = machine_configs(client);
    let mc_name = format!("zz-strata-2-{name}");
    wait_for(
        &format!("{name} pinned to {image}"),
        Duration::from_secs(60),
        || async {
            let status = configs.get(name).await?.status.unwrap_or_default();
            let mc = mcs.get_opt(&mc_name).await?;
            let pinned = status.current_image_pull_spec.as_deref() == Some(image.as_str())
                && mc.is_some_and(|mc| {
                    mc.data["spec"]["osImageURL"] == Value::String(image.clone())
                });
            Ok(pinned.then_some(()))
        },
    )
    .await?;
    Ok(image)
}

/// The HTTP status the local plain-HTTP registry answers for `image`'s manifest (`HEAD`), the
/// image named by digest (`host/repo@sha256:…`) or by tag (`host/repo:tag`).
pub fn manifest_status(image: &str) -> Result<u16> {
    let (host, path) = image.split_once('/').context("no registry host")?;
    let (repo, reference) = path
        .split_once('@')
        .or_else(|| path.rsplit_once(':'))
        .context("neither a digest nor a tag")?;
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-I", "-w", "%{http_code}", "-H"])
        .arg("Accept: application/vnd.oci.image.manifest.v1+json")
        .arg(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The builder pods of build `build` that exist now (by its label).
pub async fn builder_pods(client: &kube::Client, build: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // Build names (`<config>-<12 hex>`) of the tests' short configs fit in a label value as is.
    let selector = format!("{}={build}", strata_crds::contract::labels::BUILD);
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// The builder pod of build `build` once one of its steps runs (the build is under way).
pub async fn running_builder_pod(client: &kube::Client, build: &str) -> Result<Pod> {
    let running = wait_for(
        &format!("a running builder pod of {build}"),
        Duration::from_secs(120),
        || async {
            // Any step running: the pull and build steps are init containers.
            Ok(builder_pods(client, build).await?.into_iter().find(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.init_container_statuses
                        .iter()
                        .flatten()
                        .chain(s.container_statuses.iter().flatten())
                        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                })
            }))
        },
    )
    .await;
    match running {
        Ok(pod) => Ok(pod),
        Err(err) => Err(err.context(crate::diagnose::build_pods(client, build).await)),
    }
}

/// `kubectl logs` of a pod in the controller's namespace (empty when not available).
/// The logs of every step of builder pod `pod` (the pull, build and push containers).
pub fn pod_logs(cluster: &Cluster, pod: &str) -> String {
    cluster
        .kubectl()
        .args(["-n", NAMESPACE, "logs", "--all-containers", pod])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The ClusterRole a scraper of the controller's TLS `/metrics` needs: what OpenShift's
/// prometheus-k8s ClusterRole grants (`get` on the non-resource URL `/metrics`).
const METRICS_READER: &str = "e2e-strata-metrics-reader";

/// A token of ServiceAccount `name` in `ns`, bound to the metrics reader ClusterRole.
pub async fn metrics_reader_token(client: &kube::Client, ns: &str, name: &str) -> Result<String> {
    let token = crate::util::service_account_token(client, ns, name).await?;
    let role: ClusterRole = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": METRICS_READER},
        "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
    }))?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": METRICS_READER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": METRICS_READER},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }))?;
    let apply = PatchParams::apply("e2e").force();
    Api::<ClusterRole>::all(client.clone())
        .patch(METRICS_READER, &apply, &Patch::Apply(&role))
        .await?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(METRICS_READER, &apply, &Patch::Apply(&binding))
        .await?;
    Ok(token)
}

/// Removes what `metrics_reader_token` made cluster-wide.
pub async fn remove_metrics_reader(client: &kube::Client) {
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(METRICS_READER, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(METRICS_READER, &DeleteParams::default())
        .await;
}

/// The controller pods that are running, with their IPs.
pub async fn controller_pods(client: &kube::Client) -> Result<Vec<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(CONTROLLER_SELECTOR))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some((p.metadata.name?, status.pod_ip?))
        })
        .collect())
}

/// The controller's leader Lease: who holds it and since when.
pub async fn lease(client: &kube::Client) -> Result<Option<LeaseSpec>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    Ok(leases.get_opt(install::LEASE).await?.and_then(|l| l.spec))
}

/// The holder of the controller's leader Lease.
pub async fn lease_holder(client: &kube::Client) -> Result<Option<String>> {
    Ok(lease(client).await?.and_then(|s| s.holder_identity))
}

/// The `/metrics` text of a controller pod (pod IPs are routable from the node).
pub async fn scrape(pod_ip: &str) -> Result<String> {
    let url = format!("http://{pod_ip}:8080/metrics");
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    Ok(response.text().await?)
}

/// The `/metrics` text of the replica that leads (the one that reconciles).
pub async fn leader_metrics(client: &kube::Client) -> Result<String> {
    let leader =
        crate::measure::deploy::wait_for_leader(client, None, Duration::from_secs(60)).await?;
    scrape(&leader.ip).await
}

/// The value of an unlabelled sample `name` in a Prometheus exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `(type, reason, note)` of the Events about the MachineOSConfig `config`, oldest first.
pub async fn config_events(
    client: &kube::Client,
    config: &str,
) -> Result<Vec<(String, String, String)>> {
    let events: Api<Event> = Api::all(client.clone());
    let list = events.list(&ListParams::default()).await?;
    let mut items: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("MachineOSConfig") && r.name.as_deref() == Some(config)
            })
        })
        .collect();
    items.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(items
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect())
}

/// Wait until an Event with `reason` about `config` exists whose note contains `needle`.
pub async fn expect_event(
    client: &kube::Client,
    config: &str,
    reason: &str,
    needle: &str,
) -> Result<()> {
    wait_for(
        &format!("Event {reason} ({needle}) on MachineOSConfig {config}"),
        Duration::from_secs(30),
        || async {
            let events = config_events(client, config).await?;
            Ok(events
                .iter()
                .any(|(_, r, note)| r == reason && note.contains(needle))
                .then_some(()))
        },
    )
    .await
}

/// The API server's audit log records every request by Strata's ServiceAccounts (see
/// cluster-up.sh): none may have been refused with 403. Returns how many requests were checked,
/// so a caller can tell an empty log (nothing checked) from a clean one.
pub fn assert_no_forbidden_requests(cluster: &Cluster) -> Result<usize> {
    let path = cluster.dir.join("logs/audit.log");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the audit log {}", path.display()))?;
    let mut checked = 0;
    let mut forbidden = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let user = entry["user"]["username"].as_str().unwrap_or_default();
        if !user.starts_with(SERVICE_ACCOUNT_USER) {
            continue;
        }
        checked += 1;
        if entry["responseStatus"]["code"] == 403 {
            forbidden.push(format!(
                "{user} {} {}",
                entry["verb"].as_str().unwrap_or_default(),
                entry["requestURI"].as_str().unwrap_or_default()
            ));
        }
    }
    if !forbidden.is_empty() {
        bail!(
            "Strata's ServiceAccounts got 403 Forbidden:\n{}",
            forbidden.join("\n")
        );
    }
    Ok(checked)
}

/// Name `image` as the release's OS base (`machine-config-osimageurl` `baseOSContainerImage`,
/// which the MCO stand-in and Strata read). Cluster-wide: callers take turns.
pub async fn set_release_base(client: &kube::Client, image: &str) -> Result<()> {
    Api::<ConfigMap>::namespaced(client.clone(), "openshift-machine-config-operator")
        .patch(
            "machine-config-osimageurl",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"baseOSContainerImage": image}})),
        )
        .await?;
    Ok(())
}

/// The release's OS base as the cluster names it now.
pub async fn release_base(client: &kube::Client) -> Result<String> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "openshift-machine-config-operator")
        .get("machine-config-osimageurl")
        .await?;
    cm.data
        .and_then(|d| d.get("baseOSContainerImage").cloned())
        .context("machine-config-osimageurl has no baseOSContainerImage")
}

/// Tests of one binary that name a release base take turns (the base is cluster-wide).
static RELEASE_BASE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `body` with `image` as the release's OS base, then names the base the cluster had before
/// again, whatever `body` returned: a test sets the cluster-wide state it needs and puts it back,
/// so it passes on a cluster `make demo` left on another base, and leaves it as it found it.
pub async fn with_release_base<T, Fut>(
    client: &kube::Client,
    image: &str,
    body: impl FnOnce() -> Fut,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let _turn = RELEASE_BASE_TURN.lock().await;
    let before = release_base(client).await?;
    set_release_base(client, image).await?;
    if before != image {
        // The controller learns the base through its watch: a config applied in the same instant
        // could still be rendered on the old base (its build superseded a moment later, after a
        // test took it for the current one).
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    let outcome = body().await;
    let restored = set_release_base(client, &before).await;
    let value = outcome?;
    restored.with_context(|| format!("putting the release base back to {before}"))?;
    Ok(value)
}

/// The layer digests of `image` (`host:port/repo@sha256:…`) in the local plain-HTTP registry.
pub fn plain_registry_layers(image: &str) -> Result<Vec<String>> {
    Ok(plain_registry_layer_sizes(image)?
        .into_iter()
        .map(|(digest, _)| digest)
        .collect())
}

/// The layers of `image` in the local plain-HTTP registry: digest and compressed size, in order.
pub fn plain_registry_layer_sizes(image: &str) -> Result<Vec<(String, u64)>> {
    let (name, digest) = image.split_once('@').context("not pinned by digest")?;
    let (host, repo) = name.split_once('/').context("no registry host")?;
    let url = format!("http://{host}/v2/{repo}/manifests/{digest}");
    let out = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            &url,
        ])
        .output()?;
    ensure!(out.status.success(), "GET {url} failed");
    let manifest: Value = serde_json::from_slice(&out.stdout)?;
    manifest["layers"]
        .as_array()
        .context("no layers")?
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().context("a layer without digest")?;
            let size = l["size"].as_u64().context("a layer without size")?;
            Ok((digest.to_string(), size))
        })
        .collect()
}

/// How the examples name their package repository.
const EXAMPLE_REPO: &str = "ARG PACKAGE_REPO=http://packages.example.com/strata/";

/// The fragment of the example MachineOSConfig at `file` (below the repository), its package
/// repository pointed at the cluster's.
pub fn example_fragment(file: &str, package_repo: &str) -> Result<String> {
    let path = crate::repo_root().join(file);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let docs = crate::util::yaml_docs(&text)?;
    let content = docs
        .first()
        .and_then(|d| d["spec"]["containerFile"][0]["content"].as_str())
        .with_context(|| format!("{file}: no spec.containerFile[0].content"))?;
    Ok(content.replace(EXAMPLE_REPO, &format!("ARG PACKAGE_REPO={package_repo}")))
}

/// A MachineOSConfig named `pool` for that pool, its fragment the examples at `files` (below the
/// repository) in order, pushing with its own Secret `<pool>-push`; returns the fragment.
pub async fn apply_examples(
    cluster: &crate::Cluster,
    client: &kube::Client,
    pool: &str,
    files: &[&str],
) -> Result<String> {
    let push_secret = format!("{pool}-push");
    create_push_secret(client, &push_secret).await?;
    let mut fragment = String::new();
    for file in files {
        fragment.push_str(&example_fragment(file, &cluster.package_repo)?);
    }
    apply_config(
        client,
        &machine_os_config(cluster, pool, &push_secret, &fragment)?,
    )
    .await?;
    Ok(fragment)
}

/// `kubectl strata ARGS` against the cluster: the plugin is `STRATA_BIN` (the binary the tests
/// deploy) linked as `kubectl-strata` in a directory put first on `PATH`, as an administrator
/// installs it. Its standard output; an error with its standard error when it fails.
pub fn kubectl_strata(cluster: &crate::Cluster, args: &[&str]) -> Result<String> {
    let strata = std::env::var("STRATA_BIN")
        .context("STRATA_BIN is not set (run through `make e2e-test`)")?;
    let dir = std::env::temp_dir().join(format!("e2e-kubectl-strata-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let plugin = dir.join("kubectl-strata");
    if !plugin.exists() {
        std::os::unix::fs::symlink(&strata, &plugin)?;
    }
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = cluster
        .kubectl()
        .arg("strata")
        .args(args)
        .env("PATH", path)
        .output()
        .context("running kubectl strata")?;
    ensure!(
        out.status.success(),
        "kubectl strata {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
