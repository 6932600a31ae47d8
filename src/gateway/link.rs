//! Connection affinity: an HTTP/1.1 client connection owns one HTTP/1.1 connection to its
//! upstream and sends its requests on it in turn, as nginx and pingora do.
//!
//! Requests on an HTTP/1.1 client connection come one at a time, so they need no pool: the
//! client connection's task hands each request to its own upstream connection, with no pool
//! lookup, no lock shared with other connections and no idle list. HTTP/2 clients (many
//! streams at once), HTTP/2 upstreams and WebSocket upgrades use the shared pool instead.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::upstream::Upstream;

/// How long a connection to the upstream may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request could not be sent on the connection's own upstream connection.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Connecting to the upstream failed.
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[from] std::io::Error),
    /// Connecting to the upstream took longer than the connect timeout.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// One client connection's upstream connection, when it has one: kept between requests, taken
/// out while a request uses it.
#[derive(Debug, Default)]
pub struct AffineLink {
    held: Mutex<Option<Held>>,
}

#[derive(Debug)]
struct Held {
    /// Which upstream it is connected to.
    upstream: Arc<str>,
    sender: SendRequest<Body>,
}

impl AffineLink {
    /// Whether this link holds a connection to another upstream than `upstream`: a request for
    /// `upstream` then takes the pool, and the kept connection stays for the requests that
    /// go back to its own upstream (no connection is opened and closed per alternation).
    pub fn holds_other(&self, upstream: &Upstream) -> bool {
        self.held.lock().as_ref().is_some_and(|held| *held.upstream != *upstream.name())
    }

    /// Sends `request` (its URI in origin form) to `upstream` on this connection's upstream
    /// connection, opening one when there is none, it is busy or closed, or it leads to another
    /// upstream. A kept connection that the upstream closed meanwhile is replaced and the
    /// request sent again, since it was never written.
    ///
    /// # Errors
    /// The upstream cannot be reached, or the exchange fails.
    pub async fn send(
        &self,
        upstream: &Upstream,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, LinkError> {
        let kept = self.held.lock().take();
        let kept =
            kept.filter(|held| *held.upstream == *upstream.name() && !held.sender.is_closed());
        let (mut sender, request) = match kept {
            Some(mut held) => match held.sender.ready().await {
                Ok(()) => match held.sender.try_send_request(request).await {
                    Ok(response) => {
                        self.keep(held);
                        return Ok(response);
                    }
                    Err(mut failed) => match failed.take_message() {
                        // Not written: the connection had closed. Try a fresh one.
                        Some(request) => (Box::pin(connect(upstream)).await?, request),
                        None => return Err(failed.into_error().into()),
                    },
                },
                Err(_closed) => (Box::pin(connect(upstream)).await?, request),
            },
            // Connecting is boxed: its future is large and rarely needed, and would
            // otherwise make every request's future (which is moved whole) as large.
            None => (Box::pin(connect(upstream)).await?, request),
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let upstream = Arc::clone(upstream.shared_name());
        self.keep(Held { upstream, sender });
        Ok(response)
    }

    fn keep(&self, held: Held) {
        *self.held.lock() = Some(held);
    }
}

/// A new HTTP/1.1 connection to `upstream`, driven by a task of its own until the last
/// request on it is done and the link drops it.
async fn connect(upstream: &Upstream) -> Result<SendRequest<Body>, LinkError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream.authority()))
        .await
        .map_err(|_| LinkError::ConnectTimeout)??;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// `uri` in origin form (path and query), as an HTTP/1.1 request to the origin server is
/// written.
pub fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query().map_or_else(|| Uri::from_static("/"), |path| Uri::from(path.clone()))
}
