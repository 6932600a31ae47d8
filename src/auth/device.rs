//! The device flow's endpoints: `POST /device/start`, `POST /device/poll`, the approval page
//! `GET /device`, and `POST /device/complete` (JSON, or the page's form).

use std::sync::Arc;

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, LOCATION};
use minijinja::context;
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::csrf::SiteContext;
use super::extract::{ApiQuery, BodyKind, CurrentSession, JsonOrForm};
use super::openapi::MessageBody;
use super::pages;
use super::tokens::pair_response;
use crate::auth::error::{AuthError, Missing};
use crate::auth::state::AppState;
use crate::config::Config;
use crate::error::ApiError;
use crate::identity::Scopes;
use crate::identity::device::DeviceFlow;
use crate::identity::device::{DEVICE_CODE_TTL, POLL_INTERVAL, Poll, normalize_user_code};
use crate::identity::session::ClientInfo;
use crate::identity::tokens::TokenPair;
use crate::identity::tokens::TokenService;

/// Longest client name kept.
const MAX_CLIENT_NAME: usize = 100;

/// Routes: `POST /device/start`, `POST /device/poll`, `GET /device`, `POST /device/complete`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(poll_handler))
        .routes(routes!(page))
        .routes(routes!(complete))
}

/// `POST /device/start`: JSON `{client_name?, scopes?}`, or an RFC 8628 form
/// (`client_id`, space-separated `scope`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct StartBody {
    client_name: Option<String>,
    client_id: Option<String>,
    scopes: Option<Vec<String>>,
    scope: Option<String>,
}

#[utoipa::path(
    post,
    path = "/device/start",
    tag = "tokens",
    request_body(content(
        (StartBody = "application/json"),
        (StartBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Codes for the device and the user", body = DeviceStartBody),
    ),
)]
async fn start(
    State(device): State<DeviceFlow>,
    State(tokens): State<TokenService>,
    State(config): State<Arc<Config>>,
    JsonOrForm(body, _): JsonOrForm<StartBody>,
) -> Result<Response, AuthError> {
    let scopes = match (&body.scopes, &body.scope) {
        (Some(list), _) => Scopes::parse_list(list.iter().map(String::as_str)),
        (None, Some(text)) => Scopes::from_claim(Some(text)),
        (None, None) => Ok(Scopes::All),
    }?;
    let client_name = body
        .client_name
        .or(body.client_id)
        .map(|name| name.trim().chars().filter(|c| !c.is_control()).take(MAX_CLIENT_NAME).collect())
        .filter(|name: &String| !name.is_empty());
    let started = device.start(client_name, &scopes).await?;
    let verification_uri = format!("{}{}/device", tokens.issuer(), config.auth.base_path);
    let complete = format!("{verification_uri}?user_code={}", started.user_code);
    let body = DeviceStartBody {
        device_code: started.device_code,
        user_code: started.user_code,
        verification_uri,
        verification_uri_complete: complete,
        expires_in: DEVICE_CODE_TTL.as_secs(),
        interval: POLL_INTERVAL.as_secs(),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// What a poll answers, shared by `/device/poll` and the RFC token endpoint.
#[derive(Debug)]
pub(crate) enum DeviceAnswer {
    /// Not answered yet.
    Pending,
    /// Polled too fast.
    SlowDown,
    /// Unknown, expired or already completed.
    Expired,
    /// Refused.
    Denied,
    /// Approved: the tokens, handed out this once.
    Completed(TokenPair),
}

/// Polls a device code, issuing tokens when it was approved.
///
/// # Errors
/// The store fails.
pub(crate) async fn poll(state: &AppState, device_code: &str) -> Result<DeviceAnswer, AuthError> {
    Ok(match state.device.poll(device_code).await? {
        Poll::Pending => DeviceAnswer::Pending,
        Poll::SlowDown => DeviceAnswer::SlowDown,
        Poll::Expired => DeviceAnswer::Expired,
        Poll::Denied => DeviceAnswer::Denied,
        Poll::Approved { user_id, org, scopes, client_name } => {
            let user = state.services.users.find_enabled(user_id).await?;
            let Some(user) = user else { return Ok(DeviceAnswer::Denied) };
            let client = ClientInfo { ip: None, user_agent: client_name };
            let pair = state.tokens.issue(&user, scopes, client, org).await?;
            state.metrics.record_auth("device", "success");
            DeviceAnswer::Completed(pair)
        }
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct PollBody {
    device_code: String,
}

/// `POST /device/poll`: `{"status": …}`, with the tokens once on completion.
#[utoipa::path(
    post,
    path = "/device/poll",
    tag = "tokens",
    request_body(content(
        (PollBody = "application/json"),
        (PollBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The status; the tokens once, on completion", body = DevicePollBody),
    ),
)]
async fn poll_handler(
    State(state): State<AppState>,
    JsonOrForm(body, _): JsonOrForm<PollBody>,
) -> Result<Response, AuthError> {
    let status = match poll(&state, &body.device_code).await? {
        DeviceAnswer::Completed(pair) => {
            let mut response = pair_response(&pair);
            // The pair's fields plus the status, in one object.
            let body = DevicePollBody {
                status: "completed",
                access_token: Some(pair.access_token),
                refresh_token: Some(pair.refresh_token),
                token_type: Some(pair.token_type),
                expires_in: Some(pair.expires_in),
            };
            let body = serde_json::to_vec(&body).map_err(AuthError::internal)?;
            *response.body_mut() = axum::body::Body::from(body);
            return Ok(response);
        }
        DeviceAnswer::Pending => "pending",
        DeviceAnswer::SlowDown => "slow_down",
        DeviceAnswer::Expired => "expired",
        DeviceAnswer::Denied => "denied",
    };
    let body = DevicePollBody {
        status,
        access_token: None,
        refresh_token: None,
        token_type: None,
        expires_in: None,
    };
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    user_code: Option<String>,
}

/// `GET /device[?user_code=]`: asks a signed-in user to confirm the code and approve or deny;
/// sends anyone else to sign in first, then back here.
#[utoipa::path(
    get,
    path = "/device",
    tag = "pages",
    params(
        ("user_code" = Option<String>, Query, description = "The code the device shows"),
    ),
    responses(
        (status = 200, description = "The approval page", content_type = "text/html"),
        (status = 302, description = "Not signed in: to the sign-in page"),
    ),
)]
async fn page(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
    session: Option<CurrentSession>,
    OriginalUri(original): OriginalUri,
) -> Response {
    let Some(session) = session else {
        // The full path (the router nested under the base path strips it from `Uri`).
        let here = original.path_and_query().map_or("/", |pq| pq.as_str());
        let target: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        let location = format!("{}/sign-in?redirect_uri={target}", state.config.auth.base_path);
        return (StatusCode::FOUND, [(LOCATION, location)]).into_response();
    };
    let code = query.user_code.as_deref().and_then(normalize_user_code);
    let grant = match code {
        Some(code) => match state.device.pending(&code).await {
            Ok(grant) => grant,
            Err(error) => return ApiError::from(error).into_response(),
        },
        None => None,
    };
    let error = match (&query.user_code, &grant) {
        (Some(_), None) => {
            Some("That code is unknown, expired or already used. Check the code your device shows.")
        }
        _ => None,
    };
    let session_id = session.identity.session_id.unwrap_or_default();
    pages::render_page(
        &state,
        "device.html",
        context! {
            base_path => &state.config.auth.base_path,
            csrf_token => state.csrf.session_token(session_id),
            user_code => grant.as_ref().map(|grant| grant.user_code.clone()),
            client_name => grant.as_ref().and_then(|grant| grant.client_name.clone()),
            scopes => grant.as_ref().and_then(|grant| grant.scopes.to_claim()),
            error => error,
            done => None::<&str>,
        },
        if error.is_some() { StatusCode::NOT_FOUND } else { StatusCode::OK },
    )
}

/// `POST /device/complete` body; the page's form adds `csrf_token`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CompleteBody {
    user_code: String,
    #[serde(deserialize_with = "bool_or_text")]
    approve: bool,
    csrf_token: Option<String>,
}

/// `true`/`false` from JSON, or `"true"`/`"false"` from a form.
fn bool_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(value) => Ok(value),
        Flag::Text(text) if text == "true" => Ok(true),
        Flag::Text(text) if text == "false" => Ok(false),
        Flag::Text(_) => Err(serde::de::Error::custom("approve must be true or false")),
    }
}

/// Approves or denies a pending grant for the signed-in user (session + CSRF: the header for
/// JSON calls, the form field for the page).
#[utoipa::path(
    post,
    path = "/device/complete",
    tag = "tokens",
    request_body(content(
        (CompleteBody = "application/json"),
        (CompleteBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Approved or denied (JSON, or the page for a form post)", content((MessageBody = "application/json"), (String = "text/html"))),
    ),
)]
async fn complete(
    State(state): State<AppState>,
    session: CurrentSession,
    site: SiteContext,
    JsonOrForm(body, kind): JsonOrForm<CompleteBody>,
) -> Result<Response, AuthError> {
    let session_id = session.identity.session_id.ok_or_else(AuthError::not_signed_in)?;
    state.csrf.verify_session_token(&site, session_id, body.csrf_token.as_deref())?;
    // The device acts in the organization the approving session acts in.
    let org = session.identity.active_org.as_ref().map(|org| org.org_id);
    let answered =
        state.device.answer(&body.user_code, session.identity.user_id, org, body.approve).await?;
    if !answered {
        return Err(AuthError::from(Missing::DeviceCode));
    }
    state.metrics.record_auth("device", if body.approve { "approved" } else { "denied" });
    let message = if body.approve {
        "Device approved: you can return to it now"
    } else {
        "Device sign-in denied"
    };
    Ok(match kind {
        BodyKind::Json => MessageBody::json(message).into_response(),
        BodyKind::Form => pages::render_page(
            &state,
            "device.html",
            context! {
                base_path => &state.config.auth.base_path,
                done => message,
            },
            StatusCode::OK,
        ),
    })
}

/// `POST /device/start` (RFC 8628).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceStartBody {
    /// For polling.
    pub device_code: String,
    /// What the user types.
    pub user_code: String,
    /// Where the user approves.
    pub verification_uri: String,
    /// The same, with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds the codes live.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// `POST /device/poll`: the status, and the tokens once on completion.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DevicePollBody {
    /// `pending`, `slow_down`, `expired`, `denied` or `completed`.
    pub status: &'static str,
    /// On completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// On completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// On completion: `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// On completion: access token lifetime, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}
