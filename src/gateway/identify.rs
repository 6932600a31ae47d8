//! Identification: which credential a request carries and whose it is.
//!
//! Credentials are tried in order: session cookie, access-token cookie (`"mode":
//! "cookie_token"`), `Authorization: Bearer` with an API key
//! (`pk_…`) or one of our access JWTs, then a `ws_` ticket in `access_token` on a WebSocket
//! upgrade. A kind that is absent says "not mine" and the next is tried, but a credential that
//! is present and bad stops the search, so a broken cookie never falls through to anonymous
//! access on a protected route. A bearer JWT of another issuer is not ours: it is left for the
//! app.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, header};

use crate::cookies::{self, ACCESS_COOKIE};
use crate::error::{ApiError, ErrorCode};
use crate::identity::Identity;
use crate::identity::api_key::{self, ApiKeyService};
use crate::identity::session::{SessionService, SessionToken};
use crate::identity::ticket::{self, WsTickets};
use crate::identity::tokens::{BearerJwt, TokenService};
use crate::store::StoreError;

/// The query parameter that carries a WebSocket ticket.
pub const TICKET_PARAM: &str = "access_token";

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
    /// The session cookie's name.
    pub cookie_name: String,
}

/// Which credential of the request is ours and must not reach the app (besides our cookies,
/// which are always cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// Nothing, or only our cookies (a browser sends those by itself: state-changing auth
    /// calls authenticated by them need CSRF protection).
    Nothing,
    /// The `Authorization` header held our API key or JWT.
    Authorization,
    /// The `access_token` query parameter held a ticket.
    Ticket,
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
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Malformed => {
                Self::new(ErrorCode::InvalidToken, "The session cookie is malformed")
            }
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
        }
    }
}

/// The session a request's cookie names, with its token (to end it).
///
/// # Errors
/// The cookie is present but malformed, unknown, or cannot be checked. `Ok(None)` means no
/// session cookie was sent.
pub async fn session_from_cookie(
    headers: &HeaderMap,
    sessions: &SessionService,
    cookie_name: &str,
) -> Result<Option<(SessionToken, Arc<Identity>)>, Rejection> {
    let Some(value) = cookies::find(headers, cookie_name) else {
        return Ok(None);
    };
    let token = SessionToken::from_cookie_value(value).ok_or(Rejection::Malformed)?;
    let identity = checked(sessions.authenticate(&token).await)?;
    Ok(Some((token, identity)))
}

/// Identifies a request by its credentials, and says which of them must not be forwarded. On
/// a cache hit this allocates nothing and touches no store.
pub async fn identify(parts: &Parts, credentials: &Credentials) -> (Identified, Consumed) {
    if let Some(value) = cookies::find(&parts.headers, &credentials.cookie_name) {
        let identified = match SessionToken::hash_of_cookie_value(value) {
            None => Identified::Rejected(Rejection::Malformed),
            Some(hash) => known(checked(credentials.sessions.authenticate_hash(hash).await)),
        };
        return (identified, Consumed::Nothing);
    }
    if let Some(token) = cookies::find(&parts.headers, ACCESS_COOKIE) {
        let identified = match credentials.tokens.authenticate(token).await {
            Ok(BearerJwt::Valid(identity)) => Identified::Known(identity),
            Ok(BearerJwt::NotOurs | BearerJwt::Refused) => {
                Identified::Rejected(Rejection::TokenRefused)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot check an access token: store unavailable");
                Identified::Rejected(Rejection::StoreUnavailable)
            }
        };
        return (identified, Consumed::Nothing);
    }
    if let Some(bearer) = bearer(&parts.headers) {
        if api_key::is_api_key(bearer) {
            let identified = match api_key::hash_of(bearer) {
                None => Identified::Rejected(Rejection::KeyRefused),
                Some(hash) => match checked(credentials.api_keys.authenticate(hash).await) {
                    Err(Rejection::Unknown) => Identified::Rejected(Rejection::KeyRefused),
                    other => known(other),
                },
            };
            return (identified, Consumed::Authorization);
        }
        match credentials.tokens.authenticate(bearer).await {
            Ok(BearerJwt::NotOurs) => {}
            Ok(BearerJwt::Valid(identity)) => {
                return (Identified::Known(identity), Consumed::Authorization);
            }
            Ok(BearerJwt::Refused) => {
                return (Identified::Rejected(Rejection::TokenRefused), Consumed::Authorization);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot check an access token: store unavailable");
                return (
                    Identified::Rejected(Rejection::StoreUnavailable),
                    Consumed::Authorization,
                );
            }
        }
    }
    if let Some(ticket) = websocket_ticket(parts) {
        let identified = match checked(credentials.tickets.redeem(&ticket).await) {
            Err(Rejection::Unknown) => Identified::Rejected(Rejection::TicketRefused),
            other => known(other),
        };
        return (identified, Consumed::Ticket);
    }
    (Identified::Anonymous, Consumed::Nothing)
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
    let (scheme, token) = value.split_once(' ')?;
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

/// `query` without the ticket parameter (`None` when nothing is left).
pub fn query_without_ticket(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !name.is_empty() && name != TICKET_PARAM
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
    }

    #[test]
    fn the_ticket_is_cut_from_the_query_and_the_rest_kept() {
        assert_eq!(query_without_ticket("access_token=ws_x"), None);
        assert_eq!(
            query_without_ticket("room=1&access_token=ws_x&b=2").as_deref(),
            Some("room=1&b=2")
        );
        assert_eq!(query_without_ticket("room=1").as_deref(), Some("room=1"));
    }
}
