//! Tests of `headers`.
use super::*;
use crate::clock::Timestamp;
use crate::model::{Email, IdentityParts, User};

fn identity(names: &HeaderNames, name: Option<&str>, roles: &[&str]) -> Identity {
    let user = User {
        name: name.map(str::to_owned),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..User::new(
            uuid::Uuid::nil(),
            Email::parse("ada@example.com").unwrap(),
            Timestamp::from_millis(0),
        )
    };
    Identity::new(IdentityParts::session(user, None, Timestamp::from_millis(0)), names)
}

fn value(names: &HeaderNames, identity: &Identity, name: &str) -> Option<String> {
    names.pairs(identity).find(|(n, _)| *n == name).map(|(_, v)| v.to_str().unwrap().to_owned())
}

#[test]
fn portcullis_preset_renders_the_documented_headers() {
    let names = HeaderNames::default();
    let id = identity(&names, Some("José 50% Núñez"), &["admin", "support"]);
    assert_eq!(
        value(&names, &id, "x-auth-user-id").as_deref(),
        Some("00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(value(&names, &id, "x-auth-email").as_deref(), Some("ada@example.com"));
    assert_eq!(
        value(&names, &id, "x-auth-name").as_deref(),
        Some("Jos%C3%A9 50%25 N%C3%BA%C3%B1ez")
    );
    assert_eq!(value(&names, &id, "x-auth-roles").as_deref(), Some("admin,support"));
    assert_eq!(value(&names, &id, "x-auth-method").as_deref(), Some("session"));
    assert_eq!(value(&names, &id, "x-auth-scopes").as_deref(), None, "sessions carry every scope");
    assert_eq!(value(&names, &id, "x-forwarded-email").as_deref(), None);
}

#[test]
fn oauth2_proxy_preset_and_overrides() {
    let names = HeaderNames::new("oauth2-proxy", []).unwrap();
    let id = identity(&names, None, &["dev"]);
    assert_eq!(value(&names, &id, "x-forwarded-email").as_deref(), Some("ada@example.com"));
    assert_eq!(value(&names, &id, "x-auth-request-email").as_deref(), Some("ada@example.com"));
    assert_eq!(value(&names, &id, "x-forwarded-groups").as_deref(), Some("dev"));
    assert_eq!(
        value(&names, &id, "x-forwarded-preferred-username").as_deref(),
        Some("ada@example.com")
    );

    let custom = Some("X-User".to_owned());
    let names = HeaderNames::new("portcullis", [("user_id", &custom)]).unwrap();
    let id = identity(&names, None, &[]);
    assert!(value(&names, &id, "x-user").is_some());
    assert!(names.is_identity_header(&HeaderName::from_static("x-user")));

    let host = Some("Host".to_owned());
    assert!(HeaderNames::new("portcullis", [("email", &host)]).is_err());
    assert!(HeaderNames::new("nginx", []).is_err());
}

#[test]
fn spoofed_names_are_recognised_in_any_spelling() {
    let names = HeaderNames::default();
    for spoof in
        ["x-auth-user-id", "x_auth_user_id", "x-auth_roles", "x-auth-anything", "x-forwarded-email"]
    {
        assert!(
            names.is_identity_header(&HeaderName::from_bytes(spoof.as_bytes()).unwrap()),
            "{spoof}"
        );
    }
    for fine in ["x-request-id", "x-forwarded-for", "accept", "x-authz"] {
        assert!(
            !names.is_identity_header(&HeaderName::from_bytes(fine.as_bytes()).unwrap()),
            "{fine}"
        );
    }
}

#[test]
fn renamed_identity_headers_are_stripped_in_any_spelling() {
    let user = Some("Remote-User".to_owned());
    let groups = Some("Remote-Groups".to_owned());
    let assertion = Some("Identity-Jwt".to_owned());
    let names = HeaderNames::new(
        "portcullis",
        [("user_id", &user), ("roles", &groups), ("assertion", &assertion)],
    )
    .unwrap();
    for spoof in ["remote-user", "remote_user", "remote-groups", "identity-jwt", "x-auth-roles"] {
        let name = HeaderName::from_bytes(spoof.as_bytes()).unwrap();
        assert_eq!(names.classify(&name), Some(ProxyHeader::Identity), "{spoof}");
    }
    let fine = HeaderName::from_static("remote-addr");
    assert_eq!(names.classify(&fine), None);
}

#[test]
fn routing_headers_are_recognised_in_any_spelling() {
    let names = HeaderNames::default();
    for name in ["x-forwarded-prefix", "forwarded", "x-host", "x_forwarded_port"] {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert_eq!(names.classify(&name), Some(ProxyHeader::Routing), "{name}");
    }
    for name in ["x-original-url", "x_rewrite_url", "x-http-method-override", "x-original-uri"] {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert_eq!(names.classify(&name), Some(ProxyHeader::Override), "{name}");
    }
    for name in ["x-forwarded-for", "x-forwarded-proto", "accept", "x-request-id"] {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert_eq!(names.classify(&name), None, "{name}");
    }
    let renamed = Some("X-Original-URL".to_owned());
    assert!(HeaderNames::new("portcullis", [("email", &renamed)]).is_err());
}
