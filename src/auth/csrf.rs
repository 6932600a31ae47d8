//! CSRF protection: tokens bound by HMAC to the session (or to an anonymous nonce cookie), and
//! the same-site check on `Origin` and `Sec-Fetch-Site`.
//!
//! A state-changing request authenticated by cookie must carry `X-CSRF-Token` (or the
//! `csrf_token` field of a form) and must not come from another site.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::header::{HOST, ORIGIN, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use uuid::Uuid;

use super::extract::BodyKind;
use super::openapi::CsrfBody;
use crate::auth::error::AuthError;
use crate::auth::state::AppState;
use crate::config::redirect::RedirectPolicy;
use crate::conn::peer::Peer;
use crate::cookies::{CookieJar, Own};
use crate::crypto::{self, SecretKey};
use crate::gateway::Gateway;
use crate::gateway::identify::Identified;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Header carrying the token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Issues and checks CSRF tokens.
#[derive(Debug, Clone)]
pub struct Csrf {
    key: SecretKey,
    origins: RedirectPolicy,
    cookies: CookieJar,
}

impl Csrf {
    /// Tokens signed with `key`; `origins` says which origins count as ours; the anonymous
    /// nonce lives in `cookies`' CSRF cookie.
    pub fn new(key: SecretKey, origins: RedirectPolicy, cookies: CookieJar) -> Self {
        Self { key, origins, cookies }
    }

    /// The token for a session.
    pub fn session_token(&self, session_id: Uuid) -> String {
        self.key.sign(&[b"csrf-session", session_id.as_bytes()])
    }

    /// The token for an anonymous visitor holding the CSRF cookie `nonce`.
    pub fn anonymous_token(&self, nonce: &str) -> String {
        self.key.sign(&[b"csrf-anonymous", nonce.as_bytes()])
    }

    /// An anonymous token for a page render: reuses the visitor's CSRF cookie or returns the
    /// `Set-Cookie` for a new one.
    pub(crate) fn anonymous_for_page(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        match self.cookies.read(headers, Own::Csrf).one().filter(|n| is_nonce(n)) {
            Some(nonce) => (self.anonymous_token(nonce), None),
            None => {
                let nonce = crypto::random_token();
                (self.anonymous_token(&nonce), Some(self.cookies.csrf(nonce)))
            }
        }
    }

    /// Checks origin and the `X-CSRF-Token` header for a cookie-authenticated session.
    ///
    /// # Errors
    /// 403 `csrf_failed`.
    pub fn verify_for_session(&self, parts: &Parts, session_id: Uuid) -> Result<(), AuthError> {
        self.same_site(&parts.headers, own_origin(parts).as_deref())?;
        let token = parts.headers.get(CSRF_HEADER).and_then(|value| value.to_str().ok());
        self.check_session_token(token, session_id)
    }

    /// Checks origin and a session's token from a form field, else the `X-CSRF-Token` header,
    /// for endpoints that take both JSON and the pages' form posts.
    ///
    /// # Errors
    /// 403 `csrf_failed`.
    pub fn verify_session_token(
        &self,
        site: &SiteContext,
        session_id: Uuid,
        form_token: Option<&str>,
    ) -> Result<(), AuthError> {
        self.check_same_site(site)?;
        let token = form_token
            .or_else(|| site.headers.get(CSRF_HEADER).and_then(|value| value.to_str().ok()));
        self.check_session_token(token, session_id)
    }

    fn check_session_token(&self, token: Option<&str>, session_id: Uuid) -> Result<(), AuthError> {
        match token {
            Some(token) if self.key.verify(&[b"csrf-session", session_id.as_bytes()], token) => {
                Ok(())
            }
            Some(_) => Err(csrf_failed("The CSRF token is not valid for this session")),
            None => Err(csrf_failed("X-CSRF-Token header is required (GET /auth/csrf)")),
        }
    }

    /// Checks origin and a token (from a form field or header) against the anonymous CSRF
    /// cookie, for forms posted before sign-in.
    ///
    /// # Errors
    /// 403 `csrf_failed`.
    pub fn verify_anonymous(
        &self,
        site: &SiteContext,
        token: Option<&str>,
    ) -> Result<(), AuthError> {
        self.check_same_site(site)?;
        let token =
            token.or_else(|| site.headers.get(CSRF_HEADER).and_then(|value| value.to_str().ok()));
        let nonce = self.cookies.read(&site.headers, Own::Csrf).one();
        match (token, nonce) {
            (Some(token), Some(nonce))
                if self.key.verify(&[b"csrf-anonymous", nonce.as_bytes()], token) =>
            {
                Ok(())
            }
            _ => Err(csrf_failed("The form has expired, reload the page and try again")),
        }
    }

    /// CSRF for an anonymous post that is either a JSON API call (must not be cross-site) or one
    /// of our pages' forms (must also carry the page's token, `form_token`).
    ///
    /// # Errors
    /// 403 `csrf_failed`.
    pub fn check_anonymous_post(
        &self,
        site: &SiteContext,
        kind: BodyKind,
        form_token: Option<&str>,
    ) -> Result<(), AuthError> {
        match kind {
            BodyKind::Json => self.check_same_site(site),
            BodyKind::Form => self.verify_anonymous(site, form_token),
        }
    }

    /// Refuses requests a browser marks as cross-site, by `Sec-Fetch-Site` or by an `Origin`
    /// that is neither ours, configured, nor the request's own host.
    ///
    /// # Errors
    /// 403 `csrf_failed`.
    pub fn check_same_site(&self, site: &SiteContext) -> Result<(), AuthError> {
        self.same_site(&site.headers, site.own_origin.as_deref())
    }

    fn same_site(&self, headers: &HeaderMap, own_origin: Option<&str>) -> Result<(), AuthError> {
        let fetch_site = headers.get("sec-fetch-site").map(|value| value.as_bytes());
        if fetch_site == Some(b"cross-site") {
            return Err(csrf_failed("Cross-site requests are refused"));
        }
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().map_err(|_| csrf_failed("Cross-site requests are refused"))?;
        // A browser sends `Origin: null` on a form post from a page whose referrer policy is
        // `no-referrer`; its `Sec-Fetch-Site` still says where the post came from. Alone, `null`
        // (a sandboxed frame, a `data:` page) is refused.
        let null_but_same_origin = origin == "null" && fetch_site == Some(b"same-origin");
        if null_but_same_origin || self.origins.allows_origin(origin) || Some(origin) == own_origin
        {
            Ok(())
        } else {
            Err(csrf_failed("Cross-site requests are refused"))
        }
    }
}

/// What the CSRF checks need from a request, for handlers that also read the body.
#[derive(Debug, Clone)]
pub struct SiteContext {
    /// The request headers.
    pub headers: HeaderMap,
    /// `scheme://host` as the browser addressed this request.
    pub own_origin: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for SiteContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self { headers: parts.headers.clone(), own_origin: own_origin(parts) })
    }
}

/// `scheme://host` of the request itself, as the browser addressed it.
fn own_origin(parts: &Parts) -> Option<String> {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))?;
    let tls = parts.extensions.get::<Peer>().is_some_and(|peer| peer.tls);
    Some(format!("{}://{}", if tls { "https" } else { "http" }, host.to_ascii_lowercase()))
}

fn csrf_failed(message: &'static str) -> AuthError {
    AuthError::Csrf(message)
}

/// Routes: `GET /csrf`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token))
}

/// `GET /auth/csrf`: the session's token, or an anonymous one tied to a cookie set here.
#[utoipa::path(
    get,
    path = "/csrf",
    tag = "session",
    responses(
        (status = 200, description = "A token for this session, or for this browser (a cookie is set)", body = CsrfBody),
    ),
)]
async fn token(
    State(gateway): State<Arc<Gateway>>,
    State(csrf): State<Arc<Csrf>>,
    parts: Parts,
) -> Response {
    if let (Identified::Known(identity), _) = gateway.identify(&parts).await
        && let Some(session_id) = identity.session_id
    {
        return Json(CsrfBody { csrf_token: csrf.session_token(session_id) }).into_response();
    }
    let (csrf_token, set_cookie) = csrf.anonymous_for_page(&parts.headers);
    let mut response = Json(CsrfBody { csrf_token }).into_response();
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// Whether a CSRF cookie value looks like one we issued.
pub(crate) fn is_nonce(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ApiError, ErrorCode};
    use http::Request;

    fn csrf() -> Csrf {
        Csrf::new(
            SecretKey::new(&[7; 32]),
            RedirectPolicy::new(
                Some("https://app.example.com".into()),
                vec!["https://admin.example.com".into()],
            ),
            CookieJar::new("portcullis_session", false, None),
        )
    }

    fn site(headers: &[(&str, &str)]) -> SiteContext {
        let parts = parts(headers);
        SiteContext { own_origin: own_origin(&parts), headers: parts.headers }
    }

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method("POST").uri("/auth/logout");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn session_tokens_verify_only_for_their_session() {
        let csrf = csrf();
        let session = Uuid::from_u128(1);
        let token = csrf.session_token(session);
        assert!(csrf.verify_for_session(&parts(&[(CSRF_HEADER, &token)]), session).is_ok());
        let other = csrf.verify_for_session(&parts(&[(CSRF_HEADER, &token)]), Uuid::from_u128(2));
        assert_eq!(ApiError::from(other.unwrap_err()).code(), ErrorCode::CsrfFailed);
        assert_eq!(
            ApiError::from(csrf.verify_for_session(&parts(&[]), session).unwrap_err()).code(),
            ErrorCode::CsrfFailed
        );
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let csrf = csrf();
        let ok = [
            vec![],
            vec![("origin", "https://app.example.com")],
            vec![("origin", "https://admin.example.com")],
            vec![("origin", "http://internal:8080"), ("host", "internal:8080")],
            vec![("sec-fetch-site", "same-origin")],
            vec![("origin", "null"), ("sec-fetch-site", "same-origin")],
        ];
        for headers in ok {
            assert!(csrf.check_same_site(&site(&headers)).is_ok(), "{headers:?}");
        }
        let refused = [
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "null"), ("sec-fetch-site", "same-site")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("origin", "https://app.example.com"), ("sec-fetch-site", "cross-site")],
        ];
        for headers in refused {
            assert!(csrf.check_same_site(&site(&headers)).is_err(), "{headers:?}");
        }
    }

    #[test]
    fn anonymous_tokens_need_the_matching_cookie() {
        let csrf = csrf();
        let nonce = crypto::random_token();
        let token = csrf.anonymous_token(&nonce);
        let cookie = format!("portcullis_csrf={nonce}");
        assert!(csrf.verify_anonymous(&site(&[("cookie", &cookie)]), Some(&token)).is_ok());
        assert!(csrf.verify_anonymous(&site(&[]), Some(&token)).is_err());
        let other = format!("portcullis_csrf={}", crypto::random_token());
        assert!(csrf.verify_anonymous(&site(&[("cookie", &other)]), Some(&token)).is_err());
    }
}
