//! Extractors for the auth API: request bodies and parameters that fail with the API error
//! format, the caller's client details, and the signed-in session.
//!
//! `Option<CurrentSession>` means only "no session cookie was sent": a cookie that was sent but
//! is invalid is rejected, never read as anonymous.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use bytes::BytesMut;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::request::Parts;
use http_body::Body as _;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use std::sync::Arc;

use crate::auth::csrf::Csrf;
use crate::auth::error::{AuthError, BadRequest, Missing, NotSignedIn, Refusal};
use crate::conn::access::AccessSlot;
use crate::conn::body::{BodyTimeout, discard};
use crate::conn::peer::{Peer, client_ip};
use crate::gateway::Gateway;
use crate::gateway::identify::{CredentialKind, Identified};
use crate::identity::session::{ClientInfo, SessionToken};
use crate::identity::{ACCOUNT_SCOPE, Identity, User};
use crate::store::users::UserStore;

/// A JSON body; any problem is a 400 (or 413) in the API format naming the problem.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AuthError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, AuthError> {
        let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let essence = content_type.map(|value| value.split(';').next().unwrap_or("").trim());
        let is_json = essence.is_some_and(|essence| {
            essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json")
        });
        if !is_json {
            return Err(AuthError::from(BadRequest::NotJson));
        }
        let bytes = read_body(request).await?;
        // Every body of this API is an object; serde would also read a struct from an array.
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AuthError::from(BadRequest::NotAnObject));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> AuthError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => AuthError::from(BadRequest::NotJson),
        JsonRejection::JsonSyntaxError(_) => AuthError::from(BadRequest::Syntax),
        JsonRejection::JsonDataError(error) => {
            AuthError::from(BadRequest::Field(data_error_message(&error.body_text())))
        }
        JsonRejection::BytesRejection(error) => body_error(error),
        _ => AuthError::from(BadRequest::Unreadable),
    }
}

/// Largest body any auth endpoint accepts: credentials and names are small.
pub(crate) const AUTH_BODY_LIMIT: usize = 64 * 1024;

/// The request's body, at most [`AUTH_BODY_LIMIT`] bytes. A longer one is refused after the
/// rest of it is read and dropped, so the client sees the 413 (see [`discard`]).
async fn read_body(request: Request) -> Result<Bytes, AuthError> {
    let (parts, mut body) = request.into_parts();
    let too_large = || AuthError::TooLarge;
    if body.size_hint().lower() > AUTH_BODY_LIMIT as u64 {
        discard(parts.version, &parts.headers, body).await;
        return Err(too_large());
    }
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| body_error(&error))?;
        let Ok(data) = frame.into_data() else { continue };
        if bytes.len() + data.len() > AUTH_BODY_LIMIT {
            discard(parts.version, &parts.headers, body).await;
            return Err(too_large());
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes.freeze())
}

fn body_error(error: &(dyn std::error::Error + 'static)) -> AuthError {
    if BodyTimeout::caused(error) {
        AuthError::BodyTimeout
    } else {
        AuthError::from(BadRequest::Unreadable)
    }
}

/// serde's messages name the field (`missing field `password``); keep them, minus axum's
/// prefix.
fn data_error_message(text: &str) -> String {
    let message = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    let message = message.split(" at line ").next().unwrap_or(message);
    format!("Invalid request body: {message}")
}

/// How a body arrived: a JSON API call or an HTML form post (answered with a page or redirect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// A body that may be JSON or a form post, for endpoints the no-JavaScript pages post to.
#[derive(Debug)]
pub(crate) struct JsonOrForm<T>(pub T, pub BodyKind);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonOrForm<T> {
    type Rejection = AuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AuthError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        if content_type == "application/x-www-form-urlencoded" {
            let bytes = read_body(request).await?;
            let value = serde_urlencoded::from_bytes(&bytes)
                .map_err(|error| AuthError::from(BadRequest::Form(error.to_string())))?;
            return Ok(Self(value, BodyKind::Form));
        }
        let ApiJson(value) = ApiJson::<T>::from_request(request, state).await?;
        Ok(Self(value, BodyKind::Json))
    }
}

/// A query string; problems are 400 in the API format.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        <axum::extract::Query<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|query| Self(query.0))
            .map_err(|rejection: QueryRejection| {
                AuthError::from(BadRequest::Query(rejection.body_text()))
            })
    }
}

/// Path parameters; problems (such as an id that is not a UUID) are 404 in the API format.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        <axum::extract::Path<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|path| Self(path.0))
            .map_err(|_: PathRejection| AuthError::from(Missing::Object))
    }
}

/// The caller's IP (through trusted proxies) and user agent.
#[derive(Debug, Clone)]
pub(crate) struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client
where
    Arc<Gateway>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let gateway = Arc::<Gateway>::from_ref(state);
        let ip = parts
            .extensions
            .get::<Peer>()
            .map(|peer| client_ip(peer, &parts.headers, gateway.trusted_proxies()).to_string());
        let user_agent =
            parts.headers.get(USER_AGENT).and_then(|value| value.to_str().ok()).map(str::to_owned);
        Ok(Self(ClientInfo { ip, user_agent }))
    }
}

/// The signed-in session of the request, from the session cookie.
#[derive(Debug, Clone)]
pub(crate) struct CurrentSession {
    /// The session's token (to end it).
    pub token: SessionToken,
    /// Who it is.
    pub identity: Arc<Identity>,
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentSession
where
    Arc<Gateway>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        <Self as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(AuthError::not_signed_in)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentSession
where
    Arc<Gateway>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, AuthError> {
        let found = Arc::<Gateway>::from_ref(state).session(&parts.headers).await?;
        if let Some((_, identity)) = &found {
            AccessSlot::record(&parts.extensions, identity);
        }
        Ok(found.map(|(token, identity)| Self { token, identity }))
    }
}

/// A signed-in session on a state-changing request that passed the CSRF checks: a same-site
/// origin and an `X-CSRF-Token` bound to this session.
#[derive(Debug, Clone)]
pub(crate) struct CsrfSession(pub CurrentSession);

impl<S: Send + Sync> FromRequestParts<S> for CsrfSession
where
    Arc<Gateway>: FromRef<S>,
    Arc<Csrf>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let session =
            <CurrentSession as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let session_id = session.identity.session_id.ok_or_else(AuthError::not_signed_in)?;
        Arc::<Csrf>::from_ref(state).verify_for_session(parts, session_id)?;
        Ok(Self(session))
    }
}

/// The caller of an account endpoint, by any credential: session cookie, access-token cookie,
/// bearer API key or access JWT. A state-changing request authenticated by a cookie must also
/// pass the CSRF checks; bearer calls need none, because browsers never attach a bearer header
/// on their own. A key or token limited to some scopes must hold [`ACCOUNT_SCOPE`]: a `read`
/// key must not revoke keys or end sessions. A WebSocket ticket opens a WebSocket, nothing
/// else: it is never a caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Arc<Identity>);

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Arc<Gateway>: FromRef<S>,
    Arc<Csrf>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let AnyCaller(identity) = AnyCaller::from_request_parts(parts, state).await?;
        if !identity.scopes.grants(ACCOUNT_SCOPE) {
            return Err(AuthError::from(Refusal::AccountScope));
        }
        Ok(Self(identity))
    }
}

/// The caller's user record as stored now; 401 when the account was disabled or removed
/// since the credential was cached.
///
/// # Errors
/// 401, or the store fails.
pub(crate) async fn caller_user(users: &UserStore, caller: &Identity) -> Result<User, AuthError> {
    let user = users.find_enabled(caller.user_id).await?;
    user.ok_or_else(AuthError::not_signed_in)
}

/// The caller of an endpoint any credential may use whatever its scopes (minting service
/// tokens, where the route policy decides), with [`Caller`]'s other rules.
#[derive(Debug, Clone)]
pub(crate) struct AnyCaller(pub Arc<Identity>);

impl<S: Send + Sync> FromRequestParts<S> for AnyCaller
where
    Arc<Gateway>: FromRef<S>,
    Arc<Csrf>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let (identified, presented) = Arc::<Gateway>::from_ref(state).identify(parts).await;
        if presented.used == Some(CredentialKind::Ticket) {
            return Err(AuthError::NotSignedIn(NotSignedIn::Ticket));
        }
        let identity = match identified {
            Identified::Known(identity) => identity,
            Identified::Anonymous => return Err(AuthError::not_signed_in()),
            Identified::Rejected(rejection) => return Err(rejection.into()),
        };
        // Cookies (session or access token) are sent by the browser on its own: a
        // state-changing call authenticated by one must prove it comes from our pages.
        let by_cookie = presented.used.is_some_and(CredentialKind::is_cookie);
        if by_cookie && !parts.method.is_safe() {
            let session_id = identity.session_id.ok_or_else(AuthError::not_signed_in)?;
            Arc::<Csrf>::from_ref(state).verify_for_session(parts, session_id)?;
        }
        Ok(Self(identity))
    }
}
