//! Access and refresh tokens for clients without a browser session.
//!
//! An access token is a short-lived JWT (`sub`, `sid`, `email`, `roles`, `org`, `scope`, `iat`,
//! `exp`, `iss`, `aud`) signed by the [`KeyRing`]; a refresh token is opaque (`rt_` + 256 random
//! bits), stored hashed in its family, and rotates on every use. Presenting a spent refresh
//! token revokes the whole family (it was stolen, or the client is broken), except within a few
//! seconds of its rotation, which is a client racing itself.
//!
//! The gateway verifies a JWT's signature locally, once: the identity is then cached under the
//! token's hash like a session. Revoking a family evicts its tokens from the cache at once, and
//! a cache miss re-checks that the family is live, so revocation holds within the cache TTL
//! everywhere and at once where the eviction reaches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::cache::{CredentialHash, IdentityCache};
use super::session::ClientInfo;
use super::{AuthMethod, Identity, IdentityParts, Scopes, User};
use crate::clock::{Clock, Timestamp};
use crate::crypto;
use crate::crypto::sealed;
use crate::crypto::signing::{SigningError, VerifyError};
use crate::crypto::tags::{self, TagKind, TokenTags};
use crate::identity::key_ring::KeyRing;
use crate::model::headers::HeaderNames;
use crate::store::tokens::{Family, FamilyStore, Rotation};
use crate::store::users::UserStore;
use crate::store::{StoreError, within_deadline};

const REFRESH_PREFIX: &str = "rt_";
/// A spent refresh token presented again this soon after its rotation is a client racing
/// itself (two tabs, a retry), not theft: refused, but the family survives.
const REUSE_GRACE: Duration = Duration::from_secs(5);
/// What a spent refresh token's successor is sealed for.
const SUCCESSOR: &str = "refresh successor";
/// Allowed clock difference for `iat` and `exp`.
const LEEWAY_SECS: i64 = 30;
/// Longest client name kept with a family.
const MAX_CLIENT: usize = 256;

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    /// User id.
    pub sub: Uuid,
    /// Refresh family (the token's session).
    pub sid: Uuid,
    /// Primary email.
    pub email: String,
    /// Global roles.
    pub roles: Vec<String>,
    /// Active organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<Uuid>,
    /// Space-separated scopes; [`ALL_SCOPES`] for every scope (absent in tokens from before it
    /// was always set, read as every scope too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A unique id, so that two tokens issued in the same second differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expiry (seconds).
    pub exp: i64,
    /// Issuer: the public URL.
    pub iss: String,
    /// Audience: the public URL.
    pub aud: String,
}

/// A freshly issued access and refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// The access JWT.
    pub access_token: String,
    /// The refresh token (rotates on use).
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
}

/// Why tokens could not be issued or refreshed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The refresh token is malformed, unknown, expired or revoked (or its user is disabled).
    #[error("the refresh token is invalid, expired or revoked")]
    Invalid,
    /// The refresh token was already used: its family is now revoked.
    #[error("the refresh token was already used; every token of this sign-in is revoked")]
    Reused,
    /// The store is unavailable.
    #[error("the store is unavailable")]
    Unavailable,
    /// Anything else (logged where it happened).
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for TokenError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable,
            other => {
                tracing::error!(error = %other, "token store failure");
                Self::Internal
            }
        }
    }
}

impl From<SigningError> for TokenError {
    fn from(error: SigningError) -> Self {
        tracing::error!(%error, "cannot sign an access token");
        Self::Internal
    }
}

/// The `scope` of an access token that carries every scope (no scope name can be `*`).
pub(crate) const ALL_SCOPES: &str = "*";

/// What a bearer JWT turned out to be.
#[derive(Debug, Clone)]
pub enum BearerJwt {
    /// Not issued by us (another issuer, or not a JWT): the app's business.
    NotOurs,
    /// Ours and valid.
    Valid(Arc<Identity>),
    /// Ours but bad: forged, expired, revoked, or signed by a key we do not have.
    Refused,
}

/// How tokens are made: lifetimes, issuer, and the tags on refresh tokens.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `iss` and `aud` of access tokens: the public URL.
    pub issuer: String,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime (from its last use).
    pub refresh_ttl: Duration,
    /// Tags refresh tokens, so that forged ones are refused without a lookup.
    pub tags: Arc<TokenTags>,
}

type Flight = Arc<OnceCell<Result<TokenPair, TokenError>>>;

/// Issues, refreshes, verifies and revokes tokens.
#[derive(Debug, Clone)]
pub struct TokenService {
    keys: Arc<KeyRing>,
    families: FamilyStore,
    users: UserStore,
    cache: IdentityCache,
    clock: Arc<dyn Clock>,
    settings: TokenSettings,
    header_names: Arc<HeaderNames>,
    validation: Validation,
    /// Refreshes in progress on this replica, so that concurrent refreshes with the same token
    /// share one rotation instead of tripping reuse detection.
    in_flight: Arc<Mutex<HashMap<CredentialHash, Flight>>>,
}

impl TokenService {
    /// A service signing with `keys`.
    pub fn new(
        keys: Arc<KeyRing>,
        families: FamilyStore,
        users: UserStore,
        cache: IdentityCache,
        clock: Arc<dyn Clock>,
        settings: TokenSettings,
        header_names: Arc<HeaderNames>,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Times are checked against the injected clock below, not the system's.
        validation.validate_exp = false;
        Self {
            keys,
            families,
            users,
            cache,
            clock,
            settings,
            header_names,
            validation,
            in_flight: Arc::default(),
        }
    }

    /// The issuer (the public URL, without a trailing slash).
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The signing keys (JWKS, assertions).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Signs `user` in as a token client acting in `org`: a new family and its first pair.
    ///
    /// # Errors
    /// The store fails or signing fails.
    pub async fn issue(
        &self,
        user: &User,
        scopes: Scopes,
        client: ClientInfo,
        org: Option<Uuid>,
    ) -> Result<TokenPair, TokenError> {
        let now = self.clock.now();
        let family = Family {
            id: Uuid::now_v7(),
            user_id: user.id,
            scopes,
            org_id: org,
            client: client.user_agent.map(|agent| agent.chars().take(MAX_CLIENT).collect()),
            ip: client.ip,
            created_at: now,
            rotated_at: now,
            expires_at: now.plus(self.settings.refresh_ttl),
        };
        let refresh = format!("{REFRESH_PREFIX}{}", self.settings.tags.mint(TagKind::Refresh));
        self.families.insert(&family, &CredentialHash::of(&refresh)).await?;
        self.pair(user, &family, refresh, now)
    }

    /// Exchanges a refresh token for a new pair.
    ///
    /// # Errors
    /// [`TokenError::Invalid`], [`TokenError::Reused`] (the family is revoked), or the store
    /// fails.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, TokenError> {
        let hash = refresh_hash(refresh_token).ok_or(TokenError::Invalid)?;
        let body = &refresh_token[REFRESH_PREFIX.len()..];
        if !self.settings.tags.admits(TagKind::Refresh, body, self.clock.now()) {
            return Err(TokenError::Invalid);
        }
        let flight = Arc::clone(self.in_flight.lock().entry(hash).or_default());
        let result = flight.get_or_init(|| self.rotate(hash, refresh_token)).await.clone();
        self.in_flight.lock().remove(&hash);
        result
    }

    async fn rotate(&self, hash: CredentialHash, old: &str) -> Result<TokenPair, TokenError> {
        let now = self.clock.now();
        let refresh = format!("{REFRESH_PREFIX}{}", self.settings.tags.mint(TagKind::Refresh));
        let expires_at = now.plus(self.settings.refresh_ttl);
        // Kept with the spent token for a client that races itself on another replica.
        let successor = sealed::seal_for_holder(old, SUCCESSOR, &refresh).ok();
        let rotation = self
            .families
            .rotate(&hash, &CredentialHash::of(&refresh), now, expires_at, successor.as_deref())
            .await?;
        let (family, refresh) = match rotation {
            Rotation::Rotated(family) => (family, refresh),
            Rotation::Unknown => return Err(TokenError::Invalid),
            Rotation::Spent { family_id, spent_at, successor } => {
                if spent_at.plus(REUSE_GRACE) > now {
                    // Two exchanges of one token at once (two tabs, a retry), the other one on
                    // another replica: this one gets the same new refresh token, while it is
                    // still the current one.
                    return match self.successor(old, successor.as_deref(), now).await? {
                        Some((family, successor)) => self.pair_for(family, successor, now).await,
                        None => Err(TokenError::Invalid),
                    };
                }
                let user = self.revoke_family(family_id).await?;
                tracing::warn!(
                    target: "portcullis::security",
                    family = %family_id,
                    user = ?user,
                    "refresh token reuse: every token of this sign-in is revoked"
                );
                return Err(TokenError::Reused);
            }
        };
        self.pair_for(family, refresh, now).await
    }

    /// The token `old` was exchanged for, if it is still its family's current one.
    async fn successor(
        &self,
        old: &str,
        sealed_successor: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<(Family, String)>, TokenError> {
        let Some(successor) = sealed_successor
            .and_then(|sealed| sealed::open_for_holder(old, SUCCESSOR, sealed).ok())
        else {
            return Ok(None);
        };
        let family = self.families.find_current(&CredentialHash::of(&successor), now).await?;
        Ok(family.map(|family| (family, successor)))
    }

    /// A new pair of `family` around `refresh`, if its user may still sign in (else the family
    /// is revoked).
    async fn pair_for(
        &self,
        family: Family,
        refresh: String,
        now: Timestamp,
    ) -> Result<TokenPair, TokenError> {
        let user = self.users.find_enabled(family.user_id).await?;
        let Some(user) = user else {
            self.revoke_family(family.id).await?;
            return Err(TokenError::Invalid);
        };
        self.pair(&user, &family, refresh, now)
    }

    fn pair(
        &self,
        user: &User,
        family: &Family,
        refresh_token: String,
        now: Timestamp,
    ) -> Result<TokenPair, TokenError> {
        let issued = now.as_millis() / 1000;
        let ttl = self.settings.access_ttl.as_secs();
        let claims = AccessClaims {
            sub: user.id,
            sid: family.id,
            email: user.email.as_str().to_owned(),
            roles: user.roles.clone(),
            org: family.org_id,
            scope: Some(family.scopes.to_claim().unwrap_or_else(|| ALL_SCOPES.to_owned())),
            jti: Some(Uuid::now_v7()),
            iat: issued,
            exp: issued.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            iss: self.settings.issuer.clone(),
            aud: self.settings.issuer.clone(),
        };
        Ok(TokenPair {
            access_token: self.keys.sign(&claims)?,
            refresh_token,
            token_type: "Bearer",
            expires_in: ttl,
        })
    }

    /// Checks a bearer JWT: the cache first, else signature and claims (reloading keys once
    /// for an unknown key id), then whether its family and user are live.
    ///
    /// # Errors
    /// The store is unavailable on a cache miss.
    pub async fn authenticate(&self, token: &str) -> Result<BearerJwt, StoreError> {
        let hash = CredentialHash::of(token);
        if let Some(identity) = self.cache.get(&hash) {
            return Ok(BearerJwt::Valid(identity));
        }
        if !self.claims_our_issuer(token) {
            return Ok(BearerJwt::NotOurs);
        }
        // Signed by us but refused by the stores lately (its sign-in ended): replaying it costs
        // nothing more until the negative cache forgets it.
        if self.cache.holds(&hash) {
            return Ok(BearerJwt::Refused);
        }
        let load_started = Instant::now();
        let claims = match self.keys.verify::<AccessClaims>(token, &self.validation) {
            Err(VerifyError::UnknownKey) if self.keys.reload_for_unknown_kid().await => {
                self.keys.verify::<AccessClaims>(token, &self.validation)
            }
            other => other,
        };
        let claims = match claims {
            Ok(claims) => claims,
            Err(error) => {
                tracing::debug!(%error, "bearer JWT refused");
                return Ok(BearerJwt::Refused);
            }
        };
        let now = self.clock.now();
        let now_secs = now.as_millis() / 1000;
        if claims.exp <= now_secs - LEEWAY_SECS || claims.iat > now_secs + LEEWAY_SECS {
            return Ok(BearerJwt::Refused);
        }
        // Boxed: only a miss pays for the store work's state (see `get_or_load_noting`).
        let live = Box::pin(within_deadline(async {
            let Some(family) = self.families.find_live(claims.sid, now).await? else {
                return Ok(None);
            };
            Ok(Some((family, self.users.find_member(claims.sub).await?)))
        }))
        .await?;
        let Some((family, member)) = live else {
            self.cache.remember_unknown(hash);
            return Ok(BearerJwt::Refused);
        };
        let Some((user, orgs)) = member.filter(|(user, _)| user.id == family.user_id) else {
            self.cache.remember_unknown(hash);
            return Ok(BearerJwt::Refused);
        };
        let claimed = claims.scope.as_deref().filter(|scope| *scope != ALL_SCOPES);
        let Ok(scopes) = Scopes::from_claim(claimed) else {
            return Ok(BearerJwt::Refused);
        };
        let expires_at = Timestamp::from_millis(claims.exp.saturating_mul(1000));
        let parts = IdentityParts::new(user, scopes, AuthMethod::Jwt, Some(family.id), expires_at)
            .in_orgs(orgs, claims.org);
        let identity = Arc::new(Identity::new(parts, &self.header_names));
        let _kept = self.cache.insert(hash, Arc::clone(&identity), load_started);
        Ok(BearerJwt::Valid(identity))
    }

    /// Whether `token` claims to be issued by us (its `iss`), without verifying anything: a
    /// token of another issuer is the app's own business and passes through untouched.
    pub fn claims_our_issuer(&self, token: &str) -> bool {
        #[derive(Deserialize)]
        struct Issuer {
            iss: Option<String>,
        }
        use base64::Engine;
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Issuer>(&bytes).ok())
            .and_then(|claims| claims.iss)
            .is_some_and(|iss| iss == self.settings.issuer)
    }

    /// Revokes one family (logout of a token client, reuse) and evicts its tokens. Returns the
    /// owner if it was live.
    ///
    /// # Errors
    /// The store fails.
    pub async fn revoke_family(&self, family_id: Uuid) -> Result<Option<Uuid>, StoreError> {
        let revoked = self.families.revoke(family_id, self.clock.now()).await;
        // Evicted after the store write: a replica reloading in between must find it revoked.
        self.cache.evict_session(family_id);
        revoked
    }

    /// Deletes expired families and spent tokens (called periodically).
    ///
    /// # Errors
    /// The store fails.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        self.families.sweep(self.clock.now()).await
    }
}

/// The hash of a well-formed refresh token (tagged, or untagged from an earlier version).
fn refresh_hash(token: &str) -> Option<CredentialHash> {
    let body = token.strip_prefix(REFRESH_PREFIX)?;
    let well_formed = crypto::is_random_token(body)
        || (body.len() == tags::TAGGED_LEN && tags::is_base64url(body));
    well_formed.then(|| CredentialHash::of(token))
}

#[cfg(test)]
mod tests;
