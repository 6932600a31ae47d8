use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::crypto::signing::SigningAlgorithm;
use crate::identity::Email;
use crate::store::sql::Database;
use crate::store::users::NewUser;

const ISSUER: &str = "https://auth.example.com";

struct Fixture {
    tokens: TokenService,
    clock: Arc<ManualClock>,
    user: User,
}

async fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new());
    let db = Database::connect("sqlite::memory:", 1).await.unwrap();
    let users = UserStore::new(db.clone());
    let user = users
        .create(
            NewUser {
                email: Email::parse("ada@example.com").unwrap(),
                name: Some("Ada".into()),
                password_hash: None,
                roles: vec!["admin".into()],
            },
            clock.now(),
        )
        .await
        .unwrap();
    let keys =
        KeyRing::open(db.clone(), SigningAlgorithm::EdDsa, clock.clone(), Duration::from_secs(900))
            .await
            .unwrap();
    let cache = IdentityCache::new(Duration::from_secs(30), 1000, clock.clone());
    let tokens = TokenService::new(
        Arc::new(keys),
        FamilyStore::new(db),
        users,
        cache,
        clock.clone(),
        TokenSettings {
            issuer: ISSUER.into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            tags: Arc::new(crate::crypto::tags::TokenTags::random()),
        },
        Arc::new(HeaderNames::default()),
    );
    Fixture { tokens, clock, user }
}

fn valid(found: BearerJwt) -> Arc<Identity> {
    match found {
        BearerJwt::Valid(identity) => identity,
        other => panic!("expected a valid token, got {other:?}"),
    }
}

#[tokio::test]
async fn an_issued_access_token_authenticates_with_its_claims() {
    let f = fixture().await;
    let scopes = Scopes::parse_list(["read"]).unwrap();
    let pair = f.tokens.issue(&f.user, scopes.clone(), ClientInfo::default(), None).await.unwrap();
    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.expires_in, 900);
    let identity = valid(f.tokens.authenticate(&pair.access_token).await.unwrap());
    assert_eq!(identity.user_id, f.user.id);
    assert_eq!(identity.method, AuthMethod::Jwt);
    assert_eq!(identity.scopes, scopes);
    assert!(identity.has_role("admin"));
    // Served from the cache the second time: the same identity.
    let again = valid(f.tokens.authenticate(&pair.access_token).await.unwrap());
    assert!(Arc::ptr_eq(&identity, &again));
}

#[tokio::test]
async fn expired_tokens_and_other_issuers() {
    let f = fixture().await;
    let pair = f.tokens.issue(&f.user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    f.clock.advance(Duration::from_secs(900 + LEEWAY_SECS as u64 + 1));
    assert!(matches!(f.tokens.authenticate(&pair.access_token).await.unwrap(), BearerJwt::Refused));

    // A JWT from someone else's issuer is not ours to judge.
    use base64::Engine;
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let foreign = format!(
        "{}.{}.c2ln",
        encode(r#"{"alg":"RS256"}"#),
        encode(r#"{"iss":"https://other.example","sub":"x"}"#)
    );
    assert!(matches!(f.tokens.authenticate(&foreign).await.unwrap(), BearerJwt::NotOurs));
    assert!(matches!(f.tokens.authenticate("opaque-token").await.unwrap(), BearerJwt::NotOurs));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let f = fixture().await;
    let first = f.tokens.issue(&f.user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    let second = f.tokens.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    valid(f.tokens.authenticate(&second.access_token).await.unwrap());

    // Within the grace period a replay is the client racing itself (on another replica: the
    // in-process single flight is over): it gets the same new refresh token, and the family
    // survives.
    let raced = f.tokens.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(raced.refresh_token, second.refresh_token);
    valid(f.tokens.authenticate(&raced.access_token).await.unwrap());
    valid(f.tokens.authenticate(&second.access_token).await.unwrap());

    // Later, it is theft: everything of this sign-in is revoked, the cached token included.
    f.clock.advance(REUSE_GRACE);
    assert_eq!(f.tokens.refresh(&first.refresh_token).await, Err(TokenError::Reused));
    assert!(matches!(
        f.tokens.authenticate(&second.access_token).await.unwrap(),
        BearerJwt::Refused
    ));
    assert_eq!(f.tokens.refresh(&second.refresh_token).await, Err(TokenError::Invalid));
}

#[tokio::test]
async fn a_replay_in_the_grace_gets_the_successor_only_while_it_is_current() {
    let f = fixture().await;
    let first = f.tokens.issue(&f.user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    let second = f.tokens.refresh(&first.refresh_token).await.unwrap();
    let third = f.tokens.refresh(&second.refresh_token).await.unwrap();
    // The successor was exchanged already: handing it out would make its next use look like
    // theft. Refused, and the family survives.
    assert_eq!(f.tokens.refresh(&first.refresh_token).await, Err(TokenError::Invalid));
    valid(f.tokens.authenticate(&third.access_token).await.unwrap());
    assert_eq!(
        f.tokens.refresh(&second.refresh_token).await.unwrap().refresh_token,
        third.refresh_token
    );
}

#[tokio::test]
async fn concurrent_refreshes_share_one_rotation() {
    let f = fixture().await;
    let first = f.tokens.issue(&f.user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    let (a, b) = tokio::join!(
        f.tokens.refresh(&first.refresh_token),
        f.tokens.refresh(&first.refresh_token)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both callers get the same new pair");
    f.tokens.refresh(&a.refresh_token).await.unwrap();
}

#[tokio::test]
async fn every_access_token_carries_its_scope_and_a_unique_id() {
    use base64::Engine;
    let f = fixture().await;
    let claims = |token: &str| -> serde_json::Value {
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let all = f.tokens.issue(&f.user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    let again = f.tokens.issue(&f.user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    let (first, second) = (claims(&all.access_token), claims(&again.access_token));
    assert_eq!(first["scope"], ALL_SCOPES, "every scope, said so");
    assert_ne!(first["jti"], second["jti"], "two tokens of the same second differ");
    assert!(first["jti"].is_string());
    let identity = valid(f.tokens.authenticate(&all.access_token).await.unwrap());
    assert_eq!(identity.scopes, Scopes::All);
    let read = Scopes::parse_list(["read"]).unwrap();
    let limited = f.tokens.issue(&f.user, read, ClientInfo::default(), None).await.unwrap();
    assert_eq!(claims(&limited.access_token)["scope"], "read");
}
