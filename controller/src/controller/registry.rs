//! Registry lookups with oci-client: resolve a tag to a digest, and inspect a pushed image (does
//! it exist, which inputs hash does its config carry). Every call has a connect and a total
//! timeout, answers are cached for a while, and a credential change gets a fresh client (no token
//! cached from the old credential is reused).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

use super::auth::{Credential, credential_for};
use super::names::repository;
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

pub struct Registry {
    settings: RegistrySettings,
    /// One client per credential: oci-client caches tokens per client.
    clients: Mutex<HashMap<u64, Client>>,
    answers: Mutex<HashMap<(String, u64), (Instant, Answer)>>,
    misses: Mutex<HashMap<String, (Timestamp, Instant, u32)>>,
}

#[derive(Clone, Debug)]
enum Answer {
    Resolved(String),
    Present(Option<String>),
}

fn credential_key(credential: &Credential) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match credential {
        Credential::Anonymous => 0u8.hash(&mut hasher),
        Credential::Basic { username, password } => (username, password).hash(&mut hasher),
    }
    hasher.finish()
}

fn registry_auth(credential: &Credential) -> RegistryAuth {
    match credential {
        Credential::Anonymous => RegistryAuth::Anonymous,
        Credential::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
    }
}

impl Registry {
    pub fn new(settings: RegistrySettings) -> Self {
        Self {
            settings,
            clients: Mutex::default(),
            answers: Mutex::default(),
            misses: Mutex::default(),
        }
    }

    fn client(&self, key: u64) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() > 64 {
            clients.clear();
        }
        clients
            .entry(key)
            .or_insert_with(|| {
                Client::new(ClientConfig {
                    protocol: ClientProtocol::HttpsExcept(self.settings.insecure.clone()),
                    connect_timeout: Some(self.settings.connect_timeout),
                    read_timeout: Some(self.settings.total_timeout),
                    ..ClientConfig::default()
                })
            })
            .clone()
    }

    fn cached(&self, key: &(String, u64)) -> Option<Answer> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers
            .get(key)
            .filter(|(at, _)| at.elapsed() < ANSWER_TTL)
            .map(|(_, a)| a.clone())
    }

    fn remember(&self, key: (String, u64), answer: Answer) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|_, (at, _)| at.elapsed() < ANSWER_TTL);
        answers.insert(key, (Instant::now(), answer));
    }

    /// Runs `call` under the total timeout.
    async fn timed<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(self.settings.total_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(RegistryError::from(err)),
            Err(_) => Err(RegistryError::Other(format!(
                "{what}: no answer within {}s",
                self.settings.total_timeout.as_secs()
            ))),
        }
    }

    /// `reference` pinned by digest: a tag is resolved, a digest is checked to exist.
    pub async fn resolve(
        &self,
        reference: &str,
        auth_json: Option<&str>,
    ) -> Result<String, String> {
        let parsed: Reference = reference
            .parse()
            .map_err(|e| format!("'{reference}' is not an image reference: {e}"))?;
        let credential = credential_for(auth_json, reference);
        let key = (format!("resolve {reference}"), credential_key(&credential));
        if let Some(Answer::Resolved(pinned)) = self.cached(&key) {
            return Ok(pinned);
        }
        let client = self.client(key.1);
        let auth = registry_auth(&credential);
        let digest = self
            .timed(reference, client.fetch_manifest_digest(&parsed, &auth))
            .await
            .map_err(|e| format!("cannot resolve {reference}: {e}"))?;
        let pinned = if is_digest_pinned(reference) {
            if !reference.ends_with(&digest) {
                return Err(format!("{reference}: the registry serves {digest}"));
            }
            reference.to_string()
        } else {
            format!("{}@{digest}", repository(reference))
        };
        self.remember(key, Answer::Resolved(pinned.clone()));
        Ok(pinned)
    }

    /// Whether `image` (repo@sha256:…) exists, and the inputs hash its config carries. A present
    /// image is believed for a while; misses are counted (see [`ImageCheck::Missing`]).
    pub async fn inspect(
        &self,
        image: &str,
        auth_json: Option<&str>,
        now: Timestamp,
    ) -> ImageCheck {
        let parsed: Reference = match image.parse() {
            Ok(parsed) => parsed,
            Err(err) => return ImageCheck::Unknown(format!("'{image}': {err}")),
        };
        let credential = credential_for(auth_json, image);
        let key = (format!("inspect {image}"), credential_key(&credential));
        if let Some(Answer::Present(inputs_hash)) = self.cached(&key) {
            return ImageCheck::Present { inputs_hash };
        }
        let client = self.client(key.1);
        let auth = registry_auth(&credential);
        let result = self
            .timed(image, client.pull_manifest_and_config(&parsed, &auth))
            .await;
        match result {
            Ok((_, _, config)) => {
                let inputs_hash = inputs_hash_label(&config);
                self.misses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(image);
                self.remember(key, Answer::Present(inputs_hash.clone()));
                ImageCheck::Present { inputs_hash }
            }
            Err(RegistryError::NotFound) => {
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
            Err(err) => ImageCheck::Unknown(err.to_string()),
        }
    }
}

/// The `strata.dev/inputs-hash` label of an image config document.
fn inputs_hash_label(config: &str) -> Option<String> {
    let config: Value = serde_json::from_str(config).ok()?;
    config
        .pointer("/config/Labels")
        .and_then(|l| l.get(INPUTS_HASH_LABEL))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A registry call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("manifest unknown")]
    NotFound,
    #[error("{0}")]
    Other(String),
}

impl From<OciDistributionError> for RegistryError {
    fn from(err: OciDistributionError) -> Self {
        match err {
            OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound,
            OciDistributionError::RegistryError { envelope, .. }
                if envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, OciErrorCode::ManifestUnknown)) =>
            {
                RegistryError::NotFound
            }
            other => RegistryError::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_hash_comes_from_the_config_labels() {
        let config = format!(r#"{{"config":{{"Labels":{{"{INPUTS_HASH_LABEL}":"abc"}}}}}}"#);
        assert_eq!(inputs_hash_label(&config).as_deref(), Some("abc"));
        assert_eq!(inputs_hash_label(r#"{"config":{}}"#), None);
        assert_eq!(inputs_hash_label("not json"), None);
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
        let check = registry.inspect(&image, None, Timestamp::now()).await;
        assert!(
            matches!(&check, ImageCheck::Unknown(why) if why.contains("no answer") || why.contains("timed out") || why.contains("timeout")),
            "{check:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        let resolved = registry
            .resolve(&format!("{address}/os:latest"), None)
            .await;
        assert!(resolved.is_err());
        drop(listener);
    }
}
