//! The `/auth` API and pages: one module per flow, each exporting `routes()`, merged here.

pub(crate) mod api_keys;
pub(crate) mod csrf;
pub(crate) mod dev;
pub(crate) mod device;
pub(crate) mod email;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod landing;
pub(crate) mod magic_link;
pub(crate) mod oauth;
pub(crate) mod one_time;
pub(crate) mod openapi;
pub(crate) mod orgs;
pub(crate) mod pages;
pub(crate) mod password;
pub(crate) mod providers;
pub(crate) mod rate_limit;
pub(crate) mod service_tokens;
pub(crate) mod sessions;
pub(crate) mod sign_in;
pub(crate) mod sign_out;
pub(crate) mod state;
pub(crate) mod tokens;
pub(crate) mod verify;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::error::{AuthError, Missing};
use crate::auth::state::AppState;
use crate::config::Config;
use crate::error::ApiError;

/// Every auth route, relative to the base path, with its rate limit and body limit, and
/// `GET /openapi.json` describing exactly these routes.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let (router, api) = documented_routes(&state.config).split_for_parts();
    let document = openapi::document(api, &state.config.auth.base_path);
    router
        .layer(axum::Extension(openapi::Document(document)))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        // Limits run before any handler reads a body or checks a secret.
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit::limit_by_ip))
        // The JSON and form extractors apply the limit themselves; this holds for any other.
        .layer(DefaultBodyLimit::max(extract::AUTH_BODY_LIMIT))
        .layer(middleware::from_fn(within_deadline))
}

/// How long one auth request may take. Nothing else bounds a PostgreSQL statement on a
/// stalled connection (a hung server or proxy keeps it open and silent, and the driver has no
/// keepalive), so without this such a request would wait as long as TCP does. Generous: an
/// OAuth callback makes up to three outbound calls of at most 10 s each.
const AUTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers 503 `store_unavailable` for a request still unanswered after [`AUTH_DEADLINE`]
/// (handlers are cancel-safe: a client that disconnects drops them the same way).
async fn within_deadline(request: axum::extract::Request, next: middleware::Next) -> Response {
    match tokio::time::timeout(AUTH_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(elapsed) => {
            tracing::warn!("an auth request took longer than {AUTH_DEADLINE:?}; answered 503");
            ApiError::from(crate::store::StoreError::unavailable(elapsed)).into_response()
        }
    }
}

/// The OpenAPI document of the auth API a server with `config` serves at
/// `{base_path}/openapi.json` (`portcullis openapi` prints it; `docs/openapi.json` is the one of
/// the embedded defaults).
pub(crate) fn api_document(config: &Config) -> bytes::Bytes {
    let (_, api) = documented_routes(config).split_for_parts();
    openapi::document(api, &config.auth.base_path)
}

/// The routes with their documentation, as one router.
fn documented_routes(config: &Config) -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new().routes(routes!(openapi::openapi));
    // Absent unless enabled: a disabled dev sign-in is a 404 like any unknown path.
    if config.dev.enabled {
        router = router.merge(dev::routes());
    }
    router
        .merge(csrf::routes())
        .merge(password::routes())
        .merge(sessions::routes())
        .merge(tokens::routes())
        .merge(api_keys::routes())
        .merge(device::routes())
        .merge(one_time::routes())
        .merge(service_tokens::routes())
        .merge(oauth::routes())
        .merge(sign_in::routes())
        .merge(sign_out::routes())
        .merge(magic_link::routes())
        .merge(email::routes())
        .merge(verify::routes())
        .merge(providers::routes())
        .merge(orgs::routes())
        .merge(pages::routes())
}

async fn not_found() -> AuthError {
    AuthError::from(Missing::Endpoint)
}

/// A 302 to `location` that nobody caches, setting `cookie` when given: where sign-ins land.
pub(crate) fn found(location: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = redirect(location, StatusCode::FOUND);
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// A redirect (`status` 302 or 303) to `location`, never cached.
pub(crate) fn redirect(location: &str, status: StatusCode) -> Response {
    let mut response = no_store(status.into_response());
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Whether the client asked for JSON rather than a page (API clients of browser flows).
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"))
}

/// Marks a response holding credentials as never to be cached by anyone on the way.
pub(crate) fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
