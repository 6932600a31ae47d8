//! `[auth]`, `[session]`, `[email]`, `[branding]` and `[orgs]`: who may sign in and how, and
//! what the pages and mails look like.

use std::path::PathBuf;

use super::Errors;
use crate::config::raw::RawConfig;
use crate::config::redirect::RedirectPolicy;
use crate::config::{
    AuthConfig, Branding, EmailConfig, KeyError, OrgsConfig, PublicUrl, SessionConfig,
};
use crate::model::org::OrgRoles;

pub(super) fn auth(
    raw: &RawConfig,
    public_url: Option<&PublicUrl>,
    errors: &mut Errors,
) -> AuthConfig {
    let a = &raw.auth;
    let base_path = a.base_path.trim_end_matches('/').to_owned();
    let valid_path = base_path.starts_with('/')
        && base_path.len() > 1
        && base_path[1..].split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
    if !valid_path {
        errors.push("auth.base_path", "must be an absolute path other than `/`, such as `/auth`");
    }
    let secret = a.secret.as_ref().map(|secret| secret.as_bytes().to_vec());
    if secret.as_ref().is_some_and(|secret| secret.len() < 32) {
        errors.push("auth.secret", "must be at least 32 bytes (or leave it out to generate one)");
    }
    let mut origins = Vec::new();
    for origin in &a.redirect_origins.0 {
        if let Some(origin) = errors.check("auth.redirect_origins", PublicUrl::parse(origin)) {
            origins.push(origin.origin().to_owned());
        }
    }
    let allowed_email_domains = a
        .allowed_email_domains
        .0
        .iter()
        .map(|domain| domain.trim().trim_start_matches('@').to_ascii_lowercase())
        .collect();
    AuthConfig {
        base_path,
        secret,
        signup: a.signup.0,
        signup_confirm: a.signup_confirm.0,
        allowed_email_domains,
        redirects: RedirectPolicy::new(public_url.map(|url| url.origin().to_owned()), origins),
    }
}

pub(super) fn session(raw: &RawConfig, errors: &mut Errors) -> SessionConfig {
    let s = &raw.session;
    let cookie_ok = !s.cookie_name.is_empty()
        && s.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !cookie_ok {
        errors.push("session.cookie_name", "use letters, digits, `-`, `_` or `.`");
    }
    let ttl = errors.duration("session.ttl", &s.ttl);
    let idle_timeout = errors.duration("session.idle_timeout", &s.idle_timeout);
    let cache_ttl = errors.duration("session.cache_ttl", &s.cache_ttl);
    if ttl.is_zero() {
        errors.push("session.ttl", "must be more than zero");
    }
    if idle_timeout.is_zero() {
        errors.push("session.idle_timeout", "must be more than zero");
    }
    if cache_ttl > idle_timeout {
        errors.push("session.cache_ttl", "must not be longer than session.idle_timeout");
    }
    let domain = s.cookie_domain.trim().trim_start_matches('.').to_ascii_lowercase();
    if !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
        errors.push("session.cookie_domain", "must be a domain name such as example.com");
    }
    SessionConfig {
        cookie_name: s.cookie_name.clone(),
        ttl,
        idle_timeout,
        cache_ttl,
        cookie_domain: (!domain.is_empty()).then_some(domain),
    }
}

pub(super) fn email(raw: &RawConfig, errors: &mut Errors) -> EmailConfig {
    let e = &raw.email;
    if !matches!(e.transport.as_str(), "log" | "file" | "smtp") {
        errors.push("email.transport", format!("`{}` is not one of: log, file, smtp", e.transport));
    }
    if e.transport == "file" && e.file_dir.is_none() {
        errors.push("email.file_dir", "required when email.transport = \"file\"");
    }
    if e.transport == "smtp" && e.smtp_url.is_none() {
        errors.push("email.smtp_url", "required when email.transport = \"smtp\"");
    }
    EmailConfig {
        product_name: e.product_name.trim().to_owned(),
        link_ttl: errors.duration("email.link_ttl", &e.link_ttl),
        mail: crate::mail::MailSettings {
            transport: e.transport.clone(),
            from: e.from.clone(),
            product_name: e.product_name.trim().to_owned(),
            templates_dir: e.templates_dir.as_ref().map(PathBuf::from),
            file_dir: e.file_dir.as_ref().map(PathBuf::from),
            smtp_url: e.smtp_url.clone(),
        },
        force_log_transport: e.force_log_transport.0,
    }
}

pub(super) fn branding(raw: &RawConfig, errors: &mut Errors) -> Branding {
    let b = &raw.branding;
    let logo_url = b.logo_url.as_ref().and_then(|text| {
        errors.check("branding.logo_url", PublicUrl::parse(text).map(|_| text.clone()))
    });
    let accent_color = b.accent_color.as_ref().and_then(|color| {
        errors.check("branding.accent_color", accent_color(color).map(|()| color.clone()))
    });
    Branding { logo_url, accent_color }
}

/// The accent colour fills buttons under white text, and outlines focused fields: it must give
/// white text the 4.5:1 contrast WCAG AA asks for.
///
/// # Errors
/// Not a colour, or too light: an error in the value, for the caller to place under its key.
pub(super) fn accent_color(color: &str) -> Result<(), KeyError> {
    let hex = color.strip_prefix('#').unwrap_or("");
    let digits: Vec<u8> = match hex.len() {
        3 | 6 if hex.bytes().all(|b| b.is_ascii_hexdigit()) => hex
            .chars()
            .filter_map(|c| c.to_digit(16))
            .map(|digit| u8::try_from(digit).unwrap_or(0))
            .collect(),
        _ => return Err(KeyError::value("expected a colour such as #3355ff")),
    };
    let channels: Vec<f64> = if digits.len() == 3 {
        digits.iter().map(|d| f64::from(d * 17)).collect()
    } else {
        digits.chunks(2).map(|pair| f64::from(pair[0] * 16 + pair[1])).collect()
    };
    let linear = |value: f64| {
        let value = value / 255.0;
        if value <= 0.039_28 { value / 12.92 } else { ((value + 0.055) / 1.055).powf(2.4) }
    };
    let luminance =
        0.2126 * linear(channels[0]) + 0.7152 * linear(channels[1]) + 0.0722 * linear(channels[2]);
    let contrast = 1.05 / (luminance + 0.05);
    if contrast < 4.5 {
        return Err(KeyError::value(format!(
            "{color} gives the white button text a contrast of {contrast:.1}:1; \
             WCAG AA needs 4.5:1 (choose a darker colour)"
        )));
    }
    Ok(())
}

pub(super) fn orgs(raw: &RawConfig, errors: &mut Errors) -> OrgsConfig {
    let o = &raw.orgs;
    let roles = errors
        .check("orgs.roles", OrgRoles::new(o.roles.0.iter().map(String::as_str)))
        .unwrap_or_default();
    let invite_ttl = errors.duration("orgs.invite_ttl", &o.invite_ttl);
    if invite_ttl.is_zero() {
        errors.push("orgs.invite_ttl", "must be more than zero");
    }
    OrgsConfig { require_selection: o.require_selection.0, roles, invite_ttl }
}
