//! Identification: which credential a request carries and whose it is.
//!
//! Credentials are tried in order (session cookie, then the kinds later versions add); a kind
//! that is absent says "not mine" and the next is tried, but a credential that is present and
//! bad stops the search, so a broken cookie never falls through to anonymous access on a
//! protected route.

use std::sync::Arc;

use http::HeaderMap;
use http::request::Parts;

use crate::cookies;
use crate::error::{ApiError, ErrorCode};
use crate::identity::Identity;
use crate::identity::session::{SessionService, SessionToken};

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
                "Cannot check the session right now, try again shortly",
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
    match sessions.authenticate(&token).await {
        Ok(Some(identity)) => Ok(Some((token, identity))),
        Ok(None) => Err(Rejection::Unknown),
        Err(error) => {
            tracing::warn!(%error, "cannot check a session: store unavailable");
            Err(Rejection::StoreUnavailable)
        }
    }
}

/// Identifies a request by its credentials.
pub async fn identify(parts: &Parts, sessions: &SessionService, cookie_name: &str) -> Identified {
    match session_from_cookie(&parts.headers, sessions, cookie_name).await {
        Ok(Some((_, identity))) => Identified::Known(identity),
        Ok(None) => Identified::Anonymous,
        Err(rejection) => Identified::Rejected(rejection),
    }
}
