//! The user repository: accounts, password hashes and global roles.

use sqlx::any::AnyRow;
use sqlx::{Acquire, Row};
use uuid::Uuid;

use super::StoreError;
use super::sql::{Backend, Database};
use crate::clock::Timestamp;
use crate::model::{Email, OrgRole, User};

const USER_COLUMNS: &str = "id, email, email_verified_at, name, username, avatar_url, locale, \
                            disabled_at, created_at, updated_at";

/// A `SELECT` of a user's columns, its roles (`roles_json`, a JSON array: roles set by an
/// operator and roles from providers, kept apart in storage, sorted and without repeats) and,
/// with `orgs`, its organizations and roles in them (`orgs_json`, `[[org_id, role], …]`, the most
/// recently active first), from `users` under `condition`: everything an identity is built
/// from, in one round trip.
fn select_user(backend: Backend, extra_columns: &str, orgs: bool, condition: &str) -> String {
    // The same aggregate in both dialects; PostgreSQL's is NULL over no rows and JSON-typed.
    let (aggregate, empty, text) = match backend {
        Backend::Postgres => ("json_agg", "COALESCE(", ", '[]')::text"),
        Backend::Sqlite => ("json_group_array", "(", ")"),
    };
    let pair = match backend {
        Backend::Postgres => "json_build_array",
        Backend::Sqlite => "json_array",
    };
    let roles = format!(
        "(SELECT {empty}{aggregate}(r.role ORDER BY r.role){text} FROM \
         (SELECT role FROM user_roles WHERE user_id = users.id \
          UNION SELECT role FROM user_provider_roles WHERE user_id = users.id) r) AS roles_json"
    );
    let orgs = if orgs {
        format!(
            ", (SELECT {empty}{aggregate}({pair}(m.org_id, m.role) \
             ORDER BY m.last_active_at DESC, m.org_id){text} \
             FROM memberships m WHERE m.user_id = users.id) AS orgs_json"
        )
    } else {
        String::new()
    };
    format!("SELECT {USER_COLUMNS}{extra_columns}, {roles}{orgs} FROM users WHERE {condition}")
}

/// A user about to be created.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email, normalized.
    pub email: Email,
    /// Display name.
    pub name: Option<String>,
    /// Argon2id PHC string, for password accounts.
    pub password_hash: Option<String>,
    /// Initial global roles.
    pub roles: Vec<String>,
}

/// Reads and writes users.
#[derive(Debug, Clone)]
pub struct UserStore {
    db: Database,
}

impl UserStore {
    /// A repository over `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a user with its roles in one transaction: the user fully exists or not at all.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the email is taken.
    pub async fn create(&self, new: NewUser, now: Timestamp) -> Result<User, StoreError> {
        let id = Uuid::now_v7();
        let mut connection = self.db.pool().acquire().await?;
        let mut tx = connection.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.to_string())
        .bind(new.email.as_str())
        .bind(new.name.as_deref())
        .bind(new.password_hash.as_deref())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(|error| StoreError::from_sqlx(error, "an account with this email"))?;
        let mut roles = new.roles;
        roles.sort();
        roles.dedup();
        for role in &roles {
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
                .bind(id.to_string())
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(User { name: new.name, roles, ..User::new(id, new.email, now) })
    }

    /// The user with `id`.
    ///
    /// # Errors
    /// The database fails.
    pub async fn find(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let query = select_user(self.db.backend(), "", false, "id = $1");
        let row = self.db.read_optional(&query, &id.to_string()).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user with `id` unless it is disabled: who may be signed in.
    ///
    /// # Errors
    /// The database fails.
    pub async fn find_enabled(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        Ok(self.find(id).await?.filter(|user| user.disabled_at.is_none()))
    }

    /// An enabled user with their organizations and roles: what an identity is built from, read
    /// in one query (a cache miss on every replica lands here).
    ///
    /// # Errors
    /// The database fails.
    pub async fn find_member(&self, id: Uuid) -> Result<Option<(User, Vec<OrgRole>)>, StoreError> {
        let query = select_user(self.db.backend(), "", true, "id = $1");
        let row = self.db.read_optional(&query, &id.to_string()).await?;
        let Some(row) = row else { return Ok(None) };
        let user = user_from_row(&row)?;
        if user.disabled_at.is_some() {
            return Ok(None);
        }
        let orgs: Vec<(String, String)> = json_column(&row, "orgs_json", "organizations")?;
        let orgs = orgs
            .into_iter()
            .map(|(org_id, role)| {
                let org_id = Uuid::parse_str(&org_id)
                    .map_err(|_| StoreError::Corrupt(format!("organization of user {id}")))?;
                Ok(OrgRole { org_id, role })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some((user, orgs)))
    }

    /// Whether any account exists (a new database has none).
    ///
    /// # Errors
    /// The database fails.
    pub async fn any(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM users LIMIT 1").fetch_optional(self.db.pool()).await?;
        Ok(row.is_some())
    }

    /// The user with `email` and its password hash, if any.
    ///
    /// # Errors
    /// The database fails.
    pub async fn find_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let query = sqlx::AssertSqlSafe(select_user(
            self.db.backend(),
            ", password_hash",
            false,
            "email = $1",
        ));
        let row = sqlx::query(query).bind(email.as_str()).fetch_optional(self.db.pool()).await?;
        match row {
            Some(row) => {
                let hash: Option<String> = row.try_get("password_hash")?;
                Ok(Some((user_from_row(&row)?, hash)))
            }
            None => Ok(None),
        }
    }

    /// Replaces the user's global roles.
    ///
    /// # Errors
    /// The database fails. Returns `false` if there is no such user.
    pub async fn set_roles(
        &self,
        id: Uuid,
        roles: &[String],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut connection = self.db.pool().acquire().await?;
        let mut tx = connection.begin().await?;
        let updated = sqlx::query("UPDATE users SET updated_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        for role in roles {
            sqlx::query(
                "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id.to_string())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Writes the profile fields of `user` (name, username, locale, avatar URL).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the username is taken.
    pub async fn update_profile(&self, user: &User, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET name = $2, username = $3, locale = $4, avatar_url = $5, \
             updated_at = $6 WHERE id = $1",
        )
        .bind(user.id.to_string())
        .bind(user.name.as_deref())
        .bind(user.username.as_deref())
        .bind(user.locale.as_deref())
        .bind(user.avatar_url.as_deref())
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await
        .map_err(|error| StoreError::from_sqlx(error, "this username"))?;
        Ok(())
    }

    /// Records that the user's email is verified (when not already).
    ///
    /// # Errors
    /// The database fails.
    pub async fn mark_email_verified(&self, id: Uuid, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET email_verified_at = $2 WHERE id = $1 AND email_verified_at IS NULL",
        )
        .bind(id.to_string())
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Replaces the user's password hash.
    ///
    /// # Errors
    /// The database fails.
    pub async fn set_password(
        &self,
        id: Uuid,
        hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(id.to_string())
            .bind(hash)
            .bind(now.as_millis())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Replaces the roles `provider` gives the user (its `roles_map` applied at a sign-in),
    /// leaving the roles set by an operator and by other providers alone.
    ///
    /// # Errors
    /// The database fails.
    pub async fn set_provider_roles(
        &self,
        id: Uuid,
        provider: &str,
        roles: &[String],
    ) -> Result<(), StoreError> {
        let mut connection = self.db.pool().acquire().await?;
        let mut tx = connection.begin().await?;
        sqlx::query("DELETE FROM user_provider_roles WHERE user_id = $1 AND provider = $2")
            .bind(id.to_string())
            .bind(provider)
            .execute(&mut *tx)
            .await?;
        for role in roles {
            sqlx::query(
                "INSERT INTO user_provider_roles (user_id, provider, role) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id.to_string())
            .bind(provider)
            .bind(role)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes the user's password; `true` if there was one.
    ///
    /// # Errors
    /// The database fails.
    pub async fn clear_password(&self, id: Uuid, now: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = NULL, updated_at = $2 \
             WHERE id = $1 AND password_hash IS NOT NULL",
        )
        .bind(id.to_string())
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether the user can sign in with a password.
    ///
    /// # Errors
    /// The database fails.
    pub async fn has_password(&self, id: Uuid) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row
            .and_then(|row| row.try_get::<Option<String>, _>("password_hash").ok().flatten())
            .is_some())
    }

    /// Sets the locale if the user has none yet (from the first sign-in's `Accept-Language`).
    ///
    /// # Errors
    /// The database fails.
    pub async fn default_locale(&self, id: Uuid, locale: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET locale = $2 WHERE id = $1 AND locale IS NULL")
            .bind(id.to_string())
            .bind(locale)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Deletes the user (and, by cascade, roles, keys and token families). Used to undo a
    /// sign-up whose session could not be stored.
    ///
    /// # Errors
    /// The database fails.
    pub async fn delete(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Disables (or re-enables) the user. Returns `false` if there is no such user.
    ///
    /// # Errors
    /// The database fails.
    pub async fn set_disabled(
        &self,
        id: Uuid,
        disabled: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE users SET disabled_at = $2, updated_at = $3 WHERE id = $1")
                .bind(id.to_string())
                .bind(disabled.then_some(now.as_millis()))
                .bind(now.as_millis())
                .execute(self.db.pool())
                .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// A user from a row of [`select_user`].
fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let id_text: String = row.try_get("id")?;
    let id =
        Uuid::parse_str(&id_text).map_err(|_| StoreError::Corrupt(format!("user id {id_text}")))?;
    let email_text: String = row.try_get("email")?;
    let email = Email::parse(&email_text)
        .map_err(|_| StoreError::Corrupt(format!("email of user {id}")))?;
    let time = |column: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp::from_millis))
    };
    Ok(User {
        id,
        email,
        email_verified_at: time("email_verified_at")?,
        name: row.try_get("name")?,
        username: row.try_get("username")?,
        avatar_url: row.try_get("avatar_url")?,
        locale: row.try_get("locale")?,
        roles: json_column(row, "roles_json", "roles")?,
        disabled_at: time("disabled_at")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

/// A JSON-aggregated column of [`select_user`].
fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
    what: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt(format!("aggregated {what}")))
}

#[cfg(test)]
mod tests;
