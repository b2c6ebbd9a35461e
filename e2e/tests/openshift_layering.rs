//! Strata does not fight OpenShift's own on-cluster layering: with OpenShift's MachineOSConfig CRD
//! installed (from `../shared/fixtures`, so a conformance test: `make conformance`) and one of
//! OpenShift's MachineOSConfigs naming a pool, Strata's MachineOSConfig for that pool is refused
//! (`PoolLayeredByOpenShift`) and builds nothing; once OpenShift's is deleted, Strata builds and
//! pins the pool.
//!
//! The controller looks up whether the cluster serves OpenShift's MachineOSConfig at start, so the
//! test restarts it after installing the CRD and again after removing it: its own test binary.

use std::time::Duration;

use anyhow::{Result, ensure};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use strata_crds::MachineOSBuild;
use strata_crds::contract::mco;
use strata_e2e::deployed::{
    apply_config, create_pool, create_push_secret, current_build, delete_config, delete_pool,
    expect_event, machine_os_config, pinned_by, wait_for_condition,
};
use strata_e2e::measure::deploy::restart_controller;
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-layered";
const CRD: &str = "openshift-api/crds/0000_80_machine-config_01_machineosconfigs.crd.yaml";
const CRD_NAME: &str = "machineosconfigs.machineconfiguration.openshift.io";

/// `kubectl` with `args`; fails with its stderr.
fn kubectl(cluster: &Cluster, args: &[&str]) -> Result<()> {
    let out = cluster.kubectl().args(args).output()?;
    ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
#[ignore = "conformance: needs ../shared/fixtures (make conformance)"]
async fn a_pool_openshift_layers_itself_is_refused_until_openshift_lets_go() -> Result<()> {
    let test = "a_pool_openshift_layers_itself_is_refused_until_openshift_lets_go";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let crd = strata_e2e::shared_fixture(CRD)?;
    let crd = crd.to_string_lossy();
    let client = cluster.client().await?;
    kubectl(cluster, &["apply", "--server-side", "-f", &crd])?;
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            &format!("crd/{CRD_NAME}"),
        ],
    )?;
    restart_controller(cluster, &client).await?;
    let result = check(cluster, &client).await;
    delete_config(&client, POOL).await?;
    delete_pool(&client, POOL).await;
    kubectl(cluster, &["delete", "--wait", "-f", &crd])?;
    restart_controller(cluster, &client).await?;
    result
}

async fn check(cluster: &Cluster, client: &kube::Client) -> Result<()> {
    let theirs =
        Api::<DynamicObject>::all_with(client.clone(), &mco::openshift_machine_os_config());
    let push_secret = "e2e-layered-push";
    create_push_secret(client, push_secret).await?;
    delete_config(client, POOL).await?;
    create_pool(client, POOL).await?;
    // OpenShift's own MachineOSConfig for the pool, valid under OpenShift's schema (nothing here
    // builds it: only Strata's refusal is looked at).
    let openshift_config = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineOSConfig",
        "metadata": {"name": POOL},
        "spec": {
            "machineConfigPool": {"name": POOL},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": push_secret},
            "renderedImagePushSpec": format!("registry.example.com/openshift/{POOL}:latest"),
        }
    });
    theirs
        .patch(
            POOL,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&openshift_config),
        )
        .await?;

    apply_config(
        client,
        &machine_os_config(cluster, POOL, push_secret, "RUN echo ours > /etc/ours\n")?,
    )
    .await?;
    let why = ("True", "PoolLayeredByOpenShift");
    let message = wait_for_condition(client, POOL, "Degraded", why).await?;
    ensure!(
        message.contains(&format!("{CRD_NAME}/{POOL}")),
        "the refusal does not name OpenShift's MachineOSConfig: {message}"
    );
    expect_event(client, POOL, "PoolLayeredByOpenShift", CRD_NAME).await?;
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    let list = builds
        .list(&ListParams::default().labels(&format!("strata.dev/machine-os-config={POOL}")))
        .await?;
    ensure!(
        list.items.is_empty(),
        "a build was made for a pool OpenShift layers"
    );
    eprintln!("ok: refused while OpenShift layers {POOL}: {message}");

    // OpenShift lets go of the pool: Strata builds for it and pins it.
    theirs.delete(POOL, &DeleteParams::default()).await?;
    let build = current_build(client, POOL, None).await?;
    let image = pinned_by(client, Duration::from_secs(300), POOL, &build).await?;
    eprintln!("ok: once OpenShift's MachineOSConfig went, {build} pinned {image}");
    Ok(())
}
