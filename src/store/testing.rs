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

/// An ephemeral store on which "another replica" acts between a read and the write that
/// follows it: after the next read of a key with a given prefix, the value is rewritten by a
/// hook (or deleted, when the hook gives `None`). For testing read-modify-write races.
pub(crate) struct Interleaved {
    /// The store underneath, for looking at what is really there.
    pub(crate) inner: super::ephemeral::MemoryStore,
    hook: parking_lot::Mutex<Option<(&'static str, Hook)>>,
    before_write: parking_lot::Mutex<Option<(&'static str, Check)>>,
}

type Hook = Box<dyn FnOnce(&[u8]) -> Option<Vec<u8>> + Send>;
type Check = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Interleaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interleaved").finish_non_exhaustive()
    }
}

impl Interleaved {
    pub(crate) fn new(clock: std::sync::Arc<dyn crate::clock::Clock>) -> Self {
        Self {
            inner: super::ephemeral::MemoryStore::new(clock),
            hook: parking_lot::Mutex::new(None),
            before_write: parking_lot::Mutex::new(None),
        }
    }

    /// Runs `check` just before the next take or delete of a key starting with `prefix`.
    pub(crate) fn before_next_write(
        &self,
        prefix: &'static str,
        check: impl FnOnce() + Send + 'static,
    ) {
        *self.before_write.lock() = Some((prefix, Box::new(check)));
    }

    fn writing(&self, key: &str) {
        let check = {
            let mut armed = self.before_write.lock();
            match armed.take() {
                Some((prefix, check)) if key.starts_with(prefix) => Some(check),
                other => {
                    *armed = other;
                    None
                }
            }
        };
        if let Some(check) = check {
            check();
        }
    }

    /// After the next read of a key starting with `prefix`, replaces its value with what
    /// `hook` makes of the value read, or deletes it when `hook` gives `None`.
    pub(crate) fn after_next_get(
        &self,
        prefix: &'static str,
        hook: impl FnOnce(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) {
        *self.hook.lock() = Some((prefix, Box::new(hook)));
    }
}

#[async_trait::async_trait]
impl super::ephemeral::EphemeralStore for Interleaved {
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<(), super::StoreError> {
        self.inner.put(key, value, ttl).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, super::StoreError> {
        let value = self.inner.get(key).await?;
        let hook = {
            let mut armed = self.hook.lock();
            match armed.take() {
                Some((prefix, hook)) if key.starts_with(prefix) && value.is_some() => Some(hook),
                other => {
                    *armed = other;
                    None
                }
            }
        };
        if let (Some(hook), Some(read)) = (hook, &value) {
            match hook(read) {
                Some(changed) => {
                    self.inner.put(key, &changed, std::time::Duration::from_secs(3600)).await?;
                }
                None => self.inner.delete(key).await?,
            }
        }
        Ok(value)
    }
    async fn replace(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<bool, super::StoreError> {
        self.inner.replace(key, expected, value, ttl).await
    }
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, super::StoreError> {
        self.writing(key);
        self.inner.take(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), super::StoreError> {
        self.writing(key);
        self.inner.delete(key).await
    }
    async fn incr(&self, key: &str, window: std::time::Duration) -> Result<u64, super::StoreError> {
        self.inner.incr(key, window).await
    }
    async fn set_add(
        &self,
        key: &str,
        member: &str,
        ttl: std::time::Duration,
    ) -> Result<(), super::StoreError> {
        self.inner.set_add(key, member, ttl).await
    }
    async fn set_remove(&self, key: &str, member: &str) -> Result<(), super::StoreError> {
        self.inner.set_remove(key, member).await
    }
    async fn set_members(&self, key: &str) -> Result<Vec<String>, super::StoreError> {
        self.inner.set_members(key).await
    }
    async fn ping(&self) -> Result<(), super::StoreError> {
        self.inner.ping().await
    }
    async fn sweep(&self) -> Result<(), super::StoreError> {
        self.inner.sweep().await
    }
}
