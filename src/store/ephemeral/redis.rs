//! The `redis` backend: every replica shares sessions, one-time tokens and rate counters, and
//! Redis expires them itself. Keys carry a configurable prefix so that several deployments (or
//! tests) can share one Redis.
//!
//! The connection manager reconnects by itself; every command has a response timeout, so a
//! Redis outage turns into prompt `StoreError::Unavailable` answers rather than hung requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::RwLock;
use redis::aio::ConnectionManagerConfig;
use redis::{AsyncCommands, RedisResult, Script};

use super::EphemeralStore;
use super::redis_source::{RedisConnection, RedisSource};
use crate::clock::{Clock, duration_millis};
use crate::store::StoreError;

/// How long one command may take before the store counts as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Least time between two replacements of the connection.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// A fixed-window counter: the first increment starts the window.
const INCR_IN_WINDOW: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count";

/// Compare-and-set: KEYS[1] becomes ARGV[2] for ARGV[3] ms only if it still holds ARGV[1].
const REPLACE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// Sets whose members expire one by one: a sorted set scored by expiry time, itself kept no
/// longer than its longest-lived member.
const SET_ADD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local longest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
redis.call('PEXPIREAT', KEYS[1], longest)
return 1";

/// Ephemeral entries in Redis.
#[derive(Clone)]
pub(crate) struct RedisStore {
    /// Replaced when the primary moved: the server answers READONLY (a failover demoted it
    /// while its address still leads there), or, under Sentinel, the connection is lost.
    connection: Arc<RwLock<RedisConnection>>,
    source: RedisSource,
    reconnecting: Arc<AtomicBool>,
    /// When the connection was last replaced (ms since the store was made), so that a
    /// primary that stays down is asked for at most once per [`RECONNECT_INTERVAL`].
    last_reconnect: Arc<AtomicU64>,
    started: Instant,
    prefix: Arc<str>,
    clock: Arc<dyn Clock>,
    incr: Arc<Script>,
    set_add: Arc<Script>,
    replace: Arc<Script>,
}

impl RedisStore {
    /// Connects to the primary `source` names.
    ///
    /// # Errors
    /// Redis cannot be reached.
    pub(crate) async fn connect(
        source: RedisSource,
        prefix: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let connection = source.managed(config()).await?;
        Ok(Self {
            connection: Arc::new(RwLock::new(connection)),
            source,
            reconnecting: Arc::default(),
            last_reconnect: Arc::default(),
            started: Instant::now(),
            prefix: Arc::from(prefix),
            clock,
            incr: Arc::new(Script::new(INCR_IN_WINDOW)),
            set_add: Arc::new(Script::new(SET_ADD)),
            replace: Arc::new(Script::new(REPLACE)),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The shared connection.
    pub(crate) fn connection(&self) -> RedisConnection {
        self.connection.read().clone()
    }

    /// `result`, as a store error. The connection is replaced in the background when it may
    /// lead nowhere useful: on READONLY (this server was demoted by a failover), on a command
    /// that got no answer in time (a stalled connection stays open), and under Sentinel on a
    /// lost connection (the connection manager would keep dialling the old address).
    fn checked<T>(&self, result: RedisResult<T>) -> Result<T, StoreError> {
        result.map_err(|error| {
            let read_only =
                error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
            // A command that timed out leaves a connection that may never answer again (a
            // stalled peer or proxy keeps it open): the manager only replaces closed ones.
            let stalled = error.is_timeout();
            let lost = error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal();
            if read_only {
                self.reconnect("READONLY");
            } else if stalled {
                self.reconnect("no answer in time");
            } else if lost && self.source.follows_failovers() {
                self.reconnect("connection lost");
            }
            StoreError::from(error)
        })
    }

    /// Replaces the shared connection with one to the primary of now, in the background, unless
    /// that is under way or was done within [`RECONNECT_INTERVAL`].
    fn reconnect(&self, why: &'static str) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let interval = u64::try_from(RECONNECT_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_reconnect.load(Ordering::SeqCst);
        if (last != 0 && now.saturating_sub(last) < interval)
            || self.reconnecting.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.last_reconnect.store(now.max(1), Ordering::SeqCst);
        tracing::warn!(why, "Redis: replacing the shared connection");
        let (source, connection, reconnecting) =
            (self.source.clone(), Arc::clone(&self.connection), Arc::clone(&self.reconnecting));
        tokio::spawn(async move {
            match source.managed(config()).await {
                Ok(fresh) => *connection.write() = fresh,
                Err(error) => tracing::warn!(%error, "cannot reconnect to Redis"),
            }
            reconnecting.store(false, Ordering::SeqCst);
        });
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish()
    }
}

/// How the shared connection is made: every command with a response timeout, one retry.
fn config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
}

/// Milliseconds for Redis, at least 1 (0 would mean "no expiry" or an error).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(duration_millis(ttl)).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl EphemeralStore for RedisStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let options =
            redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(millis(ttl)));
        let () = self.checked(connection.set_options(self.key(key), value, options).await)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection();
        self.checked(connection.get(self.key(key)).await)
    }

    async fn replace(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let replaced: i64 = self.checked(
            self.replace
                .key(self.key(key))
                .arg(expected)
                .arg(value)
                .arg(millis(ttl))
                .invoke_async(&mut connection)
                .await,
        )?;
        Ok(replaced == 1)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // GETDEL is atomic: of several concurrent takers exactly one gets the value.
        let mut connection = self.connection();
        self.checked(connection.get_del(self.key(key)).await)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: u64 = self.checked(connection.del(self.key(key)).await)?;
        Ok(())
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<u64, StoreError> {
        let mut connection = self.connection();
        self.checked(
            self.incr.key(self.key(key)).arg(millis(window)).invoke_async(&mut connection).await,
        )
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let expires = self.clock.now().plus(ttl).as_millis();
        let _: i64 = self.checked(
            self.set_add
                .key(self.key(key))
                .arg(expires)
                .arg(member)
                .invoke_async(&mut connection)
                .await,
        )?;
        Ok(())
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: u64 = self.checked(connection.zrem(self.key(key), member).await)?;
        Ok(())
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection();
        let now = self.clock.now().as_millis();
        let key = self.key(key);
        let _: u64 = self.checked(connection.zrembyscore(&key, "-inf", now).await)?;
        self.checked(connection.zrangebyscore(&key, format!("({now}"), "+inf").await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let _: String = self.checked(redis::cmd("PING").query_async(&mut connection).await)?;
        Ok(())
    }

    async fn sweep(&self) -> Result<(), StoreError> {
        // Redis expires keys itself; set members are dropped when a set is read.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ephemeral::RedisTopology;

    #[test]
    fn connections_keep_alive_and_give_up_on_a_vanished_peer() {
        for url in ["redis://127.0.0.1:6379", "rediss://user:pw@cache.example:6380"] {
            let source = RedisSource::new(url, None, &RedisTopology::Single).unwrap();
            let RedisSource::Direct(client) = source else {
                panic!("one address is a direct source");
            };
            let tcp = client.get_connection_info().tcp_settings();
            assert!(tcp.keepalive().is_some() && tcp.nodelay(), "{url}");
            assert_eq!(tcp.user_timeout(), Some(Duration::from_secs(10)));
        }
    }
}
