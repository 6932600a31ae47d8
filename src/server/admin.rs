//! The admin listener: `/healthz` (alive), `/readyz` (stores and upstreams reachable) and
//! `/metrics` (Prometheus text). It binds to loopback by default and is never proxied.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::app::AppState;
use crate::error::{ApiError, ErrorCode};

/// Time each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The admin routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("No such admin endpoint") })
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let database = tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await;
    let ephemeral = tokio::time::timeout(CHECK_TIMEOUT, state.ephemeral.ping()).await;
    let mut upstreams_ok = true;
    for upstream in state.gateway.upstreams().iter() {
        let resolved =
            tokio::time::timeout(CHECK_TIMEOUT, tokio::net::lookup_host(upstream.authority()))
                .await;
        upstreams_ok &= match resolved {
            Ok(Ok(mut addrs)) => addrs.next().is_some(),
            _ => false,
        };
    }
    let database_ok = matches!(database, Ok(Ok(())));
    let ephemeral_ok = matches!(ephemeral, Ok(Ok(())));
    let checks = json!({ "database": database_ok, "ephemeral_store": ephemeral_ok, "upstreams": upstreams_ok });
    if database_ok && ephemeral_ok && upstreams_ok {
        Json(json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        let code = if database_ok && ephemeral_ok {
            ErrorCode::UpstreamUnavailable
        } else {
            ErrorCode::StoreUnavailable
        };
        let body = json!({ "error": code.as_str(), "message": "Not ready", "checks": checks });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(state.sessions_cached());
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
