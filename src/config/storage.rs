//! `[storage]`, compiled: the database, the ephemeral store and how Redis is laid out.

use std::time::Duration;

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

/// How Redis is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server at `url` (or an address that follows the primary).
    Single,
    /// The primary the Sentinels name.
    Sentinel(RedisSentinel),
    /// A Redis Cluster, found from these seed nodes (host, port).
    Cluster(Vec<(String, u16)>),
}

/// Redis Sentinel: which master set, and the Sentinels to ask where its primary is.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSentinel {
    /// The master set's name (`sentinel monitor <name> …`).
    pub master: String,
    /// The Sentinels' hosts and ports.
    pub nodes: Vec<(String, u16)>,
    /// The Sentinels' password, if any.
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("master", &self.master)
            .field("nodes", &self.nodes)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish()
    }
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
