//! The device authorization grant (RFC 8628): a CLI shows a short user code, the user approves
//! it in a browser where they are signed in, and the CLI, polling, receives tokens once.
//!
//! The device code is 256 random bits stored hashed; the user code is eight letters from an
//! alphabet without look-alikes (no vowels, so no words either). Polling faster than the
//! interval is answered `slow_down` by a counter, so polls never rewrite the grant and cannot
//! race an approval.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Scopes;
use crate::clock::{Clock, Timestamp};
use crate::crypto;
use crate::store::StoreError;
use crate::store::ephemeral::{EphemeralStore, decode, encode};

/// Consonants only, as RFC 8628 §6.1 suggests: no 0/O, 1/I/L or vowels.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;
/// How long a device code lives.
pub(crate) const DEVICE_CODE_TTL: Duration = Duration::from_secs(600);
/// The polling interval clients are given.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// A started grant, as the client sees it.
#[derive(Debug, Clone)]
pub struct Started {
    /// The secret the client polls with.
    pub device_code: String,
    /// The code the user types, `XXXX-XXXX`.
    pub user_code: String,
}

/// A grant waiting for the user, as the approval page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGrant {
    /// The user code, `XXXX-XXXX`.
    pub user_code: String,
    /// What the client called itself.
    pub client_name: Option<String>,
    /// Scopes it asked for.
    pub scopes: Scopes,
}

/// What a poll finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The user has not answered yet.
    Pending,
    /// Polled faster than the interval.
    SlowDown,
    /// Unknown, expired, or already completed.
    Expired,
    /// The user refused.
    Denied,
    /// The user approved; this poll is the only one that sees it.
    Approved {
        /// Who approved.
        user_id: Uuid,
        /// The organization the approving session acted in.
        org: Option<Uuid>,
        /// Scopes granted.
        scopes: Scopes,
        /// What the client called itself.
        client_name: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Status {
    Pending,
    Approved {
        user_id: Uuid,
        #[serde(default)]
        org: Option<Uuid>,
    },
    Denied,
}

#[derive(Debug, Serialize, Deserialize)]
struct Grant {
    user_code: String,
    client_name: Option<String>,
    scope: Option<String>,
    expires_at: i64,
    #[serde(flatten)]
    status: Status,
}

/// Starts, polls and answers device grants.
#[derive(Debug, Clone)]
pub struct DeviceFlow {
    store: Arc<dyn EphemeralStore>,
    clock: Arc<dyn Clock>,
}

impl DeviceFlow {
    /// Grants kept in `store`.
    pub fn new(store: Arc<dyn EphemeralStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Starts a grant.
    ///
    /// # Errors
    /// The store fails.
    pub async fn start(
        &self,
        client_name: Option<String>,
        scopes: &Scopes,
    ) -> Result<Started, StoreError> {
        let device_code = crypto::random_token();
        let user_code = random_user_code();
        let grant = Grant {
            user_code: user_code.clone(),
            client_name,
            scope: scopes.to_claim(),
            expires_at: self.clock.now().plus(DEVICE_CODE_TTL).as_millis(),
            status: Status::Pending,
        };
        let hash = device_hash(&device_code);
        self.save(&hash, &grant).await?;
        self.store.put(&user_code_key(&user_code), hash.as_bytes(), DEVICE_CODE_TTL).await?;
        Ok(Started { device_code, user_code: display(&user_code) })
    }

    /// Answers a poll.
    ///
    /// # Errors
    /// The store fails.
    pub async fn poll(&self, device_code: &str) -> Result<Poll, StoreError> {
        if device_code.is_empty() || device_code.len() > 128 {
            return Ok(Poll::Expired);
        }
        let hash = device_hash(device_code);
        let Some((grant, _)) = self.load(&hash).await? else { return Ok(Poll::Expired) };
        let polls = self.store.incr(&format!("device_poll:{hash}"), POLL_INTERVAL).await?;
        if polls > 1 {
            return Ok(Poll::SlowDown);
        }
        match grant.status {
            Status::Pending => Ok(Poll::Pending),
            Status::Denied => Ok(Poll::Denied),
            Status::Approved { user_id, org } => {
                // Tokens go out once: of concurrent polls, only the one that takes the grant.
                if self.store.take(&grant_key(&hash)).await?.is_none() {
                    return Ok(Poll::Expired);
                }
                self.store.delete(&user_code_key(&grant.user_code)).await?;
                let scopes =
                    Scopes::from_claim(grant.scope.as_deref()).map_err(StoreError::from)?;
                Ok(Poll::Approved { user_id, org, scopes, client_name: grant.client_name })
            }
        }
    }

    /// The pending grant a user code names, for the approval page.
    ///
    /// # Errors
    /// The store fails.
    pub async fn pending(&self, user_code: &str) -> Result<Option<PendingGrant>, StoreError> {
        let Some((_, grant, _)) = self.by_user_code(user_code).await? else { return Ok(None) };
        if grant.status != Status::Pending {
            return Ok(None);
        }
        let scopes = Scopes::from_claim(grant.scope.as_deref()).map_err(StoreError::from)?;
        Ok(Some(PendingGrant {
            user_code: display(&grant.user_code),
            client_name: grant.client_name,
            scopes,
        }))
    }

    /// Approves (for `user_id`, acting in `org`) or denies the pending grant named by
    /// `user_code`. `false` when there is no such pending grant.
    ///
    /// # Errors
    /// The store fails.
    pub async fn answer(
        &self,
        user_code: &str,
        user_id: Uuid,
        org: Option<Uuid>,
        approve: bool,
    ) -> Result<bool, StoreError> {
        let Some((hash, mut grant, read)) = self.by_user_code(user_code).await? else {
            return Ok(false);
        };
        if grant.status != Status::Pending {
            return Ok(false);
        }
        grant.status = if approve { Status::Approved { user_id, org } } else { Status::Denied };
        // Only over the pending grant just read: of two answers at once, one counts, and an
        // approval whose tokens already went out is not written back for a second poll.
        let bytes = encode(&grant)?;
        let ttl = self.clock.now().until(Timestamp::from_millis(grant.expires_at));
        self.store.replace(&grant_key(&hash), &read, &bytes, ttl).await
    }

    /// The live grant a user code names, with its hash and the bytes it was read from.
    async fn by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<(String, Grant, Vec<u8>)>, StoreError> {
        let Some(code) = normalize_user_code(user_code) else { return Ok(None) };
        let Some(hash) = self.store.get(&user_code_key(&code)).await? else { return Ok(None) };
        let hash =
            String::from_utf8(hash).map_err(|_| StoreError::Corrupt("device code".into()))?;
        Ok(self.load(&hash).await?.map(|(grant, read)| (hash, grant, read)))
    }

    /// The live grant under `hash`, and the bytes it was read from.
    async fn load(&self, hash: &str) -> Result<Option<(Grant, Vec<u8>)>, StoreError> {
        let Some(bytes) = self.store.get(&grant_key(hash)).await? else { return Ok(None) };
        let grant: Grant = decode(&bytes, "device grant")?;
        Ok((grant.expires_at > self.clock.now().as_millis()).then_some((grant, bytes)))
    }

    async fn save(&self, hash: &str, grant: &Grant) -> Result<(), StoreError> {
        let bytes = encode(grant)?;
        let ttl = self.clock.now().until(Timestamp::from_millis(grant.expires_at));
        self.store.put(&grant_key(hash), &bytes, ttl).await
    }
}

fn random_user_code() -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        for byte in crypto::random_bytes() {
            // 240 = 12 × 20: rejecting bytes above it keeps every letter equally likely.
            if byte < 240 && code.len() < USER_CODE_LEN {
                code.push(char::from(USER_CODE_ALPHABET[usize::from(byte % 20)]));
            }
        }
    }
    code
}

/// `BCDFGHJK` or `bcdf-ghjk ` → `BCDFGHJK`; anything outside the alphabet → `None`.
pub(crate) fn normalize_user_code(text: &str) -> Option<String> {
    let code: String = text
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

fn display(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

fn grant_key(hash: &str) -> String {
    format!("device:{hash}")
}

/// How a device code is stored: its SHA-256, in hex.
fn device_hash(device_code: &str) -> String {
    crypto::hex(&crypto::sha256(device_code.as_bytes()))
}

fn user_code_key(code: &str) -> String {
    format!("device_user:{code}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::ephemeral::MemoryStore;

    fn flow() -> (DeviceFlow, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let store = Arc::new(MemoryStore::new(clock.clone()));
        (DeviceFlow::new(store, clock.clone()), clock)
    }

    #[test]
    fn user_codes_avoid_look_alikes_and_normalize() {
        for _ in 0..200 {
            let code = random_user_code();
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{code}");
        }
        assert_eq!(normalize_user_code(" bcdf-ghjk ").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_user_code("BCDF-GHJ0"), None);
        assert_eq!(normalize_user_code("AEIO-UBCD"), None);
        assert_eq!(normalize_user_code("BCDF"), None);
    }

    #[tokio::test]
    async fn a_grant_goes_pending_then_approved_exactly_once() {
        let (flow, clock) = flow();
        let started = flow.start(Some("cli".into()), &Scopes::All).await.unwrap();
        assert_eq!(flow.poll(&started.device_code).await.unwrap(), Poll::Pending);
        assert_eq!(flow.poll(&started.device_code).await.unwrap(), Poll::SlowDown);
        let user = Uuid::now_v7();
        let pending = flow.pending(&started.user_code.to_lowercase()).await.unwrap().unwrap();
        assert_eq!(pending.client_name.as_deref(), Some("cli"));
        assert!(flow.answer(&started.user_code, user, None, true).await.unwrap());
        assert!(
            !flow.answer(&started.user_code, user, None, false).await.unwrap(),
            "answered once"
        );
        clock.advance(POLL_INTERVAL);
        assert!(matches!(
            flow.poll(&started.device_code).await.unwrap(),
            Poll::Approved { user_id, .. } if user_id == user
        ));
        clock.advance(POLL_INTERVAL);
        assert_eq!(flow.poll(&started.device_code).await.unwrap(), Poll::Expired);
    }

    /// Two approvals at once: the second one read the grant while it was still pending, and
    /// the first one's tokens went out before it wrote. Writing back unconditionally used to
    /// re-create an approved grant, and a second poll got a second token family.
    #[tokio::test]
    async fn an_approval_racing_another_does_not_issue_tokens_twice() {
        let clock = Arc::new(ManualClock::new());
        let store = Arc::new(crate::store::testing::Interleaved::new(clock.clone()));
        let flow = DeviceFlow::new(store.clone(), clock.clone());
        let started = flow.start(None, &Scopes::All).await.unwrap();
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        // Between the second approval's read and its write: the first approval lands and the
        // device polls its tokens out (the grant is taken).
        store.after_next_get("device:", |_| None);
        assert!(
            !flow.answer(&started.user_code, second, None, true).await.unwrap(),
            "the grant it read is gone"
        );
        assert_eq!(flow.poll(&started.device_code).await.unwrap(), Poll::Expired);

        // And of two answers on a pending grant, the one that wrote second loses.
        let other = flow.start(None, &Scopes::All).await.unwrap();
        let key = grant_key(&device_hash(&other.device_code));
        let stored = store.inner.get(&key).await.unwrap().unwrap();
        let approved = encode(&Grant {
            status: Status::Approved { user_id: first, org: None },
            ..decode::<Grant>(&stored, "").unwrap()
        })
        .unwrap();
        store.after_next_get("device:", move |_| Some(approved));
        assert!(!flow.answer(&other.user_code, second, None, false).await.unwrap());
        clock.advance(POLL_INTERVAL);
        assert!(matches!(
            flow.poll(&other.device_code).await.unwrap(),
            Poll::Approved { user_id, .. } if user_id == first
        ));
    }

    #[tokio::test]
    async fn denied_and_expired_grants() {
        let (flow, clock) = flow();
        let denied = flow.start(None, &Scopes::All).await.unwrap();
        assert!(flow.answer(&denied.user_code, Uuid::now_v7(), None, false).await.unwrap());
        assert_eq!(flow.poll(&denied.device_code).await.unwrap(), Poll::Denied);

        let late = flow.start(None, &Scopes::All).await.unwrap();
        clock.advance(DEVICE_CODE_TTL);
        assert_eq!(flow.poll(&late.device_code).await.unwrap(), Poll::Expired);
        assert_eq!(flow.pending(&late.user_code).await.unwrap(), None);
        assert_eq!(flow.poll("made-up").await.unwrap(), Poll::Expired);
    }
}
