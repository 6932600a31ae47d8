//! `[service_tokens.NAME]` compiled into service tokens, and what those mint: placeholders
//! filled inside strings only, parameters declared and plain, keys named in every error.

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::clock::Timestamp;
use crate::config::raw::RawServiceToken;
use crate::config::values::StringList;
use crate::identity::service_token::MintError;
use crate::identity::{Email, User};

fn livekit() -> RawServiceToken {
    RawServiceToken {
        algorithm: Some("HS256".into()),
        secret: Some("a-livekit-secret-of-32-bytes-or-more".into()),
        issuer: Some("APIkey123".into()),
        ttl: Some("6h".into()),
        roles: StringList(Vec::new()),
        params: StringList(vec!["room".into()]),
        claims: Some(
            r#"{"sub": "{user.id}", "name": "{user.name}", "video": {"room": "{param.room}", "roomJoin": true}}"#
                .into(),
        ),
    }
}

fn user() -> User {
    User {
        name: Some("Ada \"the\" {user.id}".into()),
        ..User::new(
            uuid::Uuid::nil(),
            Email::parse("ada@example.com").unwrap(),
            Timestamp::from_millis(0),
        )
    }
}

#[test]
fn values_fill_strings_and_never_become_syntax() {
    crate::crypto::jwt_ring::install();
    let service = crate::config::compile_service_token("livekit", &livekit()).unwrap();
    let params = serde_json::json!({ "room": "standup-1" });
    let (token, expires) = service
        .mint(&user(), params.as_object().unwrap(), Timestamp::from_millis(1_000_000))
        .unwrap();
    assert_eq!(expires, Timestamp::from_millis(1_000_000 + 6 * 3_600_000));
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["video"]["room"], "standup-1");
    assert_eq!(claims["video"]["roomJoin"], true);
    // A name holding quotes and braces stays a plain string, not re-expanded.
    assert_eq!(claims["name"], "Ada \"the\" {user.id}");
    assert_eq!(claims["iss"], "APIkey123");
    assert_eq!(claims["sub"], uuid::Uuid::nil().to_string());
}

#[test]
fn parameters_are_declared_and_plain() {
    let service = crate::config::compile_service_token("livekit", &livekit()).unwrap();
    let now = Timestamp::from_millis(0);
    for bad in [
        serde_json::json!({ "room": "a\"}, \"roomAdmin\": true, \"x\": \"" }),
        serde_json::json!({ "room": "{user.email}" }),
        serde_json::json!({ "room": "café" }),
        serde_json::json!({ "room": 7 }),
        serde_json::json!({ "room": "" }),
        serde_json::json!({ "other": "x" }),
        serde_json::json!({}),
    ] {
        assert!(
            matches!(
                service.mint(&user(), bad.as_object().unwrap(), now),
                Err(MintError::BadParam(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn es256_services_sign_with_their_pem_key() {
    crate::crypto::jwt_ring::install();
    let pair = rcgen::KeyPair::generate().unwrap();
    let mut raw = livekit();
    raw.algorithm = Some("ES256".into());
    raw.secret = Some(pair.serialize_pem());
    let service = crate::config::compile_service_token("media", &raw).unwrap();
    let params = serde_json::json!({ "room": "r1" });
    let (token, _) =
        service.mint(&user(), params.as_object().unwrap(), Timestamp::from_millis(0)).unwrap();
    let key = jsonwebtoken::DecodingKey::from_ec_der(pair.public_key_raw());
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap().claims;
    assert_eq!(claims["video"]["room"], "r1");
    raw.secret = Some("not a pem".into());
    assert!(crate::config::compile_service_token("media", &raw).is_err());
}

#[test]
fn bad_configurations_name_their_keys() {
    let mut raw = livekit();
    raw.claims = Some(r#"{"x": "{param.nope}"}"#.into());
    raw.secret = Some("short".into());
    raw.algorithm = Some("RS256".into());
    let errors = crate::config::compile_service_token("lk", &raw).unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
    assert!(keys.contains(&"service_tokens.lk.claims"), "{errors:?}");
    assert!(keys.contains(&"service_tokens.lk.algorithm"), "{errors:?}");
    raw.claims = Some("[1]".into());
    assert!(crate::config::compile_service_token("lk", &raw).is_err());
}
