//! A per-client limit on failed credential checks (`rate_limit.failed_credentials_per_minute`).
//!
//! A well-formed credential that is not cached costs a store lookup, and a client can make up
//! as many as it likes. Past the limit, a client's credentials are checked against the cache
//! only, until its budget recovers: cached sessions and keys (of other users behind the same
//! address) go on working, new ones are answered 429 without touching a store.
//!
//! Counted in this process (GCRA, via `governor`): the point is to keep the stores' load
//! bounded whatever clients send, and a shared counter would itself be a store operation per
//! failure. With N replicas a client gets at most N times the limit.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;

/// The program's clock as governor reads it ([`Clock::elapsed`], which never goes back), so
/// that budgets move with the clock every other lifetime uses: a manual one in the tests, which
/// then do not depend on how fast the machine sends requests.
#[derive(Debug, Clone)]
struct AppClock(Arc<dyn Clock>);

impl governor::clock::Clock for AppClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Per-client budgets on [`AppClock`].
type Limiter =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, AppClock, NoOpMiddleware<Duration>>;

/// How many clients can be remembered as over the limit at once.
const BLOCKED_CAPACITY: usize = 10_000;

/// Failed credential checks per client address.
#[derive(Debug)]
pub(crate) struct FailedCredentials {
    limiter: Option<Limiter>,
    clock: AppClock,
    /// Clients over the limit, and until when.
    blocked: quick_cache::sync::Cache<IpAddr, Duration>,
    /// Whether any client may be over the limit: requests skip the lookup otherwise.
    armed: AtomicBool,
}

impl FailedCredentials {
    /// A limit of `per_minute` failed checks per client (0: no limit), on `clock`.
    pub(crate) fn new(per_minute: u32, clock: Arc<dyn Clock>) -> Self {
        let clock = AppClock(clock);
        let limiter = NonZeroU32::new(per_minute).map(|n| {
            RateLimiter::new(Quota::per_minute(n), DefaultKeyedStateStore::default(), clock.clone())
        });
        Self {
            limiter,
            clock,
            blocked: quick_cache::sync::Cache::new(BLOCKED_CAPACITY),
            armed: AtomicBool::new(false),
        }
    }

    /// Whether `client` (a [`crate::conn::peer::client_key`]) is over its limit now, so that
    /// its credentials may be checked against the cache only. One atomic load while no client
    /// is.
    pub(crate) fn is_over(&self, client: impl FnOnce() -> IpAddr) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        let now = self.clock.now();
        self.blocked.get(&client()).is_some_and(|until| until > now)
    }

    /// Counts a failed check by `client`; how long it must wait when that put it over.
    pub(crate) fn failed(&self, client: IpAddr) -> Option<Duration> {
        let limiter = self.limiter.as_ref()?;
        let not_until = limiter.check_key(&client).err()?;
        let now = self.clock.now();
        let wait = not_until.wait_time_from(now);
        self.blocked.insert(client, now + wait);
        self.armed.store(true, Ordering::SeqCst);
        Some(wait)
    }

    /// Forgets clients whose budget has recovered (called periodically).
    pub(crate) fn shrink(&self) {
        let Some(limiter) = &self.limiter else { return };
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let now = self.clock.now();
        self.blocked.retain(|_, until| *until > now);
        if self.blocked.is_empty() {
            self.armed.store(false, Ordering::SeqCst);
            // A client blocked meanwhile (its `failed` set the flag before we cleared it).
            if !self.blocked.is_empty() {
                self.armed.store(true, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_failures_is_held_back_and_others_are_not() {
        let failures = FailedCredentials::new(3, Arc::new(crate::clock::SystemClock));
        let (bad, good): (IpAddr, IpAddr) =
            ("203.0.113.9".parse().unwrap(), "::1".parse().unwrap());
        assert!(!failures.is_over(|| unreachable!("no lookup while nobody is over")));
        for _ in 0..3 {
            assert_eq!(failures.failed(bad), None, "within the burst");
        }
        assert!(!failures.is_over(|| bad));
        let wait = failures.failed(bad).expect("over the limit");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(failures.is_over(|| bad));
        assert!(!failures.is_over(|| good));

        let off = FailedCredentials::new(0, Arc::new(crate::clock::SystemClock));
        for _ in 0..100 {
            assert_eq!(off.failed(bad), None);
        }
        assert!(!off.is_over(|| bad));
    }
}
