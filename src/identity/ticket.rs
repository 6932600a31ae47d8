//! WebSocket tickets: browsers cannot set headers on a WebSocket, and a token in a URL ends up
//! in logs, so a signed-in client asks for a `ws_` ticket that works once, within 30 seconds,
//! for the same identity as the credential that asked for it. The gateway removes it from the
//! URL before forwarding.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cache::CredentialHash;
use super::session::SessionService;
use super::{AuthMethod, Identity, IdentityParts, Scopes};
use crate::clock::{Clock, Timestamp};
use crate::crypto::tags::{TagKind, TokenTags};
use crate::model::headers::HeaderNames;
use crate::store::ephemeral::{EphemeralStore, decode, encode};
use crate::store::tokens::FamilyStore;
use crate::store::users::UserStore;
use crate::store::{StoreError, within_deadline};

const PREFIX: &str = "ws_";
/// How long a ticket can wait to be used.
pub(crate) const TICKET_TTL: Duration = Duration::from_secs(30);

/// What a ticket stands for.
#[derive(Debug, Serialize, Deserialize)]
struct Ticket {
    user_id: Uuid,
    session_id: Option<Uuid>,
    /// The session cookie's hash, when a session asked: the session must still be live.
    session_hash: Option<String>,
    scope: Option<String>,
    /// The asking credential's active organization.
    #[serde(default)]
    org: Option<Uuid>,
    expires_at: i64,
}

/// Issues and redeems tickets.
#[derive(Debug, Clone)]
pub struct WsTickets {
    store: Arc<dyn EphemeralStore>,
    users: UserStore,
    sessions: SessionService,
    families: FamilyStore,
    clock: Arc<dyn Clock>,
    header_names: Arc<HeaderNames>,
    tags: Arc<TokenTags>,
}

impl WsTickets {
    /// Tickets kept in `store`, checked against live sessions and token families.
    pub fn new(
        store: Arc<dyn EphemeralStore>,
        users: UserStore,
        sessions: SessionService,
        families: FamilyStore,
        clock: Arc<dyn Clock>,
        header_names: Arc<HeaderNames>,
        tags: Arc<TokenTags>,
    ) -> Self {
        Self { store, users, sessions, families, clock, header_names, tags }
    }

    /// A ticket for `identity`, which authenticated with the session cookie hashing to
    /// `session_hash`, or else with an access token of its session (family).
    ///
    /// # Errors
    /// The store fails.
    pub async fn issue(
        &self,
        identity: &Identity,
        session_hash: Option<CredentialHash>,
    ) -> Result<String, StoreError> {
        let token = format!("{PREFIX}{}", self.tags.mint(TagKind::Ticket));
        let ticket = Ticket {
            user_id: identity.user_id,
            session_id: identity.session_id,
            session_hash: session_hash.map(|hash| hash.to_hex()),
            scope: identity.scopes.to_claim(),
            org: identity.active_org.as_ref().map(|org| org.org_id),
            expires_at: identity.expires_at.as_millis(),
        };
        let bytes = encode(&ticket)?;
        self.store.put(&key(&CredentialHash::of(&token)), &bytes, TICKET_TTL).await?;
        Ok(token)
    }

    /// The identity behind a ticket, which is used up. `None` for malformed, unknown, used or
    /// expired tickets and disabled users.
    ///
    /// # Errors
    /// The store fails.
    pub async fn redeem(&self, token: &str) -> Result<Option<Arc<Identity>>, StoreError> {
        Box::pin(within_deadline(self.redeem_now(token))).await
    }

    async fn redeem_now(&self, token: &str) -> Result<Option<Arc<Identity>>, StoreError> {
        if !self.admits(token) {
            return Ok(None);
        }
        let hash = CredentialHash::of(token);
        let Some(bytes) = self.store.take(&key(&hash)).await? else { return Ok(None) };
        let ticket: Ticket = decode(&bytes, "ws ticket")?;
        if !self.still_signed_in(&ticket).await? {
            return Ok(None);
        }
        let Some((user, orgs)) = self.users.find_member(ticket.user_id).await? else {
            return Ok(None);
        };
        let scopes = Scopes::from_claim(ticket.scope.as_deref()).map_err(StoreError::from)?;
        let expires_at = Timestamp::from_millis(ticket.expires_at);
        let parts =
            IdentityParts::new(user, scopes, AuthMethod::WsTicket, ticket.session_id, expires_at)
                .in_orgs(orgs, ticket.org);
        Ok(Some(Arc::new(Identity::new(parts, &self.header_names))))
    }

    /// Whether `token` is a ticket that may be looked up: well-formed, and tagged by us (or
    /// untagged, just after an upgrade).
    pub fn admits(&self, token: &str) -> bool {
        token
            .strip_prefix(PREFIX)
            .is_some_and(|body| self.tags.admits(TagKind::Ticket, body, self.clock.now()))
    }

    /// Whether the session or token family that asked for the ticket is still live: a ticket
    /// must not outlive a logout.
    async fn still_signed_in(&self, ticket: &Ticket) -> Result<bool, StoreError> {
        match (&ticket.session_hash, ticket.session_id) {
            (Some(hash), _) => {
                let Some(hash) = CredentialHash::from_hex(hash) else { return Ok(false) };
                let identity = self.sessions.authenticate_hash(hash).await?;
                Ok(identity.is_some_and(|identity| identity.user_id == ticket.user_id))
            }
            (None, Some(family)) => {
                let live = self.families.find_live(family, self.clock.now()).await?;
                Ok(live.is_some_and(|family| family.user_id == ticket.user_id))
            }
            (None, None) => Ok(false),
        }
    }
}

/// Whether `value` is shaped like a ticket.
pub(crate) fn is_ticket(value: &str) -> bool {
    value.starts_with(PREFIX)
}

fn key(hash: &CredentialHash) -> String {
    format!("ws_ticket:{}", hash.to_hex())
}
