//! Forward-auth input: the original request a proxy asks about, read from the headers
//! `[forward_auth]` names, and only from a proxy the configuration trusts.
//!
//! Everything else about the decision is the gateway's own ([`super::Gateway::authorize`]):
//! this module only turns `GET /auth/verify` back into the request it stands for. It fails
//! closed: a missing, unparsable or contradicted original URI is an error, never `/`.

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};

use crate::error::ApiError;
use crate::model::headers::is_override;

/// Where forward-auth reads the original request (`[forward_auth]`, which the configuration
/// compiles into this).
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// Candidate headers for the original URI.
    pub uri_headers: Vec<http::HeaderName>,
    /// Candidate headers for the original method.
    pub method_headers: Vec<http::HeaderName>,
    /// Candidate headers for the original host.
    pub host_headers: Vec<http::HeaderName>,
    /// The assertion audience, when set.
    pub audience: Option<std::sync::Arc<str>>,
}

/// Why the original request cannot be read from a forward-auth request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ForwardAuthError {
    /// The asking peer is not in `server.trusted_proxies`.
    #[error("forward-auth requests are believed only from server.trusted_proxies")]
    UntrustedPeer,
    /// None of the candidate headers is present.
    #[error("the original request's {0} is missing (send one of: {1})")]
    Missing(&'static str, String),
    /// A candidate header appears more than once, or two candidates disagree.
    #[error("the original request's {0} is given twice with different values")]
    Conflicting(&'static str),
    /// The value is not an origin-form URI, a method or a host.
    #[error("the original request's {0} cannot be parsed")]
    Unparsable(&'static str),
    /// The request carries a header that would make the app run another method or path
    /// (`X-HTTP-Method-Override`): the proxy passes it on, so the decision could not hold.
    #[error("the original request carries {0}, which names another method or path")]
    Override(String),
}

impl From<ForwardAuthError> for ApiError {
    fn from(error: ForwardAuthError) -> Self {
        Self::invalid_request(error.to_string())
    }
}

/// Rewrites `parts` (a forward-auth request) into the original request it asks about: its
/// method, its URI and, when a host header names it, its `Host`. Credentials (`Cookie`,
/// `Authorization`) stay as they are: they are the original request's.
///
/// # Errors
/// See [`ForwardAuthError`].
pub(crate) fn into_original(
    parts: &mut Parts,
    config: &ForwardAuthConfig,
    trusted_peer: bool,
) -> Result<(), ForwardAuthError> {
    if !trusted_peer {
        return Err(ForwardAuthError::UntrustedPeer);
    }
    let headers = &parts.headers;
    let ours = |name: &HeaderName| {
        config.uri_headers.contains(name)
            || config.method_headers.contains(name)
            || config.host_headers.contains(name)
    };
    if let Some(name) = headers.keys().find(|name| is_override(name) && !ours(name)) {
        return Err(ForwardAuthError::Override(name.as_str().to_owned()));
    }
    let uri = one_of(headers, &config.uri_headers, "URI")?
        .ok_or_else(|| ForwardAuthError::Missing("URI", names(&config.uri_headers)))?;
    let method = one_of(headers, &config.method_headers, "method")?
        .ok_or_else(|| ForwardAuthError::Missing("method", names(&config.method_headers)))?;
    let host = one_of(headers, &config.host_headers, "host")?.cloned();
    let uri = parse_uri(uri.as_bytes())?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ForwardAuthError::Unparsable("method"))?;
    if let Some(host) = host {
        if host.is_empty() || !host.as_bytes().iter().all(|b| b.is_ascii_graphic()) {
            return Err(ForwardAuthError::Unparsable("host"));
        }
        parts.headers.insert(header::HOST, host);
    }
    parts.uri = uri;
    parts.method = method;
    Ok(())
}

/// The one value the candidate headers give: none, or the same value however many of them
/// are present.
fn one_of<'h>(
    headers: &'h HeaderMap,
    candidates: &[HeaderName],
    what: &'static str,
) -> Result<Option<&'h HeaderValue>, ForwardAuthError> {
    let mut found: Option<&HeaderValue> = None;
    for name in candidates {
        for value in headers.get_all(name) {
            match found {
                Some(seen) if seen != value => return Err(ForwardAuthError::Conflicting(what)),
                _ => found = Some(value),
            }
        }
    }
    Ok(found)
}

/// An origin-form URI (`/path?query`). Proxies pass the raw request line, so bytes outside
/// ASCII (nginx's `$request_uri` keeps UTF-8 as sent) are percent-encoded first.
fn parse_uri(raw: &[u8]) -> Result<Uri, ForwardAuthError> {
    let unparsable = ForwardAuthError::Unparsable("URI");
    if raw.first() != Some(&b'/') {
        return Err(unparsable);
    }
    let mut text = String::with_capacity(raw.len() + 16);
    for &byte in raw {
        match byte {
            0..=0x20 | 0x7f => return Err(unparsable),
            0x80..=0xff => text.push_str(&format!("%{byte:02X}")),
            _ => text.push(char::from(byte)),
        }
    }
    let path_and_query = PathAndQuery::try_from(text).map_err(|_| unparsable.clone())?;
    // `#` ends the path for `PathAndQuery`: a fragment never reaches a server, so one here
    // means the value is not a request target.
    if raw.contains(&b'#') {
        return Err(unparsable);
    }
    Ok(Uri::from(path_and_query))
}

fn names(candidates: &[HeaderName]) -> String {
    candidates.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn config() -> ForwardAuthConfig {
        let names =
            |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect();
        ForwardAuthConfig {
            uri_headers: names(&["x-original-uri", "x-forwarded-uri"]),
            method_headers: names(&["x-original-method", "x-forwarded-method"]),
            host_headers: names(&["x-forwarded-host"]),
            audience: None,
        }
    }

    /// Headers of a forward-auth request, by name.
    type Headers<'a> = &'a [(&'static str, &'a [u8])];

    fn read(headers: Headers<'_>) -> Result<Parts, ForwardAuthError> {
        let mut request = Request::get("/auth/verify").header("host", "portcullis:8080");
        for (name, value) in headers {
            request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
        }
        let mut parts = request.body(()).unwrap().into_parts().0;
        into_original(&mut parts, &config(), true).map(|()| parts)
    }

    #[test]
    fn the_original_request_is_read_from_the_named_headers() {
        let parts = read(&[
            ("x-original-uri", b"/admin/users?q=1&r=2"),
            ("x-original-method", b"delete"),
            ("x-forwarded-host", b"app.example"),
        ])
        .unwrap();
        assert_eq!(parts.uri, "/admin/users?q=1&r=2");
        assert_eq!(parts.method.as_str(), "delete", "canonical case is the gateway's job");
        assert_eq!(parts.headers["host"], "app.example");
        let agreeing = read(&[
            ("x-original-uri", b"/a"),
            ("x-forwarded-uri", b"/a"),
            ("x-forwarded-method", b"GET"),
        ]);
        assert_eq!(agreeing.unwrap().uri, "/a");
    }

    #[test]
    fn raw_utf8_is_percent_encoded() {
        let parts = read(&[
            ("x-original-uri", "/admin/users?q=é".as_bytes()),
            ("x-original-method", b"GET"),
        ]);
        assert_eq!(parts.unwrap().uri, "/admin/users?q=%C3%A9");
    }

    #[test]
    fn it_fails_closed() {
        use ForwardAuthError::*;
        let get: (&'static str, &[u8]) = ("x-original-method", b"GET");
        let cases: [(Headers<'_>, ForwardAuthError); 10] = [
            (
                &[("x-original-uri", b"/a"), get, ("x-http-method-override", b"DELETE")],
                Override("x-http-method-override".into()),
            ),
            (
                &[("x-original-uri", b"/a"), get, ("x_rewrite_url", b"/b")],
                Override("x_rewrite_url".into()),
            ),
            (&[get], Missing("URI", "x-original-uri, x-forwarded-uri".into())),
            (
                &[("x-original-uri", b"/a")],
                Missing("method", "x-original-method, x-forwarded-method".into()),
            ),
            (
                &[("x-original-uri", b"/public/x"), ("x-forwarded-uri", b"/admin/x"), get],
                Conflicting("URI"),
            ),
            (&[("x-original-uri", b"/a"), ("x-original-uri", b"/b"), get], Conflicting("URI")),
            (
                &[("x-original-uri", b"/a"), get, ("x-forwarded-method", b"POST")],
                Conflicting("method"),
            ),
            (&[("x-original-uri", b"admin"), get], Unparsable("URI")),
            (&[("x-original-uri", b"/a b"), get], Unparsable("URI")),
            (&[("x-original-uri", b"/a#frag"), get], Unparsable("URI")),
        ];
        for (headers, expected) in cases {
            assert_eq!(read(headers).map(|_| ()), Err(expected.clone()), "{expected}");
        }
        let mut parts = Request::get("/auth/verify")
            .header("x-original-uri", "/a")
            .header("x-original-method", "GET")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(into_original(&mut parts, &config(), false), Err(UntrustedPeer));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 10_000, failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

        /// Any bytes as the original URI: an answer, never a panic; what parses is a path.
        #[test]
        fn any_original_uri_is_answered(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60)) {
            if let Ok(uri) = parse_uri(&bytes) {
                proptest::prop_assert!(uri.path().starts_with('/'));
                proptest::prop_assert!(uri.path_and_query().is_some_and(|pq| pq.as_str().is_ascii()));
            }
            let mut slash = vec![b'/'];
            slash.extend_from_slice(&bytes);
            let _ = parse_uri(&slash);
        }
    }
}
