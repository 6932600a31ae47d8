//! One conformance suite for every ephemeral backend: memory and SQL backends on a manual
//! clock, Redis (whose expiry runs on its own clock) in real time on a shorter scale.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{DatabaseStore, EphemeralStore, MemoryStore, RedisStore};
use crate::clock::{ManualClock, SystemClock};
use crate::store::sql::Database;
use crate::store::testing::{TestDatabase, redis_url, unique_prefix};

/// Runs the suite; `unit` is its unit of time (a second on a manual clock) and `advance`
/// lets that much time pass.
async fn run_suite<F: Future<Output = ()>>(
    store: &dyn EphemeralStore,
    unit: Duration,
    advance: impl Fn(Duration) -> F,
) {
    let minute = unit * 60;

    // put / get / replace / expiry
    store.put("a", b"one", minute).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
    store.put("a", b"two", minute).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(store.get("missing").await.unwrap(), None);
    store.put("short", b"x", unit).await.unwrap();
    advance(unit * 2).await;
    assert_eq!(store.get("short").await.unwrap(), None, "expired values are invisible");
    assert_eq!(store.take("short").await.unwrap(), None, "and cannot be taken");

    // replace is a compare-and-set that never brings back what was deleted
    store.put("cas", b"v1", minute).await.unwrap();
    assert!(!store.replace("cas", b"v0", b"v2", minute).await.unwrap(), "stale expectation");
    assert!(store.replace("cas", b"v1", b"v2", minute).await.unwrap());
    assert_eq!(store.get("cas").await.unwrap().as_deref(), Some(&b"v2"[..]));
    store.delete("cas").await.unwrap();
    assert!(!store.replace("cas", b"v2", b"v3", minute).await.unwrap(), "deleted stays deleted");
    assert_eq!(store.get("cas").await.unwrap(), None);
    store.put("cas-short", b"v1", unit).await.unwrap();
    assert!(store.replace("cas-short", b"v1", b"v2", minute).await.unwrap(), "ttl renewed");
    advance(unit * 2).await;
    assert_eq!(store.get("cas-short").await.unwrap().as_deref(), Some(&b"v2"[..]));
    store.put("cas-gone", b"v1", unit).await.unwrap();
    advance(unit * 2).await;
    assert!(!store.replace("cas-gone", b"v1", b"v2", minute).await.unwrap(), "expired is gone");

    // take is single use
    store.put("token", b"secret", minute).await.unwrap();
    assert_eq!(store.take("token").await.unwrap().as_deref(), Some(&b"secret"[..]));
    assert_eq!(store.take("token").await.unwrap(), None);

    // delete
    store.put("d", b"x", minute).await.unwrap();
    store.delete("d").await.unwrap();
    assert_eq!(store.get("d").await.unwrap(), None);
    store.delete("never-existed").await.unwrap();

    // fixed-window counters
    assert_eq!(store.incr("c", minute).await.unwrap(), 1);
    assert_eq!(store.incr("c", minute).await.unwrap(), 2);
    advance(unit * 30).await;
    assert_eq!(store.incr("c", minute).await.unwrap(), 3, "increments do not extend the window");
    advance(unit * 31).await;
    assert_eq!(store.incr("c", minute).await.unwrap(), 1, "a new window starts at one");
    store.delete("c").await.unwrap();
    assert_eq!(store.incr("c", minute).await.unwrap(), 1, "delete resets a counter");

    // sets with per-member expiry
    store.set_add("s", "m1", minute).await.unwrap();
    store.set_add("s", "m2", unit * 2).await.unwrap();
    store.set_add("s", "m1", minute).await.unwrap();
    let mut members = store.set_members("s").await.unwrap();
    members.sort();
    assert_eq!(members, ["m1", "m2"]);
    advance(unit * 3).await;
    assert_eq!(store.set_members("s").await.unwrap(), ["m1"]);
    store.set_remove("s", "m1").await.unwrap();
    assert!(store.set_members("s").await.unwrap().is_empty());
    assert!(store.set_members("none").await.unwrap().is_empty());

    // sweep keeps live entries
    store.put("live", b"x", minute).await.unwrap();
    store.sweep().await.unwrap();
    assert!(store.get("live").await.unwrap().is_some());
    store.ping().await.unwrap();
}

async fn concurrent_takes_yield_one_winner(store: Arc<dyn EphemeralStore>) {
    store.put("race", b"x", Duration::from_secs(60)).await.unwrap();
    let takers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.take("race").await.unwrap().is_some() })
        })
        .collect();
    let mut winners = 0;
    for taker in takers {
        winners += usize::from(taker.await.unwrap());
    }
    assert_eq!(winners, 1);
}

fn manual(clock: &ManualClock) -> impl Fn(Duration) -> std::future::Ready<()> + '_ {
    move |by| {
        clock.advance(by);
        std::future::ready(())
    }
}

#[tokio::test]
async fn memory_store_conforms() {
    let clock = ManualClock::new();
    let store = MemoryStore::new(Arc::new(clock.clone()));
    run_suite(&store, Duration::from_secs(1), manual(&clock)).await;
    concurrent_takes_yield_one_winner(Arc::new(MemoryStore::new(Arc::new(clock)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("e.db").display());
    let db = Database::connect(&url, 4).await.unwrap();
    let clock = ManualClock::new();
    let store = DatabaseStore::new(db.clone(), Arc::new(clock.clone()));
    run_suite(&store, Duration::from_secs(1), manual(&clock)).await;
    concurrent_takes_yield_one_winner(Arc::new(DatabaseStore::new(db, Arc::new(clock)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let database = TestDatabase::create().await;
    let db = Database::connect(&database.url, 4).await.unwrap();
    let clock = ManualClock::new();
    let store = DatabaseStore::new(db.clone(), Arc::new(clock.clone()));
    run_suite(&store, Duration::from_secs(1), manual(&clock)).await;
    concurrent_takes_yield_one_winner(Arc::new(DatabaseStore::new(db.clone(), Arc::new(clock))))
        .await;
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let topology = super::RedisTopology::Single;
    let source = super::RedisSource::new(&redis_url(), None, &topology).unwrap();
    let store = RedisStore::connect(source, &unique_prefix(), Arc::new(SystemClock)).await.unwrap();
    // Redis expires keys on its own clock: real time, in 50 ms units (a 3 s "minute").
    run_suite(&store, Duration::from_millis(50), tokio::time::sleep).await;
    concurrent_takes_yield_one_winner(Arc::new(store)).await;
}
