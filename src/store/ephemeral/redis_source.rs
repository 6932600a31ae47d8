//! Where the Redis primary is: one address, or the primary that Redis Sentinel names, asked
//! again on every (re)connection so that a failover is followed without a restart.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisResult, TlsCertificates,
    TlsMode,
};

use crate::config::RedisSentinel;
use crate::store::StoreError;

/// How long asking the Sentinels for the primary (and checking it) may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(4);

/// Where connections to the Redis primary go.
#[derive(Clone)]
pub enum RedisSource {
    /// One address (a server, a proxy, or a name that follows the primary).
    Direct(Box<redis::Client>),
    /// Whichever primary the Sentinels name for a master set, asked on every connection.
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

impl RedisSource {
    /// A source for `url` (`redis://`, or `rediss://` for TLS through rustls; a user, password
    /// and database in the URL), trusting `ca_pem` for TLS when given, else the system's roots.
    /// With `sentinel`, the URL's host and port are not used: the Sentinels name the primary,
    /// and the URL says how to speak to it.
    ///
    /// # Errors
    /// The URL or a Sentinel address is invalid.
    pub fn new(
        url: &str,
        ca_pem: Option<&[u8]>,
        sentinel: Option<&RedisSentinel>,
    ) -> Result<Self, StoreError> {
        let info = url.into_connection_info()?.set_tcp_settings(tcp_settings());
        let certificates =
            || TlsCertificates { client_tls: None, root_cert: ca_pem.map(<[u8]>::to_vec) };
        let Some(sentinel) = sentinel else {
            let client = match ca_pem {
                Some(_) => redis::Client::build_with_tls(info, certificates())?,
                None => redis::Client::open(info)?,
            };
            return Ok(Self::Direct(Box::new(client)));
        };
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let nodes = sentinel.nodes.iter().map(|(host, port)| {
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
        });
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

    /// A client for the primary as of now.
    ///
    /// # Errors
    /// No Sentinel answers, or none names a reachable primary, within a few seconds.
    pub async fn client(&self) -> RedisResult<redis::Client> {
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
        }
    }

    /// A new connection to the primary as of now.
    ///
    /// # Errors
    /// As [`Self::client`], or the primary cannot be reached.
    pub async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        self.client().await?.get_multiplexed_async_connection_with_config(config).await
    }

    /// Whether the primary can move (so a lost connection is worth asking again where it is).
    pub fn follows_failovers(&self) -> bool {
        matches!(self, Self::Sentinel(_))
    }
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.write_str(match self {
            Self::Direct(_) => "RedisSource::Direct",
            Self::Sentinel(_) => "RedisSource::Sentinel",
        })
    }
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
