//! Verifying `X-Auth-Assertion` in an app behind Portcullis: fetch the JWKS once, verify each
//! assertion locally (signature, `iss`, `aud` = this app's upstream name, `exp`), and refetch
//! the JWKS only when an assertion names a key id not seen yet (after a key rotation).
//!
//! The end-to-end tests use this same code.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// Shortest time between two JWKS fetches triggered by unknown key ids.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// The claims Portcullis puts in an assertion.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Assertion {
    /// User id.
    pub sub: String,
    /// Primary email.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Global roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Active organization.
    pub org: Option<String>,
    /// Scopes of the key or token, when limited.
    pub scope: Option<String>,
    /// `session`, `api_key`, `jwt` or `ws_ticket`.
    pub method: String,
    /// The upstream it was made for.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: u64,
}

/// The JWKS as fetched: verification keys by key id, and when they were fetched.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (jsonwebtoken::Algorithm, DecodingKey)>,
    fetched_at: Option<Instant>,
}

/// Verifies assertions for one app.
pub(crate) struct AssertionVerifier {
    http: reqwest::Client,
    jwks_url: String,
    issuer: String,
    audience: String,
    keys: RwLock<Keys>,
}

impl AssertionVerifier {
    /// A verifier for assertions issued by the Portcullis at `public_url` for the upstream
    /// named `audience`.
    pub(crate) fn new(http: reqwest::Client, public_url: &str, audience: &str) -> Self {
        let public_url = public_url.trim_end_matches('/');
        Self {
            http,
            jwks_url: format!("{public_url}/auth/jwks.json"),
            issuer: public_url.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::new(Keys::default()),
        }
    }

    /// The verified claims of `token`.
    pub(crate) async fn verify(&self, token: &str) -> Result<Assertion, String> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|error| format!("malformed assertion: {error}"))?
            .kid
            .ok_or("assertion without a key id")?;
        if !self.keys.read().await.by_kid.contains_key(&kid) {
            self.refetch().await?;
        }
        let keys = self.keys.read().await;
        let (algorithm, key) = keys.by_kid.get(&kid).ok_or("assertion signed by an unknown key")?;
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        jsonwebtoken::decode::<Assertion>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|error| format!("invalid assertion: {error}"))
    }

    async fn refetch(&self) -> Result<(), String> {
        let mut keys = self.keys.write().await;
        if keys.fetched_at.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Ok(());
        }
        keys.fetched_at = Some(Instant::now());
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("cannot fetch {}: {error}", self.jwks_url))?
            .json()
            .await
            .map_err(|error| format!("bad JWKS: {error}"))?;
        keys.by_kid = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let algorithm = jwk.common.key_algorithm?.to_string().parse().ok()?;
                Some((kid, (algorithm, DecodingKey::from_jwk(jwk).ok()?)))
            })
            .collect();
        Ok(())
    }
}
