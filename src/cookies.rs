//! Reading and writing Portcullis's own cookies, and cutting them out of forwarded requests.
//!
//! Cookies are `HttpOnly; SameSite=Lax; Path=/`, `Secure` whenever the public URL is https,
//! with `Domain` only when configured. Where the browser allows it (https, no `Domain`), names
//! carry the `__Host-` prefix, which a sibling subdomain cannot set ("cookie tossing"); the
//! unprefixed names are still read while no prefixed cookie is sent, so sessions made before
//! the switch keep working. A request that carries one of our cookies twice with different
//! values is read as carrying none of it (the session cookie: as ambiguous, and refused): the
//! browser's order cannot tell the real one from a planted one.
//!
//! The app never sees our cookies: the gateway removes them from the `Cookie` header and
//! refuses to let an app set them.

use cookie::{Cookie, SameSite};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// Name of the anonymous CSRF cookie (before any prefix).
pub const CSRF_COOKIE: &str = "portcullis_csrf";
/// Name of the refresh-token cookie (single-page apps that keep tokens in cookies).
pub const REFRESH_COOKIE: &str = "portcullis_refresh";
/// Name of the access-token cookie (`"mode": "cookie_token"`).
pub const ACCESS_COOKIE: &str = "portcullis_access";
/// Name of the cookie holding a browser's pending organization choice.
pub const CHOICE_COOKIE: &str = "portcullis_org_choice";
/// The prefix browsers reserve for host-only, secure, `Path=/` cookies.
pub const HOST_PREFIX: &str = "__Host-";

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
}

impl Own {
    const ALL: [Self; 5] = [Self::Session, Self::Csrf, Self::Refresh, Self::Access, Self::Choice];

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
    /// Sent several times with different values.
    Conflict,
}

impl<'h> Found<'h> {
    /// The value when there is exactly one (a conflict counts as none).
    pub fn one(self) -> Option<&'h str> {
        match self {
            Self::One(value) => Some(value),
            Self::Absent | Self::Conflict => None,
        }
    }
}

/// The names and attributes of our cookies.
#[derive(Debug, Clone)]
pub struct CookieJar {
    names: [String; 5],
    /// The unprefixed names, still read, when the names carry `__Host-`.
    legacy: Option<[String; 5]>,
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
        };
        let plain = Own::ALL.map(base);
        let prefixed = secure && domain.is_none() && !session_name.starts_with(HOST_PREFIX);
        let (names, legacy) = if prefixed {
            (plain.clone().map(|name| format!("{HOST_PREFIX}{name}")), Some(plain))
        } else {
            (plain, None)
        };
        Self { names, legacy, secure, domain }
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
    pub fn is_own(&self, name: &str) -> bool {
        self.names.iter().chain(self.legacy.iter().flatten()).any(|own| own == name)
    }

    /// Reads `cookie` from the request's `Cookie` headers: the current name, or the unprefixed
    /// one when no cookie has the current name. Headers that are not UTF-8 are skipped.
    pub fn read<'h>(&self, headers: &'h HeaderMap, cookie: Own) -> Found<'h> {
        let name = self.name(cookie);
        let legacy = self.legacy.as_ref().map(|names| names[cookie.index()].as_str());
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
            *slot = match *slot {
                Found::Absent => Found::One(value),
                Found::One(seen) if seen == value => Found::One(seen),
                Found::One(_) | Found::Conflict => Found::Conflict,
            };
        }
        match current {
            Found::Absent => old,
            found => found,
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

/// Every `name=value` pair of the request's `Cookie` headers, trimmed, quotes removed from
/// values. Headers that are not valid UTF-8 are skipped.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.trim(), value.trim().trim_matches('"')))
        })
}

/// The value of the first cookie called `name` in the request's `Cookie` headers (the app's
/// cookies; ours are read with [`CookieJar::read`]).
pub fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    pairs(headers).find_map(|(key, value)| (key == name).then_some(value))
}

/// Removes our cookies from the `Cookie` headers, keeping the app's own cookies unchanged and
/// joining them into one header as HTTP/1.1 upstreams expect. Leaves the headers untouched
/// (no allocation) when none of ours is present.
pub fn strip_own(headers: &mut HeaderMap, jar: &CookieJar) {
    let mut has_own = false;
    let mut count = 0;
    for value in headers.get_all(COOKIE) {
        count += 1;
        let Ok(text) = value.to_str() else { continue };
        has_own |=
            text.split(';').any(|pair| jar.is_own(pair.split('=').next().unwrap_or("").trim()));
    }
    if !has_own && count <= 1 {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !jar.is_own(pair.split('=').next().unwrap_or("").trim()))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, value);
    }
}

/// Removes any `Set-Cookie` from an upstream response that would set one of our cookies: an
/// app behind the proxy must not be able to fix a user's session.
pub fn strip_own_set_cookie(headers: &mut HeaderMap, jar: &CookieJar) {
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|value| {
            let name = value.to_str().ok().and_then(|text| text.split('=').next()).unwrap_or("");
            !jar.is_own(name.trim())
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for value in kept {
        headers.append(SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jar() -> CookieJar {
        CookieJar::new("portcullis_session", true, Some("example.com".into()))
    }

    #[test]
    fn session_cookie_has_the_secure_defaults() {
        let text = jar()
            .session("v1.abc".into(), std::time::Duration::from_secs(60))
            .to_str()
            .unwrap()
            .to_owned();
        for part in [
            "portcullis_session=v1.abc",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Secure",
            "Domain=example.com",
            "Max-Age=60",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        let cleared = CookieJar::new("s", false, None).clear_session();
        let plain = cleared[0].to_str().unwrap();
        assert!(!plain.contains("Secure") && plain.contains("Max-Age=0"), "{plain}");
    }

    #[test]
    fn finds_cookies_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; portcullis_session=v1.x"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(find(&headers, "portcullis_session"), Some("v1.x"));
        assert_eq!(find(&headers, "b"), Some("2"));
        assert_eq!(find(&headers, "c"), None);
    }

    #[test]
    fn strips_only_our_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("app=1; portcullis_session=v1.x; portcullis_csrf=n"),
        );
        headers.append(COOKIE, HeaderValue::from_static("theme=dark"));
        strip_own(&mut headers, &jar());
        assert_eq!(headers.get_all(COOKIE).iter().count(), 1);
        assert_eq!(headers[COOKIE], "app=1; theme=dark");

        let mut only_ours = HeaderMap::new();
        only_ours.insert(COOKIE, HeaderValue::from_static("portcullis_session=v1.x"));
        strip_own(&mut only_ours, &jar());
        assert!(only_ours.get(COOKIE).is_none());

        let mut untouched = HeaderMap::new();
        untouched.insert(COOKIE, HeaderValue::from_static("app=1"));
        strip_own(&mut untouched, &jar());
        assert_eq!(untouched[COOKIE], "app=1");
    }

    #[test]
    fn apps_cannot_set_our_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, HeaderValue::from_static("portcullis_session=evil; Path=/"));
        headers.append(SET_COOKIE, HeaderValue::from_static("app=1; Path=/"));
        strip_own_set_cookie(&mut headers, &jar());
        let left: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left, [HeaderValue::from_static("app=1; Path=/")]);
    }

    fn cookies(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(COOKIE, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn host_prefix_where_browsers_allow_it_and_old_names_still_read() {
        let https = CookieJar::new("portcullis_session", true, None);
        assert_eq!(https.session_name(), "__Host-portcullis_session");
        assert_eq!(https.name(Own::Csrf), "__Host-portcullis_csrf");
        let set = https.session("v1.a".into(), std::time::Duration::from_secs(1));
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-portcullis_session=v1.a") && set.contains("Secure"));
        assert!(!set.contains("Domain"), "{set}");
        assert_eq!(https.clear_session().len(), 2, "both names are cleared");
        // A sibling subdomain can share cookies only with Domain, and http has no Secure.
        assert_eq!(jar().session_name(), "portcullis_session");
        assert_eq!(CookieJar::new("s", false, None).session_name(), "s");

        let old = cookies(&["portcullis_session=v1.old"]);
        assert_eq!(https.read(&old, Own::Session), Found::One("v1.old"), "transition");
        let both = cookies(&["portcullis_session=v1.old; __Host-portcullis_session=v1.new"]);
        assert_eq!(https.read(&both, Own::Session), Found::One("v1.new"), "prefixed wins");
        assert!(https.is_own("portcullis_session") && https.is_own("__Host-portcullis_csrf"));
    }

    #[test]
    fn a_cookie_sent_twice_with_different_values_is_a_conflict() {
        let plain = CookieJar::new("portcullis_session", false, None);
        let tossed = cookies(&["portcullis_session=v1.planted", "a=1; portcullis_session=v1.mine"]);
        assert_eq!(plain.read(&tossed, Own::Session), Found::Conflict);
        assert_eq!(plain.read(&tossed, Own::Session).one(), None);
        let repeated = cookies(&["portcullis_session=v1.x; portcullis_session=\"v1.x\""]);
        assert_eq!(plain.read(&repeated, Own::Session), Found::One("v1.x"));
        assert_eq!(plain.read(&cookies(&["a=1"]), Own::Session), Found::Absent);
        // Under the prefix, the unprefixed duplicates do not matter once a prefixed one is sent.
        let https = CookieJar::new("portcullis_session", true, None);
        let mixed = cookies(&[
            "portcullis_session=v1.a; portcullis_session=v1.b; __Host-portcullis_session=v1.c",
        ]);
        assert_eq!(https.read(&mixed, Own::Session), Found::One("v1.c"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 10_000, failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

        /// Any `Cookie` header: an answer, never a panic; a value found is part of the header;
        /// after stripping, none of ours is left.
        #[test]
        fn any_cookie_header_is_read_and_stripped(text in "[ -~]{0,80}") {
            let jar = CookieJar::new("portcullis_session", true, None);
            let Ok(value) = HeaderValue::from_str(&text) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            headers.append(COOKIE, value);
            if let Found::One(found) = jar.read(&headers, Own::Session) {
                proptest::prop_assert!(text.contains(found));
            }
            strip_own(&mut headers, &jar);
            for own in Own::ALL {
                proptest::prop_assert_eq!(jar.read(&headers, own), Found::Absent);
            }
        }
    }
}
