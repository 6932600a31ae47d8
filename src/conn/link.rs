//! Connection affinity: an HTTP/1.1 client connection owns one HTTP/1.1 connection to its
//! upstream and sends its requests on it in turn, as nginx and pingora do.
//!
//! Requests on an HTTP/1.1 client connection come one at a time, so they need no pool: the
//! client connection's task hands each request to its own upstream connection, with no pool
//! lookup, no lock shared with other connections and no idle list. HTTP/2 clients (many
//! streams at once), HTTP/2 upstreams and WebSocket upgrades use the shared pool instead.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How long a connection to the upstream may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An upstream as a link sees it: told apart from others by its name, reached at its
/// authority. The gateway's `Upstream` is one.
pub(crate) trait LinkTarget {
    /// The upstream's name.
    fn name(&self) -> &str;
    /// The name, shared: kept with a connection to say whose it is.
    fn shared_name(&self) -> &Arc<str>;
    /// `host:port` of the upstream, for connecting.
    fn authority(&self) -> &str;
}

/// Why a request could not be sent on the connection's own upstream connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// Connecting to the upstream failed.
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[from] std::io::Error),
    /// Connecting to the upstream took longer than the connect timeout.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The upstream did not answer by the deadline.
    #[error("the upstream did not answer in time")]
    Timeout,
}

/// One client connection's upstream connection, when it has one: kept between requests, taken
/// out while a request uses it.
#[derive(Debug, Default)]
pub(crate) struct AffineLink {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: Option<Held>,
    /// The connection's one timer for upstream deadlines, kept between requests (see
    /// [`AffineLink::send`]).
    timer: Option<Pin<Box<Sleep>>>,
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
    pub(crate) fn holds_other(&self, upstream: &impl LinkTarget) -> bool {
        self.state.lock().held.as_ref().is_some_and(|held| *held.upstream != *upstream.name())
    }

    /// Sends `request` (its URI in origin form) to `upstream` on this connection's upstream
    /// connection, opening one when there is none, it is busy or closed, or it leads to another
    /// upstream, and waits for the response headers until `deadline`. A kept connection that the
    /// upstream closed meanwhile is replaced and the request sent again, since it was never
    /// written.
    ///
    /// The deadline is kept by one timer per connection, re-armed lazily as nginx does: a timer
    /// still set for an earlier request's deadline (which is never later) fires early, and is
    /// then moved to the current one. Most requests are answered long before, so they neither
    /// create a timer nor move one in the timer wheel.
    ///
    /// # Errors
    /// The upstream cannot be reached, the exchange fails, or the deadline passes.
    pub(crate) async fn send(
        &self,
        upstream: &impl LinkTarget,
        request: Request<Body>,
        deadline: Instant,
    ) -> Result<Response<Incoming>, LinkError> {
        let (kept, timer) = {
            let mut state = self.state.lock();
            (state.held.take(), state.timer.take())
        };
        let mut timer = match timer {
            Some(mut timer) => {
                if timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let mut exchange = std::pin::pin!(exchange(kept, upstream, request));
        let answered = std::future::poll_fn(|cx| {
            if let Poll::Ready(answered) = exchange.as_mut().poll(cx) {
                return Poll::Ready(answered);
            }
            while timer.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(LinkError::Timeout));
                }
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await;
        let mut state = self.state.lock();
        state.timer = Some(timer);
        let (response, keep) = answered?;
        state.held = keep;
        Ok(response)
    }
}

/// One request on the kept connection (`kept`) or a new one; the connection to keep afterwards.
async fn exchange(
    kept: Option<Held>,
    upstream: &impl LinkTarget,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Option<Held>), LinkError> {
    let kept = kept.filter(|held| *held.upstream == *upstream.name() && !held.sender.is_closed());
    let (mut sender, request) = match kept {
        Some(mut held) => match held.sender.ready().await {
            Ok(()) => match held.sender.try_send_request(request).await {
                Ok(response) => return Ok((response, Some(held))),
                Err(mut failed) => match failed.take_message() {
                    // Not written: the connection had closed. Try a fresh one.
                    Some(request) => (Box::pin(connect(upstream)).await?, request),
                    None => return Err(failed.into_error().into()),
                },
            },
            Err(_closed) => (Box::pin(connect(upstream)).await?, request),
        },
        // Connecting is boxed: its future is large and rarely needed, and would otherwise
        // make every request's future (which is moved whole) as large.
        None => (Box::pin(connect(upstream)).await?, request),
    };
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let upstream = Arc::clone(upstream.shared_name());
    Ok((response, Some(Held { upstream, sender })))
}

/// A new HTTP/1.1 connection to `upstream`, driven by a task of its own until the last
/// request on it is done and the link drops it.
async fn connect(upstream: &impl LinkTarget) -> Result<SendRequest<Body>, LinkError> {
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
pub(crate) fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query().map_or_else(|| Uri::from_static("/"), |path| Uri::from(path.clone()))
}
