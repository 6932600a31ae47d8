//! The real PostgreSQL and Redis the scale-out tests run against: the servers CI provides
//! (`PORTCULLIS_TEST_POSTGRES`, `PORTCULLIS_TEST_REDIS` override where), a fresh database and a
//! unique key prefix per test, and throwaway `redis-server` processes for fault tests. Tests
//! that need them fail when they are missing; they never skip.

use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::process::{Child, Command};

fn postgres_admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The shared Redis.
pub fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("portcullis-e2e:{}:", uuid::Uuid::now_v7().simple())
}

/// Runs `sql` as the PostgreSQL superuser, on the server's maintenance database.
pub async fn admin_sql(sql: &str) {
    let mut connection = PgConnection::connect(&postgres_admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut connection).await.unwrap();
}

/// A fresh PostgreSQL database, dropped with the guard.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin = postgres_admin_url();
        let name = format!("portcullis_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut connection = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL at {admin} is required: {error}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        Self { url: format!("{base}/{name}"), name }
    }
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (postgres_admin_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut connection) = PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut connection).await;
                }
            });
        })
        .join();
    }
}

/// A `redis-server` of the test's own, on its own port, that the test can stop and start.
pub struct RedisServer {
    port: u16,
    args: Vec<String>,
    scheme_and_user: String,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a plain one.
    pub async fn start() -> Self {
        let mut server = Self::reserve();
        server.restart().await;
        server
    }

    /// Picks its port and settings without starting it.
    pub fn reserve() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self {
            port,
            args: vec!["--port".into(), port.to_string()],
            scheme_and_user: "redis://".into(),
            child: None,
        }
    }

    /// Replicates `primary` (`--replicaof`).
    pub fn replica_of(mut self, primary: &Self) -> Self {
        self.args.extend(["--replicaof".into(), "127.0.0.1".into(), primary.port.to_string()]);
        self
    }

    /// A Sentinel (config file in `dir`) watching `primary` as master set `name`, quorum 1,
    /// calling it down after 1 s.
    pub fn sentinel_of(mut self, dir: &std::path::Path, name: &str, primary: &Self) -> Self {
        let path = dir.join(format!("sentinel-{}.conf", self.port));
        let conf = format!(
            "sentinel monitor {name} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n",
            primary.port
        );
        std::fs::write(&path, conf).unwrap();
        let mut args = vec![path.display().to_string(), "--sentinel".into()];
        args.append(&mut self.args);
        self.args = args;
        self
    }

    /// A node of a Redis Cluster (its state file in `dir`), not yet joined to one.
    pub fn cluster_node(mut self, dir: &std::path::Path) -> Self {
        let state = dir.join(format!("nodes-{}.conf", self.port)).display().to_string();
        let args = ["--cluster-enabled", "yes", "--cluster-config-file", &state];
        self.args.extend(args.map(str::to_owned));
        self.args.extend(["--cluster-node-timeout".into(), "2000".into()]);
        self
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Serves TLS only, with the certificate and key in `dir` (`redis.crt`, `redis.key`, made
    /// here for `localhost`), and accepts only the ACL user `portcullis` / `s3cret`.
    pub fn with_tls_and_acl_user(mut self, dir: &std::path::Path) -> Self {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("redis.crt"), generated.cert.pem()).unwrap();
        std::fs::write(dir.join("redis.key"), generated.signing_key.serialize_pem()).unwrap();
        let path = |name: &str| dir.join(name).display().to_string();
        let tls_port = self.port.to_string();
        let (cert, key) = (path("redis.crt"), path("redis.key"));
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned)
        .to_vec();
        // Exactly the commands README lists, on the keys of the tests' prefixes; an inspector
        // that may read the ACL log; no default user.
        let users = [
            "portcullis on >s3cret ~portcullis-e2e:* resetchannels -@all +get +set +del +getdel \
             +incr +pexpire +pexpireat +zadd +zrem +zrange +zrangebyscore +zremrangebyscore +eval +evalsha +script \
             +xadd +xread +xrange +xrevrange +xinfo +info +ping +client",
            "inspector on >look ~* +@all",
            "default off",
        ];
        for user in users {
            args.push("--user".to_owned());
            args.extend(user.split_whitespace().map(str::to_owned));
        }
        self.args = args;
        self.scheme_and_user = "rediss://portcullis:s3cret@".into();
        self
    }

    pub fn url(&self) -> String {
        let host =
            if self.scheme_and_user.starts_with("rediss") { "localhost" } else { "127.0.0.1" };
        format!("{}{host}:{}", self.scheme_and_user, self.port)
    }

    /// Starts it (again) on the same port (empty: no persistence).
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is required on PATH");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills it (as a crash would).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

/// A three-node Redis Cluster on loopback (no replicas), slots spread over the three.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create`, and waits until every
    /// node says the cluster is ok.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut node = RedisServer::reserve().cluster_node(dir.path());
            node.restart().await;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes.iter().map(RedisServer::address).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("redis-cli is required on PATH");
        assert!(created.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            let client = redis::Client::open(node.url()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let mut ok = false;
            for _ in 0..100 {
                let info: String =
                    redis::cmd("CLUSTER").arg("INFO").query_async(&mut connection).await.unwrap();
                if info.contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ok, "the cluster did not come up on {}", node.address());
        }
        Self { nodes, _dir: dir }
    }

    /// How many keys starting with `prefix` each node holds.
    pub async fn keys_per_node(&self, prefix: &str) -> Vec<usize> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            let client = redis::Client::open(node.url()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut connection)
                .await
                .unwrap();
            counts.push(keys.len());
        }
        counts
    }
}

/// PgBouncer 1.21 or later in transaction mode with prepared statements, in front of the test
/// PostgreSQL, with a pool smaller than its clients: what production puts between many
/// replicas and the database. `.ci/run` builds it into `target/ci-pgbouncer` (Debian 12 ships
/// 1.18, which cannot carry prepared statements in transaction mode).
pub struct PgBouncer {
    port: u16,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts one, forwarding every database to the test server.
    pub async fn start() -> Self {
        let server = reqwest::Url::parse(&postgres_admin_url()).unwrap();
        let (host, server_port) =
            (server.host_str().unwrap().to_owned(), server.port().unwrap_or(5432));
        let user = if server.username().is_empty() { "postgres" } else { server.username() };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ini = format!(
            "[databases]\n* = host={host} port={server_port} user={user}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = any\npool_mode = transaction\nmax_prepared_statements = 200\n\
             default_pool_size = 3\nmax_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits,options\n"
        );
        let path = dir.path().join("pgbouncer.ini");
        std::fs::write(&path, ini).unwrap();
        // PgBouncer refuses to run as root: there, it drops to `nobody`, who must read the file.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let built = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("ci-pgbouncer/bin/pgbouncer")
            .display()
            .to_string();
        // The one .ci/run builds first: a distribution's may be too old.
        let program = if std::path::Path::new(&built).is_file() {
            built
        } else {
            super::proxies::binary("pgbouncer", &[])
        };
        let child = Command::new(program)
            .args(if root { &["-u", "nobody"][..] } else { &[] })
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { port, _child: child, _dir: dir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pgbouncer did not start on port {port}");
    }

    /// `database_url` (a [`TestDatabase`]'s) through this pooler.
    pub fn url_for(&self, database_url: &str) -> String {
        let mut url = reqwest::Url::parse(database_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        let separator = if url.query().is_some() { "&" } else { "?" };
        format!("{url}{separator}sslmode=disable")
    }
}
