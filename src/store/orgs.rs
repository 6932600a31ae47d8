//! Organizations and memberships. Every change that could leave an organization without an
//! owner runs in a transaction that first locks the organization's row, so two owners demoting
//! each other at once cannot both succeed.

use sqlx::any::AnyRow;
use sqlx::{Acquire, Row};
use uuid::Uuid;

use super::StoreError;
use super::sql::Database;
use crate::clock::Timestamp;
use crate::model::OrgRole;
use crate::model::org::{Member, Membership, OWNER};

/// What a role change or removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done.
    Done,
    /// The user is not a member.
    NotMember,
    /// Refused: the organization would be left without an owner.
    LastOwner,
}

/// Reads and writes organizations and memberships.
#[derive(Debug, Clone)]
pub(crate) struct OrgStore {
    db: Database,
}

impl OrgStore {
    /// A repository over `db`.
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates an organization with `owner` as its owner, in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the slug is taken.
    pub(crate) async fn create(
        &self,
        name: &str,
        slug: &str,
        owner: Uuid,
        now: Timestamp,
    ) -> Result<Membership, StoreError> {
        let id = Uuid::now_v7();
        let mut connection = self.db.pool().acquire().await?;
        let mut tx = connection.begin().await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, slug, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(slug)
        .bind(owner.to_string())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(|error| StoreError::from_sqlx(error, "an organization with this slug"))?;
        insert_member(&mut tx, id, owner, OWNER, now).await?;
        tx.commit().await?;
        Ok(Membership {
            id,
            name: name.to_owned(),
            slug: slug.to_owned(),
            role: OWNER.into(),
            joined_at: now,
        })
    }

    /// The user's organizations, the most recently active first.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, o.slug, m.role, m.joined_at FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 \
             ORDER BY m.last_active_at DESC, o.id",
        )
        .bind(user_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(membership_from_row).collect()
    }

    /// The user's organizations and roles, for an identity (most recently active first).
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn roles_of(&self, user_id: Uuid) -> Result<Vec<OrgRole>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, role FROM memberships WHERE user_id = $1 \
             ORDER BY last_active_at DESC, org_id",
        )
        .bind(user_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| Ok(OrgRole { org_id: uuid(row, "org_id")?, role: row.try_get("role")? }))
            .collect()
    }

    /// The user's membership in `org_id`.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn membership(
        &self,
        org_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Membership>, StoreError> {
        let row = sqlx::query(
            "SELECT o.id, o.name, o.slug, m.role, m.joined_at FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.org_id = $1 AND m.user_id = $2",
        )
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(membership_from_row).transpose()
    }

    /// The organization's members, oldest first.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn members(&self, org_id: Uuid) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, m.role, m.joined_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.joined_at, u.id",
        )
        .bind(org_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    user_id: uuid(row, "id")?,
                    email: row.try_get("email")?,
                    name: row.try_get("name")?,
                    role: row.try_get("role")?,
                    joined_at: Timestamp::from_millis(row.try_get("joined_at")?),
                })
            })
            .collect()
    }

    /// Adds the user with `role`; a user who is already a member keeps their role. Returns
    /// whether they were added.
    ///
    /// # Errors
    /// The database fails (or the organization or user is gone).
    pub(crate) async fn add_member(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        role: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, joined_at, last_active_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (org_id, user_id) DO NOTHING",
        )
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .bind(role)
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Gives the member `role`, unless that leaves the organization without an owner.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn set_role(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        role: &str,
        now: Timestamp,
    ) -> Result<Outcome, StoreError> {
        self.change(org_id, user_id, Write::Role(role), now).await
    }

    /// Removes the member, unless they are the organization's last owner.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn remove(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        now: Timestamp,
    ) -> Result<Outcome, StoreError> {
        self.change(org_id, user_id, Write::Remove, now).await
    }

    /// Applies `write` to the membership in a transaction holding the organization's row lock,
    /// refusing when it would take away the last owner.
    async fn change(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        write: Write<'_>,
        now: Timestamp,
    ) -> Result<Outcome, StoreError> {
        let (org, user) = (org_id.to_string(), user_id.to_string());
        let mut connection = self.db.pool().acquire().await?;
        let mut tx = connection.begin().await?;
        // Takes the row lock (PostgreSQL; SQLite serializes writers anyway) before reading.
        sqlx::query("UPDATE organizations SET updated_at = $2 WHERE id = $1")
            .bind(&org)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
        let role: Option<String> =
            sqlx::query("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(&org)
                .bind(&user)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get("role"))
                .transpose()?;
        let Some(role) = role else {
            tx.rollback().await?;
            return Ok(Outcome::NotMember);
        };
        let drops_owner = match write {
            Write::Role(new) => new != OWNER,
            Write::Remove => true,
        };
        if role == OWNER && drops_owner {
            let owners: i64 = sqlx::query(
                "SELECT COUNT(*) AS owners FROM memberships WHERE org_id = $1 AND role = $2",
            )
            .bind(&org)
            .bind(OWNER)
            .fetch_one(&mut *tx)
            .await?
            .try_get("owners")?;
            if owners <= 1 {
                tx.rollback().await?;
                return Ok(Outcome::LastOwner);
            }
        }
        let query = match write {
            Write::Role(new) => {
                sqlx::query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2")
                    .bind(&org)
                    .bind(&user)
                    .bind(new)
            }
            Write::Remove => {
                sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                    .bind(&org)
                    .bind(&user)
            }
        };
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Outcome::Done)
    }

    /// Records that the user started a session in, or switched to, `org_id`: new sessions
    /// start in the most recent one.
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn mark_active(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE memberships SET last_active_at = $3 WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

/// A change to one membership.
#[derive(Debug, Clone, Copy)]
enum Write<'a> {
    /// A new role.
    Role(&'a str),
    /// Removal.
    Remove,
}

async fn insert_member(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    org_id: Uuid,
    user_id: Uuid,
    role: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role, joined_at, last_active_at) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(org_id.to_string())
    .bind(user_id.to_string())
    .bind(role)
    .bind(now.as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A row of `organizations` joined with `memberships`: id, name, slug, role, joined_at.
fn membership_from_row(row: &AnyRow) -> Result<Membership, StoreError> {
    Ok(Membership {
        id: uuid(row, "id")?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        role: row.try_get("role")?,
        joined_at: Timestamp::from_millis(row.try_get("joined_at")?),
    })
}

fn uuid(row: &AnyRow, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|_| StoreError::Corrupt(format!("organization {column}")))
}

#[cfg(test)]
mod tests;
