//! HTTP endpoints: `/healthz` and `/readyz` always plain (the kubelet probes them); `/metrics`
//! either plain beside them (the local cluster) or, as OpenShift's own operators serve it, over
//! TLS with the service CA's certificate and for authenticated, authorised callers only: the
//! caller's bearer token is reviewed (TokenReview) and the user must be allowed `get` on the
//! non-resource URL `/metrics` (SubjectAccessReview), as kube-rbac-proxy does.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::metrics::Metrics;

/// How long an authorisation decision is reused (Prometheus scrapes every 30 s).
const DECISION_TTL: Duration = Duration::from_secs(60);
/// How often the serving certificate is read again (the service CA rotates it).
const CERT_RELOAD: Duration = Duration::from_secs(300);

/// Where `/metrics` is served over TLS, and its certificate.
#[derive(Clone, Debug)]
pub struct SecureMetrics {
    pub address: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn metrics_response(metrics: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// The plain listener: probes, and `/metrics` unless it is served securely.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    metrics_here: bool,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ok").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
                    }
                }
            }),
        );
    if metrics_here {
        app = app.route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics_response(&metrics) }
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, metrics = metrics_here, "serving /healthz, /readyz");
    axum::serve(listener, app).await
}

/// Who may read `/metrics`, as the API server decides.
struct Gate {
    client: kube::Client,
    decisions: Mutex<HashMap<u64, (Instant, StatusCode)>>,
}

impl Gate {
    /// 200 for a token whose user may `get /metrics`, 401 without a valid token, 403 otherwise.
    async fn decide(&self, token: &str) -> StatusCode {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut hasher);
        let key = hasher.finish();
        if let Some((at, decision)) = self
            .decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < DECISION_TTL
        {
            return *decision;
        }
        let decision = self.ask(token).await;
        let mut decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        decisions.retain(|_, (at, _)| at.elapsed() < DECISION_TTL);
        decisions.insert(key, (Instant::now(), decision));
        decision
    }

    async fn ask(&self, token: &str) -> StatusCode {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await;
        let user = match reviewed.ok().and_then(|r| r.status) {
            Some(status) if status.authenticated == Some(true) => status.user.unwrap_or_default(),
            _ => return StatusCode::UNAUTHORIZED,
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
        {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => StatusCode::OK,
            Ok(_) => StatusCode::FORBIDDEN,
            Err(err) => {
                tracing::warn!(%err, "cannot ask the API server who may read /metrics");
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

async fn secure_metrics(
    State((gate, metrics)): State<(Arc<Gate>, Arc<Metrics>)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, "a bearer token is required").into_response();
    };
    match gate.decide(token).await {
        StatusCode::OK => metrics_response(&metrics),
        StatusCode::UNAUTHORIZED => {
            (StatusCode::UNAUTHORIZED, "the token is not valid").into_response()
        }
        StatusCode::FORBIDDEN => {
            (StatusCode::FORBIDDEN, "the user may not get /metrics").into_response()
        }
        other => other.into_response(),
    }
}

/// `/metrics` over TLS for authorised callers; the certificate is read again now and then.
pub async fn serve_secure_metrics(
    secure: SecureMetrics,
    client: kube::Client,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let tls =
        axum_server::tls_rustls::RustlsConfig::from_pem_file(&secure.cert, &secure.key).await?;
    let reload = tls.clone();
    let (cert, key) = (secure.cert.clone(), secure.key.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CERT_RELOAD).await;
            if let Err(err) = reload.reload_from_pem_file(&cert, &key).await {
                tracing::warn!(%err, "cannot read the metrics certificate again");
            }
        }
    });
    let gate = Arc::new(Gate {
        client,
        decisions: Mutex::default(),
    });
    let app = Router::new()
        .route("/metrics", get(secure_metrics))
        .with_state((gate, metrics));
    tracing::info!(address = %secure.address, "serving /metrics over TLS to authorised callers");
    axum_server::bind_rustls(secure.address, tls)
        .serve(app.into_make_service())
        .await
}
