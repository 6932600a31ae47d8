//! Compiles [`RawConfig`] into [`Config`], collecting every problem with its key path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::{RawConfig, RawRoute, RawStorage, RawUpstream};
use super::values::{StringList, parse_duration, parse_size};
use super::{
    AuthConfig, Branding, Config, ConfigError, DevConfig, EmailConfig, EphemeralKind,
    ForwardAuthConfig, KeyError, LogFormat, OrgsConfig, PublicUrl, RateLimitConfig, RedisSentinel,
    RedisTopology, ServerConfig, SessionConfig, StorageConfig, TlsConfig, TokensConfig,
};
use crate::auth::redirect::RedirectPolicy;
use crate::crypto::sealed::{SealKey, Sealer};
use crate::crypto::signing::SigningAlgorithm;
use crate::gateway::headers::HeaderNames;
use crate::gateway::path::PathOptions;
use crate::gateway::pattern::PathPattern;
use crate::gateway::policy::{Access, OnUnauthenticated, Route, RouteTable, canonical_method};
use crate::gateway::upstream::Upstream;
use crate::identity::org::OrgRoles;
use crate::identity::service_token::ServiceToken;

/// Problems found so far.
#[derive(Default)]
struct Errors(Vec<KeyError>);

impl Errors {
    fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(KeyError { key: key.into(), reason: reason.into() });
    }

    /// `Some(value)` if `result` is ok, else records the error under `key`.
    fn check<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|reason| self.push(key, reason)).ok()
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        self.check(key, parse_duration(text)).unwrap_or_default()
    }
}

pub(super) fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut errors = Errors::default();
    let server = server(&raw, &mut errors);
    let auth = auth(&raw, server.public_url.as_ref(), &mut errors);
    let storage = storage(&raw, &mut errors);
    let session = session(&raw, &mut errors);
    let forward_auth = forward_auth(&raw, &mut errors);
    let tokens = TokensConfig {
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
    };
    let rate_limit = RateLimitConfig {
        auth_per_minute: raw.rate_limit.auth_per_minute.0,
        login_failures_before_backoff: raw.rate_limit.login_failures_before_backoff.0,
        failed_credentials_per_minute: raw.rate_limit.failed_credentials_per_minute.0,
        replicas: raw.rate_limit.replicas.0.max(1),
    };
    let email = email(&raw, &mut errors);
    let h = &raw.headers;
    let headers = errors
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
        .unwrap_or_default();
    let upstreams = upstreams(&raw.upstreams, &mut errors);
    let orgs = orgs(&raw, &mut errors);
    let mut routes = RouteTable::new(
        raw.routes
            .iter()
            .enumerate()
            .filter_map(|(index, route)| self::route(index, route, &orgs.roles, &mut errors))
            .collect(),
    );
    if !raw.auth.allowed_email_domains.0.is_empty() {
        // An address counts as in an allowed domain only once its owner proved it.
        routes = routes.requiring_verified_email();
    }
    let log = match raw.log.format.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            errors.push("log.format", format!("`{other}` is not one of: pretty, json"));
            LogFormat::Pretty
        }
    };
    let branding = branding(&raw, &mut errors);
    let dev = DevConfig { enabled: raw.dev.enabled.0, force: raw.dev.force.0 };
    if let Some(public_url) = &server.public_url {
        // Caught here too so that check-config reports it; a public URL derived from the
        // listener is checked at start.
        errors.0.extend(super::public_url_refusals(&dev, &email, public_url));
    }
    let mut providers = Vec::new();
    let mut not_yet_available = Vec::new();
    for (name, provider) in &raw.providers {
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            errors.push(format!("providers.{name}"), "names are 1-32 of a-z, 0-9, -");
            continue;
        }
        match crate::identity::providers::compile(name, provider) {
            Ok(crate::identity::providers::Compiled::Ready(provider)) => providers.push(*provider),
            Ok(crate::identity::providers::Compiled::NotYet(what)) => not_yet_available.push(what),
            Err(problems) => {
                for (key, reason) in problems {
                    errors.push(key, reason);
                }
            }
        }
    }
    let mut sso_domains = Vec::new();
    for (index, entry) in raw.sso_domains.iter().enumerate() {
        let domain = entry.domain.trim().trim_start_matches('@').to_ascii_lowercase();
        if domain.is_empty() || !domain.contains('.') {
            errors.push(format!("sso_domains[{index}].domain"), "must be an email domain");
        }
        if !providers
            .iter()
            .any(|p: &crate::identity::providers::Provider| p.name == entry.provider)
        {
            errors.push(
                format!("sso_domains[{index}].provider"),
                format!("`{}` is not a configured sign-in provider", entry.provider),
            );
        }
        sso_domains.push((domain, entry.provider.clone()));
    }
    let mut service_tokens = std::collections::BTreeMap::new();
    for (name, service) in &raw.service_tokens {
        match ServiceToken::compile(name, service) {
            Ok(compiled) => {
                service_tokens.insert(name.clone(), compiled);
            }
            Err(problems) => {
                for (key, reason) in problems {
                    errors.push(key, reason);
                }
            }
        }
    }

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
        not_yet_available,
        dev,
        service_tokens,
        providers,
        sso_domains,
        raw,
    })
}

fn socket_addr(errors: &mut Errors, key: &str, text: &str) -> Option<SocketAddr> {
    if text.trim().is_empty() {
        return None;
    }
    errors
        .check(key, text.trim().parse().map_err(|_| format!("`{text}` is not an IP:port address")))
}

fn server(raw: &RawConfig, errors: &mut Errors) -> ServerConfig {
    let s = &raw.server;
    let listen = socket_addr(errors, "server.listen", &s.listen);
    let tls = match (&s.tls_listen, &s.tls_cert, &s.tls_key) {
        (None, None, None) => None,
        (Some(listen), Some(cert), Some(key)) => {
            let listen = socket_addr(errors, "server.tls_listen", listen);
            let reload_interval =
                errors.duration("server.tls_reload_interval", &s.tls_reload_interval);
            if reload_interval.is_zero() {
                errors.push("server.tls_reload_interval", "must be more than zero");
            }
            listen.map(|listen| TlsConfig {
                listen,
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
                reload_interval,
            })
        }
        _ => {
            errors
                .push("server.tls_listen", "tls_listen, tls_cert and tls_key must be set together");
            None
        }
    };
    if listen.is_none() && tls.is_none() && errors.0.is_empty() {
        errors.push("server.listen", "no listener: set listen or tls_listen");
    }
    let public_url = s
        .public_url
        .as_deref()
        .and_then(|text| errors.check("server.public_url", PublicUrl::parse(text)));
    let trusted_proxies = s
        .trusted_proxies
        .0
        .iter()
        .filter_map(|cidr| {
            errors.check(
                "server.trusted_proxies",
                cidr.parse::<IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map(ipv4_mapped_as_ipv4)
                    .map_err(|_| format!("`{cidr}` is not a CIDR or IP address")),
            )
        })
        .collect();
    let max_body = errors.check("server.max_body", parse_size(&s.max_body)).unwrap_or(0);
    let upstream_timeout = errors.duration("server.upstream_timeout", &s.upstream_timeout);
    if upstream_timeout.is_zero() {
        errors.push("server.upstream_timeout", "must be more than zero");
    }
    let body_read_timeout = errors.duration("server.body_read_timeout", &s.body_read_timeout);
    if body_read_timeout.is_zero() {
        errors.push("server.body_read_timeout", "must be more than zero");
    }
    let idle_timeout = errors.duration("server.idle_timeout", &s.idle_timeout);
    if idle_timeout.is_zero() {
        errors.push("server.idle_timeout", "must be more than zero");
    }
    if s.max_connections.0 == 0 {
        errors.push("server.max_connections", "must be at least 1");
    }
    if s.workers.0 > 1024 {
        errors.push("server.workers", "must be at most 1024 (0: one per CPU)");
    }
    ServerConfig {
        body_read_timeout,
        idle_timeout,
        max_connections: usize::try_from(s.max_connections.0).unwrap_or(usize::MAX),
        workers: usize::try_from(s.workers.0).unwrap_or(usize::MAX),
        hsts_max_age: errors.duration("server.hsts_max_age", &s.hsts_max_age),
        listen,
        tls,
        public_url,
        admin_listen: socket_addr(errors, "server.admin_listen", &s.admin_listen),
        trusted_proxies,
        max_body,
        upstream_timeout,
        shutdown_timeout: errors.duration("server.shutdown_timeout", &s.shutdown_timeout),
    }
}

fn auth(raw: &RawConfig, public_url: Option<&PublicUrl>, errors: &mut Errors) -> AuthConfig {
    let a = &raw.auth;
    let base_path = a.base_path.trim_end_matches('/').to_owned();
    let valid_path = base_path.starts_with('/')
        && base_path.len() > 1
        && base_path[1..].split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
    if !valid_path {
        errors.push("auth.base_path", "must be an absolute path other than `/`, such as `/auth`");
    }
    let secret = a.secret.as_ref().map(|secret| secret.as_bytes().to_vec());
    if secret.as_ref().is_some_and(|secret| secret.len() < 32) {
        errors.push("auth.secret", "must be at least 32 bytes (or leave it out to generate one)");
    }
    let mut origins = Vec::new();
    for origin in &a.redirect_origins.0 {
        if let Some(origin) = errors.check("auth.redirect_origins", PublicUrl::parse(origin)) {
            origins.push(origin.origin().to_owned());
        }
    }
    let allowed_email_domains = a
        .allowed_email_domains
        .0
        .iter()
        .map(|domain| domain.trim().trim_start_matches('@').to_ascii_lowercase())
        .collect();
    AuthConfig {
        base_path,
        secret,
        signup: a.signup.0,
        signup_confirm: a.signup_confirm.0,
        allowed_email_domains,
        redirects: RedirectPolicy::new(public_url.map(|url| url.origin().to_owned()), origins),
    }
}

/// `::ffff:10.0.0.0/104` as `10.0.0.0/8`: peers are compared as IPv4 when they are
/// IPv4-mapped, so their networks must be too.
pub(super) fn ipv4_mapped_as_ipv4(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        other => other,
    }
}

fn forward_auth(raw: &RawConfig, errors: &mut Errors) -> ForwardAuthConfig {
    let f = &raw.forward_auth;
    let mut names = |key: &str, list: &[String], required: bool| {
        if required && list.is_empty() {
            errors.push(key, "name at least one header");
        }
        list.iter()
            .filter_map(|name| {
                errors.check(
                    key,
                    http::HeaderName::from_bytes(name.trim().as_bytes())
                        .map_err(|_| format!("`{name}` is not a header name")),
                )
            })
            .collect()
    };
    let uri_headers = names("forward_auth.uri_headers", &f.uri_headers.0, true);
    let method_headers = names("forward_auth.method_headers", &f.method_headers.0, true);
    let host_headers = names("forward_auth.host_headers", &f.host_headers.0, false);
    let audience = f.audience.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(Into::into);
    ForwardAuthConfig { uri_headers, method_headers, host_headers, audience }
}

/// How Redis is laid out: `redis_sentinel_master` with its `redis_sentinels`, or
/// `redis_cluster_nodes`, or neither (one server).
fn redis_topology(s: &RawStorage, errors: &mut Errors) -> RedisTopology {
    let master = s.redis_sentinel_master.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let cluster = !s.redis_cluster_nodes.0.is_empty();
    if cluster && (master.is_some() || !s.redis_sentinels.0.is_empty()) {
        errors.push(
            "storage.redis_cluster_nodes",
            "a cluster has no Sentinels: set one or the other",
        );
    }
    if cluster {
        let nodes = host_ports(errors, "storage.redis_cluster_nodes", &s.redis_cluster_nodes, 6379);
        return RedisTopology::Cluster(nodes);
    }
    let Some(master) = master else {
        if !s.redis_sentinels.0.is_empty() {
            errors.push("storage.redis_sentinels", "set redis_sentinel_master as well");
        }
        return RedisTopology::Single;
    };
    if s.redis_sentinels.0.is_empty() {
        errors.push("storage.redis_sentinels", "list at least one Sentinel (host:port)");
    }
    let nodes = host_ports(errors, "storage.redis_sentinels", &s.redis_sentinels, 26379);
    let password = s.redis_sentinel_password.clone().filter(|password| !password.is_empty());
    RedisTopology::Sentinel(RedisSentinel { master: master.to_owned(), nodes, password })
}

/// `host:port` items (`default_port` when left out; IPv6 in brackets), each checked.
fn host_ports(
    errors: &mut Errors,
    key: &str,
    list: &StringList,
    default_port: u16,
) -> Vec<(String, u16)> {
    list.0
        .iter()
        .filter_map(|item| {
            let item = item.trim();
            let (host, port) = match item.rsplit_once(':').filter(|(host, _)| !host.ends_with(':'))
            {
                Some((host, port)) => (host, port.parse::<u16>().ok().filter(|&port| port > 0)),
                None => (item, Some(default_port)),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match port {
                Some(port) if !host.is_empty() => Some((host.to_owned(), port)),
                _ => {
                    errors.push(key, format!("`{item}` is not host:port"));
                    None
                }
            }
        })
        .collect()
}

fn storage(raw: &RawConfig, errors: &mut Errors) -> StorageConfig {
    let s = &raw.storage;
    let url = s.database_url.trim();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        errors.push("storage.database_url", "expected sqlite://… or postgres://…");
    }
    let ephemeral = match s.ephemeral.as_str() {
        "database" => EphemeralKind::Database,
        "memory" => EphemeralKind::Memory,
        "redis" => {
            let url = s.redis_url.trim();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                errors.push("storage.redis_url", "expected redis://… or rediss://…");
            }
            let ca_pem = s.redis_ca_file.as_deref().and_then(|path| match std::fs::read(path) {
                Ok(pem) => Some(pem),
                Err(error) => {
                    errors.push("storage.redis_ca_file", format!("cannot read {path}: {error}"));
                    None
                }
            });
            let topology = redis_topology(s, errors);
            EphemeralKind::Redis { url: url.to_owned(), ca_pem, topology }
        }
        other => {
            errors.push(
                "storage.ephemeral",
                format!("`{other}` is not one of: database, redis, memory"),
            );
            EphemeralKind::Database
        }
    };
    if s.max_connections.0 == 0 {
        errors.push("storage.max_connections", "must be at least 1");
    }
    let current = s
        .secrets_key
        .as_deref()
        .filter(|key| !key.trim().is_empty())
        .and_then(|key| errors.check("storage.secrets_key", SealKey::parse(key)));
    let previous = s
        .secrets_key_previous
        .0
        .iter()
        .filter_map(|key| errors.check("storage.secrets_key_previous", SealKey::parse(key)))
        .collect();
    let direct_url = match s.database_direct_url.as_deref().map(str::trim) {
        None | Some("") => url.to_owned(),
        Some(direct) => {
            let postgres =
                |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !postgres(direct) || !postgres(url) {
                errors.push(
                    "storage.database_direct_url",
                    "expected postgres://…, with a PostgreSQL database_url",
                );
            }
            direct.to_owned()
        }
    };
    StorageConfig {
        database_url: url.to_owned(),
        direct_url,
        migrate_on_start: s.migrate_on_start,
        ephemeral,
        redis_prefix: s.redis_prefix.clone(),
        max_connections: s.max_connections.0,
        startup_wait: errors.duration("storage.startup_wait", &s.startup_wait),
        sealer: Sealer::new(current, previous),
    }
}

fn session(raw: &RawConfig, errors: &mut Errors) -> SessionConfig {
    let s = &raw.session;
    let cookie_ok = !s.cookie_name.is_empty()
        && s.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !cookie_ok {
        errors.push("session.cookie_name", "use letters, digits, `-`, `_` or `.`");
    }
    let ttl = errors.duration("session.ttl", &s.ttl);
    let idle_timeout = errors.duration("session.idle_timeout", &s.idle_timeout);
    let cache_ttl = errors.duration("session.cache_ttl", &s.cache_ttl);
    if ttl.is_zero() {
        errors.push("session.ttl", "must be more than zero");
    }
    if idle_timeout.is_zero() {
        errors.push("session.idle_timeout", "must be more than zero");
    }
    if cache_ttl > idle_timeout {
        errors.push("session.cache_ttl", "must not be longer than session.idle_timeout");
    }
    let domain = s.cookie_domain.trim().trim_start_matches('.').to_ascii_lowercase();
    if !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
        errors.push("session.cookie_domain", "must be a domain name such as example.com");
    }
    SessionConfig {
        cookie_name: s.cookie_name.clone(),
        ttl,
        idle_timeout,
        cache_ttl,
        cookie_domain: (!domain.is_empty()).then_some(domain),
    }
}

fn email(raw: &RawConfig, errors: &mut Errors) -> EmailConfig {
    let e = &raw.email;
    if !matches!(e.transport.as_str(), "log" | "file" | "smtp") {
        errors.push("email.transport", format!("`{}` is not one of: log, file, smtp", e.transport));
    }
    if e.transport == "file" && e.file_dir.is_none() {
        errors.push("email.file_dir", "required when email.transport = \"file\"");
    }
    if e.transport == "smtp" && e.smtp_url.is_none() {
        errors.push("email.smtp_url", "required when email.transport = \"smtp\"");
    }
    EmailConfig {
        product_name: e.product_name.trim().to_owned(),
        link_ttl: errors.duration("email.link_ttl", &e.link_ttl),
        mail: crate::mail::MailSettings {
            transport: e.transport.clone(),
            from: e.from.clone(),
            product_name: e.product_name.trim().to_owned(),
            templates_dir: e.templates_dir.as_ref().map(PathBuf::from),
            file_dir: e.file_dir.as_ref().map(PathBuf::from),
            smtp_url: e.smtp_url.clone(),
        },
        force_log_transport: e.force_log_transport.0,
    }
}

fn upstreams(raw: &[RawUpstream], errors: &mut Errors) -> Vec<Upstream> {
    let mut names = std::collections::HashSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(index, upstream)| {
            let key = format!("upstreams[{index}]");
            if !names.insert(upstream.name.clone()) {
                errors.push(format!("{key}.name"), format!("`{}` is used twice", upstream.name));
            }
            errors.check(
                &key,
                Upstream::new(
                    &upstream.name,
                    &upstream.url,
                    &upstream.hosts.0,
                    upstream.path_prefix.as_deref().unwrap_or("/"),
                    upstream.http2.0,
                )
                .map(|parsed| {
                    parsed.with_path_options(PathOptions {
                        encoded_slashes: upstream.allow_encoded_slashes.0,
                        matrix_params: upstream.allow_matrix_params.0,
                    })
                }),
            )
        })
        .collect()
}

fn route(index: usize, raw: &RawRoute, org_roles: &OrgRoles, errors: &mut Errors) -> Option<Route> {
    let key = format!("routes[{index}]");
    let pattern = errors
        .check(&format!("{key}.path"), PathPattern::parse(&raw.path))?
        .case_insensitive(raw.case_insensitive.0);
    let access = match raw.access.as_deref() {
        None | Some("authenticated") => Access::Authenticated,
        Some("public") => Access::Public,
        Some("deny") => Access::Deny,
        Some(other) => {
            errors.push(
                format!("{key}.access"),
                format!("`{other}` is not one of: public, authenticated, deny"),
            );
            return None;
        }
    };
    let on_unauthenticated = match raw.on_unauthenticated.as_deref() {
        None | Some("auto") => OnUnauthenticated::Auto,
        Some("401") => OnUnauthenticated::Status401,
        Some("redirect") => OnUnauthenticated::Redirect,
        Some(other) => {
            errors.push(
                format!("{key}.on_unauthenticated"),
                format!("`{other}` is not one of: auto, 401, redirect"),
            );
            return None;
        }
    };
    let mut methods = Vec::new();
    for method in &raw.methods.0 {
        // Methods are matched upper case (requests in another case are canonicalized, or
        // refused for extension methods).
        match http::Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes()) {
            Ok(method) => methods.push(canonical_method(&method).unwrap_or(method)),
            Err(_) => {
                errors.push(format!("{key}.methods"), format!("`{method}` is not an HTTP method"))
            }
        }
    }
    // A HEAD request runs the GET handler in most frameworks: a rule on GET covers HEAD.
    if methods.contains(&http::Method::GET) && !methods.contains(&http::Method::HEAD) {
        methods.push(http::Method::HEAD);
    }
    let restricts = !raw.roles.is_empty()
        || !raw.scopes.is_empty()
        || !raw.org_roles.is_empty()
        || raw.verified_email.0;
    if access != Access::Authenticated && restricts {
        errors.push(
            format!("{key}.access"),
            "roles, scopes, org_roles and verified_email need access = \"authenticated\"",
        );
    }
    // A public route would admit everyone whatever the path names: no tenant isolation.
    if access == Access::Public && raw.path.contains("{org_id}") {
        errors.push(
            format!("{key}.access"),
            "a path holding {org_id} admits only members: it needs access = \"authenticated\"",
        );
    }
    for role in &raw.org_roles.0 {
        if !org_roles.contains(role) {
            errors.push(
                format!("{key}.org_roles"),
                format!("`{role}` is not one of the organization roles in [orgs] roles"),
            );
        }
    }
    Some(Route {
        pattern,
        methods,
        access,
        roles: raw.roles.0.clone(),
        scopes: raw.scopes.0.clone(),
        org_roles: raw.org_roles.0.clone(),
        verified_email: raw.verified_email.0,
        on_unauthenticated,
    })
}

fn branding(raw: &RawConfig, errors: &mut Errors) -> Branding {
    let b = &raw.branding;
    let logo_url = b.logo_url.as_ref().and_then(|text| {
        errors.check("branding.logo_url", PublicUrl::parse(text).map(|_| text.clone()))
    });
    let accent_color = b.accent_color.as_ref().and_then(|color| {
        errors.check("branding.accent_color", accent_color(color).map(|()| color.clone()))
    });
    Branding { logo_url, accent_color }
}

/// The accent colour fills buttons under white text, and outlines focused fields: it must give
/// white text the 4.5:1 contrast WCAG AA asks for.
fn accent_color(color: &str) -> Result<(), String> {
    let hex = color.strip_prefix('#').unwrap_or("");
    let digits: Vec<u8> = match hex.len() {
        3 | 6 if hex.bytes().all(|b| b.is_ascii_hexdigit()) => hex
            .chars()
            .filter_map(|c| c.to_digit(16))
            .map(|digit| u8::try_from(digit).unwrap_or(0))
            .collect(),
        _ => return Err("expected a colour such as #3355ff".into()),
    };
    let channels: Vec<f64> = if digits.len() == 3 {
        digits.iter().map(|d| f64::from(d * 17)).collect()
    } else {
        digits.chunks(2).map(|pair| f64::from(pair[0] * 16 + pair[1])).collect()
    };
    let linear = |value: f64| {
        let value = value / 255.0;
        if value <= 0.039_28 { value / 12.92 } else { ((value + 0.055) / 1.055).powf(2.4) }
    };
    let luminance =
        0.2126 * linear(channels[0]) + 0.7152 * linear(channels[1]) + 0.0722 * linear(channels[2]);
    let contrast = 1.05 / (luminance + 0.05);
    if contrast < 4.5 {
        return Err(format!(
            "{color} gives the white button text a contrast of {contrast:.1}:1; \
             WCAG AA needs 4.5:1 (choose a darker colour)"
        ));
    }
    Ok(())
}

fn orgs(raw: &RawConfig, errors: &mut Errors) -> OrgsConfig {
    let o = &raw.orgs;
    let roles = errors
        .check("orgs.roles", OrgRoles::new(o.roles.0.iter().map(String::as_str)))
        .unwrap_or_default();
    let invite_ttl = errors.duration("orgs.invite_ttl", &o.invite_ttl);
    if invite_ttl.is_zero() {
        errors.push("orgs.invite_ttl", "must be more than zero");
    }
    OrgsConfig { require_selection: o.require_selection.0, roles, invite_ttl }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_count_is_bounded_and_zero_means_one_per_cpu() {
        let config = Config::from_toml("[server]\nworkers = 0\n").unwrap();
        assert_eq!(config.server.workers, 0);
        let config = Config::from_toml("[server]\nworkers = 3\n").unwrap();
        assert_eq!(config.server.workers, 3);
        let error = Config::from_toml("[server]\nworkers = 5000\n").unwrap_err();
        assert!(error.to_string().contains("server.workers"), "{error}");
    }

    #[test]
    fn redis_sentinels_are_parsed_and_checked() {
        let config = Config::from_toml(
            "[storage]\nephemeral = \"redis\"\nredis_sentinel_master = \"m\"\n\
             redis_sentinels = [\"a:1\", \"b\", \"[::1]:26380\"]\n",
        )
        .unwrap();
        let EphemeralKind::Redis { topology: RedisTopology::Sentinel(sentinel), .. } =
            config.storage.ephemeral
        else {
            panic!("a Sentinel set");
        };
        assert_eq!(sentinel.master, "m");
        let expected = [("a", 1), ("b", 26379), ("::1", 26380)];
        assert_eq!(sentinel.nodes, expected.map(|(host, port)| (host.to_owned(), port)));
        for (toml, complaint) in [
            ("redis_sentinel_master = \"m\"\n", "list at least one Sentinel"),
            ("redis_sentinels = [\"a:1\"]\n", "set redis_sentinel_master"),
            ("redis_sentinel_master = \"m\"\nredis_sentinels = [\"a:x\"]\n", "not host:port"),
        ] {
            let text = format!("[storage]\nephemeral = \"redis\"\n{toml}");
            let error = Config::from_toml(&text).unwrap_err().to_string();
            assert!(
                error.contains("storage.redis_sentinels") && error.contains(complaint),
                "{error}"
            );
        }
    }

    #[test]
    fn redis_cluster_nodes_are_parsed_and_exclude_sentinels() {
        let config = Config::from_toml(
            "[storage]\nephemeral = \"redis\"\nredis_cluster_nodes = [\"n1:7000\", \"n2\"]\n",
        )
        .unwrap();
        let EphemeralKind::Redis { topology: RedisTopology::Cluster(nodes), .. } =
            config.storage.ephemeral
        else {
            panic!("a cluster");
        };
        assert_eq!(nodes, [("n1".to_owned(), 7000), ("n2".to_owned(), 6379)]);
        let error = Config::from_toml(
            "[storage]\nephemeral = \"redis\"\nredis_cluster_nodes = [\"n1:7000\"]\n\
             redis_sentinel_master = \"m\"\nredis_sentinels = [\"s\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("storage.redis_cluster_nodes"), "{error}");
    }

    #[test]
    fn providers_and_sso_domains_are_checked() {
        let error = Config::from_toml(
            "[providers.corp]\nkind = \"oidc\"\nclient_id = \"x\"\n\
             [[sso_domains]]\ndomain = \"acme.com\"\nprovider = \"nope\"\n",
        )
        .unwrap_err()
        .to_string();
        for key in
            ["providers.corp.issuer", "providers.corp.client_secret", "sso_domains[0].provider"]
        {
            assert!(error.contains(key), "{key} in {error}");
        }
        let config = Config::from_toml(
            "[providers.google]\nclient_id = \"id\"\nclient_secret = \"s\"\n\
             [providers.github]\nclient_id = \"id\"\nclient_secret = \"s\"\n",
        )
        .unwrap();
        assert_eq!(config.providers[1].issuer, "https://accounts.google.com");
        assert_eq!(config.providers[1].display_name, "Google");
        assert_eq!(config.providers[0].display_name, "GitHub");
        assert!(config.providers.iter().any(|p| p.name == "google"));
    }

    #[test]
    fn org_roles_and_org_paths_are_checked() {
        let error = Config::from_toml(
            "[orgs]\nroles = [\"member\", \"Bad Role\"]\ninvite_ttl = \"0s\"\n\
             [[routes]]\npath = \"/orgs/{org_id}/*\"\naccess = \"public\"\n\
             [[routes]]\npath = \"/admin/*\"\norg_roles = [\"boss\"]\n",
        )
        .unwrap_err()
        .to_string();
        for key in ["orgs.roles", "orgs.invite_ttl", "routes[0].access", "routes[1].org_roles"] {
            assert!(error.contains(key), "{key} in {error}");
        }
        let config = Config::from_toml(
            "[orgs]\nroles = [\"viewer\"]\nrequire_selection = true\n\
             [[routes]]\npath = \"/billing/*\"\norg_roles = [\"owner\", \"viewer\"]\n",
        )
        .unwrap();
        assert_eq!(config.orgs.roles.names(), ["owner", "admin", "viewer"]);
        assert!(config.orgs.require_selection);
        assert_eq!(config.orgs.invite_ttl, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn accent_colours_must_keep_button_text_readable() {
        assert!(accent_color("#2f54eb").is_ok(), "the default");
        assert!(accent_color("#000").is_ok());
        assert!(accent_color("#ffcc00").unwrap_err().contains("contrast of 1.5:1"));
        assert!(accent_color("#3b82f6").is_err(), "3.7:1");
        assert!(accent_color("blue").is_err());
        assert!(accent_color("#12345").is_err());
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let config = Config::defaults().unwrap();
        assert_eq!(config.server.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(config.auth.base_path, "/auth");
        assert_eq!(config.session.ttl, Duration::from_secs(7 * 86_400));
        assert!(config.upstreams.is_empty());
        assert!(config.not_yet_available.is_empty());
    }

    #[test]
    fn every_invalid_key_is_reported_at_once() {
        let error = Config::from_toml(
            r#"
            [server]
            listen = "nonsense"
            max_body = "huge"
            [auth]
            base_path = "/"
            secret = "short"
            [[routes]]
            path = "no-slash"
            [[routes]]
            path = "/x"
            access = "sometimes"
            "#,
        )
        .unwrap_err();
        let ConfigError::Invalid(errors) = error else { panic!("expected Invalid, got {error}") };
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "server.listen",
            "server.max_body",
            "auth.base_path",
            "auth.secret",
            "routes[0].path",
            "routes[1].access",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn restrictions_need_authenticated_access() {
        let error = Config::from_toml(
            "[[routes]]\npath = \"/a/*\"\naccess = \"public\"\nroles = [\"admin\"]\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("routes[0].access"), "{error}");
    }

    #[test]
    fn ipv4_mapped_trusted_networks_are_compared_as_ipv4() {
        let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(ipv4_mapped_as_ipv4(mapped), "10.0.0.0/8".parse::<IpNet>().unwrap());
        let plain: IpNet = "2001:db8::/32".parse().unwrap();
        assert_eq!(ipv4_mapped_as_ipv4(plain), plain);
    }

    #[test]
    fn provider_roles_need_a_map_and_multi_tenant_ones_a_tenant_list() {
        let base = "[providers.corp]\nissuer = \"https://idp.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\n";
        let keys = |extra: &str| match Config::from_toml(&format!("{base}{extra}")) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(errors)) => errors.into_iter().map(|e| e.key).collect(),
            Err(other) => panic!("{other}"),
        };
        assert_eq!(keys("roles_claim = \"groups\"\n"), ["providers.corp.roles_map"]);
        assert_eq!(keys("roles_map = { a = \"admin\" }\n"), ["providers.corp.roles_claim"]);
        assert!(keys("roles_claim = \"groups\"\nroles_map = { a = \"admin\" }\n").is_empty());
        let microsoft = "[providers.microsoft]\nclient_id = \"a\"\nclient_secret = \"b\"\nroles_claim = \"groups\"\nroles_map = { g = \"admin\" }\n";
        let errors = match Config::from_toml(microsoft) {
            Err(ConfigError::Invalid(errors)) => errors,
            other => panic!("{other:?}"),
        };
        assert_eq!(errors[0].key, "providers.microsoft.allowed_tenants");
        let tenants =
            format!("{microsoft}allowed_tenants = [\"9188040d-6c67-4c5b-b112-36a304b66dad\"]\n");
        assert!(Config::from_toml(&tenants).is_ok());
    }

    #[test]
    fn tls_keys_go_together() {
        let error = Config::from_toml("[server]\ntls_listen = \"127.0.0.1:8443\"\n").unwrap_err();
        assert!(error.to_string().contains("server.tls_listen"), "{error}");
    }
}
