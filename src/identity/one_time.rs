//! Operator sign-in links: `portcullis user sign-in-link EMAIL` mints a single-use link to
//! `GET /auth/one-time?token=…` that signs the user in. The token is 256 random bits, stored
//! hashed in the ephemeral store with its expiry and its (already validated) redirect target.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::single_use::{SingleUse, TokenShape};
use crate::store::ephemeral::EphemeralStore;

/// What a link signs in as, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimeLink {
    /// The user.
    pub user_id: Uuid,
    /// Where to go after signing in (validated when minted, and again when used).
    pub redirect: String,
}

/// Sign-in links, each minted with its own lifetime ([`SingleUse::mint_for`]) and used up by
/// [`SingleUse::take`].
pub(crate) type OneTimeLinks = SingleUse<OneTimeLink>;

/// Longest a sign-in link may work.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Sign-in links kept in `store`.
pub(crate) fn links(store: Arc<dyn EphemeralStore>) -> OneTimeLinks {
    SingleUse::new(store, "one_time", TokenShape::Random, MAX_TTL)
}
