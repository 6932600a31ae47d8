//! Building and running Portcullis from a [`Config`]: listeners bound, the state built, the
//! listeners served, the background tasks started, and graceful shutdown. Used by `main` and
//! by the end-to-end tests. What the state holds is in [`crate::auth::state`], the stores and domain
//! services in [`crate::services`].

mod background;
mod listeners;
mod public_url;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub(crate) use self::public_url::{UnknownPublicUrl, expected_public_url};
use crate::auth::state::{AppState, StateError};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, KeyError, PublicUrl};
use crate::demo;
use crate::gateway::upstream::Upstream;
use crate::server::access_log;
use crate::server::tls::TlsError;

/// Why Portcullis cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stores, or what is built on them, cannot be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// A listener cannot bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The data plane's threads cannot start (or take over the listeners).
    #[error("cannot start the worker threads: {0}")]
    Workers(#[source] std::io::Error),
}

/// A running Portcullis: its addresses, its state, and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    state: AppState,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    public_url: PublicUrl,
    shutdown: CancellationToken,
    stopped: tokio::task::JoinHandle<()>,
    /// Stops the server when this handle is dropped without [`Running::stop`]: the worker
    /// threads must not outlive it (a test that forgets to stop, a failed caller).
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Running {
    /// The HTTP listener's address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The HTTPS listener's address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The public URL in effect (configured, or derived from the listener).
    pub fn public_url(&self) -> &str {
        self.public_url.as_str()
    }

    /// The application state (stores, services), for tools and tests.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped (after the shutdown token is cancelled): listeners
    /// closed, in-flight requests finished or the shutdown timeout passed.
    pub async fn wait(self) {
        if let Err(error) = self.stopped.await {
            tracing::error!(%error, "shutdown task failed");
        }
        // The last requests' access lines, before the process may exit.
        access_log::flush();
    }

    /// Stops accepting, lets in-flight requests finish (bounded) and returns when done.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }
}

/// Builds and starts Portcullis.
#[derive(Debug)]
pub struct App;

impl App {
    /// Starts with the system clock.
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn start(config: Config) -> Result<Running, StartupError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts with the given clock (tests pass a manual one).
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Running, StartupError> {
        for feature in &config.not_yet_available {
            tracing::warn!("configured but not available in this version, ignored: {feature}");
        }
        // The process default, for clients that pick it themselves (providers, Redis over TLS).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shutdown = CancellationToken::new();
        let bound = listeners::Bound::bind(&config.server).await?;
        let (http_addr, https_addr) = (bound.http_addr(), bound.https_addr());
        let admin_addr = bound.admin_addr();
        let public_url = public_url::decide(&config, http_addr, https_addr)?;
        let upstreams = upstreams_or_demo(&config, &shutdown).await?;
        let state = AppState::build(config, clock, &public_url, upstreams).await?;
        let serving = bound.serve(&state, &public_url, &shutdown)?;
        tokio::spawn(background::sweep(state.clone(), shutdown.clone()));
        let stopped = tokio::spawn(background::drain(serving, state.clone(), shutdown.clone()));
        tracing::info!(
            public_url = public_url.as_str(),
            http = ?http_addr,
            https = ?https_addr,
            admin = ?admin_addr,
            "portcullis is listening"
        );
        let _stop_on_drop = shutdown.clone().drop_guard();
        Ok(Running {
            state,
            http_addr,
            https_addr,
            admin_addr,
            public_url,
            shutdown,
            stopped,
            _stop_on_drop,
        })
    }
}

/// The configured upstreams, or the built-in demo app when there are none (the quick start).
async fn upstreams_or_demo(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Vec<Upstream>, StartupError> {
    if !config.upstreams.is_empty() {
        return Ok(config.upstreams.clone());
    }
    let addr = demo::spawn(shutdown.clone()).await.map_err(|source| StartupError::Bind {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        source,
    })?;
    let demo = Upstream::new("demo", &format!("http://{addr}"), &[], "/", false)
        .map_err(|error| ConfigError::Invalid(vec![KeyError::from(error).under("upstreams")]))?;
    tracing::info!("no upstreams configured: serving the built-in demo app");
    Ok(vec![demo])
}
