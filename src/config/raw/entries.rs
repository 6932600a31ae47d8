//! The configuration's tables of entries, as written: `[[upstreams]]`, `[[routes]]`,
//! `[providers.NAME]`, `[[sso_domains]]` and `[service_tokens.NAME]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::values::{Flag, StringList};

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// Name, used in logs and as the assertion audience.
    pub name: String,
    /// Base URL (`http://host:port`).
    pub url: String,
    /// Host names this upstream serves; empty for any.
    pub hosts: StringList,
    /// Path prefix this upstream serves.
    pub path_prefix: Option<String>,
    /// Speak HTTP/2 with prior knowledge (h2c) to this upstream.
    pub http2: Flag,
    /// Accept `%2F` in paths, kept encoded (added key; for apps that never decode it into a
    /// separator).
    pub allow_encoded_slashes: Flag,
    /// Accept `;` parameters in path segments: rules match without them, the app gets them
    /// (added key; for apps that drop them before routing, as Tomcat does).
    pub allow_matrix_params: Flag,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    /// Path pattern: literal segments, `*` for one segment, a final `*` for any rest.
    pub path: String,
    /// `public`, `authenticated` or `deny`.
    pub access: Option<String>,
    /// Methods this rule applies to; empty for all.
    pub methods: StringList,
    /// Global roles, any of.
    pub roles: StringList,
    /// Scopes, all of.
    pub scopes: StringList,
    /// `auto`, `401` or `redirect`.
    pub on_unauthenticated: Option<String>,
    /// Refuse users whose email is not verified.
    pub verified_email: Flag,
    /// Organization roles, any of.
    pub org_roles: StringList,
    /// Match literal segments without regard to ASCII case, for apps that route that way
    /// (added key).
    pub case_insensitive: Flag,
}

/// One `[providers.NAME]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProvider {
    /// `oidc`, or the preset implied by the name (`github`, `google`, …).
    pub kind: Option<String>,
    /// OIDC issuer URL.
    pub issuer: Option<String>,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// OAuth client secret.
    pub client_secret: Option<String>,
    /// Requested scopes.
    pub scopes: StringList,
    /// Claim whose values (IdP groups) are mapped to roles by `roles_map`.
    pub roles_claim: Option<String>,
    /// IdP group → Portcullis role; only listed groups give roles (added key, required with
    /// `roles_claim`).
    pub roles_map: BTreeMap<String, String>,
    /// Tenants (ids) a multi-tenant Microsoft provider admits (added key; required before
    /// `roles_map` can give roles).
    pub allowed_tenants: StringList,
    /// Name shown on the sign-in page.
    pub display_name: Option<String>,
    /// Authorization endpoint override.
    pub auth_url: Option<String>,
    /// Token endpoint override.
    pub token_url: Option<String>,
    /// API base override (GitHub).
    pub api_url: Option<String>,
    /// Userinfo endpoint override.
    pub userinfo_url: Option<String>,
    /// Allowed GitHub organizations.
    pub allowed_orgs: StringList,
    /// Allowed GitHub teams (`org/team`).
    pub allowed_teams: StringList,
    /// Allowed email domains for this provider.
    pub allowed_email_domains: StringList,
    /// Microsoft tenant.
    pub tenant: Option<String>,
    /// Steam Web API key.
    pub api_key: Option<String>,
    /// Steam OpenID endpoint override.
    pub endpoint: Option<String>,
}

/// One `[[sso_domains]]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSsoDomain {
    /// Email domain.
    pub domain: String,
    /// Provider name that signs these users in.
    pub provider: String,
}

/// One `[service_tokens.NAME]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServiceToken {
    /// `HS256`, `ES256` or `EdDSA`.
    pub algorithm: Option<String>,
    /// Signing secret or PEM key.
    pub secret: Option<String>,
    /// `iss` claim.
    pub issuer: Option<String>,
    /// Token lifetime.
    pub ttl: Option<String>,
    /// Global roles allowed to mint.
    pub roles: StringList,
    /// Caller parameters allowed in the template.
    pub params: StringList,
    /// JSON claims template.
    pub claims: Option<String>,
}
