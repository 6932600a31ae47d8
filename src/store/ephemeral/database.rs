//! The `database` backend: the ephemeral tables in the SQL database, swept periodically.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::EphemeralStore;
use crate::clock::Clock;
use crate::store::StoreError;
use crate::store::sql::Database;

/// Ephemeral entries as rows with an `expires_at` column.
#[derive(Debug)]
pub(crate) struct DatabaseStore {
    db: Database,
    clock: Arc<dyn Clock>,
}

impl DatabaseStore {
    /// A store over `db`, reading time from `clock`.
    pub(crate) fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }
}

#[async_trait]
impl EphemeralStore for DatabaseStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let expires = self.clock.now().plus(ttl).as_millis();
        sqlx::query(
            "INSERT INTO ephemeral_values (key, value, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .bind(key)
        .bind(value.to_vec())
        .bind(expires)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT value FROM ephemeral_values WHERE key = $1 AND expires_at > $2")
                .bind(key)
                .bind(self.clock.now().as_millis())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    async fn replace(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let replaced = sqlx::query(
            "UPDATE ephemeral_values SET value = $1, expires_at = $2 \
             WHERE key = $3 AND value = $4 AND expires_at > $5",
        )
        .bind(value.to_vec())
        .bind(now.plus(ttl).as_millis())
        .bind(key)
        .bind(expected.to_vec())
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(replaced.rows_affected() == 1)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // One statement: the row is gone for every other taker the moment this one reads it.
        let row = sqlx::query(
            "DELETE FROM ephemeral_values WHERE key = $1 AND expires_at > $2 RETURNING value",
        )
        .bind(key)
        .bind(self.clock.now().as_millis())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        for query in [
            "DELETE FROM ephemeral_values WHERE key = $1",
            "DELETE FROM ephemeral_counters WHERE key = $1",
        ] {
            sqlx::query(query).bind(key).execute(self.db.pool()).await?;
        }
        Ok(())
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let row = sqlx::query(
            "INSERT INTO ephemeral_counters (key, count, expires_at) VALUES ($1, 1, $3) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN ephemeral_counters.expires_at > $2 THEN ephemeral_counters.count + 1 ELSE 1 END, \
               expires_at = CASE WHEN ephemeral_counters.expires_at > $2 THEN ephemeral_counters.expires_at ELSE $3 END \
             RETURNING count",
        )
        .bind(key)
        .bind(now.as_millis())
        .bind(now.plus(window).as_millis())
        .fetch_one(self.db.pool())
        .await?;
        let count: i64 = row.try_get("count")?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ephemeral_sets (key, member, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key, member) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(key)
        .bind(member)
        .bind(self.clock.now().plus(ttl).as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ephemeral_sets WHERE key = $1 AND member = $2")
            .bind(key)
            .bind(member)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT member FROM ephemeral_sets WHERE key = $1 AND expires_at > $2")
                .bind(key)
                .bind(self.clock.now().as_millis())
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows.iter().map(|row| row.try_get("member")).collect::<Result<_, _>>()?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        let now = self.clock.now().as_millis();
        for query in [
            "DELETE FROM ephemeral_values WHERE expires_at <= $1",
            "DELETE FROM ephemeral_counters WHERE expires_at <= $1",
            "DELETE FROM ephemeral_sets WHERE expires_at <= $1",
        ] {
            sqlx::query(query).bind(now).execute(self.db.pool()).await?;
        }
        Ok(())
    }
}
