//! The gateway: every request outside the auth prefix is identified, checked against the route
//! policy and forwarded to its upstream, or refused.
//!
//! Phases, in order ([`authorize`]): read the request one way (host, method, path) → pick the
//! upstream and rule → identify (cache first) → decide; then forward with the
//! [`authorize::Permitted`] or answer the [`authorize::Refusal`]. Forward-auth
//! (`/auth/verify`) runs the same decision on the request a proxy asks about.

pub(crate) mod assertion;
pub(crate) mod authorize;
pub(crate) mod forward;
pub(crate) mod forward_auth;
pub(crate) mod identify;
pub(crate) mod path;
pub(crate) mod pattern;
pub(crate) mod policy;
pub(crate) mod throttle;
pub(crate) mod upstream;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;

use self::assertion::AssertionSigner;
use self::authorize::{Ambiguity, Mode, Permitted, Refusal};
use self::identify::{Credentials, Identified, Presented, Rejection, identify};
use self::policy::{Denial, OnUnauthenticated, RouteTable};
use self::throttle::FailedCredentials;
use self::upstream::UpstreamTable;
use crate::conn::access::AccessSlot;
use crate::conn::peer::{Peer, client_ip, client_key};
use crate::cookies::CookieJar;
use crate::error::{ApiError, ErrorCode};
use crate::identity::session::SessionToken;
use crate::metrics::Metrics;
use crate::model::Identity;
use crate::model::headers::HeaderNames;

/// Why the gateway could not forward a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request has more than one meaning.
    #[error(transparent)]
    Ambiguous(#[from] Ambiguity),
    /// No upstream serves this host and path.
    #[error("no upstream serves this host and path")]
    NoUpstream,
    /// The body is larger than `server.max_body`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The client stopped sending the body (`server.body_read_timeout`).
    #[error("the client stopped sending the request body")]
    BodyTimeout,
    /// The upstream refused the connection or broke it.
    #[error("upstream unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The upstream did not send response headers in time.
    #[error("upstream timed out")]
    Timeout,
    /// A request could not be built (a bug).
    #[error("cannot build the upstream request: {0}")]
    Internal(#[from] http::Error),
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::Ambiguous(problem) => problem.into(),
            GatewayError::NoUpstream => {
                Self::not_found("No app is configured for this host and path")
            }
            GatewayError::PayloadTooLarge => Self::new(
                ErrorCode::PayloadTooLarge,
                "Request body is larger than the configured limit",
            ),
            GatewayError::Unavailable(_) => {
                Self::new(ErrorCode::UpstreamUnavailable, "The app cannot be reached")
                    .with_cause(error)
            }
            GatewayError::BodyTimeout => Self::new(
                ErrorCode::RequestTimeout,
                "The request body stopped arriving; send it without pauses",
            ),
            GatewayError::Timeout => {
                Self::new(ErrorCode::UpstreamTimeout, "The app did not answer in time")
            }
            GatewayError::Internal(_) => Self::internal(error),
        }
    }
}

/// Everything the hot path needs, built once from the configuration.
#[derive(Debug)]
pub struct Gateway {
    routes: RouteTable,
    upstreams: UpstreamTable,
    http1: Client<HttpConnector, Body>,
    http2: Client<HttpConnector, Body>,
    credentials: Credentials,
    failed_credentials: FailedCredentials,
    assertions: Option<AssertionSigner>,
    cookies: CookieJar,
    header_names: Arc<HeaderNames>,
    trusted_proxies: Vec<IpNet>,
    max_body: u64,
    upstream_timeout: Duration,
    base_path: String,
    sign_in_path: String,
    verify_audience: Option<Arc<str>>,
    metrics: Arc<Metrics>,
}

/// What [`Gateway::new`] needs.
#[derive(Debug)]
pub struct GatewayParts {
    /// Route policy.
    pub routes: RouteTable,
    /// Upstreams.
    pub upstreams: UpstreamTable,
    /// Credential lookup.
    pub credentials: Credentials,
    /// Failed credential checks allowed per client and minute (0: no limit).
    pub failed_credentials_per_minute: u32,
    /// Time, for the failed-credential budgets.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Signs `X-Auth-Assertion`, when enabled.
    pub assertions: Option<AssertionSigner>,
    /// Our cookies.
    pub cookies: CookieJar,
    /// Identity header names.
    pub header_names: Arc<HeaderNames>,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest forwarded body.
    pub max_body: u64,
    /// Time allowed for upstream response headers.
    pub upstream_timeout: Duration,
    /// The auth API prefix (for sign-in redirects).
    pub base_path: String,
    /// The audience of forward-auth assertions, when configured (else the upstream's name).
    pub verify_audience: Option<Arc<str>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl Gateway {
    /// Builds the gateway and its pooled upstream clients.
    pub fn new(parts: GatewayParts) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let builder = || {
            let mut builder = Client::builder(TokioExecutor::new());
            // `set_host(false)`: forwarding sets `Host` itself (the client's).
            builder
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(1024)
                .set_host(false);
            builder
        };
        Self {
            routes: parts.routes,
            upstreams: parts.upstreams,
            http1: builder().build(connector.clone()),
            http2: builder().http2_only(true).build(connector),
            credentials: parts.credentials,
            failed_credentials: FailedCredentials::new(
                parts.failed_credentials_per_minute,
                parts.clock,
            ),
            assertions: parts.assertions,
            cookies: parts.cookies,
            header_names: parts.header_names,
            trusted_proxies: parts.trusted_proxies,
            max_body: parts.max_body,
            upstream_timeout: parts.upstream_timeout,
            sign_in_path: format!("{}/sign-in", parts.base_path),
            base_path: parts.base_path,
            verify_audience: parts.verify_audience,
            metrics: parts.metrics,
        }
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The identity header names.
    pub fn header_names(&self) -> &HeaderNames {
        &self.header_names
    }

    /// The upstream table.
    pub fn upstreams(&self) -> &UpstreamTable {
        &self.upstreams
    }

    /// The auth API prefix.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// Proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// The session the request's cookie names, with its token; `Ok(None)` when no session
    /// cookie was sent. See [`identify::session_from_cookie`].
    ///
    /// # Errors
    /// The cookie is present but malformed, ambiguous, unknown, or cannot be checked.
    pub async fn session(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<(SessionToken, Arc<Identity>)>, Rejection> {
        identify::session_from_cookie(headers, &self.credentials.sessions, &self.cookies).await
    }

    /// Identifies the request by its credentials, and says which of ours it carries. A client
    /// over its limit of failed checks gets only the cache's answer.
    pub async fn identify(&self, parts: &Parts) -> (Identified, Presented) {
        let client = || {
            let ip = parts
                .extensions
                .get::<Peer>()
                .map(|peer| client_ip(peer, &parts.headers, &self.trusted_proxies));
            client_key(ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()))
        };
        let throttled = self.failed_credentials.is_over(client);
        let answer = identify(parts, &self.credentials, throttled).await;
        match &answer.0 {
            Identified::Known(identity) => AccessSlot::record(&parts.extensions, identity),
            // Only failures that cost a store lookup: one answered from the cache (a dead
            // cookie a browser keeps sending, a forged JWT) costs nothing and must not let one
            // client lock out an office behind the same address.
            Identified::Rejected(rejection) if rejection.is_failure() && answer.1.looked_up => {
                if let Some(wait) = self.failed_credentials.failed(client()) {
                    tracing::info!(?wait, "a client is over its limit of failed credentials");
                }
            }
            Identified::Rejected(_) | Identified::Anonymous => {}
        }
        answer
    }

    /// Forgets clients whose failed-credential budget has recovered (called periodically).
    pub fn shrink_limits(&self) {
        self.failed_credentials.shrink();
    }

    /// Handles one gateway request end to end: the decision, then forwarding or the refusal.
    ///
    /// # Errors
    /// Anything that stops forwarding an allowed request, as a [`GatewayError`].
    pub async fn serve(&self, request: Request<Body>) -> Result<Response, GatewayError> {
        let (parts, body) = request.into_parts();
        match self.authorize(&parts, Mode::Proxy).await {
            // Boxed: the forwarding future is large, and every future around it would
            // otherwise be copied whole each time it moves.
            Ok(permitted) => Box::pin(forward::forward(self, permitted, parts, body)).await,
            Err(refusal) => Ok(self.refuse(refusal, &parts)),
        }
    }

    /// The answer to a refused request.
    pub fn refuse(&self, refusal: Refusal, parts: &Parts) -> Response {
        match refusal {
            Refusal::Ambiguous(problem) => ApiError::from(problem).into_response(),
            Refusal::Denied { denial, identified } => self.deny(&denial, parts, &identified),
        }
    }

    /// The answer of forward-auth to an allowed request: 200 with every identity header (empty
    /// when the identity lacks the field, so a proxy that copies them overwrites a client's
    /// copy) and, when assertions are on, `X-Auth-Assertion` for the configured audience or
    /// else the upstream that serves the original request.
    pub fn verified(&self, permitted: Permitted<'_>) -> Response {
        let mut response = StatusCode::OK.into_response();
        let identity = permitted.identity().map(AsRef::as_ref);
        let headers = response.headers_mut();
        self.header_names.insert_complete(identity, headers);
        let audience =
            self.verify_audience.as_ref().or(permitted.upstream().map(|u| u.shared_name()));
        if let (Some(signer), Some(identity), Some(audience)) =
            (&self.assertions, identity, audience)
            && let Some(assertion) = signer.header(identity, audience)
        {
            for name in self.header_names.assertion() {
                headers.insert(name.clone(), assertion.clone());
            }
        }
        response
    }

    /// The answer to a request the rule refused.
    pub fn deny(&self, denial: &Denial, parts: &Parts, identified: &Identified) -> Response {
        let mut response = match denial {
            Denial::Unauthenticated { problem, on_unauthenticated } => {
                if wants_redirect(*on_unauthenticated, parts) {
                    self.sign_in_redirect(parts)
                } else {
                    let error =
                        problem.map_or_else(ApiError::unauthorized, |problem| match problem {
                            // A store outage here was already answered as 503 by the policy.
                            Rejection::StoreUnavailable => ApiError::unauthorized(),
                            other => ApiError::from(other),
                        });
                    error.into_response()
                }
            }
            Denial::StoreUnavailable => ApiError::from(Rejection::StoreUnavailable).into_response(),
            Denial::Throttled => ApiError::from(Rejection::Throttled).into_response(),
            Denial::Forbidden(reason) => ApiError::forbidden(reason.message()).into_response(),
        };
        if matches!(identified, Identified::Rejected(Rejection::Malformed | Rejection::Unknown)) {
            // Stop the browser from sending a dead cookie with every request.
            for cookie in self.cookies.clear_session() {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
        }
        response
    }

    /// Where a signed-out browser is sent: the sign-in page, back to the request afterwards.
    pub fn sign_in_location(&self, parts: &Parts) -> Option<HeaderValue> {
        let original = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let target: String = url::form_urlencoded::byte_serialize(original.as_bytes()).collect();
        HeaderValue::from_str(&format!("{}?redirect_uri={target}", self.sign_in_path)).ok()
    }

    fn sign_in_redirect(&self, parts: &Parts) -> Response {
        let mut response = StatusCode::FOUND.into_response();
        let headers = response.headers_mut();
        if let Some(location) = self.sign_in_location(parts) {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        response
    }
}

/// Whether an unauthenticated request should be sent to the sign-in page rather than get 401:
/// a browser navigation (GET or HEAD preferring HTML) under `auto`, always under `redirect`.
pub(crate) fn wants_redirect(on_unauthenticated: OnUnauthenticated, parts: &Parts) -> bool {
    match on_unauthenticated {
        OnUnauthenticated::Redirect => true,
        OnUnauthenticated::Status401 => false,
        OnUnauthenticated::Auto => {
            (parts.method.as_str().eq_ignore_ascii_case("GET")
                || parts.method.as_str().eq_ignore_ascii_case("HEAD"))
                && parts
                    .headers
                    .get(header::ACCEPT)
                    .and_then(|accept| accept.to_str().ok())
                    .is_some_and(prefers_html)
                && parts.headers.get("x-requested-with").is_none()
        }
    }
}

/// Whether an `Accept` header lists `text/html` before (or without) JSON.
fn prefers_html(accept: &str) -> bool {
    let position = |needle: &str| accept.find(needle);
    match (position("text/html"), position("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn parts(method: Method, accept: Option<&'static str>) -> Parts {
        let mut builder = Request::builder().method(method).uri("/x");
        if let Some(accept) = accept {
            builder = builder.header(header::ACCEPT, accept);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn browsers_are_redirected_and_apis_get_401() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_redirect(OnUnauthenticated::Auto, &parts(Method::GET, Some(browser))));
        assert!(wants_redirect(OnUnauthenticated::Auto, &parts(Method::HEAD, Some(browser))));
        assert!(!wants_redirect(OnUnauthenticated::Auto, &parts(Method::POST, Some(browser))));
        assert!(!wants_redirect(
            OnUnauthenticated::Auto,
            &parts(Method::GET, Some("application/json"))
        ));
        assert!(!wants_redirect(
            OnUnauthenticated::Auto,
            &parts(Method::GET, Some("application/json, text/html"))
        ));
        assert!(!wants_redirect(OnUnauthenticated::Auto, &parts(Method::GET, None)));
        assert!(!wants_redirect(OnUnauthenticated::Status401, &parts(Method::GET, Some(browser))));
        assert!(wants_redirect(OnUnauthenticated::Redirect, &parts(Method::POST, None)));
    }
}
