//! Revocation fan-out: a logout, key revocation or disabled user on one replica evicts the
//! identity from every replica's cache within about a second.
//!
//! Revocations are a log, not a broadcast: a Redis stream when Redis is the ephemeral store,
//! else a PostgreSQL table with `NOTIFY` as the doorbell; a single SQLite replica needs
//! neither. Each replica reads the log from its own position and evicts what it reads (its own
//! entries included, which is harmless). Entries are appended only after the store write they
//! announce, and appending is retried until it succeeds.
//!
//! The reader proves its connection alive every [`HEARTBEAT`]: a blocking stream read that
//! returns empty, or a poll of the table, each with a deadline, so a dead or half-open
//! connection is noticed within a few seconds. A reader that reconnects resumes from its
//! position: nothing is missed and nothing is flushed. Only when the entries after its
//! position may be gone (trimmed, swept, or Redis lost its data) does the replica empty its
//! cache. Its first connection empties it too, since identities may have been cached before it
//! listened.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod postgres;
mod redis_stream;

use self::postgres::read_postgres;
use self::redis_stream::read_redis;
use super::cache::{IdentityCache, Revocation};
use crate::store::ephemeral::{RedisConnection, RedisSource};
use crate::store::sql::Database;
use crate::store::{StoreError, revocations};

/// Longest wait between reconnection attempts of the reader, and between retries of an append.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the reader proves its connection alive when nothing is revoked.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a heartbeat may take before the connection counts as dead.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries a Redis stream keeps (approximately): a replica further behind empties its cache.
const STREAM_LENGTH: u32 = 100_000;
/// Revocations waiting to be appended while the log is unreachable; beyond, the oldest are
/// dropped (other replicas then rely on the cache TTL for them).
const MAX_PENDING: usize = 100_000;
/// Where revocations travel.
#[derive(Debug, Clone)]
pub(crate) enum Channel {
    /// A Redis stream.
    Redis {
        /// Where the Redis primary in use is.
        source: RedisSource,
        /// The stream's key.
        stream: String,
    },
    /// The PostgreSQL log table, with `NOTIFY` on a channel as the doorbell.
    Postgres {
        /// The database (appending).
        db: Database,
        /// Its direct URL (the reader's own connection, which `LISTEN`s).
        url: String,
        /// The doorbell's channel name.
        channel: String,
    },
}

/// The running fan-out: a publisher appending the cache's evictions and a reader applying
/// everyone's.
#[derive(Debug)]
pub(crate) struct Fanout {
    publisher: JoinHandle<()>,
    reader: JoinHandle<()>,
    stop: CancellationToken,
}

impl Fanout {
    /// Connects `cache` to `channel`: from now on its evictions are published, and published
    /// evictions are applied to it.
    pub(crate) fn start(channel: Channel, cache: &IdentityCache) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let log = Log::from(&channel);
        let publisher = tokio::spawn(publish(log, receiver, stop.clone()));
        let reader = match channel {
            Channel::Redis { source, stream } => {
                tokio::spawn(read_redis(source, stream, cache.clone(), stop.clone()))
            }
            Channel::Postgres { url, channel, .. } => {
                tokio::spawn(read_postgres(url, channel, cache.clone(), stop.clone()))
            }
        };
        cache.publish_to(sender);
        Self { publisher, reader, stop }
    }

    /// Publishes what is still queued, then stops (the CLI calls this before exiting, so its
    /// revocations reach the running servers).
    pub(crate) async fn close(self) {
        self.stop.cancel();
        let _ = self.publisher.await;
        self.reader.abort();
    }
}

/// Where the publisher appends.
enum Log {
    Redis(Box<RedisLog>),
    Postgres { db: Database, channel: String },
}

/// The name of each replica's connection that reads the revocation log (Redis `CLIENT
/// SETNAME`, PostgreSQL `application_name`).
pub const READER_NAME: &str = "portcullis-revocation-reader";

/// The publisher's end of a Redis stream.
struct RedisLog {
    source: RedisSource,
    stream: String,
    connection: Option<RedisConnection>,
}

impl From<&Channel> for Log {
    fn from(channel: &Channel) -> Self {
        match channel {
            Channel::Redis { source, stream } => Self::Redis(Box::new(RedisLog {
                source: source.clone(),
                stream: stream.clone(),
                connection: None,
            })),
            Channel::Postgres { db, channel, .. } => {
                Self::Postgres { db: db.clone(), channel: channel.clone() }
            }
        }
    }
}

/// Why a revocation was not appended to the log (it is retried).
#[derive(Debug, thiserror::Error)]
enum AppendError {
    /// Redis refused, or cannot be reached.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL refused, or cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Log {
    async fn append(&mut self, revocation: &Revocation) -> Result<(), AppendError> {
        match self {
            Self::Redis(log) => {
                let RedisLog { source, stream, connection } = &mut **log;
                let open = match connection {
                    Some(open) => open,
                    None => connection
                        .insert(source.connect(HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT).await?),
                };
                let added = redis::cmd("XADD")
                    .arg(&*stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(STREAM_LENGTH)
                    .arg("*")
                    .arg("r")
                    .arg(revocation.encode())
                    .query_async::<String>(open)
                    .await;
                added.map(drop).map_err(|error| {
                    *connection = None;
                    AppendError::Redis(error)
                })
            }
            Self::Postgres { db, channel } => {
                Ok(revocations::append(db, channel, &revocation.encode()).await?)
            }
        }
    }
}

/// Appends until stopped, retrying what fails; after `stop`, one last try for what is queued.
async fn publish(
    mut log: Log,
    mut queue: mpsc::UnboundedReceiver<Revocation>,
    stop: CancellationToken,
) {
    let mut pending: VecDeque<Revocation> = VecDeque::new();
    let mut backoff = Backoff::default();
    loop {
        if pending.is_empty() {
            match next(&mut queue, &stop).await {
                Some(revocation) => pending.push_back(revocation),
                None => return,
            }
        }
        while let Ok(revocation) = queue.try_recv() {
            if pending.len() == MAX_PENDING {
                pending.pop_front();
                tracing::warn!("too many revocations wait for the log; dropped the oldest");
            }
            pending.push_back(revocation);
        }
        while let Some(revocation) = pending.front() {
            match log.append(revocation).await {
                Ok(()) => {
                    pending.pop_front();
                    backoff.reset();
                }
                Err(error) => {
                    tracing::warn!(%error, waiting = pending.len(), "cannot append a revocation; retrying");
                    break;
                }
            }
        }
        if !pending.is_empty() && (stop.is_cancelled() || backoff.wait(&stop).await.is_err()) {
            tracing::warn!(lost = pending.len(), "stopping with revocations not appended");
            return;
        }
    }
}

/// The next queued revocation; after `stop`, only what is already queued.
async fn next(
    queue: &mut mpsc::UnboundedReceiver<Revocation>,
    stop: &CancellationToken,
) -> Option<Revocation> {
    if stop.is_cancelled() {
        return queue.try_recv().ok();
    }
    tokio::select! {
        revocation = queue.recv() => revocation,
        () = stop.cancelled() => queue.try_recv().ok(),
    }
}

fn apply(cache: &IdentityCache, text: &str) {
    match Revocation::decode(text) {
        Some(revocation) => cache.apply(revocation),
        None => tracing::debug!("ignored a malformed revocation message"),
    }
}

/// Reconnection pacing, and emptying the cache when revocations may have been missed.
#[derive(Default)]
struct Backoff {
    delay: Duration,
    was_connected: bool,
}

impl Backoff {
    /// A reader connected: empties the cache unless it resumed with every revocation since its
    /// position still in the log (`complete`). The first connection always empties it.
    fn connected(&mut self, cache: &IdentityCache, what: &str, complete: bool) {
        if !complete || !self.was_connected {
            cache.clear();
            if self.was_connected {
                tracing::info!(
                    "{what} revocation log was read from its end; emptied the identity cache"
                );
            }
        } else {
            tracing::info!("{what} revocation log is back; caught up from where it was");
        }
        self.was_connected = true;
        self.reset();
    }

    fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// Waits before the next attempt; `Err` when stopped meanwhile.
    async fn wait(&mut self, stop: &CancellationToken) -> Result<(), ()> {
        self.delay = (self.delay * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(self.delay) => Ok(()),
            () = stop.cancelled() => Err(()),
        }
    }
}

#[cfg(test)]
mod tests;
