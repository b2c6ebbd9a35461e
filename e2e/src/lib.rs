//! Test support for the local real cluster (see `e2e/README.md`).
//!
//! [`Cluster::shared`] gives every test in a test binary the same cluster: it reuses the one recorded
//! in `e2e/.state/env` (started by `make e2e-up`), or starts one with `e2e/scripts/cluster-up.sh`.
//! A cluster started here is stopped when the test process exits, however it exits (normal end,
//! a panicking test, a signal, even SIGKILL): the scripts run inside a watchdog shell in its own
//! session that waits for EOF on a pipe whose write end only this process holds, then runs
//! `cluster-down.sh`. No `unsafe`, no `atexit`.
//!
//! Tests that need a cluster start with `let cluster = needs!(Cluster::shared_or_skip(test));`:
//! [`Cluster::shared_or_skip`] returns `None` (after printing why) unless `STRATA_E2E` is set, and
//! [`needs!`] then returns from the test, so `cargo test --workspace` passes on machines without one.

pub mod cache_claim;
pub mod console;
pub mod deployed;
pub mod diagnose;
pub mod first_boot;
pub mod host_buildah;
pub mod machine_roll;
pub mod machines;
pub mod mcd;
pub mod mco;
pub mod mco_nodes;
pub mod measure;
pub mod prometheus;
pub mod service_ca;
pub mod util;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A running cluster: how to reach it and what was pushed into its registry.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// Directory holding kubectl, kube-apiserver, … (prepend to PATH for kubectl).
    pub bin_dir: PathBuf,
    /// `host:port` of the plain-HTTP registry, reachable from the host and from pods.
    pub registry: String,
    /// The test OS base image, digest-pinned (`<registry>/strata-test/os-base@sha256:…`).
    pub os_base_image: String,
    /// Its "next release" (one more file, another digest), for upgrade tests.
    pub os_base_image_next: String,
    /// The CoreOS-like OS image (`build-os-image.sh`: ~1.3 GiB, 48 layers), digest-pinned.
    pub os_image: String,
    /// Its "next release" (`os-image-next.sh`: five of the 48 layers changed), digest-pinned.
    pub os_image_next: String,
    /// `http://<node IP>:<port>/` of the signed apt repository fragments install from.
    pub package_repo: String,
    /// The builder image (buildah + strata), digest-pinned, when the strata binary was available.
    pub builder_image: Option<String>,
    /// The node's IP; pods reach the registry and the API server through it (no kube-proxy).
    pub node_ip: String,
    /// `https://<node IP>:<port>` of the API server.
    pub apiserver: String,
    /// The cluster's temp dir (logs in `logs/`).
    pub dir: PathBuf,
    /// The table of the pool's machines (`machines.sh`), when it started with some.
    pub machines: Option<PathBuf>,
    /// The second node (`second-node.sh`), when the cluster started with one: its name and the
    /// key of its `NoSchedule` taint (and label).
    pub second_node: Option<(String, String)>,
    /// Whether this process started the cluster (and will stop it at exit).
    pub owned: bool,
    /// The OpenShift environment around it: release/internal/mirror registries, proxy, HTTPS
    /// package repository (`scripts/openshift-env.sh`).
    pub openshift: OpenShiftEnv,
}

/// What `e2e/scripts/openshift-env.sh` set up (README "The OpenShift environment"). Credentials and
/// CAs are not here: they are only in the cluster's objects (`openshift-config/pull-secret`,
/// `registry-cas`, `user-ca-bundle`, `openshift-service-ca.crt`, `etc-pki-entitlement`).
#[derive(Debug, Clone)]
pub struct OpenShiftEnv {
    /// `host:port` of the release registry: TLS from the release CA (in `openshift-config/registry-cas`
    /// under `<host>..<port>`), htpasswd (credentials only in `openshift-config/pull-secret`).
    pub release_registry: String,
    /// The images of the open registry, copied there with the same digests (digest-pinned,
    /// `<release>/openshift-release-dev/ocp-v4.0-art-dev@sha256:…`).
    pub release_os_base_image: String,
    pub release_os_base_image_next: String,
    pub release_os_image: String,
    /// `host:port` of the internal registry: TLS from the service CA, no authentication.
    pub internal_registry: String,
    /// `host:port` of the mirror registry: TLS from the mirror CA (`registry-cas`), htpasswd
    /// (credentials in the pull secret); holds the bases under `mirror/…`.
    pub mirror_registry: String,
    /// The bases by a source name that does not resolve
    /// (`quay.example.invalid/openshift-release-dev/ocp-v4.0-art-dev@sha256:…`), mirrored by the
    /// ImageDigestMirrorSet `strata-e2e-mirror`.
    pub mirror_source_os_base_image: String,
    pub mirror_source_os_base_image_next: String,
    /// The base by a tag of an unresolvable source (`quay.example.invalid/strata-e2e/os-base:latest`),
    /// mirrored by the ImageTagMirrorSet `strata-e2e-mirror`.
    pub mirror_source_os_base_tagged: String,
    /// `http://<node IP>:<port>` of the forward proxy (squid) of `proxies.config.openshift.io/cluster`.
    pub proxy: String,
    /// Its `status.noProxy` (comma-separated; host:port entries for servers on the node IP).
    pub no_proxy: String,
    /// The proxy's access log (one line per request; `CONNECT host:port` for tunnels).
    pub proxy_log: PathBuf,
    /// `https://<node IP>:<port>/`: the signed apt repository over HTTPS, server certificate from
    /// the user CA (`openshift-config/user-ca-bundle`), client certificate required (the
    /// entitlement Secret `openshift-config-managed/etc-pki-entitlement`).
    pub package_repo_https: String,
    /// Its state directory (CAs and certificates in `pki/`, server configs).
    pub dir: PathBuf,
}

static SHARED: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
/// Write end of the watchdog's stdin; never closed before process exit.
static WATCHDOG: OnceLock<Mutex<ChildStdin>> = OnceLock::new();

/// The repository root (parent of the `e2e` crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `../shared` relative to the repository root (fixtures that must not be copied into the repo).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("STRATA_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
}

/// A file of `../shared/fixtures` (OpenShift's CRDs and validation suites, real-world layering
/// Containerfiles), `relative` to it, for the conformance tests (`make conformance`). They are
/// `#[ignore]`d in `cargo test`, so `make test` and the README's commands need nothing beside a
/// clone; once asked for, a missing fixture is an error.
pub fn shared_fixture(relative: &str) -> anyhow::Result<PathBuf> {
    let path = shared_dir().join("fixtures").join(relative);
    anyhow::ensure!(
        path.exists(),
        "{} is absent: the conformance tests compare Strata with OpenShift's own files, kept \
         beside the repository in ../shared/fixtures (STRATA_SHARED_DIR names another place)",
        path.display()
    );
    Ok(path)
}

/// The state dir written by `cluster-up.sh` (`e2e/.state`, or `STRATA_E2E_STATE`).
pub fn state_dir() -> PathBuf {
    std::env::var_os("STRATA_E2E_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("e2e/.state"))
}

/// True when end-to-end tests should run (`STRATA_E2E` set to anything but `""`/`0`).
pub fn e2e_enabled() -> bool {
    std::env::var("STRATA_E2E").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether a missing prerequisite must fail the test instead of skipping it: under `make test`
/// (which sets `STRATA_REQUIRE_PREREQUISITES=1`) and in CI (`CI=true`). A quick local
/// `cargo test` may still skip, loudly.
pub fn prerequisites_required() -> bool {
    env_flag("STRATA_REQUIRE_PREREQUISITES") || in_ci()
}

/// Whether this is a CI run (`CI` set to anything but `""`/`0`/`false`).
pub fn in_ci() -> bool {
    env_flag("CI")
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A prerequisite of `test` is missing: under `make test` and in CI that is a failure (a panic
/// naming it); otherwise the test is skipped with a message `cargo test` shows even without
/// `--nocapture` (written to the real stderr, not the harness's captured `eprintln!`).
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    assert!(
        !prerequisites_required(),
        "{test}: a prerequisite is missing: {why} (make test and CI never skip)"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// An end-to-end test outside an end-to-end run (`STRATA_E2E` unset, as in `cargo test
/// --workspace`): not a missing prerequisite, the e2e runner runs it.
pub fn not_an_e2e_run(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "not run {test}: an end-to-end test; set STRATA_E2E=1 (as root) or run `make e2e-test`"
    );
}

/// `Some(())` in an end-to-end run; otherwise `None`, after [`not_an_e2e_run`] said so. For the
/// e2e tests that need no cluster (with [`needs!`]).
pub fn e2e_run_or_skip(test: &str) -> Option<()> {
    if e2e_enabled() {
        Some(())
    } else {
        not_an_e2e_run(test);
        None
    }
}

/// The prologue of an e2e test: the value of a prerequisite that returns `Option` after saying why
/// it is missing (`Cluster::shared_or_skip`, `Cluster::with_deployed_controller_or_skip`,
/// [`e2e_run_or_skip`] …), or `return Ok(())` from the test, which
/// then passes without running (`make test` and CI panic in [`skip`] instead).
///
/// ```text
/// let cluster = strata_e2e::needs!(Cluster::shared_or_skip(test));
/// ```
#[macro_export]
macro_rules! needs {
    ($prerequisite:expr) => {
        match $prerequisite {
            ::std::option::Option::Some(found) => found,
            ::std::option::Option::None => return ::std::result::Result::Ok(()),
        }
    };
}

/// Parse the `export K=V` lines of an env file.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

impl Cluster {
    /// The shared cluster and its builder image, or `None` with a printed skip message when
    /// `STRATA_E2E` is unset or the cluster has no builder image (no strata binary at start).
    pub fn with_builder_or_skip(test: &str) -> Option<(&'static Cluster, String)> {
        let cluster = Self::shared_or_skip(test)?;
        match cluster.builder_image.clone() {
            Some(builder) => Some((cluster, builder)),
            None => {
                skip(
                    test,
                    "no builder image in this cluster (the strata binary was not built when it started)",
                );
                None
            }
        }
    }

    /// The cluster for this test binary, or `None` with a printed skip message when `STRATA_E2E`
    /// is unset. Panics if the cluster cannot be started (the error includes where the logs are).
    pub fn shared_or_skip(test: &str) -> Option<&'static Cluster> {
        e2e_run_or_skip(test)?;
        Some(Self::shared())
    }

    /// The cluster for this test binary: reused from `e2e/.state/env`, or started (once) and
    /// stopped at process exit.
    pub fn shared() -> &'static Cluster {
        let r = SHARED.get_or_init(|| Self::reuse_or_start().map_err(|e| format!("{e:#}")));
        match r {
            Ok(c) => c,
            Err(e) => panic!("e2e cluster unavailable: {e}"),
        }
    }

    /// Read a running cluster from an env file written by `cluster-up.sh`.
    pub fn from_env_file(path: &Path, owned: bool) -> Result<Cluster> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let env = parse_env_file(&text);
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .ok_or_else(|| anyhow!("{} lacks {k}", path.display()))
        };
        let path_var = get("PATH")?;
        let bin_dir = path_var.split(':').next().unwrap_or_default();
        Ok(Cluster {
            kubeconfig: get("KUBECONFIG")?.into(),
            bin_dir: bin_dir.into(),
            registry: get("STRATA_REGISTRY")?,
            os_base_image: get("STRATA_OS_BASE_IMAGE")?,
            os_base_image_next: get("STRATA_OS_BASE_IMAGE_NEXT")?,
            os_image: get("STRATA_OS_IMAGE")?,
            os_image_next: get("STRATA_OS_IMAGE_NEXT")?,
            package_repo: get("STRATA_PACKAGE_REPO")?,
            builder_image: env
                .get("STRATA_BUILDER_IMAGE")
                .filter(|s| !s.is_empty())
                .cloned(),
            node_ip: get("STRATA_E2E_NODE_IP")?,
            apiserver: get("STRATA_E2E_APISERVER")?,
            dir: get("STRATA_E2E_DIR")?.into(),
            machines: env
                .get("STRATA_E2E_MACHINES")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            second_node: env
                .get("STRATA_E2E_SECOND_NODE")
                .filter(|s| !s.is_empty())
                .cloned()
                .zip(env.get("STRATA_E2E_SECOND_NODE_TAINT").cloned()),
            owned,
            openshift: OpenShiftEnv {
                release_registry: get("STRATA_RELEASE_REGISTRY")?,
                release_os_base_image: get("STRATA_RELEASE_OS_BASE_IMAGE")?,
                release_os_base_image_next: get("STRATA_RELEASE_OS_BASE_IMAGE_NEXT")?,
                release_os_image: get("STRATA_RELEASE_OS_IMAGE")?,
                internal_registry: get("STRATA_INTERNAL_REGISTRY")?,
                mirror_registry: get("STRATA_MIRROR_REGISTRY")?,
                mirror_source_os_base_image: get("STRATA_MIRROR_SOURCE_OS_BASE_IMAGE")?,
                mirror_source_os_base_image_next: get("STRATA_MIRROR_SOURCE_OS_BASE_IMAGE_NEXT")?,
                mirror_source_os_base_tagged: get("STRATA_MIRROR_SOURCE_OS_BASE_TAGGED")?,
                proxy: get("STRATA_PROXY")?,
                no_proxy: get("STRATA_NO_PROXY")?,
                proxy_log: get("STRATA_PROXY_LOG")?.into(),
                package_repo_https: get("STRATA_PACKAGE_REPO_HTTPS")?,
                dir: get("STRATA_OPENSHIFT_ENV_DIR")?.into(),
            },
        })
    }

    fn reuse_or_start() -> Result<Cluster> {
        let env = state_dir().join("env");
        if env.exists() {
            let c = Self::from_env_file(&env, false)?;
            if c.kubeconfig.exists() {
                eprintln!("e2e: reusing the running cluster from {}", env.display());
                return Ok(c);
            }
            bail!(
                "{} points at a missing cluster ({}); run `make e2e-down`",
                env.display(),
                c.kubeconfig.display()
            );
        }
        let scripts = repo_root().join("e2e/scripts");
        let up = scripts.join("cluster-up.sh");
        let down = scripts.join("cluster-down.sh");
        eprintln!(
            "e2e: starting a cluster for this test binary ({})",
            up.display()
        );
        // The watchdog: start the cluster, report, then block on stdin; EOF (this process gone,
        // however it ended) stops the cluster. `setsid` keeps it out of our process group so a
        // Ctrl-C to the test run does not kill it before it has cleaned up.
        let script = format!(
            "trap '' INT HUP TERM PIPE; if '{up}' >&2; then echo STRATA_E2E_READY; cat >/dev/null; fi; '{down}' >&2",
            up = up.display(),
            down = down.display()
        );
        let mut child = Command::new("setsid")
            .args(["bash", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the cluster watchdog (setsid bash)")?;
        let stdin = child.stdin.take().context("watchdog stdin")?;
        let _ = WATCHDOG.set(Mutex::new(stdin));
        let stdout = child.stdout.take().context("watchdog stdout")?;
        let mut ready = false;
        for line in BufReader::new(stdout).lines() {
            if line.context("reading watchdog output")?.trim() == "STRATA_E2E_READY" {
                ready = true;
                break;
            }
        }
        if !ready {
            let _ = child.wait();
            bail!("cluster-up.sh failed (see its output above)");
        }
        Self::from_env_file(&env, true)
    }

    /// A fresh kube client (admin). Create one per test: a client belongs to the tokio runtime
    /// it was first used on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> Result<kube::Client> {
        let config = self.config().await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The admin client configuration (modify `auth_info` to act as someone else).
    pub async fn config(&self) -> Result<kube::Config> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        config.read_timeout = Some(Duration::from_secs(60));
        Ok(config)
    }

    /// A client that authenticates with a bearer token instead of the admin certificate.
    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client> {
        let mut config = self.config().await?;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
        Ok(kube::Client::try_from(config)?)
    }

    /// `kubectl` with this cluster's admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(self.bin_dir.join("kubectl"));
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// `kubectl exec` of `shell -c script` in pod `ns/pod` (`shell`: `/bin/sh` in busybox images,
    /// `bash` in the CoreOS-like one): its output, whatever its exit status.
    pub fn exec(&self, ns: &str, pod: &str, shell: &str, script: &str) -> Result<Output> {
        let mut cmd = self.kubectl();
        cmd.args(["exec", "-n", ns, pod, "--", shell, "-c", script]);
        cmd.output().with_context(|| format!("running {cmd:?}"))
    }

    /// [`Cluster::exec`] that must succeed: its stdout, trimmed; else an error naming `what`
    /// with the exit status and both outputs.
    pub fn exec_ok(
        &self,
        ns: &str,
        pod: &str,
        shell: &str,
        what: &str,
        script: &str,
    ) -> Result<String> {
        let out = self.exec(ns, pod, shell, script)?;
        ensure!(
            out.status.success(),
            "{what} in the pod failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_file() {
        let env = parse_env_file(
            "export KUBECONFIG=/tmp/x/admin.kubeconfig\nexport PATH=/b:$PATH\nexport STRATA_REGISTRY=1.2.3.4:5\n",
        );
        assert_eq!(
            env.get("KUBECONFIG").map(String::as_str),
            Some("/tmp/x/admin.kubeconfig")
        );
        assert_eq!(env.get("PATH").map(String::as_str), Some("/b:$PATH"));
        assert_eq!(
            env.get("STRATA_REGISTRY").map(String::as_str),
            Some("1.2.3.4:5")
        );
    }
}
