//! Single-use links that prove access to an address: email verification and password reset.
//! The token is 256 random bits; only its hash is stored, with the user and the address it was
//! sent to (a link for an address the user no longer has does nothing).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto;
use crate::store::StoreError;
use crate::store::ephemeral::{EphemeralStore, decode, encode};

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirming the address.
    Verify,
    /// Choosing a new password.
    Reset,
}

impl Purpose {
    fn prefix(self) -> &'static str {
        match self {
            Self::Verify => "email_verify",
            Self::Reset => "password_reset",
        }
    }
}

/// Who a link is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The user.
    pub user_id: Uuid,
    /// The address the link was sent to.
    pub email: String,
}

/// Issues and redeems the links.
#[derive(Debug, Clone)]
pub struct EmailTokens {
    store: Arc<dyn EphemeralStore>,
    ttl: Duration,
}

impl EmailTokens {
    /// Links kept in `store`, living `ttl`.
    pub fn new(store: Arc<dyn EphemeralStore>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// How long a link works.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new link token for `holder`.
    ///
    /// # Errors
    /// The store fails.
    pub async fn issue(&self, purpose: Purpose, holder: &Holder) -> Result<String, StoreError> {
        let token = crypto::random_token();
        let bytes = encode(holder)?;
        self.store.put(&key(purpose, &token), &bytes, self.ttl).await?;
        Ok(token)
    }

    /// Who `token` is for, without using it up.
    ///
    /// # Errors
    /// The store fails.
    pub async fn peek(&self, purpose: Purpose, token: &str) -> Result<Option<Holder>, StoreError> {
        if !crypto::is_random_token(token) {
            return Ok(None);
        }
        holder(self.store.get(&key(purpose, token)).await?)
    }

    /// Who `token` is for, using it up (of concurrent uses, one wins).
    ///
    /// # Errors
    /// The store fails.
    pub async fn redeem(
        &self,
        purpose: Purpose,
        token: &str,
    ) -> Result<Option<Holder>, StoreError> {
        if !crypto::is_random_token(token) {
            return Ok(None);
        }
        holder(self.store.take(&key(purpose, token)).await?)
    }
}

fn holder(bytes: Option<Vec<u8>>) -> Result<Option<Holder>, StoreError> {
    bytes.map(|bytes| decode(&bytes, "email link")).transpose()
}

fn key(purpose: Purpose, token: &str) -> String {
    format!("{}:{}", purpose.prefix(), crypto::hex(&crypto::sha256(token.as_bytes())))
}
