//! The outermost middleware: request ids, one access-log line per request, the 5xx cause log,
//! and request metrics by route class and status.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue};

use crate::error::ErrorCause;
use crate::metrics::{Metrics, RouteClass};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in its extensions for every later layer.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// What the middleware needs.
#[derive(Debug, Clone)]
pub struct Observer {
    metrics: Arc<Metrics>,
    base_path: Arc<str>,
}

impl Observer {
    /// Classifies paths under `base_path` as auth traffic.
    pub fn new(metrics: Arc<Metrics>, base_path: &str) -> Self {
        Self { metrics, base_path: base_path.into() }
    }

    fn classify(&self, path: &str) -> RouteClass {
        match path.strip_prefix(&*self.base_path) {
            Some("/verify") => RouteClass::Verify,
            Some(rest) if rest.is_empty() || rest.starts_with('/') => RouteClass::Auth,
            _ => RouteClass::Proxy,
        }
    }
}

/// Keeps a client's `X-Request-Id` when it is 1–128 visible ASCII characters, else makes one.
pub fn request_id(candidate: Option<&HeaderValue>) -> HeaderValue {
    let valid = candidate.filter(|value| {
        (1..=128).contains(&value.len())
            && value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b))
    });
    match valid {
        Some(value) => value.clone(),
        None => HeaderValue::from_str(&uuid::Uuid::now_v7().simple().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    }
}

/// The middleware.
pub async fn observe(
    State(observer): State<Observer>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers().get(&X_REQUEST_ID));
    request.extensions_mut().insert(RequestId(id.clone()));
    let class = observer.classify(request.uri().path());
    let method = request.method().clone();
    // The path only: query strings can hold one-time tokens.
    let path = request.uri().path().to_owned();

    let mut response = next.run(request).await;

    response.headers_mut().insert(X_REQUEST_ID, id.clone());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    observer.metrics.record_request(class, status, elapsed.as_secs_f64());
    let request_id = id.to_str().unwrap_or("");
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::error!(request_id, %method, path, status, error = %cause, "request failed");
    }
    if tracing::event_enabled!(target: "portcullis::access", tracing::Level::INFO) {
        tracing::info!(
            target: "portcullis::access",
            request_id,
            class = class.as_str(),
            %method,
            path,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let keep = HeaderValue::from_static("abc-123_XYZ");
        assert_eq!(request_id(Some(&keep)), keep);
        for bad in ["", "has space", &"x".repeat(129)] {
            let value = HeaderValue::from_str(bad).unwrap();
            let id = request_id(Some(&value));
            assert_ne!(id, value);
            assert_eq!(id.len(), 32);
        }
        assert_eq!(request_id(None).len(), 32);
    }

    #[test]
    fn paths_are_classified() {
        let observer = Observer::new(Metrics::new(), "/auth");
        assert_eq!(observer.classify("/auth/login"), RouteClass::Auth);
        assert_eq!(observer.classify("/auth"), RouteClass::Auth);
        assert_eq!(observer.classify("/auth/verify"), RouteClass::Verify);
        assert_eq!(observer.classify("/authors"), RouteClass::Proxy);
        assert_eq!(observer.classify("/"), RouteClass::Proxy);
    }
}
