//! The admin listener: `/healthz` (alive), `/startupz` (start-up done), `/readyz` (can serve)
//! and `/metrics` (Prometheus text). It binds to loopback by default and is never proxied.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::auth::state::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::identity::cache::IdentityCache;
use crate::metrics::Metrics;
use crate::store::ephemeral::EphemeralStore;
use crate::store::sql::Database;

/// Time each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin listener reads: the stores it checks, the upstreams it resolves, and the
/// metrics it renders. Nothing of the auth API or the gateway's credentials.
#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    /// The SQL database (pinged).
    pub db: Database,
    /// The ephemeral store (pinged).
    pub ephemeral: Arc<dyn EphemeralStore>,
    /// The upstreams' `host:port` (resolved).
    pub upstreams: Arc<[String]>,
    /// The identity cache (its size is a gauge).
    pub cache: IdentityCache,
    /// The registry rendered at `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// The admin routes.
pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/startupz", get(startupz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("No such admin endpoint") })
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Start-up is done once this listener answers at all: it is served only after the
/// configuration is loaded, the stores answered (within `storage.startup_wait`) and the
/// migrations ran.
async fn startupz() -> Json<serde_json::Value> {
    Json(json!({ "status": "started" }))
}

/// Whether this replica can serve. A shared store that does not answer is reported (in the
/// body and in `portcullis_store_up`) but does not make the replica unready: every replica
/// shares the stores, so failing readiness would take every pod out of the Service at once,
/// while cached identities can keep flowing. Upstream names that do not resolve do: nothing
/// can be forwarded.
async fn readyz(State(state): State<AdminState>) -> Response {
    let database = tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await;
    let ephemeral = tokio::time::timeout(CHECK_TIMEOUT, state.ephemeral.ping()).await;
    let mut upstreams_ok = true;
    for authority in state.upstreams.iter() {
        let resolved =
            tokio::time::timeout(CHECK_TIMEOUT, tokio::net::lookup_host(authority.as_str())).await;
        upstreams_ok &= match resolved {
            Ok(Ok(mut addrs)) => addrs.next().is_some(),
            _ => false,
        };
    }
    let database_ok = matches!(database, Ok(Ok(())));
    let ephemeral_ok = matches!(ephemeral, Ok(Ok(())));
    state.metrics.record_store_up("database", database_ok);
    state.metrics.record_store_up("ephemeral", ephemeral_ok);
    let checks = json!({ "database": database_ok, "ephemeral_store": ephemeral_ok, "upstreams": upstreams_ok });
    if !upstreams_ok {
        let body = json!({
            "error": ErrorCode::UpstreamUnavailable.as_str(),
            "message": "Not ready: an upstream name does not resolve",
            "checks": checks,
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    // Degraded: cached identities flow, what needs the store gets 503 `store_unavailable`.
    let status = if database_ok && ephemeral_ok { "ready" } else { "degraded" };
    Json(json!({ "status": status, "checks": checks })).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let body = state.metrics.render(state.cache.entry_count());
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// The admin listener's part of the auth API's state.
impl FromRef<AppState> for AdminState {
    fn from_ref(state: &AppState) -> Self {
        let upstreams = state.gateway.upstreams().iter().map(|u| u.authority().to_owned());
        Self {
            db: state.services.db.clone(),
            ephemeral: Arc::clone(&state.services.ephemeral),
            upstreams: upstreams.collect(),
            cache: state.services.cache.clone(),
            metrics: Arc::clone(&state.metrics),
        }
    }
}
