//! Registry lookups with oci-client: resolve a tag to a digest, check that a digest exists.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

use super::objects::repository;
use super::plan::ImageCheck;
use crate::render::is_digest_pinned;

pub struct Registry {
    client: Client,
}

impl Registry {
    /// `insecure` registries (host:port) are reached over plain HTTP; all others over HTTPS.
    pub fn new(insecure: &[String]) -> Self {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
            ..ClientConfig::default()
        };
        Self {
            client: Client::new(config),
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
        let auth = registry_auth(auth_json, parsed.resolve_registry());
        match self.client.fetch_manifest_digest(&parsed, &auth).await {
            Ok(digest) if is_digest_pinned(reference) => {
                if reference.ends_with(&digest) {
                    Ok(reference.to_string())
                } else {
                    Err(format!("{reference}: the registry serves {digest}"))
                }
            }
            Ok(digest) => Ok(format!("{}@{digest}", repository(reference))),
            Err(err) => Err(format!("cannot resolve {reference}: {err}")),
        }
    }

    /// Whether `image` (repo@sha256:…) exists.
    pub async fn check(&self, image: &str, auth_json: Option<&str>) -> ImageCheck {
        let parsed: Reference = match image.parse() {
            Ok(parsed) => parsed,
            Err(err) => return ImageCheck::Unknown(format!("'{image}': {err}")),
        };
        let auth = registry_auth(auth_json, parsed.resolve_registry());
        match self.client.fetch_manifest_digest(&parsed, &auth).await {
            Ok(_) => ImageCheck::Present,
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => ImageCheck::Missing,
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| {
                    matches!(e.code, oci_client::errors::OciErrorCode::ManifestUnknown)
                }) =>
            {
                ImageCheck::Missing
            }
            Err(err) => ImageCheck::Unknown(err.to_string()),
        }
    }
}

/// Basic auth for `registry` from a canonical `.dockerconfigjson`; anonymous without an entry.
pub fn registry_auth(auth_json: Option<&str>, registry: &str) -> RegistryAuth {
    let entry = auth_json
        .and_then(|json| serde_json::from_str::<Value>(json).ok())
        .and_then(|v| v.get("auths").and_then(|a| a.get(registry)).cloned());
    let Some(entry) = entry else {
        return RegistryAuth::Anonymous;
    };
    if let (Some(Value::String(user)), Some(Value::String(pass))) =
        (entry.get("username"), entry.get("password"))
    {
        return RegistryAuth::Basic(user.clone(), pass.clone());
    }
    let decoded = entry
        .get("auth")
        .and_then(Value::as_str)
        .and_then(|auth| BASE64.decode(auth.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, pass)) => RegistryAuth::Basic(user.into(), pass.into()),
        None => RegistryAuth::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_from_docker_config() {
        let json = r#"{"auths":{"r.example.com":{"auth":"dXNlcjpwYXNz"},"o.example.com":{"username":"a","password":"b"}}}"#;
        assert!(
            matches!(registry_auth(Some(json), "r.example.com"), RegistryAuth::Basic(u, p) if u == "user" && p == "pass")
        );
        assert!(
            matches!(registry_auth(Some(json), "o.example.com"), RegistryAuth::Basic(u, p) if u == "a" && p == "b")
        );
        assert!(matches!(
            registry_auth(Some(json), "x.example.com"),
            RegistryAuth::Anonymous
        ));
        assert!(matches!(
            registry_auth(None, "x.example.com"),
            RegistryAuth::Anonymous
        ));
    }
}
