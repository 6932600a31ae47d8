//! The connection a request came in on, and the client address believed for it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use super::activity::Activity;
use super::link::AffineLink;

/// The TCP peer and listener kind, put into every request's extensions by the accept loop.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Remote address of the connection.
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The peer's IP as a header value, rendered once per connection for `X-Forwarded-For`.
    pub ip_header: HeaderValue,
    /// The connection's slot and tasks, for a connection that outlives its HTTP exchange (an
    /// upgrade to WebSocket).
    connection: Option<Arc<Activity>>,
    /// The connection's own upstream connection (HTTP/1.1 clients).
    link: Arc<AffineLink>,
}

impl Peer {
    /// The peer of a connection from `addr`.
    pub(crate) fn new(addr: SocketAddr, tls: bool) -> Self {
        let ip = canonical(addr.ip()).to_string();
        // An IP address is always a valid header value.
        let ip_header =
            HeaderValue::from_str(&ip).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { addr, tls, ip_header, connection: None, link: Arc::default() }
    }

    /// The connection's own upstream connection, for its HTTP/1.1 requests.
    pub(crate) fn link(&self) -> &AffineLink {
        &self.link
    }

    /// The same peer, on a connection the accept loop tracks.
    #[must_use]
    pub(crate) fn on(mut self, connection: Arc<Activity>) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Runs `task` (an upgraded connection's traffic) as part of this connection: it keeps the
    /// connection's slot under `server.max_connections` and is waited for at shutdown.
    pub(crate) fn spawn_upgraded(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.connection {
            Some(connection) => connection.spawn(task),
            None => {
                tokio::spawn(task);
            }
        }
    }
}

/// The client's IP: the peer's, or, when the peer is a trusted proxy, the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_ip(peer: &Peer, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = canonical(peer.addr.ip());
    if !is_trusted(peer_ip, trusted) {
        return peer_ip;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            // An unparsable hop ends what we can believe.
            return peer_ip;
        };
        if !is_trusted(ip, trusted) {
            return ip;
        }
    }
    peer_ip
}

/// The address limits and grants are kept by: an IPv4 address, or an IPv6 /64 (one
/// subscriber usually holds a whole /64).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Whether `ip` is a configured trusted proxy (an IPv4-mapped IPv6 address, as a dual-stack
/// listener sees IPv4 peers, counts as its IPv4 address).
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> Peer {
        Peer::new(SocketAddr::new(ip.parse().unwrap(), 1234), false)
    }

    fn xff(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let headers = xff("203.0.113.9, 10.0.0.7");
        assert_eq!(
            client_ip(&peer("10.0.0.1"), &headers, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&peer("198.51.100.1"), &headers, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&peer("10.0.0.1"), &HeaderMap::new(), &trusted),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        // A spoofed left-most entry cannot hide the real client.
        let spoofed = xff("1.1.1.1, 203.0.113.9");
        assert_eq!(
            client_ip(&peer("10.0.0.1"), &spoofed, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&peer("10.0.0.1"), &xff("garbage"), &trusted),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&peer("::ffff:192.0.2.1"), &HeaderMap::new(), &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        let loopback: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(is_trusted("::ffff:127.0.0.1".parse().unwrap(), &loopback), "dual-stack");
    }
}
