//! Single-use links that prove access to an address: email verification and password reset.
//! The token is 256 random bits; only its hash is stored, with the user and the address it was
//! sent to (a link for an address the user no longer has does nothing). One link of each
//! purpose is live per account: a new one ends the one before, so an old reset link found in a
//! mailbox later is worth nothing.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::single_use::{SingleUse, TokenShape};
use crate::store::StoreError;
use crate::store::ephemeral::EphemeralStore;

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
    verify: SingleUse<Holder>,
    reset: SingleUse<Holder>,
}

impl EmailTokens {
    /// Links kept in `store`, living `ttl`.
    pub fn new(store: Arc<dyn EphemeralStore>, ttl: Duration) -> Self {
        let links = |purpose: Purpose| {
            SingleUse::new(Arc::clone(&store), purpose.prefix(), TokenShape::Random, ttl)
        };
        Self { verify: links(Purpose::Verify), reset: links(Purpose::Reset), store }
    }

    /// How long a link works.
    pub fn ttl(&self) -> Duration {
        self.verify.ttl()
    }

    /// A new link token for `holder`; the account's previous link of `purpose` ends.
    ///
    /// # Errors
    /// The store fails.
    pub async fn issue(&self, purpose: Purpose, holder: &Holder) -> Result<String, StoreError> {
        let latest = latest_key(purpose, holder.user_id);
        if let Some(previous) = self.store.take(&latest).await?
            && let Ok(previous) = String::from_utf8(previous)
        {
            self.store.delete(&previous).await?;
        }
        let links = self.links(purpose);
        let token = links.mint(holder).await?;
        self.store.put(&latest, links.key(&token).as_bytes(), links.ttl()).await?;
        Ok(token)
    }

    /// Who `token` is for, without using it up.
    ///
    /// # Errors
    /// The store fails.
    pub async fn peek(&self, purpose: Purpose, token: &str) -> Result<Option<Holder>, StoreError> {
        self.links(purpose).peek(token).await
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
        self.links(purpose).take(token).await
    }

    fn links(&self, purpose: Purpose) -> &SingleUse<Holder> {
        match purpose {
            Purpose::Verify => &self.verify,
            Purpose::Reset => &self.reset,
        }
    }
}

/// Where the key of the account's live link of `purpose` is kept.
fn latest_key(purpose: Purpose, user_id: Uuid) -> String {
    format!("{}_latest:{user_id}", purpose.prefix())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::ephemeral::MemoryStore;

    #[tokio::test]
    async fn only_the_latest_link_of_a_purpose_works() {
        let store = Arc::new(MemoryStore::new(Arc::new(ManualClock::new())));
        let tokens = EmailTokens::new(store, Duration::from_secs(900));
        let ada = Holder { user_id: Uuid::now_v7(), email: "ada@example.com".into() };
        let old = tokens.issue(Purpose::Reset, &ada).await.unwrap();
        let verify = tokens.issue(Purpose::Verify, &ada).await.unwrap();
        let new = tokens.issue(Purpose::Reset, &ada).await.unwrap();
        assert_eq!(tokens.redeem(Purpose::Reset, &old).await.unwrap(), None, "replaced");
        assert_eq!(tokens.redeem(Purpose::Reset, &new).await.unwrap(), Some(ada.clone()));
        assert_eq!(tokens.redeem(Purpose::Reset, &new).await.unwrap(), None, "used");
        assert_eq!(tokens.redeem(Purpose::Verify, &verify).await.unwrap(), Some(ada), "apart");
    }
}
