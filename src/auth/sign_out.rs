//! `GET /sign-out` and its form: signing out from a browser without JavaScript. Apps link to
//! the page; its form posts back with a token bound to the session, so another site cannot
//! sign a user out. Also [`SignOut`], what ending a sign-in touches, for this form and for
//! `POST /logout`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::SET_COOKIE;
use minijinja::context;
use serde::Deserialize;

use std::sync::Arc;

use axum::extract::FromRef;
use uuid::Uuid;

use super::csrf::{Csrf, SiteContext};
use super::extract::{CurrentSession, JsonOrForm};
use super::pages;
use crate::auth::error::AuthError;
use crate::auth::state::AppState;
use crate::config::Config;
use crate::cookies::CookieJar;
use crate::error::ApiError;
use crate::identity::accounts::Accounts;
use crate::identity::session::{SessionService, SessionToken};
use crate::identity::tokens::TokenService;
use crate::metrics::Metrics;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes: `GET/POST /sign-out`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(page, sign_out))
}

/// The page: a button, or straight to the sign-in page when there is no session.
#[utoipa::path(
    get,
    path = "/sign-out",
    tag = "pages",
    responses(
        (status = 200, description = "The sign-out page", content_type = "text/html"),
        (status = 302, description = "No session: to the sign-in page"),
    ),
)]
async fn page(State(state): State<AppState>, session: Option<CurrentSession>) -> Response {
    let sign_in = format!("{}/sign-in", state.config.auth.base_path);
    let Some(session) = session else { return super::found(&sign_in, None) };
    let email = match state.services.users.find(session.identity.user_id).await {
        Ok(user) => user.map(|user| user.email.as_str().to_owned()).unwrap_or_default(),
        Err(error) => return ApiError::from(error).into_response(),
    };
    let session_id = session.identity.session_id.unwrap_or_default();
    let ctx = context! {
        base_path => &state.config.auth.base_path,
        csrf_token => state.csrf.session_token(session_id),
        email,
    };
    pages::render_page(&state, "sign_out.html", ctx, StatusCode::OK)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SignOutForm {
    csrf_token: Option<String>,
    all: Option<String>,
}

/// The form: ends this session (or every sign-in of the user), clears the cookies, and goes
/// to the sign-in page.
#[utoipa::path(
    post,
    path = "/sign-out",
    tag = "pages",
    request_body(content(
        (SignOutForm = "application/json"),
        (SignOutForm = "application/x-www-form-urlencoded"),
    )),
    responses((status = 303, description = "Signed out: to the sign-in page")),
)]
async fn sign_out(
    State(config): State<Arc<Config>>,
    State(csrf): State<Arc<Csrf>>,
    State(signing_out): State<SignOut>,
    site: SiteContext,
    session: Option<CurrentSession>,
    JsonOrForm(form, _): JsonOrForm<SignOutForm>,
) -> Result<Response, AuthError> {
    let sign_in = format!("{}/sign-in", config.auth.base_path);
    let Some(session) = session else {
        return Ok(super::redirect(&sign_in, StatusCode::SEE_OTHER));
    };
    let session_id = session.identity.session_id.ok_or_else(AuthError::not_signed_in)?;
    csrf.verify_session_token(&site, session_id, form.csrf_token.as_deref())?;
    let ending = if form.all.as_deref() == Some("true") {
        Ending::Everything(session.identity.user_id)
    } else {
        Ending::Session(&session.token)
    };
    signing_out.end(ending, super::redirect(&sign_in, StatusCode::SEE_OTHER)).await
}

/// Which sign-ins to end.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ending<'a> {
    /// Every session and token sign-in of the user.
    Everything(Uuid),
    /// This browser session.
    Session(&'a SessionToken),
    /// This token sign-in (its refresh family).
    TokenFamily(Uuid),
    /// Nothing stored: a token sign-in whose family is unknown; the cookies still go.
    CookiesOnly,
}

/// What ending a sign-in touches: the sign-ins, the metric, and our cookies.
#[derive(Debug, Clone)]
pub(crate) struct SignOut {
    accounts: Accounts,
    sessions: SessionService,
    tokens: TokenService,
    cookies: CookieJar,
    metrics: Arc<Metrics>,
}

impl FromRef<AppState> for SignOut {
    fn from_ref(state: &AppState) -> Self {
        Self {
            accounts: state.services.accounts.clone(),
            sessions: state.services.sessions.clone(),
            tokens: state.tokens.clone(),
            cookies: state.cookies.clone(),
            metrics: Arc::clone(&state.metrics),
        }
    }
}

impl SignOut {
    /// Ends `ending` and answers with `response`, our cookies cleared.
    ///
    /// # Errors
    /// The stores fail.
    pub(crate) async fn end(
        &self,
        ending: Ending<'_>,
        mut response: Response,
    ) -> Result<Response, AuthError> {
        match ending {
            Ending::Everything(user_id) => {
                self.accounts.end_all_sign_ins(user_id).await?;
            }
            Ending::Session(token) => self.sessions.end(token).await?,
            Ending::TokenFamily(family) => {
                self.tokens.revoke_family(family).await?;
            }
            Ending::CookiesOnly => {}
        }
        self.metrics.record_auth("session", "logout");
        for cookie in self.cookies.clear_session().into_iter().chain(self.cookies.clear_tokens()) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        Ok(response)
    }
}
