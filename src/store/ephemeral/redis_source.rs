//! Where Redis is: one address; the primary that Redis Sentinel names, asked again on every
//! (re)connection so that a failover is followed without a restart; or a Redis Cluster, whose
//! client follows slots (MOVED, ASK) and failovers itself.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture,
    RedisResult, TlsCertificates, TlsMode, Value,
};

use super::RedisTopology;
use crate::store::StoreError;

/// How long asking the Sentinels for the primary (and checking it) may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(4);
/// Connecting to a cluster node may take this long (as to one server).
const CONNECT_TIMEOUT_CLUSTER: Duration = Duration::from_secs(2);
/// A command on a cluster node may take this long (as on one server).
const RESPONSE_TIMEOUT_CLUSTER: Duration = Duration::from_secs(2);

/// Where connections to the Redis primary go.
#[derive(Clone)]
pub(crate) enum RedisSource {
    /// One address (a server, a proxy, or a name that follows the primary).
    Direct(Box<redis::Client>),
    /// Whichever primary the Sentinels name for a master set, asked on every connection.
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(Box<ClusterClient>),
}

/// A connection to wherever [`RedisSource`] leads: commands go through it alike.
#[derive(Clone)]
pub(crate) enum RedisConnection {
    /// One connection to one server.
    Multiplexed(MultiplexedConnection),
    /// One server, reconnecting by itself.
    Managed(ConnectionManager),
    /// Connections to every node of a cluster, each command routed by its key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Multiplexed(connection) => connection.req_packed_command(cmd),
            Self::Managed(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Multiplexed(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Self::Managed(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Multiplexed(connection) => connection.get_db(),
            Self::Managed(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl RedisConnection {
    /// Whether commands are routed across a cluster (so a command about no key, such as
    /// `INFO`, must say which node it is for).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// `command`, sent to the primary that holds `key` (the node itself, off a cluster).
    ///
    /// # Errors
    /// Redis fails.
    pub(crate) async fn query_at_key<T: redis::FromRedisValue>(
        &mut self,
        command: &Cmd,
        key: &str,
    ) -> RedisResult<T> {
        let Self::Cluster(connection) = self else {
            return command.query_async(self).await;
        };
        let slot: u16 =
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(connection).await?;
        let route =
            redis::cluster_routing::Route::new(slot, redis::cluster_routing::SlotAddr::Master);
        let routing = redis::cluster_routing::RoutingInfo::SingleNode(
            redis::cluster_routing::SingleNodeRoutingInfo::SpecificNode(route),
        );
        let value = connection.route_command(command.clone(), routing).await?;
        redis::FromRedisValue::from_redis_value(value).map_err(Into::into)
    }
}

impl RedisSource {
    /// A source for `url` (`redis://`, or `rediss://` for TLS through rustls; a user, password
    /// and database in the URL), trusting `ca_pem` for TLS when given, else the system's roots.
    /// Under Sentinel the URL's host and port are not used: the Sentinels name the primary, and
    /// the URL says how to speak to it; with a cluster, likewise for its nodes.
    ///
    /// # Errors
    /// The URL or a Sentinel address is invalid.
    pub(crate) fn new(
        url: &str,
        ca_pem: Option<&[u8]>,
        topology: &RedisTopology,
    ) -> Result<Self, StoreError> {
        let info = url.into_connection_info()?.set_tcp_settings(tcp_settings());
        let certificates =
            || TlsCertificates { client_tls: None, root_cert: ca_pem.map(<[u8]>::to_vec) };
        let sentinel = match topology {
            RedisTopology::Single => {
                let client = match ca_pem {
                    Some(_) => redis::Client::build_with_tls(info, certificates())?,
                    None => redis::Client::open(info)?,
                };
                return Ok(Self::Direct(Box::new(client)));
            }
            RedisTopology::Cluster(nodes) => return Self::cluster(&info, ca_pem, nodes),
            RedisTopology::Sentinel(sentinel) => sentinel,
        };
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let nodes = addresses(&sentinel.nodes, tls);
        let settings = info.redis_settings();
        let mut builder =
            SentinelClientBuilder::new(nodes, &sentinel.master, SentinelServerType::Master)?
                .set_client_to_redis_db(settings.db())
                .set_client_to_redis_tcp_settings(tcp_settings())
                .set_client_to_sentinel_tcp_settings(tcp_settings());
        if let Some(username) = settings.username() {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = &sentinel.password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if ca_pem.is_some() {
                builder = builder
                    .set_client_to_redis_certificates(certificates())
                    .set_client_to_sentinel_certificates(certificates());
            }
        }
        Ok(Self::Sentinel(Arc::new(tokio::sync::Mutex::new(builder.build()?))))
    }

    /// A cluster client seeded with `nodes`, speaking as `info` says (TLS, user, password).
    fn cluster(
        info: &redis::ConnectionInfo,
        ca_pem: Option<&[u8]>,
        nodes: &[(String, u16)],
    ) -> Result<Self, StoreError> {
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let seeds = addresses(nodes, tls);
        let settings = info.redis_settings();
        let mut builder = ClusterClientBuilder::new(seeds).tcp_settings(tcp_settings());
        if let Some(username) = settings.username() {
            builder = builder.username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder.password(password);
        }
        if tls {
            builder = builder.tls(TlsMode::Secure);
            if let Some(pem) = ca_pem {
                let certificates =
                    TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) };
                builder = builder.certs(certificates);
            }
        }
        Ok(Self::Cluster(Box::new(builder.build()?)))
    }

    /// A client for the primary as of now (not for a cluster, which has no one primary).
    ///
    /// # Errors
    /// No Sentinel answers, or none names a reachable primary, within a few seconds.
    async fn client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Direct(client) => Ok((**client).clone()),
            Self::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                tokio::time::timeout(RESOLVE_TIMEOUT, sentinel.async_get_client())
                    .await
                    .unwrap_or_else(|_| {
                        Err((redis::ErrorKind::Io, "no Sentinel named a primary in time").into())
                    })
            }
            Self::Cluster(_) => {
                Err((redis::ErrorKind::InvalidClientConfig, "a cluster has no one primary").into())
            }
        }
    }

    /// A new connection of its own, with these timeouts.
    ///
    /// # Errors
    /// As [`Self::client`], or Redis cannot be reached.
    pub(crate) async fn connect(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> RedisResult<RedisConnection> {
        if let Self::Cluster(cluster) = self {
            let config = ClusterConfig::new()
                .set_connection_timeout(connect_timeout)
                .set_response_timeout(response_timeout);
            return Ok(RedisConnection::Cluster(
                cluster.get_async_connection_with_config(config).await?,
            ));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let client = self.client().await?;
        Ok(RedisConnection::Multiplexed(
            client.get_multiplexed_async_connection_with_config(&config).await?,
        ))
    }

    /// A shared connection that reconnects by itself, with these settings (a cluster's
    /// connection does so on its own).
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub(crate) async fn managed(
        &self,
        config: ConnectionManagerConfig,
    ) -> RedisResult<RedisConnection> {
        if let Self::Cluster(_) = self {
            return self.connect(CONNECT_TIMEOUT_CLUSTER, RESPONSE_TIMEOUT_CLUSTER).await;
        }
        let client = self.client().await?;
        Ok(RedisConnection::Managed(ConnectionManager::new_with_config(client, config).await?))
    }

    /// Whether the primary can move (so a lost connection is worth asking again where it is).
    pub(crate) fn follows_failovers(&self) -> bool {
        matches!(self, Self::Sentinel(_))
    }
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.write_str(match self {
            Self::Direct(_) => "RedisSource::Direct",
            Self::Sentinel(_) => "RedisSource::Sentinel",
            Self::Cluster(_) => "RedisSource::Cluster",
        })
    }
}

/// The addresses of `nodes`, over TLS (hostnames verified) when `tls`.
fn addresses(nodes: &[(String, u16)], tls: bool) -> impl Iterator<Item = ConnectionAddr> + '_ {
    nodes.iter().map(move |(host, port)| {
        if tls {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        }
    })
}

/// TCP keepalive and a user timeout: a connection whose peer vanished (a NAT or load balancer
/// dropped it, a host died) fails within about a minute even while idle, and within 10 s of
/// unacknowledged data, instead of hanging for the kernel's hours.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive)
        .set_user_timeout(Duration::from_secs(10))
}
