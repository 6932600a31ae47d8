//! The data plane's threads: the main listeners are served by `server.workers` threads, each
//! running its own single-threaded runtime, as nginx runs worker processes.
//!
//! A connection lives on the thread that accepted it, with everything it does: its requests,
//! its upstream connection (see `conn::link`), its timers. Nothing moves between threads on
//! the hot path, so no task is stolen, woken across cores or synchronised with another
//! thread's work. Every worker accepts from the same listening socket (one socket, duplicated,
//! not `SO_REUSEPORT`): an idle worker takes the next connection, and a second process cannot
//! bind the port beside us by accident.
//!
//! The control plane (the admin listener, background sweeps, revocation fan-out) stays on the
//! runtime that started the app; stores opened there are used from the workers as they are.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::front::Serve;
use super::listener::{self, ConnectionLimits};

/// A listener the workers share: one socket, its TLS acceptor when it is the HTTPS one, and its
/// connection slots (counted across every worker).
pub(crate) struct Shared {
    socket: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    slots: Arc<Semaphore>,
}

impl Shared {
    /// Shares `listener` (taken off the runtime that bound it), allowing `max_connections`
    /// open at once across all workers.
    ///
    /// # Errors
    /// The socket cannot be taken off its runtime.
    pub(crate) fn new(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        max_connections: usize,
    ) -> std::io::Result<Self> {
        Ok(Self {
            socket: listener.into_std()?,
            tls,
            slots: Arc::new(Semaphore::new(max_connections)),
        })
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("socket", &self.socket)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The running workers, for shutdown.
#[derive(Debug)]
pub(crate) struct Workers {
    /// One per worker: fires when its accept loops have closed their listeners.
    accepting: Vec<oneshot::Receiver<()>>,
    /// Tells workers still waiting for connections to give up (the drain timeout passed).
    release: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers serving `service` on `listeners` until `shutdown`; their
    /// connections are tracked by `connections`.
    ///
    /// # Errors
    /// A socket cannot be duplicated, or the OS refuses a thread or a runtime.
    pub(crate) fn start<S: Serve>(
        count: usize,
        listeners: &[Shared],
        service: &Arc<S>,
        limits: ConnectionLimits,
        connections: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Self> {
        let release = CancellationToken::new();
        let mut accepting = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let mut sockets = Vec::new();
            for shared in listeners {
                let socket = shared.socket.try_clone()?;
                socket.set_nonblocking(true)?;
                sockets.push((socket, shared.tls.clone(), Arc::clone(&shared.slots)));
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (done, waiting) = oneshot::channel();
            accepting.push(waiting);
            let service = Arc::clone(service);
            let connections = connections.clone();
            let shutdown = shutdown.clone();
            let release = release.clone();
            let thread = std::thread::Builder::new()
                .name(format!("portcullis-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let mut loops = tokio::task::JoinSet::new();
                        for (socket, tls, slots) in sockets {
                            match TcpListener::from_std(socket) {
                                Ok(listener) => {
                                    loops.spawn(listener::serve(
                                        listener,
                                        Arc::clone(&service),
                                        tls,
                                        limits,
                                        slots,
                                        connections.clone(),
                                        shutdown.clone(),
                                    ));
                                }
                                Err(error) => {
                                    tracing::error!(%error, "a worker cannot use a listener");
                                }
                            }
                        }
                        while loops.join_next().await.is_some() {}
                        let _ = done.send(());
                        // The connections this worker accepted finish here, on its runtime.
                        tokio::select! {
                            () = connections.wait() => {}
                            () = release.cancelled() => {}
                        }
                    });
                })?;
            threads.push(thread);
        }
        Ok(Self { accepting, release, threads })
    }

    /// Waits until every worker has stopped accepting (after shutdown was asked).
    pub(crate) async fn stopped_accepting(&mut self) {
        for waiting in self.accepting.drain(..) {
            let _ = waiting.await;
        }
    }

    /// Lets the workers end, dropping connections still open (the drain timeout passed, or
    /// they are done).
    pub(crate) fn release(self) {
        self.release.cancel();
        // Threads are not joined: one stuck in a request must not hold the process.
        drop(self.threads);
    }
}
