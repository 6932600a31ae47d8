//! GitHub sign-in: plain OAuth 2 (authorization code with state and PKCE, through the `oauth2`
//! crate), then the user API: `/user` for the account, `/user/emails` for the verified primary
//! email, and `/user/orgs` and `/user/teams` when `allowed_orgs` / `allowed_teams` limit who may
//! sign in.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use super::oidc::{Authorization, OAuthError};
use super::outbound::{Http, get};
use crate::identity::accounts::ExternalUser;
use crate::identity::providers::{Provider, ProviderKind};

#[derive(Debug, Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
    avatar_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Debug, Deserialize)]
struct GithubOrg {
    login: String,
}

#[derive(Debug, Deserialize)]
struct GithubTeam {
    slug: String,
    organization: GithubOrg,
}

/// Items asked for per page of a GitHub list (its maximum).
const PAGE_SIZE: usize = 100;
/// Pages read at most: 2 000 organizations or teams.
const MAX_PAGES: usize = 20;

/// A GitHub (or GitHub Enterprise) client.
pub struct GithubClient {
    provider: Provider,
    http: reqwest::Client,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient").field("provider", &self.provider).finish_non_exhaustive()
    }
}

impl GithubClient {
    /// A client for `provider` (of kind GitHub).
    pub fn new(provider: Provider, http: reqwest::Client) -> Self {
        Self { provider, http }
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    fn client(
        &self,
        redirect_uri: &str,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        OAuthError,
    > {
        let invalid = |what: &str| OAuthError::Invalid(format!("bad {what} URL"));
        let p = &self.provider;
        Ok(BasicClient::new(ClientId::new(p.client_id.clone()))
            .set_client_secret(ClientSecret::new(p.client_secret.clone()))
            .set_auth_uri(
                AuthUrl::new(p.auth_url.clone().unwrap_or_default())
                    .map_err(|_| invalid("authorization"))?,
            )
            .set_token_uri(
                TokenUrl::new(p.token_url.clone().unwrap_or_default())
                    .map_err(|_| invalid("token"))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| invalid("redirect"))?,
            ))
    }

    /// Starts a sign-in (GitHub has no nonce: there is no ID token).
    ///
    /// # Errors
    /// A configured URL is invalid.
    pub fn authorize(
        &self,
        redirect_uri: &str,
        login_hint: Option<&str>,
    ) -> Result<Authorization, OAuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(redirect_uri)?;
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.provider.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login", hint.to_owned());
        }
        let (url, state) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: String::new(),
        })
    }

    /// Exchanges the code and reads the account, its verified primary email and, when the
    /// configuration limits sign-in to them, its organizations and teams.
    ///
    /// # Errors
    /// GitHub is unreachable, answers nonsense, or the user is in no allowed org or team.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<ExternalUser, OAuthError> {
        let ProviderKind::Github { api_url, allowed_orgs, allowed_teams } = &self.provider.kind
        else {
            return Err(OAuthError::Invalid("not a GitHub provider".into()));
        };
        let http = Http::new(&self.http);
        let tokens = self
            .client(redirect_uri)?
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|error| OAuthError::Unavailable(format!("token endpoint: {error}")))?;
        let token = tokens.access_token().secret();
        let user: GithubUser = self.api(&format!("{api_url}/user"), token).await?;
        let emails: Vec<GithubEmail> = self.api(&format!("{api_url}/user/emails"), token).await?;
        let primary = emails.iter().find(|email| email.primary);
        if !allowed_orgs.is_empty() || !allowed_teams.is_empty() {
            let orgs: Vec<GithubOrg> =
                self.api_pages(&format!("{api_url}/user/orgs"), token).await?;
            let in_org =
                orgs.iter().any(|org| allowed_orgs.contains(&org.login.to_ascii_lowercase()));
            let in_team = !allowed_teams.is_empty() && {
                let teams: Vec<GithubTeam> =
                    self.api_pages(&format!("{api_url}/user/teams"), token).await?;
                teams.iter().any(|team| {
                    let name = format!("{}/{}", team.organization.login, team.slug);
                    allowed_teams.contains(&name.to_ascii_lowercase())
                })
            };
            if !in_org && !in_team {
                return Err(OAuthError::NotAllowed(format!(
                    "the GitHub account {} is not in an allowed organization or team",
                    user.login
                )));
            }
        }
        Ok(ExternalUser {
            subject: user.id.to_string(),
            email: primary.map(|email| email.email.clone()),
            email_verified: primary.is_some_and(|email| email.verified),
            name: user.name.filter(|name| !name.trim().is_empty()).or(Some(user.login)),
            roles: None,
            avatar_url: user.avatar_url,
        })
    }

    /// Every page of a list (GitHub answers 30 items a page by default; a member of many
    /// organizations must not be refused because the allowed one is on page two).
    async fn api_pages<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &str,
    ) -> Result<Vec<T>, OAuthError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let items: Vec<T> =
                self.api(&format!("{url}?per_page={PAGE_SIZE}&page={page}"), token).await?;
            let last = items.len() < PAGE_SIZE;
            all.extend(items);
            if last {
                return Ok(all);
            }
        }
        Err(OAuthError::NotAllowed(format!("more than {} entries at {url}", MAX_PAGES * PAGE_SIZE)))
    }

    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        token: &str,
    ) -> Result<T, OAuthError> {
        let body = get(&self.http, url, Some(token)).await?;
        serde_json::from_slice(&body)
            .map_err(|error| OAuthError::Invalid(format!("{url}: {error}")))
    }
}
