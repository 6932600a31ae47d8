//! Prometheus metrics: one registry per [`crate::App`] (no globals, so tests can run several
//! apps in one process), rendered as text by the admin listener.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which part of Portcullis answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// The `/auth` API and pages.
    Auth,
    /// Forward-auth checks (`/auth/verify`).
    Verify,
    /// Requests forwarded (or refused) by the gateway.
    Proxy,
}

impl RouteClass {
    /// Every class.
    pub const ALL: [Self; 3] = [Self::Auth, Self::Verify, Self::Proxy];

    fn index(self) -> usize {
        match self {
            Self::Auth => 0,
            Self::Verify => 1,
            Self::Proxy => 2,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Verify => "verify",
            Self::Proxy => "proxy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    class: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuthLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

/// Status codes a request counter is kept for without a map lookup (100–599).
const STATUSES: usize = 500;

/// The metrics Portcullis records.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    /// Handles into `requests` by class and status, made on first use: counting a request is
    /// then one atomic add, with no label hashing or lock.
    request_handles: Box<[OnceLock<Counter>]>,
    /// The duration histogram of each class.
    durations: [Histogram; 3],
    upstream_duration: Histogram,
    auth_outcomes: Family<AuthLabels, Counter>,
    cached_identities: Gauge,
    store_up: Family<StoreLabels, Gauge>,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route class and status",
            requests.clone(),
        );
        let durations = Family::<ClassLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "request_duration",
            "Time to answer (response headers), by route class",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let upstream_duration = latency_histogram();
        registry.register_with_unit(
            "upstream_duration",
            "Time from forwarding a request to the upstream's response headers",
            prometheus_client::registry::Unit::Seconds,
            upstream_duration.clone(),
        );
        let auth_outcomes = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_outcomes",
            "Sign-in and credential checks, by method and outcome",
            auth_outcomes.clone(),
        );
        registry.register(
            "store_unavailable",
            "Database or Redis calls that failed for want of the store (connection, timeout)",
            crate::store::UNAVAILABLE.clone(),
        );
        let cached_identities = Gauge::default();
        registry.register(
            "cached_identities",
            "Identities held in the in-process cache",
            cached_identities.clone(),
        );
        let store_up = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "store_up",
            "Whether a shared store answered the last readiness check (1) or not (0)",
            store_up.clone(),
        );
        let durations = RouteClass::ALL
            .map(|class| durations.get_or_create(&ClassLabels { class: class.as_str() }).clone());
        Arc::new(Self {
            registry: Mutex::new(registry),
            requests,
            request_handles: (0..STATUSES * RouteClass::ALL.len())
                .map(|_| OnceLock::new())
                .collect(),
            durations,
            upstream_duration,
            auth_outcomes,
            cached_identities,
            store_up,
        })
    }

    /// Notes whether `store` (`database` or `ephemeral`) answered a readiness check.
    pub fn record_store_up(&self, store: &'static str, up: bool) {
        self.store_up.get_or_create(&StoreLabels { store }).set(i64::from(up));
    }

    /// Counts an answered request and its latency.
    pub fn record_request(&self, class: RouteClass, status: u16, seconds: f64) {
        let index = usize::from(status).checked_sub(100).filter(|index| *index < STATUSES);
        match index {
            Some(index) => {
                let slot = &self.request_handles[class.index() * STATUSES + index];
                slot.get_or_init(|| {
                    self.requests
                        .get_or_create(&RequestLabels { class: class.as_str(), status })
                        .clone()
                })
                .inc();
            }
            None => {
                self.requests.get_or_create(&RequestLabels { class: class.as_str(), status }).inc();
            }
        }
        self.durations[class.index()].observe(seconds);
    }

    /// Records how long an upstream took to answer.
    pub fn record_upstream(&self, seconds: f64) {
        self.upstream_duration.observe(seconds);
    }

    /// Exposes the identity cache's hit and miss counters.
    pub fn register_identity_cache(&self, hits: Counter, misses: Counter) {
        let mut registry = self.registry.lock();
        registry.register(
            "identity_cache_hits",
            "Credential lookups answered from the in-process cache",
            hits,
        );
        registry.register(
            "identity_cache_misses",
            "Credential lookups that went to the stores",
            misses,
        );
    }

    /// Exposes how many password hashes and verifications have run.
    pub fn register_password_hashes(&self, runs: Counter) {
        self.registry.lock().register(
            "password_hashes",
            "Argon2 hashes and verifications run (sign-ups, logins, resets)",
            runs,
        );
    }

    /// Counts an authentication outcome (`method` e.g. `password`, `outcome` e.g. `success`).
    pub fn record_auth(&self, method: &'static str, outcome: &'static str) {
        self.auth_outcomes.get_or_create(&AuthLabels { method, outcome }).inc();
    }

    /// Prometheus text exposition, with point-in-time gauges refreshed first.
    pub fn render(&self, cached_identities: u64) -> String {
        self.cached_identities.set(i64::try_from(cached_identities).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }
}

/// Buckets from 100 µs to ~26 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_class_and_status() {
        let metrics = Metrics::new();
        metrics.record_request(RouteClass::Proxy, 200, 0.001);
        metrics.record_request(RouteClass::Proxy, 200, 0.002);
        metrics.record_request(RouteClass::Auth, 401, 0.003);
        metrics.record_auth("password", "failure");
        let text = metrics.render(7);
        assert!(
            text.contains("portcullis_requests_total{class=\"proxy\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("portcullis_requests_total{class=\"auth\",status=\"401\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "portcullis_auth_outcomes_total{method=\"password\",outcome=\"failure\"} 1"
            )
        );
        assert!(text.contains("portcullis_cached_identities 7"), "{text}");
        assert!(text.contains("portcullis_request_duration_seconds_bucket"), "{text}");
    }
}
