//! The revocation log in PostgreSQL: revocations appended in order, read by every replica from
//! its own position, kept [`RETENTION`]. Used when PostgreSQL carries the fan-out (no Redis).

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::StoreError;
use super::sql::Database;

/// How long revocations stay in the log: a replica whose listener was away longer empties its
/// cache instead of catching up.
pub(crate) const RETENTION: Duration = Duration::from_secs(3600);

/// How far back each read looks besides its position: ids are handed out when a revocation is
/// written, but one written a moment earlier can become visible after a later one (commit
/// order), so recent entries are read again and those already applied skipped.
pub(crate) const LOOKBACK: Duration = Duration::from_secs(10);

/// The database's clock in milliseconds, in SQL.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its position.
    pub id: i64,
    /// The revocation, in its wire form.
    pub revocation: String,
}

/// Appends `revocation` and rings `channel` (`NOTIFY`, delivered once the entry is visible).
///
/// # Errors
/// The database fails.
pub(crate) async fn append(
    db: &Database,
    channel: &str,
    revocation: &str,
) -> Result<(), StoreError> {
    let sql = format!(
        "WITH added AS (INSERT INTO revocation_log (revocation, created_at) \
         VALUES ($1, {NOW_MS}) RETURNING id) SELECT pg_notify($2, id::text) FROM added"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(revocation).bind(channel).execute(db.pool()).await?;
    Ok(())
}

/// The last position of the log (0 when it is empty), read on `connection`.
///
/// # Errors
/// The database fails.
pub(crate) async fn end<'c, E>(connection: E) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM revocation_log")
        .fetch_one(connection)
        .await?;
    row.try_get("id")
}

/// The entries after `position` (at most 10 000, in order) and, with `lookback`, also those
/// of the last [`LOOKBACK`] at or before it, read on `connection` (the listener's own, so that
/// reading also proves it alive).
///
/// # Errors
/// The database fails.
pub(crate) async fn after<'c, E>(
    connection: E,
    position: i64,
    lookback: bool,
) -> Result<Vec<Entry>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let window = if lookback { i64::try_from(LOOKBACK.as_millis()).unwrap_or(i64::MAX) } else { 0 };
    // Two ranges, so that a burst of entries already read cannot crowd out new ones.
    let sql = format!(
        "(SELECT id, revocation FROM revocation_log WHERE id > $1 ORDER BY id LIMIT 10000) \
         UNION ALL (SELECT id, revocation FROM revocation_log \
         WHERE $2 > 0 AND id <= $1 AND created_at > {NOW_MS} - $2) ORDER BY id"
    );
    let rows: Vec<PgRow> = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(position)
        .bind(window)
        .fetch_all(connection)
        .await?;
    rows.iter()
        .map(|row| Ok(Entry { id: row.try_get("id")?, revocation: row.try_get("revocation")? }))
        .collect()
}

/// Deletes entries older than [`RETENTION`] (called by the periodic sweep).
///
/// # Errors
/// The database fails.
pub(crate) async fn sweep(db: &Database) -> Result<(), StoreError> {
    let retention = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
    let sql = format!("DELETE FROM revocation_log WHERE created_at < {NOW_MS} - $1");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(retention).execute(db.pool()).await?;
    Ok(())
}
