//! Sign-in providers as configured (`[providers.NAME]`), compiled once at start.
//!
//! A provider is an OpenID Connect issuer found by discovery: `kind = "oidc"` with an `issuer`,
//! or the presets that are OIDC underneath (`google`; `okta` with its `issuer`; `microsoft`
//! with a `tenant`, including the multi-tenant `common` and `organizations`). GitHub (plain
//! OAuth 2 and its user API) and Steam (OpenID 2.0) are kinds of their own.

use crate::config::raw::RawProvider;

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

/// What compiling a provider entry gives.
#[derive(Debug)]
pub enum Compiled {
    /// Usable.
    Ready(Box<Provider>),
    /// A kind this version does not speak yet (reported at start).
    NotYet(String),
}

/// Compiles `[providers.<name>]`; problems come back as `(key, reason)`.
///
/// # Errors
/// Every problem found, each with its key path.
pub fn compile(name: &str, raw: &RawProvider) -> Result<Compiled, Vec<(String, String)>> {
    let key = |field: &str| format!("providers.{name}.{field}");
    let kind = raw.kind.clone().unwrap_or_else(|| match name {
        "google" | "okta" | "github" | "microsoft" | "steam" => name.to_owned(),
        _ => "oidc".to_owned(),
    });
    let issuer = match kind.as_str() {
        "google" => {
            Some(raw.issuer.clone().unwrap_or_else(|| "https://accounts.google.com".into()))
        }
        "oidc" | "okta" => raw.issuer.clone(),
        "microsoft" => Some(raw.issuer.clone().unwrap_or_else(|| {
            let tenant = raw.tenant.as_deref().unwrap_or("common");
            format!("https://login.microsoftonline.com/{tenant}/v2.0")
        })),
        "github" => return compile_github(name, raw),
        "steam" => return Ok(compile_steam(name, raw)),
        other => {
            return Err(vec![(
                key("kind"),
                format!("`{other}` is not one of: oidc, google, okta, github, microsoft, steam"),
            )]);
        }
    };
    let mut errors = Vec::new();
    let issuer = match issuer.as_deref().map(url::Url::parse) {
        Some(Ok(url)) if matches!(url.scheme(), "https" | "http") => {
            url.as_str().trim_end_matches('/').to_owned()
        }
        Some(_) => {
            errors.push((key("issuer"), "must be an http(s) URL".into()));
            String::new()
        }
        None => {
            errors.push((key("issuer"), "required for OpenID Connect providers".into()));
            String::new()
        }
    };
    let required =
        |value: &Option<String>, field: &str, errors: &mut Vec<(String, String)>| match value
            .as_deref()
            .map(str::trim)
        {
            Some(value) if !value.is_empty() => value.to_owned(),
            _ => {
                errors.push((key(field), "required".into()));
                String::new()
            }
        };
    let client_id = required(&raw.client_id, "client_id", &mut errors);
    let client_secret = required(&raw.client_secret, "client_secret", &mut errors);
    let mut scopes = raw.scopes.0.clone();
    if scopes.is_empty() {
        scopes = vec!["openid".into(), "email".into(), "profile".into()];
    }
    if !scopes.iter().any(|scope| scope == "openid") {
        scopes.insert(0, "openid".into());
    }
    let display_name = raw.display_name.clone().unwrap_or_else(|| match kind.as_str() {
        "google" => "Google".into(),
        "okta" => "Okta".into(),
        "microsoft" => "Microsoft".into(),
        _ => name.to_owned(),
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    let multi_tenant = kind == "microsoft"
        && matches!(
            raw.tenant.as_deref().unwrap_or("common"),
            "common" | "organizations" | "consumers"
        );
    check_roles(name, raw, multi_tenant, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let allowed_tenants: Vec<String> =
        raw.allowed_tenants.0.iter().map(|tenant| tenant.trim().to_ascii_lowercase()).collect();
    Ok(Compiled::Ready(Box::new(Provider {
        name: name.to_owned(),
        kind: ProviderKind::Oidc,
        display_name,
        issuer,
        multi_tenant,
        client_id,
        client_secret,
        scopes,
        roles_claim: raw.roles_claim.clone(),
        roles_map: raw.roles_map.clone(),
        allowed_tenants,
        allowed_email_domains: raw
            .allowed_email_domains
            .0
            .iter()
            .map(|domain| domain.trim().trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        auth_url: raw.auth_url.clone(),
        token_url: raw.token_url.clone(),
        userinfo_url: raw.userinfo_url.clone(),
    })))
}

/// Roles from a provider come only through `roles_map`, and from a multi-tenant provider only
/// once `allowed_tenants` says whose.
fn check_roles(
    name: &str,
    raw: &RawProvider,
    multi_tenant: bool,
    errors: &mut Vec<(String, String)>,
) {
    let key = |field: &str| format!("providers.{name}.{field}");
    match (&raw.roles_claim, raw.roles_map.is_empty()) {
        (Some(_), true) => errors.push((
            key("roles_map"),
            "required with roles_claim: only the IdP groups it lists become roles".into(),
        )),
        (None, false) => errors.push((key("roles_claim"), "required with roles_map".into())),
        _ => {}
    }
    for (group, role) in &raw.roles_map {
        if crate::identity::validate_role(role).is_err() {
            errors
                .push((key(&format!("roles_map.{group}")), format!("`{role}` is not a role name")));
        }
    }
    if multi_tenant && !raw.roles_map.is_empty() && raw.allowed_tenants.0.is_empty() {
        errors.push((
            key("allowed_tenants"),
            "a multi-tenant provider admits anyone's tenant: list the tenants roles may come from"
                .into(),
        ));
    }
    if !multi_tenant && !raw.allowed_tenants.0.is_empty() {
        errors.push((key("allowed_tenants"), "only for a multi-tenant microsoft provider".into()));
    }
}

/// `[providers.github]`: OAuth 2 endpoints (overridable), the API, and the allow-lists.
fn compile_github(name: &str, raw: &RawProvider) -> Result<Compiled, Vec<(String, String)>> {
    let key = |field: &str| format!("providers.{name}.{field}");
    let mut errors = Vec::new();
    let mut required = |value: &Option<String>, field: &str| match value.as_deref().map(str::trim) {
        Some(value) if !value.is_empty() => value.to_owned(),
        _ => {
            errors.push((key(field), "required".into()));
            String::new()
        }
    };
    let client_id = required(&raw.client_id, "client_id");
    let client_secret = required(&raw.client_secret, "client_secret");
    let allowed_teams: Vec<String> =
        raw.allowed_teams.0.iter().map(|t| t.to_ascii_lowercase()).collect();
    for team in &allowed_teams {
        if team.split('/').filter(|part| !part.is_empty()).count() != 2 {
            errors.push((key("allowed_teams"), format!("`{team}`: expected org/team")));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let allowed_orgs: Vec<String> =
        raw.allowed_orgs.0.iter().map(|o| o.to_ascii_lowercase()).collect();
    let mut scopes = raw.scopes.0.clone();
    if scopes.is_empty() {
        scopes = vec!["read:user".into(), "user:email".into()];
        if !allowed_orgs.is_empty() || !allowed_teams.is_empty() {
            scopes.push("read:org".into());
        }
    }
    Ok(Compiled::Ready(Box::new(Provider {
        name: name.to_owned(),
        kind: ProviderKind::Github {
            api_url: raw
                .api_url
                .clone()
                .unwrap_or_else(|| "https://api.github.com".into())
                .trim_end_matches('/')
                .to_owned(),
            allowed_orgs,
            allowed_teams,
        },
        display_name: raw.display_name.clone().unwrap_or_else(|| "GitHub".into()),
        issuer: String::new(),
        multi_tenant: false,
        client_id,
        client_secret,
        scopes,
        roles_claim: None,
        roles_map: std::collections::BTreeMap::new(),
        allowed_tenants: Vec::new(),
        allowed_email_domains: raw
            .allowed_email_domains
            .0
            .iter()
            .map(|domain| domain.trim().trim_start_matches('@').to_ascii_lowercase())
            .collect(),
        auth_url: Some(
            raw.auth_url
                .clone()
                .unwrap_or_else(|| "https://github.com/login/oauth/authorize".into()),
        ),
        token_url: Some(
            raw.token_url
                .clone()
                .unwrap_or_else(|| "https://github.com/login/oauth/access_token".into()),
        ),
        userinfo_url: None,
    })))
}

/// `[providers.steam]`: the OpenID 2.0 endpoint and the identity URL form (overridable for
/// tests), and the optional Web API key.
fn compile_steam(name: &str, raw: &RawProvider) -> Compiled {
    Compiled::Ready(Box::new(Provider {
        name: name.to_owned(),
        kind: ProviderKind::Steam {
            endpoint: raw
                .endpoint
                .clone()
                .unwrap_or_else(|| "https://steamcommunity.com/openid/login".into()),
            identity_prefix: raw
                .issuer
                .clone()
                .unwrap_or_else(|| "https://steamcommunity.com/openid/id/".into()),
            api_url: raw
                .api_url
                .clone()
                .unwrap_or_else(|| "https://api.steampowered.com".into())
                .trim_end_matches('/')
                .to_owned(),
            api_key: raw.api_key.clone().filter(|key| !key.trim().is_empty()),
        },
        display_name: raw.display_name.clone().unwrap_or_else(|| "Steam".into()),
        issuer: String::new(),
        multi_tenant: false,
        client_id: String::new(),
        client_secret: String::new(),
        scopes: Vec::new(),
        roles_claim: None,
        roles_map: std::collections::BTreeMap::new(),
        allowed_tenants: Vec::new(),
        allowed_email_domains: Vec::new(),
        auth_url: None,
        token_url: None,
        userinfo_url: None,
    }))
}
