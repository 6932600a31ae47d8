//! Revocation fan-out: a logout, key revocation or disabled user on one replica evicts the
//! identity from every replica's cache within about a second.
//!
//! Evictions are published on Redis pub/sub when Redis is the ephemeral store, else on
//! PostgreSQL `LISTEN`/`NOTIFY` when PostgreSQL is the database; a single SQLite replica needs
//! neither. Every replica listens and evicts what it hears (its own messages included, which is
//! harmless). If the listening connection drops, the replica reconnects with back-off and then
//! empties its cache, since it may have missed revocations meanwhile; until it is back, the
//! cache TTL bounds how stale an identity can be.

use std::time::Duration;

use futures_util::StreamExt;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::cache::{CredentialHash, IdentityCache};
use crate::crypto;
use crate::store::sql::Database;

/// Longest wait between reconnection attempts of the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One eviction, as sent between replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// One credential (a session cookie, an API key).
    Credential(CredentialHash),
    /// Every credential of a user.
    User(Uuid),
    /// Every credential of a session or token family.
    Session(Uuid),
}

impl Revocation {
    /// The wire form: `c:<hex>`, `u:<uuid>` or `s:<uuid>`.
    pub fn encode(&self) -> String {
        match self {
            Self::Credential(hash) => format!("c:{}", crypto::hex(hash)),
            Self::User(id) => format!("u:{id}"),
            Self::Session(id) => format!("s:{id}"),
        }
    }

    /// Parses the wire form; anything else is `None` (and ignored).
    pub fn decode(text: &str) -> Option<Self> {
        let (kind, value) = text.split_once(':')?;
        match kind {
            "c" => crypto::unhex32(value).map(Self::Credential),
            "u" => Uuid::parse_str(value).ok().map(Self::User),
            "s" => Uuid::parse_str(value).ok().map(Self::Session),
            _ => None,
        }
    }
}

/// Where revocations travel.
#[derive(Debug, Clone)]
pub enum Channel {
    /// Redis pub/sub.
    Redis {
        /// A client for the Redis in use.
        client: redis::Client,
        /// Channel name.
        channel: String,
    },
    /// PostgreSQL `NOTIFY` on the database, `LISTEN` on a dedicated connection.
    Postgres {
        /// The database (publishing).
        db: Database,
        /// Its URL (the listener's own connection).
        url: String,
        /// Channel name.
        channel: String,
    },
}

/// The running fan-out: a publisher draining the cache's evictions and a listener applying
/// everyone's.
#[derive(Debug)]
pub struct Fanout {
    publisher: JoinHandle<()>,
    listener: JoinHandle<()>,
    stop: CancellationToken,
}

impl Fanout {
    /// Connects `cache` to `channel`: from now on its evictions are published, and published
    /// evictions are applied to it.
    ///
    pub fn start(channel: Channel, cache: &IdentityCache) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let (publisher, listener) = match channel {
            Channel::Redis { client, channel } => (
                tokio::spawn(publish_redis(
                    client.clone(),
                    channel.clone(),
                    receiver,
                    stop.clone(),
                )),
                tokio::spawn(listen_redis(client, channel, cache.clone(), stop.clone())),
            ),
            Channel::Postgres { db, url, channel } => (
                tokio::spawn(publish_postgres(db, channel.clone(), receiver, stop.clone())),
                tokio::spawn(listen_postgres(url, channel, cache.clone(), stop.clone())),
            ),
        };
        cache.publish_to(sender);
        Self { publisher, listener, stop }
    }

    /// Publishes what is still queued, then stops (the CLI calls this before exiting, so its
    /// revocations reach the running servers).
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.publisher.await;
        self.listener.abort();
    }
}

/// Publishes until stopped, then drains the queue.
async fn publish_redis(
    client: redis::Client,
    channel: String,
    mut queue: mpsc::UnboundedReceiver<Revocation>,
    stop: CancellationToken,
) {
    let mut connection = None;
    while let Some(revocation) = next(&mut queue, &stop).await {
        if connection.is_none() {
            connection = client.get_connection_manager().await.ok();
        }
        let sent = match &mut connection {
            Some(connection) => redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(revocation.encode())
                .query_async::<i64>(connection)
                .await
                .map(drop),
            None => Err(redis::RedisError::from((redis::ErrorKind::Io, "not connected"))),
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot publish a revocation; other replicas rely on the cache TTL");
        }
    }
}

async fn publish_postgres(
    db: Database,
    channel: String,
    mut queue: mpsc::UnboundedReceiver<Revocation>,
    stop: CancellationToken,
) {
    while let Some(revocation) = next(&mut queue, &stop).await {
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&channel)
            .bind(revocation.encode())
            .execute(db.pool())
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot publish a revocation; other replicas rely on the cache TTL");
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

async fn listen_redis(
    client: redis::Client,
    channel: String,
    cache: IdentityCache,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            result = subscribed => result,
            () = stop.cancelled() => return,
        };
        match pubsub {
            Ok(mut pubsub) => {
                backoff.connected(&cache, "Redis");
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        () = stop.cancelled() => return,
                    };
                    let Some(message) = message else { break };
                    if let Ok(text) = message.get_payload::<String>() {
                        apply(&cache, &text);
                    }
                }
                tracing::warn!("lost the Redis revocation channel; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "cannot subscribe to Redis revocations"),
        }
        if backoff.wait(&stop).await.is_err() {
            return;
        }
    }
}

async fn listen_postgres(
    url: String,
    channel: String,
    cache: IdentityCache,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let listening = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let listener = tokio::select! {
            result = listening => result,
            () = stop.cancelled() => return,
        };
        match listener {
            Ok(mut listener) => {
                backoff.connected(&cache, "PostgreSQL");
                loop {
                    let notification = tokio::select! {
                        notification = listener.try_recv() => notification,
                        () = stop.cancelled() => return,
                    };
                    match notification {
                        Ok(Some(notification)) => apply(&cache, notification.payload()),
                        // The connection dropped: start over, so that the cache is emptied.
                        Ok(None) | Err(_) => break,
                    }
                }
                tracing::warn!("lost the PostgreSQL revocation channel; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "cannot listen for PostgreSQL revocations"),
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

/// Reconnection pacing, and emptying the cache after a gap.
#[derive(Default)]
struct Backoff {
    delay: Duration,
    was_connected: bool,
}

impl Backoff {
    fn connected(&mut self, cache: &IdentityCache, what: &str) {
        // Revocations published while we were not listening were missed: those while we were
        // away and, on the first connection, those since the server started serving (it may
        // have cached identities already).
        cache.clear();
        if self.was_connected {
            tracing::info!("{what} revocation channel is back; emptied the identity cache");
        }
        self.was_connected = true;
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_of_the_channel_empties_the_cache_even_the_first() {
        let clock: std::sync::Arc<dyn crate::clock::Clock> =
            std::sync::Arc::new(crate::clock::ManualClock::new());
        let cache = IdentityCache::new(Duration::from_secs(30), 10, clock);
        let mut backoff = Backoff::default();
        for _ in 0..2 {
            let cached = cache.get_or_load([3; 32], async { Ok::<_, ()>(None) }).await;
            assert!(cached.unwrap().is_none() && cache.holds(&[3; 32]));
            backoff.connected(&cache, "test");
            assert!(!cache.holds(&[3; 32]), "cached before the channel listened");
        }
    }

    #[test]
    fn revocations_round_trip_and_garbage_is_ignored() {
        for revocation in [
            Revocation::Credential([7; 32]),
            Revocation::User(Uuid::now_v7()),
            Revocation::Session(Uuid::now_v7()),
        ] {
            assert_eq!(Revocation::decode(&revocation.encode()), Some(revocation));
        }
        for garbage in ["", "c:", "c:zz", "u:not-a-uuid", "x:1", "no colon"] {
            assert_eq!(Revocation::decode(garbage), None, "{garbage}");
        }
    }
}
