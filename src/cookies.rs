//! Reading and writing Portcullis's own cookies, and cutting them out of forwarded requests.
//!
//! Cookies are `HttpOnly; SameSite=Lax; Path=/`, `Secure` whenever the public URL is https,
//! with `Domain` only when configured. Where the browser allows it (https, no `Domain`), names
//! carry the `__Host-` prefix, which a sibling subdomain cannot set ("cookie tossing"). The
//! unprefixed session name is still read while no prefixed session cookie is sent, but only
//! for sessions issued before the switch ([`CookieJar::accepts_unprefixed`]), so sessions made
//! before it keep working and a session planted under the old name does not. A request that
//! carries one of our cookies twice with different values is read as carrying none of it (the
//! session cookie: as ambiguous, and refused): the browser's order cannot tell the real one
//! from a planted one.
//!
//! Headers are read as bytes: a `Cookie` header with a non-UTF-8 value elsewhere in it must
//! neither hide our cookie from stripping nor from reading.
//!
//! The app never sees our cookies: the gateway removes them from the `Cookie` header and
//! refuses to let an app set them.

use cookie::{Cookie, SameSite};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// Name of the anonymous CSRF cookie (before any prefix).
pub(crate) const CSRF_COOKIE: &str = "portcullis_csrf";
/// Name of the refresh-token cookie (single-page apps that keep tokens in cookies).
pub(crate) const REFRESH_COOKIE: &str = "portcullis_refresh";
/// Name of the access-token cookie (`"mode": "cookie_token"`).
pub(crate) const ACCESS_COOKIE: &str = "portcullis_access";
/// Name of the cookie holding a browser's pending organization choice.
pub(crate) const CHOICE_COOKIE: &str = "portcullis_org_choice";
/// Name of the cookie that binds provider sign-ins to the browser that started them.
pub(crate) const FLOW_COOKIE: &str = "portcullis_flow";
/// The prefix browsers reserve for host-only, secure, `Path=/` cookies.
pub(crate) const HOST_PREFIX: &str = "__Host-";

/// One of our cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    /// The session (`session.cookie_name`).
    Session,
    /// The anonymous CSRF nonce.
    Csrf,
    /// The refresh token.
    Refresh,
    /// The access token.
    Access,
    /// A pending organization choice.
    Choice,
    /// The browser's binding of provider sign-ins it started.
    Flow,
}

impl Own {
    const ALL: [Self; 6] =
        [Self::Session, Self::Csrf, Self::Refresh, Self::Access, Self::Choice, Self::Flow];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a request's `Cookie` headers hold of one of our cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'h> {
    /// Not sent.
    Absent,
    /// Sent once, or several times with one value.
    One(&'h str),
    /// The session cookie under its unprefixed name, once (see
    /// [`CookieJar::accepts_unprefixed`]).
    Unprefixed(&'h str),
    /// Sent several times with different values, or with a value that is not text.
    Conflict,
}

impl<'h> Found<'h> {
    /// The value when there is exactly one, under either name (a conflict counts as none).
    pub fn one(self) -> Option<&'h str> {
        match self {
            Self::One(value) | Self::Unprefixed(value) => Some(value),
            Self::Absent | Self::Conflict => None,
        }
    }
}

/// The names and attributes of our cookies.
#[derive(Debug, Clone)]
pub struct CookieJar {
    names: [String; 6],
    /// The unprefixed names, when the names carry `__Host-`: never set, stripped like ours,
    /// and the session's still read.
    legacy: Option<[String; 6]>,
    /// When the `__Host-` names were first used (Unix ms): sessions issued before then may
    /// still come under the unprefixed name.
    prefixed_since_ms: Option<i64>,
    secure: bool,
    domain: Option<String>,
}

impl CookieJar {
    /// Cookie settings for a deployment: `__Host-` names when `secure` and no `domain`.
    pub fn new(session_name: &str, secure: bool, domain: Option<String>) -> Self {
        let base = |own: Own| match own {
            Own::Session => session_name.to_owned(),
            Own::Csrf => CSRF_COOKIE.to_owned(),
            Own::Refresh => REFRESH_COOKIE.to_owned(),
            Own::Access => ACCESS_COOKIE.to_owned(),
            Own::Choice => CHOICE_COOKIE.to_owned(),
            Own::Flow => FLOW_COOKIE.to_owned(),
        };
        let plain = Own::ALL.map(base);
        let prefixed = secure && domain.is_none();
        let (names, legacy) = if prefixed {
            let with_prefix = |name: &String| {
                if name.starts_with(HOST_PREFIX) {
                    name.clone()
                } else {
                    format!("{HOST_PREFIX}{name}")
                }
            };
            (plain.each_ref().map(with_prefix), Some(plain))
        } else {
            (plain, None)
        };
        Self { names, legacy, prefixed_since_ms: None, secure, domain }
    }

    /// Whether the names carry `__Host-`.
    pub fn is_prefixed(&self) -> bool {
        self.legacy.is_some()
    }

    /// Notes when the `__Host-` names were first used (Unix ms), so that sessions issued
    /// before then are still read under the unprefixed name.
    #[must_use]
    pub fn prefixed_since(mut self, unix_ms: i64) -> Self {
        self.prefixed_since_ms = Some(unix_ms);
        self
    }

    /// Whether the session `session_id` (a UUIDv7, stamped when it was issued) may be used
    /// from the unprefixed cookie: only if it was issued before the switch to `__Host-`
    /// names. A session issued since could only be there because someone planted it.
    pub fn accepts_unprefixed(&self, session_id: Option<uuid::Uuid>) -> bool {
        let issued_ms = session_id
            .and_then(|id| id.get_timestamp())
            .map(|stamp| stamp.to_unix())
            .and_then(|(secs, nanos)| {
                i64::try_from(secs).ok().map(|s| s * 1000 + i64::from(nanos / 1_000_000))
            });
        match (issued_ms, self.prefixed_since_ms) {
            (Some(issued), Some(since)) => issued < since,
            _ => false,
        }
    }

    /// The name `cookie` is set under.
    pub fn name(&self, cookie: Own) -> &str {
        &self.names[cookie.index()]
    }

    /// The session cookie's name.
    pub fn session_name(&self) -> &str {
        self.name(Own::Session)
    }

    /// Whether `name` is one of ours (under its current or its unprefixed name).
    pub fn is_own(&self, name: &[u8]) -> bool {
        self.names.iter().chain(self.legacy.iter().flatten()).any(|own| own.as_bytes() == name)
    }

    /// Reads `cookie` from the request's `Cookie` headers; for the session, the unprefixed
    /// name too when no cookie has the current one ([`Found::Unprefixed`]).
    pub fn read<'h>(&self, headers: &'h HeaderMap, cookie: Own) -> Found<'h> {
        let name = self.name(cookie).as_bytes();
        let legacy = self
            .legacy
            .as_ref()
            .filter(|_| cookie == Own::Session)
            .map(|names| names[cookie.index()].as_bytes());
        let mut current = Found::Absent;
        let mut old = Found::Absent;
        for (key, value) in pairs(headers) {
            let slot = if key == name {
                &mut current
            } else if Some(key) == legacy {
                &mut old
            } else {
                continue;
            };
            *slot = match (*slot, std::str::from_utf8(value)) {
                (_, Err(_)) | (Found::Conflict, _) => Found::Conflict,
                (Found::Absent, Ok(value)) => Found::One(value),
                (Found::One(seen) | Found::Unprefixed(seen), Ok(value)) if seen == value => {
                    Found::One(seen)
                }
                (Found::One(_) | Found::Unprefixed(_), Ok(_)) => Found::Conflict,
            };
        }
        match (current, old) {
            (Found::Absent, Found::One(value)) => Found::Unprefixed(value),
            (Found::Absent, old) => old,
            (current, _) => current,
        }
    }

    /// `Set-Cookie` for an access token, living `max_age`.
    pub fn access(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(Own::Access, value, Some(max_age))
    }

    /// `Set-Cookie` headers that remove the token cookies.
    pub fn clear_tokens(&self) -> Vec<HeaderValue> {
        [Own::Access, Own::Refresh].into_iter().flat_map(|own| self.clear(own)).collect()
    }

    /// `Set-Cookie` for a refresh token, living `max_age`.
    pub fn refresh(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(Own::Refresh, value, Some(max_age))
    }

    /// `Set-Cookie` for the session, living `max_age`.
    pub fn session(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(Own::Session, value, Some(max_age))
    }

    /// `Set-Cookie` headers that remove the session cookie (under both names).
    pub fn clear_session(&self) -> Vec<HeaderValue> {
        self.clear(Own::Session)
    }

    /// `Set-Cookie` for a pending organization choice, living `max_age`.
    pub fn choice(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(Own::Choice, value, Some(max_age))
    }

    /// `Set-Cookie` headers that remove the pending-choice cookie.
    pub fn clear_choice(&self) -> Vec<HeaderValue> {
        self.clear(Own::Choice)
    }

    /// `Set-Cookie` for the browser's provider sign-in binding, living `max_age`.
    pub fn flow(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(Own::Flow, value, Some(max_age))
    }

    /// `Set-Cookie` for the anonymous CSRF nonce (a browser-session cookie).
    pub fn csrf(&self, nonce: String) -> HeaderValue {
        self.build(Own::Csrf, nonce, None)
    }

    /// `Set-Cookie` headers that remove `cookie`, under its current and its unprefixed name.
    fn clear(&self, cookie: Own) -> Vec<HeaderValue> {
        let gone = Some(std::time::Duration::ZERO);
        let mut headers = vec![self.build_named(self.name(cookie), String::new(), gone)];
        if let Some(legacy) = &self.legacy {
            headers.push(self.build_named(&legacy[cookie.index()], String::new(), gone));
        }
        headers
    }

    fn build(
        &self,
        cookie: Own,
        value: String,
        max_age: Option<std::time::Duration>,
    ) -> HeaderValue {
        self.build_named(self.name(cookie), value, max_age)
    }

    fn build_named(
        &self,
        name: &str,
        value: String,
        max_age: Option<std::time::Duration>,
    ) -> HeaderValue {
        let mut builder = Cookie::build((name.to_owned(), value))
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure);
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.clone());
        }
        if let Some(max_age) = max_age {
            let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            builder = builder.max_age(cookie::time::Duration::seconds(seconds));
        }
        // Names and values are ours (validated names, base64url values): always valid.
        HeaderValue::from_str(&builder.build().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("portcullis_invalid=; Max-Age=0"))
    }
}

/// Every `name=value` pair of the request's `Cookie` headers, as bytes, trimmed, quotes
/// removed from values (a pair without `=` is a nameless cookie and is left out).
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let equals = pair.iter().position(|&b| b == b'=')?;
            let value = pair[equals + 1..].trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|inner| inner.strip_suffix(b"\""))
                .unwrap_or(value);
            Some((pair[..equals].trim_ascii(), value))
        })
}

/// The name of a cookie pair (`name=value`, or a nameless `value`), trimmed.
fn pair_name(pair: &[u8]) -> &[u8] {
    pair.iter().position(|&b| b == b'=').map_or(&[][..], |equals| pair[..equals].trim_ascii())
}

/// Removes our cookies from the `Cookie` headers, keeping the app's own cookies unchanged and
/// joining them into one header as HTTP/1.1 upstreams expect. Leaves the headers untouched
/// (no allocation) when none of ours is present.
pub fn strip_own(headers: &mut HeaderMap, jar: &CookieJar) {
    let mut has_own = false;
    let mut count = 0;
    let mut others = 0;
    for value in headers.get_all(COOKIE) {
        count += 1;
        for pair in value.as_bytes().split(|&b| b == b';') {
            let name = pair_name(pair);
            if jar.is_own(name) {
                has_own = true;
            } else if !pair.trim_ascii().is_empty() {
                others += 1;
            }
        }
    }
    if !has_own && count <= 1 {
        return;
    }
    if others == 0 {
        // Only ours (the usual request of a browser whose app sets no cookie): nothing to join.
        headers.remove(COOKIE);
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for pair in headers.get_all(COOKIE).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')) {
        let pair = pair.trim_ascii();
        if pair.is_empty() || jar.is_own(pair_name(pair)) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    headers.remove(COOKIE);
    // The bytes came from valid header values, joined by "; ": always a valid value.
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(&kept)
    {
        headers.insert(COOKIE, value);
    }
}

/// Removes any `Set-Cookie` from an upstream response that would set one of our cookies (under
/// either name), or a nameless cookie, which browsers send back as its bare value and so could
/// pass for one of ours: an app behind the proxy must not be able to fix a user's session.
pub(crate) fn strip_own_set_cookie(headers: &mut HeaderMap, jar: &CookieJar) {
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|value| {
            let pair = value.as_bytes().split(|&b| b == b';').next().unwrap_or_default();
            let name = pair_name(pair);
            !name.is_empty() && !jar.is_own(name)
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for value in kept {
        headers.append(SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests;
