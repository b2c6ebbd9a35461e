//! The OpenShift environment of the local cluster (`e2e/scripts/openshift-env.sh`, README "The
//! OpenShift environment") behaves as the real thing does — checked from the host with curl and
//! skopeo, and from a pod, using only what the cluster's objects hold (the credentials exist only
//! in `openshift-config/pull-secret`, the CAs only in the ConfigMaps OpenShift keeps them in):
//!
//! - the release registry refuses anonymous pulls (401) and untrusted TLS, and serves the base by
//!   its digest with the pull secret's credentials and the CA from `registry-cas`;
//! - the internal registry's certificate verifies against `openshift-service-ca.crt` of a freshly
//!   created namespace (published and injected by the service-CA stand-in), and accepts pushes with
//!   any credential;
//! - the mirror serves the base by the same digest while the source name does not resolve, and
//!   containers/image (skopeo) given the `registries.conf` the ImageDigestMirrorSet /
//!   ImageTagMirrorSet mean pulls the source name from the mirror;
//! - the HTTPS package repository refuses a client without the entitlement certificate and serves
//!   `InRelease` with it (server trusted through `user-ca-bundle`);
//! - a pod cannot reach any of them directly, only through the proxy of
//!   `proxies.config.openshift.io/cluster`, and the proxy's access log shows its tunnels; the open
//!   plain-HTTP registry stays direct. In the pod `apt-get` installs a package from the HTTPS
//!   repository through the proxy with the entitlement certificate, as a fragment's RUN step would.
//!
//! The pod runs the CoreOS-like OS image (`STRATA_OS_IMAGE`): it has curl, skopeo, openssl, apt and
//! bash, it is what RUN steps run in, and it comes from the open registry. The busybox os-base has
//! no TLS client with certificates, and the builder image has no curl.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_e2e::util::{delete_namespace, port_of, ready_pod_ip, test_namespace, wait_for};
use strata_e2e::{Cluster, needs};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json,\
application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.index.v1+json,\
application/vnd.docker.distribution.manifest.list.v2+json";

fn config_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("config.openshift.io", "v1", kind),
        plural,
    )
}

async fn cluster_object(
    client: &kube::Client,
    kind: &str,
    plural: &str,
    name: &str,
) -> Result<Value> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &config_resource(kind, plural));
    let obj = api
        .get(name)
        .await
        .with_context(|| format!("{plural}.config.openshift.io/{name}"))?;
    Ok(serde_json::to_value(obj)?)
}

async fn configmap(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, String>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("ConfigMap {ns}/{name}"))?;
    Ok(cm.data.unwrap_or_default())
}

async fn secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<(String, BTreeMap<String, Vec<u8>>)> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("Secret {ns}/{name}"))?;
    let data = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok((s.type_.unwrap_or_default(), data))
}

/// `ca-bundle.crt` of ConfigMap `ns/name`.
async fn bundle(client: &kube::Client, ns: &str, name: &str) -> Result<String> {
    configmap(client, ns, name)
        .await?
        .remove("ca-bundle.crt")
        .with_context(|| format!("ConfigMap {ns}/{name} has no ca-bundle.crt"))
}

/// What the cluster's objects say about the environment: the only source of credentials and CAs.
struct Published {
    /// `.dockerconfigjson` of `openshift-config/pull-secret`.
    pull_secret: Vec<u8>,
    /// `openshift-config/registry-cas` (via `images.config.openshift.io/cluster`).
    registry_cas: BTreeMap<String, String>,
    /// `openshift-config/user-ca-bundle` `ca-bundle.crt`.
    user_ca: String,
    /// `openshift-config-managed/service-ca` `ca-bundle.crt`.
    service_ca: String,
    /// `openshift-config-managed/etc-pki-entitlement`.
    entitlement: Vec<u8>,
    entitlement_key: Vec<u8>,
}

impl Published {
    async fn read(client: &kube::Client) -> Result<Published> {
        let image = cluster_object(client, "Image", "images", "cluster").await?;
        let cas_name = image["spec"]["additionalTrustedCA"]["name"]
            .as_str()
            .context("images.config.openshift.io/cluster has no spec.additionalTrustedCA.name")?
            .to_string();
        let (ty, ps) = secret(client, "openshift-config", "pull-secret").await?;
        ensure!(
            ty == "kubernetes.io/dockerconfigjson",
            "pull-secret has type {ty}"
        );
        let (_, ent) = secret(client, "openshift-config-managed", "etc-pki-entitlement").await?;
        Ok(Published {
            pull_secret: ps
                .get(".dockerconfigjson")
                .cloned()
                .context("pull-secret without .dockerconfigjson")?,
            registry_cas: configmap(client, "openshift-config", &cas_name).await?,
            user_ca: bundle(client, "openshift-config", "user-ca-bundle").await?,
            service_ca: bundle(client, "openshift-config-managed", "service-ca").await?,
            entitlement: ent
                .get("entitlement.pem")
                .cloned()
                .context("entitlement.pem")?,
            entitlement_key: ent
                .get("entitlement-key.pem")
                .cloned()
                .context("entitlement-key.pem")?,
        })
    }

    /// The CA `registry-cas` holds for `host:port` (OpenShift's key: `host..port`).
    fn registry_ca(&self, host_port: &str) -> Result<&str> {
        let key = host_port.replacen(':', "..", 1);
        self.registry_cas
            .get(&key)
            .map(String::as_str)
            .with_context(|| format!("registry-cas has no key {key}"))
    }

    /// `user:password` of the pull secret's entry for `host:port`.
    fn credentials(&self, host_port: &str) -> Result<String> {
        use base64::Engine;
        let json: Value = serde_json::from_slice(&self.pull_secret)?;
        let auth = json["auths"][host_port]["auth"]
            .as_str()
            .with_context(|| format!("the pull secret has no auth for {host_port}"))?;
        Ok(String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(auth)?,
        )?)
    }
}

/// A scratch directory for files the host-side tools read (in the cluster dir: gone with it).
fn scratch(cluster: &Cluster, name: &str) -> Result<PathBuf> {
    let dir = cluster.dir.join("test-openshift-env").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> Result<PathBuf> {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&p, content)?;
    Ok(p)
}

fn run(cmd: &mut Command) -> Result<Output> {
    cmd.output().with_context(|| format!("running {cmd:?}"))
}

/// curl on the host: (exit code, HTTP status, body). `-s`, 20 s limit, never a proxy unless
/// `args` names one.
fn curl(args: &[&str]) -> Result<(i32, String, Vec<u8>)> {
    let out = run(Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            "--noproxy",
            "*",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy"))?;
    let mut body = out.stdout;
    let nl = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&body[nl..]).trim().to_string();
    body.truncate(nl);
    Ok((out.status.code().unwrap_or(-1), code, body))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn digest_of(reference: &str) -> &str {
    reference
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default()
}

/// `https://<host:port>/v2/<repo>/manifests/<digest>` of a digest-pinned reference.
fn manifest_url(reference: &str) -> Result<String> {
    let (name, digest) = reference.split_once('@').context("not digest-pinned")?;
    let (host, repo) = name.split_once('/').context("no repository")?;
    Ok(format!("https://{host}/v2/{repo}/manifests/{digest}"))
}

#[tokio::test]
async fn release_registry_needs_the_pull_secret_and_the_ca_from_registry_cas() -> Result<()> {
    let test = "release_registry_needs_the_pull_secret_and_the_ca_from_registry_cas";
    let cluster = needs!(Cluster::shared_or_skip(test));
    let env = &cluster.openshift;
    let client = cluster.client().await?;
    let published = Published::read(&client).await?;
    let dir = scratch(cluster, "release")?;
    let ca = write(
        &dir,
        "release-ca.crt",
        published.registry_ca(&env.release_registry)?,
    )?;
    let ca = ca.to_str().unwrap_or_default();
    let creds = published.credentials(&env.release_registry)?;
    let url = manifest_url(&env.release_os_base_image)?;
    let accept = format!("Accept: {MANIFEST_TYPES}");

    // The same images as in the open registry, by the same digests.
    for (release, open) in [
        (&env.release_os_base_image, &cluster.os_base_image),
        (&env.release_os_base_image_next, &cluster.os_base_image_next),
        (&env.release_os_image, &cluster.os_image),
    ] {
        ensure!(
            release.starts_with(&format!("{}/", env.release_registry))
                && digest_of(release) == digest_of(open),
            "{release} is not {open} by digest in the release registry"
        );
    }
    // Untrusted TLS: the system trust store, or another cluster CA, does not verify it.
    let (rc, ..) = curl(&[&format!("https://{}/v2/", env.release_registry)])?;
    ensure!(
        rc == 60,
        "curl with the system CAs: exit {rc}, want 60 (certificate not trusted)"
    );
    let user_ca = write(&dir, "user-ca.crt", &published.user_ca)?;
    let (rc, ..) = curl(&["--cacert", user_ca.to_str().unwrap_or_default(), &url])?;
    ensure!(rc == 60, "curl with the user CA: exit {rc}, want 60");
    // Trusted, but anonymous or with a wrong password: 401 with a Basic challenge.
    let (rc, code, _) = curl(&["--cacert", ca, "-H", &accept, &url])?;
    ensure!(
        rc == 0 && code == "401",
        "anonymous manifest GET: exit {rc}, HTTP {code}, want 401"
    );
    let (user, _) = creds.split_once(':').context("credentials without ':'")?;
    let (_, code, _) = curl(&[
        "--cacert",
        ca,
        "-u",
        &format!("{user}:wrong"),
        "-H",
        &accept,
        &url,
    ])?;
    ensure!(code == "401", "a wrong password: HTTP {code}, want 401");
    let out = run(Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--cacert",
            ca,
        ])
        .arg(format!("https://{}/v2/", env.release_registry)))?;
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    ensure!(
        headers.contains("www-authenticate: basic realm="),
        "no Basic challenge: {headers}"
    );
    // The pull secret's credentials and the registry-cas CA: the manifest, by its digest.
    let (rc, code, body) = curl(&["--cacert", ca, "-u", &creds, "-H", &accept, &url])?;
    ensure!(
        rc == 0 && code == "200",
        "with the pull secret: exit {rc}, HTTP {code}"
    );
    ensure!(
        sha256(&body) == digest_of(&env.release_os_base_image),
        "the release registry serves {} for {url}",
        sha256(&body)
    );
    // containers/image, given exactly the pull secret (as auth file) and the CA (as cert dir).
    let auth = write(&dir, "auth.json", &published.pull_secret)?;
    let certs = dir.join("certs");
    write(
        &certs,
        "ca.crt",
        published.registry_ca(&env.release_registry)?,
    )?;
    for image in [&env.release_os_base_image, &env.release_os_image] {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--authfile"])
            .arg(&auth)
            .arg("--cert-dir")
            .arg(&certs)
            .arg(format!("docker://{image}")))?;
        ensure!(
            out.status.success() && sha256(&out.stdout) == digest_of(image),
            "skopeo inspect {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let anonymous = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--no-creds", "--cert-dir"])
            .arg(&certs)
            .arg(format!("docker://{image}")))?;
        ensure!(
            !anonymous.status.success(),
            "skopeo pulled {image} anonymously"
        );
    }
    eprintln!(
        "ok: {} refuses anonymous (401) and untrusted TLS, serves {} by digest with the pull \
         secret + registry-cas",
        env.release_registry, env.release_os_base_image
    );
    Ok(())
}

#[tokio::test]
async fn internal_registry_verifies_against_the_service_ca_of_a_new_namespace() -> Result<()> {
    let test = "internal_registry_verifies_against_the_service_ca_of_a_new_namespace";
    let cluster = needs!(Cluster::shared_or_skip(test));
    let client = cluster.client().await?;
    let published = Published::read(&client).await?;
    let ns = test_namespace(&client, "e2e-service-ca").await?;
    let result = internal_registry_checks(cluster, &client, &published, &ns).await;
    delete_namespace(&client, &ns).await;
    result
}

/// `ns/openshift-service-ca.crt` exists with exactly the injection annotation and `want` as its
/// only data.
async fn service_ca_published(cms: &Api<ConfigMap>, want: &str) -> Result<Option<()>> {
    let Some(cm) = cms.get_opt("openshift-service-ca.crt").await? else {
        return Ok(None);
    };
    let annotated = cm.metadata.annotations.unwrap_or_default()
        == BTreeMap::from([(
            "service.beta.openshift.io/inject-cabundle".to_string(),
            "true".to_string(),
        )]);
    let data = cm.data.unwrap_or_default();
    let injected = data.len() == 1 && data.get("service-ca.crt").map(String::as_str) == Some(want);
    Ok((annotated && injected).then_some(()))
}

async fn internal_registry_checks(
    cluster: &Cluster,
    client: &kube::Client,
    published: &Published,
    ns: &str,
) -> Result<()> {
    let env = &cluster.openshift;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let want = published.service_ca.as_str();
    // Published into the new namespace and injected, as OpenShift does.
    wait_for(
        "openshift-service-ca.crt published and injected",
        Duration::from_secs(30),
        || service_ca_published(&cms, want),
    )
    .await?;
    let dir = scratch(cluster, "internal")?;
    let ca = write(&dir, "service-ca.crt", want)?;
    let ca = ca.to_str().unwrap_or_default();
    let url = format!("https://{}/v2/", env.internal_registry);
    let (rc, ..) = curl(&[&url])?;
    ensure!(rc == 60, "curl with the system CAs: exit {rc}, want 60");
    let (rc, code, _) = curl(&["--cacert", ca, &url])?;
    ensure!(
        rc == 0 && code == "200",
        "with openshift-service-ca.crt: exit {rc}, HTTP {code}"
    );
    // The certificate names the internal registry's Service.
    let service = "image-registry.openshift-image-registry.svc";
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect {} -CAfile {ca} -verify_return_error -verify_hostname {service} \
         </dev/null 2>&1",
        env.internal_registry
    )))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("Verify return code: 0 (ok)"),
        "the internal registry's certificate does not verify for {service}: {text}"
    );
    // No authentication: a push with any credential works (and keeps the digest).
    let dest = format!("{}/e2e/{ns}/os-base", env.internal_registry);
    let certs = dir.join("certs");
    write(&certs, "ca.crt", want)?;
    let out = run(Command::new("skopeo")
        .args(["copy", "-q", "--preserve-digests", "--src-tls-verify=false"])
        .args(["--dest-creds", "anyone:anything", "--dest-cert-dir"])
        .arg(&certs)
        .arg(format!("docker://{}", cluster.os_base_image))
        .arg(format!("docker://{dest}:pushed")))?;
    ensure!(
        out.status.success(),
        "push to the internal registry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = format!(
        "https://{}/v2/e2e/{ns}/os-base/manifests/pushed",
        env.internal_registry
    );
    let accept = format!("Accept: {MANIFEST_TYPES}");
    let (_, code, body) = curl(&["--cacert", ca, "-H", &accept, &manifest])?;
    ensure!(
        code == "200" && sha256(&body) == digest_of(&cluster.os_base_image),
        "pushed manifest: HTTP {code}"
    );
    // The publisher keeps it: deleted → back; annotations edited → reset (then re-injected).
    cms.delete("openshift-service-ca.crt", &DeleteParams::default())
        .await?;
    wait_for(
        "openshift-service-ca.crt re-created",
        Duration::from_secs(30),
        || service_ca_published(&cms, want),
    )
    .await?;
    let patch = json!({
        "metadata": {"annotations": {"service.beta.openshift.io/inject-cabundle": null, "x": "y"}},
        "data": {"service-ca.crt": "tampered"},
    });
    cms.patch(
        "openshift-service-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    wait_for(
        "openshift-service-ca.crt annotations reset and re-injected",
        Duration::from_secs(30),
        || service_ca_published(&cms, want),
    )
    .await?;
    // ConfigMaps of one's own that ask for the bundle get it too.
    let own: ConfigMap = serde_json::from_value(json!({"metadata": {
        "name": "my-ca",
        "annotations": {"service.beta.openshift.io/inject-cabundle": "true"},
    }}))?;
    cms.create(&PostParams::default(), &own).await?;
    wait_for("my-ca injected", Duration::from_secs(30), || async {
        let data = cms.get("my-ca").await?.data.unwrap_or_default();
        Ok((data.get("service-ca.crt").map(String::as_str) == Some(want)).then_some(()))
    })
    .await?;
    eprintln!(
        "ok: {} verifies against openshift-service-ca.crt of the new namespace {ns}; push with \
         any credential",
        env.internal_registry
    );
    Ok(())
}

/// The `registries.conf` an ImageDigestMirrorSet / ImageTagMirrorSet mean, as the MCO writes it
/// (`pkg/controller/container-runtime-config`): per source a `[[registry]]`, its mirrors with
/// `pull-from-mirror = "digest-only"` (IDMS) or `"tag-only"` (ITMS), and `blocked = true` for
/// `NeverContactSource`.
fn registries_conf(idms: &Value, itms: &Value) -> String {
    let mut out = String::from("unqualified-search-registries = []\n");
    for (set, field, pull_from) in [
        (idms, "imageDigestMirrors", "digest-only"),
        (itms, "imageTagMirrors", "tag-only"),
    ] {
        for m in set["spec"][field].as_array().into_iter().flatten() {
            let source = m["source"].as_str().unwrap_or_default();
            let blocked = m["mirrorSourcePolicy"] == "NeverContactSource";
            out += &format!(
                "\n[[registry]]\nprefix = \"\"\nlocation = \"{source}\"\nblocked = {blocked}\n"
            );
            for mirror in m["mirrors"].as_array().into_iter().flatten() {
                out += &format!(
                    "[[registry.mirror]]\nlocation = \"{}\"\npull-from-mirror = \"{pull_from}\"\n",
                    mirror.as_str().unwrap_or_default()
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn mirror_serves_the_base_by_digest_while_the_source_does_not_resolve() -> Result<()> {
    let test = "mirror_serves_the_base_by_digest_while_the_source_does_not_resolve";
    let cluster = needs!(Cluster::shared_or_skip(test));
    let env = &cluster.openshift;
    let client = cluster.client().await?;
    let published = Published::read(&client).await?;
    let idms = cluster_object(
        &client,
        "ImageDigestMirrorSet",
        "imagedigestmirrorsets",
        "strata-e2e-mirror",
    )
    .await?;
    let itms = cluster_object(
        &client,
        "ImageTagMirrorSet",
        "imagetagmirrorsets",
        "strata-e2e-mirror",
    )
    .await?;
    let source = &env.mirror_source_os_base_image;
    let (source_repo, digest) = source.split_once('@').context("source not by digest")?;
    ensure!(
        digest == digest_of(&cluster.os_base_image),
        "{source} is not the base's digest"
    );
    let host = source_repo.split('/').next().unwrap_or_default();
    let getent = run(Command::new("getent").args(["hosts", host]))?;
    ensure!(
        !getent.status.success(),
        "{host} resolves: {}",
        String::from_utf8_lossy(&getent.stdout)
    );

    let rule = &idms["spec"]["imageDigestMirrors"][0];
    ensure!(
        rule["source"] == source_repo,
        "the IDMS maps {}, not {source_repo}",
        rule["source"]
    );
    let mirror_repo = rule["mirrors"][0]
        .as_str()
        .context("IDMS without a mirror")?;
    ensure!(
        mirror_repo.starts_with(&format!("{}/", env.mirror_registry))
            && mirror_repo.split_once('/').map(|(_, p)| p)
                != source_repo.split_once('/').map(|(_, p)| p),
        "the mirror {mirror_repo} is not another path on {}",
        env.mirror_registry
    );
    let dir = scratch(cluster, "mirror")?;
    let ca = write(
        &dir,
        "mirror-ca.crt",
        published.registry_ca(&env.mirror_registry)?,
    )?;
    let creds = published.credentials(&env.mirror_registry)?;
    let url = manifest_url(&format!("{mirror_repo}@{digest}"))?;
    let accept = format!("Accept: {MANIFEST_TYPES}");
    let (_, code, _) = curl(&[
        "--cacert",
        ca.to_str().unwrap_or_default(),
        "-H",
        &accept,
        &url,
    ])?;
    ensure!(
        code == "401",
        "the mirror without credentials: HTTP {code}, want 401"
    );
    let (_, code, body) = curl(&[
        "--cacert",
        ca.to_str().unwrap_or_default(),
        "-u",
        &creds,
        "-H",
        &accept,
        &url,
    ])?;
    ensure!(
        code == "200" && sha256(&body) == digest,
        "the mirror serves HTTP {code}, {}",
        sha256(&body)
    );

    // containers/image: the source name fails on its own, and is pulled from the mirror with the
    // registries.conf the mirror sets mean (the pull secret as auth file, the mirror's CA).
    let auth = write(&dir, "auth.json", &published.pull_secret)?;
    let certs = dir.join("certs");
    write(
        &certs,
        "ca.crt",
        published.registry_ca(&env.mirror_registry)?,
    )?;
    let empty = write(&dir, "empty-registries.conf", "")?;
    let conf = write(&dir, "registries.conf", registries_conf(&idms, &itms))?;
    let skopeo = |conf: &Path, image: &str| -> Result<Output> {
        run(Command::new("skopeo")
            .args(["inspect", "--raw", "--registries-conf"])
            .arg(conf)
            .arg("--authfile")
            .arg(&auth)
            .arg("--cert-dir")
            .arg(&certs)
            .arg(format!("docker://{image}")))
    };
    let direct = skopeo(&empty, source)?;
    ensure!(
        !direct.status.success(),
        "{source} was pulled without mirrors"
    );
    eprintln!(
        "ok: without mirrors: {}",
        String::from_utf8_lossy(&direct.stderr).trim()
    );
    for image in [
        source,
        &env.mirror_source_os_base_image_next,
        &env.mirror_source_os_base_tagged,
    ] {
        let out = skopeo(&conf, image)?;
        ensure!(
            out.status.success(),
            "skopeo with the mirror sets' registries.conf, {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = if image.contains('@') {
            digest_of(image)
        } else {
            digest_of(&cluster.os_base_image)
        };
        ensure!(
            sha256(&out.stdout) == want,
            "{image} via the mirror is {}, want {want}",
            sha256(&out.stdout)
        );
    }
    eprintln!(
        "ok: {source} (and the next base, and {}) served by {mirror_repo} while {host} does not \
         resolve",
        env.mirror_source_os_base_tagged
    );
    Ok(())
}

#[tokio::test]
async fn https_package_repo_serves_only_the_entitlement_certificate() -> Result<()> {
    let test = "https_package_repo_serves_only_the_entitlement_certificate";
    let cluster = needs!(Cluster::shared_or_skip(test));
    let env = &cluster.openshift;
    let client = cluster.client().await?;
    let published = Published::read(&client).await?;
    let proxy = cluster_object(&client, "Proxy", "proxies", "cluster").await?;
    ensure!(
        proxy["spec"]["trustedCA"]["name"] == "user-ca-bundle",
        "the proxy's trustedCA is {}",
        proxy["spec"]["trustedCA"]
    );
    let dir = scratch(cluster, "package-repo")?;
    let ca = write(&dir, "user-ca.crt", &published.user_ca)?;
    let ca = ca.to_str().unwrap_or_default();
    let cert = write(&dir, "entitlement.pem", &published.entitlement)?;
    let key = write(&dir, "entitlement-key.pem", &published.entitlement_key)?;
    let in_release = format!("{}dists/strata/InRelease", env.package_repo_https);
    let (rc, ..) = curl(&[&in_release])?;
    ensure!(rc == 60, "curl with the system CAs: exit {rc}, want 60");
    let (rc, code, body) = curl(&["--cacert", ca, &in_release])?;
    ensure!(
        rc == 0
            && code == "400"
            && String::from_utf8_lossy(&body).contains("No required SSL certificate was sent"),
        "without a client certificate: exit {rc}, HTTP {code}"
    );
    // A certificate from another CA is refused too.
    let other_key = dir.join("other.key");
    let other = dir.join("other.crt");
    let out = run(Command::new("openssl")
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
            "-subj",
            "/CN=not-entitled",
            "-keyout",
        ])
        .arg(&other_key)
        .arg("-out")
        .arg(&other))?;
    ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, code, _) = curl(&[
        "--cacert",
        ca,
        "--cert",
        other.to_str().unwrap_or_default(),
        "--key",
        other_key.to_str().unwrap_or_default(),
        &in_release,
    ])?;
    ensure!(
        code == "400",
        "with a certificate of another CA: HTTP {code}, want 400"
    );
    // The entitlement certificate (with its ENTITLEMENT DATA / RSA SIGNATURE blocks) gets it.
    ensure!(
        String::from_utf8_lossy(&published.entitlement)
            .contains("-----BEGIN ENTITLEMENT DATA-----"),
        "entitlement.pem lacks the ENTITLEMENT DATA block of a real one"
    );
    let (rc, code, body) = curl(&[
        "--cacert",
        ca,
        "--cert",
        cert.to_str().unwrap_or_default(),
        "--key",
        key.to_str().unwrap_or_default(),
        &in_release,
    ])?;
    ensure!(
        rc == 0
            && code == "200"
            && String::from_utf8_lossy(&body).starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
        "with the entitlement certificate: exit {rc}, HTTP {code}"
    );
    eprintln!(
        "ok: {in_release}: 400 without the entitlement certificate or with another, InRelease \
         with it"
    );
    Ok(())
}

/// The pod [`probe_pod`] makes, and the shell its scripts run in (the CoreOS-like image has bash).
const PROBE: &str = "probe";
const PROBE_SHELL: &str = "bash";

/// curl in the pod: "<exit code> <HTTP status>".
fn pod_curl(cluster: &Cluster, ns: &str, args: &str) -> Result<String> {
    let out = cluster.exec(
        ns,
        PROBE,
        PROBE_SHELL,
        &format!("curl -s -o /dev/null --max-time 20 -w '%{{http_code}}' {args}; echo \" $?\""),
    )?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (code, rc) = text.rsplit_once(' ').unwrap_or(("", &text));
    Ok(format!("{rc} {code}"))
}

#[tokio::test]
async fn pods_reach_the_registries_and_the_package_repo_only_through_the_proxy() -> Result<()> {
    let test = "pods_reach_the_registries_and_the_package_repo_only_through_the_proxy";
    let cluster = needs!(Cluster::shared_or_skip(test));
    let env = &cluster.openshift;
    let client = cluster.client().await?;
    let published = Published::read(&client).await?;
    let proxy = cluster_object(&client, "Proxy", "proxies", "cluster").await?;
    let https_proxy = proxy["status"]["httpsProxy"]
        .as_str()
        .context("proxy without status.httpsProxy")?;
    ensure!(
        https_proxy == env.proxy,
        "status.httpsProxy {https_proxy}, env {}",
        env.proxy
    );
    let no_proxy: Vec<&str> = proxy["status"]["noProxy"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .collect();
    let apiserver = cluster.apiserver.trim_start_matches("https://");
    for entry in [
        ".svc",
        ".cluster.local",
        "10.244.0.0/24",
        &cluster.registry,
        apiserver,
    ] {
        ensure!(
            no_proxy.contains(&entry),
            "status.noProxy {no_proxy:?} lacks {entry}"
        );
    }
    ensure!(
        !no_proxy.contains(&cluster.node_ip.as_str()),
        "status.noProxy has the bare node IP: the proxied servers would be direct"
    );

    let ns = test_namespace(&client, "e2e-proxy").await?;
    let result = proxy_checks(cluster, &client, &published, &ns).await;
    if result.is_err() {
        let log = std::fs::read_to_string(&env.proxy_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        eprintln!("proxy log tail (newest first):\n{}", tail.join("\n"));
    }
    delete_namespace(&client, &ns).await;
    result
}

/// A pod with what Strata would hand a builder pod: copies of the published objects (Secret
/// `osenv`), the `registries.conf` of the mirror sets, and the namespace's own
/// `openshift-service-ca.crt`. Returns its IP once Ready.
async fn probe_pod(
    cluster: &Cluster,
    client: &kube::Client,
    published: &Published,
    ns: &str,
) -> Result<String> {
    use base64::Engine;
    let env = &cluster.openshift;
    let idms = cluster_object(
        client,
        "ImageDigestMirrorSet",
        "imagedigestmirrorsets",
        "strata-e2e-mirror",
    )
    .await?;
    let itms = cluster_object(
        client,
        "ImageTagMirrorSet",
        "imagetagmirrorsets",
        "strata-e2e-mirror",
    )
    .await?;
    let files: BTreeMap<&str, Vec<u8>> = BTreeMap::from([
        ("auth.json", published.pull_secret.clone()),
        (
            "release-ca.crt",
            published.registry_ca(&env.release_registry)?.into(),
        ),
        (
            "mirror-ca.crt",
            published.registry_ca(&env.mirror_registry)?.into(),
        ),
        ("user-ca.crt", published.user_ca.clone().into_bytes()),
        ("entitlement.pem", published.entitlement.clone()),
        ("entitlement-key.pem", published.entitlement_key.clone()),
        (
            "registries.conf",
            registries_conf(&idms, &itms).into_bytes(),
        ),
    ]);
    let data: BTreeMap<&str, String> = files
        .iter()
        .map(|(k, v)| (*k, base64::engine::general_purpose::STANDARD.encode(v)))
        .collect();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "osenv"}, "data": data}))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let want = published.service_ca.as_str();
    wait_for(
        "openshift-service-ca.crt in the namespace",
        Duration::from_secs(30),
        || service_ca_published(&cms, want),
    )
    .await?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": PROBE},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": cluster.os_image, "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": "osenv", "mountPath": "/etc/osenv", "readOnly": true},
                    {"name": "service-ca", "mountPath": "/etc/service-ca", "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "osenv", "secret": {"secretName": "osenv"}},
                {"name": "service-ca", "configMap": {"name": "openshift-service-ca.crt"}},
            ],
        }
    }))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &pod).await?;
    let started = std::time::Instant::now();
    // Long: the node pulls the CoreOS-like image (1.3 GiB) first.
    let ip = ready_pod_ip(&pods, PROBE, Duration::from_secs(420)).await?;
    eprintln!("probe pod {ip} ready in {:?}", started.elapsed());
    Ok(ip)
}

async fn proxy_checks(
    cluster: &Cluster,
    client: &kube::Client,
    published: &Published,
    ns: &str,
) -> Result<()> {
    let env = &cluster.openshift;
    let pod_ip = probe_pod(cluster, client, published, ns).await?;
    let creds_release = published.credentials(&env.release_registry)?;
    let creds_mirror = published.credentials(&env.mirror_registry)?;
    let proxy = &env.proxy;
    let node = &cluster.node_ip;
    let in_release = format!("{}dists/strata/InRelease", env.package_repo_https);
    let release_v2 = format!("https://{}/v2/", env.release_registry);
    let internal_v2 = format!("https://{}/v2/", env.internal_registry);
    let mirror_v2 = format!("https://{}/v2/", env.mirror_registry);
    let release_ca = "--cacert /etc/osenv/release-ca.crt";
    let service_ca = "--cacert /etc/service-ca/service-ca.crt";
    let mirror_ca = "--cacert /etc/osenv/mirror-ca.crt";
    let user_ca = "--cacert /etc/osenv/user-ca.crt";
    let entitlement = "--cert /etc/osenv/entitlement.pem --key /etc/osenv/entitlement-key.pem";

    // Direct: every TLS server is refused (curl exit 7); the open registry stays reachable.
    for (what, args) in [
        ("release registry", format!("{release_ca} {release_v2}")),
        ("internal registry", format!("{service_ca} {internal_v2}")),
        ("mirror registry", format!("{mirror_ca} {mirror_v2}")),
        (
            "HTTPS package repository",
            format!("{user_ca} {entitlement} {in_release}"),
        ),
    ] {
        let got = pod_curl(cluster, ns, &format!("--noproxy '*' {args}"))?;
        ensure!(
            got == "7 000",
            "direct to the {what} from a pod: {got} (exit, HTTP), want refused (7 000)"
        );
    }
    let open = format!("--noproxy '*' http://{}/v2/", cluster.registry);
    let got = pod_curl(cluster, ns, &open)?;
    ensure!(got == "0 200", "the open registry direct from a pod: {got}");
    eprintln!(
        "ok: from a pod the TLS servers are refused directly; the open registry {} is direct",
        cluster.registry
    );

    // Through the proxy: the same answers as from the host.
    for (what, args, want) in [
        (
            "release registry, anonymous",
            format!("{release_ca} {release_v2}"),
            "0 401",
        ),
        (
            "release registry, pull secret",
            format!("{release_ca} -u {creds_release} {release_v2}"),
            "0 200",
        ),
        ("release registry, untrusted", release_v2.clone(), "60 000"),
        (
            "internal registry, openshift-service-ca.crt",
            format!("{service_ca} {internal_v2}"),
            "0 200",
        ),
        (
            "mirror registry, pull secret",
            format!("{mirror_ca} -u {creds_mirror} {mirror_v2}"),
            "0 200",
        ),
        (
            "package repository, no client certificate",
            format!("{user_ca} {in_release}"),
            "0 400",
        ),
        (
            "package repository, entitlement",
            format!("{user_ca} {entitlement} {in_release}"),
            "0 200",
        ),
    ] {
        let got = pod_curl(cluster, ns, &format!("--proxy {proxy} {args}"))?;
        ensure!(
            got == want,
            "{what} through the proxy from a pod: {got}, want {want}"
        );
    }
    // containers/image in the pod with HTTPS_PROXY, as the builder pulls: the release base by
    // the pull secret, and the mirror source name through the mirror sets' registries.conf.
    let skopeo = "HTTPS_PROXY={proxy} skopeo inspect --raw --authfile /etc/osenv/auth.json";
    let certs = "mkdir -p /tmp/certs/release /tmp/certs/mirror && \
                 cp /etc/osenv/release-ca.crt /tmp/certs/release/ca.crt && \
                 cp /etc/osenv/mirror-ca.crt /tmp/certs/mirror/ca.crt";
    let skopeo = skopeo.replace("{proxy}", proxy);
    let release_base = &env.release_os_base_image;
    let digest = cluster.exec_ok(
        ns,
        PROBE,
        PROBE_SHELL,
        "skopeo via the proxy",
        &format!(
            "{certs} && {skopeo} --cert-dir /tmp/certs/release docker://{release_base} \
             | sha256sum | cut -d' ' -f1"
        ),
    )?;
    ensure!(
        format!("sha256:{digest}") == digest_of(release_base),
        "skopeo in the pod got {digest}"
    );
    let source = &env.mirror_source_os_base_image;
    let digest = cluster.exec_ok(
        ns,
        PROBE,
        PROBE_SHELL,
        "skopeo through the mirror",
        &format!(
            "{skopeo} --registries-conf /etc/osenv/registries.conf --cert-dir /tmp/certs/mirror \
             docker://{source} | sha256sum | cut -d' ' -f1"
        ),
    )?;
    ensure!(
        format!("sha256:{digest}") == digest_of(source),
        "the mirror in the pod gave {digest}"
    );
    // A fragment's RUN step: apt over HTTPS through the proxy with the entitlement certificate.
    let repo = &env.package_repo_https;
    let apt = cluster.exec_ok(
        ns,
        PROBE,
        PROBE_SHELL,
        "apt-get install from the HTTPS repository",
        &format!(
            r#"set -e
printf 'Types: deb\nURIs: {repo}\nSuites: strata\nComponents: main\nSigned-By: /etc/apt/keyrings/strata-local.asc\n' \
  > /etc/apt/sources.list.d/strata-https.sources
cat > /etc/apt/apt.conf.d/99strata-https <<EOF
Acquire::https::Proxy "{proxy}";
Acquire::https::{node}::CaInfo "/etc/osenv/user-ca.crt";
Acquire::https::{node}::SslCert "/etc/osenv/entitlement.pem";
Acquire::https::{node}::SslKey "/etc/osenv/entitlement-key.pem";
EOF
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends tree >/dev/null
tree --version"#
        ),
    )?;
    ensure!(apt.starts_with("tree v"), "tree --version printed {apt}");
    eprintln!(
        "ok: through the proxy the pod gets 401/200/400 as the host does, skopeo pulls the release \
         base and the mirrored source, apt installs `tree` ({apt}) with the entitlement"
    );

    // The proxy saw this pod's tunnels to each of the four servers.
    let ports = [
        port_of(&env.release_registry)?,
        port_of(&env.internal_registry)?,
        port_of(&env.mirror_registry)?,
        port_of(&env.package_repo_https)?,
    ];
    let tunnel = |line: &str, port: u16| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 6
            && f[2] == pod_ip
            && f[3] == "TCP_TUNNEL/200"
            && f[5] == "CONNECT"
            && f[6] == format!("{node}:{port}")
    };
    let log = wait_for(
        "the proxy's access log shows the pod's tunnels",
        Duration::from_secs(15),
        || async {
            let log = std::fs::read_to_string(&env.proxy_log)?;
            let all = ports.iter().all(|p| log.lines().any(|l| tunnel(l, *p)));
            Ok(all.then_some(log))
        },
    )
    .await?;
    let ours = log
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(pod_ip.as_str()))
        .count();
    eprintln!(
        "ok: {} has {ours} lines from {pod_ip}, tunnels to {node}:{{{}}}",
        env.proxy_log.display(),
        ports.map(|p| p.to_string()).join(",")
    );
    Ok(())
}
