//! The SQL database: connecting (SQLite by default, PostgreSQL), migrations, and settings.
//!
//! Queries are written once in portable SQL (`$1` placeholders, `ON CONFLICT`, `RETURNING`)
//! and run through sqlx's `Any` driver; only the migrations differ per backend, side by side in
//! `migrations/sqlite` and `migrations/postgres`.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use super::StoreError;
use crate::clock::Timestamp;
use crate::crypto::sealed::Sealer;

/// The setting holding when the shared tables were last swept (milliseconds).
const LAST_SWEEP: &str = "last_sweep_at";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (file or memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A pooled connection to the configured database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    sealer: Sealer,
}

impl Database {
    /// Connects and runs the migrations. A SQLite file is created if missing.
    ///
    /// # Errors
    /// The database cannot be reached or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let database = Self::open(url, max_connections).await?;
        database.migrate().await?;
        Ok(database)
    }

    /// Connects, without migrating. A SQLite file is created if missing.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        // No ping before each use: it doubled the round trips of every query (a cache miss
        // is one query). A connection that died while idle fails its next query once, as
        // unavailable, and is dropped from the pool.
        // Idle connections are closed after 3 minutes, before the idle timeouts of the cloud
        // load balancers and NATs in between (4 to 10 minutes), which drop them silently: a
        // query on one would hang until TCP gives up.
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(Duration::from_secs(180))
            .test_before_acquire(false);
        let url = match backend {
            Backend::Sqlite => {
                if is_sqlite_memory(url) {
                    // Each connection to `:memory:` is its own database: keep exactly one.
                    options = options
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                // SQLite's page cache is per connection (2 MiB by default); the OS caches the
                // file anyway, so keep each connection's share small.
                options = options.after_connect(|connection, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA cache_size = -512").execute(connection).await?;
                        Ok(())
                    })
                });
                sqlite_url(url)
            }
            Backend::Postgres => url.to_owned(),
        };
        let pool = options.connect(&url).await.map_err(StoreError::from)?;
        let database = Self { pool, backend, sealer: Sealer::default() };
        if backend == Backend::Sqlite && !is_sqlite_memory(&url) {
            // WAL lets readers proceed during a write; it is a property of the file, set once.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&database.pool).await?;
        }
        Ok(database)
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the pending migrations; the schema version it is at. Replicas starting together
    /// take turns (sqlx holds an advisory lock on PostgreSQL, which needs a session of its own:
    /// through PgBouncer in transaction mode, migrate through a direct URL).
    ///
    /// # Errors
    /// A migration fails.
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        self.migrator().run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(error) => StoreError::from(error),
            other => StoreError::Schema(format!("migration failed: {other}")),
        })?;
        Ok(self.latest_version())
    }

    /// Applies the pending migrations through `direct_url` (a short-lived connection of its
    /// own) unless it is `url`, this pool's own.
    ///
    /// # Errors
    /// The direct URL cannot be reached, or a migration fails.
    pub async fn migrate_through(&self, url: &str, direct_url: &str) -> Result<i64, StoreError> {
        if direct_url == url {
            return self.migrate().await;
        }
        let direct = Self::open(direct_url, 1).await?;
        let migrated = direct.migrate().await;
        direct.close().await;
        migrated
    }

    /// Checks that every migration this build knows has been applied.
    ///
    /// # Errors
    /// Some are pending ([`StoreError::Schema`], saying to run `portcullis migrate`), or the
    /// database fails.
    pub async fn check_migrated(&self) -> Result<(), StoreError> {
        let applied = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS version FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await;
        let applied = match applied {
            Ok(row) => row.try_get::<i64, _>("version")?,
            Err(error) => match StoreError::from(error) {
                unavailable @ StoreError::Unavailable(_) => return Err(unavailable),
                // No migration table: nothing was ever applied.
                _ => 0,
            },
        };
        let latest = self.latest_version();
        if applied < latest {
            return Err(StoreError::Schema(format!(
                "the database schema is at version {applied} and this build needs {latest}: run \
                 `portcullis migrate` (storage.migrate_on_start is false)"
            )));
        }
        Ok(())
    }

    fn latest_version(&self) -> i64 {
        self.migrator().iter().map(|migration| migration.version).max().unwrap_or(0)
    }

    /// The pool, for the repositories in this module tree.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The row `sql` (a read with one parameter) selects, if any. Tried again on another
    /// connection when the one it got turns out to have died while idle (the database
    /// restarted, or an operator or PgBouncer closed it): pooled connections are not pinged
    /// before use, so this is where a dead one is found, and dropped. A restart kills every
    /// pooled connection: as many tries as there are idle ones and one more, up to four.
    ///
    /// # Errors
    /// The database fails, or its connection fails on every try.
    pub async fn read_optional(
        &self,
        sql: &str,
        parameter: &str,
    ) -> Result<Option<AnyRow>, StoreError> {
        let read = || {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .bind(parameter.to_owned())
                .fetch_optional(&self.pool)
        };
        // At most a few: the idle connections a restart killed are found dead at once, while
        // a database that refuses new connections is not retried here (sqlx waits for it).
        let mut tries = (self.pool.num_idle() + 1).min(4);
        loop {
            tries = tries.saturating_sub(1);
            match read().await {
                Err(error) if tries > 0 && is_lost_connection(&error) => {
                    tracing::debug!(%error, "a pooled database connection had died; reading again");
                }
                other => return Ok(other?),
            }
        }
    }

    /// The engine behind the pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers.
    ///
    /// # Errors
    /// It does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The stored setting `key`, setting it to `make()` first if absent. When several replicas
    /// start at once, all of them end up with the value that was written first.
    ///
    /// # Errors
    /// The database fails.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(make())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<String, _>("value")?)
    }

    /// Claims the periodic sweep of the shared tables for this replica, unless another one
    /// swept less than `interval` before `now`: with many replicas the tables are swept once
    /// per interval, not once per replica. A conditional update of one row, so it works through
    /// PgBouncer in transaction mode (unlike a session advisory lock) and a replica that dies
    /// holds nothing.
    ///
    /// # Errors
    /// The database fails.
    pub async fn claim_sweep(
        &self,
        now: Timestamp,
        interval: std::time::Duration,
    ) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, '0') ON CONFLICT (key) DO NOTHING",
        )
        .bind(LAST_SWEEP)
        .execute(&self.pool)
        .await?;
        let interval = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        // A little early: replicas tick at the interval too, and must not just miss their turn.
        let due = now.as_millis().saturating_sub(interval - interval / 10);
        let claimed = sqlx::query(
            "UPDATE settings SET value = $2 WHERE key = $1 AND CAST(value AS BIGINT) <= $3",
        )
        .bind(LAST_SWEEP)
        .bind(now.as_millis().to_string())
        .bind(due)
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// The same database, sealing the secrets it keeps with `sealer`.
    #[must_use]
    pub fn with_sealer(mut self, sealer: Sealer) -> Self {
        self.sealer = sealer;
        self
    }

    /// How the secrets this database keeps are sealed.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Like [`Self::setting_or_insert`] for a secret: stored sealed (when a key is configured),
    /// returned open; a value stored plain or under a previous key is sealed again.
    ///
    /// # Errors
    /// The database fails, or the value is sealed with a key that is not configured.
    pub async fn secret_setting_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let purpose = format!("setting:{key}");
        let fresh = self.sealer.seal(&purpose, &make())?;
        let stored = self.setting_or_insert(key, || fresh).await?;
        let opened = self.sealer.open(&purpose, &stored)?;
        if opened.reseal {
            sqlx::query("UPDATE settings SET value = $2 WHERE key = $1 AND value = $3")
                .bind(key)
                .bind(self.sealer.seal(&purpose, &opened.text)?)
                .bind(&stored)
                .execute(&self.pool)
                .await?;
        }
        Ok(opened.text)
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `error` says the connection itself is gone (nothing was read or written).
fn is_lost_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // Connection exceptions, and "terminating connection due to administrator command".
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || code == "57P01")
        }
        _ => false,
    }
}

fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Adds `mode=rwc` (create if missing) unless the URL chooses a mode.
fn sqlite_url(url: &str) -> String {
    if is_sqlite_memory(url) || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_a_sqlite_file_and_keeps_the_first_setting() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new.db").display());
        let database = Database::connect(&url, 2).await.unwrap();
        database.ping().await.unwrap();
        let first = database.setting_or_insert("k", || "one".into()).await.unwrap();
        let second = database.setting_or_insert("k", || "two".into()).await.unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
        assert!(dir.path().join("new.db").exists());
    }

    #[tokio::test]
    async fn memory_databases_work_with_one_connection() {
        let database = Database::connect("sqlite::memory:", 5).await.unwrap();
        database.setting_or_insert("k", || "v".into()).await.unwrap();
        assert_eq!(database.setting_or_insert("k", || "x".into()).await.unwrap(), "v");
    }

    /// Replicas sweeping the same database: one sweep per interval between them.
    async fn sweeps_once_per_interval(one: Database, other: Database) {
        let interval = std::time::Duration::from_secs(60);
        let t = |seconds: i64| Timestamp::from_millis(1_700_000_000_000 + seconds * 1000);
        assert!(one.claim_sweep(t(0), interval).await.unwrap());
        assert!(!other.claim_sweep(t(1), interval).await.unwrap(), "swept a second ago");
        assert!(!one.claim_sweep(t(30), interval).await.unwrap());
        assert!(other.claim_sweep(t(58), interval).await.unwrap(), "a tick a little early");
        assert!(!one.claim_sweep(t(59), interval).await.unwrap());
        let (a, b) =
            tokio::join!(one.claim_sweep(t(200), interval), other.claim_sweep(t(200), interval));
        assert!(a.unwrap() ^ b.unwrap(), "exactly one of two at once");
    }

    #[tokio::test]
    async fn sqlite_sweeps_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sweep.db").display());
        let one = Database::connect(&url, 2).await.unwrap();
        sweeps_once_per_interval(one.clone(), Database::connect(&url, 2).await.unwrap()).await;
    }

    #[tokio::test]
    async fn postgres_sweeps_once_per_interval() {
        let database = crate::store::testing::TestDatabase::create().await;
        let one = Database::connect(&database.url, 2).await.unwrap();
        sweeps_once_per_interval(one, Database::connect(&database.url, 2).await.unwrap()).await;
    }

    #[test]
    fn sqlite_urls_create_missing_files() {
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(sqlite_url("sqlite://a.db?cache=shared"), "sqlite://a.db?cache=shared&mode=rwc");
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }
}
