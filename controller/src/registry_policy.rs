//! Registry policy as containers/image applies it — mirrors, blocked, allowed and insecure
//! registries — written for buildah (`registries.conf`, `policy.json`) and followed by the
//! controller when it resolves a base, so both pull from the same place.
//!
//! OpenShift describes the policy in ImageDigestMirrorSets, ImageTagMirrorSets and the image
//! config's `registrySources`; the MCO writes it onto nodes the same way
//! (openshift/runtime-utils `pkg/registries`): a digest mirror set's mirrors are used for pulls by
//! digest only, a tag mirror set's for pulls by tag only, `NeverContactSource` blocks the source,
//! `blockedRegistries` block, `allowedRegistries` reject everything else (policy.json) and
//! `insecureRegistries` allow plain HTTP or unverified TLS.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

/// Mirrors of one source repository (or registry, or namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorRule {
    /// `host[:port][/path]`, without tag or digest.
    pub source: String,
    pub mirrors: Vec<String>,
    /// From an ImageDigestMirrorSet (pulls by digest); else an ImageTagMirrorSet (pulls by tag).
    pub by_digest: bool,
    /// `mirrorSourcePolicy: NeverContactSource`: the source itself is never asked.
    pub never_contact_source: bool,
}

/// Where images may come from and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryPolicy {
    pub mirrors: Vec<MirrorRule>,
    /// Scopes (`host[:port][/path]` or `*.domain`) never pulled from.
    pub blocked: Vec<String>,
    /// When not empty, the only scopes pulled from.
    pub allowed: Vec<String>,
    /// Scopes reached over plain HTTP or TLS without verification.
    pub insecure: Vec<String>,
}

/// Whether `scope` (a registries.conf prefix: `host[:port][/path]` or `*.domain`) covers the
/// repository `repo` (`host[:port]/path`), and how specific the match is (longer wins).
pub fn scope_match(scope: &str, repo: &str) -> Option<usize> {
    let scope = scope.trim().trim_end_matches('/');
    if scope.is_empty() {
        return None;
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        let host = repo.split('/').next().unwrap_or(repo);
        let host = host.split(':').next().unwrap_or(host);
        return host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
            .then_some(scope.len());
    }
    let boundary = repo
        .strip_prefix(scope)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    boundary.then_some(scope.len())
}

/// `host[:port]/path` of an image reference: its tag or digest removed.
pub fn repository_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

fn covered(scopes: &[String], repo: &str) -> bool {
    scopes.iter().any(|s| scope_match(s, repo).is_some())
}

impl RegistryPolicy {
    /// Why pulling `reference` is not allowed, if it is not.
    pub fn refusal(&self, reference: &str) -> Option<String> {
        let repo = repository_of(reference);
        if covered(&self.blocked, repo) {
            return Some(format!("{repo} is a blocked registry"));
        }
        if !self.allowed.is_empty() && !covered(&self.allowed, repo) {
            return Some(format!("{repo} is not among the allowed registries"));
        }
        None
    }

    pub fn is_insecure(&self, reference: &str) -> bool {
        covered(&self.insecure, repository_of(reference))
    }

    /// Where a pull of `reference` is tried, in order: the mirrors of the most specific rule for
    /// its kind (digest or tag), then the reference itself unless that rule's source is never
    /// contacted. Refused places are left out.
    pub fn pull_sources(&self, reference: &str) -> Vec<String> {
        let repo = repository_of(reference);
        let (by_digest, suffix) = match reference.find('@') {
            Some(at) => (true, &reference[at..]),
            None => (false, &reference[repo.len()..]),
        };
        let best = self
            .mirrors
            .iter()
            .filter_map(|rule| scope_match(&rule.source, repo).map(|len| (len, rule.source.trim())))
            .max_by_key(|(len, _)| *len)
            .map(|(_, source)| source.trim_end_matches('/'));
        let mut sources = Vec::new();
        let mut never_contact = false;
        if let Some(source) = best {
            let rest = &repo[source.len()..];
            for rule in self
                .mirrors
                .iter()
                .filter(|r| r.source.trim().trim_end_matches('/') == source)
            {
                never_contact |= rule.never_contact_source;
                if rule.by_digest == by_digest {
                    for mirror in &rule.mirrors {
                        let candidate = format!("{}{rest}{suffix}", mirror.trim_end_matches('/'));
                        if !sources.contains(&candidate) {
                            sources.push(candidate);
                        }
                    }
                }
            }
        }
        if !never_contact {
            sources.push(reference.to_string());
        }
        sources.retain(|s| self.refusal(s).is_none());
        sources
    }

    /// containers-registries.conf(5), version 2.
    pub fn registries_conf(&self) -> String {
        let mut text = String::from(
            "# Written by Strata from the cluster's registry policy.\nunqualified-search-registries = []\n",
        );
        let mut prefixes: Vec<&str> = Vec::new();
        let all = self
            .mirrors
            .iter()
            .map(|r| r.source.as_str())
            .chain(self.blocked.iter().map(String::as_str))
            .chain(self.insecure.iter().map(String::as_str));
        for prefix in all {
            let prefix = prefix.trim().trim_end_matches('/');
            if !prefix.is_empty() && !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        for prefix in prefixes {
            let rules: Vec<&MirrorRule> = self
                .mirrors
                .iter()
                .filter(|r| r.source.trim().trim_end_matches('/') == prefix)
                .collect();
            let blocked = self
                .blocked
                .iter()
                .any(|b| b.trim().trim_end_matches('/') == prefix)
                || rules.iter().any(|r| r.never_contact_source);
            let insecure = self
                .insecure
                .iter()
                .any(|i| i.trim().trim_end_matches('/') == prefix);
            let _ = write!(text, "\n[[registry]]\nprefix = {}\n", quoted(prefix));
            // A wildcard entry may not name a location.
            if !prefix.starts_with("*.") {
                let _ = writeln!(text, "location = {}", quoted(prefix));
            }
            if blocked {
                text.push_str("blocked = true\n");
            }
            if insecure {
                text.push_str("insecure = true\n");
            }
            for rule in rules {
                for mirror in &rule.mirrors {
                    let _ = write!(
                        text,
                        "\n[[registry.mirror]]\nlocation = {}\npull-from-mirror = {}\n",
                        quoted(mirror.trim_end_matches('/')),
                        quoted(if rule.by_digest {
                            "digest-only"
                        } else {
                            "tag-only"
                        })
                    );
                    if self.is_insecure(mirror) {
                        text.push_str("insecure = true\n");
                    }
                }
            }
        }
        text
    }

    /// containers-policy.json(5) when registries are restricted to an allowed list: everything
    /// else is rejected. `None`: buildah's default policy applies.
    pub fn policy_json(&self) -> Option<String> {
        if self.allowed.is_empty() {
            return None;
        }
        let accept = json!([{"type": "insecureAcceptAnything"}]);
        let docker: Map<String, Value> = self
            .allowed
            .iter()
            .map(|scope| {
                (
                    scope.trim().trim_end_matches('/').to_string(),
                    accept.clone(),
                )
            })
            .collect();
        let policy = json!({
            "default": [{"type": "reject"}],
            "transports": {
                "docker": docker,
                // The build's own images: local storage and buildah's intermediate copies.
                "containers-storage": {"": accept},
                "dir": {"": accept},
                "oci": {"": accept},
            },
        });
        Some(policy.to_string())
    }
}

/// A TOML basic string.
fn quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrored() -> RegistryPolicy {
        RegistryPolicy {
            mirrors: vec![
                MirrorRule {
                    source: "quay.io/openshift-release-dev/ocp-v4.0-art-dev".into(),
                    mirrors: vec!["mirror.local:5000/ocp/release".into()],
                    by_digest: true,
                    never_contact_source: true,
                },
                MirrorRule {
                    source: "quay.io".into(),
                    mirrors: vec!["mirror.local:5000/quay".into()],
                    by_digest: false,
                    never_contact_source: false,
                },
            ],
            blocked: vec!["docker.io".into()],
            allowed: vec![],
            insecure: vec!["mirror.local:5000".into()],
        }
    }

    #[test]
    fn scopes_match_on_path_boundaries_and_wildcards() {
        assert_eq!(scope_match("quay.io", "quay.io/a/b"), Some(7));
        assert_eq!(scope_match("quay.io/a", "quay.io/a/b"), Some(9));
        assert_eq!(scope_match("quay.io/a", "quay.io/ab"), None);
        assert_eq!(scope_match("quay.io", "quay.iox/a"), None);
        assert!(scope_match("*.example.com", "r.example.com:5000/x").is_some());
        assert!(scope_match("*.example.com", "example.com/x").is_none());
        assert!(scope_match("", "quay.io/a").is_none());
    }

    #[test]
    fn digests_go_to_digest_mirrors_and_a_never_contacted_source_is_skipped() {
        let p = mirrored();
        let base = format!(
            "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:{}",
            "a".repeat(64)
        );
        assert_eq!(
            p.pull_sources(&base),
            vec![format!(
                "mirror.local:5000/ocp/release@sha256:{}",
                "a".repeat(64)
            )]
        );
        // A tag under the broader rule: its tag mirror, then the source.
        assert_eq!(
            p.pull_sources("quay.io/fedora/fedora-coreos:stable"),
            vec![
                "mirror.local:5000/quay/fedora/fedora-coreos:stable".to_string(),
                "quay.io/fedora/fedora-coreos:stable".to_string()
            ]
        );
        // A digest under the tag-only rule: the source alone.
        let other = format!("quay.io/x/y@sha256:{}", "b".repeat(64));
        assert_eq!(p.pull_sources(&other), vec![other.clone()]);
        assert_eq!(
            p.pull_sources("docker.io/library/busybox:latest"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn allowed_registries_refuse_everything_else() {
        let p = RegistryPolicy {
            allowed: vec!["registry.example.com".into(), "*.corp.example".into()],
            ..RegistryPolicy::default()
        };
        assert_eq!(p.refusal("registry.example.com/os:1"), None);
        assert_eq!(p.refusal("r.corp.example/os:1"), None);
        assert!(
            p.refusal("quay.io/os:1")
                .unwrap()
                .contains("not among the allowed")
        );
        let policy: Value = serde_json::from_str(&p.policy_json().unwrap()).unwrap();
        assert_eq!(policy["default"][0]["type"], "reject");
        assert!(policy["transports"]["docker"]["*.corp.example"].is_array());
        assert_eq!(RegistryPolicy::default().policy_json(), None);
    }

    #[test]
    fn registries_conf_snapshot() {
        insta::assert_snapshot!(mirrored().registries_conf());
    }

    #[test]
    fn values_are_quoted_for_toml() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
