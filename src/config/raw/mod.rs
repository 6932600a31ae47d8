//! The configuration file's schema as written: serde structs with the embedded defaults.
//!
//! Every key of the configuration reference (`config.example.toml`) is here, with its default,
//! and unknown keys are refused. Nothing is interpreted: `compile/` turns this into the typed
//! [`super::Config`]. The tables of entries (upstreams, routes, providers, SSO domains, service
//! tokens) are in `entries.rs`.

mod entries;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::entries::{RawProvider, RawRoute, RawServiceToken, RawSsoDomain, RawUpstream};
use super::values::{Count, Flag, StringList};

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[server]`
    pub server: RawServer,
    /// `[auth]`
    pub auth: RawAuth,
    /// `[storage]`
    pub storage: RawStorage,
    /// `[forward_auth]`
    pub forward_auth: RawForwardAuth,
    /// `[session]`
    pub session: RawSession,
    /// `[tokens]`
    pub tokens: RawTokens,
    /// `[rate_limit]`
    pub rate_limit: RawRateLimit,
    /// `[email]`
    pub email: RawEmail,
    /// `[headers]`
    pub headers: RawHeaders,
    /// `[[upstreams]]`
    pub upstreams: Vec<RawUpstream>,
    /// `[[routes]]`
    pub routes: Vec<RawRoute>,
    /// `[providers.NAME]`
    pub providers: BTreeMap<String, RawProvider>,
    /// `[[sso_domains]]`
    pub sso_domains: Vec<RawSsoDomain>,
    /// `[orgs]`
    pub orgs: RawOrgs,
    /// `[log]`
    pub log: RawLog,
    /// `[branding]`
    pub branding: RawBranding,
    /// `[dev]`
    pub dev: RawDev,
    /// `[service_tokens.NAME]`
    pub service_tokens: BTreeMap<String, RawServiceToken>,
}

/// `[server]`: listeners and proxy limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// HTTP listener address; empty to disable.
    pub listen: String,
    /// HTTPS listener address.
    pub tls_listen: Option<String>,
    /// PEM certificate chain.
    pub tls_cert: Option<String>,
    /// PEM private key.
    pub tls_key: Option<String>,
    /// How often the certificate files are checked for changes.
    pub tls_reload_interval: String,
    /// The URL browsers use; defaults from the listener.
    pub public_url: Option<String>,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`); empty to disable.
    pub admin_listen: String,
    /// CIDRs whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: StringList,
    /// Largest request body forwarded or accepted.
    pub max_body: String,
    /// Time allowed for the upstream to send response headers.
    pub upstream_timeout: String,
    /// Time allowed for in-flight requests to finish on shutdown.
    pub shutdown_timeout: String,
    /// Longest wait between two chunks of a request body (added key).
    pub body_read_timeout: String,
    /// A connection with no request open this long is closed (added key; HTTP/1.1 keep-alive
    /// connections wait at most 30 s for their next request in any case).
    pub idle_timeout: String,
    /// Most open connections per listener; more are refused (added key).
    pub max_connections: Count,
    /// Threads serving the main listeners, each with its own single-threaded runtime; 0: one
    /// per CPU the process may use (added key).
    pub workers: Count,
    /// `Strict-Transport-Security` max-age when `public_url` is https; `0s` sends none (added
    /// key).
    pub hsts_max_age: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: "10s".into(),
            public_url: None,
            admin_listen: "127.0.0.1:9090".into(),
            trusted_proxies: StringList::default(),
            max_body: "10MiB".into(),
            upstream_timeout: "60s".into(),
            shutdown_timeout: "30s".into(),
            body_read_timeout: "30s".into(),
            idle_timeout: "60s".into(),
            max_connections: Count(10_000),
            workers: Count(0),
            hsts_max_age: "365d".into(),
        }
    }
}

/// `[auth]`: the auth API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Path prefix of the auth API.
    pub base_path: String,
    /// HMAC secret (32+ bytes); generated and kept in the database when absent.
    pub secret: Option<String>,
    /// Whether unknown emails may create accounts.
    pub signup: Flag,
    /// Whether a password sign-up waits for the link or code mailed to the address before the
    /// account exists, answering the same for new and taken addresses (added key).
    pub signup_confirm: Flag,
    /// Email domains allowed to sign up; empty for any.
    pub allowed_email_domains: StringList,
    /// Absolute redirect origins allowed besides relative paths.
    pub redirect_origins: StringList,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            base_path: "/auth".into(),
            secret: None,
            signup: Flag(true),
            signup_confirm: Flag(false),
            allowed_email_domains: StringList::default(),
            redirect_origins: StringList::default(),
        }
    }
}

/// `[storage]`: durable and ephemeral stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// `database`, `redis` or `memory`.
    pub ephemeral: String,
    /// Redis URL for `ephemeral = "redis"`.
    pub redis_url: String,
    /// Prefix of every Redis key and of the revocation channel (added key).
    pub redis_prefix: String,
    /// PEM file of the CA(s) that sign Redis's certificate, for `rediss://` with a private CA
    /// (added key; default: the system's roots).
    pub redis_ca_file: Option<String>,
    /// The master set Redis Sentinel watches (added key): when set, the primary is the one the
    /// Sentinels name, asked again on every reconnection, and `redis_url` says only how to
    /// speak to it (scheme, user, password, database), not where it is.
    pub redis_sentinel_master: Option<String>,
    /// The Sentinels, `host:port` (port 26379 when left out) (added key).
    pub redis_sentinels: StringList,
    /// The Sentinels' own password, when they have one (added key).
    pub redis_sentinel_password: Option<String>,
    /// Seed nodes of a Redis Cluster, `host:port` (added key): when set, Portcullis speaks
    /// cluster (keys routed by slot, MOVED and ASK followed) and `redis_url` says only how
    /// (scheme, user, password).
    pub redis_cluster_nodes: StringList,
    /// A PostgreSQL URL that bypasses a connection pooler (PgBouncer), for what needs a session
    /// of its own: the revocation listener (`LISTEN`) and migrations (added key; default:
    /// `database_url`).
    pub database_direct_url: Option<String>,
    /// Whether the server applies pending migrations when it starts (added key); with `false`
    /// it refuses to start until `portcullis migrate` has run.
    pub migrate_on_start: bool,
    /// Largest number of pooled database connections.
    pub max_connections: Count,
    /// How long startup waits for the database and Redis to answer (added key).
    pub startup_wait: String,
    /// Base64 of 32 random bytes: seals the signing keys and the generated auth secret in the
    /// database (added key; `secrets_key_file` for a mounted secret).
    pub secrets_key: Option<String>,
    /// Keys that still open values sealed before a rotation (added key).
    pub secrets_key_previous: StringList,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            database_url: "sqlite://portcullis.db".into(),
            ephemeral: "database".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "portcullis:".into(),
            redis_ca_file: None,
            redis_sentinel_master: None,
            redis_sentinels: StringList::default(),
            redis_sentinel_password: None,
            redis_cluster_nodes: StringList::default(),
            database_direct_url: None,
            migrate_on_start: true,
            max_connections: Count(10),
            startup_wait: "30s".into(),
            secrets_key: None,
            secrets_key_previous: StringList::default(),
        }
    }
}

/// `[forward_auth]`: where `GET /auth/verify` reads the original request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardAuth {
    /// Headers that may carry the original URI; two that disagree are refused.
    pub uri_headers: StringList,
    /// Headers that may carry the original method.
    pub method_headers: StringList,
    /// Headers that may carry the original host, else the request's `Host` (added key).
    pub host_headers: StringList,
    /// `aud` of the `X-Auth-Assertion` answered (added key; default: the name of the
    /// upstream that serves the original host and path).
    pub audience: Option<String>,
}

impl Default for RawForwardAuth {
    fn default() -> Self {
        Self {
            uri_headers: StringList(vec!["X-Original-URI".into(), "X-Forwarded-Uri".into()]),
            method_headers: StringList(vec![
                "X-Original-Method".into(),
                "X-Forwarded-Method".into(),
            ]),
            host_headers: StringList(vec!["X-Forwarded-Host".into()]),
            audience: None,
        }
    }
}

/// `[session]`: the session cookie and its lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    /// Cookie name.
    pub cookie_name: String,
    /// Absolute lifetime.
    pub ttl: String,
    /// Sliding idle lifetime.
    pub idle_timeout: String,
    /// How long an identity stays in the in-process cache.
    pub cache_ttl: String,
    /// Cookie `Domain`, to share across subdomains; empty for host-only.
    pub cookie_domain: String,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            cookie_name: "portcullis_session".into(),
            ttl: "7d".into(),
            idle_timeout: "24h".into(),
            cache_ttl: "30s".into(),
            cookie_domain: String::new(),
        }
    }
}

/// `[tokens]`: JWT access and refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    /// Access token lifetime.
    pub access_ttl: String,
    /// Refresh token lifetime.
    pub refresh_ttl: String,
    /// Whether forwarded requests carry `X-Auth-Assertion`.
    pub assertion_header: Flag,
    /// Lifetime of an `X-Auth-Assertion` (added key).
    pub assertion_ttl: String,
    /// Signing algorithm for tokens and assertions: `EdDSA` or `ES256` (added key).
    pub algorithm: String,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            access_ttl: "15m".into(),
            refresh_ttl: "30d".into(),
            assertion_header: Flag(true),
            assertion_ttl: "5m".into(),
            algorithm: "EdDSA".into(),
        }
    }
}

/// `[rate_limit]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Requests per minute per client IP on `/auth/*`.
    pub auth_per_minute: Count,
    /// Failed logins on one account before back-off starts.
    pub login_failures_before_backoff: Count,
    /// Failed credential checks (unknown, expired or forged cookies, keys, tokens) per minute
    /// per client IP, after which its credentials are checked against the cache only.
    pub failed_credentials_per_minute: Count,
    /// How many replicas usually run, for the per-IP limit's fallback while its shared count is
    /// unreachable (added key).
    pub replicas: Count,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            auth_per_minute: Count(20),
            login_failures_before_backoff: Count(5),
            failed_credentials_per_minute: Count(120),
            replicas: Count(1),
        }
    }
}

/// `[email]`: mail transport and templates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEmail {
    /// `log`, `file` or `smtp`.
    pub transport: String,
    /// The `From` address.
    pub from: String,
    /// Lifetime of emailed links and codes.
    pub link_ttl: String,
    /// Product name in subjects and pages.
    pub product_name: String,
    /// Directory overriding the built-in templates.
    pub templates_dir: Option<String>,
    /// Directory for the `file` transport.
    pub file_dir: Option<String>,
    /// SMTP URL for the `smtp` transport.
    pub smtp_url: Option<String>,
    /// Allows the `log` transport with an https public URL.
    pub force_log_transport: Flag,
}

impl Default for RawEmail {
    fn default() -> Self {
        Self {
            transport: "log".into(),
            from: "Portcullis <no-reply@localhost>".into(),
            link_ttl: "15m".into(),
            product_name: "Portcullis".into(),
            templates_dir: None,
            file_dir: None,
            smtp_url: None,
            force_log_transport: Flag(false),
        }
    }
}

/// `[headers]`: identity header names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    /// `portcullis` or `oauth2-proxy`.
    pub preset: String,
    /// Override for the user id header.
    pub user_id: Option<String>,
    /// Override for the email header.
    pub email: Option<String>,
    /// Override for the display name header.
    pub name: Option<String>,
    /// Override for the roles header.
    pub roles: Option<String>,
    /// Override for the active organization header.
    pub org_id: Option<String>,
    /// Override for the organization role header.
    pub org_role: Option<String>,
    /// Override for the scopes header.
    pub scopes: Option<String>,
    /// Override for the authentication method header.
    pub method: Option<String>,
    /// Override for the signed assertion header.
    pub assertion: Option<String>,
    /// Header for the user's locale (added key; off unless named, e.g. `X-Auth-Locale`).
    pub locale: Option<String>,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            preset: "portcullis".into(),
            user_id: None,
            email: None,
            name: None,
            roles: None,
            org_id: None,
            org_role: None,
            scopes: None,
            method: None,
            assertion: None,
            locale: None,
        }
    }
}

/// `[orgs]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOrgs {
    /// Ask users with several organizations to choose one at login.
    pub require_selection: Flag,
    /// Organization role names.
    pub roles: StringList,
    /// How long an emailed invite works.
    pub invite_ttl: String,
}

impl Default for RawOrgs {
    fn default() -> Self {
        Self {
            require_selection: Flag(false),
            roles: StringList(vec!["owner".into(), "admin".into(), "member".into()]),
            invite_ttl: "7d".into(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `pretty` or `json`.
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self { format: "pretty".into() }
    }
}

/// `[branding]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBranding {
    /// Logo shown on pages.
    pub logo_url: Option<String>,
    /// Accent colour (`#rrggbb`).
    pub accent_color: Option<String>,
}

/// `[dev]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDev {
    /// Enables `POST /auth/dev-sign-in`.
    pub enabled: Flag,
    /// Allows dev mode with an https public URL.
    pub force: Flag,
}
