//! `[server]` and `[forward_auth]`: listeners, TLS, limits, timeouts and trusted proxies.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::Errors;
use crate::config::raw::RawConfig;
use crate::config::values::parse_size;
use crate::config::{KeyError, PublicUrl, ServerConfig, TlsConfig};
use crate::gateway::forward_auth::ForwardAuthConfig;

pub(super) fn socket_addr(errors: &mut Errors, key: &str, text: &str) -> Option<SocketAddr> {
    if text.trim().is_empty() {
        return None;
    }
    errors.check(
        key,
        text.trim()
            .parse()
            .map_err(|_| KeyError::value(format!("`{text}` is not an IP:port address"))),
    )
}

pub(super) fn server(raw: &RawConfig, errors: &mut Errors) -> ServerConfig {
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
                    .map_err(|_| KeyError::value(format!("`{cidr}` is not a CIDR or IP address"))),
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

pub(super) fn forward_auth(raw: &RawConfig, errors: &mut Errors) -> ForwardAuthConfig {
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
                        .map_err(|_| KeyError::value(format!("`{name}` is not a header name"))),
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
