//! Names of the objects Strata makes, and the limits they must fit: 63 characters for Job names
//! and label values, 128 for an image tag.

use strata_crds::MachineOSBuild;

/// Job names and label values must be at most 63 characters.
const MAX_LABEL_VALUE: usize = 63;
/// An OCI tag is at most 128 characters.
pub const MAX_TAG: usize = 128;
/// A push spec (MachineOSBuild `spec.renderedImagePushSpec`) is at most 447 characters.
const MAX_PUSH_SPEC: usize = 447;

/// `name` shortened to `max` characters keeping its last `-` segment (a build's hash), so that
/// shortened names stay unique; when even that does not fit, the hash alone.
fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = name.rsplit('-').next().unwrap_or_default();
    let hash = &hash[..hash.len().min((max / 2).max(12))];
    if hash.len() + 1 >= max {
        return hash.chars().take(max).collect();
    }
    let head: String = name.chars().take(max - hash.len() - 1).collect();
    format!("{}-{hash}", head.trim_end_matches(['-', '.']))
}

/// `name` shortened to 63 characters (Job names, label values), keeping its hash.
pub fn fit_63(name: &str) -> String {
    fit(name, MAX_LABEL_VALUE)
}

fn short_name(prefix: &str, build: &str) -> String {
    fit_63(&format!("{prefix}-{build}"))
}

pub fn containerfile_configmap(build: &str) -> String {
    short_name("containerfile", build)
}
/// The build's credentials: the push and pull auth and the entitlement, each step mounting only
/// its own keys.
pub fn credentials_secret(build: &str) -> String {
    short_name("credentials", build)
}
/// The per-build Secrets of earlier versions (one per credential), still removed when their
/// build ends.
pub fn earlier_secrets(build: &str) -> [String; 3] {
    ["push", "base", "entitlement"].map(|prefix| short_name(prefix, build))
}
/// The end of each step's log of a build that succeeded, kept once its pod goes.
pub fn logs_configmap(build: &str) -> String {
    short_name("logs", build)
}
/// The build's view of the cluster's environment: registries.conf, CAs.
pub fn environment_configmap(build: &str) -> String {
    short_name("environment", build)
}

/// The Job of one incarnation of a build: a rebuild deletes and recreates the MachineOSBuild
/// under the same name, so the Job name carries the build's uid to never meet the old Job.
pub fn job(build: &MachineOSBuild) -> String {
    let name = build.metadata.name.clone().unwrap_or_default();
    let uid: String = build
        .metadata
        .uid
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(5)
        .collect();
    if uid.is_empty() {
        short_name("build", &name)
    } else {
        fit_63(&format!("build-{name}-{uid}"))
    }
}

/// The Job that makes the disk image of one incarnation of a build (after the pin).
pub fn disk_image_job(build: &MachineOSBuild) -> String {
    let job = job(build);
    // `build-<name>-<uid>` → `disk-<name>-<uid>`, the same length.
    match job.strip_prefix("build-") {
        Some(rest) => format!("disk-{rest}"),
        None => fit_63(&format!("disk-{job}")),
    }
}

/// The disk image Job's credentials: the push auth (which reads the pinned image too) and the
/// proxy URLs.
pub fn disk_image_secret(build: &str) -> String {
    short_name("disk-credentials", build)
}

/// Where a build's disk image goes: the build's image with `-disk` after its tag (the tag cut
/// to leave room, keeping the hash).
pub fn disk_image_for_build(push_spec: &str, build: &str) -> String {
    use strata_crds::contract::disk_image_pod::TAG_SUFFIX;
    let repository = repository(push_spec);
    let room = MAX_PUSH_SPEC.saturating_sub(repository.len() + 1 + TAG_SUFFIX.len());
    format!(
        "{repository}:{}{TAG_SUFFIX}",
        fit(build, (MAX_TAG - TAG_SUFFIX.len()).min(room))
    )
}

/// The push spec's repository with the tag replaced by the build's name, cut to a legal tag
/// (128 characters, and the whole spec to 447) keeping the hash. The CRD keeps the repository
/// short enough for the hash to fit.
pub fn image_for_build(push_spec: &str, build: &str) -> String {
    let repository = repository(push_spec);
    let room = MAX_PUSH_SPEC.saturating_sub(repository.len() + 1);
    format!("{repository}:{}", fit(build, MAX_TAG.min(room)))
}

/// `host[:port]/path/name` of a push spec `host[:port]/path/name:tag` (or of `repo@digest`).
pub fn repository(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// Name of the MachineConfig pinning `pool`. The MCO takes the osImageURL of the last
/// MachineConfig by name, so ours sort after every other (`zz-…`, after the MCO's `99-…`); the
/// worker pool's sorts before every custom pool's, since custom pools also select worker configs.
pub fn machine_config(pool: &str) -> String {
    if pool == "worker" {
        "zz-strata-1-worker".into()
    } else {
        format!("zz-strata-2-{pool}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::build;

    #[test]
    fn names_fit_in_63_characters_and_keep_the_hash() {
        let long = format!("{}-0123456789ab", "p".repeat(240));
        let name = short_name("build", &long);
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-0123456789ab"));
        assert_eq!(job(&build()), "build-worker-0123456789ab-11111");
        assert_eq!(disk_image_job(&build()), "disk-worker-0123456789ab-11111");
        let disk = disk_image_for_build(&format!("r.example.com/os:{long}"), &long);
        let tag = disk.rsplit(':').next().unwrap();
        assert!(
            tag.len() <= MAX_TAG && tag.ends_with("-0123456789ab-disk"),
            "{tag}"
        );
    }

    #[test]
    fn image_tag_is_the_build_name_and_always_a_legal_tag() {
        assert_eq!(
            image_for_build("registry.example.com:5000/a/os:latest", "worker-1"),
            "registry.example.com:5000/a/os:worker-1"
        );
        // The longest legal MachineOSConfig name (253) gives a 266-character build name.
        let long_build = format!("{}-0123456789ab", "p".repeat(253));
        let image = image_for_build("r.example.com/os:latest", &long_build);
        let tag = image.rsplit(':').next().unwrap();
        assert!(tag.len() <= MAX_TAG, "{}", tag.len());
        assert!(tag.ends_with("-0123456789ab"));
        // The longest repository the CRD allows still leaves room for the hash.
        let repo = format!("r.example.com/{}", "a".repeat(434 - 14));
        let image = image_for_build(&format!("{repo}:latest"), &long_build);
        assert_eq!(image.len(), 447);
        assert_eq!(image, format!("{repo}:0123456789ab"));
        assert_eq!(
            repository("registry.example.com:5000/a/os@sha256:abc"),
            "registry.example.com:5000/a/os"
        );
        assert_eq!(
            repository("registry.example.com:5000/a/os"),
            "registry.example.com:5000/a/os"
        );
    }

    #[test]
    fn machine_config_names_sort_after_the_mcos_and_worker_first() {
        let worker = machine_config("worker");
        let infra = machine_config("infra");
        assert!(worker.as_str() > "99-worker-generated-registries");
        assert!(infra > worker);
    }

    proptest::proptest! {
        #[test]
        fn fitted_names_are_bounded_and_stable(name in "[a-z0-9][a-z0-9.-]{0,252}", hash in "[0-9a-f]{12}") {
            let build = format!("{name}-{hash}");
            let short = fit_63(&build);
            proptest::prop_assert!(short.len() <= 63);
            proptest::prop_assert!(short.ends_with(&hash));
            proptest::prop_assert_eq!(short, fit_63(&build));
            let tag = image_for_build("r.example.com/os:latest", &build);
            proptest::prop_assert!(tag.rsplit(':').next().unwrap().len() <= MAX_TAG);
        }
    }
}
