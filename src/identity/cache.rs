//! The in-process identity cache: credential hash → `Arc<Identity>`, so that a request whose
//! credential was seen recently costs one hash-map lookup and no store round trip.
//!
//! Credentials the stores do not know are remembered for a few seconds too (a bounded negative
//! cache), so a client repeating a dead or forged credential costs one store lookup, not one
//! per request.
//!
//! Revocation evicts at once. A load that raced with a revocation (read the session just before
//! it was deleted, inserted just after it was evicted) is caught by the revocation marks: the
//! revoker marks then evicts, the loader inserts then checks the marks, so whichever runs last
//! removes the stale entry.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use quick_cache::UnitWeighter;
use quick_cache::sync::DefaultLifecycle;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::clock::{Clock, Timestamp};
use crate::identity::Identity;
mod message;

pub(crate) use self::message::Revocation;
pub(crate) use crate::model::credential::CredentialHash;

/// How long at most "the stores do not know this credential" is believed. Only the server
/// mints credentials, and never one a client could have sent before, so a credential cannot
/// become valid later; what can change is a disabled account being enabled again (its API
/// keys work again after at most this long).
const UNKNOWN_TTL: Duration = Duration::from_secs(10);

/// Hashes a [`CredentialHash`] by taking eight of its bytes: they are already uniformly random,
/// and only the server mints credentials, so nobody can choose keys that collide.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CredentialHasher(u64);

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
type Map<K, V, H> = quick_cache::sync::Cache<K, V, UnitWeighter, H, DefaultLifecycle<K, V>>;

/// Cached identities keyed by credential hash.
///
/// quick_cache (bounded, sharded, CLOCK-Pro eviction) keeps the per-entry overhead to a few dozen
/// bytes, so 100k sessions fit comfortably; freshness is checked on every read against the
/// injected clock, and stale entries are dropped by [`IdentityCache::sweep`].
#[derive(Clone)]
pub struct IdentityCache {
    entries: Arc<Map<CredentialHash, Entry, Keyed>>,
    ttl: Duration,
    /// Credentials the stores did not know, until when that answer is kept. Keyed with a
    /// random hasher: unlike `entries`, its keys are hashes of whatever clients send.
    unknown: Arc<Map<CredentialHash, Timestamp, RandomState>>,
    unknown_ttl: Duration,
    /// When the cache was last emptied (loads begun before then are not kept).
    cleared_at: Arc<parking_lot::Mutex<Option<Instant>>>,
    /// Loads in progress, so that concurrent misses of one credential share one load.
    loading: Arc<parking_lot::Mutex<HashMap<CredentialHash, watch::Receiver<Option<Flight>>>>>,
    /// When each credential was last revoked.
    revoked_credentials: Arc<Map<CredentialHash, Instant, Keyed>>,
    /// When each user's credentials were last revoked all at once.
    revoked_users: Arc<Map<Uuid, Instant, RandomState>>,
    /// When each session (and the tokens issued for it) was last revoked.
    revoked_sessions: Arc<Map<Uuid, Instant, RandomState>>,
    mark_ttl: Duration,
    clock: Arc<dyn Clock>,
    /// Where evictions are sent for the other replicas, once the fan-out is running.
    fanout: Arc<OnceLock<mpsc::UnboundedSender<Revocation>>>,
    /// Lookups answered from the cache, and those that were not (for the metrics).
    hits: Counter,
    misses: Counter,
}

/// What a load shared with the misses that waited for it came to.
#[derive(Debug, Clone)]
enum Flight {
    Loaded(Arc<Identity>),
    Unknown,
    /// It failed (or was abandoned): each waiter loads for itself.
    Failed,
}

/// The load of one credential, announced to concurrent misses of it; abandoned (dropped
/// without an outcome) it tells them to load for themselves.
struct Leader<'a> {
    hash: CredentialHash,
    loading: &'a parking_lot::Mutex<HashMap<CredentialHash, watch::Receiver<Option<Flight>>>>,
    outcome: watch::Sender<Option<Flight>>,
}

impl Leader<'_> {
    fn finish(self, flight: Flight) {
        self.outcome.send_replace(Some(flight));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.loading.lock().remove(&self.hash);
        self.outcome.send_if_modified(|outcome| {
            let unset = outcome.is_none();
            if unset {
                *outcome = Some(Flight::Failed);
            }
            unset
        });
    }
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
        let capacity_items = usize::try_from(capacity).unwrap_or(usize::MAX);
        let map = |hasher| {
            Map::with(capacity_items, capacity, UnitWeighter, hasher, DefaultLifecycle::default())
        };
        // Marks must outlive any load that started before them; a load takes at most the
        // store's timeouts, far below this.
        let mark_ttl = ttl + Duration::from_secs(60);
        let marks = capacity_items.min(10_000);
        Self {
            entries: Arc::new(map(Keyed::default())),
            ttl,
            unknown: Arc::new(Map::with(
                marks,
                marks as u64,
                UnitWeighter,
                RandomState::new(),
                DefaultLifecycle::default(),
            )),
            unknown_ttl: ttl.min(UNKNOWN_TTL),
            loading: Arc::default(),
            cleared_at: Arc::default(),
            revoked_credentials: Arc::new(Map::with(
                marks,
                marks as u64,
                UnitWeighter,
                Keyed::default(),
                DefaultLifecycle::default(),
            )),
            revoked_users: Arc::new(marks_by_id(marks)),
            revoked_sessions: Arc::new(marks_by_id(marks)),
            mark_ttl,
            clock,
            fanout: Arc::default(),
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    /// The hit and miss counters, to expose as metrics.
    pub fn counters(&self) -> (Counter, Counter) {
        (self.hits.clone(), self.misses.clone())
    }

    /// The cached identity for `hash` while it is fresh (within the cache TTL and before the
    /// credential expires). Never touches a store and never waits.
    pub fn get(&self, hash: &CredentialHash) -> Option<Arc<Identity>> {
        let fresh = self.entries.get(hash).filter(|entry| {
            let fresh = entry.fresh_until > self.clock.now();
            if !fresh {
                self.entries.remove(hash);
            }
            fresh
        });
        match fresh {
            Some(entry) => {
                self.hits.inc();
                Some(entry.identity)
            }
            None => {
                self.misses.inc();
                None
            }
        }
    }

    /// Caches an identity whose load from the store began at `load_started`, unless a
    /// revocation (or an emptying of the cache) happened since then: the load may have read the
    /// state before it. Whether it was kept.
    pub fn insert(
        &self,
        hash: CredentialHash,
        identity: Arc<Identity>,
        load_started: Instant,
    ) -> bool {
        let user_id = identity.user_id;
        let session_id = identity.session_id;
        // Spread over the last tenth of the TTL by the credential (its hash is random), so that
        // identities loaded together (after a restart) are not all reloaded together.
        let jitter = self.ttl / 10 * u32::from(hash.as_bytes()[31]) / 255;
        let fresh_until = self.clock.now().plus(self.ttl - jitter).min(identity.expires_at);
        self.entries.insert(hash, Entry { identity, fresh_until });
        let revoked_since = |mark: Option<Instant>| mark.is_some_and(|at| at >= load_started);
        if revoked_since(self.revoked_credentials.get(&hash))
            || revoked_since(self.revoked_users.get(&user_id))
            || session_id.is_some_and(|id| revoked_since(self.revoked_sessions.get(&id)))
            || revoked_since(*self.cleared_at.lock())
        {
            self.entries.remove(&hash);
            return false;
        }
        true
    }

    /// The cached identity for `hash`, or else the one `load` builds from the store, which is
    /// then cached (unless a revocation raced with the load). `Ok(None)` when `load` finds no
    /// live credential.
    ///
    /// # Errors
    /// Whatever `load` fails with.
    pub async fn get_or_load<E, F>(
        &self,
        hash: CredentialHash,
        load: F,
    ) -> Result<Option<Arc<Identity>>, E>
    where
        F: Future<Output = Result<Option<Identity>, E>>,
    {
        self.get_or_load_noting(hash, || true, move || load, &mut false).await
    }

    /// [`Self::get_or_load`], setting `loaded` when the answer took a load of this request's
    /// own (not the cache, the negative cache, or another request's load): what a failed
    /// credential costs the stores. On a cache miss, a credential that is not `genuine` (its
    /// tag is wrong) is `Ok(None)` without a load. `load` makes the load's future only on a
    /// miss: callers box it there, so that the request's own future (moved whole, and copied,
    /// as it starts) does not carry the store work's state on every cache hit.
    ///
    /// # Errors
    /// Whatever `load` fails with.
    pub async fn get_or_load_noting<E, F>(
        &self,
        hash: CredentialHash,
        genuine: impl FnOnce() -> bool,
        load: impl FnOnce() -> F,
        loaded: &mut bool,
    ) -> Result<Option<Arc<Identity>>, E>
    where
        F: Future<Output = Result<Option<Identity>, E>>,
    {
        if let Some(identity) = self.get(&hash) {
            return Ok(Some(identity));
        }
        // A forgery (its tag is wrong) costs neither a lookup nor a negative-cache entry.
        if !genuine() {
            return Ok(None);
        }
        let now = self.clock.now();
        if self.unknown.get(&hash).is_some_and(|until| until > now) {
            return Ok(None);
        }
        // One load per credential at a time: the others wait for its outcome (a replica that
        // starts, or empties its cache, under load would otherwise send every concurrent
        // request of a user to the stores).
        let leader = {
            let mut loading = self.loading.lock();
            match loading.get(&hash) {
                Some(waiting) => Err(waiting.clone()),
                None => {
                    let (outcome, waiting) = watch::channel(None);
                    loading.insert(hash, waiting);
                    Ok(Leader { hash, loading: &self.loading, outcome })
                }
            }
        };
        let leader = match leader {
            Ok(leader) => Some(leader),
            Err(mut waiting) => {
                let flight = waiting.wait_for(Option::is_some).await.ok().and_then(|f| f.clone());
                match flight {
                    Some(Flight::Loaded(identity)) => return Ok(Some(identity)),
                    Some(Flight::Unknown) => return Ok(None),
                    Some(Flight::Failed) | None => None,
                }
            }
        };
        let load_started = Instant::now();
        *loaded = true;
        let identity = match load().await {
            Ok(Some(identity)) => Arc::new(identity),
            Ok(None) => {
                self.unknown.insert(hash, self.clock.now().plus(self.unknown_ttl));
                if let Some(leader) = leader {
                    leader.finish(Flight::Unknown);
                }
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let kept = self.insert(hash, Arc::clone(&identity), load_started);
        // Revoked while it loaded: requests that waited for it arrived after the revocation
        // began, and load again (this one was in flight before it and keeps its answer).
        if let Some(leader) = leader.filter(|_| kept) {
            leader.finish(Flight::Loaded(Arc::clone(&identity)));
        }
        Ok(Some(identity))
    }

    /// Evicts one credential, here and (with the fan-out) on every replica.
    pub fn evict_credential(&self, hash: &CredentialHash) {
        self.revoke(Revocation::Credential(*hash));
    }

    /// Evicts every credential of a user (logout everywhere, disable, role change).
    pub fn evict_user(&self, user_id: Uuid) {
        self.revoke(Revocation::User(user_id));
    }

    /// Evicts every credential tied to a session: its cookie and the access tokens issued
    /// for it.
    pub fn evict_session(&self, session_id: Uuid) {
        self.revoke(Revocation::Session(session_id));
    }

    fn revoke(&self, revocation: Revocation) {
        self.apply(revocation);
        if let Some(fanout) = self.fanout.get() {
            // The publisher only stops at shutdown; a revocation then is covered by the TTL.
            let _ = fanout.send(revocation);
        }
    }

    /// Applies a revocation here only (one heard from another replica).
    pub fn apply(&self, revocation: Revocation) {
        let now = Instant::now();
        match revocation {
            Revocation::Credential(hash) => {
                self.revoked_credentials.insert(hash, now);
                self.entries.remove(&hash);
            }
            Revocation::User(user_id) => {
                self.revoked_users.insert(user_id, now);
                self.entries.retain(|_, entry| entry.identity.user_id != user_id);
            }
            Revocation::Session(session_id) => {
                self.revoked_sessions.insert(session_id, now);
                self.entries.retain(|_, entry| entry.identity.session_id != Some(session_id));
            }
        }
    }

    /// Empties the cache (after the fan-out was down and revocations may have been missed).
    pub fn clear(&self) {
        // Before emptying: a load in flight that inserts after this sees the mark.
        *self.cleared_at.lock() = Some(Instant::now());
        self.entries.clear();
        self.unknown.clear();
    }

    /// Remembers that the stores do not know (or no longer accept) `hash`, for a few seconds.
    pub fn remember_unknown(&self, hash: CredentialHash) {
        self.unknown.insert(hash, self.clock.now().plus(self.unknown_ttl));
    }

    /// Whether `hash` is cached and fresh, without counting a lookup: whether checking it
    /// would cost a store round trip.
    pub fn holds(&self, hash: &CredentialHash) -> bool {
        let now = self.clock.now();
        self.entries.get(hash).is_some_and(|entry| entry.fresh_until > now)
            || self.unknown.get(hash).is_some_and(|until| until > now)
    }

    /// Sends this cache's evictions to `fanout` from now on.
    pub fn publish_to(&self, fanout: mpsc::UnboundedSender<Revocation>) {
        let _ = self.fanout.set(fanout);
    }

    /// Drops entries that are no longer fresh and revocation marks that no load can race with
    /// any more (called periodically).
    pub fn sweep(&self) {
        let now = self.clock.now();
        self.entries.retain(|_, entry| entry.fresh_until > now);
        self.unknown.retain(|_, until| *until > now);
        let marks_after = Instant::now().checked_sub(self.mark_ttl);
        if let Some(oldest) = marks_after {
            self.revoked_credentials.retain(|_, at| *at > oldest);
            self.revoked_users.retain(|_, at| *at > oldest);
            self.revoked_sessions.retain(|_, at| *at > oldest);
        }
    }

    /// How many identities are cached (approximate).
    pub fn entry_count(&self) -> u64 {
        self.entries.len() as u64
    }
}

fn marks_by_id(capacity: usize) -> Map<Uuid, Instant, RandomState> {
    Map::with(
        capacity,
        capacity as u64,
        UnitWeighter,
        RandomState::new(),
        DefaultLifecycle::default(),
    )
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache")
            .field("entries", &self.entries.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests;
