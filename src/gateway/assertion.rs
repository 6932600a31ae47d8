//! `X-Auth-Assertion`: a short-lived JWT per forwarded request that tells the app who the
//! caller is in a form it can verify against `/auth/jwks.json`, with `aud` naming the upstream
//! so an assertion for one app is useless at another.
//!
//! Signing is not per request: each identity keeps its signed assertion per upstream and
//! re-signs only when less than a fifth of its lifetime is left (or the credential expires
//! first), so the hot path is a read lock and a reference-count increment.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Serialize;
use uuid::Uuid;

use crate::clock::Clock;
use crate::identity::key_ring::KeyRing;
use crate::model::Identity;
use crate::model::headers::Field;

/// The claims of an assertion: the identity headers' content, signed.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    method: &'static str,
    iat: i64,
    exp: i64,
}

/// Makes and caches assertions.
#[derive(Debug)]
pub struct AssertionSigner {
    keys: Arc<KeyRing>,
    issuer: String,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl AssertionSigner {
    /// Assertions signed by `keys`, issued by `issuer` (the public URL), living `ttl`.
    pub fn new(keys: Arc<KeyRing>, issuer: String, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self { keys, issuer, ttl, clock }
    }

    /// The assertion of `identity` for the upstream named `audience`: cached, or signed now.
    /// `None` only if signing fails (logged), in which case the request goes without one.
    pub fn header(&self, identity: &Identity, audience: &Arc<str>) -> Option<HeaderValue> {
        let now = self.clock.now();
        if let Some(value) = identity.assertions().get(audience, now) {
            return Some(value);
        }
        let expires_at = now.plus(self.ttl).min(identity.expires_at);
        let headers = identity.rendered_headers();
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: identity.user_id,
            sid: identity.session_id,
            email: headers.decoded(Field::Email).map(Cow::Owned),
            name: headers.decoded(Field::Name).map(Cow::Owned),
            roles: &identity.roles,
            org: identity.active_org.as_ref().map(|org| org.org_id),
            org_role: identity.active_org.as_ref().map(|org| org.role.as_str()),
            scope: identity.scopes.to_claim(),
            method: identity.method.as_str(),
            iat: now.as_millis() / 1000,
            exp: expires_at.as_millis() / 1000,
        };
        let token = match self.keys.sign(&claims) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "cannot sign an identity assertion");
                return None;
            }
        };
        let value = HeaderValue::from_str(&token).ok()?;
        // Re-sign once four fifths of the lifetime have passed: apps always get at least a
        // fifth of it (a minute by default) to verify.
        let reuse_for = now.until(expires_at).mul_f32(0.8);
        identity.assertions().put(audience, now.plus(reuse_for), value.clone());
        Some(value)
    }
}
