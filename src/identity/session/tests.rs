//! Session lifecycle against a real SQLite user store, the memory ephemeral store and a
//! manual clock.

use super::*;
use crate::clock::ManualClock;
use crate::identity::Email;
use crate::store::ephemeral::MemoryStore;
use crate::store::sql::Database;
use crate::store::users::NewUser;

struct Fixture {
    sessions: SessionService,
    users: UserStore,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let users = UserStore::new(Database::connect(&url, 2).await.unwrap());
    let clock = ManualClock::new();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let sessions = SessionService::new(
        Arc::new(MemoryStore::new(Arc::clone(&shared))),
        users.clone(),
        IdentityCache::new(Duration::from_secs(30), 1000, Arc::clone(&shared)),
        shared,
        SessionLifetimes {
            ttl: Duration::from_secs(7 * 86_400),
            idle_timeout: Duration::from_secs(3600),
        },
        Arc::new(HeaderNames::default()),
    );
    Fixture { sessions, users, clock, _dir: dir }
}

async fn user(f: &Fixture, email: &str) -> User {
    let new = NewUser {
        email: Email::parse(email).unwrap(),
        name: None,
        password_hash: None,
        roles: vec![],
    };
    f.users.create(new, f.clock.now()).await.unwrap()
}

#[test]
fn cookie_values_round_trip_and_garbage_is_refused() {
    let token = SessionToken::generate();
    assert_eq!(SessionToken::from_cookie_value(&token.cookie_value()), Some(token.clone()));
    for bad in ["", "v1.", "v2.abc", "v1.short", &format!("v1.{}!", &token.cookie_value()[3..45])] {
        assert_eq!(SessionToken::from_cookie_value(bad), None, "{bad:?}");
    }
    assert!(
        !format!("{token:?}").contains(&token.cookie_value()[3..]),
        "Debug must not print the secret"
    );
}

#[tokio::test]
async fn a_session_authenticates_until_it_ends() {
    let f = fixture().await;
    let ada = user(&f, "ada@example.com").await;
    let (token, record) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    let identity = f.sessions.authenticate(&token).await.unwrap().unwrap();
    assert_eq!(identity.user_id, ada.id);
    assert_eq!(identity.session_id, Some(record.id));
    let again = f.sessions.authenticate(&token).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&identity, &again), "second lookup is a cache hit");

    f.sessions.end(&token).await.unwrap();
    f.sessions.end(&token).await.unwrap();
    assert!(f.sessions.authenticate(&token).await.unwrap().is_none());
    assert!(f.sessions.authenticate(&SessionToken::generate()).await.unwrap().is_none());
}

#[tokio::test]
async fn idle_and_absolute_expiry_apply_even_to_cached_identities() {
    let f = fixture().await;
    let ada = user(&f, "ada@example.com").await;
    let (token, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    assert!(f.sessions.authenticate(&token).await.unwrap().is_some());
    f.clock.advance(Duration::from_secs(3601));
    assert!(f.sessions.authenticate(&token).await.unwrap().is_none(), "idle timeout");

    let (token, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    // Stay active every 50 minutes (beyond the cache TTL, so each use reloads and slides the
    // idle window): the session lives exactly its 7-day absolute lifetime.
    let mut alive = 0;
    for _ in 0..300 {
        f.clock.advance(Duration::from_secs(50 * 60));
        if f.sessions.authenticate(&token).await.unwrap().is_none() {
            break;
        }
        alive += 1;
    }
    assert_eq!(alive, 7 * 24 * 60 / 50, "alive until the absolute lifetime, and not after");
}

#[tokio::test]
async fn disabled_users_lose_their_sessions() {
    let f = fixture().await;
    let ada = user(&f, "ada@example.com").await;
    let (token, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    assert!(f.sessions.authenticate(&token).await.unwrap().is_some());
    f.users.set_disabled(ada.id, true, f.clock.now()).await.unwrap();
    f.sessions.refresh_user(ada.id);
    assert!(f.sessions.authenticate(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn list_end_by_id_and_end_all() {
    let f = fixture().await;
    let ada = user(&f, "ada@example.com").await;
    let bob = user(&f, "bob@example.com").await;
    let client = ClientInfo { ip: Some("192.0.2.1".into()), user_agent: Some("x".repeat(1000)) };
    let (first, first_record) = f.sessions.create(&ada, client, None).await.unwrap();
    f.clock.advance(Duration::from_secs(1));
    let (second, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    let (bobs, bob_record) = f.sessions.create(&bob, ClientInfo::default(), None).await.unwrap();

    let listed = f.sessions.list(ada.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1], first_record);
    assert_eq!(listed[1].user_agent.as_ref().unwrap().len(), MAX_USER_AGENT);

    assert!(!f.sessions.end_by_id(ada.id, bob_record.id).await.unwrap(), "not ada's session");
    assert!(f.sessions.authenticate(&bobs).await.unwrap().is_some());
    assert!(f.sessions.authenticate(&first).await.unwrap().is_some());
    assert!(f.sessions.end_by_id(ada.id, first_record.id).await.unwrap());
    assert!(f.sessions.authenticate(&first).await.unwrap().is_none(), "evicted although cached");

    assert_eq!(f.sessions.end_all(ada.id).await.unwrap(), 1);
    assert!(f.sessions.authenticate(&second).await.unwrap().is_none());
    assert!(f.sessions.list(ada.id).await.unwrap().is_empty());
    assert!(f.sessions.authenticate(&bobs).await.unwrap().is_some(), "other users are untouched");
}

#[tokio::test]
async fn a_new_login_after_logout_everywhere_is_cached_again() {
    let f = fixture().await;
    let ada = user(&f, "ada@example.com").await;
    f.sessions.end_all(ada.id).await.unwrap();
    let (token, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    let first = f.sessions.authenticate(&token).await.unwrap().unwrap();
    let second = f.sessions.authenticate(&token).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &second));
}
