//! The ephemeral store: bytes with a time to live, atomic take, counters and expiring sets.
//!
//! Sessions, one-time tokens and rate counters sit on this small surface so that the backend
//! (`database`, `memory`, and `redis` for several replicas) is a configuration choice. It knows
//! nothing about what the bytes mean.

mod database;
mod memory;
mod redis;
mod redis_source;
mod redis_topology;

#[cfg(test)]
mod conformance;

use std::time::Duration;

use async_trait::async_trait;

pub(crate) use self::database::DatabaseStore;
pub(crate) use self::memory::MemoryStore;
pub(crate) use self::redis::RedisStore;
pub(crate) use self::redis_source::{RedisConnection, RedisSource};
pub(crate) use self::redis_topology::{RedisSentinel, RedisTopology};
use super::StoreError;

/// Serializes a record for the store.
///
/// # Errors
/// The value does not serialize (a bug).
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// Reads a stored record; `what` names it in the error.
///
/// # Errors
/// The bytes are not such a record.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt(format!("{what}: {error}")))
}

/// A key-value store whose entries expire.
#[async_trait]
pub trait EphemeralStore: Send + Sync + std::fmt::Debug {
    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// The unexpired value under `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the unexpired value under `key` with `value` (for `ttl`) only if it is still
    /// `expected`, atomically; `false` if it changed or is gone. A read-modify-write through
    /// this never brings back a value deleted in between (a session ended while it was being
    /// touched) nor undoes another writer's change.
    async fn replace(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Removes and returns the unexpired value under `key`, atomically: of several concurrent
    /// takes, exactly one gets the value (single-use tokens rely on this).
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes the value or counter under `key`.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Adds one to the counter under `key` and returns the new count. A counter starts at 1
    /// with a lifetime of `window` and is not extended by later increments (fixed window).
    async fn incr(&self, key: &str, window: Duration) -> Result<u64, StoreError>;

    /// Adds `member` to the set under `key`, expiring after `ttl` (each member on its own).
    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Removes `member` from the set under `key`.
    async fn set_remove(&self, key: &str, member: &str) -> Result<(), StoreError>;

    /// The unexpired members of the set under `key`, in no particular order.
    async fn set_members(&self, key: &str) -> Result<Vec<String>, StoreError>;

    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Deletes expired entries (backends without native expiry call this periodically).
    async fn sweep(&self) -> Result<(), StoreError>;
}
