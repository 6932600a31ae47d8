//! Abuse limits on the auth API: a per-client-IP rate limit (GCRA, via `governor`) and a
//! per-account back-off after repeated failed logins (counters in the ephemeral store, so every
//! replica sharing the store sees them).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::Method;

use crate::auth::error::AuthError;
use crate::clock::{Clock, Timestamp};
use crate::conn::peer::{Peer, client_ip, client_key};
use crate::crypto;
use crate::gateway::Gateway;
use crate::identity::Email;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::ephemeral::EphemeralStore;

/// Window over which failed logins are counted.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longest back-off after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The per-IP limiter for `/auth/*`: GCRA in process (one replica), or a fixed one-minute
/// window counted in the shared ephemeral store when several replicas share Redis, so that
/// spreading requests over replicas does not multiply the limit.
#[derive(Debug)]
pub struct IpLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    shared: Option<SharedWindow>,
}

#[derive(Debug)]
struct SharedWindow {
    store: Arc<dyn EphemeralStore>,
    clock: Arc<dyn Clock>,
    per_minute: u32,
}

impl IpLimiter {
    /// A limiter allowing `per_minute` requests per client in this process (0 disables it).
    pub fn new(per_minute: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self { limiter, shared: None }
    }

    /// A limiter counting in `store`, shared by every replica using it. While the store is
    /// unreachable each replica limits in process to its share, `per_minute` divided by
    /// `replicas`, so that spreading requests over the replicas still meets the limit.
    pub fn shared(
        per_minute: u32,
        replicas: u32,
        store: Arc<dyn EphemeralStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let shared = (per_minute > 0).then(|| SharedWindow { store, clock, per_minute });
        let share = if per_minute == 0 { 0 } else { (per_minute / replicas.max(1)).max(1) };
        Self { shared, ..Self::new(share) }
    }

    /// `Err(seconds to wait)` when `ip` is over its limit. IPv6 clients are limited per /64,
    /// since one host can rotate through a whole /64.
    pub async fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let key = client_key(ip);
        if let Some(shared) = &self.shared {
            match shared.check(key).await {
                Ok(verdict) => return verdict,
                Err(error) => {
                    tracing::warn!(%error, "shared rate limit unavailable: limiting locally")
                }
            }
        }
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Forgets clients whose limit has fully recovered (called periodically).
    pub fn shrink(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

impl SharedWindow {
    async fn check(&self, ip: IpAddr) -> Result<Result<(), u64>, StoreError> {
        let seconds = self.clock.now().as_millis() / 1000;
        let minute = seconds / 60;
        let count = self.store.incr(&format!("rate_ip:{ip}:{minute}"), MINUTE).await?;
        if count <= u64::from(self.per_minute) {
            return Ok(Ok(()));
        }
        let left = 60 - seconds.rem_euclid(60);
        Ok(Err(u64::try_from(left).unwrap_or(60)))
    }
}

/// The shared limiter's window.
const MINUTE: Duration = Duration::from_secs(60);

/// Paths (under the base path) never counted: device-flow polling, which the grant itself
/// paces with `slow_down` and a client repeats every few seconds for minutes. Its secrets are
/// 256-bit, so there is nothing to guess.
const UNLIMITED: [&str; 2] = ["/device/poll", "/token"];

/// Middleware on the auth router: limits every request that can change state or check a
/// secret. Safe reads (`GET`/`HEAD`/`OPTIONS`: the pages, `/me`, `/csrf`, `/verify` on every
/// proxied request in forward-auth mode) are not counted, so a signed-in app cannot exhaust it.
pub(crate) async fn limit_by_ip(
    State(limiter): State<Arc<IpLimiter>>,
    State(gateway): State<Arc<Gateway>>,
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || UNLIMITED.contains(&request.uri().path())
    {
        return next.run(request).await;
    }
    if let Some(peer) = request.extensions().get::<Peer>() {
        let ip = client_ip(peer, request.headers(), gateway.trusted_proxies());
        if let Err(wait) = limiter.check(ip).await {
            metrics.record_auth("rate_limit", "refused");
            return AuthError::RateLimited { retry_after_secs: wait }.into_response();
        }
    }
    next.run(request).await
}

/// Per-account back-off after failed logins.
#[derive(Debug, Clone)]
pub struct AccountBackoff {
    store: Arc<dyn EphemeralStore>,
    clock: Arc<dyn Clock>,
    threshold: u32,
}

impl AccountBackoff {
    /// Back-off starting after `threshold` failures (0 disables it).
    pub fn new(store: Arc<dyn EphemeralStore>, clock: Arc<dyn Clock>, threshold: u32) -> Self {
        Self { store, clock, threshold }
    }

    /// `Err(AuthError::RateLimited)` while the account is backing off.
    ///
    /// # Errors
    /// 429 while locked; 503 if the store is down.
    pub async fn check(&self, email: &Email, client: Option<IpAddr>) -> Result<(), AuthError> {
        if self.threshold == 0 {
            return Ok(());
        }
        let Some(until) = self.store.get(&lock_key(email, client)).await? else { return Ok(()) };
        let until = parse_time(&until)?;
        let wait = self.clock.now().until(until);
        if wait.is_zero() {
            Ok(())
        } else {
            Err(AuthError::RateLimited { retry_after_secs: wait.as_secs().max(1) })
        }
    }

    /// Records a failed login; past the threshold, locks the account for a doubling delay.
    ///
    /// # Errors
    /// The store fails.
    pub async fn record_failure(
        &self,
        email: &Email,
        client: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        if self.threshold == 0 {
            return Ok(());
        }
        let failures = self.store.incr(&failure_key(email, client), FAILURE_WINDOW).await?;
        if let Some(excess) = failures.checked_sub(u64::from(self.threshold)) {
            let backoff = Duration::from_secs(1u64 << excess.min(10)).min(MAX_BACKOFF);
            let until = self.clock.now().plus(backoff);
            self.store
                .put(&lock_key(email, client), until.as_millis().to_string().as_bytes(), backoff)
                .await?;
        }
        Ok(())
    }

    /// Clears the failure count after a successful login.
    ///
    /// # Errors
    /// The store fails.
    pub async fn record_success(
        &self,
        email: &Email,
        client: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        if self.threshold == 0 {
            return Ok(());
        }
        self.store.delete(&failure_key(email, client)).await
    }
}

/// What failures are counted by: the account and the client address together, so that a
/// stranger's failures slow the stranger, never the account's owner elsewhere.
fn attempt_id(email: &Email, client: Option<IpAddr>) -> String {
    let client = client.map(client_key).map_or_else(String::new, |ip| ip.to_string());
    crypto::hex(&crypto::sha256(format!("{}\n{client}", email.as_str()).as_bytes()))
}

fn failure_key(email: &Email, client: Option<IpAddr>) -> String {
    format!("login_failures:{}", attempt_id(email, client))
}

fn lock_key(email: &Email, client: Option<IpAddr>) -> String {
    format!("login_lock:{}", attempt_id(email, client))
}

fn parse_time(bytes: &[u8]) -> Result<Timestamp, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .map(Timestamp::from_millis)
        .ok_or_else(|| StoreError::Corrupt("login lock".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::error::{ApiError, ErrorCode};
    use crate::store::ephemeral::MemoryStore;

    /// Both kinds of limiter: in process, and counted in a (shared) store.
    async fn refuses_past_the_quota_and_groups_ipv6_by_64(make: impl Fn(u32) -> IpLimiter) {
        let limiter = make(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(ip).await.is_ok());
        }
        let wait = limiter.check(ip).await.unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            limiter.check("192.0.2.2".parse().unwrap()).await.is_ok(),
            "other clients are unaffected"
        );

        let limiter = make(1);
        assert!(limiter.check("2001:db8::1".parse().unwrap()).await.is_ok());
        assert!(limiter.check("2001:db8::2".parse().unwrap()).await.is_err(), "same /64");
        assert!(make(0).check(ip).await.is_ok(), "0 disables");
    }

    #[tokio::test]
    async fn ip_limit_in_process() {
        refuses_past_the_quota_and_groups_ipv6_by_64(IpLimiter::new).await;
    }

    #[tokio::test]
    async fn ip_limit_in_a_shared_store_counts_every_replica() {
        let clock = Arc::new(ManualClock::new());
        let store: Arc<dyn EphemeralStore> = Arc::new(MemoryStore::new(clock.clone()));
        let fresh_store =
            || -> Arc<dyn EphemeralStore> { Arc::new(MemoryStore::new(clock.clone())) };
        refuses_past_the_quota_and_groups_ipv6_by_64(|n| {
            IpLimiter::shared(n, 1, fresh_store(), clock.clone())
        })
        .await;
        // Two replicas, one store: the quota is for both together.
        let a = IpLimiter::shared(2, 2, Arc::clone(&store), clock.clone());
        let b = IpLimiter::shared(2, 2, Arc::clone(&store), clock.clone());
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(a.check(ip).await.is_ok());
        assert!(b.check(ip).await.is_ok());
        assert!(a.check(ip).await.is_err());
        assert!(b.check(ip).await.is_err());
        clock.advance(Duration::from_secs(60));
        assert!(b.check(ip).await.is_ok(), "a new minute, a new window");
    }

    /// A store that never answers.
    #[derive(Debug)]
    struct Down;

    #[async_trait::async_trait]
    impl EphemeralStore for Down {
        async fn put(&self, _: &str, _: &[u8], _: Duration) -> Result<(), StoreError> {
            Err(down())
        }
        async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Err(down())
        }
        async fn replace(
            &self,
            _: &str,
            _: &[u8],
            _: &[u8],
            _: Duration,
        ) -> Result<bool, StoreError> {
            Err(down())
        }
        async fn take(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Err(down())
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            Err(down())
        }
        async fn incr(&self, _: &str, _: Duration) -> Result<u64, StoreError> {
            Err(down())
        }
        async fn set_add(&self, _: &str, _: &str, _: Duration) -> Result<(), StoreError> {
            Err(down())
        }
        async fn set_remove(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Err(down())
        }
        async fn set_members(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Err(down())
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Err(down())
        }
        async fn sweep(&self) -> Result<(), StoreError> {
            Err(down())
        }
    }

    fn down() -> StoreError {
        StoreError::unavailable(std::io::Error::other("down"))
    }

    /// While the shared count is unreachable, each of 5 replicas allows its fifth of 10.
    #[tokio::test]
    async fn a_shared_limit_falls_back_to_each_replicas_share() {
        let clock = Arc::new(ManualClock::new());
        let limiter = IpLimiter::shared(10, 5, Arc::new(Down), clock);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(limiter.check(ip).await.is_ok());
        assert!(limiter.check(ip).await.is_ok());
        assert!(limiter.check(ip).await.is_err(), "10 ÷ 5 replicas");
        let alone = IpLimiter::shared(3, 10, Arc::new(Down), Arc::new(ManualClock::new()));
        assert!(alone.check(ip).await.is_ok(), "at least one");
    }

    #[tokio::test]
    async fn failed_logins_back_off_per_account() {
        let clock = ManualClock::new();
        let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let backoff = AccountBackoff::new(store, Arc::new(clock.clone()), 3);
        let ada = Email::parse("ada@example.com").unwrap();
        let bob = Email::parse("bob@example.com").unwrap();
        let stranger: Option<IpAddr> = Some("203.0.113.66".parse().unwrap());
        let home: Option<IpAddr> = Some("198.51.100.7".parse().unwrap());
        for _ in 0..3 {
            assert!(backoff.check(&ada, stranger).await.is_ok());
            backoff.record_failure(&ada, stranger).await.unwrap();
        }
        // The third failure reached the threshold: one-second lock, for the stranger only.
        let error = ApiError::from(backoff.check(&ada, stranger).await.unwrap_err());
        assert_eq!(error.code(), ErrorCode::RateLimited);
        assert!(backoff.check(&ada, home).await.is_ok(), "the owner, elsewhere, is not locked out");
        assert!(backoff.check(&bob, stranger).await.is_ok());
        clock.advance(Duration::from_secs(2));
        assert!(backoff.check(&ada, stranger).await.is_ok());
        backoff.record_failure(&ada, stranger).await.unwrap();
        assert_eq!(
            ApiError::from(backoff.check(&ada, stranger).await.unwrap_err()).retry_after(),
            Some(2),
            "doubles"
        );
        clock.advance(Duration::from_secs(3));
        backoff.record_success(&ada, stranger).await.unwrap();
        backoff.record_failure(&ada, stranger).await.unwrap();
        assert!(backoff.check(&ada, stranger).await.is_ok(), "success resets the count");
    }
}
