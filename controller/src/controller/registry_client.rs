//! Registry lookups: resolve a tag to a digest, and inspect a pushed image (does it exist, which
//! inputs hash does its config carry). Every call has a connect and a total timeout, every read a
//! size cap and redirect rules ([`super::registry_http`]), answers (and refusals) are cached for a
//! while, and a credential change gets a fresh client (no token cached from the old credential is
//! reused). The cluster's environment decides the transport
//! (its CAs, its proxy) and where a base is pulled from (mirrors, blocked and allowed
//! registries), as it does for the builder.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use oci_client::Reference;
use serde_json::Value;

use super::environment::{Environment, Proxy};
use super::names::repository;
pub use super::registry_http::RegistryError;
use super::registry_http::RegistryHttp;
use crate::docker_config::{Credential, credential_for};
use crate::registry_policy::RegistryPolicy;
use crate::render::{INPUTS_HASH_LABEL, is_digest_pinned};

/// How long a resolved tag or a present image is believed without asking again.
const ANSWER_TTL: Duration = Duration::from_secs(300);
/// Misses of a pinned image closer together than this count once (reconciles come in bursts).
const MISS_SPACING: Duration = Duration::from_secs(60);

/// What the registry says about an image pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageCheck {
    /// It exists; its config carries this `strata.dev/inputs-hash` label (None: no such label).
    Present { inputs_hash: Option<String> },
    /// The registry answered "manifest unknown" `misses` times since `first_seen`, spaced at least
    /// a minute apart.
    Missing { first_seen: Timestamp, misses: u32 },
    /// The registry could not be asked (unreachable, timed out, refused).
    Unknown(String),
    /// The registry's answer breaks Strata's limits (a manifest or config over its size cap, a
    /// redirect Strata does not follow): the same again if asked soon.
    Refused(String),
}

/// Why a reference was not resolved to a digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// Not now: unreachable, not found, credentials refused; worth asking again soon.
    #[error("{0}")]
    Failed(String),
    /// Every place asked answered past Strata's limits ([`ImageCheck::Refused`]).
    #[error("{0}")]
    Refused(String),
}

/// Timeouts and transport settings of the registry client.
#[derive(Clone, Debug)]
pub struct RegistrySettings {
    /// Registries (host:port) reached over plain HTTP.
    pub insecure: Vec<String>,
    pub connect_timeout: Duration,
    /// The whole call, however long the registry keeps the connection open.
    pub total_timeout: Duration,
}

/// How registry calls travel, from the cluster's environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    /// PEM certificates trusted beyond the system's.
    pub extra_roots: Vec<String>,
    pub proxy: (String, String, String),
    pub policy: RegistryPolicy,
}

impl Transport {
    pub fn from_environment(env: &Environment) -> Self {
        let Proxy { http, https, no } = env.proxy.clone();
        Self {
            extra_roots: env.extra_roots(),
            proxy: (http, https, no),
            policy: env.registries.clone(),
        }
    }

    /// This transport for calls to the registry of `image`: the proxy dropped when NO_PROXY
    /// exempts that registry (decided here, Go's way, since NO_PROXY may name `host:port`).
    fn for_image(&self, image: &str) -> Transport {
        let (http, https, no) = self.proxy.clone();
        let proxy = Proxy { http, https, no };
        let host = image.split('/').next().unwrap_or_default();
        let mut transport = self.clone();
        if !proxy.applies_to(host) {
            transport.proxy = Default::default();
        }
        transport
    }
}

pub struct Registry {
    settings: RegistrySettings,
    /// One client per credential and transport: a client caches its tokens.
    clients: Mutex<HashMap<u64, Arc<RegistryHttp>>>,
    answers: Mutex<HashMap<(String, u64), (Instant, Answer)>>,
    misses: Mutex<HashMap<String, (Timestamp, Instant, u32)>>,
    /// When this process started asking (see [`Registry::recheck_due`]).
    started: Instant,
}

#[derive(Clone, Debug)]
enum Answer {
    Resolved(String),
    Present(Option<String>),
    /// A refusal ([`RegistryError::is_refusal`]), believed as long as an answer: a registry
    /// serving a huge manifest is not asked again on every reconcile.
    Refused(String),
}

/// One client per credential and transport.
fn client_key(credential: &Credential, transport: &Transport) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match credential {
        Credential::Anonymous => 0u8.hash(&mut hasher),
        Credential::Basic { username, password } => (username, password).hash(&mut hasher),
    }
    // What shapes a client: its roots, its proxy, the registries it reaches without TLS.
    (
        &transport.extra_roots,
        &transport.proxy,
        &transport.policy.insecure,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// `host[:port]` of a registries.conf scope (a wildcard scope cannot be listed).
fn scope_host(scope: &str) -> Option<String> {
    let host = scope.trim().split('/').next()?;
    (!host.is_empty() && !host.starts_with("*.")).then(|| host.to_string())
}

impl Registry {
    pub fn new(settings: RegistrySettings) -> Self {
        Self {
            settings,
            clients: Mutex::default(),
            answers: Mutex::default(),
            misses: Mutex::default(),
            started: Instant::now(),
        }
    }

    /// Whether a pinned image (verified when its build ended) is due for its periodic re-check.
    /// A new leader does not ask about every pinned image in its first seconds (500 pools: 2,000
    /// registry requests and an 8 s resync, bench/RESULTS.md): each image's first re-check waits
    /// a share of the answer TTL fixed by its name, so the re-checks spread as they did under
    /// the old leader. A miss being counted keeps being checked.
    pub fn recheck_due(&self, image: &str) -> bool {
        let counting = self
            .misses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(image);
        counting || self.started.elapsed() >= first_recheck_after(image)
    }

    fn client(
        &self,
        key: u64,
        credential: &Credential,
        transport: &Transport,
    ) -> Result<Arc<RegistryHttp>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() > 64 {
            clients.clear();
        }
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut insecure = self.settings.insecure.clone();
        insecure.extend(
            transport
                .policy
                .insecure
                .iter()
                .filter_map(|s| scope_host(s)),
        );
        let client = Arc::new(RegistryHttp::new(
            self.http_client(transport)?,
            credential.clone(),
            insecure,
        ));
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The HTTP client of `transport`: its roots and proxy only (not the process's environment),
    /// the timeouts, and no redirects of its own (`RegistryHttp` follows them by its rules).
    fn http_client(&self, transport: &Transport) -> Result<reqwest::Client, String> {
        let mut roots = Vec::new();
        for pem in &transport.extra_roots {
            match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
                Ok(certs) => roots.extend(certs),
                // One unreadable CA must not cost the others (or the proxy) every registry call.
                Err(err) => tracing::warn!(%err, "an additional CA is not PEM; left out"),
            }
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.settings.connect_timeout)
            .read_timeout(self.settings.total_timeout)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .tls_certs_merge(roots)
            // NO_PROXY is applied by `for_image` (reqwest cannot read `host:port`).
            .no_proxy();
        let (http, https, _) = &transport.proxy;
        let proxy_error = |e: reqwest::Error| format!("the cluster proxy: {e}");
        if !http.is_empty() {
            builder = builder.proxy(reqwest::Proxy::http(http).map_err(proxy_error)?);
        }
        if !https.is_empty() {
            builder = builder.proxy(reqwest::Proxy::https(https).map_err(proxy_error)?);
        }
        builder
            .build()
            .map_err(|e| format!("cannot make a registry client: {e}"))
    }

    fn cached(&self, key: &(String, u64)) -> Option<Answer> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers
            .get(key)
            .filter(|(at, _)| at.elapsed() < ANSWER_TTL)
            .map(|(_, a)| a.clone())
    }

    /// Forgets every cached answer about `what` (whatever the credential).
    fn forget(&self, what: &str) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|(w, _), _| w != what);
    }

    fn remember(&self, key: (String, u64), answer: Answer) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|_, (at, _)| at.elapsed() < ANSWER_TTL);
        answers.insert(key, (Instant::now(), answer));
    }

    /// Runs `call` under the total timeout (the client's read timeout is per read).
    async fn timed<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, Unresolved> {
        match tokio::time::timeout(self.settings.total_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if err.is_refusal() => Err(Unresolved::Refused(err.to_string())),
            Ok(Err(err)) => Err(Unresolved::Failed(err.to_string())),
            Err(_) => Err(Unresolved::Failed(format!(
                "{what}: no answer within {}s",
                self.settings.total_timeout.as_secs()
            ))),
        }
    }

    /// Deletes the manifest of `image` (repo@sha256:…) with `auth_json`'s credential for it,
    /// at the registry itself (a deletion goes to no mirror). What was cached about it is
    /// forgotten.
    pub async fn delete(
        &self,
        image: &str,
        auth_json: Option<&str>,
        transport: &Transport,
    ) -> Result<(), String> {
        let parsed: Reference = image
            .parse()
            .map_err(|e| format!("'{image}' is not an image reference: {e}"))?;
        let credential = credential_for(auth_json, image);
        let transport = &transport.for_image(image);
        let client = self.client(client_key(&credential, transport), &credential, transport)?;
        let result = self.timed(image, client.delete_manifest(&parsed)).await;
        self.forget(&format!("inspect {image}"));
        result.map_err(|e| e.to_string())
    }

    /// `reference` pinned by digest: a tag is resolved, a digest is checked to exist. Asked where
    /// the registry policy says a pull goes (mirrors first, the source unless it is never
    /// contacted); the answer keeps the reference's own name, as the nodes pull it. Refused only
    /// when every place asked refused.
    pub async fn resolve(
        &self,
        reference: &str,
        auth_json: Option<&str>,
        transport: &Transport,
    ) -> Result<String, Unresolved> {
        let _: Reference = reference.parse().map_err(|e| {
            Unresolved::Failed(format!("'{reference}' is not an image reference: {e}"))
        })?;
        let sources = transport.policy.pull_sources(reference);
        if sources.is_empty() {
            let why = transport
                .policy
                .refusal(reference)
                .unwrap_or_else(|| "no mirror may serve it".into());
            return Err(Unresolved::Failed(format!(
                "cannot resolve {reference}: {why} (images.config.openshift.io/cluster, image mirror sets)"
            )));
        }
        let mut errors = Vec::new();
        let mut all_refused = true;
        for source in &sources {
            match self.resolve_at(source, auth_json, transport).await {
                Ok(digest) => {
                    if is_digest_pinned(reference) && !reference.ends_with(&digest) {
                        return Err(Unresolved::Failed(format!(
                            "{reference}: {source} serves {digest}"
                        )));
                    }
                    return Ok(if is_digest_pinned(reference) {
                        reference.to_string()
                    } else {
                        format!("{}@{digest}", repository(reference))
                    });
                }
                Err(err) => {
                    all_refused &= matches!(err, Unresolved::Refused(_));
                    let err = err.to_string();
                    errors.push(if source == reference {
                        err
                    } else {
                        format!("mirror {source}: {err}")
                    });
                }
            }
        }
        let message = format!("cannot resolve {reference}: {}", errors.join("; "));
        Err(if all_refused {
            Unresolved::Refused(message)
        } else {
            Unresolved::Failed(message)
        })
    }

    /// The digest `source` names (one place, no mirrors), cached; a refusal is cached too.
    async fn resolve_at(
        &self,
        source: &str,
        auth_json: Option<&str>,
        transport: &Transport,
    ) -> Result<String, Unresolved> {
        let parsed: Reference = source.parse().map_err(|e| {
            Unresolved::Failed(format!("'{source}' is not an image reference: {e}"))
        })?;
        let credential = credential_for(auth_json, source);
        let transport = &transport.for_image(source);
        let key = (
            format!("resolve {source}"),
            client_key(&credential, transport),
        );
        match self.cached(&key) {
            Some(Answer::Resolved(digest)) => return Ok(digest),
            Some(Answer::Refused(why)) => return Err(Unresolved::Refused(why)),
            _ => {}
        }
        let client = self
            .client(key.1, &credential, transport)
            .map_err(Unresolved::Failed)?;
        let result = self.timed(source, client.manifest_digest(&parsed)).await;
        match &result {
            Ok(digest) => self.remember(key, Answer::Resolved(digest.clone())),
            Err(Unresolved::Refused(why)) => self.remember(key, Answer::Refused(why.clone())),
            Err(Unresolved::Failed(_)) => {}
        }
        result
    }

    /// Whether `image` (repo@sha256:…) exists, and the inputs hash its config carries. A present
    /// image (and a refusal) is believed for a while; misses are counted (see
    /// [`ImageCheck::Missing`]).
    pub async fn inspect(
        &self,
        image: &str,
        auth_json: Option<&str>,
        transport: &Transport,
        now: Timestamp,
    ) -> ImageCheck {
        let parsed: Reference = match image.parse() {
            Ok(parsed) => parsed,
            Err(err) => return ImageCheck::Unknown(format!("'{image}': {err}")),
        };
        let credential = credential_for(auth_json, image);
        let transport = &transport.for_image(image);
        let key = (
            format!("inspect {image}"),
            client_key(&credential, transport),
        );
        match self.cached(&key) {
            Some(Answer::Present(inputs_hash)) => return ImageCheck::Present { inputs_hash },
            Some(Answer::Refused(why)) => return ImageCheck::Refused(why),
            _ => {}
        }
        let client = match self.client(key.1, &credential, transport) {
            Ok(client) => client,
            Err(why) => return ImageCheck::Unknown(why),
        };
        let result =
            tokio::time::timeout(self.settings.total_timeout, client.config(&parsed)).await;
        match result {
            Ok(Ok(config)) => {
                let inputs_hash = inputs_hash_label(&config);
                self.misses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(image);
                self.remember(key, Answer::Present(inputs_hash.clone()));
                ImageCheck::Present { inputs_hash }
            }
            Ok(Err(RegistryError::NotFound)) => {
                let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
                let entry = misses
                    .entry(image.to_string())
                    .or_insert((now, Instant::now(), 0));
                if entry.2 == 0 || entry.1.elapsed() >= MISS_SPACING {
                    entry.1 = Instant::now();
                    entry.2 += 1;
                }
                ImageCheck::Missing {
                    first_seen: entry.0,
                    misses: entry.2,
                }
            }
            Ok(Err(err)) if err.is_refusal() => {
                self.remember(key, Answer::Refused(err.to_string()));
                ImageCheck::Refused(err.to_string())
            }
            Ok(Err(err)) => ImageCheck::Unknown(err.to_string()),
            Err(_) => ImageCheck::Unknown(format!(
                "{image}: no answer within {}s",
                self.settings.total_timeout.as_secs()
            )),
        }
    }
}

/// How long after start-up `image` is first re-checked: within the answer TTL, by its name.
fn first_recheck_after(image: &str) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    image.hash(&mut hasher);
    let ttl_ms = ANSWER_TTL.as_millis() as u64;
    Duration::from_millis(hasher.finish() % ttl_ms)
}

/// The `strata.dev/inputs-hash` label of an image config document.
fn inputs_hash_label(config: &[u8]) -> Option<String> {
    let config: Value = serde_json::from_slice(config).ok()?;
    config
        .pointer("/config/Labels")
        .and_then(|l| l.get(INPUTS_HASH_LABEL))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_hash_comes_from_the_config_labels() {
        let config = format!(r#"{{"config":{{"Labels":{{"{INPUTS_HASH_LABEL}":"abc"}}}}}}"#);
        assert_eq!(inputs_hash_label(config.as_bytes()).as_deref(), Some("abc"));
        assert_eq!(inputs_hash_label(br#"{"config":{}}"#), None);
        assert_eq!(inputs_hash_label(b"not json"), None);
    }

    #[test]
    fn first_rechecks_spread_over_the_answer_ttl() {
        let offsets: Vec<Duration> = (0..500)
            .map(|i| first_recheck_after(&format!("r.example.com/os@sha256:{i:064x}")))
            .collect();
        assert!(offsets.iter().all(|o| *o < ANSWER_TTL));
        // Spread, not bunched: each fifth of the TTL holds between 10 % and 30 % of them.
        for fifth in 0..5u32 {
            let (low, high) = (ANSWER_TTL * fifth / 5, ANSWER_TTL * (fifth + 1) / 5);
            let n = offsets.iter().filter(|o| **o >= low && **o < high).count();
            assert!((50..=150).contains(&n), "fifth {fifth}: {n} of 500");
        }
        // The same image waits the same time.
        assert_eq!(
            first_recheck_after("r.example.com/os@sha256:1"),
            first_recheck_after("r.example.com/os@sha256:1")
        );
    }

    #[test]
    fn a_new_process_rechecks_pinned_images_later_but_keeps_counting_misses() {
        let registry = Registry::new(RegistrySettings {
            insecure: vec![],
            connect_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(1),
        });
        let images: Vec<String> = (0..100)
            .map(|i| format!("r.example.com/os@sha256:{i:064x}"))
            .collect();
        let due = images.iter().filter(|i| registry.recheck_due(i)).count();
        assert!(due <= 3, "{due} of 100 due at start-up");
        let counting = &images[0];
        registry
            .misses
            .lock()
            .unwrap()
            .insert(counting.clone(), (Timestamp::now(), Instant::now(), 1));
        assert!(registry.recheck_due(counting));
    }

    /// A manifest past the cap is a refusal, believed like an answer: the next reconciles do
    /// not read 4 MiB from that registry again, and the reconcile does not retry it soon.
    #[tokio::test]
    async fn a_refusal_is_typed_and_remembered() {
        use crate::controller::registry_http::test_server::{Reply, serve};
        let server = serve(|_| Reply::HeadOnly("Content-Length: 99999999\r\n".into())).await;
        let registry = Registry::new(RegistrySettings {
            insecure: vec![server.address.clone()],
            connect_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(5),
        });
        let transport = Transport::default();
        let image = format!("{}/os@sha256:{}", server.address, "a".repeat(64));
        for _ in 0..2 {
            let check = registry
                .inspect(&image, None, &transport, Timestamp::now())
                .await;
            assert!(
                matches!(&check, ImageCheck::Refused(why) if why.contains("larger than the 4 MiB") && why.contains(&image)),
                "{check:?}"
            );
        }
        assert_eq!(server.seen().len(), 1, "{:?}", server.seen());
        let tag = format!("{}/os:latest", server.address);
        for _ in 0..2 {
            let resolved = registry.resolve(&tag, None, &transport).await;
            assert!(
                matches!(&resolved, Err(Unresolved::Refused(why)) if why.contains("larger than the 4 MiB")),
                "{resolved:?}"
            );
        }
        // The HEAD (no digest header), then the capped GET; nothing more the second time.
        assert_eq!(server.seen().len(), 3, "{:?}", server.seen());
    }

    /// A registry that accepts connections and never answers must not hang a reconcile.
    #[tokio::test]
    async fn a_stalled_registry_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let registry = Registry::new(RegistrySettings {
            insecure: vec![address.to_string()],
            connect_timeout: Duration::from_millis(200),
            total_timeout: Duration::from_millis(500),
        });
        let image = format!("{address}/os@sha256:{}", "a".repeat(64));
        let started = Instant::now();
        let transport = Transport::default();
        let check = registry
            .inspect(&image, None, &transport, Timestamp::now())
            .await;
        assert!(
            matches!(&check, ImageCheck::Unknown(why) if why.contains("no answer") || why.contains("timed out") || why.contains("timeout")),
            "{check:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        let resolved = registry
            .resolve(&format!("{address}/os:latest"), None, &transport)
            .await;
        assert!(resolved.is_err());
        drop(listener);
    }
}
