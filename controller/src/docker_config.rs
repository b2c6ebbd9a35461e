//! Registry credentials: Secrets turned into one canonical `.dockerconfigjson`, and the entry for
//! an image looked up the way the container tools do (containers-auth.json(5)), so the
//! controller's registry checks and the builder's buildah pick the same credential.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::ByteString;
use serde_json::{Map, Value, json};

/// The fields of an `auths` entry that survive canonicalisation. Credential helpers and other
/// client settings are dropped: neither the builder nor the controller may run programs a
/// Secret names.
const KEPT_FIELDS: [&str; 4] = ["auth", "username", "password", "identitytoken"];

/// The `auths` map of a Secret's data: `.dockerconfigjson` (`{"auths": …}`) or the legacy
/// `.dockercfg` (the map itself), with only [`KEPT_FIELDS`] of each entry.
pub fn secret_auths(data: &BTreeMap<String, ByteString>) -> Result<Map<String, Value>, String> {
    let (raw, nested) = if let Some(v) = data.get(".dockerconfigjson") {
        (v, true)
    } else if let Some(v) = data.get(".dockercfg") {
        (v, false)
    } else {
        return Err("has neither .dockerconfigjson nor .dockercfg".into());
    };
    let parsed: Value =
        serde_json::from_slice(&raw.0).map_err(|e| format!("is not valid JSON: {e}"))?;
    let auths = if nested {
        parsed.get("auths").cloned().unwrap_or(Value::Null)
    } else {
        parsed
    };
    let Value::Object(auths) = auths else {
        return Err("has no registry entries".into());
    };
    let mut out = Map::new();
    for (key, entry) in auths {
        let kept: Map<String, Value> = KEPT_FIELDS
            .iter()
            .filter_map(|f| match entry.get(*f) {
                Some(Value::String(v)) if !v.is_empty() => Some((f.to_string(), json!(v))),
                _ => None,
            })
            .collect();
        if !kept.is_empty() {
            out.insert(key, Value::Object(kept));
        }
    }
    Ok(out)
}

/// One canonical `.dockerconfigjson` from layers of `auths`, later layers winning per key (the
/// global pull secret first, a MachineOSConfig's own Secret over it).
pub fn merge(layers: &[Map<String, Value>]) -> String {
    let mut merged = Map::new();
    for layer in layers {
        for (key, entry) in layer {
            merged.insert(key.clone(), entry.clone());
        }
    }
    json!({"auths": merged}).to_string()
}

/// The canonical document of one Secret (see [`secret_auths`]).
pub fn canonical_auth(data: &BTreeMap<String, ByteString>) -> Result<String, String> {
    secret_auths(data).map(|auths| merge(&[auths]))
}

/// A credential for one registry request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// Docker Hub's many names, as containers/image normalises them.
fn normalise_registry(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    }
}

/// An `auths` key as a lookup key: `https://`/`http://` prefixes (legacy docker keys such as
/// `https://index.docker.io/v1/`) mean "the whole registry", so their path is dropped.
fn normalise_key(key: &str) -> String {
    let (rest, legacy) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => (rest, true),
        None => (key, false),
    };
    let rest = rest.trim_end_matches('/');
    let (host, path) = match rest.split_once('/') {
        Some((host, path)) if !legacy => (host, Some(path)),
        Some((host, _)) => (host, None),
        None => (rest, None),
    };
    let host = normalise_registry(host);
    match path {
        Some(path) => format!("{host}/{path}"),
        None => host.to_string(),
    }
}

/// `registry/namespace…/name` of an image reference (tag and digest removed, Docker Hub's short
/// names expanded).
fn repository_path(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    if is_host {
        format!("{}/{rest}", normalise_registry(first))
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{name}")
    }
}

/// The credential for `image` in a canonical document: the entry with the longest key matching
/// the image's `registry/namespace/…/name` (then `registry/namespace`, then `registry`).
/// An identity token is sent as the password of the token request, as registries that issue
/// them (Azure, Harbor robot accounts) accept.
pub fn credential_for(auth_json: Option<&str>, image: &str) -> Credential {
    let Some(auths) = auth_json
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
        .and_then(|v| v.get("auths").cloned())
        .and_then(|a| a.as_object().cloned())
    else {
        return Credential::Anonymous;
    };
    let keys: BTreeMap<String, &Value> = auths.iter().map(|(k, v)| (normalise_key(k), v)).collect();
    let path = repository_path(image);
    let mut candidate = path.as_str();
    let entry = loop {
        if let Some(entry) = keys.get(candidate) {
            break Some(*entry);
        }
        match candidate.rfind('/') {
            Some(slash) => candidate = &candidate[..slash],
            None => break None,
        }
    };
    let Some(entry) = entry else {
        return Credential::Anonymous;
    };
    let field = |f: &str| entry.get(f).and_then(Value::as_str).map(str::to_string);
    let decoded = field("auth")
        .and_then(|a| BASE64.decode(a.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|d| {
            d.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let (user, pass) = match (field("username"), field("password"), decoded) {
        (Some(u), Some(p), _) => (Some(u), Some(p)),
        (_, _, Some((u, p))) => (Some(u), Some(p)),
        (u, _, None) => (u, None),
    };
    match (field("identitytoken"), user, pass) {
        (Some(token), user, _) => Credential::Basic {
            username: user
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "<token>".into()),
            password: token,
        },
        (None, Some(username), Some(password)) => Credential::Basic { username, password },
        _ => Credential::Anonymous,
    }
}

/// Every secret value in a canonical document (passwords, tokens, `auth` blobs and their decoded
/// form), for redaction.
pub fn secret_values(auth_json: &str) -> Vec<String> {
    let Ok(doc) = serde_json::from_str::<Value>(auth_json) else {
        return Vec::new();
    };
    let mut values = Vec::new();
    for entry in doc["auths"]
        .as_object()
        .into_iter()
        .flat_map(|a| a.values())
    {
        for field in ["auth", "password", "identitytoken"] {
            if let Some(v) = entry.get(field).and_then(Value::as_str) {
                values.push(v.to_string());
                if field == "auth"
                    && let Some((_, pass)) = BASE64
                        .decode(v.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .as_deref()
                        .and_then(|d| d.split_once(':'))
                {
                    values.push(pass.to_string());
                }
            }
        }
    }
    values.retain(|v| v.len() >= 4);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(key: &str, json: &str) -> BTreeMap<String, ByteString> {
        BTreeMap::from([(key.to_string(), ByteString(json.as_bytes().to_vec()))])
    }

    #[test]
    fn auth_is_canonicalised_from_both_formats() {
        let modern = data(
            ".dockerconfigjson",
            r#"{"auths":{"r.example.com":{"auth":"dTpw","email":"x@y"}},"credHelpers":{"r.example.com":"evil"}}"#,
        );
        assert_eq!(
            canonical_auth(&modern).unwrap(),
            r#"{"auths":{"r.example.com":{"auth":"dTpw"}}}"#
        );
        let legacy = data(
            ".dockercfg",
            r#"{"r.example.com":{"username":"u","password":"p"}}"#,
        );
        assert_eq!(
            canonical_auth(&legacy).unwrap(),
            r#"{"auths":{"r.example.com":{"password":"p","username":"u"}}}"#
        );
        assert!(canonical_auth(&BTreeMap::new()).is_err());
    }

    #[test]
    fn later_layers_win_per_key() {
        let global = secret_auths(&data(
            ".dockerconfigjson",
            r#"{"auths":{"a.example.com":{"auth":"Z2xvYmFsOjE="},"b.example.com":{"auth":"Z2xvYmFsOjI="}}}"#,
        ))
        .unwrap();
        let own = secret_auths(&data(
            ".dockerconfigjson",
            r#"{"auths":{"b.example.com":{"auth":"b3duOjM="}}}"#,
        ))
        .unwrap();
        let merged = merge(&[global, own]);
        let basic = |image| credential_for(Some(&merged), image);
        assert_eq!(
            basic("a.example.com/os:1"),
            Credential::Basic {
                username: "global".into(),
                password: "1".into()
            }
        );
        assert_eq!(
            basic("b.example.com/os:1"),
            Credential::Basic {
                username: "own".into(),
                password: "3".into()
            }
        );
    }

    #[test]
    fn lookup_follows_the_container_tools_conventions() {
        let doc = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": BASE64.encode("hub:1")},
            "quay.io": {"auth": BASE64.encode("quay:2")},
            "quay.io/openshift-release-dev": {"auth": BASE64.encode("release:3")},
            "quay.io/openshift-release-dev/ocp-v4.0-art-dev": {"username": "art", "password": "4"},
            "registry.example.com:5000": {"identitytoken": "tok-5"},
            "http://legacy.example.com/v2/": {"auth": BASE64.encode("legacy:6")},
        }})
        .to_string();
        let who = |image: &str| match credential_for(Some(&doc), image) {
            Credential::Basic { username, password } => format!("{username}:{password}"),
            Credential::Anonymous => "anonymous".into(),
        };
        assert_eq!(who("busybox"), "hub:1");
        assert_eq!(who("docker.io/library/busybox:1"), "hub:1");
        assert_eq!(who("registry-1.docker.io/me/tool@sha256:0"), "hub:1");
        assert_eq!(who("quay.io/other/x:1"), "quay:2");
        assert_eq!(who("quay.io/openshift-release-dev/other:1"), "release:3");
        assert_eq!(
            who("quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:1"),
            "art:4"
        );
        assert_eq!(who("registry.example.com:5000/os:1"), "<token>:tok-5");
        assert_eq!(who("legacy.example.com/a/b:1"), "legacy:6");
        assert_eq!(who("elsewhere.example.com/os:1"), "anonymous");
        assert_eq!(credential_for(None, "quay.io/x:1"), Credential::Anonymous);
    }

    #[test]
    fn secret_values_include_decoded_passwords() {
        let doc = json!({"auths": {"r.example.com": {"auth": BASE64.encode("user:s3cret-pass")}}})
            .to_string();
        let values = secret_values(&doc);
        assert!(values.contains(&"s3cret-pass".to_string()));
        assert!(values.contains(&BASE64.encode("user:s3cret-pass")));
    }
}
