//! Why an auth API request failed, one variant per rule. The handlers and extractors return
//! these; `error.rs` maps each kind to its code in the API error table, in one place, and the
//! message is the detail's `Display`.

use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::gateway::identify::Rejection;
use crate::identity::accounts::AccountError;
use crate::identity::orgs::OrgError;
use crate::identity::tokens::TokenError;
use crate::mail::MailError;
use crate::model::ScopeError;
use crate::model::email::EmailError;
use crate::store::StoreError;

/// Why an auth API request failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request is malformed (400 `invalid_request`).
    #[error("{0}")]
    BadRequest(#[from] BadRequest),
    /// No credential, or one that is not a caller here (401 `unauthorized`).
    #[error("{0}")]
    NotSignedIn(NotSignedIn),
    /// A link, code or sign-in in progress is unknown, used or expired (401 `invalid_token`).
    #[error("{0}")]
    Spent(#[from] Spent),
    /// Wrong email or password, the same for an unknown email (401 `invalid_credentials`).
    #[error("Invalid email or password")]
    BadCredentials,
    /// The caller may not do this (403 `forbidden`).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// A cross-site request, or a missing or wrong CSRF token (403 `csrf_failed`).
    #[error("{0}")]
    Csrf(&'static str),
    /// No such object (404 `not_found`).
    #[error("{0}")]
    Missing(#[from] Missing),
    /// A sign-in provider that is not enabled (404 `provider_not_configured`).
    #[error("This sign-in provider is not configured")]
    NoSuchProvider,
    /// The request conflicts with stored state (409 `conflict`).
    #[error("{0}")]
    Conflict(#[from] Clash),
    /// The client stopped sending the body (408 `request_timeout`).
    #[error("The request body stopped arriving")]
    BodyTimeout,
    /// The body is over [`super::extract::AUTH_BODY_LIMIT`] (413 `payload_too_large`).
    #[error("Request body is larger than the limit")]
    TooLarge,
    /// Too many requests (429 `rate_limited`, with `Retry-After`).
    #[error("Too many requests, try again later")]
    RateLimited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The mail transport refused the message (502 `email_send_failed`).
    #[error("The {what} could not be sent, try again later")]
    MailFailed {
        /// What was being sent (`mail`, `invite`).
        what: &'static str,
        /// Why, for the log.
        #[source]
        cause: MailError,
    },
    /// The sign-in provider cannot be reached (502 `upstream_unavailable`).
    #[error("The sign-in provider is unavailable, try again shortly")]
    ProviderDown(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A bug or a broken dependency (500 `internal`); the cause is logged, never sent.
    #[error("Internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An account flow refused.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A token was refused or could not be made.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The credential presented was refused (malformed, ambiguous, unknown, or not checkable).
    #[error("the credential was refused: {0:?}")]
    Credential(Rejection),
    /// An organization flow refused.
    #[error(transparent)]
    Org(#[from] OrgError),
    /// An email address in the request is malformed.
    #[error("email: {0}")]
    Email(#[from] EmailError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// A 500 with `cause` for the log.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(cause))
    }

    /// 401 `unauthorized`: no credential.
    pub fn not_signed_in() -> Self {
        Self::NotSignedIn(NotSignedIn::Anonymous)
    }
}

impl From<ScopeError> for AuthError {
    fn from(error: ScopeError) -> Self {
        Self::BadRequest(BadRequest::Scopes(error))
    }
}

impl From<Rejection> for AuthError {
    fn from(rejection: Rejection) -> Self {
        Self::Credential(rejection)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The one table from an auth failure to the API error: the code by kind, the message from the
/// detail; errors of the layers below keep their own mapping.
impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let code = match &error {
            AuthError::Account(_)
            | AuthError::Token(_)
            | AuthError::Credential(_)
            | AuthError::Org(_)
            | AuthError::Email(_)
            | AuthError::Store(_)
            | AuthError::MailFailed { .. }
            | AuthError::ProviderDown(_)
            | AuthError::Internal(_)
            | AuthError::RateLimited { .. } => None,
            AuthError::BadRequest(_) => Some(ErrorCode::InvalidRequest),
            AuthError::NotSignedIn(_) => Some(ErrorCode::Unauthorized),
            AuthError::Spent(_) => Some(ErrorCode::InvalidToken),
            AuthError::BadCredentials => Some(ErrorCode::InvalidCredentials),
            AuthError::Refused(_) => Some(ErrorCode::Forbidden),
            AuthError::Csrf(_) => Some(ErrorCode::CsrfFailed),
            AuthError::Missing(_) => Some(ErrorCode::NotFound),
            AuthError::NoSuchProvider => Some(ErrorCode::ProviderNotConfigured),
            AuthError::Conflict(_) => Some(ErrorCode::Conflict),
            AuthError::BodyTimeout => Some(ErrorCode::RequestTimeout),
            AuthError::TooLarge => Some(ErrorCode::PayloadTooLarge),
        };
        let message = error.to_string();
        if let Some(code) = code {
            return Self::new(code, message);
        }
        match error {
            AuthError::Account(error) => error.into(),
            AuthError::Org(error) => error.into(),
            AuthError::Token(error) => error.into(),
            AuthError::Credential(error) => error.into(),
            AuthError::Email(error) => error.into(),
            AuthError::Store(error) => error.into(),
            AuthError::RateLimited { retry_after_secs } => Self::rate_limited(retry_after_secs),
            AuthError::MailFailed { cause, .. } => {
                Self::new(ErrorCode::EmailSendFailed, message).with_cause(cause)
            }
            AuthError::ProviderDown(cause) => {
                Self::new(ErrorCode::UpstreamUnavailable, message).with_boxed_cause(cause)
            }
            _ => Self::new(ErrorCode::Internal, message).with_boxed_cause(match error {
                AuthError::Internal(cause) => cause,
                other => Box::new(other),
            }),
        }
    }
}

/// What is malformed in a request.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// The body is not declared as JSON.
    #[error("Content-Type must be application/json")]
    NotJson,
    /// The body is not a JSON object.
    #[error("The body must be a JSON object")]
    NotAnObject,
    /// The body does not parse.
    #[error("The body is not valid JSON")]
    Syntax,
    /// The body cannot be read.
    #[error("The body could not be read")]
    Unreadable,
    /// A field is missing or has the wrong type (serde's message, naming the field).
    #[error("Invalid request body: {0}")]
    Field(String),
    /// A form post does not parse.
    #[error("Invalid form: {0}")]
    Form(String),
    /// The query string does not parse.
    #[error("{0}")]
    Query(String),
    /// A redirect target is not allowed (the policy's reason).
    #[error("{0}")]
    Redirect(&'static str),
    /// Scopes that do not parse.
    #[error("scopes: {0}")]
    Scopes(#[from] ScopeError),
    /// A service token parameter is missing or malformed.
    #[error("{0}")]
    ServiceParam(String),
    /// An API key request breaks a rule.
    #[error("{0}")]
    ApiKey(String),
    /// A form post answering a choice without its token.
    #[error("pending_token: missing")]
    NoPendingToken,
    /// A magic-link sign-in naming neither a token nor an address and code.
    #[error("Send either `token`, or `email` and `code`")]
    TokenOrCode,
    /// A refresh body that is not `{"refresh_token": …}`.
    #[error("The body must be {{\"refresh_token\": \"…\"}}")]
    RefreshBody,
    /// Refresh with neither a body nor the cookie.
    #[error("refresh_token: missing field")]
    NoRefreshToken,
    /// A token mode asked by a form post.
    #[error("mode: token modes need a JSON request")]
    TokenModeByForm,
    /// An unknown sign-in mode.
    #[error("mode: must be \"cookie\", \"token\" or \"cookie_token\"")]
    UnknownMode,
    /// A provider callback for a sign-in started with another provider.
    #[error("This sign-in was started for another provider")]
    OtherProvider,
}

/// Why there is no caller.
#[derive(Debug, thiserror::Error)]
pub enum NotSignedIn {
    /// No credential, or a session that ended.
    #[error("Authentication required")]
    Anonymous,
    /// A WebSocket ticket where a caller is needed.
    #[error("A WebSocket ticket only opens a WebSocket")]
    Ticket,
    /// The provider said no (its name and its words).
    #[error("{provider} did not sign you in: {detail}")]
    ByProvider {
        /// The provider's display name.
        provider: String,
        /// What it said.
        detail: String,
    },
}

/// Which single-use thing is spent.
#[derive(Debug, thiserror::Error)]
pub enum Spent {
    /// A magic link or operator sign-in link.
    #[error("This sign-in link is invalid, expired or already used")]
    SignInLink,
    /// A verification or reset link (`verification`, `reset`).
    #[error("This {0} link is invalid, expired or already used")]
    EmailLink(&'static str),
    /// A typed code.
    #[error("The code is wrong, used or expired")]
    Code,
    /// A provider sign-in in progress (its `state`).
    #[error("This sign-in attempt expired or was already used: start again")]
    ProviderFlow,
    /// A pending organization choice.
    #[error("This sign-in expired or was already finished: sign in again")]
    Choice,
    /// The provider's answer does not check out.
    #[error("The sign-in provider's answer was not valid")]
    ProviderAnswer,
}

/// What the caller may not do.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The account is disabled.
    #[error("This account is disabled")]
    Disabled,
    /// API keys are refused here (what they cannot do).
    #[error("An API key cannot {0}")]
    ApiKey(&'static str),
    /// Logging out needs a session or an access token.
    #[error("Log out with a session or an access token")]
    LogoutCredential,
    /// A ticket needs a session or an access token.
    #[error("WebSocket tickets need a session or an access token")]
    TicketCredential,
    /// A key or token without the account scope.
    #[error(
        "This key or token lacks the `{}` scope that account endpoints need",
        crate::model::ACCOUNT_SCOPE
    )]
    AccountScope,
    /// A key asked for scopes its creator lacks.
    #[error("A key cannot have scopes its creator lacks")]
    WiderScopes,
    /// The service token's roles.
    #[error("Your account lacks a role this service requires")]
    ServiceRole,
    /// Not a member of the organization named.
    #[error("You are not a member of this organization")]
    NotMember,
    /// Password sign-up is off.
    #[error("Sign-up is disabled")]
    SignupDisabled,
    /// The address's domain may not sign up.
    #[error("Sign-up is not open to this email domain")]
    SignupDomain,
    /// A provider sign-in finished in another browser than it started in.
    #[error("This sign-in was started in another browser: start it again from here")]
    OtherBrowser,
    /// Linking finished by another account than started it.
    #[error("Linking must be finished by the account that started it: sign in as it first")]
    OtherLinker,
    /// The provider's rules refused the sign-in (the reason).
    #[error("Sign-in refused: {0}")]
    ByProvider(String),
}

/// What does not exist.
#[derive(Debug, thiserror::Error)]
pub enum Missing {
    /// A path parameter that names nothing (a malformed id).
    #[error("No such object")]
    Object,
    /// An unknown path under the auth prefix.
    #[error("No such auth endpoint")]
    Endpoint,
    /// A session of the caller's.
    #[error("No such session")]
    Session,
    /// An API key of the caller's.
    #[error("No such API key")]
    ApiKey,
    /// A `[service_tokens]` entry.
    #[error("No such service")]
    Service,
    /// A provider linked to the caller.
    #[error("This provider is not linked")]
    Link,
    /// A pending device sign-in.
    #[error("No pending device sign-in has this code")]
    DeviceCode,
}

/// What conflicts with stored state.
#[derive(Debug, thiserror::Error)]
pub enum Clash {
    /// Unlinking the last way to sign in.
    #[error("This is your only way to sign in: set a password or link another provider first")]
    LastSignInMethod,
}
