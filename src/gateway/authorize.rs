//! The one decision. Every request outside the auth prefix, proxied or asked about by a
//! forward-auth proxy, is decided by [`Gateway::authorize`]: read the request in exactly one
//! way (one `Host`, a canonical method, a normalized path), find its upstream and rule,
//! identify it, decide. The answer is a [`Permitted`], which forwarding consumes, or a
//! [`Refusal`].
//!
//! `Permitted` has private fields and cannot be cloned, so a request can only be forwarded
//! after this module allowed it, and only once. It carries what forwarding must do to honour
//! the decision: the method and path the rule matched, and every credential of ours on the
//! request, so that forwarding cuts all of them.

use std::borrow::Cow;
use std::sync::Arc;

use http::request::Parts;
use http::{Method, header};

use super::Gateway;
use super::identify::{Identified, Presented, Rejection};
use super::path::{PathError, PathOptions, normalize_path};
use super::policy::{Access, Decision, Denial, Permit, Route, canonical_method, decide};
use super::upstream::{Upstream, request_host};
use crate::error::ApiError;
use crate::model::Identity;

/// An allowed request, with what forwarding must do to honour the decision. Only
/// [`Gateway::authorize`] makes one.
#[derive(Debug)]
pub struct Permitted<'g> {
    permit: Permit,
    route: &'g Route,
    upstream: Option<&'g Upstream>,
    method: Option<Method>,
    path: Option<String>,
    presented: Presented,
    /// The request carried a session cookie the stores do not know (a public route let it
    /// through): the browser is told to drop it.
    clears_session: bool,
}

impl<'g> Permitted<'g> {
    /// The identity to forward, if any.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.permit.identity()
    }

    /// The rule that allowed the request.
    pub fn route(&self) -> &'g Route {
        self.route
    }

    /// The upstream that serves the request's host and path, if any.
    pub fn upstream(&self) -> Option<&'g Upstream> {
        self.upstream
    }

    /// The method the rule matched, when it differs from the request's spelling.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The normalized path the rule matched, when it differs from the request's.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// Our credentials on the request.
    pub fn presented(&self) -> Presented {
        self.presented
    }

    /// Whether the answer must clear the session cookie: it is dead (unknown or malformed),
    /// and a browser would otherwise send it with every request.
    pub fn clears_session(&self) -> bool {
        self.clears_session
    }
}

/// Why a request is not forwarded.
#[derive(Debug)]
pub enum Refusal {
    /// The request can be read in more than one way: 400, before any rule is looked at.
    Ambiguous(Ambiguity),
    /// The rule refuses this caller.
    Denied {
        /// Why.
        denial: Denial,
        /// Who the caller turned out to be.
        identified: Identified,
    },
}

/// What makes a request mean more than one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguity {
    /// The path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Several `Host` headers: Portcullis and the app could read different ones.
    #[error("the request has several Host headers")]
    SeveralHosts,
    /// `Host` disagrees with the request target's authority (HTTP/2 `:authority`).
    #[error("the Host header disagrees with the request's authority")]
    HostMismatch,
    /// `Host` is not a host name or address, with an optional port.
    #[error("the Host header is malformed")]
    BadHost,
    /// Several `Authorization` headers: the app could read another one than Portcullis did.
    #[error("the request has several Authorization headers")]
    SeveralAuthorizations,
    /// An extension method not in upper case, which some frameworks upper-case themselves.
    #[error("the method must be upper case")]
    MethodCase,
    /// A POST whose query names another method (`_method=DELETE`), which Symfony, Laravel and
    /// Rails run as that method.
    #[error("the query's _method would override the request's method")]
    MethodOverride,
}

/// Whose request the gateway decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A request it forwards itself, in the normalized form it decided on.
    Proxy,
    /// Forward-auth: a proxy forwards the original request as sent, so the decision must be
    /// on the path as sent; one that normalization would change is refused.
    ForwardAuth,
}

impl From<Ambiguity> for ApiError {
    fn from(problem: Ambiguity) -> Self {
        Self::invalid_request(problem.to_string())
    }
}

impl Gateway {
    /// Decides a request: the one decision of proxy and forward-auth mode alike.
    ///
    /// # Errors
    /// [`Refusal::Ambiguous`] for a request with more than one meaning, [`Refusal::Denied`]
    /// when the route's rule refuses the caller.
    pub async fn authorize(&self, parts: &Parts, mode: Mode) -> Result<Permitted<'_>, Refusal> {
        let host = checked_host(parts).map_err(Refusal::Ambiguous)?;
        if parts.headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some() {
            return Err(Refusal::Ambiguous(Ambiguity::SeveralAuthorizations));
        }
        let method = checked_method(&parts.method).map_err(Refusal::Ambiguous)?;
        if method.as_ref().unwrap_or(&parts.method) == Method::POST
            && parts.uri.query().is_some_and(names_a_method)
        {
            return Err(Refusal::Ambiguous(Ambiguity::MethodOverride));
        }
        let path = normalize_path(parts.uri.path()).map_err(|e| Refusal::Ambiguous(e.into()))?;
        match mode {
            Mode::Proxy if self.is_auth_path(path.matching()) => {
                return Err(Refusal::Ambiguous(PathError::AuthPrefix.into()));
            }
            Mode::ForwardAuth if !path.is_as_sent(parts.uri.path()) => {
                return Err(Refusal::Ambiguous(PathError::NotNormal.into()));
            }
            Mode::Proxy | Mode::ForwardAuth => {}
        }
        let host = if self.upstreams().routes_by_host() { host } else { None };
        let upstream = self.upstreams().select(host.as_deref(), path.matching());
        let needs = path.needs();
        if needs != PathOptions::default() {
            upstream
                .map_or_else(PathOptions::default, Upstream::path_options)
                .permit(needs)
                .map_err(|e| Refusal::Ambiguous(e.into()))?;
        }
        let (route, matched) =
            self.routes().find(method.as_ref().unwrap_or(&parts.method), path.matching());
        let (identified, presented) = match route.access {
            // Nobody passes: no credential is checked (or reported: nothing is forwarded).
            Access::Deny => (Identified::Anonymous, Presented::default()),
            Access::Public | Access::Authenticated => self.identify(parts).await,
        };
        let clears_session =
            matches!(identified, Identified::Rejected(Rejection::Malformed | Rejection::Unknown));
        let permit = match decide(route, &matched, &identified) {
            Decision::Allow(permit) => permit,
            Decision::Deny(denial) => return Err(Refusal::Denied { denial, identified }),
        };
        let path = match path.into_forward() {
            Cow::Borrowed(_) => None,
            Cow::Owned(normal) => Some(normal),
        };
        Ok(Permitted { permit, route, upstream, method, path, presented, clears_session })
    }

    /// Whether a normalized path lies under the auth prefix (the app never serves it, so a
    /// spelling that reached the gateway, such as `//auth/x`, has two meanings).
    fn is_auth_path(&self, path: &str) -> bool {
        path.strip_prefix(self.base_path())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Whether a query holds `_method` (in any encoding of the name).
fn names_a_method(query: &str) -> bool {
    (query.contains("_method") || query.contains('%'))
        && url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "_method")
}

/// The method rules match and the app receives: a standard method in any case is its
/// upper-case form; an extension method must already be upper case, since Django, Werkzeug and
/// ASP.NET upper-case what they receive (`mkcol` would run `MKCOL` past a rule on `MKCOL`).
fn checked_method(method: &Method) -> Result<Option<Method>, Ambiguity> {
    match canonical_method(method) {
        Some(standard) => Ok(Some(standard)),
        None if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) => {
            Err(Ambiguity::MethodCase)
        }
        None => Ok(None),
    }
}

/// The request's host (lower case, without port or trailing dot) after checking it has one
/// meaning: at most one well-formed `Host` header, naming the same host as the request
/// target's authority when both are present.
fn checked_host(parts: &Parts) -> Result<Option<Cow<'_, str>>, Ambiguity> {
    let mut values = parts.headers.get_all(header::HOST).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Ambiguity::SeveralHosts);
    }
    let header = first
        .map(|value| value.to_str().ok().filter(|host| is_host(host)).ok_or(Ambiguity::BadHost))
        .transpose()?;
    let authority = parts.uri.authority().map(http::uri::Authority::as_str);
    if let (Some(header), Some(authority)) = (header, authority)
        && request_host(header) != request_host(authority)
    {
        return Err(Ambiguity::HostMismatch);
    }
    Ok(header.or(authority).map(request_host))
}

/// Whether `value` is `host[:port]`: a name of letters, digits, `-`, `.` and `_`, an IPv4
/// address, or a bracketed IPv6 address.
fn is_host(value: &str) -> bool {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((address, port)) => {
                if address.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, port)
            }
            None => return false,
        },
        None => match value.rfind(':') {
            Some(colon) => (Some(&value[..colon]), &value[colon..]),
            None => (Some(value), ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => {
            !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => port.is_empty(),
    };
    let host_ok = host.is_none_or(|host| {
        !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    });
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn parts(request: http::request::Builder) -> Parts {
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn methods_have_one_spelling() {
        let method = |name: &str| Method::from_bytes(name.as_bytes()).unwrap();
        assert_eq!(checked_method(&method("delete")), Ok(Some(Method::DELETE)));
        assert_eq!(checked_method(&Method::GET), Ok(None));
        assert_eq!(checked_method(&method("MKCOL")), Ok(None));
        assert_eq!(checked_method(&method("mkcol")), Err(Ambiguity::MethodCase));
        assert_eq!(checked_method(&method("MkCol")), Err(Ambiguity::MethodCase));
    }

    #[test]
    fn the_host_must_have_one_meaning() {
        let one = parts(Request::get("/x").header("host", "App.Example:8080"));
        assert_eq!(checked_host(&one).unwrap().as_deref(), Some("app.example"));
        let two = parts(Request::get("/x").header("host", "a.example").header("host", "b.example"));
        assert_eq!(checked_host(&two), Err(Ambiguity::SeveralHosts));
        let h2 = parts(Request::get("http://a.example/x").header("host", "b.example"));
        assert_eq!(checked_host(&h2), Err(Ambiguity::HostMismatch));
        let agreeing = parts(Request::get("http://a.example/x").header("host", "A.example"));
        assert_eq!(checked_host(&agreeing).unwrap().as_deref(), Some("a.example"));
        let authority_only = parts(Request::get("http://a.example:1/x"));
        assert_eq!(checked_host(&authority_only).unwrap().as_deref(), Some("a.example"));
        let none = parts(Request::get("/x"));
        assert_eq!(checked_host(&none).unwrap(), None);
        let bad = parts(
            Request::get("/x").header("host", http::HeaderValue::from_bytes(b"\xffx").unwrap()),
        );
        assert_eq!(checked_host(&bad), Err(Ambiguity::BadHost));
        for bad in ["a,b", "a b", "a:", "a:x", "[::1", "[nope]:1", "a/b", ""] {
            let request = parts(Request::get("/x").header("host", bad));
            assert_eq!(checked_host(&request), Err(Ambiguity::BadHost), "{bad}");
        }
        let port = parts(Request::get("http://a.example/x").header("host", "a.example:443"));
        assert_eq!(checked_host(&port).unwrap().as_deref(), Some("a.example"), "ports aside");
        let dot = parts(Request::get("/x").header("host", "App.Example."));
        assert_eq!(checked_host(&dot).unwrap().as_deref(), Some("app.example"));
        let v6 = parts(Request::get("/x").header("host", "[::1]:8080"));
        assert_eq!(checked_host(&v6).unwrap().as_deref(), Some("::1"));
    }
}
