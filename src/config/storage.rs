//! `[storage]`, compiled: the database, and the ephemeral store with its Redis layout (the
//! store's own [`RedisTopology`]).

use std::time::Duration;

use crate::store::ephemeral::RedisTopology;

/// Which ephemeral store backs sessions and one-time tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EphemeralKind {
    /// Tables in the SQL database.
    Database,
    /// Process memory (lost on restart; one replica only).
    Memory,
    /// Redis at this URL, shared by every replica.
    Redis {
        /// `redis://` or `rediss://` URL (may hold a user and password).
        url: String,
        /// CA certificates (PEM) to trust instead of the system's, for `rediss://`.
        ca_pem: Option<Vec<u8>>,
        /// One server, a Sentinel-watched set, or a cluster.
        topology: RedisTopology,
    },
}

/// `[storage]`, compiled.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// The same database without a pooler in between, for `LISTEN` and migrations.
    pub direct_url: String,
    /// Whether migrations run at start (else they must have been run by `portcullis migrate`).
    pub migrate_on_start: bool,
    /// The ephemeral backend.
    pub ephemeral: EphemeralKind,
    /// Prefix of Redis keys and of the revocation channel.
    pub redis_prefix: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long startup waits for the stores.
    pub startup_wait: Duration,
    /// Seals the secrets kept in the database.
    pub sealer: crate::crypto::sealed::Sealer,
}
