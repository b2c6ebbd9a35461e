//! The ValidatingAdmissionPolicy shipped in manifests/base holds Strata's controller to what it
//! needs, whatever it asks, on the real API server: with the controller's own ServiceAccount token,
//! writing a MachineConfig that is not Strata's, setting more than spec.osImageURL, changing more
//! of a pool than spec.paused, deleting a user's Secret, or creating a NetworkPolicy other than
//! its builders' is refused; its own work is allowed.

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use strata_crds::contract::install;
use strata_e2e::deployed::{NAMESPACE, create_pool, delete_pool, machine_configs, pools};
use strata_e2e::util::{api_code, api_message, service_account_token};
use strata_e2e::{Cluster, needs};

const POOL: &str = "e2e-admission";

#[tokio::test]
async fn the_api_server_holds_the_controller_to_its_own_objects() -> Result<()> {
    let test = "the_api_server_holds_the_controller_to_its_own_objects";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let admin = cluster.client().await?;
    create_pool(&admin, POOL).await?;
    let users_secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "e2e-users-secret", "namespace": NAMESPACE},
        "stringData": {"k": "v"},
    }))?;
    let secrets_admin: Api<Secret> = Api::namespaced(admin.clone(), NAMESPACE);
    secrets_admin
        .patch(
            "e2e-users-secret",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&users_secret),
        )
        .await?;
    let token =
        service_account_token(&admin, NAMESPACE, install::CONTROLLER_SERVICE_ACCOUNT).await?;
    let controller = cluster.client_with_token(&token).await?;
    let mcs = machine_configs(&controller);
    let ssa = PatchParams::apply("strata-controller").force();

    let mut failures = Vec::new();
    let mut refused = |what: &str, result: kube::Result<()>, needle: &str| match result {
        Err(e) if api_message(&e).contains(needle) => {
            eprintln!(
                "ok: refused ({:?}): {what}: {}",
                api_code(&e),
                api_message(&e)
            );
        }
        Err(e) => failures.push(format!("{what}: refused, but not by the policy: {e}")),
        Ok(()) => failures.push(format!("{what}: allowed")),
    };
    let mc = |name: &str, spec: serde_json::Value, managed: bool| {
        let mut labels = json!({"machineconfiguration.openshift.io/role": POOL});
        if managed {
            labels["app.kubernetes.io/managed-by"] = json!("strata");
        }
        json!({"apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
               "metadata": {"name": name, "labels": labels}, "spec": spec})
    };
    let image = "registry.example.com/os@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    refused(
        "a MachineConfig not named as Strata's",
        mcs.patch(
            "99-e2e-evil",
            &ssa,
            &Patch::Apply(&mc("99-e2e-evil", json!({"osImageURL": image}), true)),
        )
        .await
        .map(|_| ()),
        "only its own MachineConfigs",
    );
    refused(
        "a Strata MachineConfig setting more than osImageURL",
        mcs.patch(
            "zz-strata-2-e2e-admission",
            &ssa,
            &Patch::Apply(&mc(
                "zz-strata-2-e2e-admission",
                json!({"osImageURL": image, "kernelArguments": ["init=/bin/sh"]}),
                true,
            )),
        )
        .await
        .map(|_| ()),
        "only spec.osImageURL",
    );
    refused(
        "a MachineConfig without Strata's label",
        mcs.patch(
            "zz-strata-2-e2e-admission",
            &ssa,
            &Patch::Apply(&mc(
                "zz-strata-2-e2e-admission",
                json!({"osImageURL": image}),
                false,
            )),
        )
        .await
        .map(|_| ()),
        "only its own MachineConfigs",
    );
    let pools_as_controller = pools(&controller);
    refused(
        "a pool's maxUnavailable",
        pools_as_controller
            .patch(
                POOL,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"maxUnavailable": 3}})),
            )
            .await
            .map(|_| ()),
        "only spec.paused",
    );
    let secrets: Api<Secret> = Api::namespaced(controller.clone(), NAMESPACE);
    refused(
        "deleting a user's Secret",
        secrets
            .delete("e2e-users-secret", &DeleteParams::default())
            .await
            .map(|_| ()),
        "only the Secrets it made",
    );
    // NetworkPolicies: only its builders' (the one it keeps). The controller may create
    // NetworkPolicies at all (RBAC cannot limit a create by name): the policy does. (Deleting one
    // is not granted: a 403, which the other tests' audit check would count as a failure.)
    let policies: Api<NetworkPolicy> = Api::namespaced(controller.clone(), NAMESPACE);
    let open_ingress: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "e2e-open-builders", "namespace": NAMESPACE},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }))?;
    refused(
        "creating another NetworkPolicy",
        policies
            .create(&PostParams::default(), &open_ingress)
            .await
            .map(|_| ()),
        "only NetworkPolicy strata-builder",
    );
    // What the controller does is allowed.
    let ours = mc(
        "zz-strata-2-e2e-admission",
        json!({"osImageURL": image}),
        true,
    );
    let allowed = mcs
        .patch("zz-strata-2-e2e-admission", &ssa, &Patch::Apply(&ours))
        .await;
    if let Err(e) = &allowed {
        failures.push(format!("its own MachineConfig: {e}"));
    }
    let paused = pools_as_controller
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await;
    if let Err(e) = &paused {
        failures.push(format!("pausing a pool: {e}"));
    }
    let own_secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "e2e-strata-secret", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": "strata"}},
        "stringData": {"k": "v"},
    }))?;
    if let Err(e) = secrets.create(&PostParams::default(), &own_secret).await {
        failures.push(format!("creating its own Secret: {e}"));
    } else if let Err(e) = secrets
        .delete("e2e-strata-secret", &DeleteParams::default())
        .await
    {
        failures.push(format!("deleting its own Secret: {e}"));
    }
    ensure!(
        failures.is_empty(),
        "the admission policy:\n{}",
        failures.join("\n")
    );
    eprintln!("ok: its own MachineConfig, pausing a pool, its own Secret: allowed");

    let _ = machine_configs(&admin)
        .delete("zz-strata-2-e2e-admission", &DeleteParams::default())
        .await;
    let _ = secrets_admin
        .delete("e2e-users-secret", &DeleteParams::default())
        .await;
    delete_pool(&admin, POOL).await;
    Ok(())
}
