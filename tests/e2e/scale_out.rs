//! Three real `portcullis` processes on one PostgreSQL and one Redis, behind a round-robin load
//! balancer, with faults injected by the test: the invariants of a scaled-out deployment. No
//! revoked credential is honoured by any replica a second after the revocation, a single-use
//! token is redeemed exactly once whichever replicas see it, and no request is answered 500
//! while Redis is down or coming back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::binary::Binary;
use crate::support::relay::{CountingRelay, Protocol, relayed};
use crate::support::services::{RedisServer, TestDatabase, admin_sql, unique_prefix};
use crate::support::smtp::SmtpSink;
use crate::support::{EchoUpstream, PASSWORD};

/// The deployment: three replicas, their stores, and the balancer in front.
struct Deployment {
    replicas: Vec<Binary>,
    front: CountingRelay,
    redis: tokio::sync::Mutex<RedisServer>,
    /// Counting relays in front of PostgreSQL (the pool; the listener and the migrations go
    /// direct) and Redis.
    pg: CountingRelay,
    redis_counted: CountingRelay,
    sink: SmtpSink,
    /// Every status answered so far, by the front or a replica directly.
    statuses: parking_lot::Mutex<BTreeMap<u16, usize>>,
    /// The PostgreSQL role the replicas use, when not the superuser.
    role: Option<String>,
    database: TestDatabase,
    _echo: EchoUpstream,
    _dir: tempfile::TempDir,
}

/// Where the replicas keep their ephemeral state and send revocations.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shared {
    /// Redis (sessions, the revocation stream), PostgreSQL as the superuser.
    Redis,
    /// PostgreSQL alone (sessions, the revocation table and `LISTEN`), as a role of its own
    /// whose connection limit the test can change.
    Postgres,
}

impl Deployment {
    async fn start() -> Self {
        Self::start_with(Shared::Redis).await
    }

    async fn start_with(shared: Shared) -> Self {
        crate::support::init();
        let database = TestDatabase::create().await;
        let role = (shared == Shared::Postgres)
            .then(|| format!("portcullis_scale_{}", uuid::Uuid::now_v7().simple()));
        let database_url = match &role {
            None => database.url.clone(),
            Some(role) => {
                admin_sql(&format!("CREATE ROLE {role} LOGIN")).await;
                admin_sql(&format!("ALTER DATABASE {} OWNER TO {role}", database.name())).await;
                database.url.replacen("postgres@", &format!("{role}@"), 1)
            }
        };
        let redis = RedisServer::start().await;
        let sink = SmtpSink::start().await;
        let echo = EchoUpstream::start("app").await;
        let dir = tempfile::tempdir().unwrap();
        let (pg, pooled_url) =
            relayed(&database_url, Protocol::Postgres, Some("sslmode=disable")).await;
        let (redis_counted, redis_url) = relayed(&redis.url(), Protocol::Redis, None).await;
        let ephemeral = match shared {
            Shared::Redis => format!(
                "ephemeral = \"redis\"\nredis_url = \"{redis_url}\"\nredis_prefix = \"{}\"",
                unique_prefix()
            ),
            Shared::Postgres => "ephemeral = \"database\"".to_owned(),
        };
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
public_url = "http://app.example.test"
[storage]
database_url = "{pooled}"
database_direct_url = "{database}"
{ephemeral}
startup_wait = "5s"
[session]
cache_ttl = "5m"
[rate_limit]
auth_per_minute = 0
failed_credentials_per_minute = 0
[email]
transport = "smtp"
smtp_url = "{smtp}"
[[upstreams]]
name = "app"
url = "{echo}"
"#,
            pooled = pooled_url,
            database = database_url,
            smtp = sink.url(),
            echo = echo.url(),
        );
        std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
        // Each on a port of its own (the start line names the shared public URL instead).
        let mut replicas = Vec::new();
        let mut addresses: Vec<SocketAddr> = Vec::new();
        for _ in 0..3 {
            let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            let listen = address.to_string();
            let env = [("PORTCULLIS_SERVER__LISTEN", listen.as_str())];
            let mut replica =
                Binary::start(dir.path(), &["--config", "portcullis.toml"], &env).await;
            replica.url = format!("http://{address}");
            replicas.push(replica);
            addresses.push(address);
        }
        let front = CountingRelay::round_robin(addresses, Protocol::Raw).await;
        Self {
            replicas,
            front,
            redis: tokio::sync::Mutex::new(redis),
            pg,
            redis_counted,
            sink,
            statuses: parking_lot::Mutex::default(),
            role,
            database,
            _echo: echo,
            _dir: dir,
        }
    }

    /// A client that opens a new connection per request, so the balancer spreads them.
    fn client() -> reqwest::Client {
        crate::support::app::client_builder().pool_max_idle_per_host(0).build().unwrap()
    }

    fn front_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.front.addr)
    }

    /// Sends `request`, noting its status.
    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.send().await.unwrap();
        *self.statuses.lock().entry(response.status().as_u16()).or_default() += 1;
        response
    }

    /// `GET /x` with `cookie` on replica `index` directly.
    async fn status_on(&self, index: usize, cookie: &str) -> StatusCode {
        let url = format!("{}/x", self.replicas[index].url);
        self.send(Self::client().get(url).header("cookie", cookie)).await.status()
    }

    /// `GET /x` with `cookie` through the balancer.
    async fn status_through_front(&self, cookie: &str) -> StatusCode {
        let request = Self::client().get(self.front_url("/x")).header("cookie", cookie);
        self.send(request).await.status()
    }

    /// Signs `email` up through the balancer; its session cookie.
    async fn sign_up(&self, email: &str) -> Result<String, StatusCode> {
        let request = Self::client()
            .post(self.front_url("/auth/signup"))
            .json(&json!({ "email": email, "password": PASSWORD }));
        let response = self.send(request).await;
        if response.status() != StatusCode::CREATED {
            return Err(response.status());
        }
        Ok(crate::support::cookie_pair(&response))
    }

    /// Logs `cookie`'s session out through the balancer.
    async fn log_out(&self, cookie: &str) {
        assert_eq!(self.try_log_out(cookie).await, StatusCode::OK);
    }

    /// Asks to log `cookie`'s session out through the balancer; the answer's status.
    async fn try_log_out(&self, cookie: &str) -> StatusCode {
        let csrf = self
            .send(Self::client().get(self.front_url("/auth/csrf")).header("cookie", cookie))
            .await;
        if csrf.status() != StatusCode::OK {
            return csrf.status();
        }
        let csrf: Value = csrf.json().await.unwrap();
        let logout = Self::client()
            .post(self.front_url("/auth/logout"))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf["csrf_token"].as_str().unwrap());
        self.send(logout).await.status()
    }

    /// Waits until no replica honours `cookie`; how long that took from now. Panics past
    /// `limit`.
    async fn refused_everywhere_within(&self, cookie: &str, limit: Duration) -> Duration {
        let since = Instant::now();
        for index in 0..3 {
            while self.status_on(index, cookie).await != StatusCode::UNAUTHORIZED {
                assert!(since.elapsed() < limit, "replica {index} still serves it");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        since.elapsed()
    }

    /// Signs `email` up and checks every replica has it cached.
    async fn signed_up_everywhere(&self, email: &str) -> String {
        let cookie = self.sign_up(email).await.unwrap();
        for index in 0..3 {
            assert_eq!(self.status_on(index, &cookie).await, StatusCode::OK, "replica {index}");
        }
        cookie
    }

    /// Signs new users up through the balancer until three were created (so every replica
    /// serves sign-ups again), within `limit`; meanwhile every refusal is 503.
    async fn sign_ups_resume_within(&self, limit: Duration) {
        let since = Instant::now();
        let mut signed_up = 0;
        while signed_up < 3 {
            let email = format!("{}@example.com", uuid::Uuid::now_v7().simple());
            match self.sign_up(&email).await {
                Ok(_) => signed_up += 1,
                Err(status) => {
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                    assert!(since.elapsed() < limit, "the store is back, sign-ups not");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Stops the replicas, drops the database and the role it was given.
    async fn close(self) {
        let Self { replicas, database, role, .. } = self;
        drop(replicas);
        drop(database);
        if let Some(role) = role {
            admin_sql(&format!("DROP ROLE IF EXISTS {role}")).await;
        }
    }

    fn no_500(&self) {
        let statuses = self.statuses.lock();
        assert!(statuses.keys().all(|status| *status < 500 || *status == 503), "{statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_a_balancer_keep_the_invariants_through_faults() {
    let deployment = Deployment::start().await;

    // A sign-in through the balancer works on every replica.
    let ada = deployment.signed_up_everywhere("ada@example.com").await;

    // A logout through the balancer: honoured by no replica a second later (their caches
    // would keep it five minutes).
    deployment.log_out(&ada).await;
    deployment.refused_everywhere_within(&ada, Duration::from_secs(1)).await;

    // A magic link, redeemed on all three replicas at once: exactly one sign-in.
    let ask = Deployment::client()
        .post(deployment.front_url("/auth/magic-link"))
        .json(&json!({ "email": "bea@example.com" }));
    assert_eq!(deployment.send(ask).await.status(), StatusCode::OK);
    let link = deployment.sink.nth_about(1, "Sign in").await.link().unwrap();
    let token = link.split("token=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let deployment = &deployment;
    let redeem = |index: usize| {
        let url = format!("{}/auth/magic-link/verify", deployment.replicas[index].url);
        let request = Deployment::client().post(url).json(&json!({ "token": token }));
        async move { deployment.send(request).await.status() }
    };
    let (a, b, c) = tokio::join!(redeem(0), redeem(1), redeem(2));
    let signed_in = [a, b, c].iter().filter(|status| **status == StatusCode::OK).count();
    assert_eq!(signed_in, 1, "{a} {b} {c}");

    // Redis goes down. Identities every replica has cached keep flowing; what needs Redis is
    // 503; nothing is 500.
    let cy = deployment.sign_up("cy@example.com").await.unwrap();
    for index in 0..3 {
        assert_eq!(deployment.status_on(index, &cy).await, StatusCode::OK);
    }
    deployment.redis.lock().await.stop().await;
    for _ in 0..9 {
        assert_eq!(deployment.status_through_front(&cy).await, StatusCode::OK, "cached");
    }
    for attempt in 0..3 {
        let refused = deployment.sign_up(&format!("down{attempt}@example.com")).await;
        assert_eq!(refused, Err(StatusCode::SERVICE_UNAVAILABLE));
    }

    // Redis comes back (empty): sign-ups work again through every replica, without a restart.
    deployment.redis.lock().await.restart().await;
    deployment.sign_ups_resume_within(Duration::from_secs(15)).await;
    deployment.no_500();
}

/// The load model of `docs/scaling.md`, checked on the wire: with a round-robin balancer each
/// replica loads each active user's identity once per cache period (N × U loads: one Redis
/// `GET` and one PostgreSQL statement each), and once every replica has it, further requests
/// cost the stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_load_follows_the_model_n_replicas_times_u_users() {
    let deployment = Deployment::start().await;
    let users: usize = 10;
    let mut cookies = Vec::new();
    for user in 0..users {
        cookies.push(deployment.sign_up(&format!("user{user}@example.com")).await.unwrap());
    }
    // A sign-up finishes some work after it answers (its verification mail): let it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (statements, redis_commands) =
        (deployment.pg.snapshot().0, deployment.redis_counted.snapshot().0);
    let names_before = deployment.redis_counted.sql().len();
    // Three rounds over the users: with ten users and three replicas in turn, each user's
    // requests land once on every replica.
    let round = |_| async {
        for cookie in &cookies {
            assert_eq!(deployment.status_through_front(cookie).await, StatusCode::OK);
        }
    };
    for r in 0..3 {
        round(r).await;
    }
    let loads = deployment.pg.snapshot().0 - statements;
    let gets = deployment.redis_counted.snapshot().0 - redis_commands;
    let expected = (3 * users) as u64;
    let names = &deployment.redis_counted.sql()[names_before..];
    assert_eq!((loads, gets), (expected, expected), "N × U = {expected} loads: {names:?}");

    let (statements, redis_commands) =
        (deployment.pg.snapshot().0, deployment.redis_counted.snapshot().0);
    for r in 0..3 {
        round(r).await;
    }
    assert_eq!(deployment.pg.snapshot().0 - statements, 0, "every replica has every user");
    assert_eq!(deployment.redis_counted.snapshot().0 - redis_commands, 0);
    deployment.no_500();
}

/// Every replica's revocation reader loses its connection at once (`CLIENT KILL` on the
/// Redis server, as a failover or a proxy restart would): each reconnects, resumes from its
/// position, and a logout published right after is honoured by no replica a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_readers_reconnect_and_miss_nothing() {
    let deployment = Deployment::start().await;
    let ada = deployment.signed_up_everywhere("ada@example.com").await;
    let url = deployment.redis.lock().await.url();
    let mut redis =
        redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut redis).await.unwrap();
    let readers: Vec<&str> = clients
        .lines()
        .filter(|line| {
            line.contains(&format!(
                " name={} ",
                portcullis::testing::identity::revocation::READER_NAME
            ))
        })
        .filter_map(|line| line.split_whitespace().find_map(|field| field.strip_prefix("id=")))
        .collect();
    assert_eq!(readers.len(), 3, "one reader per replica: {clients}");
    for id in readers {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(killed, 1);
    }
    deployment.log_out(&ada).await;
    deployment.refused_everywhere_within(&ada, Duration::from_secs(1)).await;
    deployment.no_500();
}

/// Every Redis connection of every replica stalls (open and silent, as behind a hung proxy):
/// each replica notices within seconds (a command goes unanswered, the reader's heartbeat goes
/// unanswered) and replaces its connections; the logout that eventually goes through is
/// honoured everywhere within seconds, and nothing is answered 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_redis_connections_are_replaced_on_every_replica() {
    let deployment = Deployment::start().await;
    let ada = deployment.signed_up_everywhere("ada@example.com").await;
    deployment.redis_counted.stall_open_connections();
    let stalled = Instant::now();
    let mut logged_out = None;
    while stalled.elapsed() < Duration::from_secs(20) {
        if deployment.try_log_out(&ada).await == StatusCode::OK {
            logged_out = Some(stalled.elapsed());
            break;
        }
    }
    let logged_out = logged_out.expect("a logout went through");
    let took = deployment.refused_everywhere_within(&ada, Duration::from_secs(6)).await;
    println!(
        "stalled: a logout went through after {logged_out:?}, honoured nowhere {took:?} later"
    );
    deployment.no_500();
}

/// Without Redis, PostgreSQL carries sessions and revocations. Every replica's `LISTEN`
/// connection is terminated (`pg_terminate_backend`): a logout right after is honoured by no
/// replica a second later. Then PostgreSQL refuses every connection (the role at its limit):
/// cached identities flow, what needs the database is 503, never 500, and once connections
/// are allowed again sign-ups and revocations work without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_replicas_ride_out_a_killed_listener_and_a_full_database() {
    let deployment = Deployment::start_with(Shared::Postgres).await;
    let ada = deployment.signed_up_everywhere("ada@example.com").await;
    let bob = deployment.signed_up_everywhere("bob@example.com").await;
    let database = deployment.database.name().to_owned();
    let role = deployment.role.clone().unwrap();

    let terminated = admin_count(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{database}' AND application_name = '{}'",
        portcullis::testing::identity::revocation::READER_NAME
    ))
    .await;
    assert_eq!(terminated, 3, "one listener per replica");
    deployment.log_out(&ada).await;
    deployment.refused_everywhere_within(&ada, Duration::from_secs(1)).await;

    admin_sql(&format!("ALTER ROLE {role} CONNECTION LIMIT 0")).await;
    admin_count(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{role}'"
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(deployment.status_through_front(&bob).await, StatusCode::OK, "cached");
    }
    assert_eq!(
        deployment.sign_up("refused@example.com").await,
        Err(StatusCode::SERVICE_UNAVAILABLE)
    );

    admin_sql(&format!("ALTER ROLE {role} CONNECTION LIMIT -1")).await;
    deployment.sign_ups_resume_within(Duration::from_secs(20)).await;
    // The listeners are back too: a logout reaches every replica. (A write that lands on a
    // pooled connection the outage killed is answered 503 once, and the connection dropped:
    // reads are tried again on another connection, writes are not, so a client retries.)
    let mut logged_out = false;
    for _ in 0..12 {
        if deployment.try_log_out(&bob).await == StatusCode::OK {
            logged_out = true;
            break;
        }
    }
    assert!(logged_out, "no logout went through");
    deployment.refused_everywhere_within(&bob, Duration::from_secs(3)).await;
    deployment.no_500();
    deployment.close().await;
}

/// The number the superuser's `sql` answers (one row, one `bigint`).
async fn admin_count(sql: &str) -> i64 {
    use sqlx::Connection;
    let url = std::env::var("PORTCULLIS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut connection)
        .await
        .unwrap()
}
