//! Sessions: opaque 256-bit tokens in a cookie, stored hashed in the ephemeral store with an
//! absolute and an idle expiry, and served from the identity cache on the hot path.
//!
//! A token is never stored: the store key and the cache key are its SHA-256, so a dump of
//! either signs nobody in. This module knows nothing about cookies or HTTP; `cookies.rs`
//! carries tokens in and out.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cache::{CredentialHash, IdentityCache};
use super::{Identity, IdentityParts, OrgRole, User};
use crate::clock::{Clock, Timestamp};
use crate::crypto;
use crate::crypto::tags::{self, TagKind, TokenTags};
use crate::model::headers::HeaderNames;
use crate::store::ephemeral::{EphemeralStore, decode, encode};
use crate::store::users::UserStore;
use crate::store::{StoreError, within_deadline};

/// Prefix of a cookie value made before tokens were tagged (43 characters follow).
const UNTAGGED_VERSION: &str = "v1.";
/// Prefix of a tagged cookie value (a [`TokenTags`] credential follows).
const TAGGED_VERSION: &str = "v2.";
/// Last-seen times are written at most this often per session.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Longest user agent kept with a session.
const MAX_USER_AGENT: usize = 256;

/// The secret a client holds; only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A new random token, tagged with `tags`.
    pub fn generate(tags: &TokenTags) -> Self {
        Self(tags.mint(TagKind::Session))
    }

    /// Parses a cookie value (`v2.` and a tagged token, or `v1.` and an untagged one);
    /// anything else is `None`. The tag is checked by [`SessionService::authenticate`], on a
    /// cache miss.
    pub fn from_cookie_value(value: &str) -> Option<Self> {
        Self::hash_of_cookie_value(value)?;
        Some(Self(value[TAGGED_VERSION.len()..].to_owned()))
    }

    /// The store and cache key of a well-formed cookie value, without keeping the token:
    /// what the hot path needs.
    pub fn hash_of_cookie_value(value: &str) -> Option<CredentialHash> {
        let token = Self::token_of_cookie_value(value)?;
        Some(CredentialHash::of(token))
    }

    /// The token in a well-formed cookie value.
    fn token_of_cookie_value(value: &str) -> Option<&str> {
        if let Some(token) = value.strip_prefix(TAGGED_VERSION) {
            return (token.len() == tags::TAGGED_LEN && tags::is_base64url(token)).then_some(token);
        }
        value.strip_prefix(UNTAGGED_VERSION).filter(|token| crypto::is_random_token(token))
    }

    /// The cookie value.
    pub fn cookie_value(&self) -> String {
        let version =
            if self.0.len() == tags::TAGGED_LEN { TAGGED_VERSION } else { UNTAGGED_VERSION };
        format!("{version}{}", self.0)
    }

    /// The hash under which the session is stored and cached.
    pub fn hash(&self) -> CredentialHash {
        CredentialHash::of(&self.0)
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public id (listing, deleting one session).
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last activity (ms), updated at most once a minute.
    pub last_seen_at: i64,
    /// Absolute expiry (ms).
    pub expires_at: i64,
    /// Client IP at creation.
    pub ip: Option<String>,
    /// Client user agent at creation (truncated).
    pub user_agent: Option<String>,
    /// The organization the session acts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_org: Option<Uuid>,
}

impl SessionRecord {
    fn deadline(&self, idle_timeout: Duration) -> Timestamp {
        let idle = Timestamp::from_millis(self.last_seen_at).plus(idle_timeout);
        idle.min(Timestamp::from_millis(self.expires_at))
    }
}

/// Where a session was created from.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// Client IP.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
}

/// Session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct SessionLifetimes {
    /// Absolute lifetime.
    pub ttl: Duration,
    /// Sliding idle lifetime.
    pub idle_timeout: Duration,
}

/// Creates, authenticates, lists and ends sessions.
#[derive(Debug, Clone)]
pub struct SessionService {
    store: Arc<dyn EphemeralStore>,
    users: UserStore,
    cache: IdentityCache,
    clock: Arc<dyn Clock>,
    lifetimes: SessionLifetimes,
    header_names: Arc<HeaderNames>,
    tags: Arc<TokenTags>,
}

impl SessionService {
    /// A service over the given stores and cache.
    pub fn new(
        store: Arc<dyn EphemeralStore>,
        users: UserStore,
        cache: IdentityCache,
        clock: Arc<dyn Clock>,
        lifetimes: SessionLifetimes,
        header_names: Arc<HeaderNames>,
        tags: Arc<TokenTags>,
    ) -> Self {
        Self { store, users, cache, clock, lifetimes, header_names, tags }
    }

    /// Starts a session for `user`, acting in `active_org`.
    ///
    /// # Errors
    /// The store fails; nothing is half-written (the index entry is only added after the
    /// session itself, and a dangling index entry is ignored when listing).
    pub async fn create(
        &self,
        user: &User,
        client: ClientInfo,
        active_org: Option<Uuid>,
    ) -> Result<(SessionToken, SessionRecord), StoreError> {
        let token = SessionToken::generate(&self.tags);
        let now = self.clock.now();
        let record = SessionRecord {
            id: Uuid::now_v7(),
            user_id: user.id,
            created_at: now.as_millis(),
            last_seen_at: now.as_millis(),
            expires_at: now.plus(self.lifetimes.ttl).as_millis(),
            ip: client.ip,
            user_agent: client.user_agent.map(|agent| agent.chars().take(MAX_USER_AGENT).collect()),
            active_org,
        };
        let key = token.hash().to_hex();
        self.save(&key, &record, now).await?;
        self.store.set_add(&user_index(user.id), &key, self.lifetimes.ttl).await?;
        Ok((token, record))
    }

    /// The identity behind `token`: from the cache when possible, else from the store (then
    /// cached). `None` for unknown, expired or ended sessions, disabled users and tokens whose
    /// tag is wrong (those are never looked up).
    ///
    /// # Errors
    /// The store is unavailable on a cache miss.
    pub async fn authenticate(
        &self,
        token: &SessionToken,
    ) -> Result<Option<Arc<Identity>>, StoreError> {
        let genuine = || self.tags.admits(TagKind::Session, &token.0, self.clock.now());
        self.authenticate_checked(token.hash(), genuine, &mut false).await
    }

    /// [`Self::authenticate`] for a cookie value hashing to `hash` (see
    /// [`SessionToken::hash_of_cookie_value`]), setting `loaded` when the answer took a store
    /// lookup of its own. The tag is checked on a cache miss only: what the hot path needs.
    ///
    /// # Errors
    /// The store is unavailable on a cache miss.
    pub async fn authenticate_cookie_noting(
        &self,
        value: &str,
        hash: CredentialHash,
        loaded: &mut bool,
    ) -> Result<Option<Arc<Identity>>, StoreError> {
        let genuine = || {
            SessionToken::token_of_cookie_value(value)
                .is_some_and(|token| self.tags.admits(TagKind::Session, token, self.clock.now()))
        };
        self.authenticate_checked(hash, genuine, loaded).await
    }

    /// [`Self::authenticate`] by a hash taken from our own records (not from a client).
    ///
    /// # Errors
    /// The store is unavailable on a cache miss.
    pub async fn authenticate_hash(
        &self,
        hash: CredentialHash,
    ) -> Result<Option<Arc<Identity>>, StoreError> {
        self.authenticate_checked(hash, || true, &mut false).await
    }

    async fn authenticate_checked(
        &self,
        hash: CredentialHash,
        genuine: impl FnOnce() -> bool,
        loaded: &mut bool,
    ) -> Result<Option<Arc<Identity>>, StoreError> {
        let load = || {
            Box::pin(async move {
                let Some((record, user, orgs)) = within_deadline(self.load(&hash)).await? else {
                    return Ok(None);
                };
                let expires_at = record.deadline(self.lifetimes.idle_timeout);
                let parts = IdentityParts::session(user, Some(record.id), expires_at)
                    .in_orgs(orgs, record.active_org);
                Ok(Some(Identity::new(parts, &self.header_names)))
            })
        };
        self.cache.get_or_load_noting(hash, genuine, load, loaded).await
    }

    /// Loads a live session and its enabled user, touching last-seen when due; ends sessions
    /// found expired or belonging to a disabled or deleted user.
    async fn load(
        &self,
        hash: &CredentialHash,
    ) -> Result<Option<(SessionRecord, User, Vec<OrgRole>)>, StoreError> {
        let key = hash.to_hex();
        let Some(bytes) = self.store.get(&session_key(&key)).await? else {
            return Ok(None);
        };
        let mut record: SessionRecord = decode(&bytes, "session record")?;
        let now = self.clock.now();
        if record.deadline(self.lifetimes.idle_timeout) <= now {
            self.remove(&key, record.user_id).await?;
            return Ok(None);
        }
        let Some((user, orgs)) = self.users.find_member(record.user_id).await? else {
            self.remove(&key, record.user_id).await?;
            return Ok(None);
        };
        // Touched at most once a minute, and at least four times per idle timeout, so that a
        // session in use never idles out however short the timeout.
        let touch_interval = TOUCH_INTERVAL.min(self.lifetimes.idle_timeout / 4);
        if Timestamp::from_millis(record.last_seen_at).plus(touch_interval) <= now {
            record.last_seen_at = now.as_millis();
            if !self.rewrite(&key, &bytes, &record, now).await? {
                // Ended or changed since it was read. An ended session stays ended (an
                // unconditional write would bring it back, outside the user's index where
                // "log out everywhere" looks); a changed one (an organization switch, which
                // touches it too) is read again.
                let Some(current) = self.store.get(&session_key(&key)).await? else {
                    return Ok(None);
                };
                record = decode(&current, "session record")?;
            }
        }
        Ok(Some((record, user, orgs)))
    }

    /// Makes `org` the active organization of the session behind `hash` (the caller checked
    /// the membership) and evicts its cached identity, on every replica, so the headers follow
    /// on the next request. Returns `false` if the session is gone.
    ///
    /// # Errors
    /// The store fails.
    pub async fn set_active_org(
        &self,
        hash: &CredentialHash,
        org: Option<Uuid>,
    ) -> Result<bool, StoreError> {
        let key = hash.to_hex();
        // A touch on another replica may land between the read and the write: read again.
        for _ in 0..3 {
            let Some(bytes) = self.store.get(&session_key(&key)).await? else {
                return Ok(false);
            };
            let mut record: SessionRecord = decode(&bytes, "session record")?;
            let now = self.clock.now();
            if record.deadline(self.lifetimes.idle_timeout) <= now {
                return Ok(false);
            }
            record.active_org = org;
            // A touch, too: a load that loses its own touch to this write takes this one's.
            record.last_seen_at = now.as_millis();
            if self.rewrite(&key, &bytes, &record, now).await? {
                self.cache.evict_credential(hash);
                return Ok(true);
            }
        }
        Err(StoreError::unavailable(std::io::Error::other(
            "the session record kept changing during an organization switch",
        )))
    }

    /// The user's live sessions, newest first.
    ///
    /// # Errors
    /// The store fails.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<SessionRecord>, StoreError> {
        let now = self.clock.now();
        let mut sessions = Vec::new();
        for key in self.store.set_members(&user_index(user_id)).await? {
            match self.store.get(&session_key(&key)).await? {
                Some(bytes) => {
                    let record: SessionRecord = decode(&bytes, "session record")?;
                    if record.user_id == user_id
                        && record.deadline(self.lifetimes.idle_timeout) > now
                    {
                        sessions.push(record);
                    }
                }
                // The session ended or expired; drop the stale index entry.
                None => self.store.set_remove(&user_index(user_id), &key).await?,
            }
        }
        sessions.sort_by_key(|record| std::cmp::Reverse(record.created_at));
        Ok(sessions)
    }

    /// Ends the session behind `token` (logout). Ending an unknown session does nothing.
    ///
    /// # Errors
    /// The store fails.
    pub async fn end(&self, token: &SessionToken) -> Result<(), StoreError> {
        // A forged token names no session: nothing to take, and nothing to tell the replicas.
        if !self.tags.admits(TagKind::Session, &token.0, self.clock.now()) {
            return Ok(());
        }
        let hash = token.hash();
        let key = hash.to_hex();
        let taken = self.store.take(&session_key(&key)).await;
        // Evicted (on every replica) after the record is gone, never before: a replica that
        // reloads in between would find the session still there and cache it again.
        self.cache.evict_credential(&hash);
        let Some(bytes) = taken? else { return Ok(()) };
        if let Ok(record) = serde_json::from_slice::<SessionRecord>(&bytes) {
            self.store.set_remove(&user_index(record.user_id), &key).await?;
        }
        Ok(())
    }

    /// Ends the user's session with public id `session_id`. Returns `false` if the user has
    /// no such session.
    ///
    /// # Errors
    /// The store fails.
    pub async fn end_by_id(&self, user_id: Uuid, session_id: Uuid) -> Result<bool, StoreError> {
        for key in self.store.set_members(&user_index(user_id)).await? {
            let Some(bytes) = self.store.get(&session_key(&key)).await? else { continue };
            let Ok(record) = serde_json::from_slice::<SessionRecord>(&bytes) else { continue };
            if record.id == session_id && record.user_id == user_id {
                let removed = self.remove(&key, user_id).await;
                self.evict_key(&key).await;
                removed?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Ends every session of the user (logout everywhere, disable). Returns how many ended.
    ///
    /// # Errors
    /// The store fails.
    pub async fn end_all(&self, user_id: Uuid) -> Result<usize, StoreError> {
        let ended = async {
            let keys = self.store.set_members(&user_index(user_id)).await?;
            for key in &keys {
                self.store.delete(&session_key(key)).await?;
                self.store.set_remove(&user_index(user_id), key).await?;
            }
            Ok(keys.len())
        }
        .await;
        // After the store, whatever part of it was done (see `end`).
        self.cache.evict_user(user_id);
        ended
    }

    /// Drops stale cache entries (called periodically).
    pub fn sweep_cache(&self) {
        self.cache.sweep();
    }

    /// Drops every cached identity of the user so that changes (roles, disable) apply on the
    /// next request.
    pub fn refresh_user(&self, user_id: Uuid) {
        self.cache.evict_user(user_id);
    }

    async fn evict_key(&self, key: &str) {
        if let Some(hash) = CredentialHash::from_hex(key) {
            self.cache.evict_credential(&hash);
        }
    }

    async fn save(
        &self,
        key: &str,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let ttl = now.until(record.deadline(self.lifetimes.idle_timeout));
        self.store.put(&session_key(key), &bytes, ttl).await
    }

    /// Writes `record` over `read` (the bytes it was loaded from) only if the session still
    /// holds them: `false` if it ended or changed since.
    async fn rewrite(
        &self,
        key: &str,
        read: &[u8],
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let bytes = encode(record)?;
        let ttl = now.until(record.deadline(self.lifetimes.idle_timeout));
        self.store.replace(&session_key(key), read, &bytes, ttl).await
    }

    async fn remove(&self, key: &str, user_id: Uuid) -> Result<(), StoreError> {
        self.store.delete(&session_key(key)).await?;
        self.store.set_remove(&user_index(user_id), key).await
    }
}

fn session_key(hash_hex: &str) -> String {
    format!("session:{hash_hex}")
}

fn user_index(user_id: Uuid) -> String {
    format!("user_sessions:{user_id}")
}

#[cfg(test)]
mod tests;
