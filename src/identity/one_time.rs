//! Operator sign-in links: `portcullis user sign-in-link EMAIL` mints a single-use link to
//! `GET /auth/one-time?token=…` that signs the user in. The token is 256 random bits, stored
//! hashed in the ephemeral store with its expiry and its (already validated) redirect target.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto;
use crate::store::StoreError;
use crate::store::ephemeral::{EphemeralStore, decode, encode};

/// What a link signs in as, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimeLink {
    /// The user.
    pub user_id: Uuid,
    /// Where to go after signing in (validated when minted, and again when used).
    pub redirect: String,
}

/// Mints and redeems sign-in links.
#[derive(Debug, Clone)]
pub struct OneTimeLinks {
    store: Arc<dyn EphemeralStore>,
}

impl OneTimeLinks {
    /// Links kept in `store`.
    pub fn new(store: Arc<dyn EphemeralStore>) -> Self {
        Self { store }
    }

    /// A token for `link`, valid for `ttl`.
    ///
    /// # Errors
    /// The store fails.
    pub async fn mint(&self, link: &OneTimeLink, ttl: Duration) -> Result<String, StoreError> {
        let token = crypto::random_token();
        let bytes = encode(link)?;
        self.store.put(&key(&token), &bytes, ttl).await?;
        Ok(token)
    }

    /// The link behind `token`, used up. `None` for malformed, unknown, used or expired
    /// tokens.
    ///
    /// # Errors
    /// The store fails.
    pub async fn redeem(&self, token: &str) -> Result<Option<OneTimeLink>, StoreError> {
        if !crypto::is_random_token(token) {
            return Ok(None);
        }
        let Some(bytes) = self.store.take(&key(token)).await? else { return Ok(None) };
        decode(&bytes, "sign-in link").map(Some)
    }
}

fn key(token: &str) -> String {
    format!("one_time:{}", crypto::hex(&crypto::sha256(token.as_bytes())))
}
