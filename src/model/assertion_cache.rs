//! The signed `X-Auth-Assertion` values of one identity, by audience: kept with the identity in
//! the cache, so that an assertion is signed once per identity and upstream, not per request.

use std::sync::Arc;

use http::HeaderValue;
use parking_lot::RwLock;

use crate::clock::Timestamp;

/// Signed assertions of one identity, by audience.
#[derive(Default)]
pub struct AssertionCache(RwLock<Vec<Cached>>);

struct Cached {
    audience: Arc<str>,
    reuse_until: Timestamp,
    value: HeaderValue,
}

impl AssertionCache {
    /// The assertion for `audience`, while it may still be reused.
    pub fn get(&self, audience: &str, now: Timestamp) -> Option<HeaderValue> {
        let cached = self.0.read();
        cached
            .iter()
            .find(|cached| &*cached.audience == audience && cached.reuse_until > now)
            .map(|cached| cached.value.clone())
    }

    /// Keeps `value` for `audience` until `reuse_until`, replacing the one before.
    pub fn put(&self, audience: &Arc<str>, reuse_until: Timestamp, value: HeaderValue) {
        let mut cached = self.0.write();
        cached.retain(|cached| *cached.audience != **audience);
        cached.push(Cached { audience: Arc::clone(audience), reuse_until, value });
    }
}

/// A copy starts empty: cached signatures belong to the identity they were made for.
impl Clone for AssertionCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for AssertionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionCache").field("audiences", &self.0.read().len()).finish()
    }
}
