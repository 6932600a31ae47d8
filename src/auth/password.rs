//! Email + password: sign-up and login, as JSON API calls or as form posts from the sign-in
//! page (answered with a redirect, or the page again with the error).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::csrf::SiteContext;
use super::extract::{BodyKind, Client, JsonOrForm};
use super::landing::{self, Reply};
use super::magic_link;
use super::openapi::{MessageBody, SignedInBody, UserBody};
use super::pages::{self, SignInForm};
use super::sessions::default_locale;
use crate::auth::error::{AuthError, BadRequest, Refusal};
use crate::auth::pages::{ErrorPage, PageError};
use crate::auth::state::AppState;
use crate::config::redirect::SafeRedirect;
use crate::identity::accounts::{AccountError, Accounts, NewAccount};
use crate::identity::magic_link::PendingSignup;
use crate::identity::org_choice::After;
use crate::identity::session::{ClientInfo, SessionToken};
use crate::identity::{Email, User};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes: `POST /signup`, `POST /login`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(signup_handler)).routes(routes!(login_handler))
}

/// `POST /signup` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SignupBody {
    email: String,
    password: String,
    name: Option<String>,
    #[serde(flatten)]
    form: FormFields,
}

/// `POST /login` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct LoginBody {
    email: String,
    password: String,
    mode: Option<String>,
    #[serde(flatten)]
    form: FormFields,
}

/// The fields the sign-in page's forms add to a credential post.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct FormFields {
    csrf_token: Option<String>,
    redirect_uri: Option<String>,
}

/// A successful sign-up or login.
#[derive(Debug)]
pub(crate) struct SignedIn {
    /// The user.
    pub user: User,
    /// The new session's token, for the cookie.
    pub token: SessionToken,
}

#[utoipa::path(
    post,
    path = "/signup",
    tag = "password",
    request_body(content(
        (SignupBody = "application/json"),
        (SignupBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, description = "Signed up and in (session cookie)", body = UserBody),
        (status = 202, description = "With `auth.signup_confirm`: mail finishes the sign-up; the same answer for every address", body = MessageBody),
        (status = 303, description = "A form post: on to `redirect_uri`"),
    ),
)]
async fn signup_handler(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    JsonOrForm(body, kind): JsonOrForm<SignupBody>,
) -> Response {
    let result = async {
        let redirect = check_origin(&state, &site, kind, &body.form)?;
        if state.config.auth.signup_confirm {
            let target = redirect.as_ref().map_or("/", SafeRedirect::as_str);
            let requester = super::email::requester(&client);
            // The sign-up's password counts only if it is finished from this browser.
            let binding = super::oauth::browser_binding(&state, &site.headers);
            let browser = crate::crypto::hex(&crate::crypto::sha256(binding.as_bytes()));
            let (email, password, name) = (&body.email, body.password, body.name);
            signup_by_mail(&state, email, password, name, browser, target, &requester).await?;
            let mut response = match kind {
                BodyKind::Json => {
                    (StatusCode::ACCEPTED, MessageBody::json(SIGNUP_ANSWER)).into_response()
                }
                BodyKind::Form => {
                    pages::link_sent_page(&state, &site, &body.email, target, None, true)
                }
            };
            let cookie = state.cookies.flow(binding, state.magic.ttl());
            response.headers_mut().append(SET_COOKIE, cookie);
            return Ok(response);
        }
        let mut signed_in = signup(&state, &body.email, body.password, body.name, client).await?;
        default_locale(&state, &mut signed_in.user, &site.headers).await?;
        landing::end_previous_session(&state, &site.headers).await?;
        Ok(signed_in_response(&state, &signed_in, redirect, StatusCode::CREATED))
    }
    .await;
    let form = SignInForm {
        email: Some(body.email),
        redirect_uri: body.form.redirect_uri,
        signing_up: true,
    };
    match result {
        Ok(response) => response,
        Err(error) => failure_response(&state, &site, kind, error, form).await,
    }
}

#[utoipa::path(
    post,
    path = "/login",
    tag = "password",
    request_body(content(
        (LoginBody = "application/json"),
        (LoginBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Signed in: a session, tokens, or a choice of organization", body = SignedInBody),
        (status = 303, description = "A form post: on to `redirect_uri`, or to the organization choice"),
    ),
)]
async fn login_handler(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    JsonOrForm(body, kind): JsonOrForm<LoginBody>,
) -> Response {
    let result = async {
        let redirect = check_origin(&state, &site, kind, &body.form)?;
        let after = check_mode(body.mode.as_deref(), kind)?;
        let client_ip = client.ip.as_deref().and_then(|ip| ip.parse().ok());
        let mut user = check_password(&state, &body.email, body.password, client_ip).await?;
        default_locale(&state, &mut user, &site.headers).await?;
        if after == After::Session {
            landing::end_previous_session(&state, &site.headers).await?;
        }
        let reply = match redirect {
            Some(target) => Reply::see_other(target.as_str()),
            None => Reply::Json,
        };
        landing::sign_in(&state, &user, client, after, reply, "password").await
    }
    .await;
    let form = SignInForm {
        email: Some(body.email),
        redirect_uri: body.form.redirect_uri,
        signing_up: false,
    };
    match result {
        Ok(response) => response,
        Err(error) => failure_response(&state, &site, kind, error, form).await,
    }
}

/// CSRF for credential posts: JSON calls must not be cross-site; form posts must also carry the
/// page's token. Form posts get their validated redirect target back.
fn check_origin(
    state: &AppState,
    site: &SiteContext,
    kind: BodyKind,
    form: &FormFields,
) -> Result<Option<SafeRedirect>, AuthError> {
    state.csrf.check_anonymous_post(site, kind, form.csrf_token.as_deref())?;
    match kind {
        BodyKind::Json => Ok(None),
        BodyKind::Form => state
            .redirects
            .check(form.redirect_uri.as_deref().unwrap_or(""))
            .map(Some)
            .map_err(|reason| BadRequest::Redirect(reason).into()),
    }
}

/// What the login hands out (its `mode`); the sign-in page's forms always get a cookie.
fn check_mode(mode: Option<&str>, kind: BodyKind) -> Result<After, AuthError> {
    match (mode, kind) {
        (None | Some("cookie"), _) => Ok(After::Session),
        (Some("token"), BodyKind::Json) => Ok(After::Tokens),
        (Some("cookie_token"), BodyKind::Json) => Ok(After::CookieTokens),
        (Some("token" | "cookie_token"), BodyKind::Form) => {
            Err(AuthError::from(BadRequest::TokenModeByForm))
        }
        (Some(_), _) => Err(AuthError::from(BadRequest::UnknownMode)),
    }
}

/// What `POST /signup` answers under `auth.signup_confirm`, for every address.
const SIGNUP_ANSWER: &str = "check your email: a link and a code finish the sign-up";

/// Creates a password account and signs it in.
///
/// # Errors
/// 403 when sign-up is closed or the domain not allowed, 400 for a bad email, name or weak
/// password, 409 when the email is taken (after the same hashing work as a new account, so
/// the timing tells no more than the status).
pub(crate) async fn signup(
    state: &AppState,
    email: &str,
    password: String,
    name: Option<String>,
    client: ClientInfo,
) -> Result<SignedIn, AuthError> {
    let (email, name) = check_signup(state, email, &password, name)?;
    let new = NewAccount { email, name, password: Some(password), roles: Vec::new() };
    let user = state.services.accounts.create(new).await.inspect_err(|error| {
        if matches!(error, AccountError::Exists) {
            state.metrics.record_auth("password", "duplicate_signup");
        }
    })?;
    // The account and its first session live in different stores (SQL, and Redis when
    // configured): if the session cannot be stored, undo the account so that a retry works.
    // A new account belongs to no organization yet.
    let requester = super::email::requester(&client);
    let token = match state.services.sessions.create(&user, client, None).await {
        Ok((token, _)) => token,
        Err(error) => {
            if let Err(undo) = state.services.accounts.undo_create(user.id).await {
                tracing::error!(error = %undo, user = %user.id, "cannot undo a failed sign-up");
            }
            return Err(error.into());
        }
    };
    state.metrics.record_auth("password", "signup");
    let background = state.clone();
    let new_user = user.clone();
    tokio::spawn(async move {
        if let Err(error) =
            super::email::mail_verification(&background, &new_user, &requester).await
        {
            tracing::warn!(%error, "cannot send the verification mail of a new account");
        }
    });
    Ok(SignedIn { user, token })
}

/// Starts a password sign-up that the mailed link or code finishes (`auth.signup_confirm`):
/// the password is hashed, and mail goes out, for new and taken addresses alike; no account
/// exists until the address is proven, so nobody learns whether it was taken, and nobody
/// plants a password on someone else's address.
///
/// # Errors
/// As [`signup`] before the address is looked at; 502 `email_send_failed`.
pub(crate) async fn signup_by_mail(
    state: &AppState,
    email: &str,
    password: String,
    name: Option<String>,
    browser: String,
    redirect: &str,
    requester: &str,
) -> Result<(), AuthError> {
    let (email, name) = check_signup(state, email, &password, name)?;
    let password_hash = state.services.accounts.hash_password(password).await?;
    let pending = PendingSignup { password_hash, name, browser };
    magic_link::send_signup(state, &email, redirect, requester, pending).await?;
    state.metrics.record_auth("password", "signup_mailed");
    Ok(())
}

/// The rules a sign-up must pass before anything is stored: sign-up open to the address's
/// domain, a clean name, a strong password. None of them depends on whether the address has
/// an account.
fn check_signup(
    state: &AppState,
    email: &str,
    password: &str,
    name: Option<String>,
) -> Result<(Email, Option<String>), AuthError> {
    let auth = &state.config.auth;
    if !auth.signup {
        return Err(AuthError::from(Refusal::SignupDisabled));
    }
    let email = Email::parse(email)?;
    if !auth.domain_may_sign_up(email.domain()) {
        return Err(AuthError::from(Refusal::SignupDomain));
    }
    let name = Accounts::check_new(&email, name.as_deref(), Some(password))?;
    Ok((email, name))
}

/// Checks an email and password. Unknown emails, wrong passwords and disabled accounts get the
/// same answer after the same work. Failures back off per account and client address
/// (`client`), so a stranger cannot lock the owner out; the hashing itself runs on a bounded
/// pool, so a spray from many addresses queues instead of taking the CPU.
///
/// # Errors
/// 401 `invalid_credentials`, 429 while the account backs off, 503 if the store is down.
pub(crate) async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
    client: Option<std::net::IpAddr>,
) -> Result<User, AuthError> {
    let email = Email::parse(email)?;
    state.backoff.check(&email, client).await?;
    let found = state.services.users.find_by_email(&email).await?;
    let (user, hash) = match found {
        Some((user, hash)) if user.disabled_at.is_none() => (Some(user), hash),
        _ => (None, None),
    };
    let matches =
        state.services.hasher.verify(password, hash).await.map_err(AuthError::internal)?;
    let Some(user) = user.filter(|_| matches) else {
        state.backoff.record_failure(&email, client).await?;
        state.metrics.record_auth("password", "failure");
        return Err(AuthError::BadCredentials);
    };
    state.backoff.record_success(&email, client).await?;
    Ok(user)
}

/// JSON `{"user": …}` with the session cookie, or for a form post a 303 to the target.
fn signed_in_response(
    state: &AppState,
    signed_in: &SignedIn,
    redirect: Option<SafeRedirect>,
    status: StatusCode,
) -> Response {
    let cookie = state.cookies.session(signed_in.token.cookie_value(), state.config.session.ttl);
    let mut response = match redirect {
        Some(target) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(target.as_str()) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
        None => (status, Json(UserBody { user: signed_in.user.view(&[], None) })).into_response(),
    };
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

/// JSON errors for API calls; the sign-in page with the message for form posts.
async fn failure_response(
    state: &AppState,
    site: &SiteContext,
    kind: BodyKind,
    error: AuthError,
    form: SignInForm,
) -> Response {
    let page = ErrorPage::SignIn(form);
    PageError::new(error, page).render(state, site, kind == BodyKind::Json).await
}
