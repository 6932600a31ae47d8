//! The signed-in user and their sessions: `/me`, `/logout`, `/sessions`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::SET_COOKIE;
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{
    AnyCaller, ApiJson, ApiPath, ApiQuery, Caller, CsrfSession, CurrentSession, caller_user,
};
use super::openapi::{MessageBody, UserBody};
use super::sign_out::{Ending, SignOut};
use crate::auth::error::{AuthError, Missing, Refusal};
use crate::auth::state::AppState;
use crate::clock::Timestamp;
use crate::cookies::CookieJar;
use crate::identity::accounts::{Accounts, ProfileChanges};
use crate::identity::orgs::Organizations;
use crate::identity::session::SessionService;
use crate::identity::ticket::{TICKET_TTL, WsTickets};
use crate::identity::{AuthMethod, Identity, User, profile};
use crate::store::users::UserStore;

/// Routes: `GET /me`, `PATCH /me`, `POST /logout`, `GET /sessions`, `DELETE /sessions/{id}`,
/// `POST /ws-token`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(ws_token))
        .routes(routes!(logout))
        .routes(routes!(list))
        .routes(routes!(end_one))
}

/// `GET /me`: the user behind any credential, read fresh from the database.
#[utoipa::path(
    get,
    path = "/me",
    tag = "session",
    responses(
        (status = 200, description = "The caller, with their organizations", body = UserBody),
    ),
)]
async fn me(
    State(users): State<UserStore>,
    State(orgs): State<Organizations>,
    AnyCaller(identity): AnyCaller,
) -> Result<Response, AuthError> {
    let user = caller_user(&users, &identity).await?;
    user_response(&orgs, &user, active_org(&identity)).await
}

/// `{"user": …}` with the user's organizations and the `active` one.
///
/// # Errors
/// The database fails.
pub(crate) async fn user_response(
    orgs: &Organizations,
    user: &User,
    active: Option<Uuid>,
) -> Result<Response, AuthError> {
    let orgs = orgs.memberships(user.id).await?;
    Ok(Json(UserBody { user: user.view(&orgs, active) }).into_response())
}

/// The organization a credential acts in.
fn active_org(identity: &Identity) -> Option<Uuid> {
    identity.active_org.as_ref().map(|org| org.org_id)
}

#[derive(Debug, Deserialize)]
struct LogoutQuery {
    all: Option<bool>,
}

/// `POST /logout[?all=true]`: ends this session (or every session and token of the user) and
/// clears the cookie. A token client logs out with its access token (no CSRF needed): its
/// refresh family is revoked.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "session",
    params(
        ("all" = Option<bool>, Query, description = "End every session and token sign-in of the user"),
    ),
    responses(
        (status = 200, description = "Logged out; cookies cleared", body = MessageBody),
    ),
)]
async fn logout(
    State(signing_out): State<SignOut>,
    ApiQuery(query): ApiQuery<LogoutQuery>,
    Caller(caller): Caller,
    session: Option<CurrentSession>,
) -> Result<Response, AuthError> {
    let ending = match (caller.method, &session) {
        _ if query.all.unwrap_or(false) => Ending::Everything(caller.user_id),
        (AuthMethod::Session, Some(session)) => Ending::Session(&session.token),
        (AuthMethod::Jwt, _) => caller.session_id.map_or(Ending::CookiesOnly, Ending::TokenFamily),
        _ => return Err(AuthError::from(Refusal::LogoutCredential)),
    };
    signing_out.end(ending, MessageBody::json("logged out").into_response()).await
}

/// `GET /sessions`: the user's live sessions, marking the current one.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "session",
    responses(
        (status = 200, description = "The user's live sessions", body = SessionsBody),
    ),
)]
async fn list(
    State(sessions): State<SessionService>,
    session: CurrentSession,
) -> Result<Response, AuthError> {
    let current = session.identity.session_id;
    let sessions: Vec<SessionDoc> = sessions
        .list(session.identity.user_id)
        .await?
        .into_iter()
        .map(|record| SessionDoc {
            current: Some(record.id) == current,
            id: record.id,
            created_at: Timestamp::from_millis(record.created_at),
            last_seen_at: Timestamp::from_millis(record.last_seen_at),
            ip: record.ip,
            user_agent: record.user_agent,
        })
        .collect();
    Ok(Json(SessionsBody { sessions }).into_response())
}

/// `DELETE /sessions/{id}`: ends one of the user's sessions (the cookie is cleared when it is
/// the current one).
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "session",
    params(("id" = uuid::Uuid, Path, description = "Session id")),
    responses((status = 200, description = "The session ended", body = MessageBody)),
)]
async fn end_one(
    State(sessions): State<SessionService>,
    State(cookies): State<CookieJar>,
    ApiPath(id): ApiPath<Uuid>,
    CsrfSession(session): CsrfSession,
) -> Result<Response, AuthError> {
    if !sessions.end_by_id(session.identity.user_id, id).await? {
        return Err(AuthError::from(Missing::Session));
    }
    let mut response = MessageBody::json("session ended").into_response();
    if session.identity.session_id == Some(id) {
        for cookie in cookies.clear_session() {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    Ok(response)
}

/// `POST /ws-token`: a single-use `ws_` ticket for a WebSocket upgrade, for a session (CSRF
/// checked) or an access token. The ticket dies with the sign-in that asked for it.
#[utoipa::path(
    post,
    path = "/ws-token",
    tag = "tokens",
    responses(
        (status = 200, description = "A single-use WebSocket ticket", body = WsTicketBody),
    ),
)]
async fn ws_token(
    State(tickets): State<WsTickets>,
    Caller(caller): Caller,
    session: Option<CurrentSession>,
) -> Result<Response, AuthError> {
    let session_hash = match caller.method {
        AuthMethod::Session => Some(session.ok_or_else(AuthError::not_signed_in)?.token.hash()),
        AuthMethod::Jwt => None,
        AuthMethod::ApiKey | AuthMethod::WsTicket => {
            return Err(AuthError::from(Refusal::TicketCredential));
        }
    };
    let token = tickets.issue(&caller, session_hash).await?;
    Ok(super::no_store(
        Json(WsTicketBody { token, expires_in: TICKET_TTL.as_secs() }).into_response(),
    ))
}

/// `PATCH /me` body: each field given is set (an empty string clears it).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProfilePatch {
    name: Option<String>,
    username: Option<String>,
    locale: Option<String>,
    avatar_url: Option<String>,
}

/// `PATCH /me`: edits the caller's profile (a session with CSRF, or an access token; not an
/// API key). The identity headers follow on the next request, on every replica.
#[utoipa::path(
    patch,
    path = "/me",
    tag = "session",
    request_body = ProfilePatch,
    responses((status = 200, description = "The updated user", body = UserBody)),
)]
async fn update_me(
    State(accounts): State<Accounts>,
    State(users): State<UserStore>,
    State(orgs): State<Organizations>,
    Caller(caller): Caller,
    ApiJson(patch): ApiJson<ProfilePatch>,
) -> Result<Response, AuthError> {
    if caller.method == AuthMethod::ApiKey {
        return Err(AuthError::from(Refusal::ApiKey("change the profile")));
    }
    let user = caller_user(&users, &caller).await?;
    let changes = ProfileChanges {
        name: patch.name,
        username: patch.username,
        locale: patch.locale,
        avatar_url: patch.avatar_url,
    };
    let user = accounts.update_profile(user, changes).await?;
    user_response(&orgs, &user, active_org(&caller)).await
}

/// Gives a user without a locale the first one of the request's `Accept-Language` (on sign-up
/// and sign-in).
///
/// # Errors
/// The store fails.
pub(crate) async fn default_locale(
    state: &AppState,
    user: &mut User,
    headers: &http::HeaderMap,
) -> Result<(), AuthError> {
    if user.locale.is_some() {
        return Ok(());
    }
    let accept = headers.get(http::header::ACCEPT_LANGUAGE).and_then(|value| value.to_str().ok());
    if let Some(locale) = accept.and_then(profile::preferred_locale) {
        state.services.users.default_locale(user.id, &locale).await?;
        user.locale = Some(locale);
    }
    Ok(())
}

/// `POST /ws-token`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WsTicketBody {
    /// `ws_…`, single use.
    pub token: String,
    /// Seconds it stays usable.
    pub expires_in: u64,
}

/// One of the user's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionDoc {
    /// Session id.
    pub id: Uuid,
    /// Sign-in time.
    pub created_at: Timestamp,
    /// Last activity (at most a minute stale).
    pub last_seen_at: Timestamp,
    /// Client IP at sign-in.
    pub ip: Option<String>,
    /// Client user agent at sign-in.
    pub user_agent: Option<String>,
    /// Whether it is the session of this request.
    pub current: bool,
}

/// `GET /sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionsBody {
    /// Newest first.
    pub sessions: Vec<SessionDoc>,
}
