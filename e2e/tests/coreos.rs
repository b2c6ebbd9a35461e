//! Strata on a CoreOS-sized base, as users run it: the release ConfigMap names the CoreOS-like OS
//! image (build-os-image.sh: a Debian trixie tree with systemd, one kernel, dpkg; ~1.3 GiB in 48
//! layers chunked by package), and one MachineOSConfig carries the realistic fragments of
//! `e2e/examples/` and `examples/` — a multi-stage tool build, packages from the signed local
//! repository, a package's systemd units enabled, kernel module configuration checked against the
//! image's own kernel. The
//! build must pass the image gate, push only its own layers (the base's 48 are the base's, by
//! digest), and the pool must roll to it once. Then a fragment that leaves a file in /var fails
//! the gate: `LintFailed` with the rule and the path, a Warning Event, and the pool keeps its image.
//!
//! The release base is cluster-wide: this test binary runs alone (as controller.rs does), and
//! puts the small base back when it ends.

use std::time::Duration;

use anyhow::{Result, ensure};
use kube::api::Api;
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    apply_config, apply_examples, config_events, create_pool, current_build, delete_config,
    delete_pool, ended_build, machine_configs, machine_os_config, pinned_by, plain_registry_layers,
    pools, with_release_base,
};
use strata_e2e::mco::ROLLOUTS_ANNOTATION;
use strata_e2e::util::{install_strata_crds, wait_for};
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-coreos";
/// A cold pull of the 1.3 GiB base into the builder pod, four fragments, the gate, the push.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// In the order they can be concatenated: the multi-stage fragment ends on `FROM base`, and the
/// others continue that stage.
/// Paths below the repository: the Debian-only fragments are e2e's own (`e2e/examples/`), the
/// kernel module configuration is the user-facing example, valid for RHCOS and this base alike.
const EXAMPLES: [&str; 4] = [
    "e2e/examples/multi-stage-from-base.yaml",
    "e2e/examples/package-install.yaml",
    "e2e/examples/systemd-unit-from-package.yaml",
    "examples/kernel-module-config.yaml",
];

#[tokio::test]
async fn realistic_fragments_build_on_the_coreos_like_release_base() -> Result<()> {
    let test = "realistic_fragments_build_on_the_coreos_like_release_base";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    install_strata_crds(&client).await?;
    with_release_base(&client, &cluster.os_image, || async {
        let result = check(cluster, &client).await;
        let _ = delete_config(&client, POOL).await;
        delete_pool(&client, POOL).await;
        result
    })
    .await
}

async fn check(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    create_pool(client, POOL).await?;
    let fragment = apply_examples(cluster, client, POOL, &EXAMPLES).await?;
    let build = current_build(client, POOL, None).await?;
    let image = pinned_by(client, BUILD_TIMEOUT, POOL, &build).await?;
    let built = Api::<MachineOSBuild>::all(client.clone())
        .get(&build)
        .await?;
    ensure!(
        built.spec.base_image == cluster.os_image,
        "built on {}, not the release's {}",
        built.spec.base_image,
        cluster.os_image
    );
    let status = built.status.unwrap_or_default();
    let phases: Vec<String> = status
        .phases
        .iter()
        .map(|p| {
            format!(
                "{} {:.1}s",
                p.phase,
                (p.end_ms - p.start_ms) as f64 / 1000.0
            )
        })
        .collect();
    ensure!(
        status.phases.iter().any(|p| p.phase == "lint"),
        "no gate step in {phases:?}"
    );

    // The base's layers are reused by digest; the fragments added a few of their own.
    let base_layers = plain_registry_layers(&cluster.os_image)?;
    let built_layers = plain_registry_layers(&image)?;
    ensure!(
        base_layers.len() >= 40 && built_layers.starts_with(&base_layers),
        "the image does not start with the base's {} layers",
        base_layers.len()
    );
    let added = built_layers.len() - base_layers.len();
    ensure!((1..=12).contains(&added), "{added} layers added");

    // The pool rolls to it once, and its rendered configuration carries it.
    let pool = wait_for(
        &format!("pool {POOL} updated to {image}"),
        Duration::from_secs(120),
        || async {
            let pool = pools(client).get(POOL).await?;
            let status = &pool.data["status"];
            let updated = status["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Updated" && c["status"] == "True")
            });
            let rendered = status["configuration"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !updated || rendered.is_empty() {
                return Ok(None);
            }
            let mc = machine_configs(client).get(&rendered).await?;
            Ok((mc.data["spec"]["osImageURL"] == image.as_str()).then_some(pool))
        },
    )
    .await?;
    let rollouts = pool
        .metadata
        .annotations
        .unwrap_or_default()
        .get(ROLLOUTS_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "ok: {build} on the CoreOS-like base: {} base layers + {added}, steps {}, pinned {image}; pool rollouts: {rollouts}",
        base_layers.len(),
        phases.join(", ")
    );

    // A fragment that writes machine state into /var fails the gate; the pool keeps its image.
    let breaking =
        format!("{fragment}RUN mkdir -p /var/lib/agent && echo enrolled > /var/lib/agent/state\n");
    apply_config(
        client,
        &machine_os_config(cluster, POOL, &format!("{POOL}-push"), &breaking)?,
    )
    .await?;
    let refused = current_build(client, POOL, Some(&build)).await?;
    let ended = ended_build(client, &refused, BUILD_TIMEOUT).await?;
    let failure = ended
        .status
        .clone()
        .and_then(|s| s.failure)
        .unwrap_or_default();
    ensure!(
        ended.phase() == Some(BuildPhase::Failed) && failure.reason == "LintFailed",
        "{refused} ended {:?}: {failure:?}",
        ended.phase()
    );
    ensure!(
        failure.message.contains("rule var: /var/lib/agent/state"),
        "the failure does not name the rule and the path: {}",
        failure.message
    );
    wait_for(
        "a Warning Event naming the gate rule",
        Duration::from_secs(30),
        || async {
            let events = config_events(client, POOL).await?;
            Ok(events
                .iter()
                .any(|(ty, _, note)| {
                    ty == "Warning" && note.contains("rule var: /var/lib/agent/state")
                })
                .then_some(()))
        },
    )
    .await?;
    let config = Api::<MachineOSConfig>::all(client.clone())
        .get(POOL)
        .await?;
    ensure!(
        config
            .status
            .unwrap_or_default()
            .current_image_pull_spec
            .as_deref()
            == Some(image.as_str()),
        "the pool's image changed after a refused build"
    );
    let mc = machine_configs(client)
        .get(&format!("zz-strata-2-{POOL}"))
        .await?;
    ensure!(
        mc.data["spec"]["osImageURL"] == image.as_str(),
        "the MachineConfig moved: {}",
        mc.data["spec"]["osImageURL"]
    );
    eprintln!(
        "ok: a file left in /var → {refused} LintFailed ({}), the pool keeps {image}",
        failure.message
    );
    Ok(())
}
