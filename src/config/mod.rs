//! Configuration: the TOML schema, loading with environment overrides, and compilation into
//! typed values the rest of the program uses without parsing anything again.
//!
//! `raw.rs` is the file as written (with the embedded defaults), `load.rs` reads it, and
//! `compile/` turns it into [`Config`], reporting every problem with its key path.

mod compile;
mod key_error;
#[cfg(test)]
pub(crate) use self::compile::service_token as compile_service_token;
pub(crate) mod load;
pub(crate) mod raw;
pub(crate) mod redirect;
mod storage;
pub(crate) mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::crypto::signing::SigningAlgorithm;
use crate::gateway::forward_auth::ForwardAuthConfig;
use crate::gateway::policy::RouteTable;
use crate::gateway::upstream::Upstream;
use crate::model::headers::HeaderNames;
pub(crate) use key_error::KeyError;
pub use raw::RawConfig;
use redirect::RedirectPolicy;
pub(crate) use storage::{EphemeralKind, StorageConfig};

/// Why the configuration cannot be used; every variant names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// File path.
        path: String,
        /// The parser's message with line and column.
        message: String,
    },
    /// An environment override does not fit the schema.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// Variable name.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// A `*_file` secret could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    SecretFile {
        /// The `*_file` key.
        key: String,
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key is unknown or has the wrong type.
    #[error("{}{reason}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Schema {
        /// Key path, e.g. `server.listen` or `routes[2].access`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Values are well-formed TOML but unusable; all problems are listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<KeyError>),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners and proxy limits.
    pub server: ServerConfig,
    /// The auth API.
    pub auth: AuthConfig,
    /// Stores.
    pub storage: StorageConfig,
    /// Where forward-auth reads the original request.
    pub forward_auth: ForwardAuthConfig,
    /// Session cookie and lifetimes.
    pub session: SessionConfig,
    /// Token lifetimes.
    pub tokens: TokensConfig,
    /// Rate limits.
    pub rate_limit: RateLimitConfig,
    /// Product name and mail settings.
    pub email: EmailConfig,
    /// Identity header names.
    pub headers: HeaderNames,
    /// Upstream apps; empty means the built-in demo echo app.
    pub upstreams: Vec<Upstream>,
    /// Route policy.
    pub routes: RouteTable,
    /// Log output format.
    pub log: LogFormat,
    /// Page branding.
    pub branding: Branding,
    /// `[orgs]`: organization roles, selection at login, invites.
    pub orgs: OrgsConfig,
    /// Configured sections whose features this version does not serve yet (warned at start).
    pub not_yet_available: Vec<String>,
    /// `[dev]`: development-only sign-in.
    pub dev: DevConfig,
    /// `[providers.NAME]`, compiled, by name.
    pub providers: Vec<crate::identity::providers::Provider>,
    /// `[[sso_domains]]`: email domain (lower case) → provider name.
    pub sso_domains: Vec<(String, String)>,
    /// `[service_tokens.NAME]`, compiled.
    pub service_tokens:
        std::collections::BTreeMap<String, crate::identity::service_token::ServiceToken>,
    /// The configuration as loaded, for `check-config`.
    pub raw: RawConfig,
}

impl Config {
    /// Loads from `path` (or embedded defaults) with overrides from `env`, and validates.
    ///
    /// # Errors
    /// Any [`ConfigError`]; validation lists every invalid key.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::try_from(load::load(path, env)?)
    }

    /// The embedded defaults, as used with no config file and no environment.
    ///
    /// # Errors
    /// Never in practice: the defaults are valid (a unit test checks).
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::try_from(RawConfig::default())
    }

    /// Parses TOML text (no environment), for tests and tools.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table = text.parse::<toml::Table>().map_err(|error| ConfigError::Syntax {
            path: "<inline>".into(),
            message: error.to_string(),
        })?;
        Self::try_from(load::deserialize(table)?)
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        compile::compile(raw)
    }
}

/// `[orgs]`, compiled.
#[derive(Debug, Clone)]
pub struct OrgsConfig {
    /// Users with several organizations choose one at login.
    pub require_selection: bool,
    /// The organization role names.
    pub roles: crate::model::org::OrgRoles,
    /// How long an emailed invite works.
    pub invite_ttl: Duration,
}

/// `[server]`, compiled.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// HTTP listener, if enabled.
    pub listen: Option<SocketAddr>,
    /// HTTPS listener, if enabled.
    pub tls: Option<TlsConfig>,
    /// The configured public URL; when absent it is derived from the bound listener.
    pub public_url: Option<PublicUrl>,
    /// Admin listener, if enabled.
    pub admin_listen: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request body, in bytes.
    pub max_body: u64,
    /// Time allowed for upstream response headers.
    pub upstream_timeout: Duration,
    /// Time allowed for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// Longest wait between two chunks of a request body.
    pub body_read_timeout: Duration,
    /// How long a connection may stay open with no request.
    pub idle_timeout: Duration,
    /// Most open connections per listener.
    pub max_connections: usize,
    /// Threads serving the main listeners (0: one per CPU the process may use).
    pub workers: usize,
    /// `Strict-Transport-Security` max-age (zero: none).
    pub hsts_max_age: Duration,
}

/// The HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// PEM certificate chain path.
    pub cert: PathBuf,
    /// PEM private key path.
    pub key: PathBuf,
    /// How often the files are checked for a replacement.
    pub reload_interval: Duration,
}

/// The URL browsers use to reach Portcullis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    url: url::Url,
    origin: String,
}

impl PublicUrl {
    /// Parses an absolute http(s) URL.
    ///
    /// # Errors
    /// Not a URL, not http(s), or without a host: an error in the value, for the caller to
    /// place under its key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let url = url::Url::parse(text)
            .map_err(|error| KeyError::value(format!("not a URL: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(KeyError::value("expected an http:// or https:// URL with a host"));
        }
        let origin = url.origin().ascii_serialization();
        Ok(Self { url, origin })
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether browsers reach us over https (turns on `Secure` cookies).
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// The URL as text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }
}

/// `[auth]`, compiled.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Path prefix of the auth API, e.g. `/auth` (no trailing slash).
    pub base_path: String,
    /// Configured HMAC secret; when absent one is generated and kept in the database.
    pub secret: Option<Vec<u8>>,
    /// Whether unknown emails may create accounts.
    pub signup: bool,
    /// Whether a password sign-up is finished by the mailed link or code (the account is made
    /// then), so that its answer is the same for new and taken addresses.
    pub signup_confirm: bool,
    /// Lower-case email domains allowed to sign up; empty for any.
    pub allowed_email_domains: Vec<String>,
    /// Where redirects may point besides relative paths.
    pub redirects: RedirectPolicy,
}

impl AuthConfig {
    /// Whether an address at `domain` may sign up (`allowed_email_domains`; empty: any).
    pub fn domain_may_sign_up(&self, domain: &str) -> bool {
        crate::model::email::domain_allowed(&self.allowed_email_domains, domain)
    }
}

/// `[session]`, compiled.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Cookie name.
    pub cookie_name: String,
    /// Absolute lifetime.
    pub ttl: Duration,
    /// Sliding idle lifetime.
    pub idle_timeout: Duration,
    /// In-process identity cache lifetime.
    pub cache_ttl: Duration,
    /// Cookie domain, if shared across subdomains.
    pub cookie_domain: Option<String>,
}

/// `[dev]`, compiled.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevConfig {
    /// `POST /auth/dev-sign-in` exists.
    pub enabled: bool,
    /// Dev sign-in may run with an https public URL.
    pub force: bool,
}

impl DevConfig {
    /// Whether dev sign-in may run with this public URL: never behind https unless forced,
    /// because an https URL means real users.
    ///
    /// # Errors
    /// The reason it may not, at `enabled` (relative to `[dev]`).
    pub fn check(&self, public_url: &PublicUrl) -> Result<(), KeyError> {
        if self.enabled && public_url.is_https() && !self.force {
            return Err(KeyError::new(
                "enabled",
                format!(
                    "dev sign-in lets anyone sign in as anyone: refused with the https public URL {} \
                 (set dev.force = true only if this really is a development machine)",
                    public_url.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// `[tokens]`, compiled.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Whether `X-Auth-Assertion` is sent upstream.
    pub assertion_header: bool,
    /// Lifetime of an assertion.
    pub assertion_ttl: Duration,
    /// How tokens and assertions are signed.
    pub algorithm: SigningAlgorithm,
}

impl TokensConfig {
    /// How long a retired signing key stays published: until every token and assertion it
    /// signed has expired, plus clock skew.
    pub fn key_publish_time(&self) -> Duration {
        self.access_ttl.max(self.assertion_ttl) + Duration::from_secs(120)
    }
}

/// `[rate_limit]`, compiled.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Requests per minute per client IP on `/auth/*` (0 disables).
    pub auth_per_minute: u32,
    /// Failed logins on one account before back-off (0 disables).
    pub login_failures_before_backoff: u32,
    /// Failed credential checks per minute per client IP before its uncached credentials are
    /// refused unchecked (0 disables).
    pub failed_credentials_per_minute: u32,
    /// How many replicas usually run: each one's share of `auth_per_minute` while the shared
    /// count is unreachable.
    pub replicas: u32,
}

/// `[email]`, compiled (the parts this version uses).
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// Product name in pages and mail.
    pub product_name: String,
    /// Lifetime of emailed links and codes.
    pub link_ttl: Duration,
    /// Transport and templates.
    pub mail: crate::mail::MailSettings,
    /// The `log` transport may run with an https public URL.
    pub force_log_transport: bool,
}

impl EmailConfig {
    /// Whether mail may go to the log with this public URL: never behind https unless forced,
    /// because the log transport prints sign-in links and codes, and anyone who reads the logs
    /// of a real deployment could then sign in as its users.
    ///
    /// # Errors
    /// The reason it may not, at `transport` (relative to `[email]`).
    pub fn check(&self, public_url: &PublicUrl) -> Result<(), KeyError> {
        if self.mail.transport == "log" && public_url.is_https() && !self.force_log_transport {
            return Err(KeyError::new(
                "transport",
                format!(
                    "the log mail transport prints sign-in links and codes to the log: refused with \
                 the https public URL {} (set email.transport = \"smtp\" with email.smtp_url, or \
                 email.force_log_transport = true only if nobody else reads these logs)",
                    public_url.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// Everything `dev` and `email` refuse to run with `public_url`, as key errors.
pub(crate) fn public_url_refusals(
    dev: &DevConfig,
    email: &EmailConfig,
    public_url: &PublicUrl,
) -> Vec<KeyError> {
    [
        dev.check(public_url).map_err(|error| error.under("dev")),
        email.check(public_url).map_err(|error| error.under("email")),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect()
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[branding]`, compiled.
#[derive(Debug, Clone, Default)]
pub struct Branding {
    /// Logo URL shown on pages.
    pub logo_url: Option<String>,
    /// Accent colour, validated as `#rgb` or `#rrggbb`.
    pub accent_color: Option<String>,
}
