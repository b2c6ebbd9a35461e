use serde_json::json;

use super::*;

const CERT_A: &str = "-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----\n";
const CERT_B: &str = "-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----\n";

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

fn openshift_like() -> Sources {
    Sources {
        pull_secret: Some(
            serde_json::from_value(json!({
                "metadata": {"name": "pull-secret", "namespace": "openshift-config"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64(r#"{"auths":{"quay.io":{"auth":"dTpw"}}}"#)},
            }))
            .unwrap(),
        ),
        entitlement: Some(
            serde_json::from_value(json!({
                "metadata": {"name": "etc-pki-entitlement"},
                "data": {"entitlement.pem": base64("cert"), "entitlement-key.pem": base64("key")},
            }))
            .unwrap(),
        ),
        service_ca: Some(config_map(
            names::SERVICE_CA_CONFIGMAP,
            json!({"service-ca.crt": CERT_A}),
        )),
        config_maps: vec![
            config_map("user-ca-bundle", json!({"ca-bundle.crt": CERT_B})),
            config_map("registry-cas", json!({"mirror.local..5000": CERT_B})),
        ],
        image_config: Some(json!({
            "metadata": {"name": "cluster"},
            "spec": {
                "additionalTrustedCA": {"name": "registry-cas"},
                "registrySources": {"blockedRegistries": ["docker.io"], "insecureRegistries": ["10.0.0.1:5000"]},
            },
        })),
        proxy: Some(json!({
            "metadata": {"name": "cluster"},
            "spec": {"httpProxy": "http://spec:3128"},
            "status": {"httpProxy": "http://proxy:3128", "httpsProxy": "http://proxy:3128", "noProxy": ".svc,10.0.0.0/8"},
        })),
        digest_mirror_sets: vec![json!({
            "metadata": {"name": "b"},
            "spec": {"imageDigestMirrors": [{"source": "quay.io/ocp", "mirrors": ["mirror.local:5000/ocp"], "mirrorSourcePolicy": "NeverContactSource"}]},
        })],
        tag_mirror_sets: vec![json!({
            "metadata": {"name": "a"},
            "spec": {"imageTagMirrors": [{"source": "quay.io", "mirrors": ["mirror.local:5000/quay"]}]},
        })],
        yum_repos: true,
        rpm_gpg: false,
        default_storage_class: Some("gp3-csi".into()),
        cache_claim_made: true,
    }
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn openshift_objects_become_a_build_environment() {
    let env = Environment::from_sources(&openshift_like());
    assert!(env.problems.is_empty(), "{:?}", env.problems);
    assert_eq!(env.global_auths["quay.io"]["auth"], "dTpw");
    assert_eq!(env.ca_bundle, format!("{CERT_A}{CERT_B}"));
    assert_eq!(
        env.registry_cas
            .get("mirror.local:5000")
            .map(String::as_str),
        Some(CERT_B),
        "OpenShift's host..port keys name host:port"
    );
    assert_eq!(env.extra_roots(), vec![CERT_A, CERT_B, CERT_B]);
    assert_eq!(env.proxy.http, "http://proxy:3128", "status wins over spec");
    assert_eq!(env.proxy.no, ".svc,10.0.0.0/8");
    assert!(
        env.proxy
            .variables()
            .contains(&("no_proxy", ".svc,10.0.0.0/8".into()))
    );
    assert_eq!(env.registries.blocked, vec!["docker.io"]);
    assert_eq!(env.registries.insecure, vec!["10.0.0.1:5000"]);
    assert_eq!(env.registries.mirrors.len(), 2);
    let digest = format!("quay.io/ocp/release@sha256:{}", "a".repeat(64));
    assert_eq!(
        env.registries.pull_sources(&digest),
        vec![format!(
            "mirror.local:5000/ocp/release@sha256:{}",
            "a".repeat(64)
        )]
    );
    assert_eq!(
        env.entitlement
            .as_ref()
            .map(|e| e.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            "entitlement-key.pem".to_string(),
            "entitlement.pem".to_string()
        ])
    );
    assert!(env.yum_repos && !env.rpm_gpg);
}

#[test]
fn nothing_configured_is_an_empty_environment() {
    let env = Environment::from_sources(&Sources::default());
    assert_eq!(env, Environment::default());
    assert!(env.proxy.variables().is_empty());
}

#[test]
fn unusable_objects_are_reported_not_ignored() {
    let mut sources = openshift_like();
    sources.pull_secret.as_mut().unwrap().data =
        Some([(".dockerconfigjson".into(), ByteString(b"not json".to_vec()))].into());
    sources
        .config_maps
        .retain(|cm| cm.metadata.name.as_deref() != Some("registry-cas"));
    let env = Environment::from_sources(&sources);
    assert_eq!(env.problems.len(), 2, "{:?}", env.problems);
    assert!(env.problems[0].contains("openshift-config/pull-secret is not valid JSON"));
    assert!(env.problems[1].contains("additionalTrustedCA registry-cas"));
}

#[test]
fn settings_name_namespace_and_object() {
    assert_eq!(
        split_ref("openshift-config/pull-secret"),
        Some(("openshift-config".into(), "pull-secret".into()))
    );
    assert_eq!(split_ref(""), None);
    assert_eq!(split_ref("no-slash"), None);
}

#[test]
fn no_proxy_is_read_the_way_go_reads_it() {
    let proxy = Proxy {
        http: "http://proxy:3128".into(),
        https: "http://proxy:3128".into(),
        no: ".cluster.local, .svc,10.0.0.0/24,192.0.2.2:5000,example.com,[::1]".into(),
    };
    for direct in [
        "registry.svc",
        "x.cluster.local:443",
        "10.0.0.7:5000",
        "192.0.2.2:5000",
        "example.com",
        "a.example.com:443",
        "localhost:5000",
        "127.0.0.1:5000",
    ] {
        assert!(!proxy.applies_to(direct), "{direct} should be direct");
    }
    for proxied in [
        "192.0.2.2:5001",
        "quay.io",
        "10.0.1.1",
        "cluster.local",
        "notexample.com",
    ] {
        assert!(proxy.applies_to(proxied), "{proxied} should use the proxy");
    }
    let all = Proxy {
        no: "*".into(),
        ..proxy.clone()
    };
    assert!(!all.applies_to("quay.io"));
    assert!(
        !Proxy::default().applies_to("quay.io"),
        "no proxy configured"
    );
}

#[test]
fn the_default_storage_class_is_the_one_annotated_so() {
    use k8s_openapi::api::storage::v1::StorageClass;
    let class = |name: &str, annotations: Value| -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "provisioner": "ebs.csi.aws.com",
        }))
        .unwrap()
    };
    let plain = class("slow", json!({}));
    let off = class(
        "gp2",
        json!({"storageclass.kubernetes.io/is-default-class": "false"}),
    );
    let default = class(
        "gp3-csi",
        json!({"storageclass.kubernetes.io/is-default-class": "true"}),
    );
    let beta = class(
        "old",
        json!({"storageclass.beta.kubernetes.io/is-default-class": "true"}),
    );
    assert_eq!(default_storage_class([&plain, &off]), None);
    assert_eq!(
        default_storage_class([&plain, &off, &default]).as_deref(),
        Some("gp3-csi")
    );
    assert_eq!(default_storage_class([&beta]).as_deref(), Some("old"));
    let env = Environment::from_sources(&openshift_like());
    assert_eq!(env.default_storage_class.as_deref(), Some("gp3-csi"));
    assert!(env.cache_claim_made);
}
