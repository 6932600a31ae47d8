//! Identities at sign-in providers linked to users: at most one per provider per user, and each
//! provider identity belongs to one user.

use sqlx::Row;
use uuid::Uuid;

use super::StoreError;
use super::sql::Database;
use crate::clock::Timestamp;

/// A link as listed (`GET /auth/providers/linked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Provider name (config key).
    pub provider: String,
    /// When it was linked.
    pub linked_at: Timestamp,
}

/// Reads and writes linked identities.
#[derive(Debug, Clone)]
pub struct LinkStore {
    db: Database,
}

impl LinkStore {
    /// A repository over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The user the provider identity is linked to.
    ///
    /// # Errors
    /// The database fails.
    pub async fn user_of(&self, provider: &str, subject: &str) -> Result<Option<Uuid>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id FROM linked_identities WHERE provider = $1 AND subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            let text: String = row.try_get("user_id")?;
            Uuid::parse_str(&text).map_err(|_| StoreError::Corrupt("linked user id".into()))
        })
        .transpose()
    }

    /// Links the identity to `user_id`.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the identity, or another identity of this provider, is
    /// already linked.
    pub async fn link(
        &self,
        provider: &str,
        subject: &str,
        user_id: Uuid,
        email: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO linked_identities (provider, subject, user_id, email, linked_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(provider)
        .bind(subject)
        .bind(user_id.to_string())
        .bind(email)
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await
        .map_err(|error| StoreError::from_sqlx(error, "a link for this provider"))?;
        Ok(())
    }

    /// The user's links, oldest first.
    ///
    /// # Errors
    /// The database fails.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, linked_at FROM linked_identities WHERE user_id = $1 \
             ORDER BY linked_at, provider",
        )
        .bind(user_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Link {
                    provider: row.try_get("provider")?,
                    linked_at: Timestamp::from_millis(row.try_get("linked_at")?),
                })
            })
            .collect()
    }

    /// Removes the user's link to `provider`; `false` if there was none.
    ///
    /// # Errors
    /// The database fails.
    pub async fn unlink(&self, user_id: Uuid, provider: &str) -> Result<bool, StoreError> {
        let result =
            sqlx::query("DELETE FROM linked_identities WHERE user_id = $1 AND provider = $2")
                .bind(user_id.to_string())
                .bind(provider)
                .execute(self.db.pool())
                .await?;
        Ok(result.rows_affected() > 0)
    }
}
