//! Organization invites, stored by the hash of their token. An invite is used up by one atomic
//! update, so of two concurrent accepts exactly one joins.

use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::StoreError;
use super::sql::Database;
use crate::clock::Timestamp;
use crate::model::credential::CredentialHash;

const COLUMNS: &str = "id, org_id, email, role, invited_by, created_at, expires_at";
/// Used and expired invites are kept this long (for support questions), then deleted.
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// A stored invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Invite id.
    pub id: Uuid,
    /// The organization it joins.
    pub org_id: Uuid,
    /// Who it was sent to (normalized).
    pub email: String,
    /// The role it grants.
    pub role: String,
    /// Who sent it.
    pub invited_by: Option<Uuid>,
    /// When it was sent.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Reads and writes invites.
#[derive(Debug, Clone)]
pub(crate) struct InviteStore {
    db: Database,
}

impl InviteStore {
    /// A repository over `db`.
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }

    /// Stores an invite whose token hashes to `token_hash`. Earlier pending invites of the same
    /// address to the same organization stop working: only the latest link joins.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn insert(
        &self,
        invite: &Invite,
        token_hash: &CredentialHash,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM invites WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL")
            .bind(invite.org_id.to_string())
            .bind(&invite.email)
            .execute(self.db.pool())
            .await?;
        sqlx::query(
            "INSERT INTO invites (token_hash, id, org_id, email, role, invited_by, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token_hash.to_hex())
        .bind(invite.id.to_string())
        .bind(invite.org_id.to_string())
        .bind(&invite.email)
        .bind(&invite.role)
        .bind(invite.invited_by.map(|id| id.to_string()))
        .bind(invite.created_at.as_millis())
        .bind(invite.expires_at.as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The unused, unexpired invite with this token hash.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn find_pending(
        &self,
        token_hash: &CredentialHash,
        now: Timestamp,
    ) -> Result<Option<Invite>, StoreError> {
        let query = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invites \
             WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2"
        ));
        let row = sqlx::query(query)
            .bind(token_hash.to_hex())
            .bind(now.as_millis())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    /// Uses the invite up for `user_id`; `None` when it was already used or has expired.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn consume(
        &self,
        token_hash: &CredentialHash,
        user_id: Uuid,
        now: Timestamp,
    ) -> Result<Option<Invite>, StoreError> {
        let query = sqlx::AssertSqlSafe(format!(
            "UPDATE invites SET accepted_at = $2, accepted_by = $3 \
             WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2 \
             RETURNING {COLUMNS}"
        ));
        let row = sqlx::query(query)
            .bind(token_hash.to_hex())
            .bind(now.as_millis())
            .bind(user_id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    /// The organization's invites that are neither used nor expired, newest first.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn pending(
        &self,
        org_id: Uuid,
        now: Timestamp,
    ) -> Result<Vec<Invite>, StoreError> {
        let query = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invites \
             WHERE org_id = $1 AND accepted_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC, id DESC"
        ));
        let rows = sqlx::query(query)
            .bind(org_id.to_string())
            .bind(now.as_millis())
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(invite_from_row).collect()
    }

    /// Withdraws an unused invite of the organization; `false` if there is none.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn revoke(&self, org_id: Uuid, invite_id: Uuid) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM invites WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL",
        )
        .bind(org_id.to_string())
        .bind(invite_id.to_string())
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes invites that expired or were used long ago (called periodically).
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn sweep(&self, now: Timestamp) -> Result<(), StoreError> {
        let before = now.as_millis().saturating_sub(i64::try_from(KEEP.as_millis()).unwrap_or(0));
        sqlx::query("DELETE FROM invites WHERE expires_at < $1")
            .bind(before)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

fn invite_from_row(row: &AnyRow) -> Result<Invite, StoreError> {
    let uuid = |column: &str| -> Result<Uuid, StoreError> {
        let text: String = row.try_get(column)?;
        Uuid::parse_str(&text).map_err(|_| StoreError::Corrupt(format!("invite {column}")))
    };
    let invited_by: Option<String> = row.try_get("invited_by")?;
    Ok(Invite {
        id: uuid("id")?,
        org_id: uuid("org_id")?,
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        invited_by: invited_by.and_then(|id| Uuid::parse_str(&id).ok()),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
    })
}
