//! Reading and writing Portcullis's own cookies, and cutting them out of forwarded requests.
//!
//! Cookies are `HttpOnly; SameSite=Lax; Path=/`, `Secure` whenever the public URL is https,
//! with `Domain` only when configured. The app never sees them: the gateway removes them from
//! the `Cookie` header and refuses to let an app set them.

use cookie::{Cookie, SameSite};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// Name of the anonymous CSRF cookie.
pub const CSRF_COOKIE: &str = "portcullis_csrf";
/// Name of the refresh-token cookie (single-page apps that keep tokens in cookies).
pub const REFRESH_COOKIE: &str = "portcullis_refresh";
/// Name of the access-token cookie (`"mode": "cookie_token"`).
pub const ACCESS_COOKIE: &str = "portcullis_access";
/// Name of the cookie holding a browser's pending organization choice.
pub const CHOICE_COOKIE: &str = "portcullis_org_choice";

/// The names and attributes of our cookies.
#[derive(Debug, Clone)]
pub struct CookieJar {
    session_name: String,
    secure: bool,
    domain: Option<String>,
}

impl CookieJar {
    /// Cookie settings for a deployment.
    pub fn new(session_name: &str, secure: bool, domain: Option<String>) -> Self {
        Self { session_name: session_name.to_owned(), secure, domain }
    }

    /// The session cookie's name.
    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// Whether `name` is one of ours.
    pub fn is_own(&self, name: &str) -> bool {
        name == self.session_name
            || name == CSRF_COOKIE
            || name == REFRESH_COOKIE
            || name == ACCESS_COOKIE
            || name == CHOICE_COOKIE
    }

    /// `Set-Cookie` for an access token, living `max_age`.
    pub fn access(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(ACCESS_COOKIE.to_owned(), value, Some(max_age))
    }

    /// `Set-Cookie` headers that remove the token cookies.
    pub fn clear_tokens(&self) -> [HeaderValue; 2] {
        let gone = Some(std::time::Duration::ZERO);
        [
            self.build(ACCESS_COOKIE.to_owned(), String::new(), gone),
            self.build(REFRESH_COOKIE.to_owned(), String::new(), gone),
        ]
    }

    /// `Set-Cookie` for a refresh token, living `max_age`.
    pub fn refresh(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(REFRESH_COOKIE.to_owned(), value, Some(max_age))
    }

    /// `Set-Cookie` for the session, living `max_age`.
    pub fn session(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(self.session_name.clone(), value, Some(max_age))
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear_session(&self) -> HeaderValue {
        self.build(self.session_name.clone(), String::new(), Some(std::time::Duration::ZERO))
    }

    /// `Set-Cookie` for a pending organization choice, living `max_age`.
    pub fn choice(&self, value: String, max_age: std::time::Duration) -> HeaderValue {
        self.build(CHOICE_COOKIE.to_owned(), value, Some(max_age))
    }

    /// `Set-Cookie` that removes the pending-choice cookie.
    pub fn clear_choice(&self) -> HeaderValue {
        self.build(CHOICE_COOKIE.to_owned(), String::new(), Some(std::time::Duration::ZERO))
    }

    /// `Set-Cookie` for the anonymous CSRF nonce (a browser-session cookie).
    pub fn csrf(&self, nonce: String) -> HeaderValue {
        self.build(CSRF_COOKIE.to_owned(), nonce, None)
    }

    fn build(
        &self,
        name: String,
        value: String,
        max_age: Option<std::time::Duration>,
    ) -> HeaderValue {
        let mut builder = Cookie::build((name, value))
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

/// The value of the first cookie called `name` in the request's `Cookie` headers. Headers that
/// are not valid UTF-8 are skipped.
pub fn find<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
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
        let plain = CookieJar::new("s", false, None).clear_session().to_str().unwrap().to_owned();
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
}
