//! Identification: which credential a request carries and whose it is.
//!
//! Credentials are tried in order (session cookie, then the kinds later versions add); a kind
//! that is absent says "not mine" and the next is tried, but a credential that is present and
//! bad stops the search, so a broken cookie never falls through to anonymous access on a
//! protected route.

use std::sync::Arc;

use http::request::Parts;

use crate::cookies;
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

/// Identifies a request by its session cookie.
pub async fn identify(parts: &Parts, sessions: &SessionService, cookie_name: &str) -> Identified {
    let Some(value) = cookies::find(&parts.headers, cookie_name) else {
        return Identified::Anonymous;
    };
    let Some(token) = SessionToken::from_cookie_value(value) else {
        return Identified::Rejected(Rejection::Malformed);
    };
    match sessions.authenticate(&token).await {
        Ok(Some(identity)) => Identified::Known(identity),
        Ok(None) => Identified::Rejected(Rejection::Unknown),
        Err(error) => {
            tracing::warn!(%error, "cannot check a session: store unavailable");
            Identified::Rejected(Rejection::StoreUnavailable)
        }
    }
}
