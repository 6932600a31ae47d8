//! The account flows against a real SQLite store, the memory ephemeral store and a manual
//! clock, with tokens issued by the real token service.

use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::crypto::signing::SigningAlgorithm;
use crate::crypto::tags::TokenTags;
use crate::identity::Scopes;
use crate::identity::key_ring::KeyRing;
use crate::identity::session::{ClientInfo, SessionLifetimes};
use crate::identity::tokens::{BearerJwt, TokenError, TokenService, TokenSettings};
use crate::model::headers::HeaderNames;
use crate::store::api_keys::ApiKeyStore;
use crate::store::ephemeral::MemoryStore;
use crate::store::sql::Database;

struct Fixture {
    accounts: Accounts,
    sessions: SessionService,
    tokens: TokenService,
    users: UserStore,
}

async fn fixture() -> Fixture {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let db = Database::connect("sqlite::memory:", 1).await.unwrap();
    let users = UserStore::new(db.clone());
    let cache = IdentityCache::new(Duration::from_secs(30), 1000, Arc::clone(&clock));
    let tags = Arc::new(TokenTags::random());
    let names = Arc::new(HeaderNames::default());
    let sessions = SessionService::new(
        Arc::new(MemoryStore::new(Arc::clone(&clock))),
        users.clone(),
        cache.clone(),
        Arc::clone(&clock),
        SessionLifetimes {
            ttl: Duration::from_secs(86_400),
            idle_timeout: Duration::from_secs(3600),
        },
        Arc::clone(&names),
        Arc::clone(&tags),
    );
    let api_keys = ApiKeyService::new(
        ApiKeyStore::new(db.clone()),
        users.clone(),
        cache.clone(),
        Arc::clone(&clock),
        Arc::clone(&names),
        Arc::clone(&tags),
    );
    let keys = KeyRing::open(
        db.clone(),
        SigningAlgorithm::EdDsa,
        Arc::clone(&clock),
        Duration::from_secs(900),
    )
    .await
    .unwrap();
    let families = FamilyStore::new(db);
    let tokens = TokenService::new(
        Arc::new(keys),
        families.clone(),
        users.clone(),
        cache.clone(),
        Arc::clone(&clock),
        TokenSettings {
            issuer: "https://auth.example.com".into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            tags,
        },
        names,
    );
    let accounts = Accounts::new(AccountParts {
        users: users.clone(),
        sessions: sessions.clone(),
        api_keys,
        families,
        cache,
        hasher: PasswordHasherPool::new(1).unwrap(),
        clock,
    });
    Fixture { accounts, sessions, tokens, users }
}

fn new_account(email: &str, password: Option<&str>) -> NewAccount {
    NewAccount {
        email: Email::parse(email).unwrap(),
        name: Some("  Ada  ".into()),
        password: password.map(str::to_owned),
        roles: vec!["admin".into()],
    }
}

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn create_checks_what_an_account_is_made_of() {
    let f = fixture().await;
    let user = f.accounts.create(new_account("ada@example.com", Some(PASSWORD))).await.unwrap();
    assert_eq!(user.name.as_deref(), Some("Ada"), "the name is cleaned");
    assert!(matches!(
        f.accounts.create(new_account("ada@example.com", Some(PASSWORD))).await,
        Err(AccountError::Exists)
    ));
    assert!(matches!(
        f.accounts.create(new_account("bob@example.com", Some("password"))).await,
        Err(AccountError::WeakPassword(_))
    ));
    let mut bad_role = new_account("cy@example.com", None);
    bad_role.roles = vec!["Not A Role".into()];
    assert!(matches!(f.accounts.create(bad_role).await, Err(AccountError::InvalidRole(_))));
    let email = Email::parse("bob@example.com").unwrap();
    assert!(matches!(f.accounts.find_by_email(&email).await, Err(AccountError::NotFound)));
}

#[tokio::test]
async fn disabling_ends_every_session_and_token_sign_in() {
    let f = fixture().await;
    let user = f.accounts.create(new_account("ada@example.com", None)).await.unwrap();
    let (cookie, _) = f.sessions.create(&user, ClientInfo::default(), None).await.unwrap();
    let one = f.tokens.issue(&user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    let two = f.tokens.issue(&user, Scopes::All, ClientInfo::default(), None).await.unwrap();
    assert!(matches!(f.tokens.authenticate(&one.access_token).await.unwrap(), BearerJwt::Valid(_)));

    let ended = f.accounts.disable(user.id).await.unwrap();
    assert_eq!(ended, Ended { sessions: 1, token_families: 2 });
    assert!(f.users.find(user.id).await.unwrap().unwrap().disabled_at.is_some());
    assert!(f.sessions.authenticate(&cookie).await.unwrap().is_none());
    for pair in [&one, &two] {
        assert!(matches!(
            f.tokens.authenticate(&pair.access_token).await.unwrap(),
            BearerJwt::Refused
        ));
        assert_eq!(f.tokens.refresh(&pair.refresh_token).await, Err(TokenError::Invalid));
    }
    assert_eq!(f.tokens.refresh("rt_short").await, Err(TokenError::Invalid));

    f.accounts.enable(user.id).await.unwrap();
    assert!(f.users.find(user.id).await.unwrap().unwrap().disabled_at.is_none());
    assert!(matches!(f.accounts.disable(uuid::Uuid::now_v7()).await, Err(AccountError::NotFound)));
    assert!(matches!(f.accounts.enable(uuid::Uuid::now_v7()).await, Err(AccountError::NotFound)));
}

#[tokio::test]
async fn new_roles_show_on_the_next_request_of_a_cached_session() {
    let f = fixture().await;
    let user = f.accounts.create(new_account("ada@example.com", None)).await.unwrap();
    let (cookie, _) = f.sessions.create(&user, ClientInfo::default(), None).await.unwrap();
    let before = f.sessions.authenticate(&cookie).await.unwrap().unwrap();
    assert!(before.has_role("admin"));
    f.accounts.set_roles(user.id, &["support".into()]).await.unwrap();
    let after = f.sessions.authenticate(&cookie).await.unwrap().unwrap();
    assert!(after.has_role("support") && !after.has_role("admin"));
    assert!(matches!(
        f.accounts.set_roles(user.id, &["Bad Role".into()]).await,
        Err(AccountError::InvalidRole(_))
    ));
}

#[tokio::test]
async fn a_reset_sets_the_password_proves_the_address_and_ends_sign_ins() {
    let f = fixture().await;
    let user = f.accounts.create(new_account("ada@example.com", Some(PASSWORD))).await.unwrap();
    let (cookie, _) = f.sessions.create(&user, ClientInfo::default(), None).await.unwrap();
    assert!(matches!(
        f.accounts.reset_password(&user, "password".into()).await,
        Err(AccountError::WeakPassword(_))
    ));
    assert!(f.sessions.authenticate(&cookie).await.unwrap().is_some());
    f.accounts.reset_password(&user, "a brand new passphrase here".into()).await.unwrap();
    assert!(f.sessions.authenticate(&cookie).await.unwrap().is_none());
    let email = Email::parse("ada@example.com").unwrap();
    let (stored, hash) = f.users.find_by_email(&email).await.unwrap().unwrap();
    assert!(stored.email_verified_at.is_some());
    assert!(hash.unwrap().starts_with("$argon2id$"));
}
