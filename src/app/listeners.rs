//! The listeners: bound first (a taken port is the most common start-up failure, and the bound
//! address decides the public URL when none is configured), then served: the main listeners by
//! the data plane's worker threads, the admin listener on the main runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::StartupError;
use crate::auth;
use crate::auth::state::AppState;
use crate::config::{PublicUrl, ServerConfig};
use crate::server::access_log::AccessLog;
use crate::server::admin::{self, AdminState};
use crate::server::front::Front;
use crate::server::listener;
use crate::server::listener::ConnectionLimits;
use crate::server::observe::Observer;
use crate::server::tls::{ReloadingCert, server_config};
use crate::server::workers::{Shared, Workers};

/// The listeners, bound and not yet served.
pub(super) struct Bound {
    http: Option<TcpListener>,
    https: Option<(TcpListener, Arc<ReloadingCert>, TlsAcceptor)>,
    admin: Option<TcpListener>,
}

/// What serving started: waited for at shutdown.
pub(super) struct Serving {
    /// The admin listener's accept loop.
    pub accept_loops: JoinSet<()>,
    /// The data plane's threads (none when only the admin listener is configured).
    pub workers: Option<Workers>,
    /// Every open connection.
    pub connections: TaskTracker,
}

impl Bound {
    /// Binds every configured listener and loads the TLS certificate.
    pub(super) async fn bind(server: &ServerConfig) -> Result<Self, StartupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let http = bind(server.listen).await?;
        let https = match &server.tls {
            Some(tls) => {
                let cert =
                    Arc::new(ReloadingCert::load(&tls.cert, &tls.key, Arc::clone(&provider))?);
                let acceptor = TlsAcceptor::from(server_config(Arc::clone(&cert), provider)?);
                let listener = TcpListener::bind(tls.listen)
                    .await
                    .map_err(|source| StartupError::Bind { addr: tls.listen, source })?;
                Some((listener, cert, acceptor))
            }
            None => None,
        };
        let admin = bind(server.admin_listen).await?;
        Ok(Self { http, https, admin })
    }

    /// The plain HTTP listener's address.
    pub(super) fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The HTTPS listener's address.
    pub(super) fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// The admin listener's address.
    pub(super) fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves every listener until `shutdown`.
    pub(super) fn serve(
        self,
        state: &AppState,
        public_url: &PublicUrl,
        shutdown: &CancellationToken,
    ) -> Result<Serving, StartupError> {
        let server = &state.config.server;
        let main = Arc::new(front(state, public_url));
        let connections = TaskTracker::new();
        let limits = ConnectionLimits {
            max_connections: server.max_connections,
            idle_timeout: server.idle_timeout,
        };
        let mut data_plane = Vec::new();
        let shared = |listener, tls| {
            Shared::new(listener, tls, limits.max_connections).map_err(StartupError::Workers)
        };
        if let Some(listener) = self.http {
            data_plane.push(shared(listener, None)?);
        }
        if let Some((listener, cert, acceptor)) = self.https {
            let interval =
                server.tls.as_ref().map_or(Duration::from_secs(10), |t| t.reload_interval);
            tokio::spawn(cert.watch(interval, shutdown.clone()));
            data_plane.push(shared(listener, Some(acceptor))?);
        }
        let threads = match server.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            count => count,
        };
        let workers = if data_plane.is_empty() {
            None
        } else {
            let started =
                Workers::start(threads, &data_plane, &main, limits, &connections, shutdown);
            Some(started.map_err(StartupError::Workers)?)
        };
        let mut accept_loops = JoinSet::new();
        if let Some(listener) = self.admin {
            accept_loops.spawn(listener::serve(
                listener,
                Arc::new(admin::router(AdminState::from_ref(state))),
                None,
                limits,
                Arc::new(Semaphore::new(limits.max_connections)),
                connections.clone(),
                shutdown.clone(),
            ));
        }
        Ok(Serving { accept_loops, workers, connections })
    }
}

async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, StartupError> {
    match addr {
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| StartupError::Bind { addr, source }),
        None => Ok(None),
    }
}

/// The main listener's service: observe (request id, access log, metrics, panics as 500), then
/// the auth API under the base path (with its own rate and body limits) or the gateway.
pub(crate) fn front(state: &AppState, public_url: &PublicUrl) -> Front {
    let server = &state.config.server;
    let hsts = (public_url.is_https() && !server.hsts_max_age.is_zero()).then(|| {
        let value = format!("max-age={}", server.hsts_max_age.as_secs());
        http::HeaderValue::from_str(&value)
            .unwrap_or_else(|_| http::HeaderValue::from_static("max-age=31536000"))
    });
    let access_log = AccessLog::new(state.config.log);
    let observer =
        Observer::new(Arc::clone(&state.metrics), &state.config.auth.base_path, access_log)
            .with_hsts(hsts);
    let auth = Router::new()
        .nest(&state.config.auth.base_path, auth::routes(state))
        .with_state(state.clone());
    Front::new(observer, auth, Arc::clone(&state.gateway), server.body_read_timeout)
}
