//! Strata builds in the OpenShift environment of the local cluster (`scripts/openshift-env.sh`),
//! through the deployed controller, using only what the cluster's objects hold:
//!
//! - the release names the CoreOS-like base in the release registry (TLS from a CA only in
//!   `images.config.openshift.io/cluster` → `openshift-config/registry-cas`, credentials only in
//!   the global pull secret `openshift-config/pull-secret`); the MachineOSConfig names no
//!   `baseImagePullSecret`;
//! - it pushes to the internal registry (TLS from the service CA, `openshift-service-ca.crt`);
//! - pods reach those registries and the HTTPS package repository only through the proxy of
//!   `proxies.config.openshift.io/cluster`;
//! - a fragment installs a package from the HTTPS repository with the entitlement certificate
//!   (`openshift-config-managed/etc-pki-entitlement`, mounted at `/etc/pki/entitlement` in RUN
//!   steps: the config opts in with `spec.entitlement: Mount`), trusting its server through
//!   `openshift-config/user-ca-bundle`;
//! - the pushed image holds the package and neither the entitlement nor the cluster's CAs;
//! - a release named by a source that does not resolve (`quay.example.invalid/…@sha256:…`) is
//!   resolved and pulled from the mirror an ImageDigestMirrorSet names.
//!
//! The release base is cluster-wide: the two tests take turns (a lock) and put the small base back.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use kube::api::Api;
use serde_json::Value;
use strata_crds::{BuildPhase, MachineOSBuild};
use strata_e2e::deployed::{
    apply_config, create_pool, create_push_secret, current_build, delete_config, delete_pool,
    ended_build, machine_os_config, pinned_by, plain_registry_layers, with_release_base,
};
use strata_e2e::util::{install_strata_crds, wait_for};
use strata_e2e::{Cluster, needs};
use tokio::sync::Mutex;

/// The release base is one ConfigMap for the whole cluster.
static RELEASE: Mutex<()> = Mutex::const_new(());
/// A cold pull of the 1.3 GiB base through the proxy, the fragment, the gate, the push.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The `CONNECT host:port` targets squid logged at or after `since` (access.log: time first).
fn tunnels_since(log: &Path, since: f64) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(log).with_context(|| log.display().to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let time: f64 = fields.first()?.parse().ok()?;
            let i = fields.iter().position(|f| *f == "CONNECT")?;
            (time >= since).then(|| fields.get(i + 1).map(|t| t.to_string()))?
        })
        .collect())
}

/// `curl` against the internal registry, trusting the service CA (the host has it in pki/).
fn internal_registry_get(cluster: &Cluster, url: &str, accept: &str) -> Result<Vec<u8>> {
    let ca = cluster.openshift.dir.join("pki/service-ca.crt");
    let out = Command::new("curl")
        .args(["-sfL", "--max-time", "120", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Accept: {accept}"), url])
        .output()?;
    ensure!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// The layers of `image` (in the internal registry) after the base's first `base_layers`,
/// uncompressed. (Pushed to another registry than the base's, the base's layers are compressed
/// again, so their digests differ; their number does not.)
fn added_layers(cluster: &Cluster, image: &str, base_layers: usize) -> Result<Vec<Vec<u8>>> {
    let (name, digest) = image.split_once('@').context("not pinned by digest")?;
    let (host, repo) = name.split_once('/').context("no registry host")?;
    let manifest: Value = serde_json::from_slice(&internal_registry_get(
        cluster,
        &format!("https://{host}/v2/{repo}/manifests/{digest}"),
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
    )?)?;
    let mut added = Vec::new();
    let layers = manifest["layers"].as_array().context("no layers")?;
    ensure!(
        layers.len() > base_layers,
        "{} layers: no more than the base's {base_layers}",
        layers.len()
    );
    for layer in &layers[base_layers..] {
        let d = layer["digest"].as_str().context("a layer without digest")?;
        let blob = internal_registry_get(
            cluster,
            &format!("https://{host}/v2/{repo}/blobs/{d}"),
            "*/*",
        )?;
        let mut gunzip = Command::new("sh")
            .args(["-c", "gzip -dc 2>/dev/null || zstd -dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        {
            use std::io::Write;
            let mut stdin = gunzip.stdin.take().context("stdin")?;
            let writer = std::thread::spawn(move || stdin.write_all(&blob));
            let out = gunzip.wait_with_output()?;
            let _ = writer.join();
            ensure!(out.status.success(), "layer {d} does not decompress");
            added.push(out.stdout);
        }
    }
    Ok(added)
}

/// The entry names of an uncompressed tar.
fn tar_names(tar: &[u8]) -> Result<Vec<String>> {
    let mut child = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let bytes = tar.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&bytes)
    });
    let out = child.wait_with_output()?;
    let _ = writer.join();
    ensure!(out.status.success(), "tar -t failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn builds_with_the_global_pull_secret_cluster_cas_proxy_and_entitlement() -> Result<()> {
    let test = "builds_with_the_global_pull_secret_cluster_cas_proxy_and_entitlement";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let _release = RELEASE.lock().await;
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    const POOL: &str = "e2e-osenv";
    with_release_base(&client, &cluster.openshift.release_os_image, || async {
        let result = openshift_build(cluster, &client, POOL).await;
        let _ = delete_config(&client, POOL).await;
        delete_pool(&client, POOL).await;
        result
    })
    .await
}

async fn openshift_build(cluster: &Cluster, client: &kube::Client, pool: &str) -> Result<()> {
    let env = &cluster.openshift;
    create_pool(client, pool).await?;
    let push_secret = format!("{pool}-push");
    create_push_secret(client, &push_secret).await?;
    let repo = &env.package_repo_https;
    let host = repo
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    // As a RHEL fragment points dnf at /etc/pki/entitlement, this one points apt at it; the
    // server's CA comes from the base's bundle, which RUN steps see extended with the cluster's.
    let fragment = format!(
        r#"ARG PACKAGE_REPO={repo}
RUN printf 'Types: deb\nURIs: %s\nSuites: strata\nComponents: main\nSigned-By: /etc/apt/keyrings/strata-local.asc\n' \
      "$PACKAGE_REPO" > /etc/apt/sources.list.d/strata-entitled.sources && \
    cert=$(ls /etc/pki/entitlement/*.pem | grep -v -- -key.pem) && \
    key=$(ls /etc/pki/entitlement/*-key.pem) && \
    printf 'Acquire::https::{host}::SslCert "%s";\nAcquire::https::{host}::SslKey "%s";\n' "$cert" "$key" \
      > /etc/apt/apt.conf.d/99entitlement && \
    apt-get update && apt-get install -y --no-install-recommends tree && \
    rm -f /etc/apt/apt.conf.d/99entitlement /etc/apt/sources.list.d/strata-entitled.sources && \
    rm -rf /run/apt /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /var/cache/ldconfig && \
    tree --version
"#
    );
    let mut config = machine_os_config(cluster, pool, &push_secret, &fragment)?;
    config.spec.rendered_image_push_spec =
        format!("{}/strata-e2e/{pool}:latest", env.internal_registry);
    // The entitlement reaches only the RUN steps of configs that opt in.
    config.spec.entitlement = Some(strata_crds::Entitlement::Mount);
    ensure!(
        config.spec.base_image_pull_secret.is_none(),
        "the config must rely on the global pull secret"
    );
    let started = now();
    apply_config(client, &config).await?;
    let build = current_build(client, pool, None).await?;
    let built = ended_build(client, &build, BUILD_TIMEOUT).await?;
    ensure!(
        built.phase() == Some(BuildPhase::Succeeded),
        "{build} ended {:?}: {:?}",
        built.phase(),
        built.status.as_ref().and_then(|s| s.failure.clone())
    );
    let image = pinned_by(client, Duration::from_secs(60), pool, &build).await?;
    ensure!(
        built.spec.base_image == env.release_os_image,
        "built on {}, not the release's {}",
        built.spec.base_image,
        env.release_os_image
    );
    ensure!(
        image.starts_with(&format!(
            "{}/strata-e2e/{pool}@sha256:",
            env.internal_registry
        )),
        "pinned {image}, not an image of the internal registry"
    );

    // Pods reach the TLS registries and the HTTPS repository only through the proxy: the build's
    // pull, RUN step and push each left a tunnel in its log.
    let tunnels = tunnels_since(&env.proxy_log, started)?;
    let repo_target = repo
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    for (what, target) in [
        ("the release registry", &env.release_registry),
        ("the internal registry", &env.internal_registry),
        ("the HTTPS package repository", &repo_target),
    ] {
        ensure!(
            tunnels.iter().any(|t| t == target),
            "no CONNECT to {what} ({target}) in the proxy's log since the build started: {tunnels:?}"
        );
    }

    // The image holds the package, and neither the entitlement nor a cluster CA.
    let entitlement_key = std::fs::read_to_string(env.dir.join("pki/entitlement-key.pem"))?;
    let key_line = entitlement_key
        .lines()
        .nth(1)
        .context("the entitlement key has no body")?;
    let user_ca = std::fs::read_to_string(env.dir.join("pki/user-ca.crt"))?;
    let ca_line = user_ca.lines().nth(1).context("user CA has no body")?;
    let added = added_layers(
        cluster,
        &image,
        plain_registry_layers(&cluster.os_image)?.len(),
    )?;
    ensure!(!added.is_empty(), "the build added no layer");
    let mut names = Vec::new();
    for layer in &added {
        ensure!(
            !contains(layer, key_line.as_bytes()),
            "a pushed layer holds the entitlement key"
        );
        ensure!(
            !contains(layer, ca_line.as_bytes()),
            "a pushed layer holds the cluster's user CA"
        );
        names.extend(tar_names(layer)?);
    }
    ensure!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "usr/bin/tree"),
        "usr/bin/tree is not in the added layers: {names:?}"
    );
    // buildah leaves the mount point, an empty directory, as it does for the MCO's builds;
    // nothing in it may be pushed.
    let leaked: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.trim_start_matches("./")
                .strip_prefix("etc/pki/entitlement/")
                .is_some_and(|rest| !rest.is_empty())
        })
        .collect();
    ensure!(
        leaked.is_empty(),
        "the entitlement is in a pushed layer: {leaked:?}"
    );
    eprintln!(
        "ok: {build} pulled {} with the global pull secret and registry-cas, installed tree from \
         {repo} with the entitlement through the proxy ({} tunnels), pushed {image} (service CA); \
         {} added layers hold neither the entitlement nor a cluster CA",
        env.release_os_image,
        tunnels.len(),
        added.len()
    );
    Ok(())
}

#[tokio::test]
async fn a_release_named_by_an_unresolvable_source_builds_from_its_mirror() -> Result<()> {
    let test = "a_release_named_by_an_unresolvable_source_builds_from_its_mirror";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let _release = RELEASE.lock().await;
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    const POOL: &str = "e2e-mirror";
    let source = cluster.openshift.mirror_source_os_base_image.clone();
    with_release_base(&client, &source, || async {
        let result = mirrored_build(cluster, &client, POOL, &source).await;
        let _ = delete_config(&client, POOL).await;
        delete_pool(&client, POOL).await;
        result
    })
    .await
}

async fn mirrored_build(
    cluster: &Cluster,
    client: &kube::Client,
    pool: &str,
    source: &str,
) -> Result<()> {
    create_pool(client, pool).await?;
    let push_secret = format!("{pool}-push");
    create_push_secret(client, &push_secret).await?;
    let started = now();
    apply_config(
        client,
        &machine_os_config(
            cluster,
            pool,
            &push_secret,
            "RUN echo mirrored > /etc/strata-mirrored\n",
        )?,
    )
    .await?;
    let build = current_build(client, pool, None).await?;
    let image = pinned_by(client, Duration::from_secs(300), pool, &build).await?;
    let built = Api::<MachineOSBuild>::all(client.clone())
        .get(&build)
        .await?;
    ensure!(
        built.spec.base_image == source,
        "the build names {} instead of the release's {source}",
        built.spec.base_image
    );
    let mirror = &cluster.openshift.mirror_registry;
    let tunnels = wait_for(
        "the mirror in the proxy's log",
        Duration::from_secs(10),
        || async {
            let t = tunnels_since(&cluster.openshift.proxy_log, started)?;
            Ok(t.iter().any(|t| t == mirror).then_some(t))
        },
    )
    .await?;
    ensure!(
        !tunnels
            .iter()
            .any(|t| t.starts_with("quay.example.invalid")),
        "something tried the unresolvable source through the proxy: {tunnels:?}"
    );
    eprintln!("ok: {build} on {source}, pulled from the mirror {mirror}; pinned {image}");
    Ok(())
}
