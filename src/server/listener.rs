//! The accept loop: HTTP/1.1 and HTTP/2 (by ALPN on TLS, by preface on plain TCP), WebSocket
//! upgrades, a cap on open connections, idle connections closed, and graceful shutdown of every
//! connection it started.

use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::TrackedBody;
use super::front::Serve;
use crate::conn::activity::Activity;
use crate::conn::peer::Peer;
use crate::error::ErrorCode;

/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection closed for being idle may take to go (see the accept loop).
const IDLE_GRACE: Duration = Duration::from_secs(1);
/// How often an HTTP/2 connection is pinged, and how long the ping may go unanswered before
/// the connection is dropped: a peer that vanished (half-open TCP) does not hold it forever.
const HTTP2_PING: Duration = Duration::from_secs(20);

/// What the accept loop enforces on every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Most connections open at once; more are refused.
    pub max_connections: usize,
    /// A connection with no request open this long is closed.
    pub idle_timeout: Duration,
}

/// What the loop answers a connection over the limit with, in the API's error format (plain
/// HTTP only: a TLS client is simply closed, since answering needs a handshake the limit
/// exists to avoid).
fn over_limit() -> Vec<u8> {
    let body = serde_json::json!({
        "error": ErrorCode::Overloaded.as_str(),
        "message": "Too many connections, try again shortly",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a connection over the limit with `answer` and closes it, without waiting for
/// anything. The socket leaves the reactor first: a socket just accepted has no readiness
/// there yet, so tokio's `try_write` would often write nothing at all. What the client has
/// already sent is read (one non-blocking read), so that closing does not reset the connection
/// and throw away the answer before the client reads it.
fn refuse(stream: TcpStream, answer: &[u8]) {
    let Ok(stream) = stream.into_std() else { return };
    // Non-blocking: a full buffer just means the client gets a close instead.
    let _ = (&stream).write(answer);
    let mut request = [0u8; 4096];
    let _ = (&stream).read(&mut request);
}

/// Accepts connections until `shutdown`, serving `service` on each; connections are tracked by
/// `connections` so that shutdown can wait for them, and each holds one of `slots` (shared by
/// every loop that accepts on the same listener) while it is open.
pub(crate) async fn serve<S: Serve>(
    listener: TcpListener,
    service: Arc<S>,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    connections: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No per-request header timer: the connection's idle watcher below closes a connection
    // with no request open for `idle_timeout`, and a request is open only once its headers are
    // in, so a client trickling them (slow-loris) is closed by the same watcher. hyper's own
    // timer cost a timer-wheel entry per request, and often a wake-up of the runtime's driver.
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(HTTP2_PING))
        .keep_alive_timeout(HTTP2_PING);
    let builder = Arc::new(builder);
    let over_limit = over_limit();
    let mut refused: u64 = 0;
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refused += 1;
            // A flood must not flood the log too: the 1st, 2nd, 4th, 8th… refusal is logged.
            if refused.is_power_of_two() {
                tracing::warn!(refused, "refused a connection: server.max_connections are open");
            }
            if tls.is_none() {
                refuse(stream, &over_limit);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new(Some(slot), connections.clone());
        let peer = Peer::new(addr, tls.is_some()).on(Arc::clone(&activity));
        let handler = Arc::clone(&service);
        let tracked = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            let handler = Arc::clone(&handler);
            // Counted open from here until its response body is done (or the request dropped).
            let open = tracked.open();
            async move {
                let response = handler.serve(request).await;
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, open)))
            }
        });
        let builder = Arc::clone(&builder);
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let io = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => Either::Right(stream),
                        Ok(Err(error)) => {
                            tracing::debug!(%addr, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%addr, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => Either::Left(stream),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(connection);
            // Once closing gracefully (shutdown, or idle): when the last request had finished.
            let mut closing: Option<u64> = None;
            let result = loop {
                tokio::select! {
                    result = connection.as_mut() => break result,
                    () = shutdown.cancelled(), if closing.is_none() => {
                        closing = Some(activity.last_done_ms());
                        connection.as_mut().graceful_shutdown();
                    }
                    () = activity.idle_for(limits.idle_timeout), if closing.is_none() => {
                        closing = Some(activity.last_done_ms());
                        connection.as_mut().graceful_shutdown();
                    }
                    // A graceful close waits for a request whose headers have started to
                    // arrive (hyper does, on a connection's first request): one that still has
                    // no request open a moment later, and has finished none since, is
                    // trickling them, and is dropped. One that finished a request meanwhile
                    // may still be flushing its answer, and hyper closes it when done.
                    () = tokio::time::sleep(IDLE_GRACE), if closing.is_some() => {
                        if activity.is_idle() && closing == Some(activity.last_done_ms()) {
                            break Ok(());
                        }
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(%addr, %error, "connection ended with an error");
            }
        });
    }
}
