//! Email verification and password reset:
//! `POST /email/verify/send`, `GET /email/verify?token=`, `POST /password/forgot`,
//! `GET /password/reset?token=` (the page), `POST /password/reset`.
//!
//! `forgot` answers the same, at once, for known and unknown addresses: the lookup and the mail
//! happen in the background, so neither the answer nor its timing tells whether an account
//! exists.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::LOCATION;
use minijinja::context;
use serde::Deserialize;

use super::csrf::SiteContext;
use super::extract::{ApiQuery, BodyKind, Caller, Client, JsonOrForm};
use super::openapi::MessageBody;
use super::pages;
use crate::auth::error::{AuthError, Refusal, Spent};
use crate::auth::pages::PageError;
use crate::auth::state::AppState;
use crate::conn::peer::client_key;
use crate::identity::accounts::Accounts;
use crate::identity::email_token::{Holder, Purpose};
use crate::identity::password_policy;
use crate::identity::session::ClientInfo;
use crate::identity::{AuthMethod, Email, User};
use crate::mail::Template;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Messages to one address per hour, of every kind and from every client together: nobody can
/// mail-bomb it.
const SENDS_PER_HOUR: u64 = 20;
/// Messages of one kind to one address asked by one client per hour: a stranger spends their
/// own share, never the owner's.
const SENDS_PER_CLIENT: u64 = 3;
/// Messages of one kind one client may ask for per hour, to any addresses.
const SENDS_FROM_CLIENT: u64 = 30;

/// The kinds of mail that are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MailKind {
    /// Magic link and code.
    SignIn,
    /// Address verification.
    Verify,
    /// Password reset.
    Reset,
    /// Organization invite.
    Invite,
}

impl MailKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::Verify => "verify",
            Self::Reset => "reset",
            Self::Invite => "invite",
        }
    }
}

/// Who asks for mail, as limits count it: the client's address (an IPv6 /64), or `-`.
pub(crate) fn requester(client: &ClientInfo) -> String {
    client
        .ip
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map_or_else(|| "-".to_owned(), |ip| client_key(ip).to_string())
}
const FORGOT_ANSWER: &str = "if an account exists for that email, a reset link has been sent";

/// Routes for verification and reset.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_verification))
        .routes(routes!(verify))
        .routes(routes!(forgot))
        .routes(routes!(reset_page, reset))
}

/// Whether another message of `kind` may go to `email` this hour at the request of
/// `requester` (counted whether or not it is sent): within the client's share for that address
/// and kind, the client's share for the kind, and the address's hourly total.
///
/// # Errors
/// The store fails.
pub(crate) async fn within_send_limit(
    state: &AppState,
    kind: MailKind,
    email: &Email,
    requester: &str,
) -> Result<bool, AuthError> {
    let hash = |text: String| crate::crypto::hex(&crate::crypto::sha256(text.as_bytes()));
    let hour = Duration::from_secs(3600);
    let kind = kind.as_str();
    let counters = [
        (
            format!("mail:{kind}:{}", hash(format!("{}\n{requester}", email.as_str()))),
            SENDS_PER_CLIENT,
        ),
        (format!("mail_from:{kind}:{}", hash(requester.to_owned())), SENDS_FROM_CLIENT),
        (format!("mail_to:{}", hash(email.as_str().to_owned())), SENDS_PER_HOUR),
    ];
    for (key, limit) in counters {
        if state.services.ephemeral.incr(&key, hour).await? > limit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Mails `user` a verification link.
///
/// # Errors
/// The store fails, or the transport refuses the message (`email_send_failed`).
pub(crate) async fn mail_verification(
    state: &AppState,
    user: &User,
    requester: &str,
) -> Result<(), AuthError> {
    if !within_send_limit(state, MailKind::Verify, &user.email, requester).await? {
        return Err(AuthError::RateLimited { retry_after_secs: 3600 });
    }
    let holder = Holder { user_id: user.id, email: user.email.as_str().to_owned() };
    let token = state.email_tokens.issue(Purpose::Verify, &holder).await?;
    let link = link(state, "/email/verify", &token);
    let ttl = humantime::format_duration(state.email_tokens.ttl()).to_string();
    state
        .mailer
        .send(Template::VerifyEmail, &user.email, context! { link, ttl })
        .await
        .map_err(|error| AuthError::MailFailed { what: "mail", cause: error })
}

/// The public URL of the auth endpoint `path` with `token`: what emails link to.
pub(crate) fn link(state: &AppState, path: &str, token: &str) -> String {
    format!("{}{}{path}?token={token}", state.tokens.issuer(), state.config.auth.base_path)
}

/// `POST /email/verify/send`: mails the signed-in user a new verification link.
#[utoipa::path(
    post,
    path = "/email/verify/send",
    tag = "email",
    responses(
        (status = 200, description = "A verification link was sent", body = MessageBody),
    ),
)]
async fn send_verification(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Client(client): Client,
) -> Result<Response, AuthError> {
    if caller.method == AuthMethod::ApiKey {
        return Err(AuthError::from(Refusal::ApiKey("ask for verification mail")));
    }
    let user = super::extract::caller_user(&state.services.users, &caller).await?;
    if user.email_verified_at.is_some() {
        return Ok(MessageBody::json("the email address is already verified").into_response());
    }
    mail_verification(&state, &user, &requester(&client)).await?;
    Ok(MessageBody::json("a verification link has been sent").into_response())
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `GET /email/verify?token=`: marks the address verified; 302 to `/`, or JSON when asked.
#[utoipa::path(
    get,
    path = "/email/verify",
    tag = "email",
    params(("token" = Option<String>, Query, description = "From the mail")),
    responses(
        (status = 200, description = "Verified (asked for JSON)", body = MessageBody),
        (status = 302, description = "Verified: on to `/`"),
    ),
)]
async fn verify(
    State(state): State<AppState>,
    site: SiteContext,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Response {
    let result = async {
        let holder = state
            .email_tokens
            .redeem(Purpose::Verify, query.token.as_deref().unwrap_or(""))
            .await?
            .ok_or_else(|| invalid_link("verification"))?;
        let user = state.services.users.find_enabled(holder.user_id).await?;
        let user = user
            .filter(|user| user.email.as_str() == holder.email)
            .ok_or_else(|| invalid_link("verification"))?;
        state.services.users.mark_email_verified(user.id, state.clock.now()).await?;
        // Routes with `verified_email = true` let the user in on the next request.
        state.services.sessions.refresh_user(user.id);
        Ok::<_, AuthError>(())
    }
    .await;
    match (result, super::wants_json(&site.headers)) {
        (Ok(()), true) => MessageBody::json("email verified").into_response(),
        (Ok(()), false) => super::found("/", None),
        (Err(error), json) => PageError::link(error).render(&state, &site, json).await,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ForgotBody {
    email: String,
}

/// `POST /password/forgot`: the same answer, at once, for every address.
#[utoipa::path(
    post,
    path = "/password/forgot",
    tag = "password",
    request_body(content(
        (ForgotBody = "application/json"),
        (ForgotBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The same answer for every address", body = MessageBody),
    ),
)]
async fn forgot(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    JsonOrForm(body, _): JsonOrForm<ForgotBody>,
) -> Result<Response, AuthError> {
    state.csrf.check_same_site(&site)?;
    let email = Email::parse(&body.email)?;
    let within_limit =
        within_send_limit(&state, MailKind::Reset, &email, &requester(&client)).await?;
    let background = state.clone();
    tokio::spawn(async move {
        if let Err(error) = mail_reset(&background, &email, within_limit).await {
            tracing::error!(%error, "cannot send a password reset");
        }
    });
    Ok(MessageBody::json(FORGOT_ANSWER).into_response())
}

async fn mail_reset(state: &AppState, email: &Email, within_limit: bool) -> Result<(), AuthError> {
    let Some((user, _)) = state.services.users.find_by_email(email).await? else { return Ok(()) };
    if user.disabled_at.is_some() || !within_limit {
        return Ok(());
    }
    let holder = Holder { user_id: user.id, email: user.email.as_str().to_owned() };
    let token = state.email_tokens.issue(Purpose::Reset, &holder).await?;
    let link = link(state, "/password/reset", &token);
    let ttl = humantime::format_duration(state.email_tokens.ttl()).to_string();
    state
        .mailer
        .send(Template::ResetPassword, &user.email, context! { link, ttl })
        .await
        .map_err(AuthError::internal)
}

/// `GET /password/reset?token=`: the page where the link from the email lands.
#[utoipa::path(
    get,
    path = "/password/reset",
    tag = "pages",
    params(("token" = Option<String>, Query, description = "From the mail")),
    responses(
        (status = 200, description = "The reset page", content_type = "text/html"),
    ),
)]
async fn reset_page(
    State(state): State<AppState>,
    site: SiteContext,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Response {
    let ctx = context! {
        token => query.token.unwrap_or_default(),
        min_password_length => password_policy::MIN_LENGTH,
    };
    pages::render_form_page(&state, &site, "reset_password.html", ctx, StatusCode::OK)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ResetBody {
    token: String,
    password: String,
    csrf_token: Option<String>,
}

/// `POST /password/reset`: sets the password (rules apply), uses the token, and ends every
/// session and token sign-in of the user, on every replica.
#[utoipa::path(
    post,
    path = "/password/reset",
    tag = "password",
    request_body(content(
        (ResetBody = "application/json"),
        (ResetBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Changed; every sign-in ended", body = MessageBody),
        (status = 303, description = "A form post: to the sign-in page"),
    ),
)]
async fn reset(
    State(state): State<AppState>,
    site: SiteContext,
    JsonOrForm(body, kind): JsonOrForm<ResetBody>,
) -> Response {
    let result = async {
        state.csrf.check_anonymous_post(&site, kind, body.csrf_token.as_deref())?;
        let holder = state
            .email_tokens
            .peek(Purpose::Reset, &body.token)
            .await?
            .ok_or_else(|| invalid_link("reset"))?;
        let user = state.services.users.find_enabled(holder.user_id).await?;
        let user = user
            .filter(|user| user.email.as_str() == holder.email)
            .ok_or_else(|| invalid_link("reset"))?;
        // The rules first: a weak password must not use up the link.
        Accounts::check_password(&user, &body.password)?;
        state
            .email_tokens
            .redeem(Purpose::Reset, &body.token)
            .await?
            .ok_or_else(|| invalid_link("reset"))?;
        state.services.accounts.reset_password(&user, body.password).await?;
        state.metrics.record_auth("password", "reset");
        Ok::<_, AuthError>(())
    }
    .await;
    match (result, kind) {
        (Ok(()), BodyKind::Json) => {
            MessageBody::json("password changed: sign in with the new one").into_response()
        }
        (Ok(()), BodyKind::Form) => (
            StatusCode::SEE_OTHER,
            [(LOCATION, format!("{}/sign-in", state.config.auth.base_path))],
        )
            .into_response(),
        (Err(error), _) => error.into_response(),
    }
}

fn invalid_link(what: &'static str) -> AuthError {
    AuthError::Spent(Spent::EmailLink(what))
}
