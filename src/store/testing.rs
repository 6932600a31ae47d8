//! Real PostgreSQL and Redis for the unit tests: a fresh database per test (dropped when the
//! guard goes), and a unique key prefix per test on the shared Redis. The servers are the ones
//! CI runs (`PORTCULLIS_TEST_POSTGRES`, `PORTCULLIS_TEST_REDIS` override where); tests that
//! need them fail when they are missing, never skip.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The PostgreSQL server tests create their databases on.
pub(crate) fn postgres_admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Redis server tests use.
pub(crate) fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub(crate) fn unique_prefix() -> String {
    format!("portcullis-test:{}:", uuid::Uuid::now_v7().simple())
}

/// A fresh database, dropped with the guard.
pub(crate) struct TestDatabase {
    /// Its URL.
    pub(crate) url: String,
    name: String,
}

impl TestDatabase {
    /// Creates the database.
    pub(crate) async fn create() -> Self {
        let admin = postgres_admin_url();
        let name = format!("portcullis_{}", uuid::Uuid::now_v7().simple());
        let mut connection = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL at {admin} is required: {error}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        Self { url: format!("{base}/{name}"), name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (postgres_admin_url(), self.name.clone());
        // Drop runs outside any runtime guarantee: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut connection) = PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ =
                            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut connection).await;
                    }
                });
            }
        })
        .join();
    }
}
