//! Compiles [`RawConfig`] into [`Config`], collecting every problem with its key path. One
//! file per group of sections; this one holds the walk over all of them.

mod auth;
mod providers;
mod routes;
mod server;
mod service_tokens;
mod storage;

#[cfg(test)]
pub(crate) use self::service_tokens::service_token;

use std::time::Duration;

use super::raw::RawConfig;
use super::values::parse_duration;
use super::{Config, ConfigError, DevConfig, KeyError, LogFormat, RateLimitConfig, TokensConfig};
use crate::crypto::signing::SigningAlgorithm;
use crate::gateway::policy::RouteTable;
use crate::model::headers::HeaderNames;
use crate::model::org::OrgRoles;

/// Problems found so far.
#[derive(Default)]
struct Errors(Vec<KeyError>);

impl Errors {
    fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(KeyError::new(key, reason));
    }

    /// `Some(value)` if `result` is ok, else records its error placed under `key` (the
    /// section or value the constructor was given).
    fn check<T>(&mut self, key: &str, result: Result<T, impl Into<KeyError>>) -> Option<T> {
        result.map_err(|error| self.0.push(error.into().under(key))).ok()
    }

    /// Records the problems a section's compiler found, their keys placed under `section`.
    fn extend_under(&mut self, section: &str, problems: Vec<KeyError>) {
        self.0.extend(problems.into_iter().map(|problem| problem.under(section)));
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        self.check(key, parse_duration(text)).unwrap_or_default()
    }
}

pub(super) fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut errors = Errors::default();
    let server = server::server(&raw, &mut errors);
    let auth = auth::auth(&raw, server.public_url.as_ref(), &mut errors);
    let storage = storage::storage(&raw, &mut errors);
    let session = auth::session(&raw, &mut errors);
    let forward_auth = server::forward_auth(&raw, &mut errors);
    let tokens = tokens(&raw, &mut errors);
    let rate_limit = RateLimitConfig {
        auth_per_minute: raw.rate_limit.auth_per_minute.0,
        login_failures_before_backoff: raw.rate_limit.login_failures_before_backoff.0,
        failed_credentials_per_minute: raw.rate_limit.failed_credentials_per_minute.0,
        replicas: raw.rate_limit.replicas.0.max(1),
    };
    let email = auth::email(&raw, &mut errors);
    let headers = headers(&raw, &mut errors);
    let upstreams = routes::upstreams(&raw.upstreams, &mut errors);
    let orgs = auth::orgs(&raw, &mut errors);
    let routes = route_table(&raw, &orgs.roles, &mut errors);
    let log = match raw.log.format.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            errors.push("log.format", format!("`{other}` is not one of: pretty, json"));
            LogFormat::Pretty
        }
    };
    let branding = auth::branding(&raw, &mut errors);
    let dev = DevConfig { enabled: raw.dev.enabled.0, force: raw.dev.force.0 };
    if let Some(public_url) = &server.public_url {
        // Caught here too so that check-config reports it; a public URL derived from the
        // listener is checked at start.
        errors.0.extend(super::public_url_refusals(&dev, &email, public_url));
    }
    let providers = providers::providers(&raw, &mut errors);
    let sso_domains = providers::sso_domains(&raw, &providers, &mut errors);
    let service_tokens = service_tokens::service_tokens(&raw, &mut errors);

    if !errors.0.is_empty() {
        return Err(ConfigError::Invalid(errors.0));
    }
    Ok(Config {
        server,
        auth,
        storage,
        forward_auth,
        session,
        tokens,
        rate_limit,
        email,
        headers,
        upstreams,
        routes,
        log,
        branding,
        orgs,
        not_yet_available: Vec::new(),
        dev,
        service_tokens,
        providers,
        sso_domains,
        raw,
    })
}

/// `[tokens]`: lifetimes and the signing algorithm.
fn tokens(raw: &RawConfig, errors: &mut Errors) -> TokensConfig {
    TokensConfig {
        access_ttl: errors.duration("tokens.access_ttl", &raw.tokens.access_ttl),
        refresh_ttl: errors.duration("tokens.refresh_ttl", &raw.tokens.refresh_ttl),
        assertion_header: raw.tokens.assertion_header.0,
        assertion_ttl: errors.duration("tokens.assertion_ttl", &raw.tokens.assertion_ttl),
        algorithm: match raw.tokens.algorithm.as_str() {
            "EdDSA" => SigningAlgorithm::EdDsa,
            "ES256" => SigningAlgorithm::Es256,
            other => {
                errors.push("tokens.algorithm", format!("`{other}` is not one of: EdDSA, ES256"));
                SigningAlgorithm::EdDsa
            }
        },
    }
}

/// `[headers]`: the identity header names, from a preset and overrides.
fn headers(raw: &RawConfig, errors: &mut Errors) -> HeaderNames {
    let h = &raw.headers;
    errors
        .check(
            "headers",
            HeaderNames::new(
                &h.preset,
                [
                    ("user_id", &h.user_id),
                    ("email", &h.email),
                    ("name", &h.name),
                    ("roles", &h.roles),
                    ("org_id", &h.org_id),
                    ("org_role", &h.org_role),
                    ("scopes", &h.scopes),
                    ("method", &h.method),
                    ("assertion", &h.assertion),
                    ("locale", &h.locale),
                ],
            ),
        )
        .unwrap_or_default()
}

/// `[[routes]]`, in order.
fn route_table(raw: &RawConfig, org_roles: &OrgRoles, errors: &mut Errors) -> RouteTable {
    let mut routes = RouteTable::new(
        raw.routes
            .iter()
            .enumerate()
            .filter_map(|(index, route)| routes::route(index, route, org_roles, errors))
            .collect(),
    );
    if !raw.auth.allowed_email_domains.0.is_empty() {
        // An address counts as in an allowed domain only once its owner proved it.
        routes = routes.requiring_verified_email();
    }
    routes
}

#[cfg(test)]
mod tests;
