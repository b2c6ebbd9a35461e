//! The CRD's validation rules, checked again on our side so that `strata render` rejects what the
//! API server would, with the same field paths. (The controller does not run them: the API server
//! already did, and an object stored before a rule existed keeps its ratcheted exemption.)

use std::sync::LazyLock;

use regex::Regex;
use strata_crds::{MAX_CONTAINERFILE_BYTES, MachineOSConfig, MachineOSConfigSpec, rules};

use super::RenderError;

/// The regex of a CEL rule `self.matches('…')`, so the CRD's rule is the one source of truth.
fn cel_regex(rule: &str) -> Option<Regex> {
    let pattern = rule.strip_prefix("self.matches('")?.strip_suffix("')")?;
    Regex::new(&pattern.replace(r"\\", r"\")).ok()
}

/// The push spec's rules, in the CRD's order, with their messages.
static PUSH_SPEC_RULES: LazyLock<Vec<(Option<Regex>, &'static str)>> = LazyLock::new(|| {
    [
        (rules::PUSH_SPEC_RULE, rules::PUSH_SPEC_MESSAGE),
        (
            rules::PUSH_SPEC_LOWERCASE_RULE,
            rules::PUSH_SPEC_LOWERCASE_MESSAGE,
        ),
        (rules::PUSH_SPEC_ROOM_RULE, rules::PUSH_SPEC_ROOM_MESSAGE),
    ]
    .into_iter()
    .map(|(rule, message)| (cel_regex(rule), message))
    .collect()
});

/// `repo@sha256:<64 lowercase hex>`.
pub fn is_digest_pinned(reference: &str) -> bool {
    match reference.split_once('@') {
        Some((repo, digest)) => {
            !repo.is_empty()
                && !digest.contains('@')
                && digest.strip_prefix("sha256:").is_some_and(|hex| {
                    hex.len() == 64
                        && hex
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
        }
        None => false,
    }
}

/// The message of the first push-spec rule `spec` breaks.
fn push_spec_problem(spec: &str) -> Option<&'static str> {
    PUSH_SPEC_RULES
        .iter()
        .find(|(re, _)| !re.as_ref().is_some_and(|re| re.is_match(spec)))
        .map(|(_, message)| *message)
}

fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks a MachineOSConfig the way its CRD does; the error names the field.
pub fn validate_config(config: &MachineOSConfig) -> Result<(), RenderError> {
    let spec = &config.spec;
    validate_name(config)?;
    validate_references(spec)?;
    validate_images(spec)?;
    validate_container_files(spec)
}

/// The name is given and is the pool's.
fn validate_name(config: &MachineOSConfig) -> Result<(), RenderError> {
    let spec = &config.spec;
    let name = config.metadata.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err(RenderError::invalid("metadata.name", "is required"));
    }
    if name != spec.machine_config_pool.name {
        return Err(RenderError::invalid(
            "metadata.name",
            format!(
                "'{name}' differs from spec.machineConfigPool.name '{}': {}",
                spec.machine_config_pool.name,
                rules::NAME_MATCHES_POOL_MESSAGE
            ),
        ));
    }
    Ok(())
}

/// The pool and the Secrets are named as Kubernetes names objects.
fn validate_references(spec: &MachineOSConfigSpec) -> Result<(), RenderError> {
    let names = [
        (
            "spec.machineConfigPool.name",
            Some(&spec.machine_config_pool),
        ),
        (
            "spec.renderedImagePushSecret.name",
            Some(&spec.rendered_image_push_secret),
        ),
        (
            "spec.baseImagePullSecret.name",
            spec.base_image_pull_secret.as_ref(),
        ),
    ];
    for (field, value) in names {
        if let Some(value) = value
            && !is_dns1123_subdomain(&value.name)
        {
            return Err(RenderError::invalid(
                field,
                format!("'{}': {}", value.name, rules::DNS1123_SUBDOMAIN_MESSAGE),
            ));
        }
    }
    Ok(())
}

/// The push spec follows the CRD's rules and the base image, when given, is pinned by digest.
fn validate_images(spec: &MachineOSConfigSpec) -> Result<(), RenderError> {
    if let Some(message) = push_spec_problem(&spec.rendered_image_push_spec) {
        return Err(RenderError::invalid(
            "spec.renderedImagePushSpec",
            format!("'{}': {message}", spec.rendered_image_push_spec),
        ));
    }
    if let Some(base) = &spec.base_image
        && !is_digest_pinned(base)
    {
        return Err(RenderError::invalid(
            "spec.baseImage",
            format!("'{base}': {}", rules::DIGEST_MESSAGE),
        ));
    }
    Ok(())
}

/// At most one Containerfile per architecture, each within the size limit.
fn validate_container_files(spec: &MachineOSConfigSpec) -> Result<(), RenderError> {
    if spec.container_file.len() > 4 {
        return Err(RenderError::invalid(
            "spec.containerFile",
            "at most 4 entries (one per architecture)",
        ));
    }
    for (i, entry) in spec.container_file.iter().enumerate() {
        if spec.container_file[..i]
            .iter()
            .any(|e| e.containerfile_arch == entry.containerfile_arch)
        {
            return Err(RenderError::invalid(
                format!("spec.containerFile[{i}].containerfileArch"),
                format!(
                    "{:?} is given twice; one entry per architecture",
                    entry.containerfile_arch
                ),
            ));
        }
        if entry.content.len() > MAX_CONTAINERFILE_BYTES {
            return Err(RenderError::invalid(
                format!("spec.containerFile[{i}].content"),
                format!(
                    "{} bytes; at most {MAX_CONTAINERFILE_BYTES}",
                    entry.content.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_spec_regexes_come_from_the_cel_rules() {
        assert!(PUSH_SPEC_RULES.iter().all(|(re, _)| re.is_some()));
        for ok in [
            "quay.io/openshift/origin-release:latest",
            "image-registry.openshift-image-registry.svc:5000/openshift/os-image:latest",
            "10.0.0.5:5000/strata/worker:v1",
            "Registry.Example.com/os/worker:Latest",
        ] {
            assert_eq!(push_spec_problem(ok), None, "{ok}");
        }
        for bad in [
            "quay.io/openshift/origin-release",
            "localhost:5000/os:latest",
            "quay.io/a@sha256:abc",
            "",
        ] {
            assert_eq!(
                push_spec_problem(bad),
                Some(rules::PUSH_SPEC_MESSAGE),
                "{bad}"
            );
        }
        assert_eq!(
            push_spec_problem("quay.io/MyOrg/os:latest"),
            Some(rules::PUSH_SPEC_LOWERCASE_MESSAGE)
        );
        let long = format!("quay.io/{}:latest", "a".repeat(430));
        assert_eq!(
            push_spec_problem(&long),
            Some(rules::PUSH_SPEC_ROOM_MESSAGE)
        );
    }

    #[test]
    fn digest_pinning() {
        let hex = "a".repeat(64);
        assert!(is_digest_pinned(&format!("quay.io/x/y@sha256:{hex}")));
        assert!(!is_digest_pinned("quay.io/x/y:latest"));
        assert!(!is_digest_pinned(&format!("@sha256:{hex}")));
        assert!(!is_digest_pinned(&format!(
            "quay.io/x/y@sha256:{}",
            "A".repeat(64)
        )));
        assert!(!is_digest_pinned(&format!(
            "quay.io/x/y@sha256:{}",
            "a".repeat(63)
        )));
        assert!(!is_digest_pinned(&format!("a@b@sha256:{hex}")));
    }

    #[test]
    fn dns_names() {
        assert!(is_dns1123_subdomain("worker"));
        assert!(is_dns1123_subdomain("push-secret.v2"));
        assert!(!is_dns1123_subdomain("Worker"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("a..b"));
    }
}
