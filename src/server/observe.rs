//! Request observation, outermost on the main listener: request ids, one access-log line per
//! request, the 5xx cause log, and request metrics by route class and status.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::response::Response;
use http::{HeaderName, HeaderValue, Method, Request, Uri};

use super::access_log::{AccessLine, AccessLog};
use crate::conn::access::AccessSlot;
use crate::crypto;
use crate::error::ErrorCause;
use crate::metrics::{Metrics, RouteClass};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// Observes requests for one listener.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    metrics: Arc<Metrics>,
    base_path: Arc<str>,
    ids: Arc<RequestIds>,
    hsts: Option<HeaderValue>,
    access_log: AccessLog,
}

/// A request being observed.
#[derive(Debug)]
pub(crate) struct Observation {
    started: Instant,
    id: HeaderValue,
    class: RouteClass,
    method: Method,
    uri: Uri,
    who: Option<AccessSlot>,
}

impl Observation {
    /// Which part of Portcullis answers the request.
    pub(crate) fn class(&self) -> RouteClass {
        self.class
    }
}

impl Observer {
    /// Classifies paths under `base_path` as auth traffic, and writes access lines to
    /// `access_log`.
    pub(crate) fn new(metrics: Arc<Metrics>, base_path: &str, access_log: AccessLog) -> Self {
        Self {
            metrics,
            base_path: base_path.into(),
            ids: Arc::new(RequestIds::new()),
            hsts: None,
            access_log,
        }
    }

    /// Sends `Strict-Transport-Security: <hsts>` on every response, replacing an app's own (the
    /// public URL is https, so browsers should never come back over plain HTTP, and an app
    /// must not be able to switch that off with `max-age=0`).
    #[must_use]
    pub(crate) fn with_hsts(mut self, hsts: Option<HeaderValue>) -> Self {
        self.hsts = hsts;
        self
    }

    fn classify(&self, path: &str) -> RouteClass {
        match path.strip_prefix(&*self.base_path) {
            Some("/verify") => RouteClass::Verify,
            Some(rest) if rest.is_empty() || rest.starts_with('/') => RouteClass::Auth,
            _ => RouteClass::Proxy,
        }
    }

    /// Starts observing: gives the request its id, in its `X-Request-Id` header for every later
    /// layer and the upstream: the client's own when it sent one sane id, else a new one.
    pub(crate) fn start<B>(&self, request: &mut Request<B>) -> Observation {
        let mut sent = request.headers().get_all(&X_REQUEST_ID).iter();
        let id = match (valid_request_id(sent.next()), sent.next()) {
            (Some(id), None) => id.clone(),
            _ => {
                let id = self.ids.next();
                request.headers_mut().insert(X_REQUEST_ID, id.clone());
                id
            }
        };
        let who = AccessLog::enabled().then(AccessSlot::default);
        if let Some(slot) = &who {
            request.extensions_mut().insert(slot.clone());
        }
        Observation {
            started: Instant::now(),
            id,
            class: self.classify(request.uri().path()),
            method: request.method().clone(),
            uri: request.uri().clone(),
            who,
        }
    }

    /// Finishes: sets `X-Request-Id` (and HSTS, and `nosniff` on answers of our own) on the
    /// response, records metrics, logs.
    pub(crate) fn finish(&self, observation: Observation, response: &mut Response) {
        let Observation { started, id, class, method, uri, who } = observation;
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.record_request(class, status, elapsed.as_secs_f64());
        let request_id = id.to_str().unwrap_or("");
        // The path only: query strings can hold one-time tokens.
        let path = uri.path();
        if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
            tracing::error!(request_id, %method, path, status, error = %cause, "request failed");
        }
        if let Some(who) = who {
            let (auth_method, user_id) = match who.get() {
                Some((auth_method, user_id)) => (*auth_method, Some(*user_id)),
                None => ("", None),
            };
            self.access_log.write(&AccessLine {
                request_id,
                class: class.as_str(),
                method: &method,
                path,
                status,
                latency: elapsed,
                auth_method,
                user_id,
            });
        }
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID, id);
        if let Some(hsts) = &self.hsts {
            headers.insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if class != RouteClass::Proxy {
            // Proxied answers are the app's; every error and redirect of our own on the proxy
            // path sets `nosniff` where it is made.
            headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        }
    }
}

/// A client's `X-Request-Id` if it is 1–128 visible ASCII characters.
fn valid_request_id(candidate: Option<&HeaderValue>) -> Option<&HeaderValue> {
    candidate.filter(|value| {
        (1..=128).contains(&value.len())
            && value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b))
    })
}

/// Request ids: a random per-process prefix and a counter, 32 hex digits. Unique across
/// replicas without asking the kernel for randomness on every request.
#[derive(Debug)]
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let random = crypto::random_bytes();
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&random[..8]);
        Self { prefix: u64::from_le_bytes(prefix), counter: AtomicU64::new(0) }
    }

    fn next(&self) -> HeaderValue {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut text = [0u8; 32];
        for (index, value) in [self.prefix, count].into_iter().enumerate() {
            for nibble in 0..16 {
                let shift = 60 - nibble * 4;
                text[index * 16 + nibble] =
                    DIGITS[usize::try_from((value >> shift) & 0xf).unwrap_or(0)];
            }
        }
        // Hex digits are always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;

    #[test]
    fn request_ids_are_kept_only_when_sane_and_made_unique_otherwise() {
        let keep = HeaderValue::from_static("abc-123_XYZ");
        assert_eq!(valid_request_id(Some(&keep)), Some(&keep));
        for bad in ["", "has space", &"x".repeat(129)] {
            assert_eq!(valid_request_id(Some(&HeaderValue::from_str(bad).unwrap())), None);
        }
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(a.as_bytes()[..16], b.as_bytes()[..16], "same process prefix");
    }

    #[test]
    fn paths_are_classified() {
        let observer = Observer::new(Metrics::new(), "/auth", AccessLog::new(LogFormat::Json));
        assert_eq!(observer.classify("/auth/login"), RouteClass::Auth);
        assert_eq!(observer.classify("/auth"), RouteClass::Auth);
        assert_eq!(observer.classify("/auth/verify"), RouteClass::Verify);
        assert_eq!(observer.classify("/authors"), RouteClass::Proxy);
        assert_eq!(observer.classify("/"), RouteClass::Proxy);
    }
}
