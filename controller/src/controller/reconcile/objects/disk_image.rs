//! The objects of a build's disk image (after the pin): a Secret with the push auth and the proxy
//! URLs, the build's environment ConfigMap written again (the disk pod reads the same registry
//! settings), and the Job. Its pod: `pull` (the pinned image, with the push auth, which reads
//! it), `disk` (no credential: it runs the image's own tools) and `push` (the disk files as OCI
//! artifacts beside the image). Its image storage is an emptyDir of its own, never the cache
//! claim: nothing of another pool's builds is in reach of the image's tools.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use strata_crds::MachineOSBuild;
use strata_crds::contract::{DiskPlan, builder_pod, disk_image_pod};

use super::{
    PodVolumes, STEP_CAPABILITIES, add_environment, credential_keys, empty_dir_volume, env_var,
    environment_data, key_to_path, meta, mount, pod_spec_of, proxy_env, secret_volume, step,
    steps_job,
};
use crate::controller::environment::Environment;
use crate::controller::names;
use crate::controller::settings::Settings;

/// What a build's disk image needs in the controller namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskImageObjects {
    pub environment: ConfigMap,
    pub credentials: Secret,
    pub job: Job,
}

/// The disk image objects of `build`, whose pinned image is `image` (repo@sha256:…);
/// `push_auth` is a canonical `.dockerconfigjson` document.
pub fn disk_image_objects(
    build: &MachineOSBuild,
    image: &str,
    push_auth: &str,
    env: &Environment,
    plan: &DiskPlan,
    settings: &Settings,
) -> DiskImageObjects {
    let name = build.metadata.name.clone().unwrap_or_default();
    // Only the registry settings: no entitlement, no repositories (nothing is installed).
    let env = Environment {
        entitlement: None,
        yum_repos: false,
        rpm_gpg: false,
        ..env.clone()
    };
    let environment = ConfigMap {
        metadata: meta(names::environment_configmap(&name), settings, build),
        data: Some(environment_data(&env, settings)),
        ..ConfigMap::default()
    };
    let credentials = credentials(build, push_auth, &env, settings);
    let job = job(build, image, &environment, &env, plan, settings);
    DiskImageObjects {
        environment,
        credentials,
        job,
    }
}

fn credentials(
    build: &MachineOSBuild,
    push_auth: &str,
    env: &Environment,
    settings: &Settings,
) -> Secret {
    let name = build.metadata.name.clone().unwrap_or_default();
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    let mut data = BTreeMap::from([(credential_keys::PUSH.to_string(), bytes(push_auth))]);
    for (key, url) in [
        (credential_keys::PROXY_HTTP, &env.proxy.http),
        (credential_keys::PROXY_HTTPS, &env.proxy.https),
    ] {
        if !url.is_empty() {
            data.insert(key.into(), bytes(url));
        }
    }
    Secret {
        metadata: meta(names::disk_image_secret(&name), settings, build),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The pod's volumes: the push auth (mounted where the pull step and the push step read their
/// auth), an image storage and a work directory of its own, the environment.
fn volumes(
    build_name: &str,
    environment: &ConfigMap,
    env: &Environment,
    settings: &Settings,
) -> PodVolumes {
    let secret = names::disk_image_secret(build_name);
    let size = &settings.builder_resources.storage_size_limit;
    let auth = Some(vec![key_to_path(
        credential_keys::PUSH,
        ".dockerconfigjson",
    )]);
    let volumes = vec![
        secret_volume("push-auth", &secret, auth),
        empty_dir_volume("storage", size),
        empty_dir_volume("work", size),
    ];
    let shared = [
        mount("storage", builder_pod::STORAGE_DIR, false),
        mount("work", builder_pod::WORK_DIR, false),
    ];
    let with_auth = |dir: &str| {
        let mut mounts = vec![mount("push-auth", dir, true)];
        mounts.extend(shared.iter().cloned());
        mounts
    };
    let mut pod_volumes = PodVolumes {
        volumes,
        pull: with_auth(builder_pod::PULL_AUTH_DIR),
        // The disk step's mounts go where the builder pod's build step has its own.
        build: shared.to_vec(),
        boot: Vec::new(),
        push: with_auth(builder_pod::PUSH_AUTH_DIR),
    };
    add_environment(&mut pod_volumes, build_name, environment, env);
    pod_volumes
}

fn job(
    build: &MachineOSBuild,
    image: &str,
    environment: &ConfigMap,
    env: &Environment,
    plan: &DiskPlan,
    settings: &Settings,
) -> Job {
    let name = build.metadata.name.clone().unwrap_or_default();
    let PodVolumes {
        volumes,
        pull,
        build: disk,
        push,
        ..
    } = volumes(&name, environment, env, settings);
    let target = names::disk_image_for_build(&build.spec.rendered_image_push_spec, &name);
    let mut vars = vec![
        env_var("STRATA_IMAGE", target),
        env_var(disk_image_pod::SOURCE_IMAGE_ENV, image.to_string()),
        env_var(
            disk_image_pod::DISK_PLAN_ENV,
            serde_json::to_string(plan).unwrap_or_default(),
        ),
    ];
    if !settings.insecure_registries.is_empty() {
        vars.push(env_var(
            "STRATA_INSECURE_REGISTRIES",
            settings.insecure_registries.join(","),
        ));
    }
    let disk_vars = vars.clone();
    vars.extend(proxy_env(&env.proxy, &names::disk_image_secret(&name)));
    let container = |step_name: &str, env: &[_], mounts| {
        step(step_name, settings, env, mounts, STEP_CAPABILITIES)
    };
    let init = vec![
        container(disk_image_pod::PULL, &vars, pull),
        // No proxy: the disk step reaches no registry.
        container(disk_image_pod::DISK, &disk_vars, disk),
    ];
    let spec = pod_spec_of(
        init,
        container(disk_image_pod::PUSH, &vars, push),
        volumes,
        settings,
    );
    steps_job(names::disk_image_job(build), build, spec, settings)
}

#[cfg(test)]
mod tests {
    use strata_crds::DiskImage;

    use super::*;
    use crate::controller::fixtures::build;

    #[test]
    fn disk_image_job_snapshot() {
        let image = format!("registry.example.com/os@sha256:{}", "c".repeat(64));
        let plan = DiskPlan::of(Some(&DiskImage::default())).unwrap();
        let objects = disk_image_objects(
            &build(),
            &image,
            "{\"auths\":{}}",
            &Environment::default(),
            &plan,
            &Settings::for_tests(),
        );
        insta::assert_yaml_snapshot!(objects.job);
        let secret = objects.credentials.data.unwrap_or_default();
        assert_eq!(
            secret.keys().collect::<Vec<_>>(),
            [credential_keys::PUSH],
            "the push auth only: no base auth, no entitlement"
        );
    }
}
