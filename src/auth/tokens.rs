//! Token endpoints: `POST /refresh`, `GET /jwks.json`, and `POST /token`, the OAuth 2.0 token
//! endpoint (RFC 6749 §5 answers) for standard device-flow clients (RFC 8628) and refresh.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::csrf::SiteContext;
use super::device::{self, DeviceAnswer};
use super::extract::JsonOrForm;
use super::no_store;
use crate::auth::error::{AuthError, BadRequest};
use crate::auth::state::AppState;
use crate::cookies::Own;
use crate::error::ApiError;
use crate::identity::tokens::TokenService;
use crate::identity::tokens::{TokenError, TokenPair};

/// The RFC 8628 grant type.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Routes: `POST /refresh`, `GET /jwks.json`, `POST /token`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(refresh))
        .routes(routes!(jwks))
        .routes(routes!(token_endpoint))
}

/// `Set-Cookie` headers holding a pair, for single-page apps that keep tokens in httpOnly
/// cookies (`"mode": "cookie_token"`).
pub(crate) fn token_cookies(state: &AppState, pair: &TokenPair) -> [http::HeaderValue; 2] {
    [
        state.cookies.access(pair.access_token.clone(), state.config.tokens.access_ttl),
        state.cookies.refresh(pair.refresh_token.clone(), state.config.tokens.refresh_ttl),
    ]
}

/// A token pair as JSON, never cached by anyone on the way.
pub(crate) fn pair_response(pair: &TokenPair) -> Response {
    no_store(Json(pair).into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// `POST /refresh`: rotates the refresh token from the body, or else from the refresh cookie
/// (then the new one is set in the cookie too, and the request must be same-site).
#[utoipa::path(
    post,
    path = "/refresh",
    tag = "tokens",
    request_body(content((RefreshBody = "application/json")), description = "Or no body, with the `portcullis_refresh` cookie"),
    responses(
        (status = 200, description = "A new pair (the refresh token rotated); with the refresh cookie, new cookies", body = TokenPair),
    ),
)]
async fn refresh(
    State(state): State<AppState>,
    site: SiteContext,
    body: Bytes,
) -> Result<Response, AuthError> {
    // An empty body means "use the cookie"; anything else must be the JSON object.
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<RefreshBody>(&body)
            .map_err(|_| AuthError::from(BadRequest::RefreshBody))?
            .refresh_token
    };
    let (token, from_cookie) = match from_body {
        Some(token) => (token, false),
        None => {
            let cookie = state
                .cookies
                .read(&site.headers, Own::Refresh)
                .one()
                .ok_or_else(|| AuthError::from(BadRequest::NoRefreshToken))?;
            state.csrf.check_same_site(&site)?;
            (cookie.to_owned(), true)
        }
    };
    let pair = state.tokens.refresh(&token).await?;
    let mut response = pair_response(&pair);
    if from_cookie {
        for cookie in token_cookies(&state, &pair) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    Ok(response)
}

/// `GET /jwks.json`: the public keys that verify access tokens and `X-Auth-Assertion`.
#[utoipa::path(
    get,
    path = "/jwks.json",
    tag = "tokens",
    responses(
        (status = 200, description = "The public keys of access tokens and assertions (JWKS)", body = Object),
    ),
)]
async fn jwks(State(tokens): State<TokenService>) -> Response {
    let mut response = Json(tokens.keys().jwks()).into_response();
    // Short, so that verifiers see a rotation soon; they refetch on an unknown `kid` anyway.
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// `POST /token` form (or JSON) fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct TokenRequest {
    grant_type: Option<String>,
    device_code: Option<String>,
    refresh_token: Option<String>,
    #[serde(rename = "client_id")]
    _client_id: Option<String>,
}

/// `POST /token`: RFC 6749 token endpoint for `device_code` and `refresh_token` grants, with
/// RFC error codes (`authorization_pending`, `slow_down`, `expired_token`, `access_denied`,
/// `invalid_grant`) so that standard OAuth clients work unchanged.
#[utoipa::path(
    post,
    path = "/token",
    tag = "tokens",
    request_body(content(
        (TokenRequest = "application/json"),
        (TokenRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Tokens (RFC 6749 / RFC 8628)", body = TokenPair),
        (status = 400, description = "An RFC 6749 error", body = OAuthErrorBody),
    ),
)]
async fn token_endpoint(
    State(state): State<AppState>,
    JsonOrForm(request, _): JsonOrForm<TokenRequest>,
) -> Response {
    match request.grant_type.as_deref() {
        Some(DEVICE_GRANT) => {
            let Some(code) = request.device_code else {
                return oauth_error("invalid_request", "device_code is required");
            };
            match device::poll(&state, &code).await {
                Ok(DeviceAnswer::Completed(pair)) => pair_response(&pair),
                Ok(DeviceAnswer::Pending) => {
                    oauth_error("authorization_pending", "The user has not answered yet")
                }
                Ok(DeviceAnswer::SlowDown) => {
                    oauth_error("slow_down", "Polling too fast: add 5 seconds to the interval")
                }
                Ok(DeviceAnswer::Expired) => {
                    oauth_error("expired_token", "The device code expired; start again")
                }
                Ok(DeviceAnswer::Denied) => oauth_error("access_denied", "The user refused"),
                Err(error) => error.into_response(),
            }
        }
        Some("refresh_token") => {
            let Some(token) = request.refresh_token else {
                return oauth_error("invalid_request", "refresh_token is required");
            };
            match state.tokens.refresh(&token).await {
                Ok(pair) => pair_response(&pair),
                Err(TokenError::Invalid | TokenError::Reused) => {
                    oauth_error("invalid_grant", "The refresh token is invalid, expired or revoked")
                }
                Err(error) => ApiError::from(error).into_response(),
            }
        }
        Some(_) => oauth_error("unsupported_grant_type", "Supported: device_code, refresh_token"),
        None => oauth_error("invalid_request", "grant_type is required"),
    }
}

/// An RFC 6749 §5.2 error: `error` is the OAuth code; `message` repeats the description in
/// this API's own format.
fn oauth_error(code: &'static str, description: &'static str) -> Response {
    let body =
        OAuthErrorBody { error: code, error_description: Some(description), message: description };
    no_store((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

/// An error of the OAuth token endpoint (RFC 6749 §5.2), with our `message` too.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OAuthErrorBody {
    /// `invalid_grant`, `authorization_pending`, …
    pub error: &'static str,
    /// What went wrong (absent when the request itself was malformed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<&'static str>,
    /// The same, as in every other error.
    pub message: &'static str,
}
