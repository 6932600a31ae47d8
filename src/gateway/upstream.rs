//! Upstream apps and choosing one for a request: by Host, then by longest path prefix.

use std::borrow::Cow;
use std::sync::Arc;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};

use super::path::PathOptions;
use crate::conn::link::LinkTarget;

/// Why an `[[upstreams]]` entry is refused; each message names the field at fault, and the
/// configuration places it under the entry's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The name is empty or holds other than letters, digits, `-`, `_` and `.`.
    #[error("name `{name}` must be non-empty letters, digits, `-`, `_` or `.`")]
    Name {
        /// The name as written.
        name: String,
    },
    /// The URL does not parse.
    #[error("url `{url}`: {reason}")]
    Url {
        /// The URL as written.
        url: String,
        /// The parser's reason.
        reason: url::ParseError,
    },
    /// The URL's scheme is not `http`.
    #[error("url `{url}`: only http:// upstreams are supported (the app is usually on loopback)")]
    NotHttp {
        /// The URL as written.
        url: String,
    },
    /// The URL holds a query, a fragment or credentials.
    #[error("url `{url}`: no query, fragment or credentials allowed")]
    UrlExtras {
        /// The URL as written.
        url: String,
    },
    /// The URL has no host.
    #[error("url `{url}` has no host")]
    NoHost {
        /// The URL as written.
        url: String,
    },
    /// The URL's host and port do not make an authority.
    #[error("url `{url}` has an invalid host")]
    BadHost {
        /// The URL as written.
        url: String,
    },
    /// The path prefix does not start with `/`.
    #[error("path_prefix `{path_prefix}` must start with `/`")]
    PathPrefix {
        /// The prefix as written.
        path_prefix: String,
    },
    /// A `hosts` entry is not a host name (or `*.` and one).
    #[error("host `{host}` is not a host name")]
    HostPattern {
        /// The entry, trimmed and lower-cased.
        host: String,
    },
}

/// One `[[upstreams]]` entry, parsed.
#[derive(Debug, Clone)]
pub struct Upstream {
    name: Arc<str>,
    authority: Authority,
    base_path: String,
    hosts: Vec<String>,
    path_prefix: String,
    http2: bool,
    path_options: PathOptions,
}

impl Upstream {
    /// Parses an upstream.
    ///
    /// # Errors
    /// An empty name, a URL that is not `http://host:port[/base]`, a bad host pattern or a
    /// prefix not starting with `/`: an [`UpstreamError`] about the whole `[[upstreams]]` entry
    /// (its message names the field), for the caller to place under the entry's key.
    pub fn new(
        name: &str,
        url: &str,
        hosts: &[String],
        path_prefix: &str,
        http2: bool,
    ) -> Result<Self, UpstreamError> {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(UpstreamError::Name { name: name.to_owned() });
        }
        let parsed = url::Url::parse(url)
            .map_err(|reason| UpstreamError::Url { url: url.to_owned(), reason })?;
        if parsed.scheme() != "http" {
            return Err(UpstreamError::NotHttp { url: url.to_owned() });
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty()
        {
            return Err(UpstreamError::UrlExtras { url: url.to_owned() });
        }
        let host =
            parsed.host_str().ok_or_else(|| UpstreamError::NoHost { url: url.to_owned() })?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let authority = match parsed.host() {
            Some(url::Host::Ipv6(address)) => format!("[{address}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let authority: Authority =
            authority.parse().map_err(|_| UpstreamError::BadHost { url: url.to_owned() })?;
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        if !path_prefix.starts_with('/') {
            return Err(UpstreamError::PathPrefix { path_prefix: path_prefix.to_owned() });
        }
        let hosts = hosts
            .iter()
            .map(|host| {
                let host = host.trim().to_ascii_lowercase();
                let bare = host.strip_prefix("*.").unwrap_or(&host);
                let valid = !bare.is_empty()
                    && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
                if valid { Ok(host) } else { Err(UpstreamError::HostPattern { host }) }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: Arc::from(name),
            authority,
            base_path,
            hosts,
            path_prefix: path_prefix.trim_end_matches('/').to_owned(),
            http2,
            path_options: PathOptions::default(),
        })
    }

    /// The same upstream, accepting these ambiguous path constructs (its app reads them one
    /// way only).
    #[must_use]
    pub fn with_path_options(mut self, options: PathOptions) -> Self {
        self.path_options = options;
        self
    }

    /// The ambiguous path constructs this upstream accepts.
    pub fn path_options(&self) -> PathOptions {
        self.path_options
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `host:port` of the upstream, for connecting and readiness checks.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// The name, shared: the audience of its identity assertions.
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Whether to speak HTTP/2 with prior knowledge.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// The upstream URI for a request whose path needed no normalization: reuses the request's
    /// path and query without copying or re-parsing them.
    ///
    /// # Errors
    /// As [`Self::uri_for`].
    pub fn uri_for_original(&self, path_and_query: &PathAndQuery) -> Result<Uri, http::Error> {
        if !self.base_path.is_empty() {
            return self.uri_for(path_and_query.path(), path_and_query.query());
        }
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path_and_query.clone())
            .build()
    }

    /// The upstream URI for a request's normalized path and query.
    ///
    /// # Errors
    /// The path and query do not form a valid URI (they came from a parsed request URI, so
    /// this means a bug).
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let mut path_and_query = String::with_capacity(self.base_path.len() + path.len() + 64);
        path_and_query.push_str(&self.base_path);
        path_and_query.push_str(path);
        if let Some(query) = query {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(path_and_query)?)
            .build()
    }

    fn serves_host(&self, host: Option<&str>) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let Some(host) = host else { return false };
        self.hosts.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => pattern.eq_ignore_ascii_case(host),
        })
    }

    fn serves_path(&self, path: &str) -> bool {
        let prefix = &self.path_prefix;
        prefix.is_empty()
            || (path.starts_with(prefix.as_str())
                && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
    }
}

impl LinkTarget for Upstream {
    fn name(&self) -> &str {
        &self.name
    }

    fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

/// The upstreams, ordered so that the first that serves a request is the most specific.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTable {
    upstreams: Vec<Upstream>,
    by_host: bool,
}

impl UpstreamTable {
    /// Orders `upstreams`: host-specific before any-host, then longer prefixes first.
    pub fn new(mut upstreams: Vec<Upstream>) -> Self {
        upstreams.sort_by_key(|upstream| {
            (upstream.hosts.is_empty(), std::cmp::Reverse(upstream.path_prefix.len()))
        });
        let by_host = upstreams.iter().any(|upstream| !upstream.hosts.is_empty());
        Self { upstreams, by_host }
    }

    /// Whether any upstream is chosen by host (else the host need not be read).
    pub fn routes_by_host(&self) -> bool {
        self.by_host
    }

    /// The upstream for a request to `host` (lower-case, without port) and normalized `path`.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<&Upstream> {
        self.upstreams
            .iter()
            .find(|upstream| upstream.serves_host(host) && upstream.serves_path(path))
    }

    /// Every upstream, for readiness checks.
    pub fn iter(&self) -> impl Iterator<Item = &Upstream> {
        self.upstreams.iter()
    }
}

/// The host of a `Host` value or authority, without port or trailing dot, in lower case
/// (copied only when it has upper-case letters).
pub(crate) fn request_host(raw: &str) -> Cow<'_, str> {
    let host = match raw.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => raw.rsplit_once(':').map_or(raw, |(host, _)| host),
    };
    // `app.example.` is `app.example` (the root label), and must choose the same upstream.
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(name: &str, hosts: &[&str], prefix: &str) -> Upstream {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        Upstream::new(name, "http://127.0.0.1:3000", &hosts, prefix, false).unwrap()
    }

    #[test]
    fn selects_by_host_then_longest_prefix() {
        let table = UpstreamTable::new(vec![
            upstream("default", &[], "/"),
            upstream("api", &[], "/api"),
            upstream("api-v2", &[], "/api/v2"),
            upstream("admin", &["admin.example.com"], "/"),
            upstream("tenants", &["*.tenants.example.com"], "/"),
        ]);
        let pick = |host: Option<&str>, path| table.select(host, path).map(Upstream::name);
        assert_eq!(pick(None, "/"), Some("default"));
        assert_eq!(pick(None, "/api"), Some("api"));
        assert_eq!(pick(None, "/api/x"), Some("api"));
        assert_eq!(pick(None, "/apix"), Some("default"), "prefixes match whole segments");
        assert_eq!(pick(None, "/api/v2/x"), Some("api-v2"));
        assert_eq!(pick(Some("admin.example.com"), "/api"), Some("admin"));
        assert_eq!(pick(Some("a.tenants.example.com"), "/"), Some("tenants"));
        assert_eq!(pick(Some("tenants.example.com"), "/"), Some("default"));
        assert_eq!(pick(Some("eviltenants.example.com"), "/"), Some("default"));
    }

    #[test]
    fn builds_upstream_uris_and_refuses_bad_urls() {
        let base = Upstream::new("app", "http://localhost:3000/base/", &[], "/", false).unwrap();
        assert_eq!(base.uri_for("/x", Some("a=1")).unwrap(), "http://localhost:3000/base/x?a=1");
        for bad in ["https://a:1", "ftp://a", "http://u:p@a:1", "http://a:1/?q", "not a url"] {
            assert!(Upstream::new("app", bad, &[], "/", false).is_err(), "{bad}");
        }
        assert!(Upstream::new("bad name", "http://a:1", &[], "/", false).is_err());
    }

    #[test]
    fn request_host_strips_port_and_case() {
        assert_eq!(request_host("App.Example.com:8443"), "app.example.com");
        assert_eq!(request_host("[::1]:8080"), "::1");
        assert!(matches!(request_host("h.example"), Cow::Borrowed("h.example")));
    }
}
