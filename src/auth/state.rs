//! The state the auth API's handlers share: the [`Services`], and what sits above them for
//! HTTP (cookies, CSRF, pages, limits, providers, mail, the gateway). Built once per start;
//! handlers take the part they use through [`FromRef`].

use std::sync::Arc;

use axum::extract::FromRef;
use base64::Engine;

use crate::auth::csrf::Csrf;
use crate::auth::oauth::{Providers, outbound};
use crate::auth::pages::Pages;
use crate::auth::rate_limit::{AccountBackoff, IpLimiter};
use crate::clock::Clock;
use crate::config::redirect::RedirectPolicy;
use crate::config::{Config, EphemeralKind, PublicUrl};
use crate::cookies::CookieJar;
use crate::crypto::{self, SecretKey};
use crate::gateway::assertion::AssertionSigner;
use crate::gateway::identify::Credentials;
use crate::gateway::upstream::{Upstream, UpstreamTable};
use crate::gateway::{Gateway, GatewayParts};
use crate::identity::accounts::Accounts;
use crate::identity::api_key::ApiKeyService;
use crate::identity::device::DeviceFlow;
use crate::identity::email_token::EmailTokens;
use crate::identity::key_ring::KeyRing;
use crate::identity::magic_link::MagicLinks;
use crate::identity::one_time::{self, OneTimeLinks};
use crate::identity::org_choice::{self, OrgChoices};
use crate::identity::orgs::Organizations;
use crate::identity::session::SessionService;
use crate::identity::ticket::WsTickets;
use crate::identity::tokens::{TokenService, TokenSettings};
use crate::mail::{MailError, Mailer};
use crate::metrics::Metrics;
use crate::services::{Services, ServicesError};
use crate::store::StoreError;
use crate::store::linked::LinkStore;
use crate::store::sql::Backend;
use crate::store::users::UserStore;

/// Why the state cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The services cannot be opened.
    #[error(transparent)]
    Services(#[from] ServicesError),
    /// A setting or signing key cannot be read or stored.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// A page template does not parse.
    #[error("page templates: {0}")]
    Templates(#[from] minijinja::Error),
    /// Mail cannot be set up.
    #[error("email: {0}")]
    Mail(#[from] MailError),
    /// The HTTP client for sign-in providers cannot be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
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
    /// The stores and the domain services over them (closed at shutdown).
    pub services: Services,
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
    /// Sign-ins waiting for the user to choose an organization.
    pub choices: OrgChoices,
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
}

impl AppState {
    /// Builds the state from the configuration: opens the services, then everything the
    /// handlers and the gateway use on top of them.
    ///
    /// # Errors
    /// See [`StateError`].
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        public_url: &PublicUrl,
        upstreams: Vec<Upstream>,
    ) -> Result<Self, StateError> {
        let services = Services::open(&config, Arc::clone(&clock)).await?;
        let stores = &services;
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
                config.tokens.key_publish_time(),
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
            clock: Arc::clone(&clock),
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
        metrics.register_password_hashes(stores.hasher.runs());
        let services = services.clone();
        Ok(Self(Arc::new(AppStateInner {
            services,
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
            gateway: Arc::new(gateway),
            cookies,
            metrics,
            clock: Arc::clone(&clock),
            links: LinkStore::new(stores.db.clone()),
            choices: org_choice::choices(Arc::clone(&stores.ephemeral)),
            device: DeviceFlow::new(Arc::clone(&stores.ephemeral), Arc::clone(&clock)),
            one_time: one_time::links(Arc::clone(&stores.ephemeral)),
            oauth: Arc::new(Providers::new(&config.providers, &outbound::http_client()?)),
            mailer: Arc::new(Mailer::new(&config.email.mail)?),
            magic: MagicLinks::new(
                Arc::clone(&stores.ephemeral),
                Arc::clone(&clock),
                config.email.link_ttl,
            ),
            email_tokens: EmailTokens::new(Arc::clone(&stores.ephemeral), config.email.link_ttl),
            tokens,
            tickets,
            config: Arc::new(config),
        })))
    }
}

/// `FromRef` for the parts a handler may take alone, each a clone of one field (a few
/// reference counts).
macro_rules! parts {
    ($($part:ty => $($field:ident).+;)*) => {$(
        impl FromRef<AppState> for $part {
            fn from_ref(state: &AppState) -> Self {
                state.$($field).+.clone()
            }
        }
    )*};
}

parts! {
    Services => services;
    Accounts => services.accounts;
    ApiKeyService => services.api_keys;
    Organizations => services.orgs;
    SessionService => services.sessions;
    UserStore => services.users;
    TokenService => tokens;
    Arc<Providers> => oauth;
    Arc<Config> => config;
    Arc<Csrf> => csrf;
    Arc<Metrics> => metrics;
    Arc<Gateway> => gateway;
    Arc<dyn Clock> => clock;
    CookieJar => cookies;
    WsTickets => tickets;
    LinkStore => links;
    DeviceFlow => device;
    Arc<IpLimiter> => ip_limiter;
}
