//! Pending organization choices: with `[orgs] require_selection`, a user who belongs to several
//! organizations gets a `pending_token` instead of a session, and the sign-in finishes when
//! they pick one (`POST /auth/orgs/select`). The token is 256 random bits, stored hashed in the
//! ephemeral store with how the sign-in was to finish, for ten minutes, and works once.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::single_use::{SingleUse, TokenShape};
use crate::store::ephemeral::EphemeralStore;

/// How long a choice waits.
pub(crate) const CHOICE_TTL: Duration = Duration::from_secs(600);

/// What a finished sign-in hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// A session cookie.
    Session,
    /// An access and refresh token in the body.
    Tokens,
    /// An access and refresh token in httpOnly cookies.
    CookieTokens,
}

/// A sign-in waiting for its organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// Who signed in.
    pub user_id: Uuid,
    /// What the sign-in hands out once an organization is chosen.
    pub after: After,
    /// Where a browser goes afterwards (validated when the sign-in began).
    pub redirect: Option<String>,
    /// Client IP at sign-in.
    pub ip: Option<String>,
    /// Client user agent at sign-in.
    pub user_agent: Option<String>,
}

/// Pending choices: [`SingleUse::mint`] starts one, [`SingleUse::peek`] reads it for the
/// selection page, [`SingleUse::take`] finishes it (of two concurrent selections one wins).
pub(crate) type OrgChoices = SingleUse<Choice>;

/// Pending choices kept in `store`.
pub(crate) fn choices(store: Arc<dyn EphemeralStore>) -> OrgChoices {
    SingleUse::new(store, "org_choice", TokenShape::Random, CHOICE_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::ephemeral::MemoryStore;

    #[tokio::test]
    async fn a_choice_is_read_then_used_once() {
        let clock = Arc::new(ManualClock::default());
        let choices = super::choices(Arc::new(MemoryStore::new(clock)));
        let choice = Choice {
            user_id: Uuid::now_v7(),
            after: After::Tokens,
            redirect: None,
            ip: None,
            user_agent: None,
        };
        let token = choices.mint(&choice).await.unwrap();
        assert_eq!(choices.peek(&token).await.unwrap().as_ref(), Some(&choice));
        assert_eq!(choices.take(&token).await.unwrap(), Some(choice));
        assert_eq!(choices.take(&token).await.unwrap(), None);
        assert_eq!(choices.peek("garbage").await.unwrap(), None);
    }
}
