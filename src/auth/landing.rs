//! Where every sign-in lands once the user is known (password, magic link or code, provider,
//! operator link, dev sign-in): the session or tokens are made in the user's organization, or,
//! when `[orgs] require_selection` asks and the user has several, a pending choice is answered
//! instead and `POST /auth/orgs/select` finishes the sign-in.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::SET_COOKIE;
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::openapi::{CookieTokenLogin, PendingChoice, SignedInBody, TokenLogin, UserBody};
use super::tokens::token_cookies;
use super::{no_store, redirect};
use crate::auth::error::AuthError;
use crate::auth::state::AppState;
use crate::cookies::Own;
use crate::identity::org_choice::{After, CHOICE_TTL, Choice};
use crate::identity::session::{ClientInfo, SessionToken};
use crate::identity::{Scopes, User};
use crate::model::org::Membership;

/// How the client that signed in is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// JSON (an API call).
    Json,
    /// A redirect (a browser), with 302 after a GET and 303 after a form post.
    Redirect {
        /// The validated target.
        to: String,
        /// 302 or 303.
        status: StatusCode,
    },
}

impl Reply {
    /// A redirect to `to` after a GET.
    pub(crate) fn found(to: &str) -> Self {
        Self::Redirect { to: to.to_owned(), status: StatusCode::FOUND }
    }

    /// A redirect to `to` after a form post.
    pub(crate) fn see_other(to: &str) -> Self {
        Self::Redirect { to: to.to_owned(), status: StatusCode::SEE_OTHER }
    }
}

/// Signs `user` in (they proved who they are by `method`): a session or tokens in their most
/// recently active organization, or a pending choice of organization.
///
/// # Errors
/// The stores fail.
pub(crate) async fn sign_in(
    state: &AppState,
    user: &User,
    client: ClientInfo,
    after: After,
    reply: Reply,
    method: &'static str,
) -> Result<Response, AuthError> {
    let orgs = state.services.orgs.memberships(user.id).await?;
    if state.config.orgs.require_selection && orgs.len() > 1 {
        let redirect = match &reply {
            Reply::Json => None,
            Reply::Redirect { to, .. } => Some(to.clone()),
        };
        let choice = Choice {
            user_id: user.id,
            after,
            redirect,
            ip: client.ip,
            user_agent: client.user_agent,
        };
        let token = state.choices.mint(&choice).await?;
        // The credentials were good: the sign-in counts now; the choice is counted apart.
        state.metrics.record_auth(method, "success");
        return Ok(choice_response(state, token, &orgs, &reply));
    }
    let active = orgs.first().map(|org| org.id);
    finish(state, user, &orgs, active, client, after, reply, method).await
}

/// Makes the session or tokens for `user` acting in `active` and answers as `reply` asks.
///
/// # Errors
/// The stores fail, or tokens cannot be signed.
#[allow(clippy::too_many_arguments, reason = "one call site each; a struct would only rename")]
pub(crate) async fn finish(
    state: &AppState,
    user: &User,
    orgs: &[Membership],
    active: Option<Uuid>,
    client: ClientInfo,
    after: After,
    reply: Reply,
    method: &'static str,
) -> Result<Response, AuthError> {
    let view = || user.view(orgs, active);
    let response = match after {
        After::Session => {
            let (token, _) = state.services.sessions.create(user, client, active).await?;
            let cookie = state.cookies.session(token.cookie_value(), state.config.session.ttl);
            let mut response = match reply {
                Reply::Json => {
                    let body = SignedInBody::Session(UserBody { user: view() });
                    no_store(Json(body).into_response())
                }
                Reply::Redirect { to, status } => redirect(&to, status),
            };
            response.headers_mut().append(SET_COOKIE, cookie);
            response
        }
        After::Tokens => {
            let pair = state.tokens.issue(user, Scopes::All, client, active).await?;
            no_store(Json(SignedInBody::Tokens(TokenLogin { pair, user: view() })).into_response())
        }
        After::CookieTokens => {
            let pair = state.tokens.issue(user, Scopes::All, client, active).await?;
            // The tokens go only into httpOnly cookies, out of reach of page scripts.
            let body = SignedInBody::CookieTokens(CookieTokenLogin {
                user: view(),
                token_type: pair.token_type,
                expires_in: pair.expires_in,
            });
            let mut response = no_store(Json(body).into_response());
            for cookie in token_cookies(state, &pair) {
                response.headers_mut().append(SET_COOKIE, cookie);
            }
            response
        }
    };
    state.metrics.record_auth(method, "success");
    Ok(response)
}

/// `{pending_token, organizations}` for API clients; browsers go to the selection page with
/// the token in a short-lived cookie (never in a URL).
fn choice_response(
    state: &AppState,
    token: String,
    orgs: &[Membership],
    reply: &Reply,
) -> Response {
    match reply {
        Reply::Json => no_store(
            Json(SignedInBody::Choice(PendingChoice {
                pending_token: token,
                organizations: orgs.to_vec(),
            }))
            .into_response(),
        ),
        Reply::Redirect { .. } => {
            let page = format!("{}/orgs/select", state.config.auth.base_path);
            let mut response = redirect(&page, StatusCode::SEE_OTHER);
            response.headers_mut().append(SET_COOKIE, state.cookies.choice(token, CHOICE_TTL));
            response
        }
    }
}

/// A new sign-in replaces whatever session the browser had, so an old (possibly planted)
/// session never outlives it.
///
/// # Errors
/// The store fails.
pub(crate) async fn end_previous_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(), AuthError> {
    let previous =
        state.cookies.read(headers, Own::Session).one().and_then(SessionToken::from_cookie_value);
    if let Some(previous) = previous {
        state.services.sessions.end(&previous).await?;
    }
    Ok(())
}
