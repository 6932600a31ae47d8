//! Forwarding an allowed request: rewrite headers, stream the body both ways, pass WebSocket
//! upgrades through.
//!
//! Forwarding consumes the [`Permitted`] the decision made, and honours it: the app receives
//! the method and path the rule matched, and none of our credentials (cookies, an
//! `Authorization` with our key or JWT, a `ws_` ticket in the query), whichever one identified
//! the request.
//!
//! Header rules, each applied to every forwarded request: hop-by-hop headers are removed; the
//! client's identity headers (any spelling) and our cookies are removed, then our identity
//! headers are inserted (never appended); `X-Forwarded-*` are set from the connection unless
//! the peer is a trusted proxy, whose values are extended instead; headers through which an
//! app may take the path or host from a proxy (`X-Original-URL`, `X-Forwarded-Prefix`, …) are
//! removed unless the peer is a trusted proxy.

use std::error::Error;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, Version};
use http_body_util::{LengthLimitError, Limited};
use hyper_util::rt::TokioIo;

use super::authorize::Permitted;
use super::identify::query_without_ticket;
use super::upstream::Upstream;
use super::{Gateway, GatewayError};
use crate::conn::body::{BodyTimeout, discard};
use crate::conn::link::{self, LinkError};
use crate::conn::peer::{Peer, is_trusted};
use crate::cookies;
use crate::model::headers::{HeaderNames, ProxyHeader};

/// Headers meaningful only for one connection (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sends an allowed request to its upstream and returns the response.
///
/// # Errors
/// No upstream serves the request, body over the limit, upstream unreachable or too slow.
pub(crate) async fn forward(
    gateway: &Gateway,
    permitted: Permitted<'_>,
    mut parts: Parts,
    body: Body,
) -> Result<Response, GatewayError> {
    let upstream = permitted.upstream().ok_or(GatewayError::NoUpstream)?;
    let client_version = parts.version;
    // Read before the hop-by-hop headers go: a client that will not reuse its connection
    // gains nothing from an upstream connection of its own.
    let client_keeps_alive = keeps_alive(client_version, &parts.headers);
    let presented = permitted.presented();
    let clears_session = permitted.clears_session();
    let uri = upstream_uri(upstream, &permitted, &parts.uri)?;
    if presented.authorization {
        parts.headers.remove(header::AUTHORIZATION);
    }
    if let Some(method) = permitted.method() {
        parts.method = method.clone();
    }
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > gateway.max_body) {
        discard(client_version, &parts.headers, body).await;
        return Err(GatewayError::PayloadTooLarge);
    }

    let upgrade =
        is_upgrade(&parts.headers).then(|| parts.headers.get(header::UPGRADE).cloned()).flatten();
    let client_upgrade =
        upgrade.as_ref().and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
    // The upgraded connection runs as part of the client's connection (its slot, shutdown).
    let upgrade_peer =
        client_upgrade.as_ref().and_then(|_| parts.extensions.get::<Peer>().cloned());

    rewrite_request_headers(gateway, &mut parts, upstream, upgrade.as_ref());
    if let Some(identity) = permitted.identity() {
        gateway.header_names.insert_into(identity, &mut parts.headers);
        if let Some(signer) = &gateway.assertions
            && let Some(assertion) = signer.header(identity, upstream.shared_name())
        {
            for name in gateway.header_names.assertion() {
                parts.headers.insert(name.clone(), assertion.clone());
            }
        }
    }
    // After the header rewrite, which reads the client's authority (HTTP/2) for `Host`.
    parts.uri = uri;
    parts.version = if upstream.http2() { Version::HTTP_2 } else { Version::HTTP_11 };

    let body =
        Body::new(Limited::new(body, usize::try_from(gateway.max_body).unwrap_or(usize::MAX)));
    // An HTTP/1.1 client's requests go on its connection's own upstream connection; HTTP/2
    // clients, HTTP/2 upstreams and upgrades take the pool.
    let link = match (client_keeps_alive, upstream.http2(), &client_upgrade) {
        (true, false, None) => {
            parts.extensions.remove::<Peer>().filter(|peer| !peer.link().holds_other(upstream))
        }
        _ => None,
    };
    let started = Instant::now();
    // `Err(None)`: no answer by the deadline.
    let sent = match link {
        Some(peer) => {
            parts.uri = link::origin_form(&parts.uri);
            let request = Request::from_parts(parts, body);
            let deadline = tokio::time::Instant::from_std(started + gateway.upstream_timeout);
            match peer.link().send(upstream, request, deadline).await {
                Err(LinkError::Timeout) => Err(None),
                sent => sent.map_err(|error| Some(Box::<dyn Error + Send + Sync>::from(error))),
            }
        }
        None => {
            let request = Request::from_parts(parts, body);
            let client = if upstream.http2() { &gateway.http2 } else { &gateway.http1 };
            match tokio::time::timeout(gateway.upstream_timeout, client.request(request)).await {
                Err(_elapsed) => Err(None),
                Ok(sent) => sent.map_err(|error| Some(Box::<dyn Error + Send + Sync>::from(error))),
            }
        }
    };
    gateway.metrics.record_upstream(started.elapsed().as_secs_f64());
    let mut response = match sent {
        Ok(response) => response,
        Err(None) => return Err(GatewayError::Timeout),
        Err(Some(error)) if caused_by_length_limit(error.as_ref()) => {
            return Err(GatewayError::PayloadTooLarge);
        }
        Err(Some(error)) if BodyTimeout::caused(error.as_ref()) => {
            return Err(GatewayError::BodyTimeout);
        }
        Err(Some(error)) => return Err(GatewayError::Unavailable(error)),
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let traffic = async move {
            let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                tracing::debug!("upgrade abandoned by one side");
                return;
            };
            let _ = tokio::io::copy_bidirectional(
                &mut TokioIo::new(client),
                &mut TokioIo::new(upstream),
            )
            .await;
        };
        match upgrade_peer {
            Some(peer) => peer.spawn_upgraded(traffic),
            None => {
                tokio::spawn(traffic);
            }
        }
    }

    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop_and(&mut parts.headers, |_| false);
    if parts.status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(protocol) = upgrade
    {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    cookies::strip_own_set_cookie(&mut parts.headers, &gateway.cookies);
    if clears_session {
        for cookie in gateway.cookies.clear_session() {
            parts.headers.append(header::SET_COOKIE, cookie);
        }
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The upstream URI: the path the rule matched (the request's own when it was already
/// normal, reused without copying), and the query without a ticket of ours.
fn upstream_uri(
    upstream: &Upstream,
    permitted: &Permitted<'_>,
    original: &Uri,
) -> Result<Uri, GatewayError> {
    let path = permitted.path().unwrap_or_else(|| original.path());
    let uri = if permitted.presented().ticket {
        let query = original.query().and_then(query_without_ticket);
        upstream.uri_for(path, query.as_deref())
    } else {
        match (permitted.path(), original.path_and_query()) {
            (None, Some(path_and_query)) => upstream.uri_for_original(path_and_query),
            _ => upstream.uri_for(path, original.query()),
        }
    }?;
    Ok(uri)
}

fn rewrite_request_headers(
    gateway: &Gateway,
    parts: &mut Parts,
    upstream: &Upstream,
    upgrade: Option<&HeaderValue>,
) {
    let headers = &mut parts.headers;
    // Room for what forwarding adds (forwarding headers, request id, identity), so the map
    // grows at most once.
    headers.reserve(16);
    let keep_te_trailers = upstream.http2()
        && headers
            .get(header::TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // Forwarding headers: believed and extended from trusted proxies, replaced otherwise.
    let peer = parts.extensions.get::<Peer>();
    let trusted = peer.is_some_and(|peer| is_trusted(peer.addr.ip(), &gateway.trusted_proxies));
    remove_client_headers(headers, &gateway.header_names, trusted);
    if keep_te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }

    cookies::strip_own(headers, &gateway.cookies);

    let host = headers.get(header::HOST).cloned().or_else(|| {
        parts.uri.authority().and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    });
    if let Some(peer) = peer {
        let previous =
            headers.get(&X_FORWARDED_FOR).filter(|_| trusted).and_then(|v| v.to_str().ok());
        let forwarded_for = match previous {
            Some(previous) => HeaderValue::from_str(&format!(
                "{previous}, {}",
                peer.ip_header.to_str().unwrap_or("")
            ))
            .unwrap_or_else(|_| peer.ip_header.clone()),
            None => peer.ip_header.clone(),
        };
        headers.insert(X_FORWARDED_FOR, forwarded_for);
        if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
            let proto = if peer.tls { "https" } else { "http" };
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
    }
    if let Some(host) = host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        // HTTP/2 clients send `:authority` instead of `Host`; HTTP/1.1 apps need `Host`.
        headers.entry(header::HOST).or_insert(host);
    }
}

/// Takes out of a client's headers what must not reach the upstream: the hop-by-hop ones (see
/// [`remove_hop_by_hop_and`]), `Expect` (`100-continue` was answered to the client already;
/// the upstream gets the body), identity headers in any spelling, headers that name another
/// path or method, and, unless a trusted proxy set them, headers that name the host or prefix.
fn remove_client_headers(headers: &mut HeaderMap, names: &HeaderNames, trusted: bool) {
    remove_hop_by_hop_and(headers, |name| {
        *name == header::EXPECT
            // Another spelling of ours, which CGI-style frameworks read as the same header.
            || (name.as_str().contains('_') && name.as_str().replace('_', "-") == "x-request-id")
            || match names.classify(name) {
                Some(ProxyHeader::Identity | ProxyHeader::Override) => true,
                Some(ProxyHeader::Routing) => !trusted,
                None => false,
            }
    });
}

/// Removes hop-by-hop headers, including any the `Connection` header names, except headers a
/// peer must not be able to remove that way: the host, credentials, content framing and the
/// forwarding headers (a client behind a trusted proxy could otherwise erase the proxy's
/// `X-Forwarded-For` and pass as the proxy itself); and the headers `also` picks.
///
/// One pass over the names decides: most messages carry none of these, and removing a name
/// that is not there still costs a hash and a probe.
fn remove_hop_by_hop_and(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    let mut connection = false;
    for name in headers.keys() {
        let hop_by_hop = *name == header::CONNECTION;
        connection |= hop_by_hop;
        if hop_by_hop || HOP_BY_HOP.contains(name) || also(name) {
            doomed.push(name.clone());
        }
    }
    if connection {
        let listed = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| !is_end_to_end(name));
        doomed.extend(listed);
    }
    for name in doomed {
        if tracing::event_enabled!(tracing::Level::DEBUG) {
            tracing::debug!(header = %name, "dropped a header");
        }
        headers.remove(&name);
    }
}

/// Headers `Connection` may not nominate for removal.
fn is_end_to_end(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "host"
            | "cookie"
            | "authorization"
            | "content-length"
            | "content-type"
            | "forwarded"
            | "x-real-ip"
            | "x-request-id"
            | "set-cookie"
    ) || name.starts_with("x-forwarded-")
}

/// Whether an HTTP/1.x client will send more requests on its connection: HTTP/1.1 unless it
/// says `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`. HTTP/2 is not
/// counted (its streams take the pool).
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|listed| listed.trim().eq_ignore_ascii_case(token))
    };
    match version {
        Version::HTTP_11 => !says("close"),
        Version::HTTP_10 => says("keep-alive"),
        _ => false,
    }
}

/// Whether the request asks for an upgrade to WebSocket, which HTTP/1.1 spells as
/// `Connection: upgrade` plus `Upgrade: websocket`. Other protocols (`h2c`) are not tunnelled:
/// their `Upgrade` is dropped like any hop-by-hop header.
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|protocol| protocol.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

fn caused_by_length_limit(error: &(dyn Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.is::<LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop_and(&mut headers, |_| false);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));

        let mut end_to_end = HeaderMap::new();
        end_to_end
            .insert(header::CONNECTION, HeaderValue::from_static("host, x-forwarded-for, cookie"));
        end_to_end.insert(header::HOST, HeaderValue::from_static("app.example"));
        end_to_end.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        end_to_end.insert(header::COOKIE, HeaderValue::from_static("a=1"));
        remove_hop_by_hop_and(&mut end_to_end, |_| false);
        assert_eq!(end_to_end.len(), 3, "{end_to_end:?}");
    }

    #[test]
    fn a_clients_expect_identity_and_override_headers_are_removed_and_routing_ones_when_untrusted()
    {
        let names = HeaderNames::default();
        let client = || {
            let mut headers = HeaderMap::new();
            headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            headers.insert("x-auth-user", HeaderValue::from_static("admin"));
            headers.insert("X_Auth_Email", HeaderValue::from_static("boss@example.com"));
            headers.insert("x-original-url", HeaderValue::from_static("/admin"));
            headers.insert("x_request_id", HeaderValue::from_static("forged-id"));
            headers.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            headers
        };
        let mut untrusted = client();
        remove_client_headers(&mut untrusted, &names, false);
        assert_eq!(untrusted.keys().collect::<Vec<_>>(), [header::ACCEPT]);
        let mut trusted = client();
        remove_client_headers(&mut trusted, &names, true);
        assert_eq!(trusted.len(), 2, "{trusted:?}");
        assert!(trusted.contains_key("x-forwarded-host"));
    }

    #[test]
    fn only_clients_that_reuse_their_connection_keep_alive() {
        let mut headers = HeaderMap::new();
        assert!(keeps_alive(Version::HTTP_11, &headers));
        assert!(!keeps_alive(Version::HTTP_10, &headers));
        assert!(!keeps_alive(Version::HTTP_2, &headers));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive, x-hop"));
        assert!(keeps_alive(Version::HTTP_10, &headers));
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-hop, Close"));
        assert!(!keeps_alive(Version::HTTP_11, &headers));
    }

    #[test]
    fn recognises_upgrade_requests() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade(&headers), "Upgrade without Connection: upgrade");
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(is_upgrade(&headers));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_upgrade(&headers), "only WebSocket is tunnelled");
    }
}
