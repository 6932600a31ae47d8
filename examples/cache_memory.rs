//! Measures the resident memory of N cached identities: `cargo run --release --example
//! cache_memory -- 100000`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::testing::clock::{SystemClock, Timestamp};
use portcullis::testing::identity::cache::{CredentialHash, IdentityCache};
use portcullis::testing::identity::{Email, Identity, IdentityParts, User};
use portcullis::testing::model::headers::HeaderNames;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let names = HeaderNames::default();
    let cache = IdentityCache::new(Duration::from_secs(600), 250_000, Arc::new(SystemClock));
    println!("size_of Identity = {}", std::mem::size_of::<Identity>());
    let before = rss_kib();
    for index in 0..count {
        let email =
            Email::parse(&format!("user{index}@bench.example")).unwrap_or_else(|_| unreachable!());
        let user = User {
            name: Some(format!("User {index}")),
            roles: vec!["member".into()],
            ..User::new(uuid::Uuid::now_v7(), email, Timestamp::from_millis(0))
        };
        let parts = IdentityParts::session(
            user,
            Some(uuid::Uuid::now_v7()),
            Timestamp::from_millis(i64::MAX),
        );
        let mut key = [0u8; 32];
        key.copy_from_slice(&portcullis::testing::crypto::sha256(&index.to_le_bytes()));
        cache.insert(
            CredentialHash::from_bytes(key),
            Arc::new(Identity::new(parts, &names)),
            Instant::now(),
        );
    }
    let after = rss_kib();
    println!(
        "{count} identities: {} KiB RSS ({} bytes each), {} entries",
        after - before,
        (after - before) * 1024 / count as u64,
        cache.entry_count()
    );
}
