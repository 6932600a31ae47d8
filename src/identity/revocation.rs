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

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cache::{IdentityCache, Revocation};
use crate::store::ephemeral::{RedisConnection, RedisSource};
use crate::store::revocations;
use crate::store::sql::Database;

/// Longest wait between reconnection attempts of the reader, and between retries of an append.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the reader proves its connection alive when nothing is revoked.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a heartbeat may take before the connection counts as dead.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries a Redis stream keeps (approximately): a replica further behind empties its cache.
const STREAM_LENGTH: u32 = 100_000;
/// Revocations waiting to be appended while the log is unreachable; beyond, the oldest are
/// dropped (other replicas then rely on the cache TTL for them).
const MAX_PENDING: usize = 100_000;
/// Where revocations travel.
#[derive(Debug, Clone)]
pub enum Channel {
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
pub struct Fanout {
    publisher: JoinHandle<()>,
    reader: JoinHandle<()>,
    stop: CancellationToken,
}

impl Fanout {
    /// Connects `cache` to `channel`: from now on its evictions are published, and published
    /// evictions are applied to it.
    pub fn start(channel: Channel, cache: &IdentityCache) -> Self {
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
    pub async fn close(self) {
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

impl Log {
    async fn append(&mut self, revocation: &Revocation) -> Result<(), String> {
        match self {
            Self::Redis(log) => {
                let RedisLog { source, stream, connection } = &mut **log;
                if connection.is_none() {
                    let connected = source.connect(HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT).await;
                    *connection = Some(connected.map_err(|error| error.to_string())?);
                }
                let Some(open) = connection else { return Err("not connected".into()) };
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
                    error.to_string()
                })
            }
            Self::Postgres { db, channel } => {
                revocations::append(db, channel, &revocation.encode())
                    .await
                    .map_err(|error| error.to_string())
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

/// A Redis stream entry id (`<milliseconds>-<sequence>`), ordered.
fn stream_id(text: &str) -> Option<(u64, u64)> {
    let (millis, sequence) = text.split_once('-')?;
    Some((millis.parse().ok()?, sequence.parse().ok()?))
}

/// Where a reader is in a Redis stream: the server instance it read from (its `run_id`) and
/// the last entry it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamPosition {
    server: String,
    entry: String,
}

/// Where a reader of `stream` starts on a new connection, and whether its cache can be kept:
/// after its position when every entry after it is still there (the same server instance, and
/// nothing trimmed), else at the end (and the cache must be emptied).
async fn resume_redis(
    connection: &mut RedisConnection,
    stream: &str,
    position: Option<&StreamPosition>,
) -> redis::RedisResult<(StreamPosition, bool)> {
    // On a cluster, the node that holds the stream.
    let info: String = connection.query_at_key(redis::cmd("INFO").arg("server"), stream).await?;
    // A restarted or failed-over server may have lost entries: a new run id.
    let server = info
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    // A server that does not say its run id (some proxies and managed services hide INFO
    // fields) cannot show it was not restarted: read from the end.
    if let Some(position) =
        position.filter(|position| !server.is_empty() && position.server == server)
        && nothing_trimmed_after(connection, stream, &position.entry).await?
    {
        return Ok((position.clone(), true));
    }
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await?;
    let entry = last.ids.first().map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone());
    Ok((StreamPosition { server, entry }, false))
}

/// Whether every entry of `stream` after `entry` is still there. Redis 7 says what trimming
/// deleted last (`max-deleted-entry-id`); before 7, an entry at or before ours that is still
/// there proves the same (trimming keeps the newest). A stream that does not exist never had
/// an entry, or lost them all: complete only if we had read none.
async fn nothing_trimmed_after(
    connection: &mut RedisConnection,
    stream: &str,
    entry: &str,
) -> redis::RedisResult<bool> {
    let info = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async::<std::collections::HashMap<String, redis::Value>>(connection)
        .await;
    let info = match info {
        Ok(info) => info,
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
        {
            return Ok(entry == "0-0");
        }
        Err(error) => return Err(error),
    };
    let text = |field: &str| {
        info.get(field).and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
    };
    if let Some(deleted) = text("max-deleted-entry-id") {
        return Ok(stream_id(&deleted) <= stream_id(entry));
    }
    let first = info.get("first-entry").and_then(|value| match value {
        redis::Value::Array(fields) => {
            fields.first().and_then(|id| redis::from_redis_value_ref::<String>(id).ok())
        }
        _ => None,
    });
    Ok(first.is_some_and(|first| stream_id(&first) <= stream_id(entry)))
}

async fn read_redis(
    source: RedisSource,
    stream: String,
    cache: IdentityCache,
    stop: CancellationToken,
) {
    let mut position: Option<StreamPosition> = None;
    let mut backoff = Backoff::default();
    let block = u64::try_from(HEARTBEAT.as_millis()).unwrap_or(2000);
    loop {
        let connected = async {
            let mut connection =
                source.connect(HEARTBEAT_TIMEOUT, HEARTBEAT + HEARTBEAT_TIMEOUT).await?;
            // Named, so that `CLIENT LIST` shows what the connection is (a cluster's nodes
            // are not told: the name would go to a random one).
            if !connection.is_cluster() {
                let named = redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(READER_NAME)
                    .query_async::<()>(&mut connection)
                    .await;
                if let Err(error) = named {
                    tracing::debug!(%error, "cannot name the revocation reader's connection");
                }
            }
            let start = resume_redis(&mut connection, &stream, position.as_ref()).await?;
            Ok::<_, redis::RedisError>((connection, start))
        };
        let connected = tokio::select! {
            result = connected => result,
            () = stop.cancelled() => return,
        };
        match connected {
            Ok((mut connection, (start, complete))) => {
                backoff.connected(&cache, "Redis", complete);
                let mut at = start;
                loop {
                    let from = at.entry.clone();
                    let mut command = redis::cmd("XREAD");
                    command
                        .arg("COUNT")
                        .arg(1000)
                        .arg("BLOCK")
                        .arg(block)
                        .arg("STREAMS")
                        .arg(&stream)
                        .arg(&from);
                    let read = command.query_async::<Option<StreamReadReply>>(&mut connection);
                    let read = tokio::select! {
                        read = read => read,
                        () = stop.cancelled() => return,
                    };
                    match read {
                        Ok(reply) => {
                            for entry in reply
                                .into_iter()
                                .flat_map(|reply| reply.keys)
                                .flat_map(|key| key.ids)
                            {
                                if let Some(text) = entry.get::<String>("r") {
                                    apply(&cache, &text);
                                }
                                at.entry = entry.id;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "lost the Redis revocation stream; reconnecting");
                            position = Some(at);
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the Redis revocation stream"),
        }
        if backoff.wait(&stop).await.is_err() {
            return;
        }
    }
}

/// Ids applied within the lookback of the PostgreSQL log (it reads recent entries again).
#[derive(Default)]
struct Applied {
    ids: HashSet<i64>,
    order: VecDeque<(Instant, i64)>,
}

impl Applied {
    /// Whether `id` is new (and now remembered).
    fn first_time(&mut self, id: i64) -> bool {
        let now = Instant::now();
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) <= revocations::LOOKBACK * 2 {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
        let new = self.ids.insert(id);
        if new {
            self.order.push_back((now, id));
        }
        new
    }
}

async fn read_postgres(
    url: String,
    channel: String,
    cache: IdentityCache,
    stop: CancellationToken,
) {
    let mut position: Option<i64> = None;
    let mut last_read = Instant::now();
    let mut applied = Applied::default();
    let mut backoff = Backoff::default();
    loop {
        let connected = async {
            // Named, so that `pg_stat_activity` shows what the connection is.
            let options = url.parse::<PgConnectOptions>()?.application_name(READER_NAME);
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(options)
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            let end = revocations::end(&mut listener).await?;
            Ok::<_, sqlx::Error>((listener, end))
        };
        let connected = tokio::select! {
            result = connected => result,
            () = stop.cancelled() => return,
        };
        match connected {
            Ok((mut listener, end)) => {
                // Away longer than the log keeps entries, some may be gone; a log that ends
                // before our position was restored or failed over, and may lack some.
                let complete = position.is_some_and(|at| end >= at)
                    && last_read.elapsed() < revocations::RETENTION - revocations::LOOKBACK;
                if !complete {
                    position = Some(end);
                }
                backoff.connected(&cache, "PostgreSQL", complete);
                // What was appended while we were away rang no bell here: read it at once.
                let mut catch_up = true;
                loop {
                    // The doorbell, or the heartbeat: either way, read the log. The bell reads
                    // what is new (once for every ring already queued); the heartbeat (and the
                    // catch-up) also reads the last seconds again, for entries that became
                    // visible after later ones (commit order).
                    let lookback = if std::mem::take(&mut catch_up) {
                        true
                    } else {
                        let rung = tokio::select! {
                            rung = tokio::time::timeout(HEARTBEAT, listener.try_recv()) => rung,
                            () = stop.cancelled() => return,
                        };
                        match rung {
                            Ok(Ok(Some(_))) => {
                                while listener.next_buffered().is_some() {}
                                false
                            }
                            Ok(Ok(None) | Err(_)) => break,
                            Err(_heartbeat) => true,
                        }
                    };
                    let from = position.unwrap_or(0);
                    let read = tokio::time::timeout(
                        HEARTBEAT_TIMEOUT,
                        revocations::after(&mut listener, from, lookback),
                    )
                    .await;
                    match read {
                        Ok(Ok(entries)) => {
                            last_read = Instant::now();
                            for entry in entries {
                                if applied.first_time(entry.id) {
                                    apply(&cache, &entry.revocation);
                                }
                                position = Some(position.map_or(entry.id, |at| at.max(entry.id)));
                            }
                        }
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
                tracing::warn!("lost the PostgreSQL revocation log; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "cannot read the PostgreSQL revocation log"),
        }
        if backoff.wait(&stop).await.is_err() {
            return;
        }
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
