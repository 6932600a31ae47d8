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
use crate::store::StoreError;

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
    let identity = checked(sessions.authenticate(&token).await)?;
    Ok(Some((token, identity)))
}

/// Identifies a request by its credentials. On a cache hit this allocates nothing and touches
/// no store.
pub async fn identify(parts: &Parts, sessions: &SessionService, cookie_name: &str) -> Identified {
    let Some(value) = cookies::find(&parts.headers, cookie_name) else {
        return Identified::Anonymous;
    };
    let Some(hash) = SessionToken::hash_of_cookie_value(value) else {
        return Identified::Rejected(Rejection::Malformed);
    };
    match checked(sessions.authenticate_hash(hash).await) {
        Ok(identity) => Identified::Known(identity),
        Err(rejection) => Identified::Rejected(rejection),
    }
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
