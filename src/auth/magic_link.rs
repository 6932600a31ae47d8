//! Passwordless sign-in by email: `POST /magic-link` mails a link and a code; the link opens a
//! confirmation page (`GET /magic-link/verify?token=`), and `POST /magic-link/verify` signs in
//! with `{token}` (that page's form) or `{email, code}`. The answer to `POST /magic-link` is
//! the same whether or not an account exists: where sign-up is open every address gets mail,
//! so a transport failure can be told (502); where it is closed the mail goes in the
//! background, so that neither the answer nor its timing says whether the account exists.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use minijinja::context;
use serde::Deserialize;

use super::csrf::SiteContext;
use super::email::{MailKind, requester, within_send_limit};
use super::extract::{ApiQuery, BodyKind, Client, JsonOrForm};
use super::landing::{self, Reply};
use super::openapi::{MessageBody, SignedInBody};
use super::pages::{self, SignInForm};
use super::sessions::default_locale;
use crate::auth::error::{AuthError, BadRequest, Spent};
use crate::auth::pages::{ErrorPage, PageError};
use crate::auth::state::AppState;
use crate::identity::Email;
use crate::identity::accounts::MailboxProof;
use crate::identity::magic_link::{Issued, PendingSignup, Redeemed};
use crate::identity::org_choice::After;
use crate::mail::{MailError, Template};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The sign-in method, as metrics name it.
const METHOD: &str = "magic_link";

const ANSWER: &str = "if an account exists with that email, a login link has been sent";

/// Routes: `POST /magic-link`, `GET|POST /magic-link/verify`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(request_link)).routes(routes!(verify_link, verify_code))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct LinkRequest {
    email: String,
    redirect_uri: Option<String>,
    csrf_token: Option<String>,
}

#[utoipa::path(
    post,
    path = "/magic-link",
    tag = "email",
    request_body(content(
        (LinkRequest = "application/json"),
        (LinkRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The same answer for every address (JSON; a form post gets the code page)", content((MessageBody = "application/json"), (String = "text/html"))),
    ),
)]
async fn request_link(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    JsonOrForm(body, kind): JsonOrForm<LinkRequest>,
) -> Result<Response, AuthError> {
    state.csrf.check_anonymous_post(&site, kind, body.csrf_token.as_deref())?;
    let email = Email::parse(&body.email)?;
    let redirect = state
        .redirects
        .check(body.redirect_uri.as_deref().unwrap_or("/"))
        .map_err(BadRequest::Redirect)?;
    send_link(&state, &email, redirect.as_str(), &requester(&client)).await?;
    let answer = MessageBody::json(ANSWER).into_response();
    Ok(match kind {
        BodyKind::Json => answer,
        BodyKind::Form => {
            pages::link_sent_page(&state, &site, &body.email, redirect.as_str(), None, false)
        }
    })
}

/// Mails `email` a link and a code when it may sign in (an account, or open sign-up), within
/// the mail limits. Where sign-up is open to the address every address gets mail, so the send
/// is awaited and a failure told; otherwise it goes in the background, so that the caller's
/// answer and its timing are the same whether or not the account exists.
///
/// # Errors
/// The store fails; 502 `email_send_failed` when sign-up is open and the transport refuses.
pub(crate) async fn send_link(
    state: &AppState,
    email: &Email,
    redirect: &str,
    requester: &str,
) -> Result<(), AuthError> {
    if !within_send_limit(state, MailKind::SignIn, email, requester).await? {
        tracing::warn!("magic link not sent: an hourly mail limit was reached");
        return Ok(());
    }
    if !may_sign_in(state, email).await? {
        return Ok(());
    }
    let issued = state.magic.issue(email, redirect, requester).await?;
    let send = grant_mail(state, email, Template::MagicLink, issued, false);
    if signup_allowed(state, email) {
        return send.await.map_err(send_failed);
    }
    tokio::spawn(async move {
        if let Err(error) = send.await {
            tracing::error!(%error, "cannot send a magic link");
        }
    });
    Ok(())
}

/// Mails the link and code that finish a password sign-up (`auth.signup_confirm`): for a new
/// address a grant that makes the account with `pending` when redeemed; for a taken one a
/// plain sign-in grant, telling the owner that the address already has an account (and
/// changing nothing). Every address gets mail, so the send is awaited and a failure told.
///
/// # Errors
/// The store fails; 502 `email_send_failed` when the transport refuses.
pub(crate) async fn send_signup(
    state: &AppState,
    email: &Email,
    redirect: &str,
    requester: &str,
    pending: PendingSignup,
) -> Result<(), AuthError> {
    if !within_send_limit(state, MailKind::SignIn, email, requester).await? {
        tracing::warn!("sign-up mail not sent: an hourly mail limit was reached");
        return Ok(());
    }
    // A disabled account gets the same mail as any taken address (its link signs nobody in),
    // so that neither the timing nor a transport failure tells it apart.
    let (issued, existing) = match state.services.users.find_by_email(email).await? {
        Some(_) => (state.magic.issue(email, redirect, requester).await?, true),
        None => (state.magic.issue_signup(email, redirect, requester, pending).await?, false),
    };
    grant_mail(state, email, Template::ConfirmSignup, issued, existing).await.map_err(send_failed)
}

/// The sending of `issued`'s link and code to `email` with `template`, ready to await or spawn.
fn grant_mail(
    state: &AppState,
    email: &Email,
    template: Template,
    issued: Issued,
    existing: bool,
) -> impl Future<Output = Result<(), MailError>> + Send + 'static {
    let link = super::email::link(state, "/magic-link/verify", &issued.token);
    let ttl = humantime::format_duration(state.magic.ttl()).to_string();
    let mailer = std::sync::Arc::clone(&state.mailer);
    let email = email.clone();
    async move {
        let ctx = context! { link, code => issued.code, ttl, existing };
        mailer.send(template, &email, ctx).await
    }
}

fn send_failed(error: MailError) -> AuthError {
    AuthError::MailFailed { what: "mail", cause: error }
}

/// Whether `email` gets a link: any account (a disabled one too, whose link signs nobody in,
/// so that it cannot be told apart), or none yet where sign-up is open to its domain.
async fn may_sign_in(state: &AppState, email: &Email) -> Result<bool, AuthError> {
    Ok(match state.services.users.find_by_email(email).await? {
        Some(_) => true,
        None => signup_allowed(state, email),
    })
}

fn signup_allowed(state: &AppState, email: &Email) -> bool {
    let auth = &state.config.auth;
    auth.signup && auth.domain_may_sign_up(email.domain())
}

#[derive(Debug, Deserialize)]
struct VerifyQuery {
    token: Option<String>,
    redirect_uri: Option<String>,
}

/// `GET /magic-link/verify?token=`: where the link from the email lands. It only shows a
/// page that asks to confirm; the sign-in is its `POST`, so that mail scanners and link
/// previews that follow links use nothing up.
#[utoipa::path(
    get,
    path = "/magic-link/verify",
    tag = "email",
    params(
        ("token" = Option<String>, Query, description = "From the mail"),
        ("redirect_uri" = Option<String>, Query, description = "Where to go"),
    ),
    responses(
        (status = 200, description = "The page that confirms the sign-in", content_type = "text/html"),
    ),
)]
async fn verify_link(
    State(state): State<AppState>,
    site: SiteContext,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> Response {
    let token = query.token.unwrap_or_default();
    let result = async {
        if let Some(target) = query.redirect_uri.as_deref() {
            state.redirects.check(target).map_err(BadRequest::Redirect)?;
        }
        state.magic.peek_link(&token).await?.ok_or_else(expired)
    }
    .await;
    match result {
        Ok((email, signing_up)) => {
            let ctx = context! {
                email => email.as_str(),
                signing_up,
                token,
                redirect_uri => query.redirect_uri.unwrap_or_default(),
            };
            pages::render_form_page(&state, &site, "magic_link_confirm.html", ctx, StatusCode::OK)
        }
        Err(error) => {
            PageError::link(error).render(&state, &site, super::wants_json(&site.headers)).await
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct VerifyBody {
    /// The link's token (from the confirmation page, or an app that read the link).
    token: Option<String>,
    /// With `code`: the address the code was sent to.
    email: Option<String>,
    /// The 6-digit code from the mail.
    code: Option<String>,
    csrf_token: Option<String>,
    redirect_uri: Option<String>,
}

/// `POST /magic-link/verify {token}` or `{email, code}`: signs in with the link's token (the
/// confirmation page posts it) or with the code from the email, as JSON (answered with the
/// user) or from a page (answered with a redirect, or the page again).
#[utoipa::path(
    post,
    path = "/magic-link/verify",
    tag = "email",
    request_body(content(
        (VerifyBody = "application/json"),
        (VerifyBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Signed in", body = SignedInBody),
        (status = 303, description = "A form post: on to the target, or to the organization choice"),
    ),
)]
async fn verify_code(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    JsonOrForm(body, kind): JsonOrForm<VerifyBody>,
) -> Response {
    let result = async {
        state.csrf.check_anonymous_post(&site, kind, body.csrf_token.as_deref())?;
        // A bad target is refused before the grant is used up.
        let asked = body.redirect_uri.as_deref().map(|target| state.redirects.check(target));
        let asked = asked.transpose().map_err(BadRequest::Redirect)?;
        let redeemed = redeem(&state, &body, &requester(&client)).await?;
        let target = match asked {
            Some(target) => target,
            // Validated when the link was asked for; checked again, as the policy may change.
            None => state.redirects.check(&redeemed.redirect).map_err(BadRequest::Redirect)?,
        };
        // A pending sign-up's password and name count only in the browser that submitted it.
        let browser = super::oauth::browser_binding_hash(&state, &site.headers);
        let pending = redeemed.signup.filter(|pending| {
            !browser.is_empty()
                && crate::crypto::constant_time_eq(pending.browser.as_bytes(), browser.as_bytes())
        });
        let may_sign_up = signup_allowed(&state, &redeemed.email);
        let proof = MailboxProof { may_sign_up, pending, label: "magic link" };
        let mut user = state.services.accounts.by_mailbox(&redeemed.email, proof).await?;
        default_locale(&state, &mut user, &site.headers).await?;
        landing::end_previous_session(&state, &site.headers).await?;
        let reply = match kind {
            BodyKind::Json => Reply::Json,
            BodyKind::Form => Reply::see_other(target.as_str()),
        };
        landing::sign_in(&state, &user, client, After::Session, reply, METHOD).await
    }
    .await;
    let Err(error) = result else { return result.unwrap_or_else(IntoResponse::into_response) };
    // A typed code comes from the "check your email" page: shown again there.
    let page = match (&body.token, &body.email) {
        (None, Some(email)) => ErrorPage::LinkSent {
            email: email.clone(),
            redirect: body.redirect_uri.clone().unwrap_or_else(|| "/".to_owned()),
        },
        _ => ErrorPage::SignIn(SignInForm::default()),
    };
    PageError::new(error, page).render(&state, &site, kind == BodyKind::Json).await
}

/// Uses up the grant that `body` names: by the link's token, or by address and code (typed by
/// `requester`, against that client's grant).
async fn redeem(
    state: &AppState,
    body: &VerifyBody,
    requester: &str,
) -> Result<Redeemed, AuthError> {
    let redeemed = match (&body.token, &body.email, &body.code) {
        (Some(token), None, None) => state.magic.redeem_link(token).await?.ok_or_else(expired)?,
        (None, Some(email), Some(code)) => {
            let email = Email::parse(email)?;
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            state
                .magic
                .redeem_code(&email, &code, requester)
                .await?
                .ok_or_else(|| AuthError::from(Spent::Code))?
        }
        _ => {
            return Err(AuthError::from(BadRequest::TokenOrCode));
        }
    };
    Ok(redeemed)
}

fn expired() -> AuthError {
    AuthError::from(Spent::SignInLink)
}
