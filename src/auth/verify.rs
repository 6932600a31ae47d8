//! Forward-auth: `GET /verify` answers nginx `auth_request`, Traefik `forwardAuth` and Caddy
//! `forward_auth` with the gateway's own decision on the original request: 200 plus identity
//! headers, or 401/403 (or a redirect to sign in), or 400 when the original request cannot be
//! read in exactly one way.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, header};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiQuery;
use crate::auth::state::AppState;
use crate::config::Config;
use crate::conn::peer::{Peer, is_trusted};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::gateway::authorize::{Mode, Refusal};
use crate::gateway::forward_auth::into_original;
use crate::gateway::policy::{Denial, OnUnauthenticated};

/// Routes: `GET /verify`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify))
}

#[derive(Debug, Deserialize)]
struct VerifyQuery {
    redirect: Option<String>,
}

/// Decides the original request, read from the headers `[forward_auth]` names.
#[utoipa::path(
    get,
    path = "/verify",
    tag = "forward_auth",
    params(
        ("redirect" = Option<String>, Query, description = "`1`: answer signed-out browsers with a redirect"),
        ("X-Original-URI" = Option<String>, Header, description = "The original request's URI (or X-Forwarded-Uri; `[forward_auth] uri_headers`)"),
        ("X-Original-Method" = Option<String>, Header, description = "Its method (or X-Forwarded-Method; `[forward_auth] method_headers`)"),
    ),
    responses(
        (status = 200, description = "Allowed: every identity header set (empty when absent)"),
        (status = 302, description = "With `redirect=1`: to sign in"),
    ),
)]
async fn verify(
    State(gateway): State<Arc<Gateway>>,
    State(config): State<Arc<Config>>,
    ApiQuery(query): ApiQuery<VerifyQuery>,
    mut parts: Parts,
) -> Response {
    let trusted = parts
        .extensions
        .get::<Peer>()
        .is_some_and(|peer| is_trusted(peer.addr.ip(), gateway.trusted_proxies()));
    if let Err(error) = into_original(&mut parts, &config.forward_auth, trusted) {
        return ApiError::from(error).into_response();
    }
    let (mut denial, identified) = match gateway.authorize(&parts, Mode::ForwardAuth).await {
        Ok(permitted) => return gateway.verified(permitted),
        Err(Refusal::Denied { denial, identified }) => (denial, identified),
        Err(refusal) => return gateway.refuse(refusal, &parts),
    };
    let redirect = matches!(query.redirect.as_deref(), Some("1" | "true"));
    if let Denial::Unauthenticated { on_unauthenticated, .. } = &mut denial {
        // nginx does not pass a 302 from `auth_request` on: it gets 401 and redirects itself.
        *on_unauthenticated =
            if redirect { OnUnauthenticated::Redirect } else { OnUnauthenticated::Status401 };
    }
    let mut response = gateway.deny(&denial, &parts, &identified);
    if response.status() == http::StatusCode::UNAUTHORIZED
        && let Some(location) = gateway.sign_in_location(&parts)
    {
        // Where to send the browser, with the original URI encoded whole (nginx cannot
        // encode `$request_uri` itself, so `&` in its query would be lost).
        response.headers_mut().insert(header::LOCATION, location);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
