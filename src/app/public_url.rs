//! The public URL: configured, or derived from the bound listener; what it refuses or warns
//! about at start; and the URL tools beside the server (the CLI's sign-in links) expect.

use std::net::SocketAddr;

use super::StartupError;
use crate::config::{Config, ConfigError, KeyError, PublicUrl};

/// Why the public URL of a server that has not started cannot be known.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnknownPublicUrl {
    /// Neither listener is configured.
    #[error("no listener is configured")]
    NoListener,
    /// No public URL is configured, and the listener's port is chosen when it binds.
    #[error("set server.public_url: the listener's port is chosen at start")]
    PortChosenAtStart,
    /// The listener's address makes no usable URL.
    #[error(transparent)]
    Listener(KeyError),
}

/// The public URL of a server whose listeners were bound at `http` and `https`: checked
/// against the settings that are unsafe on it, with a warning for the ones that are risky.
pub(super) fn decide(
    config: &Config,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
) -> Result<PublicUrl, StartupError> {
    let public_url = match (&config.server.public_url, http, https) {
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
    Ok(public_url)
}

fn derived_url(scheme: &str, addr: SocketAddr) -> Result<PublicUrl, StartupError> {
    url_of_listener(scheme, addr).map_err(|error| {
        StartupError::Config(ConfigError::Invalid(vec![error.under("server.public_url")]))
    })
}

fn url_of_listener(scheme: &str, addr: SocketAddr) -> Result<PublicUrl, KeyError> {
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
pub(crate) fn expected_public_url(config: &Config) -> Result<PublicUrl, UnknownPublicUrl> {
    let server = &config.server;
    if let Some(url) = &server.public_url {
        return Ok(url.clone());
    }
    let listener = match (server.listen, &server.tls) {
        (_, Some(tls)) => ("https", tls.listen),
        (Some(addr), None) => ("http", addr),
        (None, None) => return Err(UnknownPublicUrl::NoListener),
    };
    if listener.1.port() == 0 {
        return Err(UnknownPublicUrl::PortChosenAtStart);
    }
    url_of_listener(listener.0, listener.1).map_err(UnknownPublicUrl::Listener)
}
