//! The in-process identity cache: credential hash → `Arc<Identity>`, so that a request whose
//! credential was seen recently costs one hash-map lookup and no store round trip.
//!
//! Revocation evicts at once. A load that raced with a revocation (read the session just before
//! it was deleted, inserted just after it was evicted) is caught by the revocation marks: the
//! revoker marks then evicts, the loader inserts then checks the marks, so whichever runs last
//! removes the stale entry.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use uuid::Uuid;

use crate::clock::{Clock, Timestamp};
use crate::identity::Identity;

/// SHA-256 of a credential: the cache key and the store key.
pub type CredentialHash = [u8; 32];

/// Hashes a [`CredentialHash`] by taking eight of its bytes: they are already uniformly random,
/// and only the server mints credentials, so nobody can choose keys that collide.
#[derive(Debug, Default, Clone, Copy)]
pub struct CredentialHasher(u64);

impl Hasher for CredentialHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let take = bytes.len().min(8);
        word[..take].copy_from_slice(&bytes[..take]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }
}

type Keyed = BuildHasherDefault<CredentialHasher>;

/// Cached identities keyed by credential hash.
#[derive(Debug, Clone)]
pub struct IdentityCache {
    entries: Cache<CredentialHash, Entry, Keyed>,
    ttl: Duration,
    /// When each credential was last revoked.
    revoked_credentials: moka::sync::Cache<CredentialHash, Instant, Keyed>,
    /// When each user's credentials were last revoked all at once.
    revoked_users: moka::sync::Cache<Uuid, Instant>,
    clock: Arc<dyn Clock>,
}

/// A cached identity and the time (on the injected clock) until which it may be served.
#[derive(Debug, Clone)]
struct Entry {
    identity: Arc<Identity>,
    fresh_until: Timestamp,
}

impl IdentityCache {
    /// A cache holding each identity for at most `ttl` and up to `capacity` entries.
    pub fn new(ttl: Duration, capacity: u64, clock: Arc<dyn Clock>) -> Self {
        let entries = Cache::builder()
            .max_capacity(capacity)
            // Freshness is decided on the injected clock in `get`; the TTL only frees memory.
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build_with_hasher(Keyed::default());
        // Marks must outlive any load that started before them; a load takes at most the
        // store's timeouts, far below this.
        let mark_ttl = ttl + Duration::from_secs(60);
        let revoked_credentials = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(mark_ttl)
            .build_with_hasher(Keyed::default());
        let revoked_users =
            moka::sync::Cache::builder().max_capacity(capacity).time_to_live(mark_ttl).build();
        Self { entries, ttl, revoked_credentials, revoked_users, clock }
    }

    /// The cached identity for `hash` while it is fresh (within the cache TTL and before the
    /// credential expires). Never touches a store.
    pub async fn get(&self, hash: &CredentialHash) -> Option<Arc<Identity>> {
        let entry = self.entries.get(hash).await?;
        if entry.fresh_until > self.clock.now() {
            Some(entry.identity)
        } else {
            self.entries.invalidate(hash).await;
            None
        }
    }

    /// Caches an identity whose load from the store began at `load_started`, unless a
    /// revocation happened since then (the load may have read the state before it).
    pub async fn insert(
        &self,
        hash: CredentialHash,
        identity: Arc<Identity>,
        load_started: Instant,
    ) {
        let user_id = identity.user_id;
        let fresh_until = self.clock.now().plus(self.ttl).min(identity.expires_at);
        self.entries.insert(hash, Entry { identity, fresh_until }).await;
        let revoked_since = |mark: Option<Instant>| mark.is_some_and(|at| at >= load_started);
        if revoked_since(self.revoked_credentials.get(&hash))
            || revoked_since(self.revoked_users.get(&user_id))
        {
            self.entries.invalidate(&hash).await;
        }
    }

    /// Evicts one credential.
    pub async fn evict_credential(&self, hash: &CredentialHash) {
        self.revoked_credentials.insert(*hash, Instant::now());
        self.entries.invalidate(hash).await;
    }

    /// Evicts every credential of a user (logout everywhere, disable, role change).
    pub fn evict_user(&self, user_id: Uuid) {
        self.revoked_users.insert(user_id, Instant::now());
        // Only fails if closures are not enabled, and they are (see `new`).
        let _ =
            self.entries.invalidate_entries_if(move |_, entry| entry.identity.user_id == user_id);
    }

    /// How many identities are cached (approximate).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}
