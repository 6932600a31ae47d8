//! `[providers.NAME]` and `[[sso_domains]]`: sign-in providers, compiled once at start into
//! [`Provider`]s (the presets filled in, every problem reported by key path).

use super::Errors;
use crate::config::KeyError;
use crate::config::raw::{RawConfig, RawProvider};
use crate::identity::providers::{Provider, ProviderKind};

/// The providers.
pub(super) fn providers(raw: &RawConfig, errors: &mut Errors) -> Vec<Provider> {
    let mut providers = Vec::new();
    for (name, provider) in &raw.providers {
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            errors.push(format!("providers.{name}"), "names are 1-32 of a-z, 0-9, -");
            continue;
        }
        match compile(name, provider) {
            Ok(provider) => providers.push(provider),
            Err(problems) => errors.extend_under(&format!("providers.{name}"), problems),
        }
    }
    providers
}

/// `[[sso_domains]]`: email domains whose sign-in goes to a provider, each naming one of
/// `providers`.
pub(super) fn sso_domains(
    raw: &RawConfig,
    providers: &[Provider],
    errors: &mut Errors,
) -> Vec<(String, String)> {
    let mut sso_domains = Vec::new();
    for (index, entry) in raw.sso_domains.iter().enumerate() {
        let domain = entry.domain.trim().trim_start_matches('@').to_ascii_lowercase();
        if domain.is_empty() || !domain.contains('.') {
            errors.push(format!("sso_domains[{index}].domain"), "must be an email domain");
        }
        if !providers.iter().any(|p| p.name == entry.provider) {
            errors.push(
                format!("sso_domains[{index}].provider"),
                format!("`{}` is not a configured sign-in provider", entry.provider),
            );
        }
        sso_domains.push((domain, entry.provider.clone()));
    }
    sso_domains
}

/// Compiles `[providers.<name>]`.
///
/// # Errors
/// Every problem found, each with its key relative to `providers.<name>`.
pub(super) fn compile(name: &str, raw: &RawProvider) -> Result<Provider, Vec<KeyError>> {
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
            return Err(vec![KeyError::new(
                "kind",
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
            errors.push(KeyError::new("issuer", "must be an http(s) URL"));
            String::new()
        }
        None => {
            errors.push(KeyError::new("issuer", "required for OpenID Connect providers"));
            String::new()
        }
    };
    let required = |value: &Option<String>, field: &str, errors: &mut Vec<KeyError>| match value
        .as_deref()
        .map(str::trim)
    {
        Some(value) if !value.is_empty() => value.to_owned(),
        _ => {
            errors.push(KeyError::new(field, "required"));
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
    check_roles(raw, multi_tenant, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let allowed_tenants: Vec<String> =
        raw.allowed_tenants.0.iter().map(|tenant| tenant.trim().to_ascii_lowercase()).collect();
    Ok(Provider {
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
    })
}

/// Roles from a provider come only through `roles_map`, and from a multi-tenant provider only
/// once `allowed_tenants` says whose.
fn check_roles(raw: &RawProvider, multi_tenant: bool, errors: &mut Vec<KeyError>) {
    match (&raw.roles_claim, raw.roles_map.is_empty()) {
        (Some(_), true) => errors.push(KeyError::new(
            "roles_map",
            "required with roles_claim: only the IdP groups it lists become roles",
        )),
        (None, false) => errors.push(KeyError::new("roles_claim", "required with roles_map")),
        _ => {}
    }
    for (group, role) in &raw.roles_map {
        if crate::identity::validate_role(role).is_err() {
            errors.push(KeyError::new(
                format!("roles_map.{group}"),
                format!("`{role}` is not a role name"),
            ));
        }
    }
    if multi_tenant && !raw.roles_map.is_empty() && raw.allowed_tenants.0.is_empty() {
        errors.push(KeyError::new(
            "allowed_tenants",
            "a multi-tenant provider admits anyone's tenant: list the tenants roles may come from",
        ));
    }
    if !multi_tenant && !raw.allowed_tenants.0.is_empty() {
        errors.push(KeyError::new("allowed_tenants", "only for a multi-tenant microsoft provider"));
    }
}

/// `[providers.github]`: OAuth 2 endpoints (overridable), the API, and the allow-lists.
fn compile_github(name: &str, raw: &RawProvider) -> Result<Provider, Vec<KeyError>> {
    let mut errors = Vec::new();
    let mut required = |value: &Option<String>, field: &str| match value.as_deref().map(str::trim) {
        Some(value) if !value.is_empty() => value.to_owned(),
        _ => {
            errors.push(KeyError::new(field, "required"));
            String::new()
        }
    };
    let client_id = required(&raw.client_id, "client_id");
    let client_secret = required(&raw.client_secret, "client_secret");
    let allowed_teams: Vec<String> =
        raw.allowed_teams.0.iter().map(|t| t.to_ascii_lowercase()).collect();
    for team in &allowed_teams {
        if team.split('/').filter(|part| !part.is_empty()).count() != 2 {
            errors.push(KeyError::new("allowed_teams", format!("`{team}`: expected org/team")));
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
    Ok(Provider {
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
    })
}

/// `[providers.steam]`: the OpenID 2.0 endpoint and the identity URL form (overridable for
/// tests), and the optional Web API key.
fn compile_steam(name: &str, raw: &RawProvider) -> Provider {
    Provider {
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
    }
}
