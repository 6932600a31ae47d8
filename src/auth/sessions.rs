//! The signed-in user and their sessions: `/me`, `/logout`, `/sessions`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::header::SET_COOKIE;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller, CsrfSession, CurrentSession};
use crate::app::AppState;
use crate::clock::Timestamp;
use crate::error::ApiError;
use crate::gateway::identify::Identified;
use crate::identity::AuthMethod;
use crate::identity::ticket::TICKET_TTL;

/// Routes: `GET /me`, `POST /logout`, `GET /sessions`, `DELETE /sessions/{id}`,
/// `POST /ws-token`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/ws-token", post(ws_token))
        .route("/logout", post(logout))
        .route("/sessions", get(list))
        .route("/sessions/{id}", delete(end_one))
}

/// `GET /me`: the user behind any credential, read fresh from the database.
async fn me(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    let identity = match state.gateway.identify(&parts).await.0 {
        Identified::Known(identity) => identity,
        Identified::Anonymous => return Err(ApiError::unauthorized()),
        Identified::Rejected(rejection) => return Err(rejection.into()),
    };
    let user = state
        .users
        .find(identity.user_id)
        .await?
        .filter(|user| user.disabled_at.is_none())
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(json!({ "user": user.view() })).into_response())
}

#[derive(Debug, Deserialize)]
struct LogoutQuery {
    all: Option<bool>,
}

/// `POST /logout[?all=true]`: ends this session (or every session and token of the user) and
/// clears the cookie. A token client logs out with its access token (no CSRF needed): its
/// refresh family is revoked.
async fn logout(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LogoutQuery>,
    Caller(caller): Caller,
    session: Option<CurrentSession>,
) -> Result<Response, ApiError> {
    let all = query.all.unwrap_or(false);
    match (caller.method, session) {
        (_, _) if all => {
            state.end_all_sign_ins(caller.user_id).await?;
        }
        (AuthMethod::Session, Some(session)) => state.sessions.end(&session.token).await?,
        (AuthMethod::Jwt, _) => {
            if let Some(family) = caller.session_id {
                state.tokens.revoke_family(family).await?;
            }
        }
        _ => return Err(ApiError::forbidden("Log out with a session or an access token")),
    }
    state.metrics.record_auth("session", "logout");
    let mut response = Json(json!({ "message": "logged out" })).into_response();
    response.headers_mut().append(SET_COOKIE, state.cookies.clear_session());
    Ok(response)
}

#[derive(Debug, Serialize)]
struct SessionView {
    id: Uuid,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    ip: Option<String>,
    user_agent: Option<String>,
    current: bool,
}

/// `GET /sessions`: the user's live sessions, marking the current one.
async fn list(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, ApiError> {
    let current = session.identity.session_id;
    let sessions: Vec<SessionView> = state
        .sessions
        .list(session.identity.user_id)
        .await?
        .into_iter()
        .map(|record| SessionView {
            current: Some(record.id) == current,
            id: record.id,
            created_at: Timestamp::from_millis(record.created_at),
            last_seen_at: Timestamp::from_millis(record.last_seen_at),
            ip: record.ip,
            user_agent: record.user_agent,
        })
        .collect();
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

/// `DELETE /sessions/{id}`: ends one of the user's sessions (the cookie is cleared when it is
/// the current one).
async fn end_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    CsrfSession(session): CsrfSession,
) -> Result<Response, ApiError> {
    if !state.sessions.end_by_id(session.identity.user_id, id).await? {
        return Err(ApiError::not_found("No such session"));
    }
    let mut response = Json(json!({ "message": "session ended" })).into_response();
    if session.identity.session_id == Some(id) {
        response.headers_mut().append(SET_COOKIE, state.cookies.clear_session());
    }
    Ok(response)
}

/// `POST /ws-token`: a single-use `ws_` ticket for a WebSocket upgrade, for a session (CSRF
/// checked) or an access token. The ticket dies with the sign-in that asked for it.
async fn ws_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    session: Option<CurrentSession>,
) -> Result<Response, ApiError> {
    let session_hash = match caller.method {
        AuthMethod::Session => Some(session.ok_or_else(ApiError::unauthorized)?.token.hash()),
        AuthMethod::Jwt => None,
        AuthMethod::ApiKey | AuthMethod::WsTicket => {
            return Err(ApiError::forbidden("WebSocket tickets need a session or an access token"));
        }
    };
    let token = state.tickets.issue(&caller, session_hash).await?;
    Ok(super::no_store(
        Json(json!({ "token": token, "expires_in": TICKET_TTL.as_secs() })).into_response(),
    ))
}
