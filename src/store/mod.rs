//! Persistence: the SQL database (users, roles, settings) and the ephemeral store (sessions,
//! one-time tokens, counters). Nothing here knows about HTTP, cookies or headers.

pub(crate) mod api_keys;
pub(crate) mod ephemeral;
pub(crate) mod invites;
pub(crate) mod linked;
pub(crate) mod orgs;
pub(crate) mod revocations;
pub(crate) mod signing_keys;
pub(crate) mod sql;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tokens;
pub(crate) mod users;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached (connection refused, pool timeout, database locked, Redis
    /// down): the request may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A unique constraint refused the write.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A stored value could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other database error (a bug or a schema mismatch).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The schema is not what this build needs (a migration failed, or is pending).
    #[error("database schema: {0}")]
    Schema(String),
    /// A secret sealed in the database cannot be opened (the key is not configured).
    #[error(transparent)]
    Sealed(#[from] crate::crypto::sealed::SealError),
}

/// Store failures that were worth a retry (`portcullis_store_unavailable_total`), process-wide:
/// every store of every kind counts here as it classifies the error.
pub(crate) static UNAVAILABLE: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// How long the store work behind one request's identity (a cache miss) may take before the
/// stores count as unavailable. A stalled connection (a hung server, or a proxy that keeps the
/// connection open and silent) would otherwise hold the request for as long as TCP does, as
/// nothing else bounds a PostgreSQL statement.
pub(crate) const IDENTITY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// `work`, or [`StoreError::Unavailable`] when it takes longer than [`IDENTITY_DEADLINE`]. The
/// work is dropped then; a database connection dropped mid-statement is closed, not reused.
///
/// # Errors
/// What `work` fails with, or the deadline passes.
pub(crate) async fn within_deadline<T>(
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(IDENTITY_DEADLINE, work)
        .await
        .unwrap_or_else(|elapsed| Err(StoreError::unavailable(elapsed)))
}

impl StoreError {
    /// An unavailable store, counted.
    pub fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        UNAVAILABLE.inc();
        Self::Unavailable(Box::new(error))
    }

    /// Classifies a sqlx error, naming what a unique violation would duplicate.
    pub fn from_sqlx(error: sqlx::Error, what: &'static str) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(what),
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL connection (08…), insufficient resources (53…: too many
                // connections, out of memory or disk) and shutdown (57P…) classes; SQLite BUSY
                // (5) and LOCKED (6): all transient.
                if code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "5"
                    || code == "6"
                {
                    Self::unavailable(error)
                } else {
                    Self::Database(error)
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Self::unavailable(error),
            _ => Self::Database(error),
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        // Connection loss, timeouts, a server loading, failing over (or no Sentinel naming a
        // primary yet), resharding (MOVED, ASK: a cluster behind a single address), out of
        // memory, or an ACL that refuses a command: all answered 503 and worth a retry later
        // (or an operator's fix), never a 500.
        // Anything else (a wrong type under a key) is a bug or foreign data.
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.code() == Some("OOM")
            || refused_inside_a_script(&error)
            || matches!(
                error.kind(),
                redis::ErrorKind::MasterNameNotFoundBySentinel
                    | redis::ErrorKind::NoValidReplicasFoundBySentinel
            )
            || matches!(
                error.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading
                        | redis::ServerErrorKind::TryAgain
                        | redis::ServerErrorKind::MasterDown
                        | redis::ServerErrorKind::ReadOnly
                        | redis::ServerErrorKind::Moved
                        | redis::ServerErrorKind::Ask
                        | redis::ServerErrorKind::ClusterDown
                        | redis::ServerErrorKind::NoPerm
                )
            )
        {
            Self::unavailable(error)
        } else {
            Self::Corrupt(format!("redis: {error}"))
        }
    }
}

/// Whether a script failed because the ACL refused one of its commands: Redis reports that as
/// a plain `ERR`, not `NOPERM`, but it is the same operator's fix.
fn refused_inside_a_script(error: &redis::RedisError) -> bool {
    error.detail().is_some_and(|detail| {
        detail.contains("can't run this command") || detail.contains("has no permissions")
    })
}

/// Stored scopes that no longer parse are corrupt data.
impl From<crate::model::ScopeError> for StoreError {
    fn from(error: crate::model::ScopeError) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::from_sqlx(error, "record")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_unavailable_and_counted() {
        let before = UNAVAILABLE.get();
        assert!(matches!(
            StoreError::from_sqlx(sqlx::Error::PoolTimedOut, "x"),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from_sqlx(sqlx::Error::RowNotFound, "x"),
            StoreError::Database(_)
        ));
        // Other tests may count at the same time: at least this one.
        assert!(UNAVAILABLE.get() > before);
    }

    #[test]
    fn an_acl_refusal_inside_a_script_is_unavailable_not_a_bug() {
        let refused = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "The user executing the script can't run this command or subcommand script: 6163, \
             on @user_script:1."
                .to_owned(),
        ));
        assert!(matches!(StoreError::from(refused), StoreError::Unavailable(_)));
        let wrong_type = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "WRONGTYPE Operation against a key holding the wrong kind of value".to_owned(),
        ));
        assert!(matches!(StoreError::from(wrong_type), StoreError::Corrupt(_)));
    }
}
