//! Session lifecycle against a real SQLite user store, the memory ephemeral store and a
//! manual clock.

use super::*;
use crate::clock::ManualClock;
use crate::identity::Email;
use crate::store::ephemeral::MemoryStore;
use crate::store::sql::Database;
use crate::store::testing::Interleaved;
use crate::store::users::NewUser;

struct Fixture {
    sessions: SessionService,
    tags: Arc<TokenTags>,
    users: UserStore,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_on(|clock| Arc::new(MemoryStore::new(clock))).await
}

/// A fixture whose sessions live in the store `store` makes on the fixture's clock.
async fn fixture_on(store: impl FnOnce(Arc<dyn Clock>) -> Arc<dyn EphemeralStore>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let users = UserStore::new(Database::connect(&url, 2).await.unwrap());
    let clock = ManualClock::new();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let tags = Arc::new(TokenTags::random());
    let sessions = SessionService::new(
        store(Arc::clone(&shared)),
        users.clone(),
        IdentityCache::new(Duration::from_secs(30), 1000, Arc::clone(&shared)),
        shared,
        SessionLifetimes {
            ttl: Duration::from_secs(7 * 86_400),
            idle_timeout: Duration::from_secs(3600),
        },
        Arc::new(HeaderNames::default()),
        Arc::clone(&tags),
    );
    Fixture { sessions, tags, users, clock, _dir: dir }
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
    let token = SessionToken::generate(&TokenTags::random());
    assert!(token.cookie_value().starts_with("v2."));
    assert_eq!(SessionToken::from_cookie_value(&token.cookie_value()), Some(token.clone()));
    let untagged = format!("v1.{}", crypto::random_token());
    assert_eq!(SessionToken::from_cookie_value(&untagged).unwrap().cookie_value(), untagged);
    let value = token.cookie_value();
    for bad in [
        "",
        "v1.",
        "v2.abc",
        "v1.short",
        &format!("v1.{}!", &value[3..45]),
        &format!("v1.{}", &value[3..]),
        &format!("v2.{}", &untagged[3..]),
        &format!("v3.{}", &value[3..]),
        &format!("{value}A"),
    ] {
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
    assert!(f.sessions.authenticate(&SessionToken::generate(&f.tags)).await.unwrap().is_none());
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

/// What another replica does to a session record between this one's read and write.
enum Between {
    /// Ends the session (a logout elsewhere).
    End,
    /// Switches its active organization (a switch elsewhere).
    SwitchTo(Uuid),
}

/// Arms `store` so that the next read of a session record is followed by `between`.
fn next_read_then(store: &Interleaved, between: Between) {
    store.after_next_get("session:", move |bytes| match between {
        Between::End => None,
        Between::SwitchTo(org) => {
            let mut record: SessionRecord = decode(bytes, "session record").unwrap();
            record.active_org = Some(org);
            Some(encode(&record).unwrap())
        }
    });
}

/// A session service over an [`Interleaved`] store, and that store.
async fn interleaved() -> (Fixture, Arc<Interleaved>) {
    let mut made = None;
    let f = fixture_on(|clock| {
        let store = Arc::new(Interleaved::new(clock));
        made = Some(Arc::clone(&store));
        store
    })
    .await;
    (f, made.unwrap())
}

/// A logout that lands between a request's read of its session and the last-seen touch
/// leaves the session ended: the touch used to write the whole record back, re-creating the
/// session outside the user's index, where "log out everywhere" never finds it.
#[tokio::test]
async fn a_logout_during_a_touch_is_not_undone() {
    let (f, store) = interleaved().await;
    let ada = user(&f, "ada@example.com").await;
    let (token, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    f.clock.advance(Duration::from_secs(120)); // past the cache and the touch interval
    next_read_then(&store, Between::End);
    assert!(f.sessions.authenticate(&token).await.unwrap().is_none(), "the request is refused");
    let key = session_key(&token.hash().to_hex());
    assert_eq!(store.inner.get(&key).await.unwrap(), None, "and the session stays ended");
}

/// An organization switch that lands between a request's read and its touch is kept: the
/// touch used to put the old organization back.
#[tokio::test]
async fn an_organization_switch_during_a_touch_is_kept() {
    let (f, store) = interleaved().await;
    let ada = user(&f, "ada@example.com").await;
    let (token, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    f.clock.advance(Duration::from_secs(120));
    let org = Uuid::now_v7();
    next_read_then(&store, Between::SwitchTo(org));
    assert!(f.sessions.authenticate(&token).await.unwrap().is_some());
    let key = session_key(&token.hash().to_hex());
    let stored: SessionRecord = decode(&store.inner.get(&key).await.unwrap().unwrap(), "").unwrap();
    assert_eq!(stored.active_org, Some(org));
}

/// A touch that lands between an organization switch's read and write does not make the
/// switch fail or be lost: it is tried again on the fresh record.
#[tokio::test]
async fn a_touch_during_an_organization_switch_does_not_lose_it() {
    let (f, store) = interleaved().await;
    let ada = user(&f, "ada@example.com").await;
    let (token, _) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
    let other = Uuid::now_v7();
    let wanted = Uuid::now_v7();
    next_read_then(&store, Between::SwitchTo(other));
    assert!(f.sessions.set_active_org(&token.hash(), Some(wanted)).await.unwrap());
    let key = session_key(&token.hash().to_hex());
    let stored: SessionRecord = decode(&store.inner.get(&key).await.unwrap().unwrap(), "").unwrap();
    assert_eq!(stored.active_org, Some(wanted));
    // And a session ended meanwhile is not brought back by a switch.
    next_read_then(&store, Between::End);
    assert!(!f.sessions.set_active_org(&token.hash(), Some(other)).await.unwrap());
    assert_eq!(store.inner.get(&key).await.unwrap(), None);
}

/// A logout tells the other replicas only once the session is gone from the store: told
/// earlier, a replica reloading in between finds it still there and caches it again.
#[tokio::test]
async fn other_replicas_are_told_of_a_logout_only_after_the_store_write() {
    for ending in ["end", "end_by_id", "end_all"] {
        let (f, store) = interleaved().await;
        let (fanout, mut told) = tokio::sync::mpsc::unbounded_channel();
        f.sessions.cache.publish_to(fanout);
        let ada = user(&f, "ada@example.com").await;
        let (token, record) = f.sessions.create(&ada, ClientInfo::default(), None).await.unwrap();
        let early = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&early);
        store.before_next_write("session:", move || {
            flag.store(told.try_recv().is_ok(), std::sync::atomic::Ordering::SeqCst);
        });
        match ending {
            "end" => f.sessions.end(&token).await.unwrap(),
            "end_by_id" => assert!(f.sessions.end_by_id(ada.id, record.id).await.unwrap()),
            _ => assert_eq!(f.sessions.end_all(ada.id).await.unwrap(), 1),
        }
        assert!(!early.load(std::sync::atomic::Ordering::SeqCst), "{ending} told them first");
    }
}
