//! The `signing_keys` table: the private keys that sign tokens and assertions, sealed under
//! `storage.secrets_key` when one is set. This file knows rows and sealing, not keys:
//! `crypto::signing` turns the PKCS#8 text into key pairs.

use sqlx::Row;

use super::StoreError;
use super::sql::Database;
use crate::clock::Timestamp;

/// One row, its private key unsealed (base64 of the PKCS#8 document).
#[derive(Debug)]
pub(crate) struct StoredKey {
    /// Key id.
    pub kid: String,
    /// The JWT `alg` it signs with.
    pub algorithm: String,
    /// The private key, base64 PKCS#8.
    pub private_key: String,
    /// When it stopped signing (it still verifies for a while).
    pub retired_at: Option<Timestamp>,
}

/// A row without its private key, for listing.
#[derive(Debug)]
pub(crate) struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// The JWT `alg` it signs with.
    pub algorithm: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stopped signing.
    pub retired_at: Option<Timestamp>,
}

/// The signing-key table.
#[derive(Debug, Clone)]
pub(crate) struct SigningKeyStore {
    db: Database,
}

impl SigningKeyStore {
    /// The table in `db`.
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }

    /// Every key, oldest first, unsealed. A key written plain (or sealed under a previous
    /// secrets key) is sealed again under the current one as it is read.
    ///
    /// # Errors
    /// The database fails, or a key cannot be unsealed.
    pub(crate) async fn load(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_key, created_at, retired_at FROM signing_keys \
             ORDER BY created_at, kid",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let stored: String = row.try_get("private_key")?;
            let purpose = key_purpose(&kid);
            let opened = self.db.sealer().open(&purpose, &stored)?;
            if opened.reseal {
                sqlx::query(
                    "UPDATE signing_keys SET private_key = $2 WHERE kid = $1 AND private_key = $3",
                )
                .bind(&kid)
                .bind(self.db.sealer().seal(&purpose, &opened.text)?)
                .bind(&stored)
                .execute(self.db.pool())
                .await?;
            }
            keys.push(StoredKey {
                algorithm: row.try_get("algorithm")?,
                private_key: opened.text,
                retired_at: row
                    .try_get::<Option<i64>, _>("retired_at")?
                    .map(Timestamp::from_millis),
                kid,
            });
        }
        Ok(keys)
    }

    /// Every key without its private part, oldest first (`portcullis keys list`).
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, algorithm, created_at, retired_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    kid: row.try_get("kid")?,
                    algorithm: row.try_get("algorithm")?,
                    created_at: Timestamp::from_millis(row.try_get("created_at")?),
                    retired_at: row
                        .try_get::<Option<i64>, _>("retired_at")?
                        .map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    /// Makes `kid` the current key: deletes keys retired before `forget_before`, retires the
    /// current ones at `now`, and stores the new one (sealed).
    ///
    /// # Errors
    /// The database fails.
    pub(crate) async fn rotate_to(
        &self,
        kid: &str,
        algorithm: &str,
        private_key: &str,
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(forget_before.as_millis())
            .execute(self.db.pool())
            .await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now.as_millis())
            .execute(self.db.pool())
            .await?;
        let sealed = self.db.sealer().seal(&key_purpose(kid), private_key)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(kid)
        .bind(algorithm)
        .bind(sealed)
        .bind(now.as_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

/// What a signing key's sealed row is bound to.
fn key_purpose(kid: &str) -> String {
    format!("signing_key:{kid}")
}
