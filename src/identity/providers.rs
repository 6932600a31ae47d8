//! Sign-in providers as configured (`[providers.NAME]`), compiled once at start.
//!
//! A provider is an OpenID Connect issuer found by discovery: `kind = "oidc"` with an `issuer`,
//! or the presets that are OIDC underneath (`google`; `okta` with its `issuer`; `microsoft`
//! with a `tenant`, including the multi-tenant `common` and `organizations`). GitHub (plain
//! OAuth 2 and its user API) and Steam (OpenID 2.0) are kinds of their own.

/// One sign-in provider.
#[derive(Clone)]
pub struct Provider {
    /// Config key, used in paths (`/auth/login/NAME`) and links.
    pub name: String,
    /// How it is spoken to.
    pub kind: ProviderKind,
    /// Shown on the sign-in page.
    pub display_name: String,
    /// Issuer URL; discovery is at `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    /// Microsoft's multi-tenant endpoints (`common`, `organizations`, `consumers`): tokens come
    /// from any tenant, and their issuer is checked against the `{tenantid}` template.
    pub multi_tenant: bool,
    /// OAuth client id (the ID token's audience).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Claim whose values (IdP groups) are mapped to roles (e.g. `groups`).
    pub roles_claim: Option<String>,
    /// IdP group → global role: only the groups listed give roles, so no IdP user who can
    /// make groups (or no tenant of a multi-tenant app) can mint `admin`.
    pub roles_map: std::collections::BTreeMap<String, String>,
    /// For a multi-tenant Microsoft provider: the tenants whose users may sign in (empty: any,
    /// and then no roles come from it).
    pub allowed_tenants: Vec<String>,
    /// Email domains allowed to sign in through this provider (empty: any).
    pub allowed_email_domains: Vec<String>,
    /// Endpoint overrides (else from discovery).
    pub auth_url: Option<String>,
    /// Token endpoint override.
    pub token_url: Option<String>,
    /// Userinfo endpoint override.
    pub userinfo_url: Option<String>,
}

/// The protocol of a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect (ID token, discovery).
    Oidc,
    /// GitHub: plain OAuth 2 and its user API.
    Github {
        /// API base URL.
        api_url: String,
        /// Organizations whose members may sign in (any of; empty: no restriction).
        allowed_orgs: Vec<String>,
        /// Teams, `org/team-slug`, whose members may sign in (any of).
        allowed_teams: Vec<String>,
    },
    /// Steam: OpenID 2.0.
    Steam {
        /// The OpenID endpoint.
        endpoint: String,
        /// What every claimed id starts with, before the 17-digit Steam id.
        identity_prefix: String,
        /// Steam Web API base URL.
        api_url: String,
        /// Web API key, for persona names.
        api_key: Option<String>,
    },
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}
