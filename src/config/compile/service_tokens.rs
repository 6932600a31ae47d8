//! `[service_tokens.NAME]`: the algorithm, key, lifetime and claims template of each service,
//! parsed here; which parameters and placeholders a template may use is the service token's
//! own rule ([`ServiceToken::problems`]).

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value};

use super::Errors;
use crate::config::KeyError;
use crate::config::raw::{RawConfig, RawServiceToken};
use crate::config::values::parse_duration;
use crate::identity::service_token::{ServiceToken, ServiceTokenSpec};

/// Every configured service, by name.
pub(super) fn service_tokens(
    raw: &RawConfig,
    errors: &mut Errors,
) -> BTreeMap<String, ServiceToken> {
    let mut services = BTreeMap::new();
    for (name, service) in &raw.service_tokens {
        match service_token(name, service) {
            Ok(compiled) => {
                services.insert(name.clone(), compiled);
            }
            Err(problems) => errors.0.extend(problems),
        }
    }
    services
}

/// Compiles `[service_tokens.<name>]`.
///
/// # Errors
/// Every problem found, each with its key path.
pub(crate) fn service_token(
    name: &str,
    raw: &RawServiceToken,
) -> Result<ServiceToken, Vec<KeyError>> {
    let mut errors = Vec::new();
    let algorithm = match raw.algorithm.as_deref().unwrap_or("HS256") {
        "HS256" => Algorithm::HS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            errors
                .push(KeyError::new("algorithm", format!("`{other}`: one of HS256, ES256, EdDSA")));
            Algorithm::HS256
        }
    };
    let secret = raw.secret.as_deref().unwrap_or("");
    let key = match algorithm {
        _ if secret.is_empty() => Err("required (or secret_file)".to_owned()),
        Algorithm::HS256 if secret.len() < 16 => Err("at least 16 bytes".to_owned()),
        Algorithm::HS256 => Ok(EncodingKey::from_secret(secret.as_bytes())),
        Algorithm::ES256 => EncodingKey::from_ec_pem(secret.as_bytes())
            .map_err(|_| "not a PEM EC private key".to_owned()),
        _ => EncodingKey::from_ed_pem(secret.as_bytes())
            .map_err(|_| "not a PEM Ed25519 private key".to_owned()),
    }
    .map_err(|reason| errors.push(KeyError::new("secret", reason)))
    .ok();
    let ttl = parse_duration(raw.ttl.as_deref().unwrap_or("1h"))
        .map_err(|error| errors.push(error.under("ttl")))
        .unwrap_or_default();
    let params: Vec<String> = raw.params.0.clone();
    let template = match serde_json::from_str::<Value>(raw.claims.as_deref().unwrap_or("{}")) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            errors.push(KeyError::new("claims", "must be a JSON object"));
            Map::new()
        }
        Err(error) => {
            errors.push(KeyError::new("claims", format!("not JSON: {error}")));
            Map::new()
        }
    };
    for (field, reason) in ServiceToken::problems(&params, &template) {
        errors.push(KeyError::new(field, reason));
    }
    match key {
        Some(key) if errors.is_empty() => Ok(ServiceToken::new(ServiceTokenSpec {
            algorithm,
            key,
            issuer: raw.issuer.clone(),
            ttl,
            roles: raw.roles.0.clone(),
            params,
            template,
        })),
        _ => {
            let section = format!("service_tokens.{name}");
            Err(errors.into_iter().map(|error| error.under(&section)).collect())
        }
    }
}

#[cfg(test)]
mod tests;
