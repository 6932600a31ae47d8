//! Building and running Portcullis from a [`Config`]: stores, state, router, listeners,
//! background tasks and graceful shutdown. Used by `main` and by the end-to-end tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use base64::Engine;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth;
use crate::auth::csrf::Csrf;
use crate::auth::oauth::{Providers, outbound};
use crate::auth::pages::Pages;
use crate::auth::rate_limit::{AccountBackoff, IpLimiter};
use crate::auth::redirect::RedirectPolicy;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, EphemeralKind, PublicUrl};
use crate::cookies::CookieJar;
use crate::crypto::password::{PasswordHashError, PasswordHasherPool};
use crate::crypto::signing::KeyRing;
use crate::crypto::tags::{TokenTags, Untagged};
use crate::crypto::{self, SecretKey};
use crate::demo;
use crate::gateway::assertion::AssertionSigner;
use crate::gateway::identify::Credentials;
use crate::gateway::upstream::{Upstream, UpstreamTable};
use crate::gateway::{Gateway, GatewayParts};
use crate::identity::api_key::ApiKeyService;
use crate::identity::cache::IdentityCache;
use crate::identity::device::DeviceFlow;
use crate::identity::email_token::EmailTokens;
use crate::identity::magic_link::MagicLinks;
use crate::identity::one_time::OneTimeLinks;
use crate::identity::org_choice::OrgChoices;
use crate::identity::revocation::{Channel, Fanout};
use crate::identity::session::{SessionLifetimes, SessionService};
use crate::identity::ticket::WsTickets;
use crate::identity::tokens::{TokenService, TokenSettings};
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::server::access_log::{self, AccessLog};
use crate::server::front::Front;
use crate::server::listener::ConnectionLimits;
use crate::server::observe::Observer;
use crate::server::tls::{ReloadingCert, TlsError, server_config};
use crate::server::workers::{Shared, Workers};
use crate::server::{admin, listener};
use crate::store::StoreError;
use crate::store::api_keys::ApiKeyStore;
use crate::store::ephemeral::{
    DatabaseStore, EphemeralStore, MemoryStore, RedisSource, RedisStore,
};
use crate::store::invites::InviteStore;
use crate::store::linked::LinkStore;
use crate::store::orgs::OrgStore;
use crate::store::sql::{Backend, Database};
use crate::store::tokens::FamilyStore;
use crate::store::users::UserStore;

/// Most identities held in the cache; at a few hundred bytes each, about 100 MiB at most.
const CACHE_CAPACITY: u64 = 250_000;
/// How often expired ephemeral entries and idle rate-limit state are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why Portcullis cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database cannot be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] StoreError),
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
    /// argon2 does not work on this machine.
    #[error("password hashing: {0}")]
    Hasher(#[from] PasswordHashError),
    /// A page template does not parse.
    #[error("page templates: {0}")]
    Templates(#[from] minijinja::Error),
    /// Mail cannot be set up.
    #[error("email: {0}")]
    Mail(#[from] crate::mail::MailError),
    /// The HTTP client for sign-in providers cannot be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The data plane's threads cannot start (or take over the listeners).
    #[error("cannot start the worker threads: {0}")]
    Workers(#[source] std::io::Error),
}

/// Application state shared by every handler: one `Arc`, so handing it to a handler is one
/// reference-count increment.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct AppStateInner {
    /// The configuration.
    pub config: Arc<Config>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The SQL database.
    pub db: Database,
    /// Users.
    pub users: UserStore,
    /// Sessions, one-time tokens, counters.
    pub ephemeral: Arc<dyn EphemeralStore>,
    /// Sessions.
    pub sessions: SessionService,
    /// API keys.
    pub api_keys: ApiKeyService,
    /// Access and refresh tokens.
    pub tokens: TokenService,
    /// WebSocket tickets.
    pub tickets: WsTickets,
    /// Device authorization grants.
    pub device: DeviceFlow,
    /// Operator sign-in links.
    pub one_time: OneTimeLinks,
    /// Sign-in providers.
    pub oauth: Arc<Providers>,
    /// Outgoing mail.
    pub mailer: Arc<Mailer>,
    /// Magic links and codes.
    pub magic: MagicLinks,
    /// Verification and reset links.
    pub email_tokens: EmailTokens,
    /// Identities linked at providers.
    pub links: LinkStore,
    /// Organizations and memberships.
    pub orgs: OrgStore,
    /// Organization invites.
    pub invites: InviteStore,
    /// Sign-ins waiting for the user to choose an organization.
    pub choices: OrgChoices,
    /// Password hashing off the async workers.
    pub hasher: PasswordHasherPool,
    /// The proxy.
    pub gateway: Arc<Gateway>,
    /// Our cookies.
    pub cookies: CookieJar,
    /// CSRF tokens and origin checks.
    pub csrf: Arc<Csrf>,
    /// Allowed redirect targets.
    pub redirects: Arc<RedirectPolicy>,
    /// Page templates.
    pub pages: Arc<Pages>,
    /// Per-IP limit on the auth API.
    pub ip_limiter: Arc<IpLimiter>,
    /// Per-account login back-off.
    pub backoff: AccountBackoff,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The stores as opened (closed at shutdown).
    pub stores: Stores,
}

impl AppState {
    /// How many identities are cached, for the metrics gauge.
    pub fn sessions_cached(&self) -> u64 {
        self.sessions.cached_count()
    }

    /// Ends every sign-in of the user: browser sessions and token families (logout
    /// everywhere, disable, password reset). Returns how many ended.
    ///
    /// # Errors
    /// The store fails.
    pub async fn end_all_sign_ins(&self, user_id: uuid::Uuid) -> Result<usize, StoreError> {
        let sessions = self.sessions.end_all(user_id).await?;
        let families = self.tokens.revoke_user(user_id).await?;
        Ok(sessions + families)
    }

    /// Marks the user's email verified on proof of the mailbox (`proof`: a magic link or code,
    /// an invite). An account not verified until now was made, or used, by someone who never
    /// proved the address (an attacker can sign up someone else's address with a password and
    /// wait): its password, sessions, token families and API keys end here, so the mailbox's
    /// owner has the account alone. Said in the log when anything was removed.
    ///
    /// # Errors
    /// The store fails.
    pub async fn verify_by_mailbox(
        &self,
        user: &crate::identity::User,
        proof: &'static str,
    ) -> Result<(), StoreError> {
        if user.email_verified_at.is_some() {
            return Ok(());
        }
        let now = self.clock.now();
        let password = self.users.clear_password(user.id, now).await?;
        let sign_ins = self.end_all_sign_ins(user.id).await?;
        let keys = self.api_keys.revoke_all(user.id).await?;
        self.users.mark_email_verified(user.id, now).await?;
        self.sessions.refresh_user(user.id);
        if password || sign_ins > 0 || keys > 0 {
            tracing::warn!(
                user_id = %user.id,
                proof,
                password_removed = password,
                sign_ins_ended = sign_ins,
                keys_revoked = keys,
                "an unverified account's address was proven: what was set up before the proof \
                 was removed"
            );
        }
        Ok(())
    }
}

/// The stores, opened from the configuration; also used by the admin CLI.
#[derive(Debug, Clone)]
pub struct Stores {
    /// The SQL database.
    pub db: Database,
    /// Users.
    pub users: UserStore,
    /// The ephemeral store.
    pub ephemeral: Arc<dyn EphemeralStore>,
    /// The identity cache every credential kind shares.
    pub cache: IdentityCache,
    /// Sessions.
    pub sessions: SessionService,
    /// API keys.
    pub api_keys: ApiKeyService,
    /// Refresh-token families.
    pub families: FamilyStore,
    /// Tags on the credentials this installation issues.
    pub tags: Arc<TokenTags>,
    /// The revocation fan-out, while it runs.
    fanout: Arc<parking_lot::Mutex<Option<Fanout>>>,
}

impl Stores {
    /// Connects to the database (running migrations) and the ephemeral store, waiting for them
    /// up to `storage.startup_wait`, builds the services and starts the revocation fan-out when
    /// several replicas can share the stores (Redis, or PostgreSQL).
    ///
    /// # Errors
    /// The stores cannot be reached in time, or the database cannot be migrated.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let storage = &config.storage;
        let db = with_startup_retry("the database", storage.startup_wait, || async {
            let db = Database::open(&storage.database_url, storage.max_connections).await?;
            if storage.migrate_on_start {
                db.migrate_through(&storage.database_url, &storage.direct_url).await?;
            } else {
                db.check_migrated().await?;
            }
            Ok(db)
        })
        .await?
        .with_sealer(storage.sealer.clone());
        let users = UserStore::new(db.clone());
        let redis = match &storage.ephemeral {
            EphemeralKind::Redis { url, ca_pem, topology } => {
                Some(RedisSource::new(url, ca_pem.as_deref(), topology)?)
            }
            _ => None,
        };
        let ephemeral: Arc<dyn EphemeralStore> = match &redis {
            None if storage.ephemeral == EphemeralKind::Memory => {
                Arc::new(MemoryStore::new(Arc::clone(&clock)))
            }
            None => Arc::new(DatabaseStore::new(db.clone(), Arc::clone(&clock))),
            Some(source) => {
                let store = with_startup_retry("Redis", storage.startup_wait, || {
                    RedisStore::connect(source.clone(), &storage.redis_prefix, Arc::clone(&clock))
                })
                .await?;
                Arc::new(store)
            }
        };
        let cache =
            IdentityCache::new(config.session.cache_ttl, CACHE_CAPACITY, Arc::clone(&clock));
        let fanout =
            fanout_channel(config, &db, redis).map(|channel| Fanout::start(channel, &cache));
        let lifetimes =
            SessionLifetimes { ttl: config.session.ttl, idle_timeout: config.session.idle_timeout };
        let header_names = Arc::new(config.headers.clone());
        let tags = Arc::new(open_token_tags(&db, &users, config, clock.now()).await?);
        let sessions = SessionService::new(
            Arc::clone(&ephemeral),
            users.clone(),
            cache.clone(),
            Arc::clone(&clock),
            lifetimes,
            Arc::clone(&header_names),
            Arc::clone(&tags),
        );
        let api_keys = ApiKeyService::new(
            ApiKeyStore::new(db.clone()),
            users.clone(),
            cache.clone(),
            clock,
            header_names,
            Arc::clone(&tags),
        );
        let families = FamilyStore::new(db.clone());
        Ok(Self {
            db,
            users,
            ephemeral,
            cache,
            sessions,
            api_keys,
            families,
            tags,
            fanout: Arc::new(parking_lot::Mutex::new(fanout)),
        })
    }

    /// Publishes revocations still queued and closes the database (the CLI calls this before it
    /// exits, so its revocations reach running servers).
    pub async fn close(&self) {
        let fanout = self.fanout.lock().take();
        if let Some(fanout) = fanout {
            fanout.close().await;
        }
        self.db.close().await;
    }
}

/// Where revocations travel between replicas: Redis when it is the ephemeral store, else
/// PostgreSQL; a SQLite deployment is one replica and needs none.
fn fanout_channel(config: &Config, db: &Database, redis: Option<RedisSource>) -> Option<Channel> {
    match redis {
        Some(source) => Some(Channel::Redis {
            source,
            stream: format!("{}revocations", config.storage.redis_prefix),
        }),
        None if db.backend() == Backend::Postgres => Some(Channel::Postgres {
            db: db.clone(),
            url: config.storage.direct_url.clone(),
            channel: "portcullis_revocations".into(),
        }),
        None => None,
    }
}

/// Runs `connect` until it succeeds, fails for a reason other than unavailability, or `wait`
/// has passed: a sidecar often starts before its database is ready.
async fn with_startup_retry<T, F, Fut>(
    what: &str,
    wait: Duration,
    mut connect: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = std::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(250);
    loop {
        match connect().await {
            Err(StoreError::Unavailable(error)) if std::time::Instant::now() + delay < deadline => {
                tracing::warn!(
                    %error,
                    "waiting for {what} (retrying for up to {})",
                    humantime::format_duration(wait)
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The process default, for clients that pick it themselves (providers, Redis over TLS).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shutdown = CancellationToken::new();

        // Bind first: a taken port is the most common start-up failure, and the bound address
        // decides the public URL when none is configured.
        let server = &config.server;
        let http = bind(server.listen).await?;
        let https = match &server.tls {
            Some(tls) => {
                let cert =
                    Arc::new(ReloadingCert::load(&tls.cert, &tls.key, Arc::clone(&provider))?);
                let acceptor = TlsAcceptor::from(server_config(Arc::clone(&cert), provider)?);
                Some((
                    bind(Some(tls.listen)).await?.unwrap_or_else(|| unreachable!("bound above")),
                    cert,
                    acceptor,
                ))
            }
            None => None,
        };
        let admin = bind(server.admin_listen).await?;
        let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
        let https_addr = https.as_ref().and_then(|(l, _, _)| l.local_addr().ok());
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let public_url = match (&server.public_url, http_addr, https_addr) {
            (Some(url), _, _) => url.clone(),
            (None, _, Some(addr)) => derived_url("https", addr)?,
            (None, Some(addr), None) => derived_url("http", addr)?,
            (None, None, None) => unreachable!("config validation requires a listener"),
        };

        let refused = crate::config::public_url_refusals(&config.dev, &config.email, &public_url);
        if !refused.is_empty() {
            return Err(StartupError::Config(ConfigError::Invalid(refused)));
        }
        if config.email.mail.transport == "log" && public_url.is_https() {
            tracing::warn!(
                "MAIL GOES TO THE LOG (email.force_log_transport = true): sign-in links and codes \
                 are printed where anyone reading the logs can use them"
            );
        }
        if public_url.is_https() && !config.storage.sealer.is_sealing() {
            tracing::warn!(
                "storage.secrets_key is not set: token signing keys and the generated auth \
                 secret are kept in the database unencrypted, so a copy of the database can mint \
                 tokens"
            );
        }
        if config.dev.enabled {
            tracing::warn!(
                "DEV SIGN-IN IS ON: anyone who can reach {}{}/dev-sign-in can sign in as any \
                 user. Never run this in production (dev.enabled = false).",
                public_url.as_str().trim_end_matches('/'),
                config.auth.base_path
            );
        }

        let mut upstreams = config.upstreams.clone();
        if upstreams.is_empty() {
            let addr = demo::spawn(shutdown.clone()).await.map_err(|source| {
                StartupError::Bind { addr: SocketAddr::from(([127, 0, 0, 1], 0)), source }
            })?;
            let url = format!("http://{addr}");
            upstreams.push(Upstream::new("demo", &url, &[], "/", false).map_err(|reason| {
                ConfigError::Invalid(vec![crate::config::KeyError {
                    key: "upstreams".into(),
                    reason,
                }])
            })?);
            tracing::info!("no upstreams configured: serving the built-in demo app");
        }

        let state = build_state(config, clock, &public_url, upstreams).await?;
        let main = Arc::new(front(&state, &public_url));
        let admin_router = Arc::new(admin::router(state.clone()));

        let connections = TaskTracker::new();
        let limits = ConnectionLimits {
            max_connections: state.config.server.max_connections,
            idle_timeout: state.config.server.idle_timeout,
        };
        let mut data_plane = Vec::new();
        let shared = |listener, tls| {
            Shared::new(listener, tls, limits.max_connections).map_err(StartupError::Workers)
        };
        if let Some(listener) = http {
            data_plane.push(shared(listener, None)?);
        }
        if let Some((listener, cert, acceptor)) = https {
            let interval = state
                .config
                .server
                .tls
                .as_ref()
                .map_or(Duration::from_secs(10), |t| t.reload_interval);
            tokio::spawn(cert.watch(interval, shutdown.clone()));
            data_plane.push(shared(listener, Some(acceptor))?);
        }
        let workers = match state.config.server.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            count => count,
        };
        let workers = if data_plane.is_empty() {
            None
        } else {
            let started =
                Workers::start(workers, &data_plane, &main, limits, &connections, &shutdown);
            Some(started.map_err(StartupError::Workers)?)
        };
        let mut accept_loops = JoinSet::new();
        if let Some(listener) = admin {
            accept_loops.spawn(listener::serve(
                listener,
                admin_router,
                None,
                limits,
                Arc::new(Semaphore::new(limits.max_connections)),
                connections.clone(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(sweep(state.clone(), shutdown.clone()));

        let stopped = tokio::spawn(drain(
            accept_loops,
            workers,
            connections,
            state.clone(),
            shutdown.clone(),
        ));
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

async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, StartupError> {
    match addr {
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| StartupError::Bind { addr, source }),
        None => Ok(None),
    }
}

fn derived_url(scheme: &str, addr: SocketAddr) -> Result<PublicUrl, StartupError> {
    url_of_listener(scheme, addr).map_err(|reason| {
        StartupError::Config(ConfigError::Invalid(vec![crate::config::KeyError {
            key: "server.public_url".into(),
            reason,
        }]))
    })
}

fn url_of_listener(scheme: &str, addr: SocketAddr) -> Result<PublicUrl, String> {
    // A wildcard bind is reached from this machine on loopback.
    let host =
        if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    PublicUrl::parse(&format!("{scheme}://{host}:{}", addr.port()))
}

/// The public URL a server with `config` will have, for tools that run beside it (the CLI's
/// sign-in links): `server.public_url`, else derived from the configured listener.
///
/// # Errors
/// Neither gives a usable URL (no public URL and a listener on port 0).
pub fn expected_public_url(config: &Config) -> Result<PublicUrl, String> {
    let server = &config.server;
    if let Some(url) = &server.public_url {
        return Ok(url.clone());
    }
    let listener = match (server.listen, &server.tls) {
        (_, Some(tls)) => ("https", tls.listen),
        (Some(addr), None) => ("http", addr),
        (None, None) => return Err("no listener is configured".into()),
    };
    if listener.1.port() == 0 {
        return Err("set server.public_url: the listener's port is chosen at start".into());
    }
    url_of_listener(listener.0, listener.1)
}

async fn build_state(
    config: Config,
    clock: Arc<dyn Clock>,
    public_url: &PublicUrl,
    upstreams: Vec<Upstream>,
) -> Result<AppState, StartupError> {
    let stores = Stores::open(&config, Arc::clone(&clock)).await?;
    let secret = match &config.auth.secret {
        Some(secret) => secret.clone(),
        None => {
            let stored = stores
                .db
                .secret_setting_or_insert("auth_secret", || {
                    base64::engine::general_purpose::STANDARD.encode(crypto::random_bytes())
                })
                .await?;
            stored.into_bytes()
        }
    };
    let metrics = Metrics::new();
    let (hits, misses) = stores.cache.counters();
    metrics.register_identity_cache(hits, misses);
    let mut cookies = CookieJar::new(
        &config.session.cookie_name,
        public_url.is_https(),
        config.session.cookie_domain.clone(),
    );
    if cookies.is_prefixed() {
        // The first start with `__Host-` names: sessions issued before it still come under
        // the old name. System time, as the session ids (UUIDv7) it is compared with.
        let since = stores
            .db
            .setting_or_insert("host_cookies_since_ms", || {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map_or(0, |elapsed| elapsed.as_millis()).to_string()
            })
            .await?;
        cookies = cookies.prefixed_since(since.parse().unwrap_or(0));
    }
    let redirects = config.auth.redirects.clone().with_public_origin(public_url.origin());
    let header_names = Arc::new(config.headers.clone());
    let keys = Arc::new(
        KeyRing::open(
            stores.db.clone(),
            config.tokens.algorithm,
            Arc::clone(&clock),
            key_publish_time(&config),
        )
        .await?,
    );
    let issuer = public_url.as_str().trim_end_matches('/').to_owned();
    let tokens = TokenService::new(
        Arc::clone(&keys),
        stores.families.clone(),
        stores.users.clone(),
        stores.cache.clone(),
        Arc::clone(&clock),
        TokenSettings {
            issuer: issuer.clone(),
            access_ttl: config.tokens.access_ttl,
            refresh_ttl: config.tokens.refresh_ttl,
            tags: Arc::clone(&stores.tags),
        },
        Arc::clone(&header_names),
    );
    let tickets = WsTickets::new(
        Arc::clone(&stores.ephemeral),
        stores.users.clone(),
        stores.sessions.clone(),
        stores.families.clone(),
        Arc::clone(&clock),
        Arc::clone(&header_names),
        Arc::clone(&stores.tags),
    );
    let assertions = config.tokens.assertion_header.then(|| {
        AssertionSigner::new(keys, issuer, config.tokens.assertion_ttl, Arc::clone(&clock))
    });
    let gateway = Gateway::new(GatewayParts {
        routes: config.routes.clone(),
        upstreams: UpstreamTable::new(upstreams),
        credentials: Credentials {
            sessions: stores.sessions.clone(),
            api_keys: stores.api_keys.clone(),
            tokens: tokens.clone(),
            tickets: tickets.clone(),
            cookies: cookies.clone(),
            cache: stores.cache.clone(),
        },
        failed_credentials_per_minute: config.rate_limit.failed_credentials_per_minute,
        assertions,
        cookies: cookies.clone(),
        header_names,
        trusted_proxies: config.server.trusted_proxies.clone(),
        max_body: config.server.max_body,
        upstream_timeout: config.server.upstream_timeout,
        base_path: config.auth.base_path.clone(),
        verify_audience: config.forward_auth.audience.clone(),
        metrics: Arc::clone(&metrics),
    });
    // Half the cores at most: a login storm must leave the proxy CPU to work with.
    let hashers = std::thread::available_parallelism().map_or(1, |cores| cores.get().div_ceil(2));
    let hasher = PasswordHasherPool::new(hashers)?;
    metrics.register_password_hashes(hasher.runs());
    Ok(AppState(Arc::new(AppStateInner {
        pages: Arc::new(Pages::new(&config.email.product_name, config.branding.clone())?),
        // Shared whenever replicas share the ephemeral store: Redis, or the database when it
        // is PostgreSQL.
        ip_limiter: Arc::new(match (&config.storage.ephemeral, stores.db.backend()) {
            (EphemeralKind::Redis { .. }, _) | (EphemeralKind::Database, Backend::Postgres) => {
                IpLimiter::shared(
                    config.rate_limit.auth_per_minute,
                    config.rate_limit.replicas,
                    Arc::clone(&stores.ephemeral),
                    Arc::clone(&clock),
                )
            }
            _ => IpLimiter::new(config.rate_limit.auth_per_minute),
        }),
        backoff: AccountBackoff::new(
            Arc::clone(&stores.ephemeral),
            Arc::clone(&clock),
            config.rate_limit.login_failures_before_backoff,
        ),
        csrf: Arc::new(Csrf::new(SecretKey::new(&secret), redirects.clone(), cookies.clone())),
        redirects: Arc::new(redirects),
        hasher,
        gateway: Arc::new(gateway),
        cookies,
        metrics,
        clock: Arc::clone(&clock),
        stores: stores.clone(),
        links: LinkStore::new(stores.db.clone()),
        orgs: OrgStore::new(stores.db.clone()),
        invites: InviteStore::new(stores.db.clone()),
        choices: OrgChoices::new(Arc::clone(&stores.ephemeral)),
        db: stores.db,
        users: stores.users,
        device: DeviceFlow::new(Arc::clone(&stores.ephemeral), Arc::clone(&clock)),
        one_time: OneTimeLinks::new(Arc::clone(&stores.ephemeral)),
        oauth: Arc::new(Providers::new(&config.providers, &outbound::http_client()?)),
        mailer: Arc::new(Mailer::new(&config.email.mail)?),
        magic: MagicLinks::new(
            Arc::clone(&stores.ephemeral),
            Arc::clone(&clock),
            config.email.link_ttl,
        ),
        email_tokens: EmailTokens::new(Arc::clone(&stores.ephemeral), config.email.link_ttl),
        ephemeral: stores.ephemeral,
        sessions: stores.sessions,
        api_keys: stores.api_keys,
        tokens,
        tickets,
        config: Arc::new(config),
    })))
}

/// The main listener's service: observe (request id, access log, metrics, panics as 500), then
/// the auth API under the base path (with its own rate and body limits) or the gateway.
pub fn front(state: &AppState, public_url: &PublicUrl) -> Front {
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

/// Drops expired ephemeral entries, stale cached identities and idle rate-limit state every
/// minute.
async fn sweep(state: AppState, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // Every replica: in memory the store is this process's own, in Redis this does
        // nothing, in the database it is three deletes by indexed expiry.
        if let Err(error) = state.ephemeral.sweep().await {
            tracing::warn!(%error, "ephemeral store sweep failed");
        }
        match state.db.claim_sweep(state.clock.now(), SWEEP_INTERVAL).await {
            Ok(true) => sweep_shared(&state).await,
            Ok(false) => tracing::debug!("another replica swept the shared tables lately"),
            Err(error) => tracing::warn!(%error, "cannot claim the sweep of the shared tables"),
        }
        // Keys rotated by the CLI or made by another replica start signing here.
        if let Err(error) = state.tokens.keys().reload().await {
            tracing::warn!(%error, "cannot reload signing keys");
        }
        if let Err(error) = state.api_keys.recheck_untagged().await {
            tracing::warn!(%error, "cannot check for untagged API keys");
        }
        state.ip_limiter.shrink();
        state.gateway.shrink_limits();
        state.sessions.sweep_cache();
    }
}

/// How long after the first start that tags credentials older replicas of a rolling upgrade
/// may still issue untagged ones.
const UPGRADE_WINDOW: Duration = Duration::from_secs(86_400);

/// The credential tags: the key (generated once and kept in the database, sealed when
/// `storage.secrets_key` is set, shared by every replica), and which untagged credentials
/// from before tags existed can still be live.
async fn open_token_tags(
    db: &Database,
    users: &UserStore,
    config: &Config,
    now: crate::clock::Timestamp,
) -> Result<TokenTags, StoreError> {
    let key = db
        .secret_setting_or_insert("token_tag_key", || {
            base64::engine::general_purpose::STANDARD.encode(crypto::random_bytes())
        })
        .await?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| StoreError::Corrupt("the token tag key".into()))?;
    // Untagged credentials exist only if someone could have signed in before: a new database
    // has none, and never accepts them.
    let had_users = users.any().await?;
    let since = db
        .setting_or_insert("tagged_tokens_since_ms", || {
            if had_users { now.as_millis() } else { 0 }.to_string()
        })
        .await?;
    let since = since
        .parse()
        .map(crate::clock::Timestamp::from_millis)
        .map_err(|_| StoreError::Corrupt("the setting tagged_tokens_since_ms".into()))?;
    if since.as_millis() == 0 {
        return Ok(TokenTags::new(&key, Untagged::none()));
    }
    let until = |lifetime: Duration| since.plus(lifetime + UPGRADE_WINDOW);
    let api_keys = ApiKeyStore::new(db.clone()).any_live_untagged(now).await?;
    if api_keys {
        tracing::warn!(
            "API keys made before credential tags are live: keys of that format are looked up \
             until none is left (revoke or replace them to close this)"
        );
    }
    let untagged = Untagged {
        sessions_until: until(config.session.ttl),
        refresh_until: until(config.tokens.refresh_ttl),
        tickets_until: until(crate::identity::ticket::TICKET_TTL),
        upgrade_until: since.plus(UPGRADE_WINDOW),
        api_keys: api_keys.into(),
    };
    Ok(TokenTags::new(&key, untagged))
}

/// Deletes what expired from the token, invite and revocation-log tables (one replica per
/// interval).
async fn sweep_shared(state: &AppState) {
    if let Err(error) = state.tokens.sweep().await {
        tracing::warn!(%error, "refresh token sweep failed");
    }
    if let Err(error) = state.invites.sweep(state.clock.now()).await {
        tracing::warn!(%error, "invite sweep failed");
    }
    if state.db.backend() == Backend::Postgres
        && let Err(error) = crate::store::revocations::sweep(&state.db).await
    {
        tracing::warn!(%error, "revocation log sweep failed");
    }
}

/// How long a retired signing key stays published: until every token and assertion it signed
/// has expired, plus clock skew.
pub fn key_publish_time(config: &Config) -> Duration {
    config.tokens.access_ttl.max(config.tokens.assertion_ttl) + Duration::from_secs(120)
}

/// After shutdown is requested: wait for the accept loops to close their listeners, then for
/// open connections to finish (at most `server.shutdown_timeout`), then close the database.
async fn drain(
    mut accept_loops: JoinSet<()>,
    mut workers: Option<Workers>,
    connections: TaskTracker,
    state: AppState,
    shutdown: CancellationToken,
) {
    shutdown.cancelled().await;
    while accept_loops.join_next().await.is_some() {}
    if let Some(workers) = &mut workers {
        workers.stopped_accepting().await;
    }
    // Every connection saw the same token and is shutting down gracefully.
    connections.close();
    let timeout = state.config.server.shutdown_timeout;
    if tokio::time::timeout(timeout, connections.wait()).await.is_err() {
        tracing::warn!(?timeout, "shutdown timeout passed with requests still in flight");
    }
    // Stores first: a connection a worker opened is driven by that worker's runtime.
    state.stores.close().await;
    if let Some(workers) = workers {
        workers.release();
    }
    tracing::info!("portcullis stopped");
}
