//! The API error format: one code → status table and one renderer for every JSON error.
//!
//! Every layer has its own typed error (`StoreError`, `AccountError`, `GatewayError`, …) and converts
//! into [`ApiError`] here or beside its definition. Rendering has no side effects: a 5xx keeps its
//! cause in the response extensions, and the request-log middleware is the one place that logs it.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The machine-readable `error` field of the error table in docs/api.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ErrorCode {
    /// A body, query or field is malformed or missing (400).
    InvalidRequest,
    /// No credential, or an unknown one (401).
    Unauthorized,
    /// A token, key or link that is expired, revoked, used or malformed (401).
    InvalidToken,
    /// Wrong email or password; the same for an unknown email (401).
    InvalidCredentials,
    /// Missing or wrong CSRF token, or a cross-site origin (403).
    CsrfFailed,
    /// Authenticated but not allowed here (403).
    Forbidden,
    /// Unknown route or object (404).
    NotFound,
    /// The request conflicts with stored state, e.g. a duplicate signup (409).
    Conflict,
    /// The client stopped sending the request body (408).
    RequestTimeout,
    /// Body over the configured limit (413).
    PayloadTooLarge,
    /// Too many requests; carries `Retry-After` (429).
    RateLimited,
    /// A sign-in provider that is not enabled (404).
    ProviderNotConfigured,
    /// The mail transport refused a message (502).
    EmailSendFailed,
    /// The upstream app cannot be reached (502).
    UpstreamUnavailable,
    /// The upstream app did not answer in time (504).
    UpstreamTimeout,
    /// The database or ephemeral store is down and the answer needs it (503).
    StoreUnavailable,
    /// Too many open connections (503, with `Retry-After`).
    Overloaded,
    /// A bug; details are logged with the request id, never sent (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status docs/api.md assigns to this code.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::InvalidToken | Self::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Self::CsrfFailed | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound | Self::ProviderNotConfigured => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::EmailSendFailed | Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::StoreUnavailable | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The snake_case name sent in the `error` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::InvalidCredentials => "invalid_credentials",
            Self::CsrfFailed => "csrf_failed",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::ProviderNotConfigured => "provider_not_configured",
            Self::EmailSendFailed => "email_send_failed",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::StoreUnavailable => "store_unavailable",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }
}

/// The cause of a server-side error, kept out of the body and logged once by the request log.
#[derive(Debug, Clone)]
pub(crate) struct ErrorCause(pub Arc<dyn std::error::Error + Send + Sync>);

/// An error as the API shows it: a code, a public message, and what the renderer needs.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    code: ErrorCode,
    message: Cow<'static, str>,
    retry_after: Option<u64>,
    cause: Option<ErrorCause>,
}

impl ApiError {
    /// An error with the given code and public message.
    pub(crate) fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), retry_after: None, cause: None }
    }

    /// 400 `invalid_request` with a message that names the field.
    pub(crate) fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 401 `unauthorized`.
    pub(crate) fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "Authentication required")
    }

    /// 403 `forbidden` with the reason.
    pub(crate) fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404 `not_found`.
    pub(crate) fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 429 `rate_limited` with `Retry-After` in whole seconds (at least 1).
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(ErrorCode::RateLimited, "Too many requests, try again later")
            .with_retry_after(retry_after_secs)
    }

    /// Sends `Retry-After` in whole seconds (at least 1).
    #[must_use]
    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 500 `internal`; the cause is logged with the request id, never sent.
    pub(crate) fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(ErrorCode::Internal, "Internal error").with_cause(cause)
    }

    /// Keeps `cause` for the request log.
    pub(crate) fn with_cause(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.cause = Some(ErrorCause(Arc::new(cause)));
        self
    }

    /// Keeps a boxed `cause` for the request log.
    pub(crate) fn with_boxed_cause(
        mut self,
        cause: Box<dyn std::error::Error + Send + Sync>,
    ) -> Self {
        self.cause = Some(ErrorCause(Arc::from(cause)));
        self
    }

    /// The error code.
    pub(crate) fn code(&self) -> ErrorCode {
        self.code
    }

    /// The public message.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Seconds to wait, for `rate_limited` (read by the tests; the renderer reads the field).
    #[cfg(test)]
    pub(crate) fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

// The body of every JSON error, and its schema in the OpenAPI document.
/// Every error: a machine-readable code and a message for people.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct ErrorBody<'a> {
    /// The code (`invalid_request`, `unauthorized`, …).
    pub error: &'static str,
    /// What went wrong.
    pub message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code.as_str(), message: &self.message };
        let mut response = (self.code.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

/// A malformed email address in a request is a 400 naming the field.
impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::Unavailable(_) => Self::new(
                ErrorCode::StoreUnavailable,
                "The store is unavailable, try again shortly",
            )
            .with_cause(error),
            StoreError::Conflict(what) => {
                Self::new(ErrorCode::Conflict, format!("{what} already exists"))
            }
            StoreError::Corrupt(_)
            | StoreError::Database(_)
            | StoreError::Schema(_)
            | StoreError::Sealed(_) => Self::internal(error),
        }
    }
}

impl From<crate::identity::accounts::AccountError> for ApiError {
    fn from(error: crate::identity::accounts::AccountError) -> Self {
        use crate::identity::accounts::AccountError;
        match error {
            AccountError::Store(error) => error.into(),
            AccountError::Hashing(_) => Self::internal(error),
            AccountError::InvalidEmail(error) => error.into(),
            AccountError::InvalidName(_)
            | AccountError::InvalidProfile(_)
            | AccountError::InvalidRole(_)
            | AccountError::WeakPassword(_) => Self::invalid_request(error.to_string()),
            AccountError::NotFound => Self::not_found(error.to_string()),
            AccountError::LinkedElsewhere
            | AccountError::AlreadyLinked
            | AccountError::EmailTaken
            | AccountError::Exists
            | AccountError::UsernameTaken
            | AccountError::AccountUnverified => Self::new(ErrorCode::Conflict, error.to_string()),
            AccountError::SignupClosed
            | AccountError::MailboxSignupClosed
            | AccountError::DomainNotAllowed
            | AccountError::NoEmail
            | AccountError::EmailUnverified
            | AccountError::Disabled => Self::forbidden(error.to_string()),
        }
    }
}

impl From<crate::identity::orgs::OrgError> for ApiError {
    fn from(error: crate::identity::orgs::OrgError) -> Self {
        use crate::identity::orgs::OrgError;
        match error {
            OrgError::Store(error) => error.into(),
            OrgError::Account(error) => error.into(),
            OrgError::Email(error) => error.into(),
            OrgError::UnknownRole(_) | OrgError::Invalid(_) => {
                Self::invalid_request(error.to_string())
            }
            OrgError::NoSuchOrganization | OrgError::NoSuchMember | OrgError::NoSuchInvite => {
                Self::not_found(error.to_string())
            }
            OrgError::NotManager
            | OrgError::NotAllowed
            | OrgError::MayNotInvite
            | OrgError::TooMany => Self::forbidden(error.to_string()),
            OrgError::LastOwner
            | OrgError::SlugTaken
            | OrgError::NoFreeSlug
            | OrgError::AlreadyMember => Self::new(ErrorCode::Conflict, error.to_string()),
            OrgError::InviteUsedUp | OrgError::InviteWithdrawn => {
                Self::new(ErrorCode::InvalidToken, error.to_string())
            }
        }
    }
}

impl From<crate::identity::tokens::TokenError> for ApiError {
    fn from(error: crate::identity::tokens::TokenError) -> Self {
        use crate::identity::tokens::TokenError;
        match error {
            TokenError::Invalid | TokenError::Reused => {
                Self::new(ErrorCode::InvalidToken, error.to_string())
            }
            TokenError::Unavailable => Self::new(
                ErrorCode::StoreUnavailable,
                "The store is unavailable, try again shortly",
            ),
            TokenError::Internal => Self::internal(error),
        }
    }
}

impl From<crate::model::email::EmailError> for ApiError {
    fn from(error: crate::model::email::EmailError) -> Self {
        Self::invalid_request(format!("email: {error}"))
    }
}

/// Scopes asked for in a request that are not scope names are a 400 naming the field.
impl From<crate::model::ScopeError> for ApiError {
    fn from(error: crate::model::ScopeError) -> Self {
        Self::invalid_request(format!("scopes: {error}"))
    }
}

/// A profile field that breaks its rule is a 400 (the message names the field).
impl From<crate::identity::profile::InvalidProfile> for ApiError {
    fn from(error: crate::identity::profile::InvalidProfile) -> Self {
        Self::invalid_request(error.to_string())
    }
}

/// An organization name or slug that breaks its rule is a 400 (the message names the field).
impl From<crate::model::org::InvalidOrgField> for ApiError {
    fn from(error: crate::model::org::InvalidOrgField) -> Self {
        Self::invalid_request(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_status_of_the_api_table() {
        let table = [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::InvalidToken, 401),
            (ErrorCode::InvalidCredentials, 401),
            (ErrorCode::CsrfFailed, 403),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::Conflict, 409),
            (ErrorCode::RequestTimeout, 408),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::ProviderNotConfigured, 404),
            (ErrorCode::EmailSendFailed, 502),
            (ErrorCode::UpstreamUnavailable, 502),
            (ErrorCode::UpstreamTimeout, 504),
            (ErrorCode::StoreUnavailable, 503),
            (ErrorCode::Overloaded, 503),
            (ErrorCode::Internal, 500),
        ];
        for (code, status) in table {
            assert_eq!(code.status().as_u16(), status, "{}", code.as_str());
        }
    }

    #[test]
    fn rate_limited_sets_retry_after_and_internal_hides_the_cause() {
        let response = ApiError::rate_limited(0).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");

        let cause = std::io::Error::other("secret detail");
        let response = ApiError::internal(cause).into_response();
        assert_eq!(response.status(), 500);
        assert!(response.extensions().get::<ErrorCause>().is_some());
    }
}
