//! The controller's registry reads, each capped and with a redirect rule: a manifest's digest, a
//! manifest, a config blob, and the token a registry asks for. The registries are named by
//! MachineOSConfigs, so one that answers a huge body or redirects elsewhere must neither OOM-kill
//! the controller (256Mi, every replica in turn) nor take its credentials to another host.
//! oci-client reads whole bodies and follows any redirect, hence these few requests by hand.
//!
//! Caps, those of containers/image (`internal/iolimits`), which the builder's buildah applies to
//! the same documents: manifests 4 MiB (distribution's own limit), config blobs 4 MiB, token
//! answers 1 MiB. A declared `Content-Length` over the cap is refused before the body is read;
//! otherwise the body is counted as it arrives and the read stops one chunk past the cap.
//!
//! Redirects (at most [`MAX_REDIRECTS`], never from https to http):
//! - a manifest or a token is read only from the origin (scheme, host, port) it was asked at. The
//!   distribution API serves manifests itself, the pinned digest comes from that answer, and a
//!   redirect elsewhere would let a registry point the controller at any host it reaches;
//! - a config blob may be served by storage on another host (S3, a CDN: the distribution spec
//!   allows a 307 for blob reads), so that redirect is followed, without `Authorization`; the
//!   blob's digest is checked against the manifest either way.
//!
//! `Authorization` goes only to the registry's own origin, and to the token realm the registry
//! names (that is the token protocol; never over plain HTTP from an HTTPS registry).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_client::Reference;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, HeaderMap, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::docker_config::Credential;

const MIB: u64 = 1 << 20;
/// containers/image `MaxManifestBodySize`, distribution's limit on a pushed manifest.
pub const MANIFEST_LIMIT: u64 = 4 * MIB;
/// containers/image `MaxConfigBodySize`: buildah refuses a larger config, so no image Strata can
/// build or use as a base has one.
pub const CONFIG_LIMIT: u64 = 4 * MIB;
/// containers/image `MaxAuthTokenBodySize`.
pub const TOKEN_LIMIT: u64 = MIB;
/// Enough of an error answer for its message.
const ERROR_LIMIT: u64 = 64 * 1024;
pub const MAX_REDIRECTS: usize = 3;
/// A token without `expires_in` lives 60 s (the token specification's default).
const TOKEN_DEFAULT_TTL: u64 = 60;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// What is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    Manifest,
    Config,
    Token,
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Document::Manifest => "manifest",
            Document::Config => "config blob",
            Document::Token => "token answer",
        })
    }
}

/// A registry read that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 404, or `MANIFEST_UNKNOWN`/`BLOB_UNKNOWN`.
    #[error("manifest unknown")]
    NotFound,
    /// The answer is (or says it is) larger than Strata reads.
    #[error("the {what} of {image} is larger than the {} MiB Strata reads{}",
        limit / MIB,
        announced.map(|n| format!(" ({n} bytes)")).unwrap_or_default())]
    TooLarge {
        what: Document,
        image: String,
        limit: u64,
        /// The size the registry announced (Content-Length or the descriptor), when it did.
        announced: Option<u64>,
    },
    /// A redirect Strata does not follow.
    #[error("{image}: the {what} read was redirected to {to}, which Strata does not follow: {why}")]
    Redirected {
        what: Document,
        image: String,
        to: String,
        why: &'static str,
    },
    #[error("{image}: {url} answered {status}{message}")]
    Status {
        image: String,
        url: String,
        status: u16,
        /// `: ` and the start of the body, or empty.
        message: String,
    },
    #[error("{image}: the {what} does not match {expected} (it is {actual})")]
    DigestMismatch {
        what: Document,
        image: String,
        expected: String,
        actual: String,
    },
    #[error("{image}: {message}")]
    Invalid { image: String, message: String },
    /// Not answered: the message has reqwest's causes (refused, timed out, TLS).
    #[error("{image}: {}", with_causes(source))]
    Transport {
        image: String,
        source: reqwest::Error,
    },
}

/// `err: its cause: its cause's cause …` (reqwest's own message names only the URL).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        message.push_str(&format!(": {err}"));
        cause = err.source();
    }
    message
}

impl RegistryError {
    /// The registry's answer breaks Strata's limits: asking again soon gives the same answer, so
    /// it is not retried until the inputs change (or the periodic resync).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RegistryError::TooLarge { .. } | RegistryError::Redirected { .. }
        )
    }
}

type Result<T> = std::result::Result<T, RegistryError>;

/// Why a redirect from `from` to `to` is not followed, for a read of `what` asked at `origin`.
pub fn refused_redirect(
    what: Document,
    origin: &Url,
    from: &Url,
    to: &Url,
) -> Option<&'static str> {
    if !matches!(to.scheme(), "http" | "https") {
        return Some("not HTTP");
    }
    if from.scheme() == "https" && to.scheme() != "https" {
        return Some("never from HTTPS to plain HTTP");
    }
    match what {
        Document::Config => None,
        _ if same_origin(origin, to) => None,
        _ => Some("a manifest or a token is read only from where it was asked"),
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `sha256:<hex>` of `body`.
pub fn sha256_digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Reads one registry's documents with one credential; caches the tokens it gets.
pub struct RegistryHttp {
    client: reqwest::Client,
    credential: Credential,
    /// Registries (`host:port`) reached over plain HTTP.
    insecure: Vec<String>,
    /// `registry/repository` → (`Authorization` value, good until).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl RegistryHttp {
    /// `client` must not follow redirects itself (`redirect::Policy::none()`): [`Self::send`]
    /// does, by the rules above.
    pub fn new(client: reqwest::Client, credential: Credential, insecure: Vec<String>) -> Self {
        Self {
            client,
            credential,
            insecure,
            tokens: Mutex::default(),
        }
    }

    /// The digest `image` names: the registry's `Docker-Content-Digest` for a HEAD, or the
    /// digest of the (capped) manifest when it sends none.
    pub async fn manifest_digest(&self, image: &Reference) -> Result<String> {
        let name = image.whole();
        let response = self
            .request(
                image,
                Method::HEAD,
                &manifest_path(image),
                Document::Manifest,
            )
            .await?;
        let header = header_digest(response.headers());
        if response.status().is_success()
            && let Some(digest) = header
        {
            if let Some(expected) = image.digest()
                && expected != digest
            {
                return Err(RegistryError::DigestMismatch {
                    what: Document::Manifest,
                    image: name,
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
            return Ok(digest);
        }
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound);
        }
        let (_, digest) = self.manifest(image, &manifest_path(image)).await?;
        Ok(digest)
    }

    /// The config blob of the image manifest `image` names (an index's linux/amd64 entry for an
    /// index), each read capped and checked against its digest.
    pub async fn config(&self, image: &Reference) -> Result<Vec<u8>> {
        let name = image.whole();
        let (mut manifest, _) = self.manifest(image, &manifest_path(image)).await?;
        if manifest.get("manifests").is_some() {
            let digest = amd64_entry(&manifest).ok_or_else(|| RegistryError::Invalid {
                image: name.clone(),
                message: "the index has no linux/amd64 manifest".into(),
            })?;
            let path = format!("/v2/{}/manifests/{digest}", image.repository());
            let (entry, actual) = self.manifest(image, &path).await?;
            if actual != digest {
                return Err(RegistryError::DigestMismatch {
                    what: Document::Manifest,
                    image: name,
                    expected: digest,
                    actual,
                });
            }
            manifest = entry;
        }
        let descriptor = &manifest["config"];
        let (Some(digest), Some(size)) =
            (descriptor["digest"].as_str(), descriptor["size"].as_u64())
        else {
            return Err(RegistryError::Invalid {
                image: name,
                message: "the manifest names no config blob (digest and size)".into(),
            });
        };
        if size > CONFIG_LIMIT {
            return Err(RegistryError::TooLarge {
                what: Document::Config,
                image: name,
                limit: CONFIG_LIMIT,
                announced: Some(size),
            });
        }
        let path = format!("/v2/{}/blobs/{digest}", image.repository());
        let response = self
            .request(image, Method::GET, &path, Document::Config)
            .await?;
        let response = checked(response, &name).await?;
        let body = read_capped(response, CONFIG_LIMIT, Document::Config, &name).await?;
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: Document::Config,
                image: name,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    /// Deletes the manifest `image` pins by digest (a tag is refused: deleting by tag would
    /// remove whatever it names by then). Gone already counts as done.
    pub async fn delete_manifest(&self, image: &Reference) -> Result<()> {
        let name = image.whole();
        if image.digest().is_none() {
            return Err(RegistryError::Invalid {
                image: name,
                message: "only an image pinned by digest is deleted".into(),
            });
        }
        let response = self
            .request(
                image,
                Method::DELETE,
                &manifest_path(image),
                Document::Manifest,
            )
            .await?;
        match checked(response, &name).await {
            Ok(_) | Err(RegistryError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The manifest at `path` (parsed) and its digest, checked against the digest `image` pins
    /// when `path` is the image's own.
    async fn manifest(&self, image: &Reference, path: &str) -> Result<(Value, String)> {
        let name = image.whole();
        let response = self
            .request(image, Method::GET, path, Document::Manifest)
            .await?;
        let response = checked(response, &name).await?;
        let body = read_capped(response, MANIFEST_LIMIT, Document::Manifest, &name).await?;
        let digest = sha256_digest(&body);
        if path == manifest_path(image)
            && let Some(expected) = image.digest()
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: Document::Manifest,
                image: name,
                expected: expected.to_string(),
                actual: digest,
            });
        }
        let manifest = serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
            image: name,
            message: format!("the manifest is not JSON: {e}"),
        })?;
        Ok((manifest, digest))
    }

    fn origin(&self, image: &Reference) -> Result<Url> {
        let registry = image.resolve_registry();
        let scheme = if self.insecure.iter().any(|r| r == registry) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{registry}/")).map_err(|e| RegistryError::Invalid {
            image: image.whole(),
            message: format!("{registry} is not a registry address: {e}"),
        })
    }

    /// `method` on `path` of `image`'s registry, with the cached token; a 401 gets a token (or
    /// basic credentials) as the registry's challenge asks, and one more try. Reads ask for the
    /// `pull` action, a deletion for `delete`.
    async fn request(
        &self,
        image: &Reference,
        method: Method,
        path: &str,
        what: Document,
    ) -> Result<Response> {
        let actions = if method == Method::DELETE {
            "delete"
        } else {
            "pull"
        };
        let origin = self.origin(image)?;
        let url = origin.join(path).map_err(|e| RegistryError::Invalid {
            image: image.whole(),
            message: format!("{path}: {e}"),
        })?;
        let scope = format!(
            "{}/{} {actions}",
            image.resolve_registry(),
            image.repository()
        );
        let cached = self.cached_token(&scope);
        let response = self
            .send(
                image,
                &origin,
                method.clone(),
                url.clone(),
                cached.as_deref(),
                what,
            )
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(authorization) = self
            .authorize(image, &origin, response.headers(), actions)
            .await?
        else {
            return Ok(response);
        };
        self.remember_token(&scope, &authorization.0, authorization.1);
        self.send(image, &origin, method, url, Some(&authorization.0), what)
            .await
    }

    /// Sends `method` to `url`, following redirects by [`refused_redirect`]; `authorization`
    /// goes only to `origin`.
    async fn send(
        &self,
        image: &Reference,
        origin: &Url,
        method: Method,
        mut url: Url,
        authorization: Option<&str>,
        what: Document,
    ) -> Result<Response> {
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.request(method.clone(), url.clone());
            if what != Document::Token {
                request = request.header(ACCEPT, MANIFEST_TYPES);
            }
            if let Some(authorization) = authorization.filter(|_| same_origin(origin, &url)) {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request
                .send()
                .await
                .map_err(|source| RegistryError::Transport {
                    image: image.whole(),
                    source,
                })?;
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok());
            let (true, Some(location)) = (response.status().is_redirection(), location) else {
                return Ok(response);
            };
            let next = url.join(location).map_err(|e| RegistryError::Invalid {
                image: image.whole(),
                message: format!("redirected to '{location}': {e}"),
            })?;
            if let Some(why) = refused_redirect(what, origin, &url, &next) {
                return Err(RegistryError::Redirected {
                    what,
                    image: image.whole(),
                    to: next.to_string(),
                    why,
                });
            }
            url = next;
        }
        Err(RegistryError::Redirected {
            what,
            image: image.whole(),
            to: url.to_string(),
            why: "more than 3 redirects",
        })
    }

    /// The `Authorization` value (and how long it holds) the 401's challenge asks for: a bearer
    /// token from its realm, or the basic credentials. None: no challenge Strata can answer.
    async fn authorize(
        &self,
        image: &Reference,
        origin: &Url,
        headers: &HeaderMap,
        actions: &str,
    ) -> Result<Option<(String, Duration)>> {
        let name = image.whole();
        let basic = match &self.credential {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                BASE64.encode(format!("{username}:{password}"))
            )),
            Credential::Anonymous => None,
        };
        let Some(challenge) = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(bearer_challenge)
        else {
            return Ok(basic.map(|b| (b, Duration::from_secs(300))));
        };
        let mut realm = Url::parse(&challenge.realm).map_err(|e| RegistryError::Invalid {
            image: name.clone(),
            message: format!("token realm '{}': {e}", challenge.realm),
        })?;
        if origin.scheme() == "https" && realm.scheme() != "https" {
            return Err(RegistryError::Redirected {
                what: Document::Token,
                image: name,
                to: realm.to_string(),
                why: "never from HTTPS to plain HTTP",
            });
        }
        realm.query_pairs_mut().append_pair(
            "scope",
            &format!("repository:{}:{actions}", image.repository()),
        );
        if let Some(service) = &challenge.service {
            realm.query_pairs_mut().append_pair("service", service);
        }
        let realm_origin = realm.clone();
        let response = self
            .send(
                image,
                &realm_origin,
                Method::GET,
                realm,
                basic.as_deref(),
                Document::Token,
            )
            .await?;
        let response = checked(response, &name).await?;
        let body = read_capped(response, TOKEN_LIMIT, Document::Token, &name).await?;
        let answer: Value = serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
            image: name.clone(),
            message: format!("the token answer is not JSON: {e}"),
        })?;
        let token = answer["token"]
            .as_str()
            .or(answer["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Invalid {
                image: name,
                message: "the token answer holds no token".into(),
            })?;
        let ttl = answer["expires_in"].as_u64().unwrap_or(TOKEN_DEFAULT_TTL);
        Ok(Some((format!("Bearer {token}"), Duration::from_secs(ttl))))
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(scope)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(value, _)| value.clone())
    }

    fn remember_token(&self, scope: &str, value: &str, ttl: Duration) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, until)| Instant::now() < *until);
        // A few seconds' margin, so a token is not sent just as it expires.
        let until = Instant::now() + ttl.saturating_sub(Duration::from_secs(5));
        tokens.insert(scope.to_string(), (value.to_string(), until));
    }
}

/// `/v2/<repository>/manifests/<digest or tag>`.
fn manifest_path(image: &Reference) -> String {
    let reference = image.digest().or(image.tag()).unwrap_or("latest");
    format!("/v2/{}/manifests/{reference}", image.repository())
}

fn header_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get("Docker-Content-Digest")
        .and_then(|d| d.to_str().ok())
        .map(str::to_string)
}

/// The digest of an index's linux/amd64 manifest (Strata builds amd64 only).
fn amd64_entry(index: &Value) -> Option<String> {
    index["manifests"].as_array()?.iter().find_map(|entry| {
        let platform = &entry["platform"];
        (platform["os"] == "linux" && platform["architecture"] == "amd64")
            .then(|| entry["digest"].as_str().map(str::to_string))
            .flatten()
    })
}

struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

/// The `Bearer` challenge of a `WWW-Authenticate` value, if it has one with a realm.
fn bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let challenges = http_auth::parse_challenges(header).ok()?;
    let bearer = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))?;
    let param = |name: &str| {
        bearer
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_unescaped())
    };
    Some(BearerChallenge {
        realm: param("realm")?,
        service: param("service"),
    })
}

/// `response` when it is a success; otherwise its error, from at most [`ERROR_LIMIT`] of its body.
async fn checked(response: Response, image: &str) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = response.url().to_string();
    let body = read_capped(response, ERROR_LIMIT, Document::Manifest, image)
        .await
        .unwrap_or_default();
    let unknown = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .is_some_and(|errors| {
            errors.iter().any(|e| {
                matches!(
                    e["code"].as_str(),
                    Some("MANIFEST_UNKNOWN" | "BLOB_UNKNOWN")
                )
            })
        });
    if status == StatusCode::NOT_FOUND || unknown {
        return Err(RegistryError::NotFound);
    }
    let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
    let text = text.trim();
    Err(RegistryError::Status {
        image: image.to_string(),
        url,
        status: status.as_u16(),
        message: if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        },
    })
}

/// The body of `response`, refused once it is larger than `limit`: at once when its
/// `Content-Length` says so, else as soon as the bytes read pass the limit.
async fn read_capped(
    mut response: Response,
    limit: u64,
    what: Document,
    image: &str,
) -> Result<Vec<u8>> {
    let too_large = |announced| RegistryError::TooLarge {
        what,
        image: image.to_string(),
        limit,
        announced,
    };
    let announced = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large(announced));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::Transport {
            image: image.to_string(),
            source,
        })?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large(announced));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A tiny HTTP/1.1 server for the tests of the registry reads: each connection answers one
/// request (`Connection: close`) and records what it saw.
#[cfg(test)]
pub(crate) mod test_server {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Clone, Debug)]
    pub struct Seen {
        pub method: String,
        /// Path and query.
        pub path: String,
        pub authorization: Option<String>,
    }

    pub enum Reply {
        /// Status (`200 OK`), extra header lines (each ending in `\r\n`), body; Content-Length
        /// is added, and the body left out for a HEAD.
        Full(String, String, Vec<u8>),
        /// A 200 whose body never ends (no Content-Length: it ends when the connection does).
        Endless,
        /// These header lines, then nothing: the connection is held open.
        HeadOnly(String),
    }

    pub struct Server {
        pub address: String,
        pub seen: Arc<Mutex<Vec<Seen>>>,
        /// Body bytes written so far.
        pub written: Arc<AtomicU64>,
    }

    impl Server {
        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    pub async fn serve(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicU64::new(0));
        let reply = Arc::new(reply);
        let (log, count) = (seen.clone(), written.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (reply, log, count) = (reply.clone(), log.clone(), count.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let mut words = head.split_whitespace();
                    let request = Seen {
                        method: words.next().unwrap_or_default().to_string(),
                        path: words.next().unwrap_or_default().to_string(),
                        authorization: head.lines().find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("authorization")
                                .then(|| value.trim().to_string())
                        }),
                    };
                    log.lock().unwrap().push(request.clone());
                    match reply(&request) {
                        Reply::Full(status, headers, body) => {
                            let head = format!(
                                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = stream.write_all(head.as_bytes()).await;
                            if request.method != "HEAD" {
                                let _ = stream.write_all(&body).await;
                            }
                        }
                        Reply::Endless => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                            let _ = stream.write_all(head.as_bytes()).await;
                            let chunk = vec![b' '; 64 * 1024];
                            while stream.write_all(&chunk).await.is_ok() {
                                count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Reply::HeadOnly(headers) => {
                            let head =
                                format!("HTTP/1.1 200 OK\r\n{headers}Connection: close\r\n\r\n");
                            let _ = stream.write_all(head.as_bytes()).await;
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        }
                    }
                });
            }
        });
        Server {
            address,
            seen,
            written,
        }
    }

    pub fn ok(body: &[u8]) -> Reply {
        Reply::Full("200 OK".into(), String::new(), body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::test_server::{Reply, Server, ok, serve};
    use super::*;

    const CONFIG: &[u8] = br#"{"config":{"Labels":{"strata.dev/inputs-hash":"abc"}}}"#;

    fn manifest(config_digest: &str, config_size: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [],
        }))
        .unwrap()
    }

    /// A reader of `servers`' registries (plain HTTP) with `credential`.
    fn reader(servers: &[&Server], credential: Credential) -> RegistryHttp {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        let insecure = servers.iter().map(|s| s.address.clone()).collect();
        RegistryHttp::new(client, credential, insecure)
    }

    fn image(server: &Server, reference: &str) -> Reference {
        format!("{}/os{reference}", server.address).parse().unwrap()
    }

    fn basic() -> Credential {
        Credential::Basic {
            username: "u".into(),
            password: "p".into(),
        }
    }

    /// With oci-client this read never ended (and held everything it read).
    #[tokio::test]
    async fn an_endless_manifest_is_refused_once_past_the_cap() {
        let server = serve(|_| Reply::Endless).await;
        let registry = reader(&[&server], Credential::Anonymous);
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            registry.config(&image(&server, ":latest")),
        )
        .await
        .expect("the read stops by itself");
        assert!(
            matches!(&read, Err(RegistryError::TooLarge { what: Document::Manifest, limit, announced: None, .. }) if *limit == MANIFEST_LIMIT),
            "{read:?}"
        );
        let message = read.unwrap_err().to_string();
        assert!(
            message.contains(&format!("{}/os:latest", server.address))
                && message.contains("larger than the 4 MiB"),
            "{message}"
        );
        // What the server got out: the cap and the socket buffers, not an endless stream.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let written = server.written.load(Ordering::Relaxed);
        assert!(written < 64 * MIB, "{written} bytes written");
    }

    #[tokio::test]
    async fn an_announced_oversized_manifest_is_refused_before_its_body() {
        let server = serve(|_| Reply::HeadOnly("Content-Length: 5368709120\r\n".into())).await;
        let registry = reader(&[&server], Credential::Anonymous);
        // The body never comes: reading it would wait out the timeout.
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            registry.config(&image(&server, ":latest")),
        )
        .await
        .expect("refused without waiting for the body");
        assert!(
            matches!(
                read,
                Err(RegistryError::TooLarge {
                    what: Document::Manifest,
                    announced: Some(5368709120),
                    ..
                })
            ),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_config_blob_over_the_cap_is_not_fetched_and_one_longer_than_declared_is_cut() {
        let declared_huge = manifest(&sha256_digest(b"x"), 5 * MIB);
        let server = serve(move |r| {
            if r.path.contains("/manifests/") {
                ok(&declared_huge)
            } else {
                Reply::Endless
            }
        })
        .await;
        let registry = reader(&[&server], Credential::Anonymous);
        let read = registry.config(&image(&server, ":latest")).await;
        assert!(
            matches!(read, Err(RegistryError::TooLarge { what: Document::Config, announced: Some(n), .. }) if n == 5 * MIB),
            "{read:?}"
        );
        assert!(server.seen().iter().all(|r| !r.path.contains("/blobs/")));

        // A descriptor that claims 100 bytes, a blob that does not end.
        let small = manifest(&sha256_digest(b"x"), 100);
        let server = serve(move |r| {
            if r.path.contains("/manifests/") {
                ok(&small)
            } else {
                Reply::Endless
            }
        })
        .await;
        let registry = reader(&[&server], Credential::Anonymous);
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            registry.config(&image(&server, ":latest")),
        )
        .await
        .expect("the read stops by itself");
        assert!(
            matches!(
                read,
                Err(RegistryError::TooLarge {
                    what: Document::Config,
                    announced: None,
                    ..
                })
            ),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_config_is_read_by_digest_and_checked_against_it() {
        let body = manifest(&sha256_digest(CONFIG), CONFIG.len() as u64);
        let manifest_digest = sha256_digest(&body);
        let server = serve(move |r| {
            if r.path.contains("/manifests/") {
                ok(&body)
            } else {
                ok(CONFIG)
            }
        })
        .await;
        let registry = reader(&[&server], Credential::Anonymous);
        let config = registry
            .config(&image(&server, &format!("@{manifest_digest}")))
            .await
            .unwrap();
        assert_eq!(config, CONFIG);
        // The manifest is not the one the reference pins.
        let other = format!("@sha256:{}", "0".repeat(64));
        let read = registry.config(&image(&server, &other)).await;
        assert!(
            matches!(
                read,
                Err(RegistryError::DigestMismatch {
                    what: Document::Manifest,
                    ..
                })
            ),
            "{read:?}"
        );

        // A blob that is not the config the manifest names.
        let lying = manifest(&sha256_digest(b"another"), CONFIG.len() as u64);
        let server = serve(move |r| {
            if r.path.contains("/manifests/") {
                ok(&lying)
            } else {
                ok(CONFIG)
            }
        })
        .await;
        let registry = reader(&[&server], Credential::Anonymous);
        let read = registry.config(&image(&server, ":latest")).await;
        assert!(
            matches!(
                read,
                Err(RegistryError::DigestMismatch {
                    what: Document::Config,
                    ..
                })
            ),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_manifest_redirected_to_another_host_is_not_followed() {
        let elsewhere = serve(|_| ok(b"{}")).await;
        let to = format!("http://{}/v2/os/manifests/latest", elsewhere.address);
        let server = serve(move |_| {
            Reply::Full(
                "307 Temporary Redirect".into(),
                format!("Location: {to}\r\n"),
                vec![],
            )
        })
        .await;
        let registry = reader(&[&server, &elsewhere], basic());
        for read in [
            registry
                .config(&image(&server, ":latest"))
                .await
                .map(|_| ()),
            registry
                .manifest_digest(&image(&server, ":latest"))
                .await
                .map(|_| ()),
        ] {
            let Err(
                err @ RegistryError::Redirected {
                    what: Document::Manifest,
                    ..
                },
            ) = read
            else {
                panic!("{read:?}");
            };
            assert!(err.is_refusal());
            assert!(err.to_string().contains(&elsewhere.address), "{err}");
        }
        assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
    }

    /// Blobs may live in storage elsewhere (S3, a CDN); the registry's credentials stay with it.
    #[tokio::test]
    async fn a_blob_redirected_to_storage_is_read_without_the_registrys_credentials() {
        let storage = serve(|_| ok(CONFIG)).await;
        let body = manifest(&sha256_digest(CONFIG), CONFIG.len() as u64);
        let to = format!("http://{}/bucket/config?signature=s", storage.address);
        let server = serve(
            move |r| match (&r.authorization, r.path.contains("/blobs/")) {
                (None, _) => Reply::Full(
                    "401 Unauthorized".into(),
                    "WWW-Authenticate: Basic realm=\"registry\"\r\n".into(),
                    vec![],
                ),
                (Some(_), false) => ok(&body),
                (Some(_), true) => Reply::Full(
                    "307 Temporary Redirect".into(),
                    format!("Location: {to}\r\n"),
                    vec![],
                ),
            },
        )
        .await;
        let registry = reader(&[&server, &storage], basic());
        let config = registry.config(&image(&server, ":latest")).await.unwrap();
        assert_eq!(config, CONFIG);
        let expected = format!("Basic {}", BASE64.encode("u:p"));
        let seen = server.seen();
        assert!(
            seen.iter()
                .any(|r| r.path.contains("/blobs/") && r.authorization.as_ref() == Some(&expected)),
            "{seen:?}"
        );
        let fetched = storage.seen();
        assert_eq!(fetched.len(), 1, "{fetched:?}");
        assert_eq!(fetched[0].path, "/bucket/config?signature=s");
        assert_eq!(fetched[0].authorization, None);
    }

    #[tokio::test]
    async fn a_registry_redirecting_in_circles_is_left_after_three_redirects() {
        let server = serve(|r| {
            Reply::Full(
                "302 Found".into(),
                format!("Location: {}x\r\n", r.path),
                vec![],
            )
        })
        .await;
        let registry = reader(&[&server], Credential::Anonymous);
        let read = registry.config(&image(&server, ":latest")).await;
        assert!(
            matches!(read, Err(RegistryError::Redirected { why, .. }) if why.contains("more than 3")),
            "{read:?}"
        );
        assert_eq!(server.seen().len(), MAX_REDIRECTS + 1);
    }

    #[tokio::test]
    async fn a_bearer_token_comes_from_the_realm_once_and_is_sent_to_the_registry_only() {
        let auth = serve(|_| ok(br#"{"token":"t0k","expires_in":300}"#)).await;
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"reg\"\r\n",
            auth.address
        );
        let digest = format!("sha256:{}", "1".repeat(64));
        let header = format!("Docker-Content-Digest: {digest}\r\n");
        let server = serve(move |r| match r.authorization.as_deref() {
            Some("Bearer t0k") => Reply::Full("200 OK".into(), header.clone(), vec![]),
            _ => Reply::Full("401 Unauthorized".into(), challenge.clone(), vec![]),
        })
        .await;
        let registry = reader(&[&server, &auth], basic());
        for _ in 0..2 {
            let got = registry
                .manifest_digest(&image(&server, ":latest"))
                .await
                .unwrap();
            assert_eq!(got, digest);
        }
        let tokens = auth.seen();
        assert_eq!(tokens.len(), 1, "the token is cached: {tokens:?}");
        assert!(
            tokens[0].path.contains("scope=repository%3Aos%3Apull")
                && tokens[0].path.contains("service=reg"),
            "{}",
            tokens[0].path
        );
        let expected = format!("Basic {}", BASE64.encode("u:p"));
        assert_eq!(tokens[0].authorization.as_ref(), Some(&expected));
        // 401, then the token; the second read sends the cached token straight away.
        let seen: Vec<_> = server.seen().into_iter().map(|r| r.authorization).collect();
        assert_eq!(
            seen,
            [None, Some("Bearer t0k".into()), Some("Bearer t0k".into())]
        );
    }

    #[tokio::test]
    async fn a_deletion_asks_for_the_delete_scope_and_names_the_digest_only() {
        let auth = serve(|r| {
            if r.path.contains("%3Adelete") {
                ok(br#"{"token":"del"}"#)
            } else {
                ok(br#"{"token":"pull-only"}"#)
            }
        })
        .await;
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://{}/token\"\r\n",
            auth.address
        );
        let server = serve(
            move |r| match (r.method.as_str(), r.authorization.as_deref()) {
                ("DELETE", Some("Bearer del")) if r.path.contains("/manifests/sha256:2") => {
                    Reply::Full("202 Accepted".into(), String::new(), vec![])
                }
                ("DELETE", Some("Bearer del")) => Reply::Full(
                    "404 Not Found".into(),
                    String::new(),
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec(),
                ),
                _ => Reply::Full("401 Unauthorized".into(), challenge.clone(), vec![]),
            },
        )
        .await;
        let registry = reader(&[&server, &auth], basic());
        let digest = |d: char| image(&server, &format!("@sha256:{}", d.to_string().repeat(64)));
        registry.delete_manifest(&digest('2')).await.unwrap();
        let tokens = auth.seen();
        assert!(
            tokens.len() == 1 && tokens[0].path.contains("scope=repository%3Aos%3Adelete"),
            "{tokens:?}"
        );
        // Gone already is done; a tag is never deleted (it would take whatever it names now).
        registry.delete_manifest(&digest('3')).await.unwrap();
        let by_tag = registry.delete_manifest(&image(&server, ":latest")).await;
        assert!(
            matches!(by_tag, Err(RegistryError::Invalid { .. })),
            "{by_tag:?}"
        );
        assert!(
            server
                .seen()
                .iter()
                .all(|r| r.method == "DELETE" && r.path.starts_with("/v2/os/manifests/sha256:"))
        );
    }

    #[tokio::test]
    async fn an_endless_token_answer_is_refused_at_its_cap() {
        let auth = serve(|_| Reply::Endless).await;
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://{}/token\"\r\n",
            auth.address
        );
        let server =
            serve(move |_| Reply::Full("401 Unauthorized".into(), challenge.clone(), vec![])).await;
        let registry = reader(&[&server, &auth], Credential::Anonymous);
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            registry.manifest_digest(&image(&server, ":latest")),
        )
        .await
        .expect("the read stops by itself");
        assert!(
            matches!(read, Err(RegistryError::TooLarge { what: Document::Token, limit, .. }) if limit == TOKEN_LIMIT),
            "{read:?}"
        );
    }

    #[test]
    fn redirect_rules() {
        let url = |s: &str| Url::parse(s).unwrap();
        let origin = url("https://r.example.com/");
        let from = url("https://r.example.com/v2/os/blobs/sha256:1");
        let same = url("https://r.example.com/other");
        let storage = url("https://bucket.s3.example.com/blob?sig=1");
        let plain = url("http://bucket.s3.example.com/blob");
        let other_port = url("https://r.example.com:5000/v2/os/manifests/latest");
        assert_eq!(
            refused_redirect(Document::Config, &origin, &from, &storage),
            None
        );
        assert_eq!(
            refused_redirect(Document::Manifest, &origin, &from, &same),
            None
        );
        assert!(refused_redirect(Document::Manifest, &origin, &from, &storage).is_some());
        assert!(refused_redirect(Document::Manifest, &origin, &from, &other_port).is_some());
        assert!(refused_redirect(Document::Token, &origin, &from, &storage).is_some());
        assert!(refused_redirect(Document::Config, &origin, &from, &plain).is_some());
        assert!(
            refused_redirect(Document::Config, &origin, &from, &url("file:///etc/passwd"))
                .is_some()
        );
    }

    #[test]
    fn an_index_gives_its_linux_amd64_manifest() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        assert_eq!(amd64_entry(&index).as_deref(), Some("sha256:b"));
        assert_eq!(amd64_entry(&serde_json::json!({"manifests": []})), None);
    }
}
