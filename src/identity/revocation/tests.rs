//! Tests of `revocation`.
use uuid::Uuid;

use super::postgres::Applied;
use super::redis_stream::stream_id;
use super::*;
use crate::model::credential::CredentialHash;

#[tokio::test]
async fn the_cache_is_emptied_on_the_first_connection_and_when_entries_may_be_gone() {
    let clock: std::sync::Arc<dyn crate::clock::Clock> =
        std::sync::Arc::new(crate::clock::ManualClock::new());
    let cache = IdentityCache::new(Duration::from_secs(30), 10, clock);
    let mut backoff = Backoff::default();
    // (complete, emptied): the first connection empties the cache even when complete (it
    // may have cached before listening); later, only when entries may have been missed.
    for (complete, emptied) in [(true, true), (true, false), (false, true)] {
        let cached = cache
            .get_or_load(CredentialHash::from_bytes([3; 32]), async { Ok::<_, ()>(None) })
            .await;
        assert!(cached.unwrap().is_none() && cache.holds(&CredentialHash::from_bytes([3; 32])));
        backoff.connected(&cache, "test", complete);
        assert_eq!(
            !cache.holds(&CredentialHash::from_bytes([3; 32])),
            emptied,
            "complete: {complete}"
        );
        cache.clear();
    }
}

#[test]
fn stream_ids_are_ordered_by_time_then_sequence() {
    assert!(stream_id("1700000000000-2") > stream_id("1700000000000-1"));
    assert!(stream_id("1700000000001-0") > stream_id("1700000000000-9"));
    assert_eq!(stream_id("garbage"), None);
}

#[test]
fn the_postgres_reader_applies_each_entry_once_within_the_lookback() {
    let mut applied = Applied::default();
    assert!(applied.first_time(5));
    assert!(applied.first_time(4), "a lower id that became visible later");
    assert!(!applied.first_time(5), "read again by the lookback");
}

#[test]
fn revocations_round_trip_and_garbage_is_ignored() {
    for revocation in [
        Revocation::Credential(CredentialHash::from_bytes([7; 32])),
        Revocation::User(Uuid::now_v7()),
        Revocation::Session(Uuid::now_v7()),
    ] {
        assert_eq!(Revocation::decode(&revocation.encode()), Some(revocation));
    }
    for garbage in ["", "c:", "c:zz", "u:not-a-uuid", "x:1", "no colon"] {
        assert_eq!(Revocation::decode(garbage), None, "{garbage}");
    }
}
