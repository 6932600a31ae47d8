//! `TwoReplicas`: two Portcullis replicas of one deployment, on one fresh PostgreSQL database
//! (and, for the shared-Redis deployment, one Redis key prefix), as the scale-out tests run them.

use super::app::{TestApp, TestAppBuilder};
use super::services::{TestDatabase, redis_url, unique_prefix};

/// Two replicas, `a` and `b`, on one database of their own. The replicas stop before the
/// database is dropped.
pub struct TwoReplicas {
    pub a: TestApp,
    pub b: TestApp,
    pub database: TestDatabase,
    /// The Redis key prefix both use, when they share Redis.
    pub prefix: Option<String>,
}

impl TwoReplicas {
    /// The deployment of `docs/scaling.md`: PostgreSQL, the shared Redis under a new prefix,
    /// and one public URL (the Service's, also the issuer of their tokens).
    pub async fn with_redis() -> Self {
        let prefix = unique_prefix();
        let database = TestDatabase::create().await;
        let replica = || {
            TestApp::builder()
                .database(&database.url)
                .redis(&redis_url(), &prefix)
                .config(|raw| raw.server.public_url = Some("http://app.example.test".into()))
                .spawn()
        };
        let (a, b) = (replica().await, replica().await);
        Self { a, b, database, prefix: Some(prefix) }
    }

    /// PostgreSQL alone (no Redis): it carries sessions, revocations and limits. `configure`
    /// changes each replica's builder (routes, mail, a shared clock) before it starts.
    pub async fn on_postgres(configure: impl Fn(TestAppBuilder) -> TestAppBuilder) -> Self {
        let database = TestDatabase::create().await;
        let replica = || configure(TestApp::builder().database(&database.url)).spawn();
        let (a, b) = (replica().await, replica().await);
        Self { a, b, database, prefix: None }
    }
}
