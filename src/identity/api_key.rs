//! API keys: `pk_` + 43 base62 characters (256 random bits) + a 6-character checksum, so that
//! secret scanners recognise them and a mistyped key is refused without a lookup. Keys are
//! shown once and stored as SHA-256; the gateway serves them from the identity cache like a
//! session.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::cache::{CredentialHash, IdentityCache};
use super::{AuthMethod, Identity, IdentityParts, Scopes};
use crate::clock::{Clock, Timestamp};
use crate::crypto;
use crate::gateway::headers::HeaderNames;
use crate::store::StoreError;
use crate::store::api_keys::{ApiKeyRecord, ApiKeyStore};
use crate::store::users::UserStore;

const PREFIX: &str = "pk_";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters hold 256 bits.
const BODY_LEN: usize = 43;
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

/// Generates a key string (random, with its checksum).
pub fn generate() -> String {
    let mut body = String::with_capacity(BODY_LEN);
    while body.len() < BODY_LEN {
        for byte in crypto::random_bytes() {
            // 248 = 4 × 62: rejecting bytes above it keeps every character equally likely.
            if byte < 248 && body.len() < BODY_LEN {
                body.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
    }
    let checksum = checksum(&body);
    format!("{PREFIX}{body}{checksum}")
}

/// Six base62 digits of the first 32 bits of SHA-256 of the body: catches typos and truncation
/// (a maintained CRC crate would do as well; this needs no extra dependency).
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

/// The cache and store key of a well-formed key, or `None` when the format or checksum is
/// wrong. Allocation-free apart from the checksum check.
pub fn hash_of(key: &str) -> Option<CredentialHash> {
    let rest = key.strip_prefix(PREFIX)?;
    if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (body, sum) = rest.split_at(BODY_LEN);
    crypto::constant_time_eq(checksum(body).as_bytes(), sum.as_bytes())
        .then(|| crypto::sha256(key.as_bytes()))
}

/// Whether `value` looks like one of our keys (prefix only): such an `Authorization` header is
/// ours to check and never forwarded.
pub fn is_api_key(value: &str) -> bool {
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
}

impl ApiKeyService {
    /// A service over the given stores and cache.
    pub fn new(
        store: ApiKeyStore,
        users: UserStore,
        cache: IdentityCache,
        clock: Arc<dyn Clock>,
        header_names: Arc<HeaderNames>,
    ) -> Self {
        Self { store, users, cache, clock, header_names }
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
        let secret = generate();
        let record = ApiKeyRecord {
            id: Uuid::now_v7(),
            user_id,
            name: name.to_owned(),
            prefix: secret[..PREFIX.len() + SHOWN].to_owned(),
            key_hash: crypto::sha256(secret.as_bytes()),
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

    /// The identity behind a key hash: cached, or loaded (then cached). `None` for unknown,
    /// expired or revoked keys and disabled users.
    ///
    /// # Errors
    /// The store is unavailable on a cache miss.
    pub async fn authenticate(
        &self,
        hash: CredentialHash,
    ) -> Result<Option<Arc<Identity>>, StoreError> {
        self.authenticate_noting(hash, &mut false).await
    }

    /// [`Self::authenticate`], setting `loaded` when the answer took a store lookup of its own.
    ///
    /// # Errors
    /// The store is unavailable on a cache miss.
    pub async fn authenticate_noting(
        &self,
        hash: CredentialHash,
        loaded: &mut bool,
    ) -> Result<Option<Arc<Identity>>, StoreError> {
        self.cache.get_or_load_noting(hash, self.load(hash), loaded).await
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

    #[test]
    fn keys_have_the_documented_shape_and_a_checksum() {
        let key = generate();
        assert!(key.starts_with("pk_"));
        assert_eq!(key.len(), 3 + BODY_LEN + CHECKSUM_LEN);
        assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(hash_of(&key), Some(crypto::sha256(key.as_bytes())));
        assert_ne!(generate(), key);
    }

    #[test]
    fn a_mistyped_or_truncated_key_is_refused_without_a_lookup() {
        let key = generate();
        let mut typo = key.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(hash_of(&String::from_utf8(typo).unwrap()), None);
        assert_eq!(hash_of(&key[..key.len() - 1]), None);
        assert_eq!(hash_of(&format!("{key}x")), None);
        assert_eq!(hash_of(&key.replacen("pk_", "sk_", 1)), None);
        assert_eq!(hash_of("pk_"), None);
        assert_eq!(hash_of(&format!("pk_{}", "é".repeat(24))), None);
    }
}
