//! The model: who a user is ([`User`]) and who a request is ([`Identity`]), with the types
//! they are made of. A leaf: it uses nothing of the stores, the services or HTTP handling, so
//! that every layer above can trade in it.
//!
//! An [`Identity`] is what the gateway forwards: built once when a credential is loaded into
//! the cache, with its identity headers already rendered, and shared as `Arc<Identity>` by every
//! request that presents the same credential.

pub(crate) mod assertion_cache;
pub(crate) mod credential;
pub(crate) mod email;
pub(crate) mod headers;
pub(crate) mod org;

use serde::Serialize;
use uuid::Uuid;

use self::assertion_cache::AssertionCache;
pub use self::email::Email;
use self::headers::{HeaderNames, HeaderSource, RenderedHeaders};
use crate::clock::Timestamp;

/// How a request proved who it is (`X-Auth-Method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The session cookie.
    Session,
    /// `Authorization: Bearer pk_…`.
    ApiKey,
    /// `Authorization: Bearer <access JWT>`.
    Jwt,
    /// A single-use `ws_` ticket on a WebSocket upgrade.
    WsTicket,
}

impl AuthMethod {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::WsTicket => "ws_ticket",
        }
    }
}

/// What a credential may do. Sessions carry every scope; keys and tokens carry a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scopes {
    /// Every scope (a signed-in user acting directly).
    All,
    /// Only these.
    Only(Box<[String]>),
}

impl Scopes {
    /// Whether `scope` is granted.
    pub fn grants(&self, scope: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(scopes) => scopes.iter().any(|granted| granted == scope),
        }
    }

    /// Whether every one of `scopes` is granted: a credential may only hand on what it holds.
    pub fn covers(&self, scopes: &Self) -> bool {
        match scopes {
            Self::All => matches!(self, Self::All),
            Self::Only(wanted) => wanted.iter().all(|scope| self.grants(scope)),
        }
    }

    /// Space-separated, as in OAuth's `scope`; `None` for every scope.
    pub fn to_claim(&self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Only(scopes) => Some(scopes.join(" ")),
        }
    }

    /// Parses a space-separated list (`None`: every scope).
    ///
    /// # Errors
    /// A scope name is invalid (same rules as roles), or there are more than 32.
    pub fn from_claim(claim: Option<&str>) -> Result<Self, ScopeError> {
        match claim {
            None => Ok(Self::All),
            Some(text) => Self::parse_list(text.split_ascii_whitespace()),
        }
    }

    /// Checks and sorts a list of scope names.
    ///
    /// # Errors
    /// A scope name is invalid (same rules as roles), or there are more than 32.
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopeError> {
        let mut scopes = Vec::new();
        for name in names {
            validate_role(name).map_err(|_| ScopeError::InvalidName(name.to_owned()))?;
            scopes.push(name.to_owned());
        }
        if scopes.len() > 32 {
            return Err(ScopeError::TooMany);
        }
        scopes.sort();
        scopes.dedup();
        Ok(Self::Only(scopes.into_boxed_slice()))
    }
}

/// The scope a limited API key or token needs to use account endpoints of the auth API (keys,
/// sessions, organizations, profile): without it, a key reaches only the app.
pub(crate) const ACCOUNT_SCOPE: &str = "account";

/// A user's role in one organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgRole {
    /// Organization id.
    pub org_id: Uuid,
    /// Role name in that organization.
    pub role: String,
}

/// A stored user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id (UUID v7).
    pub id: Uuid,
    /// Primary email, normalized.
    pub email: Email,
    /// When the email was verified.
    pub email_verified_at: Option<Timestamp>,
    /// Display name.
    pub name: Option<String>,
    /// Unique handle.
    pub username: Option<String>,
    /// Avatar image URL.
    pub avatar_url: Option<String>,
    /// BCP 47 locale.
    pub locale: Option<String>,
    /// Global roles, sorted.
    pub roles: Vec<String>,
    /// When the account was disabled; disabled users cannot sign in.
    pub disabled_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A user as the API shows it (`{"user": …}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView<'a> {
    id: Uuid,
    email: &'a str,
    email_verified: bool,
    name: Option<&'a str>,
    username: Option<&'a str>,
    avatar_url: Option<&'a str>,
    locale: Option<&'a str>,
    roles: &'a [String],
    created_at: Timestamp,
    updated_at: Timestamp,
    organizations: &'a [org::Membership],
    active_org_id: Option<Uuid>,
}

impl User {
    /// A user with only an id and an email, created at `now`.
    pub fn new(id: Uuid, email: Email, now: Timestamp) -> Self {
        Self {
            id,
            email,
            email_verified_at: None,
            name: None,
            username: None,
            avatar_url: None,
            locale: None,
            roles: Vec::new(),
            disabled_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The API representation, with the user's organizations and the active one.
    pub fn view<'a>(
        &'a self,
        organizations: &'a [org::Membership],
        active_org_id: Option<Uuid>,
    ) -> UserView<'a> {
        UserView {
            id: self.id,
            email: self.email.as_str(),
            email_verified: self.email_verified_at.is_some(),
            name: self.name.as_deref(),
            username: self.username.as_deref(),
            avatar_url: self.avatar_url.as_deref(),
            locale: self.locale.as_deref(),
            roles: &self.roles,
            created_at: self.created_at,
            updated_at: self.updated_at,
            organizations,
            active_org_id,
        }
    }
}

/// The rule role and scope names follow, as their errors state it.
const NAME_RULE: &str = "must be 1-64 of a-z, 0-9, _ . : -";

/// A role name that breaks the rule for names ([`validate_role`]); holds the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role `{0}` {rule}", rule = NAME_RULE)]
pub struct InvalidRole(pub String);

/// Why a list of scopes is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A scope name breaks the rule for names (the same as roles'); holds the name.
    #[error("scope `{0}` {rule}", rule = NAME_RULE)]
    InvalidName(String),
    /// More than 32 scopes.
    #[error("at most 32 scopes")]
    TooMany,
}

/// Checks a global role name: 1–64 of `[a-z0-9_.:-]`, so it is safe in a comma-separated header.
///
/// # Errors
/// [`InvalidRole`], naming the role.
pub(crate) fn validate_role(role: &str) -> Result<(), InvalidRole> {
    let valid = !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
    if valid { Ok(()) } else { Err(InvalidRole(role.to_owned())) }
}

/// Who a request is, with its identity headers pre-rendered. It keeps only what the policy
/// needs besides the rendered headers, because the cache holds one per active session.
#[derive(Debug, Clone)]
pub struct Identity {
    /// User id.
    pub user_id: Uuid,
    /// Whether the email is verified.
    pub email_verified: bool,
    /// Global roles.
    pub roles: Box<[String]>,
    /// Granted scopes.
    pub scopes: Scopes,
    /// How the request authenticated.
    pub method: AuthMethod,
    /// The session behind the credential, if any.
    pub session_id: Option<Uuid>,
    /// The active organization and the user's role in it (boxed: most users have none).
    pub active_org: Option<Box<OrgRole>>,
    /// Every organization the user belongs to.
    pub orgs: Box<[OrgRole]>,
    /// When the credential stops being valid (absolute or idle expiry, whichever is first).
    pub expires_at: Timestamp,
    headers: RenderedHeaders,
    /// Signed `X-Auth-Assertion` values, per upstream, reused until shortly before expiry.
    assertions: AssertionCache,
}

/// Everything an [`Identity`] holds except its rendered headers.
#[derive(Debug, Clone)]
pub struct IdentityParts {
    /// The user.
    pub user: User,
    /// The user's organizations and roles.
    pub orgs: Vec<OrgRole>,
    /// The organization the credential acts in; ignored unless the user is a member.
    pub active_org: Option<Uuid>,
    /// Granted scopes.
    pub scopes: Scopes,
    /// How the request authenticated.
    pub method: AuthMethod,
    /// The session, if any.
    pub session_id: Option<Uuid>,
    /// Credential expiry.
    pub expires_at: Timestamp,
}

impl IdentityParts {
    /// The parts of a signed-in user's session: every scope.
    pub fn session(user: User, session_id: Option<Uuid>, expires_at: Timestamp) -> Self {
        Self::new(user, Scopes::All, AuthMethod::Session, session_id, expires_at)
    }

    /// The parts of a credential of `user` outside any organization.
    pub fn new(
        user: User,
        scopes: Scopes,
        method: AuthMethod,
        session_id: Option<Uuid>,
        expires_at: Timestamp,
    ) -> Self {
        Self { user, orgs: Vec::new(), active_org: None, scopes, method, session_id, expires_at }
    }

    /// The same, for a member of `orgs` acting in `active_org`.
    pub fn in_orgs(self, orgs: Vec<OrgRole>, active_org: Option<Uuid>) -> Self {
        Self { orgs, active_org, ..self }
    }
}

impl Identity {
    /// Builds the identity and renders its headers once with `names`.
    pub fn new(parts: IdentityParts, names: &HeaderNames) -> Self {
        let user = parts.user;
        // A membership that ended since the credential chose its organization does not count.
        let active_org = parts
            .active_org
            .and_then(|id| parts.orgs.iter().find(|org| org.org_id == id))
            .map(|org| Box::new(org.clone()));
        let headers = names.render(&HeaderSource {
            user_id: user.id,
            email: user.email.as_str(),
            name: user.name.as_deref(),
            username: user.username.as_deref(),
            roles: &user.roles,
            active_org: active_org.as_deref(),
            scopes: &parts.scopes,
            method: parts.method,
            locale: user.locale.as_deref(),
        });
        Self {
            user_id: user.id,
            email_verified: user.email_verified_at.is_some(),
            roles: user.roles.into_boxed_slice(),
            scopes: parts.scopes,
            method: parts.method,
            session_id: parts.session_id,
            active_org,
            orgs: parts.orgs.into_boxed_slice(),
            expires_at: parts.expires_at,
            headers,
            assertions: AssertionCache::default(),
        }
    }

    /// The cached assertions of this identity.
    pub fn assertions(&self) -> &AssertionCache {
        &self.assertions
    }

    /// The identity header values, by field (names come from [`HeaderNames`]).
    pub fn rendered_headers(&self) -> &RenderedHeaders {
        &self.headers
    }

    /// Whether the user has global role `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_header_safe() {
        assert!(validate_role("system_admin").is_ok());
        assert!(validate_role("team:ops").is_ok());
        for bad in ["", "Admin", "a,b", "a b", "ü"] {
            assert!(validate_role(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_grant_as_documented() {
        assert!(Scopes::All.grants("write"));
        let only = Scopes::Only(Box::new(["read".to_owned()]));
        assert!(only.grants("read"));
        assert!(!only.grants("write"));
    }
}
