//! Values behind single-use bearer tokens, kept in the ephemeral store: operator sign-in links,
//! email verification and reset links, pending organization choices, provider sign-ins in
//! progress. Only the token's SHA-256 is stored (a copy of the store holds no usable token),
//! under `prefix:hash`, for a fixed lifetime; reading a value may leave it in place (`peek`,
//! for a page that shows what the token is for) or use it up (`take`: of concurrent uses, one
//! wins).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto;
use crate::store::StoreError;
use crate::store::ephemeral::{EphemeralStore, decode, encode};

/// Longest token accepted from a caller (one made elsewhere, such as an OAuth `state`).
const MAX_TOKEN_LEN: usize = 256;

/// Which tokens a store accepts; anything else is unknown without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    /// Ours: 256 random bits, base64url ([`crypto::random_token`]).
    Random,
    /// Made elsewhere and handed to [`SingleUse::put`]: 1 to 256 bytes.
    Opaque,
}

impl TokenShape {
    fn admits(self, token: &str) -> bool {
        match self {
            Self::Random => crypto::is_random_token(token),
            Self::Opaque => !token.is_empty() && token.len() <= MAX_TOKEN_LEN,
        }
    }
}

/// What a token is stored as: its SHA-256, in hex.
pub(crate) fn token_hash(token: &str) -> String {
    crypto::hex(&crypto::sha256(token.as_bytes()))
}

/// Values of type `T` behind single-use tokens.
#[derive(Debug)]
pub struct SingleUse<T> {
    store: Arc<dyn EphemeralStore>,
    prefix: &'static str,
    shape: TokenShape,
    ttl: Duration,
    /// `fn() -> T`: the store holds no `T`, so it is `Send` and `Sync` whatever `T` is.
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for SingleUse<T> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            prefix: self.prefix,
            shape: self.shape,
            ttl: self.ttl,
            _value: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> SingleUse<T> {
    /// Values kept in `store` under `prefix` for `ttl`, behind tokens of `shape`.
    pub fn new(
        store: Arc<dyn EphemeralStore>,
        prefix: &'static str,
        shape: TokenShape,
        ttl: Duration,
    ) -> Self {
        Self { store, prefix, shape, ttl, _value: PhantomData }
    }

    /// How long a token works.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new random token for `value`, working for the store's lifetime.
    ///
    /// # Errors
    /// The store fails.
    pub async fn mint(&self, value: &T) -> Result<String, StoreError> {
        self.mint_for(value, self.ttl).await
    }

    /// A new random token for `value`, working for `ttl`.
    ///
    /// # Errors
    /// The store fails.
    pub async fn mint_for(&self, value: &T, ttl: Duration) -> Result<String, StoreError> {
        let token = crypto::random_token();
        self.store.put(&self.key(&token), &encode(value)?, ttl).await?;
        Ok(token)
    }

    /// Keeps `value` behind `token`, a token made elsewhere (an OAuth `state`).
    ///
    /// # Errors
    /// The store fails.
    pub async fn put(&self, token: &str, value: &T) -> Result<(), StoreError> {
        self.store.put(&self.key(token), &encode(value)?, self.ttl).await
    }

    /// The value behind `token`, left in place. `None` for malformed, unknown, used or expired
    /// tokens.
    ///
    /// # Errors
    /// The store fails, or holds something else under the key.
    pub async fn peek(&self, token: &str) -> Result<Option<T>, StoreError> {
        if !self.shape.admits(token) {
            return Ok(None);
        }
        self.decoded(self.store.get(&self.key(token)).await?)
    }

    /// The value behind `token`, used up. `None` for malformed, unknown, used or expired
    /// tokens.
    ///
    /// # Errors
    /// The store fails, or holds something else under the key.
    pub async fn take(&self, token: &str) -> Result<Option<T>, StoreError> {
        if !self.shape.admits(token) {
            return Ok(None);
        }
        self.decoded(self.store.take(&self.key(token)).await?)
    }

    /// The store key of `token`: the prefix and the token's hash.
    pub fn key(&self, token: &str) -> String {
        format!("{}:{}", self.prefix, token_hash(token))
    }

    fn decoded(&self, bytes: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
        bytes.map(|bytes| decode(&bytes, self.prefix)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::ephemeral::MemoryStore;

    fn store(shape: TokenShape) -> (SingleUse<Vec<u32>>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let memory = Arc::new(MemoryStore::new(clock.clone()));
        (SingleUse::new(memory, "test", shape, Duration::from_secs(60)), clock)
    }

    #[tokio::test]
    async fn a_token_is_read_then_used_once_then_nothing() {
        let (values, _) = store(TokenShape::Random);
        let token = values.mint(&vec![1, 2]).await.unwrap();
        assert_eq!(values.peek(&token).await.unwrap(), Some(vec![1, 2]), "peeking leaves it");
        assert_eq!(values.take(&token).await.unwrap(), Some(vec![1, 2]));
        assert_eq!(values.take(&token).await.unwrap(), None, "used");
        assert_eq!(values.peek(&token).await.unwrap(), None);
    }

    #[tokio::test]
    async fn tokens_expire_and_malformed_ones_are_unknown() {
        let (values, clock) = store(TokenShape::Random);
        let short = values.mint_for(&vec![1], Duration::from_secs(5)).await.unwrap();
        let long = values.mint(&vec![2]).await.unwrap();
        clock.advance(Duration::from_secs(6));
        assert_eq!(values.take(&short).await.unwrap(), None, "its own lifetime");
        assert_eq!(values.peek(&long).await.unwrap(), Some(vec![2]));
        for bad in ["", "short", &format!("{long}!"), &"a".repeat(1000)] {
            assert_eq!(values.take(bad).await.unwrap(), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_token_made_elsewhere_is_kept_by_its_hash() {
        let (values, _) = store(TokenShape::Opaque);
        values.put("state-from-the-provider", &vec![7]).await.unwrap();
        assert!(!values.key("state-from-the-provider").contains("state"), "only the hash");
        assert_eq!(values.take("state-from-the-provider").await.unwrap(), Some(vec![7]));
        assert_eq!(values.take("").await.unwrap(), None);
        assert_eq!(values.take(&"s".repeat(MAX_TOKEN_LEN + 1)).await.unwrap(), None);
    }
}
