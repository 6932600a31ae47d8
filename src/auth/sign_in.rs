//! `POST /sign-in`: email-first sign-in. Domains mapped to a provider (`[[sso_domains]]`) are
//! sent to it (the answer is the provider's authorization URL and the flow's state, with the
//! cookie that binds the flow to this browser); everyone else is mailed a magic link. The
//! answer never depends on whether an account exists.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::csrf::SiteContext;
use super::extract::{Client, JsonOrForm};
use crate::auth::error::{AuthError, BadRequest};
use crate::auth::state::AppState;
use crate::identity::Email;

/// Routes: `POST /sign-in`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_in))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SignInBody {
    email: String,
    redirect_uri: Option<String>,
}

#[utoipa::path(
    post,
    path = "/sign-in",
    tag = "session",
    request_body(content(
        (SignInBody = "application/json"),
        (SignInBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "How this address signs in (never whether an account exists)", body = SignInAnswer),
    ),
)]
async fn sign_in(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    JsonOrForm(body, _): JsonOrForm<SignInBody>,
) -> Result<Response, AuthError> {
    state.csrf.check_same_site(&site)?;
    let email = Email::parse(&body.email)?;
    let redirect = state
        .redirects
        .check(body.redirect_uri.as_deref().unwrap_or("/"))
        .map_err(BadRequest::Redirect)?;
    let provider = state
        .config
        .sso_domains
        .iter()
        .find(|(domain, _)| domain == email.domain())
        .map(|(_, provider)| provider);
    let Some(provider) = provider else {
        // Every other address gets a link (when it may sign in), and the same answer.
        let requester = super::email::requester(&client);
        super::magic_link::send_link(&state, &email, redirect.as_str(), &requester).await?;
        let answer = SignInAnswer {
            auth_method: "magic_link",
            provider: None,
            redirect_url: None,
            state: None,
        };
        return Ok(Json(answer).into_response());
    };
    let started = super::oauth::begin(
        &state,
        &site.headers,
        provider,
        redirect.as_str(),
        Some(email.as_str()),
        None,
    )
    .await?;
    let answer = SignInAnswer {
        auth_method: "sso",
        provider: Some(provider.clone()),
        redirect_url: Some(started.url),
        state: Some(started.state),
    };
    let mut response = Json(answer).into_response();
    response.headers_mut().append(http::header::SET_COOKIE, started.cookie);
    Ok(response)
}

/// `POST /sign-in`: how this address signs in.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignInAnswer {
    /// `sso`, `magic_link` or `password`.
    pub auth_method: &'static str,
    /// For `sso`: the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// For `sso`: where to send the browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// For `sso`: the `state` the provider sends back to the callback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}
