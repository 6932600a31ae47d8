//! Tests of `cache`.
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::clock::ManualClock;

fn identity() -> Identity {
    use crate::identity::{AuthMethod, Email, IdentityParts, Scopes, User};
    let user = User::new(
        Uuid::now_v7(),
        Email::parse("ada@example.com").unwrap(),
        Timestamp::from_millis(0),
    );
    let parts = IdentityParts::new(
        user,
        Scopes::All,
        AuthMethod::Session,
        None,
        Timestamp::from_millis(i64::MAX / 2),
    );
    Identity::new(parts, &crate::model::headers::HeaderNames::default())
}

#[tokio::test]
async fn concurrent_misses_of_one_credential_share_one_load() {
    let clock = ManualClock::new();
    let cache = IdentityCache::new(Duration::from_secs(30), 100, Arc::new(clock));
    let loads = AtomicUsize::new(0);
    let load = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, &str>(Some(identity()))
    };
    let all = futures_util::future::join_all(
        (0..20).map(|_| cache.get_or_load(CredentialHash::from_bytes([5; 32]), load())),
    );
    let answers = all.await;
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for twenty misses");
    let first = answers[0].clone().unwrap().unwrap();
    assert!(
        answers
            .iter()
            .all(|answer| Arc::ptr_eq(answer.as_ref().unwrap().as_ref().unwrap(), &first))
    );

    // A failed load is not shared: each waiter tries for itself, at once (not in turn).
    let failing = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err::<Option<Identity>, _>("down")
    };
    let started = std::time::Instant::now();
    let all = futures_util::future::join_all(
        (0..5).map(|_| cache.get_or_load(CredentialHash::from_bytes([6; 32]), failing())),
    );
    assert!(all.await.iter().all(Result::is_err));
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    assert!(cache.loading.lock().is_empty(), "nothing left behind");
}

/// A request that joins a load after the credential was revoked must not get the identity
/// that load read before the revocation: it loads again (the first request, in flight
/// before the revocation, keeps its answer).
#[tokio::test]
async fn a_load_revoked_midway_is_not_handed_to_the_requests_that_waited() {
    let clock = ManualClock::new();
    let cache = IdentityCache::new(Duration::from_secs(30), 100, Arc::new(clock));
    let hash = CredentialHash::from_bytes([9; 32]);
    let first = async {
        cache
            .get_or_load(hash, async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Ok::<_, &str>(Some(identity()))
            })
            .await
    };
    let later = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiting = cache.get_or_load(hash, async { Ok::<_, &str>(None) });
        let revoke = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            cache.apply(Revocation::Credential(hash));
        };
        tokio::join!(waiting, revoke).0
    };
    let (first, later) = tokio::join!(first, later);
    assert!(first.unwrap().is_some(), "in flight before the revocation");
    assert!(later.unwrap().is_none(), "joined after it: loaded again, and refused");
    assert!(!cache.holds(&hash) || cache.get(&hash).is_none(), "nothing cached");
}

#[tokio::test]
async fn unknown_credentials_cost_one_lookup_per_window_and_failures_none() {
    let clock = ManualClock::new();
    let cache = IdentityCache::new(Duration::from_secs(30), 100, Arc::new(clock.clone()));
    let loads = AtomicUsize::new(0);
    let unknown = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok::<Option<Identity>, &str>(None)
    };
    let forged = CredentialHash::from_bytes([7; 32]);
    assert!(!cache.holds(&forged));
    for _ in 0..5 {
        assert!(cache.get_or_load(forged, unknown()).await.unwrap().is_none());
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one lookup for five tries");
    assert!(cache.holds(&forged), "answered without a store");
    clock.advance(UNKNOWN_TTL + Duration::from_secs(1));
    assert!(!cache.holds(&forged));
    assert!(cache.get_or_load(forged, unknown()).await.unwrap().is_none());
    assert_eq!(loads.load(Ordering::SeqCst), 2, "looked up again after the window");

    // A store failure says nothing about the credential: it is not remembered.
    let other = CredentialHash::from_bytes([8; 32]);
    let down = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        Err::<Option<Identity>, &str>("store down")
    };
    assert!(cache.get_or_load(other, down()).await.is_err());
    assert!(cache.get_or_load(other, down()).await.is_err());
    assert_eq!(loads.load(Ordering::SeqCst), 4);
    assert!(!cache.holds(&other));

    cache.sweep();
    clock.advance(UNKNOWN_TTL);
    cache.sweep();
    assert_eq!(cache.unknown.len(), 0, "swept once stale");
}
