//! The main listener's service: observe the request, then hand it to the auth API (an axum
//! router) or straight to the gateway. Proxied requests never go through axum's routing.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use http::header::CONNECTION;
use http::{HeaderValue, Request, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tower::ServiceExt;

use super::body::TimedBody;
use super::observe::Observer;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::metrics::RouteClass;

/// Something a listener serves.
pub(crate) trait Serve: Send + Sync + 'static {
    /// Answers one request.
    fn serve(&self, request: Request<Incoming>) -> impl Future<Output = Response> + Send;
}

impl Serve for Router {
    fn serve(&self, request: Request<Incoming>) -> impl Future<Output = Response> + Send {
        let router = self.clone();
        async move {
            router.oneshot(request.map(Body::new)).await.unwrap_or_else(|never| match never {})
        }
    }
}

/// The main listener: the auth API under the base path, everything else through the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Front {
    observer: Observer,
    auth: Router,
    gateway: Arc<Gateway>,
    body_read_timeout: Duration,
}

impl Front {
    /// A front serving `auth` under the observer's base path and `gateway` elsewhere, allowing
    /// `body_read_timeout` between chunks of a request body.
    pub(crate) fn new(
        observer: Observer,
        auth: Router,
        gateway: Arc<Gateway>,
        body_read_timeout: Duration,
    ) -> Self {
        Self { observer, auth, gateway, body_read_timeout }
    }

    /// The request with its body boxed, timed when one is coming (a bodiless GET pays for no
    /// timer).
    fn timed(&self, request: Request<Incoming>) -> Request<Body> {
        request.map(|body| {
            if body.is_end_stream() {
                Body::new(body)
            } else {
                Body::new(TimedBody::new(body, self.body_read_timeout))
            }
        })
    }
}

impl Serve for Front {
    async fn serve(&self, mut request: Request<Incoming>) -> Response {
        let observation = self.observer.start(&mut request);
        let class = observation.class();
        let version = request.version();
        let answer = async {
            match class {
                RouteClass::Auth | RouteClass::Verify => {
                    let router = self.auth.clone();
                    let request = self.timed(request);
                    router.oneshot(request).await.unwrap_or_else(|never| match never {})
                }
                RouteClass::Proxy => self
                    .gateway
                    .serve(self.timed(request))
                    .await
                    .unwrap_or_else(|error| ApiError::from(error).into_response()),
            }
        };
        // A panic is a bug: answer 500 in the API format instead of dropping the connection.
        let mut response =
            AssertUnwindSafe(answer).catch_unwind().await.unwrap_or_else(panic_response);
        self.observer.finish(observation, &mut response);
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE && version < Version::HTTP_2 {
            // What is left of the refused body may still be on its way: the connection cannot
            // carry another request, and the client must not try it.
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::internal(std::io::Error::other(format!("handler panicked: {detail}"))).into_response()
}
