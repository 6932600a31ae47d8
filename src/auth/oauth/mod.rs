//! Sign-in through OpenID Connect providers: `GET /login/{provider}`, `GET /callback/{provider}`,
//! `GET /link/{provider}`, `GET /providers/linked` and `DELETE /providers/linked/{provider}`.
//!
//! The state, PKCE verifier and nonce of a sign-in in progress live in the ephemeral store
//! under the hash of the state, so a callback landing on another replica works, and each is
//! taken (single use) when the callback arrives.
//!
//! Every flow is bound to the browser that started it (RFC 9700 §4.7): the browser holds a
//! random value in the `portcullis_flow` cookie (`__Host-` where possible), the flow keeps its
//! hash, and the callback is refused from a browser without it. A callback URL sent to
//! someone else therefore signs nobody in as its sender (login CSRF), and a link flow also
//! needs the session of the user who started it, so nobody's provider identity can be linked
//! to another's account.

mod flow;
pub(crate) mod github;
pub(crate) mod oidc;
pub(crate) mod outbound;
pub(crate) mod steam;

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use self::flow::{FLOW_TTL, Flow, check_binding, flows, take_flow};
use self::github::GithubClient;
use self::oidc::{Authorization, OAuthError, OidcClient};
use self::steam::SteamClient;
use super::csrf::SiteContext;
use super::extract::{ApiPath, ApiQuery, Caller, Client, CurrentSession};
use super::landing::{self, Reply};
use super::openapi::MessageBody;
use crate::auth::error::{AuthError, BadRequest, Clash, Missing, NotSignedIn, Refusal, Spent};
use crate::auth::pages::PageError;
use crate::auth::state::AppState;
use crate::clock::Timestamp;
use crate::crypto;
use crate::identity::accounts::{self, ExternalUser, SignupRules};
use crate::identity::org_choice::After;
use crate::identity::providers::{Provider, ProviderKind};
use crate::store::linked::LinkStore;
use crate::store::users::UserStore;

pub(crate) use self::flow::{browser_binding, browser_binding_hash};

/// One provider's client.
#[derive(Debug)]
pub enum ProviderClient {
    /// OpenID Connect.
    Oidc(OidcClient),
    /// GitHub.
    Github(GithubClient),
    /// Steam.
    Steam(SteamClient),
}

impl ProviderClient {
    /// The provider.
    pub fn provider(&self) -> &Provider {
        match self {
            Self::Oidc(client) => client.provider(),
            Self::Github(client) => client.provider(),
            Self::Steam(client) => client.provider(),
        }
    }

    async fn authorize(
        &self,
        state: &AppState,
        redirect_uri: &str,
        login_hint: Option<&str>,
    ) -> Result<Authorization, OAuthError> {
        match self {
            Self::Oidc(client) => client.authorize(redirect_uri, login_hint).await,
            Self::Github(client) => client.authorize(redirect_uri, login_hint),
            Self::Steam(client) => client.authorize(redirect_uri, state.tokens.issuer()),
        }
    }

    async fn finish(
        &self,
        state: &AppState,
        params: &HashMap<String, String>,
        flow: &Flow,
        flow_state: &str,
        redirect_uri: &str,
    ) -> Result<ExternalUser, OAuthError> {
        let code = || {
            params
                .get("code")
                .filter(|code| !code.is_empty() && code.len() <= 2048)
                .ok_or_else(|| OAuthError::Invalid("the provider sent no code".into()))
        };
        match self {
            Self::Oidc(client) => {
                client.finish(code()?, &flow.verifier, &flow.nonce, redirect_uri).await
            }
            Self::Github(client) => client.finish(code()?, &flow.verifier, redirect_uri).await,
            Self::Steam(client) => {
                let checked = client.finish(params, redirect_uri, flow_state, state.clock.now())?;
                // Each assertion once, on every replica: the nonce is spent before Steam is
                // asked, so a replay never reaches it.
                let key = format!(
                    "steam_nonce:{}",
                    crypto::hex(&crypto::sha256(checked.nonce().as_bytes()))
                );
                let uses = state
                    .services
                    .ephemeral
                    .incr(&key, steam::NONCE_MAX_AGE * 2)
                    .await
                    .map_err(|error| OAuthError::Unavailable(error.to_string()))?;
                if uses != 1 {
                    return Err(OAuthError::Invalid("the assertion was already used".into()));
                }
                client.verify(params, checked).await
            }
        }
    }
}

/// The configured providers' clients.
#[derive(Debug, Default)]
pub struct Providers {
    clients: Vec<ProviderClient>,
}

impl Providers {
    /// Clients for `providers`, sharing `http`.
    pub fn new(providers: &[Provider], http: &reqwest::Client) -> Self {
        let clients = providers
            .iter()
            .map(|provider| match provider.kind {
                ProviderKind::Oidc => {
                    ProviderClient::Oidc(OidcClient::new(provider.clone(), http.clone()))
                }
                ProviderKind::Github { .. } => {
                    ProviderClient::Github(GithubClient::new(provider.clone(), http.clone()))
                }
                ProviderKind::Steam { .. } => {
                    ProviderClient::Steam(SteamClient::new(provider.clone(), http.clone()))
                }
            })
            .collect();
        Self { clients }
    }

    /// The client for `name`.
    pub fn get(&self, name: &str) -> Option<&ProviderClient> {
        self.clients.iter().find(|client| client.provider().name == name)
    }

    /// The providers, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.clients.iter().map(ProviderClient::provider)
    }
}

/// Routes for provider sign-in and linking.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(link))
        .routes(routes!(callback))
        .routes(routes!(linked))
        .routes(routes!(unlink))
}

/// A flow started: where to send the browser, the flow's state, and the binding cookie.
#[derive(Debug)]
pub(crate) struct Started {
    /// The provider's authorization URL.
    pub url: String,
    /// The flow's `state`.
    pub state: String,
    /// `Set-Cookie` of the browser's binding.
    pub cookie: http::HeaderValue,
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    redirect_uri: Option<String>,
    login_hint: Option<String>,
}

#[utoipa::path(
    get,
    path = "/login/{provider}",
    tag = "providers",
    params(
        ("provider" = String, Path, description = "A configured provider"),
        ("redirect_uri" = Option<String>, Query, description = "Where to go after signing in"),
    ),
    responses((status = 302, description = "To the provider")),
)]
async fn login(
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    ApiQuery(query): ApiQuery<StartQuery>,
    headers: HeaderMap,
) -> Result<Response, AuthError> {
    start(&state, &headers, &provider, query, None).await
}

/// `GET /link/{provider}`: the same flow, ending with the identity linked to the signed-in
/// user.
#[utoipa::path(
    get,
    path = "/link/{provider}",
    tag = "providers",
    params(
        ("provider" = String, Path, description = "A configured provider"),
        ("redirect_uri" = Option<String>, Query, description = "Where to go afterwards"),
    ),
    responses(
        (status = 302, description = "To the provider, to link it to the signed-in user"),
    ),
)]
async fn link(
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    ApiQuery(query): ApiQuery<StartQuery>,
    headers: HeaderMap,
    session: CurrentSession,
) -> Result<Response, AuthError> {
    start(&state, &headers, &provider, query, Some(session.identity.user_id)).await
}

async fn start(
    state: &AppState,
    headers: &HeaderMap,
    provider: &str,
    query: StartQuery,
    link_user: Option<Uuid>,
) -> Result<Response, AuthError> {
    let redirect = state
        .redirects
        .check(query.redirect_uri.as_deref().unwrap_or("/"))
        .map_err(BadRequest::Redirect)?;
    let hint = query.login_hint.filter(|hint| hint.len() <= 254);
    let started =
        begin(state, headers, provider, redirect.as_str(), hint.as_deref(), link_user).await?;
    let mut response = redirect_to(&started.url);
    response.headers_mut().append(http::header::SET_COOKIE, started.cookie);
    Ok(response)
}

/// Starts a flow with `provider` for the browser whose request carried `headers`, bound to it
/// by the binding cookie (its own, reused, so that flows in several tabs all work, or a new
/// one), ending at `redirect` (already checked).
///
/// # Errors
/// The provider is not configured or fails, or the store is unavailable.
pub(crate) async fn begin(
    state: &AppState,
    headers: &HeaderMap,
    provider: &str,
    redirect: &str,
    login_hint: Option<&str>,
    link_user: Option<Uuid>,
) -> Result<Started, AuthError> {
    let client = state.oauth.get(provider).ok_or_else(not_configured)?;
    let authorization = client
        .authorize(state, &callback_url(state, provider), login_hint)
        .await
        .map_err(error_of)?;
    let binding = browser_binding(state, headers);
    let flow = Flow {
        provider: provider.to_owned(),
        verifier: authorization.verifier,
        nonce: authorization.nonce,
        redirect: redirect.to_owned(),
        link_user,
        binding: crypto::hex(&crypto::sha256(binding.as_bytes())),
    };
    flows(state).put(&authorization.state, &flow).await?;
    Ok(Started {
        url: authorization.url,
        state: authorization.state,
        cookie: state.cookies.flow(binding, FLOW_TTL),
    })
}

/// `GET /callback/{provider}`: finishes a sign-in (or a link). Every failure ends on the
/// sign-in page with the reason (or JSON for API clients), with no session.
#[utoipa::path(
    get,
    path = "/callback/{provider}",
    tag = "providers",
    params(
        ("provider" = String, Path, description = "A configured provider"),
        ("code" = Option<String>, Query, description = "From the provider"),
        ("state" = Option<String>, Query, description = "From the provider"),
        ("error" = Option<String>, Query, description = "From the provider"),
    ),
    responses(
        (status = 302, description = "Signed in or linked: on to the target"),
        (status = 303, description = "To the organization choice"),
    ),
)]
async fn callback(
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
    site: SiteContext,
    Client(client_info): Client,
) -> Response {
    let result = async {
        let client = state.oauth.get(&provider).ok_or_else(not_configured)?;
        if let Some(error) = query.get("error") {
            let detail = query.get("error_description").unwrap_or(error);
            let detail: String = detail.chars().filter(|c| !c.is_control()).take(200).collect();
            let provider = client.provider().display_name.clone();
            return Err(AuthError::NotSignedIn(NotSignedIn::ByProvider { provider, detail }));
        }
        let flow_state = query.get("state").map(String::as_str).unwrap_or_default();
        let flow = take_flow(&state, Some(flow_state)).await?;
        if flow.provider != provider {
            return Err(AuthError::from(BadRequest::OtherProvider));
        }
        check_binding(&state, &site, &flow).await?;
        let external = client
            .finish(&state, &query, &flow, flow_state, &callback_url(&state, &provider))
            .await
            .map_err(error_of)?;
        let now = state.clock.now();
        if let Some(user_id) = flow.link_user {
            accounts::link(&state.links, user_id, &provider, external, now).await?;
            state.metrics.record_auth("oauth", "linked");
            return Ok(redirect_to(&flow.redirect));
        }
        let rules = SignupRules {
            open: state.config.auth.signup,
            domains: &state.config.auth.allowed_email_domains,
            provider_domains: &client.provider().allowed_email_domains,
        };
        let roles = external.roles.clone();
        let user =
            accounts::sign_in(&state.services.users, &state.links, &provider, external, rules, now)
                .await?;
        if let Some(roles) = roles {
            state.services.users.set_provider_roles(user.id, &provider, &roles).await?;
            state.services.sessions.refresh_user(user.id);
        }
        landing::end_previous_session(&state, &site.headers).await?;
        let reply = Reply::found(&flow.redirect);
        landing::sign_in(&state, &user, client_info, After::Session, reply, "oauth").await
    }
    .await;
    match result {
        Ok(response) => response,
        Err(error) => {
            state.metrics.record_auth("oauth", "failure");
            let json = super::wants_json(&site.headers);
            PageError::link(error).render(&state, &site, json).await
        }
    }
}

/// `GET /providers/linked`: the caller's linked providers.
#[utoipa::path(
    get,
    path = "/providers/linked",
    tag = "providers",
    responses(
        (status = 200, description = "The caller's linked providers", body = LinkedBody),
    ),
)]
async fn linked(
    State(links): State<LinkStore>,
    Caller(caller): Caller,
) -> Result<Response, AuthError> {
    let providers: Vec<LinkDoc> = links
        .list(caller.user_id)
        .await?
        .into_iter()
        .map(|link| LinkDoc { provider: link.provider, linked_at: link.linked_at })
        .collect();
    Ok(Json(LinkedBody { providers }).into_response())
}

/// `DELETE /providers/linked/{provider}`: unlinks, unless it is the last way to sign in.
#[utoipa::path(
    delete,
    path = "/providers/linked/{provider}",
    tag = "providers",
    params(("provider" = String, Path, description = "A linked provider")),
    responses((status = 200, description = "Unlinked", body = MessageBody)),
)]
async fn unlink(
    State(store): State<LinkStore>,
    State(users): State<UserStore>,
    ApiPath(provider): ApiPath<String>,
    Caller(caller): Caller,
) -> Result<Response, AuthError> {
    let links = store.list(caller.user_id).await?;
    if !links.iter().any(|link| link.provider == provider) {
        return Err(AuthError::from(Missing::Link));
    }
    if links.len() == 1 && !users.has_password(caller.user_id).await? {
        return Err(AuthError::from(Clash::LastSignInMethod));
    }
    store.unlink(caller.user_id, &provider).await?;
    Ok(MessageBody::json("unlinked").into_response())
}

fn callback_url(state: &AppState, provider: &str) -> String {
    format!("{}{}/callback/{provider}", state.tokens.issuer(), state.config.auth.base_path)
}

fn redirect_to(location: &str) -> Response {
    super::found(location, None)
}

fn not_configured() -> AuthError {
    AuthError::NoSuchProvider
}

fn error_of(error: OAuthError) -> AuthError {
    match error {
        OAuthError::Unavailable(_) => {
            tracing::warn!(%error, "sign-in provider failed");
            AuthError::ProviderDown(Box::new(error))
        }
        OAuthError::Invalid(_) => {
            tracing::warn!(%error, "refused a sign-in provider's answer");
            AuthError::from(Spent::ProviderAnswer)
        }
        OAuthError::NotAllowed(reason) => AuthError::from(Refusal::ByProvider(reason)),
    }
}

/// A provider linked to the caller.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LinkDoc {
    /// Provider name.
    pub provider: String,
    /// When it was linked.
    pub linked_at: Timestamp,
}

/// `GET /providers/linked`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LinkedBody {
    /// Oldest first.
    pub providers: Vec<LinkDoc>,
}
