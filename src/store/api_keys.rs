//! The API key repository. Only the SHA-256 of a key is stored; the key itself is shown once.

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::StoreError;
use super::sql::Database;
use crate::clock::{Timestamp, duration_millis};
use crate::model::Scopes;
use crate::model::credential::CredentialHash;

/// Columns every query reads.
const COLUMNS: &str = "id, user_id, name, prefix, key_hash, scopes, org_id, created_at, \
                       last_used_at, expires_at, revoked_at";

/// A stored API key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Name the owner gave it.
    pub name: String,
    /// The first characters of the key, to recognise it in lists.
    pub prefix: String,
    /// SHA-256 of the key.
    pub key_hash: CredentialHash,
    /// Granted scopes.
    pub scopes: Scopes,
    /// The organization the key acts in (its `X-Auth-Org-Id`), while its owner is a member.
    pub org_id: Option<Uuid>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last use, updated at most once a minute.
    pub last_used_at: Option<Timestamp>,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// Reads and writes API keys.
#[derive(Debug, Clone)]
pub struct ApiKeyStore {
    db: Database,
}

impl ApiKeyStore {
    /// A repository over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Stores a new key.
    ///
    /// # Errors
    /// The database fails.
    pub async fn insert(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scopes, created_at, \
             expires_at, org_id, tagged) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)",
        )
        .bind(key.id.to_string())
        .bind(key.user_id.to_string())
        .bind(key.name.as_str())
        .bind(key.prefix.as_str())
        .bind(key.key_hash.to_hex())
        .bind(key.scopes.to_claim().unwrap_or_default())
        .bind(key.created_at.as_millis())
        .bind(key.expires_at.map(Timestamp::as_millis))
        .bind(key.org_id.map(|id| id.to_string()))
        .execute(self.db.pool())
        .await
        .map_err(|error| StoreError::from_sqlx(error, "an API key with this value"))?;
        Ok(())
    }

    /// Whether a key made before keys were tagged is still live at `now`.
    ///
    /// # Errors
    /// The database fails.
    pub async fn any_live_untagged(&self, now: Timestamp) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM api_keys WHERE tagged = 0 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1) LIMIT 1",
        )
        .bind(now.as_millis())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The key with this hash, live or not.
    ///
    /// # Errors
    /// The database fails.
    pub async fn find_by_hash(
        &self,
        hash: &CredentialHash,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let query = format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row = self.db.read_optional(&query, &hash.to_hex()).await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The user's keys that are not revoked, newest first.
    ///
    /// # Errors
    /// The database fails.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let query = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC"
        ));
        let rows = sqlx::query(query).bind(user_id.to_string()).fetch_all(self.db.pool()).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Revokes the user's key `id`; returns its hash (to evict it) if it was live.
    ///
    /// # Errors
    /// The database fails.
    pub async fn revoke(
        &self,
        user_id: Uuid,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Option<CredentialHash>, StoreError> {
        let row = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING key_hash",
        )
        .bind(id.to_string())
        .bind(user_id.to_string())
        .bind(now.as_millis())
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            Some(row) => Ok(Some(parse_hash(&row.try_get::<String, _>("key_hash")?)?)),
            None => Ok(None),
        }
    }

    /// Records a use at `now`, unless one was recorded within `interval`: at most one write per
    /// key per interval, however busy the key.
    ///
    /// # Errors
    /// The database fails.
    pub async fn touch(
        &self,
        id: Uuid,
        now: Timestamp,
        interval: std::time::Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(id.to_string())
        .bind(now.as_millis())
        .bind(now.as_millis().saturating_sub(duration_millis(interval)))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

fn parse_hash(text: &str) -> Result<CredentialHash, StoreError> {
    CredentialHash::from_hex(text).ok_or_else(|| StoreError::Corrupt("API key hash".into()))
}

fn record_from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let uuid = |column: &str| -> Result<Uuid, StoreError> {
        let text: String = row.try_get(column)?;
        Uuid::parse_str(&text).map_err(|_| StoreError::Corrupt(format!("API key {column}")))
    };
    let time = |column: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp::from_millis))
    };
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiKeyRecord {
        id: uuid("id")?,
        user_id: uuid("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        key_hash: parse_hash(&row.try_get::<String, _>("key_hash")?)?,
        scopes: Scopes::parse_list(scopes.split_ascii_whitespace()).map_err(StoreError::from)?,
        org_id: match row.try_get::<Option<String>, _>("org_id")? {
            Some(_) => Some(uuid("org_id")?),
            None => None,
        },
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        last_used_at: time("last_used_at")?,
        expires_at: time("expires_at")?,
        revoked_at: time("revoked_at")?,
    })
}
