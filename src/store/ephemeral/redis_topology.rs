//! How Redis is laid out ([`RedisTopology`]): the store's own connection settings, which the
//! configuration's `[storage]` section compiles into and [`super::RedisSource`] connects by.

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
