//! Forward-auth: `GET /verify` answers nginx `auth_request`, Traefik `forwardAuth` and Envoy
//! `ext_authz` with 200 plus identity headers, or 401/403 (or a redirect to sign in).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Method, StatusCode, Uri};
use serde::Deserialize;

use super::extract::ApiQuery;
use crate::app::AppState;
use crate::error::ApiError;
use crate::gateway::pattern::normalize_path;
use crate::gateway::policy::{Decision, Denial, OnUnauthenticated, decide};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes: `GET /verify`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify))
}

#[derive(Debug, Deserialize)]
struct VerifyQuery {
    redirect: Option<String>,
}

/// Checks the credential of the original request against the policy of its original path.
#[utoipa::path(
    get,
    path = "/verify",
    tag = "forward_auth",
    params(
        ("redirect" = Option<String>, Query, description = "`1`: answer signed-out browsers with a redirect"),
        ("X-Original-URI" = Option<String>, Header, description = "The original request's URI (or X-Forwarded-Uri)"),
        ("X-Original-Method" = Option<String>, Header, description = "Its method (or X-Forwarded-Method)"),
    ),
    responses(
        (status = 200, description = "Allowed: every identity header set (empty when absent)"),
        (status = 302, description = "With `redirect=1`: to sign in"),
    ),
)]
async fn verify(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<VerifyQuery>,
    mut parts: Parts,
) -> Response {
    let original = original_request(&parts);
    let path = match normalize_path(original.uri.path()) {
        Ok(path) => path.into_owned(),
        Err(error) => {
            return ApiError::invalid_request(format!("X-Original-URI: {error}")).into_response();
        }
    };
    let gateway = &state.gateway;
    let (route, matched) = gateway.routes().find(&original.method, &path);
    let (identified, _) = gateway.identify(&parts).await;
    match decide(route, &matched, &identified) {
        Decision::Allow(permit) => {
            let mut response = StatusCode::OK.into_response();
            gateway
                .header_names()
                .insert_complete(permit.identity().map(AsRef::as_ref), response.headers_mut());
            response
        }
        Decision::Deny(mut denial) => {
            if matches!(query.redirect.as_deref(), Some("1" | "true")) {
                if let Denial::Unauthenticated { on_unauthenticated, .. } = &mut denial {
                    *on_unauthenticated = OnUnauthenticated::Redirect;
                }
            } else if let Denial::Unauthenticated { on_unauthenticated, .. } = &mut denial {
                // Proxies do not pass a 302 from auth_request on; answer 401 and let them redirect.
                *on_unauthenticated = OnUnauthenticated::Status401;
            }
            // The redirect goes back to the original URI, not to /auth/verify.
            parts.uri = original.uri;
            parts.method = original.method;
            gateway.refuse(&denial, &parts, &identified)
        }
    }
}

struct Original {
    method: Method,
    uri: Uri,
}

/// The request the proxy is asking about, from `X-Original-URI` / `X-Forwarded-Uri` and
/// `X-Original-Method` / `X-Forwarded-Method`.
fn original_request(parts: &Parts) -> Original {
    let header = |names: [&str; 2]| {
        names.iter().find_map(|name| parts.headers.get(*name).and_then(|value| value.to_str().ok()))
    };
    let uri = header(["x-original-uri", "x-forwarded-uri"])
        .and_then(|text| text.parse::<Uri>().ok())
        .and_then(|uri| uri.path_and_query().cloned())
        .map_or_else(|| Uri::from_static("/"), Uri::from);
    let method = header(["x-original-method", "x-forwarded-method"])
        .and_then(|text| Method::from_bytes(text.as_bytes()).ok())
        .unwrap_or(Method::GET);
    Original { method, uri }
}
