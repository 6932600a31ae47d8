//! An OpenID Connect relying party: discovery, the authorization URL (state, PKCE S256, nonce),
//! the code exchange (through the `oauth2` crate), ID-token validation against the provider's
//! JWKS (cached, refetched when a token names an unknown key), and userinfo.
//!

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use super::outbound::{Http, get};
use crate::identity::accounts::ExternalUser;
use crate::identity::providers::Provider;

/// Shortest time between JWKS refetches caused by unknown key ids: tokens with made-up key ids
/// cost the provider at most one fetch per interval.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(3);
/// Where Microsoft's multi-tenant discovery puts the tenant in its issuer.
const TENANT_PLACEHOLDER: &str = "{tenantid}";
/// Allowed clock difference with the provider.
const LEEWAY_SECS: u64 = 60;
/// Signature algorithms accepted for ID tokens (never `none`, never HMAC with a public key).
const ID_TOKEN_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Why a sign-in through a provider failed; the message is shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider cannot be reached or answered nonsense.
    #[error("the sign-in provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider's answer failed validation (signature, issuer, audience, nonce, expiry).
    #[error("the sign-in provider's answer is invalid: {0}")]
    Invalid(String),
    /// The provider vouches for the user, but the configuration does not let them in.
    #[error("{0}")]
    NotAllowed(String),
}

/// The token response, with the ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IdTokenField {
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type TokenSet = StandardTokenResponse<IdTokenField, BasicTokenType>;
type Client = oauth2::Client<
    BasicErrorResponse,
    TokenSet,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What discovery says.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
}

/// Verification keys by key id, and when they were fetched.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
    fetched_at: Option<Instant>,
}

/// The start of a sign-in: where to send the browser, and the secrets to keep for the callback.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The provider's authorization URL with every parameter.
    pub url: String,
    /// The `state` parameter.
    pub state: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
}

/// One provider's client.
pub struct OidcClient {
    provider: Provider,
    http: reqwest::Client,
    discovery: RwLock<Option<Arc<Discovery>>>,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient").field("provider", &self.provider).finish_non_exhaustive()
    }
}

impl OidcClient {
    /// A client for `provider`, making requests with `http`.
    pub fn new(provider: Provider, http: reqwest::Client) -> Self {
        Self { provider, http, discovery: RwLock::new(None), keys: RwLock::default() }
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Discovery, fetched once (and again after a failure).
    async fn discovery(&self) -> Result<Arc<Discovery>, OAuthError> {
        if let Some(found) = self.discovery.read().await.as_ref() {
            return Ok(Arc::clone(found));
        }
        let url = format!("{}/.well-known/openid-configuration", self.provider.issuer);
        let mut found: Discovery = serde_json::from_slice(&self.get(&url, None).await?)
            .map_err(|error| OAuthError::Unavailable(format!("discovery: {error}")))?;
        let named = found.issuer.trim_end_matches('/').to_owned();
        let template = self.provider.multi_tenant && named.contains(TENANT_PLACEHOLDER);
        if named != self.provider.issuer && !template {
            return Err(OAuthError::Invalid(format!(
                "discovery names issuer {} instead of {}",
                found.issuer, self.provider.issuer
            )));
        }
        found.issuer = named;
        let p = &self.provider;
        if let Some(url) = &p.auth_url {
            found.authorization_endpoint.clone_from(url);
        }
        if let Some(url) = &p.token_url {
            found.token_endpoint.clone_from(url);
        }
        if p.userinfo_url.is_some() {
            found.userinfo_endpoint.clone_from(&p.userinfo_url);
        }
        let found = Arc::new(found);
        *self.discovery.write().await = Some(Arc::clone(&found));
        Ok(found)
    }

    fn client(&self, discovery: &Discovery, redirect_uri: &str) -> Result<Client, OAuthError> {
        let invalid = |what: &str| OAuthError::Invalid(format!("bad {what} URL"));
        Ok(oauth2::Client::new(ClientId::new(self.provider.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.provider.client_secret.clone()))
            .set_auth_uri(
                AuthUrl::new(discovery.authorization_endpoint.clone())
                    .map_err(|_| invalid("authorization"))?,
            )
            .set_token_uri(
                TokenUrl::new(discovery.token_endpoint.clone()).map_err(|_| invalid("token"))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| invalid("redirect"))?,
            ))
    }

    /// Starts a sign-in: the URL to send the browser to, with a fresh state, PKCE challenge
    /// and nonce.
    ///
    /// # Errors
    /// Discovery fails.
    pub async fn authorize(
        &self,
        redirect_uri: &str,
        login_hint: Option<&str>,
    ) -> Result<Authorization, OAuthError> {
        let discovery = self.discovery().await?;
        let client = self.client(&discovery, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = crate::crypto::random_token();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.provider.scopes.iter().cloned().map(Scope::new))
            .add_extra_param("nonce", nonce.clone())
            .set_pkce_challenge(challenge);
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce,
        })
    }

    /// Exchanges the code, verifies the ID token (and its nonce), and merges userinfo.
    ///
    /// # Errors
    /// The provider is unreachable or its answer fails validation.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        redirect_uri: &str,
    ) -> Result<ExternalUser, OAuthError> {
        let discovery = self.discovery().await?;
        let client = self.client(&discovery, redirect_uri)?;
        let http = Http::new(&self.http);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|error| OAuthError::Unavailable(format!("token endpoint: {error}")))?;
        let id_token = tokens
            .extra_fields()
            .id_token
            .clone()
            .ok_or_else(|| OAuthError::Invalid("no ID token in the token response".into()))?;
        let mut claims = self.verify_id_token(&discovery, &id_token, nonce).await?;
        if let Some(userinfo) = &discovery.userinfo_endpoint {
            let body = self.get(userinfo, Some(tokens.access_token().secret())).await?;
            let info: Map<String, Value> = serde_json::from_slice(&body)
                .map_err(|error| OAuthError::Invalid(format!("userinfo: {error}")))?;
            if info.get("sub") != claims.get("sub") {
                return Err(OAuthError::Invalid("userinfo is about another subject".into()));
            }
            for (name, value) in info {
                claims.entry(name).or_insert(value);
            }
        }
        self.external_user(&claims)
    }

    async fn verify_id_token(
        &self,
        discovery: &Discovery,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OAuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| OAuthError::Invalid(format!("ID token: {error}")))?;
        if !ID_TOKEN_ALGORITHMS.contains(&header.alg) {
            return Err(OAuthError::Invalid(format!("ID token signed with {:?}", header.alg)));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let key = match self.key(&kid).await {
            Some(key) => key,
            None => {
                self.fetch_keys(discovery).await?;
                self.key(&kid).await.ok_or_else(|| {
                    OAuthError::Invalid("ID token signed by an unknown key".into())
                })?
            }
        };
        if key.0 != header.alg {
            return Err(OAuthError::Invalid("ID token algorithm does not match its key".into()));
        }
        let mut validation = Validation::new(header.alg);
        let template = discovery.issuer.contains(TENANT_PLACEHOLDER);
        if template {
            // Checked below, once the tenant is known from the token.
            validation.iss = None;
        } else {
            validation.set_issuer(&[&discovery.issuer]);
        }
        validation.set_audience(&[&self.provider.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.1, &validation)
            .map_err(|error| OAuthError::Invalid(format!("ID token: {error}")))?
            .claims;
        if template {
            let tenant = claims.get("tid").and_then(Value::as_str).filter(|tid| {
                !tid.is_empty()
                    && tid.len() <= 64
                    && tid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            });
            let expected = tenant.map(|tid| discovery.issuer.replace(TENANT_PLACEHOLDER, tid));
            if expected.is_none()
                || claims.get("iss").and_then(Value::as_str) != expected.as_deref()
            {
                return Err(OAuthError::Invalid(
                    "ID token issuer does not match its tenant".into(),
                ));
            }
            let allowed = &self.provider.allowed_tenants;
            if !allowed.is_empty()
                && !tenant.is_some_and(|tid| allowed.iter().any(|a| a.eq_ignore_ascii_case(tid)))
            {
                return Err(OAuthError::NotAllowed(
                    "this organization's tenant is not admitted".into(),
                ));
            }
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(OAuthError::Invalid("ID token nonce does not match".into()));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if claims.get("iat").and_then(Value::as_u64).is_some_and(|iat| iat > now + LEEWAY_SECS) {
            return Err(OAuthError::Invalid("ID token issued in the future".into()));
        }
        // With several audiences, the authorized party must be us (OIDC Core 3.1.3.7).
        let several = claims.get("aud").and_then(Value::as_array).is_some_and(|aud| aud.len() > 1);
        let azp = claims.get("azp").and_then(Value::as_str);
        if (several || azp.is_some()) && azp != Some(&self.provider.client_id) {
            return Err(OAuthError::Invalid("ID token is for another party (azp)".into()));
        }
        Ok(claims)
    }

    async fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys.read().await.by_kid.get(kid).cloned()
    }

    async fn fetch_keys(&self, discovery: &Discovery) -> Result<(), OAuthError> {
        let mut keys = self.keys.write().await;
        if keys.fetched_at.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
            return Ok(());
        }
        keys.fetched_at = Some(Instant::now());
        let set: JwkSet = serde_json::from_slice(&self.get(&discovery.jwks_uri, None).await?)
            .map_err(|error| OAuthError::Unavailable(format!("JWKS: {error}")))?;
        keys.by_kid = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let algorithm = jwk_algorithm(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((jwk.common.key_id.clone().unwrap_or_default(), (algorithm, key)))
            })
            .collect();
        Ok(())
    }

    fn external_user(&self, claims: &Map<String, Value>) -> Result<ExternalUser, OAuthError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let subject = text("sub")
            .filter(|sub| !sub.is_empty() && sub.len() <= 255)
            .ok_or_else(|| OAuthError::Invalid("no subject".into()))?;
        let email_verified = match claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            Some(Value::String(text)) => text == "true",
            _ => false,
        };
        // Only the groups `roles_map` lists give roles, as the roles it maps them to.
        let roles = self.provider.roles_claim.as_ref().map(|claim| {
            let groups: Vec<&str> = match claims.get(claim) {
                Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(value)) => vec![value.as_str()],
                _ => Vec::new(),
            };
            let mut roles: Vec<String> = groups
                .into_iter()
                .filter_map(|group| self.provider.roles_map.get(group).cloned())
                .collect();
            roles.sort();
            roles.dedup();
            roles
        });
        Ok(ExternalUser {
            subject,
            email: text("email"),
            email_verified,
            name: text("name"),
            roles,
            avatar_url: text("picture"),
        })
    }

    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Vec<u8>, OAuthError> {
        Ok(get(&self.http, url, bearer).await?)
    }
}

/// The algorithm a JWK is for: its `alg`, or what its key type implies.
fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    if let Some(alg) = jwk.common.key_algorithm {
        return alg.to_string().parse().ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    }
}
