//! API keys: `pk_` + 43 base62 characters (256 random bits) + an 11-character keyed tag (see
//! [`crate::crypto::tags`]), so that secret scanners recognise them and a mistyped or forged
//! key is refused without a lookup. Keys made before tags existed end in a 6-character
//! unkeyed checksum instead; they are looked up while the database holds a live one. Keys are
//! shown once and stored as SHA-256; the gateway serves them from the identity cache like a
//! session.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::cache::{CredentialHash, IdentityCache};
use super::{AuthMethod, Identity, IdentityParts, Scopes};
use crate::clock::{Clock, Timestamp};
use crate::crypto;
use crate::crypto::tags::{self, TagKind, TokenTags};
use crate::model::headers::HeaderNames;
use crate::store::api_keys::{ApiKeyRecord, ApiKeyStore};
use crate::store::users::UserStore;
use crate::store::{StoreError, within_deadline};

const PREFIX: &str = "pk_";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters hold 256 bits.
const BODY_LEN: usize = 43;
/// The unkeyed checksum of keys made before tags existed.
const CHECKSUM_LEN: usize = 6;
/// Characters of the body shown in lists (`pk_` + these).
const SHOWN: usize = 8;
/// `last_used_at` is written at most this often per key.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Longest key name.
const MAX_NAME: usize = 100;
/// Longest expiry.
const MAX_DAYS: u32 = 3650;

/// A new key: the secret (shown once) and what is stored.
#[derive(Debug)]
pub struct NewApiKey {
    /// The key, `pk_…`.
    pub secret: String,
    /// The stored record.
    pub record: ApiKeyRecord,
}

/// What a new key should be.
#[derive(Debug, Clone)]
pub struct KeyRequest<'a> {
    /// A name to recognise it by.
    pub name: &'a str,
    /// Its scopes.
    pub scopes: Scopes,
    /// Days until it expires (`None`: never).
    pub expires_in_days: Option<u32>,
    /// The organization it acts in (the caller checked the membership).
    pub org_id: Option<Uuid>,
}

/// Why a key cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    /// A field is invalid; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Generates a key string: random, with its tag.
pub fn generate(tags: &TokenTags) -> String {
    let mut body = String::with_capacity(BODY_LEN);
    while body.len() < BODY_LEN {
        for byte in crypto::random_bytes() {
            // 248 = 4 × 62: rejecting bytes above it keeps every character equally likely.
            if byte < 248 && body.len() < BODY_LEN {
                body.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
    }
    let tag = tags::base62_tag(tags.tag(TagKind::ApiKey, &body));
    let mut key = String::with_capacity(PREFIX.len() + BODY_LEN + tags::TAG_LEN);
    key.push_str(PREFIX);
    key.push_str(&body);
    key.extend(tag.iter().map(|&b| char::from(b)));
    key
}

/// Six base62 digits of the first 32 bits of SHA-256 of the body: the typo check of untagged
/// keys.
fn checksum(body: &str) -> String {
    let digest = crypto::sha256(body.as_bytes());
    let mut value = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

/// The cache and store key of a well-formed key (tagged, or untagged with a right checksum),
/// or `None`. The tag itself is checked on a cache miss ([`ApiKeyService::authenticate_noting`]),
/// so a cached key costs one hash.
pub fn hash_of(key: &str) -> Option<CredentialHash> {
    let rest = key.strip_prefix(PREFIX)?;
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let well_formed = match rest.len() {
        len if len == BODY_LEN + tags::TAG_LEN => true,
        len if len == BODY_LEN + CHECKSUM_LEN => {
            let (body, sum) = rest.split_at(BODY_LEN);
            crypto::constant_time_eq(checksum(body).as_bytes(), sum.as_bytes())
        }
        _ => false,
    };
    well_formed.then(|| CredentialHash::of(key))
}

/// Whether the well-formed `key` may be looked up: its tag is right, or it is untagged and the
/// database may still hold a live untagged key.
fn admitted(tags: &TokenTags, key: &str, now: Timestamp) -> bool {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() == BODY_LEN + tags::TAG_LEN {
        let (body, tag) = rest.split_at(BODY_LEN);
        let expected = tags::base62_tag(tags.tag(TagKind::ApiKey, body));
        return crypto::constant_time_eq(&expected, tag.as_bytes());
    }
    rest.len() == BODY_LEN + CHECKSUM_LEN && tags.untagged_admitted(TagKind::ApiKey, now)
}

/// Whether `value` looks like one of our keys (prefix only): such an `Authorization` header is
/// ours to check and never forwarded.
pub(crate) fn is_api_key(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// Creates, lists, revokes and authenticates API keys.
#[derive(Debug, Clone)]
pub struct ApiKeyService {
    store: ApiKeyStore,
    users: UserStore,
    cache: IdentityCache,
    clock: Arc<dyn Clock>,
    header_names: Arc<HeaderNames>,
    tags: Arc<TokenTags>,
}

impl ApiKeyService {
    /// A service over the given stores and cache.
    pub fn new(
        store: ApiKeyStore,
        users: UserStore,
        cache: IdentityCache,
        clock: Arc<dyn Clock>,
        header_names: Arc<HeaderNames>,
        tags: Arc<TokenTags>,
    ) -> Self {
        Self { store, users, cache, clock, header_names, tags }
    }

    /// Creates a key for `user_id`.
    ///
    /// # Errors
    /// An invalid name or expiry, or the store fails.
    pub async fn create(
        &self,
        user_id: Uuid,
        request: KeyRequest<'_>,
    ) -> Result<NewApiKey, CreateKeyError> {
        let KeyRequest { name, scopes, expires_in_days, org_id } = request;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(CreateKeyError::Invalid(format!(
                "name: must be 1-{MAX_NAME} characters without control characters"
            )));
        }
        let now = self.clock.now();
        let expires_at = match expires_in_days {
            None => None,
            Some(days) if (1..=MAX_DAYS).contains(&days) => {
                Some(now.plus(Duration::from_secs(u64::from(days) * 86_400)))
            }
            Some(_) => {
                return Err(CreateKeyError::Invalid(format!(
                    "expires_in_days: must be 1-{MAX_DAYS}"
                )));
            }
        };
        let secret = generate(&self.tags);
        let record = ApiKeyRecord {
            id: Uuid::now_v7(),
            user_id,
            name: name.to_owned(),
            prefix: secret[..PREFIX.len() + SHOWN].to_owned(),
            key_hash: CredentialHash::of(&secret),
            scopes,
            org_id,
            created_at: now,
            last_used_at: None,
            expires_at,
            revoked_at: None,
        };
        self.store.insert(&record).await?;
        Ok(NewApiKey { secret, record })
    }

    /// The user's keys that are not revoked (expired ones included, so they can be cleaned up).
    ///
    /// # Errors
    /// The store fails.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.store.list(user_id).await
    }

    /// Revokes the user's key `id` and evicts it from the cache. `false` if the user has no
    /// such live key.
    ///
    /// # Errors
    /// The store fails.
    pub async fn revoke(&self, user_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
        match self.store.revoke(user_id, id, self.clock.now()).await? {
            Some(hash) => {
                self.cache.evict_credential(&hash);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Revokes every live key of the user (evicted on every replica); how many there were.
    ///
    /// # Errors
    /// The store fails.
    pub async fn revoke_all(&self, user_id: Uuid) -> Result<usize, StoreError> {
        let mut revoked = 0;
        for key in self.list(user_id).await? {
            if self.revoke(user_id, key.id).await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// The identity behind the well-formed `key` hashing to `hash` (see [`hash_of`]): cached,
    /// or loaded (then cached), setting `loaded` when the answer took a store lookup of its
    /// own. `None` for unknown, expired or revoked keys, disabled users and keys whose tag is
    /// wrong (those are never looked up).
    ///
    /// # Errors
    /// The store is unavailable on a cache miss.
    pub async fn authenticate_noting(
        &self,
        key: &str,
        hash: CredentialHash,
        loaded: &mut bool,
    ) -> Result<Option<Arc<Identity>>, StoreError> {
        let genuine = || admitted(&self.tags, key, self.clock.now());
        let load = || Box::pin(within_deadline(self.load(hash)));
        self.cache.get_or_load_noting(hash, genuine, load, loaded).await
    }

    /// Asks the database whether live untagged keys remain, while that matters: when none is
    /// left and no replica of an earlier version can make more, untagged keys are refused
    /// unread (called every minute; no query on an installation that never had them).
    ///
    /// # Errors
    /// The store fails.
    pub async fn recheck_untagged(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        if self.tags.untagged_api_keys_unsettled(now) {
            let live = self.store.any_live_untagged(now).await?;
            if !live && self.tags.untagged_admitted(TagKind::ApiKey, now) {
                tracing::info!("no live untagged API key is left");
            }
            self.tags.set_untagged_api_keys(live);
        }
        Ok(())
    }

    /// Loads a live key and its enabled user, recording the use.
    async fn load(&self, hash: CredentialHash) -> Result<Option<Identity>, StoreError> {
        let now = self.clock.now();
        let Some(key) = self.store.find_by_hash(&hash).await?.filter(|key| key.is_live(now)) else {
            return Ok(None);
        };
        let Some((user, orgs)) = self.users.find_member(key.user_id).await? else {
            return Ok(None);
        };
        // Loads happen at most once per cache period per key, so this bounds the writes.
        self.store.touch(key.id, now, TOUCH_INTERVAL).await?;
        // A key without expiry is re-checked every cache period anyway.
        let expires_at = key.expires_at.unwrap_or(Timestamp::from_millis(i64::MAX / 2));
        // A key acts in the organization it was made for, while its owner belongs to it;
        // org-scoped paths see all of its owner's memberships.
        let parts = IdentityParts::new(user, key.scopes, AuthMethod::ApiKey, None, expires_at)
            .in_orgs(orgs, key.org_id);
        Ok(Some(Identity::new(parts, &self.header_names)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_000_000)
    }

    #[test]
    fn keys_have_the_documented_shape_and_a_tag() {
        let tags = TokenTags::random();
        let key = generate(&tags);
        assert!(key.starts_with("pk_"));
        assert_eq!(key.len(), 3 + BODY_LEN + tags::TAG_LEN);
        assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            hash_of(&key).map(|hash| *hash.as_bytes()),
            Some(crypto::sha256(key.as_bytes()))
        );
        assert!(admitted(&tags, &key, now()));
        assert_ne!(generate(&tags), key);
    }

    #[test]
    fn a_mistyped_forged_or_truncated_key_is_refused_without_a_lookup() {
        let tags = TokenTags::random();
        let key = generate(&tags);
        for index in [10, key.len() - 1] {
            let mut typo = key.clone().into_bytes();
            typo[index] = if typo[index] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(typo).unwrap();
            // Well-formed, so it reaches the cache, but never the store.
            assert!(hash_of(&typo).is_some());
            assert!(!admitted(&tags, &typo, now()), "{index}");
        }
        assert!(!admitted(&TokenTags::random(), &key, now()), "another installation's key");
        assert_eq!(hash_of(&key[..key.len() - 1]), None);
        assert_eq!(hash_of(&format!("{key}x")), None);
        assert_eq!(hash_of(&key.replacen("pk_", "sk_", 1)), None);
        assert_eq!(hash_of("pk_"), None);
        assert_eq!(hash_of(&format!("pk_{}", "é".repeat(27))), None);
    }

    #[test]
    fn untagged_keys_are_looked_up_only_while_some_may_be_live() {
        let body = "a".repeat(BODY_LEN);
        let old = format!("{PREFIX}{body}{}", checksum(&body));
        assert!(hash_of(&old).is_some());
        let mut typo = old.clone().into_bytes();
        typo[10] = b'b';
        assert_eq!(hash_of(&String::from_utf8(typo).unwrap()), None, "the checksum still counts");
        let untagged = tags::Untagged { api_keys: true.into(), ..tags::Untagged::none() };
        let tags = TokenTags::new(&[1; 32], untagged);
        assert!(admitted(&tags, &old, now()));
        tags.set_untagged_api_keys(false);
        assert!(!admitted(&tags, &old, now()));
    }
}
