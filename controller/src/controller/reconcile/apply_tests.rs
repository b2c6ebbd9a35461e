//! The exact requests apply sends, against a tower-test mock of the API server (the shape of
//! kube-rs controller-rs's fixtures): for a new build, its objects, a pin and a deletion. What the
//! requests do is proven against the real API server by the e2e tests; this pins their order and
//! makes a forgotten plan field visible.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::{Client, api::DynamicObject};
use serde_json::{Value, json};
use strata_crds::contract::mco;
use strata_crds::{MachineOSBuild, MachineOSConfig};

use super::*;
use crate::controller::cache::Stores;
use crate::controller::fixtures::{self, BASE, DIGEST};
use crate::controller::metrics::Metrics;
use crate::controller::plan::{self, BuildAuth, JobObservation, Observed};
use crate::controller::registry_client::ImageCheck;
use crate::controller::{Context, Settings};

fn config() -> MachineOSConfig {
    fixtures::config("RUN true\n")
}

/// What observe sees of `config`, with base pull auth (the builder pod mounts it).
fn observed(config: MachineOSConfig) -> Observed {
    let mut o = fixtures::observed(config);
    o.auth = Ok(BuildAuth {
        push: "{\"auths\":{}}".into(),
        base: Some("{\"auths\":{}}".into()),
    });
    o
}

/// Every request as "METHOD path" (query dropped), answered as the API server would enough for
/// kube to parse the answer.
struct ApiServer {
    seen: Arc<Mutex<Vec<String>>>,
    /// The bodies of the DELETE requests (their options: preconditions, propagation).
    delete_bodies: Arc<Mutex<Vec<Value>>>,
}

fn answer(method: &str, path: &str, body: &[u8]) -> Value {
    let stored_build = json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
        "metadata": {"name": "b", "uid": "bbbbbbbb-0000-0000-0000-000000000000"},
        "spec": {"machineOSConfig": {"name": "worker"}, "machineConfigPool": {"name": "worker"},
                 "baseImage": BASE, "renderedImagePushSpec": "registry.example.com/strata/os:b"}
    });
    if method == "DELETE" {
        return json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
    }
    // A builder step's log.
    if path.ends_with("/log") {
        return json!("strata build: done");
    }
    if path.contains("/machineosbuilds") {
        return stored_build;
    }
    if path.contains("/machineosconfigs/") {
        return serde_json::to_value(config()).unwrap();
    }
    serde_json::from_slice(body).unwrap_or_else(|_| json!({}))
}

impl ApiServer {
    fn start() -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let delete_bodies = Arc::new(Mutex::new(Vec::new()));
        let deletes = delete_bodies.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_string();
                let body = request.into_body().collect_bytes().await.unwrap();
                log.lock().unwrap().push(format!("{method} {path}"));
                if method == "DELETE" {
                    let options = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    deletes.lock().unwrap().push(options);
                }
                let reply = serde_json::to_vec(&answer(&method, &path, &body)).unwrap();
                send.send_response(Response::builder().body(Body::from(reply)).unwrap());
            }
        });
        (
            Client::new(service, "default"),
            Self {
                seen,
                delete_bodies,
            },
        )
    }

    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// The requests, with each range `(start, end)` in `together` sorted: apply sends those at
    /// once, so their order among themselves is not part of the contract.
    fn requests_sorting(&self, together: &[(usize, usize)]) -> Vec<String> {
        let mut requests = self.requests();
        for &(start, end) in together {
            requests[start..end].sort();
        }
        requests
    }
}

/// What the first builder Job of a controller sends before it: the API server's EndpointSlice and
/// OpenShift's Network config read, NetworkPolicy `strata-builder` read (none here) and applied.
const EGRESS_REQUESTS: [&str; 4] = [
    "GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
    "GET /apis/config.openshift.io/v1/networks/cluster",
    "GET /apis/networking.k8s.io/v1/namespaces/strata-system/networkpolicies/strata-builder",
    "PATCH /apis/networking.k8s.io/v1/namespaces/strata-system/networkpolicies/strata-builder",
];

/// The requests of a controller's first builder Job for build `name`: [`EGRESS_REQUESTS`] in
/// order, then the build's objects (sorted), with `more` among them.
fn first_job_requests(name: &str, more: &[String]) -> Vec<String> {
    let mut objects = vec![
        format!("PATCH {NS}/configmaps/containerfile-{name}"),
        format!("PATCH {NS}/configmaps/environment-{name}"),
        format!("PATCH {NS}/secrets/credentials-{name}"),
        format!("PATCH {BUILDS}/{name}/status"),
        "POST /apis/batch/v1/namespaces/strata-system/jobs".to_string(),
    ];
    objects.extend_from_slice(more);
    objects.sort();
    [EGRESS_REQUESTS.map(String::from).to_vec(), objects].concat()
}

fn context(client: Client, machine_configs: Vec<DynamicObject>) -> Context {
    context_with_pods(client, machine_configs, Vec::new())
}

/// [`context`] with Strata's builder pods in its cache.
fn context_with_pods(
    client: Client,
    machine_configs: Vec<DynamicObject>,
    builder_pods: Vec<k8s_openapi::api::core::v1::Pod>,
) -> Context {
    let (configs, _) = reflector::store::<MachineOSConfig>();
    let (builds, _) = reflector::store::<MachineOSBuild>();
    let (jobs, _) = reflector::store();
    let (pods, mut pods_writer) = reflector::store();
    for pod in builder_pods {
        pods_writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    let (secrets, _) = reflector::store();
    let (build_config_maps, _) = reflector::store();
    let (release, _) = reflector::store();
    let pools = Writer::<DynamicObject>::new(mco::machine_config_pool()).as_reader();
    let mut mcs = Writer::<DynamicObject>::new(mco::machine_config());
    for mc in machine_configs {
        mcs.apply_watcher_event(&watcher::Event::Apply(mc));
    }
    let stores = Stores {
        configs,
        builds,
        jobs,
        pods,
        secrets,
        build_config_maps,
        release,
        pools,
        machine_configs: mcs.as_reader(),
        nodes: reflector::store().0,
        openshift_configs: Writer::<DynamicObject>::new(mco::openshift_machine_os_config())
            .as_reader(),
        environment: crate::controller::cache::EnvironmentStores::empty(),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "strata-controller".into(),
            instance: None,
        },
    );
    Context::new(
        client,
        Settings::for_tests(),
        stores,
        Arc::new(Metrics::default()),
        recorder,
    )
}

const BUILDS: &str = "/apis/strata.dev/v1alpha1/machineosbuilds";
const CONFIG_STATUS: &str = "PATCH /apis/strata.dev/v1alpha1/machineosconfigs/worker/status";
const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/default/events";
const NS: &str = "/api/v1/namespaces/strata-system";

#[tokio::test]
async fn a_new_build_its_objects_and_a_pin_send_exactly_these_requests() {
    let (client, server) = ApiServer::start();
    let settings = Settings::for_tests();

    // Round 1: the build is created and the config's status written, together; one Event. The
    // build's status comes in round 2, with its objects.
    let o = observed(config());
    let p = plan::plan(&o, &settings);
    let build = p.create_build.clone().unwrap();
    let name = build.metadata.name.clone().unwrap();
    // Its builder pod, as the cache of Strata's pods holds it (its logs are kept in round 3):
    // the boot check off, so no boot step.
    let pod = serde_json::from_value(json!({"metadata": {
        "name": "p", "namespace": "strata-system", "labels": {"strata.dev/machine-os-build": name}},
        "spec": {"initContainers": [{"name": "pull"}, {"name": "build"}],
                 "containers": [{"name": "push"}]}}))
    .unwrap();
    let ctx = context_with_pods(client, vec![], vec![pod]);
    let written = p.config_status.clone();
    apply(&ctx, &o.config, p, &RegistryAccess::of(&o))
        .await
        .unwrap();
    // Events go out in the background once the writes succeeded.
    ctx.events.flush().await;
    assert_eq!(
        server.requests_sorting(&[(0, 2)]),
        vec![
            CONFIG_STATUS.to_string(),
            format!("POST {BUILDS}"),
            EVENTS.to_string(),
        ]
    );

    // Round 2: the build exists (with its uid): its ConfigMaps, Secret, Job and status, all
    // together. The config's status is as round 1 wrote it.
    let mut stored = build.clone();
    stored.metadata.uid = Some("bbbbbbbb-0000-0000-0000-000000000000".into());
    stored.status = Some(Default::default());
    let mut o2 = observed(config());
    o2.config.status = written;
    o2.builds = vec![stored.clone()];
    let p = plan::plan(&o2, &settings);
    apply(&ctx, &o2.config, p, &RegistryAccess::of(&o2))
        .await
        .unwrap();
    // Events go out in the background once the writes succeeded.
    ctx.events.flush().await;
    let job = format!("build-{name}-bbbbb");
    // The builders' NetworkPolicy first (the cluster's addresses read, then applied), then the
    // build's objects together.
    assert_eq!(
        server.requests_sorting(&[(4, 9)]),
        first_job_requests(&name, &[])
    );

    // Round 3: the builder pushed; the digest checks out. The build's status and the pinning
    // MachineConfig go together; the build's Job and Secret go once its status is written, the
    // config's status once the pin is; then the Events.
    let mut o3 = o2.clone();
    o3.job = JobObservation::Succeeded {
        attempts: 1,
        message: Some(strata_crds::contract::TerminationMessage::Success {
            files: Vec::new(),
            digest: DIGEST.into(),
            size_bytes: 1,
            boot_check: None,
            phases: vec![],
        }),
    };
    let hash = crate::render::render(&crate::render::BuildInputs::from_config(&o3.config, BASE))
        .unwrap()
        .inputs_hash;
    o3.image_check = Some(ImageCheck::Present {
        inputs_hash: Some(hash),
    });
    o3.jobs = vec![serde_json::from_value(json!({"metadata": {"name": job}})).unwrap()];
    o3.build_secrets = [format!("credentials-{name}")].into();
    let p = plan::plan(&o3, &settings);
    apply(&ctx, &o3.config, p, &RegistryAccess::of(&o3))
        .await
        .unwrap();
    // Events go out in the background once the writes succeeded.
    ctx.events.flush().await;
    // Kept once: with its ConfigMap there, the next round keeps nothing.
    let mut kept = o3.clone();
    kept.build_config_maps.insert(format!("logs-{name}"));
    assert!(plan::plan(&o3, &settings).keep_logs.is_some());
    assert!(plan::plan(&kept, &settings).keep_logs.is_none());
    // The build succeeded: its step logs are kept before its Job goes (its pod from the cache),
    // the log of each step the pod has.
    let mut expected: Vec<String> = vec![format!("GET {NS}/pods/p/log"); 3];
    expected.push(format!("PATCH {NS}/configmaps/logs-{name}"));
    let requests = server.requests_sorting(&[(4, 6), (6, 9)]);
    assert_eq!(requests[..4], expected[..]);
    assert_eq!(
        requests[4..],
        vec![
            "PATCH /apis/machineconfiguration.openshift.io/v1/machineconfigs/zz-strata-1-worker"
                .to_string(),
            format!("PATCH {BUILDS}/{name}/status"),
            format!("DELETE {NS}/secrets/credentials-{name}"),
            format!("DELETE /apis/batch/v1/namespaces/strata-system/jobs/{job}"),
            CONFIG_STATUS.to_string(),
            EVENTS.to_string(),
            EVENTS.to_string(),
        ]
    );
}

#[test]
fn a_kept_log_is_its_end_from_a_line_start() {
    assert_eq!(tail_bytes("short", 16), "short");
    let text = "first line\nsecond line\nthird\n";
    assert_eq!(tail_bytes(text, 15), "third\n");
    // Never cut inside a character.
    let wide = "ééééé\nlast";
    assert_eq!(tail_bytes(wide, 7), "last");
    assert!(tail_bytes(&"x".repeat(100), 10).len() <= 10);
}

#[tokio::test]
async fn deleting_a_config_removes_only_its_own_machine_config() {
    let (client, server) = ApiServer::start();
    let ours: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
        "metadata": {"name": "zz-strata-1-worker", "labels": {"strata.dev/machine-os-config": "worker"},
                     "uid": "mc-uid", "resourceVersion": "7"},
        "spec": {"osImageURL": format!("registry.example.com/strata/os@{DIGEST}")},
    }))
    .unwrap();
    let ctx = context(client, vec![ours]);
    let nothing_to_delete = plan::Plan::default();
    let o = observed(config());
    cleanup(&ctx, &config(), nothing_to_delete, &RegistryAccess::of(&o))
        .await
        .unwrap();
    assert_eq!(
        server.requests(),
        vec![
            "DELETE /apis/machineconfiguration.openshift.io/v1/machineconfigs/zz-strata-1-worker"
                .to_string()
        ]
    );
    // Only the version the cache saw: a rival config that rewrote it since keeps it.
    let options = server.delete_bodies.lock().unwrap().clone();
    assert_eq!(
        options[0]["preconditions"],
        json!({"resourceVersion": "7", "uid": "mc-uid"})
    );

    // A MachineConfig of that name written by someone else is left alone.
    let (client, server) = ApiServer::start();
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig",
        "metadata": {"name": "zz-strata-1-worker", "labels": {"team": "other"}},
        "spec": {},
    }))
    .unwrap();
    let ctx = context(client, vec![theirs]);
    let nothing_to_delete = plan::Plan::default();
    let o = observed(config());
    cleanup(&ctx, &config(), nothing_to_delete, &RegistryAccess::of(&o))
        .await
        .unwrap();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn strata_s_own_cache_claim_is_created_with_the_objects_until_it_exists() {
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let settings = Settings::for_tests();
    // As round 1 left it: the build created, the config's status written.
    let first = plan::plan(&observed(config()), &settings);
    let written = first.config_status.clone();
    let mut build = first.create_build.unwrap();
    build.metadata.uid = Some("bbbbbbbb-0000-0000-0000-000000000000".into());
    build.status = Some(Default::default());
    let name = build.metadata.name.clone().unwrap();
    let round = |claim_made: bool| {
        let mut o = observed(config());
        o.config.status = written.clone();
        o.builds = vec![build.clone()];
        o.environment.default_storage_class = Some("standard".into());
        o.environment.cache_claim_made = claim_made;
        o
    };
    let creates_claim = format!("POST {NS}/persistentvolumeclaims");
    // Not made yet: created (POST, never changed afterwards) beside the build's other objects.
    let o = round(false);
    apply(
        &ctx,
        &o.config,
        plan::plan(&o, &settings),
        &RegistryAccess::of(&o),
    )
    .await
    .unwrap();
    assert_eq!(
        server.requests_sorting(&[(4, 10)]),
        first_job_requests(&name, std::slice::from_ref(&creates_claim))
    );
    // Once the cache holds it, the next build's objects leave it alone.
    let o = round(true);
    apply(
        &ctx,
        &o.config,
        plan::plan(&o, &settings),
        &RegistryAccess::of(&o),
    )
    .await
    .unwrap();
    // The NetworkPolicy is as applied, the cluster's addresses read a moment ago: not again.
    let requests = server.requests();
    assert!(
        !requests.contains(&creates_claim) && requests.len() == 5,
        "{requests:?}"
    );
}
