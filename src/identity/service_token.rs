//! Service tokens: short JWTs for third-party services the app uses on the user's behalf (a
//! LiveKit room, a media server), minted by `POST /auth/service-tokens/{name}` from a claims
//! template in `[service_tokens.NAME]`.
//!
//! The template is parsed as JSON once, at start. Placeholders (`{user.id}`, `{user.email}`,
//! `{user.name}`, `{user.username}`, `{param.NAME}`) are filled inside its string values only,
//! after parsing, so a value can never become JSON syntax: there is no template injection.
//! Caller parameters must be declared and match `[A-Za-z0-9_-]{1,128}`.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::User;
use crate::clock::Timestamp;

/// One configured service.
#[derive(Clone)]
pub struct ServiceToken {
    algorithm: Algorithm,
    key: EncodingKey,
    issuer: Option<String>,
    ttl: Duration,
    /// Global roles allowed to mint (empty: any signed-in user).
    pub roles: Vec<String>,
    params: Vec<String>,
    template: Map<String, Value>,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .field("roles", &self.roles)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Why a token cannot be minted for this request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MintError {
    /// A parameter is unknown, missing or malformed; the message names it.
    #[error("{0}")]
    BadParam(String),
    /// Signing failed (a bug or a bad key).
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// What a service is made of, parsed from `[service_tokens.NAME]` by the configuration.
pub struct ServiceTokenSpec {
    /// How its tokens are signed.
    pub algorithm: Algorithm,
    /// The signing key.
    pub key: EncodingKey,
    /// `iss`, when set.
    pub issuer: Option<String>,
    /// Token lifetime.
    pub ttl: Duration,
    /// Global roles allowed to mint (empty: any signed-in user).
    pub roles: Vec<String>,
    /// Parameters a caller may pass.
    pub params: Vec<String>,
    /// The claims template.
    pub template: Map<String, Value>,
}

impl ServiceToken {
    /// What is wrong with a service's parameters and claims template, as `(field, reason)`:
    /// parameter names must be plain, and every placeholder must be one this module fills.
    pub fn problems(
        params: &[String],
        template: &Map<String, Value>,
    ) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for param in params {
            if param.is_empty()
                || param.len() > 64
                || !param.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                problems.push(("params", format!("`{param}`: 1-64 of A-Z a-z 0-9 _")));
            }
        }
        let mut unknown = Vec::new();
        visit_strings(&Value::Object(template.clone()), &mut |text| {
            for placeholder in placeholders(text) {
                let known =
                    matches!(placeholder, "user.id" | "user.email" | "user.name" | "user.username")
                        || placeholder
                            .strip_prefix("param.")
                            .is_some_and(|p| params.iter().any(|q| q == p));
                if !known {
                    unknown.push(placeholder.to_owned());
                }
            }
        });
        for placeholder in unknown {
            problems.push((
                "claims",
                format!("unknown placeholder {{{placeholder}}} (user.id, user.email, user.name, user.username, param.<one of params>)"),
            ));
        }
        problems
    }

    /// A service from its parts (check them with [`ServiceToken::problems`] first).
    pub fn new(spec: ServiceTokenSpec) -> Self {
        let ServiceTokenSpec { algorithm, key, issuer, ttl, roles, params, template } = spec;
        Self { algorithm, key, issuer, ttl, roles, params, template }
    }

    /// Mints a token for `user` with the caller's `params`; returns it and its expiry.
    ///
    /// # Errors
    /// A bad parameter, or signing fails.
    pub fn mint(
        &self,
        user: &User,
        params: &Map<String, Value>,
        now: Timestamp,
    ) -> Result<(String, Timestamp), MintError> {
        for (name, value) in params {
            if !self.params.contains(name) {
                return Err(MintError::BadParam(format!(
                    "{name}: not a parameter of this service"
                )));
            }
            let valid = value.as_str().is_some_and(|text| {
                (1..=128).contains(&text.len())
                    && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !valid {
                return Err(MintError::BadParam(format!(
                    "{name}: must be 1-128 of A-Z a-z 0-9 _ -"
                )));
            }
        }
        let mut missing = None;
        let mut claims = self.template.clone();
        for value in claims.values_mut() {
            fill(value, &mut |placeholder| {
                let found = match placeholder {
                    "user.id" => Some(user.id.to_string()),
                    "user.email" => Some(user.email.as_str().to_owned()),
                    "user.name" => Some(user.name.clone().unwrap_or_default()),
                    "user.username" => Some(user.username.clone().unwrap_or_default()),
                    other => other
                        .strip_prefix("param.")
                        .and_then(|name| params.get(name))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                };
                if found.is_none() {
                    missing.get_or_insert_with(|| placeholder.to_owned());
                }
                found.unwrap_or_default()
            });
        }
        if let Some(placeholder) = missing {
            let name = placeholder.trim_start_matches("param.");
            return Err(MintError::BadParam(format!("{name}: required")));
        }
        let issued = now.as_millis() / 1000;
        let expires_at = now.plus(self.ttl);
        claims.entry("sub").or_insert_with(|| Value::String(user.id.to_string()));
        if let Some(issuer) = &self.issuer {
            claims.insert("iss".into(), Value::String(issuer.clone()));
        }
        claims.insert("iat".into(), issued.into());
        claims.insert("nbf".into(), issued.into());
        claims.insert("exp".into(), (expires_at.as_millis() / 1000).into());
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .map_err(|error| MintError::Signing(error.to_string()))?;
        Ok((token, expires_at))
    }
}

/// The `{…}` placeholders in `text`.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(inside, _)| inside))
}

fn visit_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| visit_strings(item, visit)),
        Value::Object(map) => map.values().for_each(|item| visit_strings(item, visit)),
        _ => {}
    }
}

/// Replaces every placeholder in the string values under `value` with `lookup`'s answer, as
/// text inside the (already parsed) string: the result is always a JSON string.
fn fill(value: &mut Value, lookup: &mut impl FnMut(&str) -> String) {
    match value {
        Value::String(text) if text.contains('{') => {
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(start) = rest.find('{') {
                out.push_str(&rest[..start]);
                match rest[start + 1..].find('}') {
                    Some(end) => {
                        out.push_str(&lookup(&rest[start + 1..start + 1 + end]));
                        rest = &rest[start + 2 + end..];
                    }
                    None => {
                        out.push_str(&rest[start..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            *text = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|item| fill(item, lookup)),
        Value::Object(map) => map.values_mut().for_each(|item| fill(item, lookup)),
        _ => {}
    }
}
