//! Identification: which credential a request carries and whose it is.
//!
//! Credentials are tried in order: session cookie, access-token cookie (`"mode":
//! "cookie_token"`), `Authorization: Bearer` with an API key
//! (`pk_…`) or one of our access JWTs, then a `ws_` ticket in `access_token` on a WebSocket
//! upgrade. A kind that is absent says "not mine" and the next is tried, but a credential that
//! is present and bad stops the search, so a broken cookie never falls through to anonymous
//! access on a protected route. A bearer JWT of another issuer is not ours: it is left for the
//! app. Whichever credential wins, every one of ours that the request carries is reported in
//! [`Presented`], so that forwarding cuts all of them, not only the winner.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, header};

use crate::cookies::{CookieJar, Found, Own};
use crate::error::{ApiError, ErrorCode};
use crate::identity::api_key::{self, ApiKeyService};
use crate::identity::cache::IdentityCache;
use crate::identity::session::{SessionService, SessionToken};
use crate::identity::ticket::{self, WsTickets};
use crate::identity::tokens::{BearerJwt, TokenService};
use crate::model::Identity;
use crate::model::credential::CredentialHash;
use crate::store::StoreError;

/// `Retry-After` of a throttled credential, in seconds: at the default limit a client's
/// budget recovers one check per second.
const THROTTLED_RETRY_AFTER: u64 = 1;

/// The query parameter that carries a WebSocket ticket.
pub(crate) const TICKET_PARAM: &str = "access_token";

/// Everything that can turn a credential into an identity.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Session cookies.
    pub sessions: SessionService,
    /// API keys.
    pub api_keys: ApiKeyService,
    /// Access JWTs.
    pub tokens: TokenService,
    /// WebSocket tickets.
    pub tickets: WsTickets,
    /// Our cookies' names.
    pub cookies: CookieJar,
    /// The cache the services above share: whether a check would cost a store lookup.
    pub cache: IdentityCache,
}

/// The kinds of credential a request can identify itself with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The session cookie.
    SessionCookie,
    /// The access-token cookie.
    AccessCookie,
    /// A bearer API key.
    ApiKey,
    /// A bearer access JWT of ours.
    Jwt,
    /// A WebSocket ticket in the query.
    Ticket,
}

impl CredentialKind {
    /// Whether a browser sends this credential by itself (a state-changing call it
    /// authenticates needs CSRF protection).
    pub fn is_cookie(self) -> bool {
        matches!(self, Self::SessionCookie | Self::AccessCookie)
    }
}

/// Which of our credentials a request carries besides our cookies (always cut), and which one
/// identified it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presented {
    /// The credential that was checked: the first found.
    pub used: Option<CredentialKind>,
    /// `Authorization` holds one of our API keys or JWTs.
    pub authorization: bool,
    /// The query holds a `ws_` ticket.
    pub ticket: bool,
    /// Checking the credential took a store lookup (it was not answered from the cache): a
    /// failure then counts toward `rate_limit.failed_credentials_per_minute`.
    pub looked_up: bool,
}

/// Who the request is.
#[derive(Debug, Clone)]
pub enum Identified {
    /// No credential was sent.
    Anonymous,
    /// A valid credential.
    Known(Arc<Identity>),
    /// A credential was sent and refused.
    Rejected(Rejection),
}

/// Why a credential that was sent is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// It is not in a format we issue.
    Malformed,
    /// Several different session cookies were sent (one may be planted by a sibling site).
    Ambiguous,
    /// It is well-formed but unknown, expired or ended.
    Unknown,
    /// It could not be checked: the store is down and it is not cached.
    StoreUnavailable,
    /// A bearer API key that is malformed, unknown, expired or revoked.
    KeyRefused,
    /// One of our access JWTs that is forged, expired or revoked.
    TokenRefused,
    /// A WebSocket ticket that is unknown, used or expired.
    TicketRefused,
    /// Not checked: the client failed too many checks lately, and checking this one would
    /// cost a store lookup.
    Throttled,
}

impl Rejection {
    /// Whether this is a credential that failed its check (and counts toward
    /// `rate_limit.failed_credentials_per_minute`).
    pub fn is_failure(self) -> bool {
        match self {
            Self::Malformed
            | Self::Unknown
            | Self::KeyRefused
            | Self::TokenRefused
            | Self::TicketRefused => true,
            Self::Ambiguous | Self::StoreUnavailable | Self::Throttled => false,
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Malformed => {
                Self::new(ErrorCode::InvalidToken, "The session cookie is malformed")
            }
            Rejection::Ambiguous => Self::new(
                ErrorCode::Unauthorized,
                "The request carries several different session cookies",
            ),
            Rejection::Unknown => {
                Self::new(ErrorCode::Unauthorized, "The session has ended, sign in again")
            }
            Rejection::StoreUnavailable => Self::new(
                ErrorCode::StoreUnavailable,
                "Cannot check the credential right now, try again shortly",
            ),
            Rejection::KeyRefused => {
                Self::new(ErrorCode::InvalidToken, "The API key is invalid, expired or revoked")
            }
            Rejection::TokenRefused => Self::new(
                ErrorCode::InvalidToken,
                "The access token is invalid, expired or revoked",
            ),
            Rejection::TicketRefused => Self::new(
                ErrorCode::InvalidToken,
                "The WebSocket ticket is invalid, expired or already used",
            ),
            Rejection::Throttled => Self::new(
                ErrorCode::RateLimited,
                "Too many failed credentials from this address, try again shortly",
            )
            .with_retry_after(THROTTLED_RETRY_AFTER),
        }
    }
}

/// The session a request's cookie names, with its token (to end it).
///
/// # Errors
/// The cookie is present but malformed, ambiguous, unknown, or cannot be checked. `Ok(None)`
/// means no session cookie was sent.
pub(crate) async fn session_from_cookie(
    headers: &HeaderMap,
    sessions: &SessionService,
    cookies: &CookieJar,
) -> Result<Option<(SessionToken, Arc<Identity>)>, Rejection> {
    let found = cookies.read(headers, Own::Session);
    let value = match found {
        Found::Absent => return Ok(None),
        Found::Conflict => return Err(Rejection::Ambiguous),
        Found::One(value) | Found::Unprefixed(value) => value,
    };
    let token = SessionToken::from_cookie_value(value).ok_or(Rejection::Malformed)?;
    let identity =
        unprefixed_checked(found, cookies, checked(sessions.authenticate(&token).await))?;
    Ok(Some((token, identity)))
}

/// Identifies a request by its credentials, and says which of ours it carries. On a cache hit
/// this allocates nothing and touches no store. When `throttled`, a credential that would cost
/// a store lookup is not checked ([`Rejection::Throttled`]).
pub(crate) async fn identify(
    parts: &Parts,
    credentials: &Credentials,
    throttled: bool,
) -> (Identified, Presented) {
    // Whether checking the credential behind `hash` must wait.
    let held_back = |hash: &CredentialHash| throttled && !credentials.cache.holds(hash);
    // A JWT of ours (a foreign one is the app's business) whose check could reach the stores.
    let jwt_held_back = |token: &str| {
        throttled
            && credentials.tokens.claims_our_issuer(token)
            && held_back(&CredentialHash::of(token))
    };
    let bearer = bearer(&parts.headers);
    let api_key = bearer.filter(|token| api_key::is_api_key(token));
    let mut presented = Presented {
        used: None,
        authorization: api_key.is_some(),
        ticket: parts.uri.query().is_some_and(has_ticket),
        looked_up: false,
    };

    match credentials.cookies.read(&parts.headers, Own::Session) {
        Found::Absent => {}
        Found::Conflict => {
            presented.used = Some(CredentialKind::SessionCookie);
            let identified = Identified::Rejected(Rejection::Ambiguous);
            return (identified, with_our_bearer(presented, bearer, credentials));
        }
        found @ (Found::One(value) | Found::Unprefixed(value)) => {
            let identified = match SessionToken::hash_of_cookie_value(value) {
                None => Identified::Rejected(Rejection::Malformed),
                Some(hash) if held_back(&hash) => Identified::Rejected(Rejection::Throttled),
                Some(hash) => {
                    let session = credentials
                        .sessions
                        .authenticate_cookie_noting(value, hash, &mut presented.looked_up)
                        .await;
                    known(unprefixed_checked(found, &credentials.cookies, checked(session)))
                }
            };
            presented.used = Some(CredentialKind::SessionCookie);
            return (identified, with_our_bearer(presented, bearer, credentials));
        }
    }
    let access_cookie = credentials.cookies.read(&parts.headers, Own::Access);
    if access_cookie != Found::Absent {
        let checked = match access_cookie.one() {
            Some(token) if jwt_held_back(token) => {
                presented.used = Some(CredentialKind::AccessCookie);
                let identified = Identified::Rejected(Rejection::Throttled);
                return (identified, with_our_bearer(presented, bearer, credentials));
            }
            Some(token) => credentials.tokens.authenticate(token).await,
            None => Ok(BearerJwt::Refused),
        };
        let identified = match checked {
            Ok(BearerJwt::Valid(identity)) => Identified::Known(identity),
            Ok(BearerJwt::NotOurs | BearerJwt::Refused) => {
                Identified::Rejected(Rejection::TokenRefused)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot check an access token: store unavailable");
                Identified::Rejected(Rejection::StoreUnavailable)
            }
        };
        presented.used = Some(CredentialKind::AccessCookie);
        return (identified, with_our_bearer(presented, bearer, credentials));
    }
    if let Some(key) = api_key {
        let identified = match api_key::hash_of(key) {
            None => Identified::Rejected(Rejection::KeyRefused),
            Some(hash) if held_back(&hash) => Identified::Rejected(Rejection::Throttled),
            Some(hash) => match checked(
                credentials.api_keys.authenticate_noting(key, hash, &mut presented.looked_up).await,
            ) {
                Err(Rejection::Unknown) => Identified::Rejected(Rejection::KeyRefused),
                other => known(other),
            },
        };
        presented.used = Some(CredentialKind::ApiKey);
        return (identified, presented);
    }
    if let Some(bearer) = bearer {
        if jwt_held_back(bearer) {
            presented.authorization = true;
            presented.used = Some(CredentialKind::Jwt);
            return (Identified::Rejected(Rejection::Throttled), presented);
        }
        let identified = match credentials.tokens.authenticate(bearer).await {
            Ok(BearerJwt::NotOurs) => None,
            Ok(BearerJwt::Valid(identity)) => Some(Identified::Known(identity)),
            Ok(BearerJwt::Refused) => Some(Identified::Rejected(Rejection::TokenRefused)),
            Err(error) => {
                tracing::warn!(%error, "cannot check an access token: store unavailable");
                Some(Identified::Rejected(Rejection::StoreUnavailable))
            }
        };
        if let Some(identified) = identified {
            presented.authorization = true;
            presented.used = Some(CredentialKind::Jwt);
            return (identified, presented);
        }
    }
    if let Some(ticket) = websocket_ticket(parts) {
        // Tickets are single use: every check of a genuine one is a store operation.
        let identified = if !credentials.tickets.admits(&ticket) {
            Identified::Rejected(Rejection::TicketRefused)
        } else if throttled {
            Identified::Rejected(Rejection::Throttled)
        } else {
            presented.looked_up = true;
            match checked(credentials.tickets.redeem(&ticket).await) {
                Err(Rejection::Unknown) => Identified::Rejected(Rejection::TicketRefused),
                other => known(other),
            }
        };
        presented.used = Some(CredentialKind::Ticket);
        return (identified, presented);
    }
    (Identified::Anonymous, presented)
}

/// `presented`, noting a bearer JWT of ours that a cookie won over (it must not reach the app
/// either). Decoding the token's issuer costs something only when both are sent.
fn with_our_bearer(
    mut presented: Presented,
    bearer: Option<&str>,
    credentials: &Credentials,
) -> Presented {
    if !presented.authorization
        && let Some(token) = bearer
    {
        presented.authorization = credentials.tokens.claims_our_issuer(token);
    }
    presented
}

/// A session read from the unprefixed cookie counts only if it was issued before the switch to
/// `__Host-` names: one issued since can only have been planted there (by a sibling site).
fn unprefixed_checked(
    found: Found<'_>,
    cookies: &CookieJar,
    session: Result<Arc<Identity>, Rejection>,
) -> Result<Arc<Identity>, Rejection> {
    match (found, session) {
        (Found::Unprefixed(_), Ok(identity))
            if !cookies.accepts_unprefixed(identity.session_id) =>
        {
            Err(Rejection::Unknown)
        }
        (_, session) => session,
    }
}

fn known(checked: Result<Arc<Identity>, Rejection>) -> Identified {
    match checked {
        Ok(identity) => Identified::Known(identity),
        Err(rejection) => Identified::Rejected(rejection),
    }
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

/// A `ws_` ticket in the query of a WebSocket upgrade request.
fn websocket_ticket(parts: &Parts) -> Option<String> {
    if !parts.headers.get(header::UPGRADE)?.as_bytes().eq_ignore_ascii_case(b"websocket") {
        return None;
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name == TICKET_PARAM && ticket::is_ticket(value))
        .map(|(_, value)| value.into_owned())
}

/// Whether `query` holds a `ws_` ticket in its ticket parameter, on any request.
fn has_ticket(query: &str) -> bool {
    // Cheap filter first; a name or value may be percent-encoded (`access%5Ftoken`, `%77s_`).
    (query.contains(TICKET_PARAM) || query.contains('%'))
        && url::form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name == TICKET_PARAM && ticket::is_ticket(&value))
}

/// `query` without its ticket parameters (`None` when nothing is left). A pair is a ticket when
/// its decoded name is the ticket parameter and its decoded value is ticket-shaped, so an
/// encoded spelling is cut too, and an app's own `access_token` passes.
pub(crate) fn query_without_ticket(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
            let ticket = decoded
                .is_some_and(|(name, value)| name == TICKET_PARAM && ticket::is_ticket(&value));
            !pair.is_empty() && !ticket
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

fn checked(found: Result<Option<Arc<Identity>>, StoreError>) -> Result<Arc<Identity>, Rejection> {
    match found {
        Ok(Some(identity)) => Ok(identity),
        Ok(None) => Err(Rejection::Unknown),
        Err(error) => {
            tracing::warn!(%error, "cannot check a session: store unavailable");
            Err(Rejection::StoreUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "bearer  pk_x ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("pk_x"));
        headers.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer\tpk_y".parse().unwrap());
        assert_eq!(bearer(&headers), Some("pk_y"), "a tab separates too");
    }

    #[test]
    fn the_ticket_is_cut_from_the_query_and_the_rest_kept() {
        assert_eq!(query_without_ticket("access_token=ws_x"), None);
        assert_eq!(
            query_without_ticket("room=1&access_token=ws_x&b=2").as_deref(),
            Some("room=1&b=2")
        );
        assert_eq!(query_without_ticket("room=1").as_deref(), Some("room=1"));
        assert_eq!(query_without_ticket("access%5Ftoken=%77s_x&a=1").as_deref(), Some("a=1"));
        assert_eq!(
            query_without_ticket("access_token=app-own&access_token=ws_x").as_deref(),
            Some("access_token=app-own")
        );
        assert!(has_ticket("a=1&access_token=ws_x"));
        assert!(has_ticket("access%5Ftoken=ws_x"), "an encoded name is still the parameter");
        assert!(!has_ticket("access_token=app-own"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 10_000, failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

        /// Any `Authorization` value: an answer, never a panic; a token is non-empty and trimmed.
        #[test]
        fn any_authorization_header_is_read(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60)) {
            let Ok(value) = http::HeaderValue::from_bytes(&bytes) else { return Ok(()) };
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value);
            if let Some(token) = bearer(&headers) {
                proptest::prop_assert!(!token.is_empty() && token.trim() == token);
            }
        }
    }
}
