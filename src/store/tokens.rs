//! Refresh-token families: one row per signed-in token client (its `sid`), holding the hash of
//! the one refresh token that is currently valid. Exchanged tokens are kept as "spent" until the
//! family expires (at most [`SPENT_RETENTION`]), so presenting one again is recognised as reuse.

use sqlx::any::AnyRow;
use sqlx::{Acquire, Row};
use uuid::Uuid;

use super::StoreError;
use super::sql::Database;
use crate::clock::Timestamp;
use crate::model::Scopes;
use crate::model::credential::CredentialHash;

/// How long an exchanged refresh token is remembered, so that presenting it again is caught as
/// reuse (and its whole family revoked). A family that refreshes every few minutes for a month
/// would otherwise keep thousands of rows; a token replayed later than this is merely refused.
pub(crate) const SPENT_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

const COLUMNS: &str = "id, user_id, scopes, org_id, client, ip, created_at, rotated_at, expires_at";

/// A live refresh family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Family id: the `sid` of its access tokens.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Scopes its tokens carry.
    pub scopes: Scopes,
    /// The organization its tokens act in (their `org` claim).
    pub org_id: Option<Uuid>,
    /// Client name (device flow) or user agent.
    pub client: Option<String>,
    /// IP at sign-in.
    pub ip: Option<String>,
    /// Sign-in time.
    pub created_at: Timestamp,
    /// Last rotation.
    pub rotated_at: Timestamp,
    /// When the current refresh token expires.
    pub expires_at: Timestamp,
}

/// What exchanging a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was the current token of a live family, now replaced.
    Rotated(Family),
    /// It was already exchanged, at `spent_at`: reuse.
    Spent {
        /// The family it belonged to.
        family_id: Uuid,
        /// When it was exchanged.
        spent_at: Timestamp,
        /// What it was exchanged for, sealed for its holder (see [`FamilyStore::rotate`]).
        successor: Option<String>,
    },
    /// Unknown, expired or revoked.
    Unknown,
}

/// Reads and writes refresh families.
#[derive(Debug, Clone)]
pub struct FamilyStore {
    db: Database,
}

impl FamilyStore {
    /// A repository over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Stores a new family whose current token hashes to `token_hash`.
    ///
    /// # Errors
    /// The database fails.
    pub async fn insert(
        &self,
        family: &Family,
        token_hash: &CredentialHash,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_families (id, user_id, token_hash, scopes, client, ip, \
             created_at, rotated_at, expires_at, org_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(family.id.to_string())
        .bind(family.user_id.to_string())
        .bind(token_hash.to_hex())
        .bind(family.scopes.to_claim())
        .bind(family.client.as_deref())
        .bind(family.ip.as_deref())
        .bind(family.created_at.as_millis())
        .bind(family.rotated_at.as_millis())
        .bind(family.expires_at.as_millis())
        .bind(family.org_id.map(|id| id.to_string()))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The family `id` if it is neither revoked nor expired at `now`.
    ///
    /// # Errors
    /// The database fails.
    pub async fn find_live(&self, id: Uuid, now: Timestamp) -> Result<Option<Family>, StoreError> {
        let query = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM refresh_families \
             WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2"
        ));
        let row = sqlx::query(query)
            .bind(id.to_string())
            .bind(now.as_millis())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(family_from_row).transpose()
    }

    /// The live family whose current token hashes to `token_hash`.
    ///
    /// # Errors
    /// The database fails.
    pub async fn find_current(
        &self,
        token_hash: &CredentialHash,
        now: Timestamp,
    ) -> Result<Option<Family>, StoreError> {
        let query = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM refresh_families \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2"
        ));
        let row = sqlx::query(query)
            .bind(token_hash.to_hex())
            .bind(now.as_millis())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(family_from_row).transpose()
    }

    /// Replaces the current token `old` by `new` in one transaction, extending the family to
    /// `expires_at`, and keeps `successor` (the new token, sealed for the holder of the old
    /// one) with the spent token. Of two concurrent exchanges of the same token exactly one
    /// rotates; the other finds it spent.
    ///
    /// # Errors
    /// The database fails.
    pub async fn rotate(
        &self,
        old: &CredentialHash,
        new: &CredentialHash,
        now: Timestamp,
        expires_at: Timestamp,
        successor: Option<&str>,
    ) -> Result<Rotation, StoreError> {
        let old_hex = old.to_hex();
        let mut connection = self.db.pool().acquire().await?;
        let mut tx = connection.begin().await?;
        let query = sqlx::AssertSqlSafe(format!(
            "UPDATE refresh_families SET token_hash = $2, rotated_at = $3, expires_at = $4 \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $3 \
             RETURNING {COLUMNS}"
        ));
        let row = sqlx::query(query)
            .bind(&old_hex)
            .bind(new.to_hex())
            .bind(now.as_millis())
            .bind(expires_at.as_millis())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            let family = family_from_row(&row)?;
            sqlx::query(
                "INSERT INTO spent_refresh_tokens \
                 (token_hash, family_id, spent_at, expires_at, successor) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(&old_hex)
            .bind(family.id.to_string())
            .bind(now.as_millis())
            .bind(expires_at.as_millis())
            .bind(successor)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated(family));
        }
        tx.rollback().await?;
        // On the same connection: the pool may hold only one (in-memory SQLite).
        let spent = sqlx::query(
            "SELECT family_id, spent_at, successor FROM spent_refresh_tokens WHERE token_hash = $1",
        )
        .bind(&old_hex)
        .fetch_optional(&mut *connection)
        .await?;
        match spent {
            Some(row) => {
                let id: String = row.try_get("family_id")?;
                Ok(Rotation::Spent {
                    family_id: Uuid::parse_str(&id)
                        .map_err(|_| StoreError::Corrupt("refresh family id".into()))?,
                    spent_at: Timestamp::from_millis(row.try_get("spent_at")?),
                    successor: row.try_get("successor")?,
                })
            }
            None => Ok(Rotation::Unknown),
        }
    }

    /// Revokes family `id`; returns its owner if it was live.
    ///
    /// # Errors
    /// The database fails.
    pub async fn revoke(&self, id: Uuid, now: Timestamp) -> Result<Option<Uuid>, StoreError> {
        let row = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL \
             RETURNING user_id",
        )
        .bind(id.to_string())
        .bind(now.as_millis())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| parse_uuid(&row, "user_id")).transpose()
    }

    /// Revokes every live family of the user; returns their ids.
    ///
    /// # Errors
    /// The database fails.
    pub async fn revoke_user(
        &self,
        user_id: Uuid,
        now: Timestamp,
    ) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $2 \
             WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
        )
        .bind(user_id.to_string())
        .bind(now.as_millis())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(|row| parse_uuid(row, "id")).collect()
    }

    /// Deletes expired families, and spent tokens of expired families or spent more than
    /// [`SPENT_RETENTION`] ago.
    ///
    /// # Errors
    /// The database fails.
    pub async fn sweep(&self, now: Timestamp) -> Result<(), StoreError> {
        let retention = i64::try_from(SPENT_RETENTION.as_millis()).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM spent_refresh_tokens WHERE expires_at <= $1 OR spent_at <= $2")
            .bind(now.as_millis())
            .bind(now.as_millis().saturating_sub(retention))
            .execute(self.db.pool())
            .await?;
        sqlx::query("DELETE FROM refresh_families WHERE expires_at <= $1")
            .bind(now.as_millis())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

fn parse_uuid(row: &AnyRow, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|_| StoreError::Corrupt(format!("refresh family {column}")))
}

fn family_from_row(row: &AnyRow) -> Result<Family, StoreError> {
    let scopes: Option<String> = row.try_get("scopes")?;
    Ok(Family {
        id: parse_uuid(row, "id")?,
        user_id: parse_uuid(row, "user_id")?,
        scopes: Scopes::from_claim(scopes.as_deref()).map_err(StoreError::from)?,
        org_id: match row.try_get::<Option<String>, _>("org_id")? {
            Some(_) => Some(parse_uuid(row, "org_id")?),
            None => None,
        },
        client: row.try_get("client")?,
        ip: row.try_get("ip")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        rotated_at: Timestamp::from_millis(row.try_get("rotated_at")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> CredentialHash {
        CredentialHash::from_bytes([byte; 32])
    }

    #[tokio::test]
    async fn spent_tokens_are_kept_for_the_retention_and_families_until_they_expire() {
        let store = FamilyStore::new(Database::connect("sqlite::memory:", 1).await.unwrap());
        let day = |n: i64| Timestamp::from_millis(n * 86_400_000);
        let family = Family {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            scopes: Scopes::All,
            org_id: None,
            client: None,
            ip: None,
            created_at: day(0),
            rotated_at: day(0),
            expires_at: day(30),
        };
        // The owner is not checked by this table.
        sqlx::query("PRAGMA foreign_keys = OFF").execute(store.db.pool()).await.unwrap();
        store.insert(&family, &hash(1)).await.unwrap();
        assert!(matches!(
            store.rotate(&hash(1), &hash(2), day(1), day(31), None).await.unwrap(),
            Rotation::Rotated(_)
        ));
        assert!(matches!(
            store.rotate(&hash(2), &hash(3), day(5), day(35), None).await.unwrap(),
            Rotation::Rotated(_)
        ));

        store.sweep(day(7)).await.unwrap();
        assert!(matches!(
            store.rotate(&hash(1), &hash(9), day(7), day(37), None).await.unwrap(),
            Rotation::Spent { .. }
        ));
        store.sweep(day(9)).await.unwrap();
        assert_eq!(
            store.rotate(&hash(1), &hash(9), day(9), day(39), None).await.unwrap(),
            Rotation::Unknown,
            "spent 8 days ago: forgotten"
        );
        assert!(
            matches!(
                store.rotate(&hash(2), &hash(9), day(9), day(39), None).await.unwrap(),
                Rotation::Spent { .. }
            ),
            "spent 4 days ago: kept"
        );
        store.sweep(day(40)).await.unwrap();
        assert_eq!(
            store.rotate(&hash(3), &hash(9), day(40), day(70), None).await.unwrap(),
            Rotation::Unknown,
            "the family expired"
        );
    }
}
