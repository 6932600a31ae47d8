//! Several replicas on one PostgreSQL and one Redis: a login on one works on all of them, and a
//! logout or revocation on one reaches every other one's cache within a second. Then Redis
//! crashing and coming back under a running replica.

use std::time::{Duration, Instant};

use portcullis::testing::config::values::StringList;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::services::{RedisServer, TestDatabase, admin_sql, redis_url, unique_prefix};
use crate::support::smtp::SmtpSink;
use crate::support::{
    Echoed, PASSWORD, TestApp, TwoReplicas, cookie_pair, login_cookie, login_request,
    password_login, token_login,
};

/// Signs new users up on `app` until one is created, within `limit`; every answer meanwhile is
/// 201 or 503 (a store outage), never anything else.
async fn sign_ups_resume_within(app: &TestApp, limit: Duration) {
    within(limit, || {
        let (client, url) = (app.client(), app.url("/auth/signup"));
        let email = format!("{}@example.com", uuid::Uuid::now_v7().simple());
        async move {
            let body = json!({ "email": email, "password": PASSWORD });
            let response = client.post(url).json(&body).send().await.unwrap();
            let status = response.status();
            assert!(
                status == StatusCode::CREATED || status == StatusCode::SERVICE_UNAVAILABLE,
                "{status}: {}",
                response.text().await.unwrap()
            );
            status == StatusCode::CREATED
        }
    })
    .await;
}

/// Polls until `check` holds, at most `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn log_out(app: &TestApp, cookie: &str) {
    let http = crate::support::http();
    let csrf: Value = http
        .get(app.url("/auth/csrf"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = http
        .post(app.url("/auth/logout"))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_one_replica_works_on_the_other_and_logout_reaches_both_within_a_second() {
    let replicas = TwoReplicas::with_redis().await;
    let (a, b) = (&replicas.a, &replicas.b);

    let cookie = a.session_cookie(&a.client(), "ada@example.com").await;
    assert_eq!(a.status_with_cookie(&cookie).await, 200, "A has it cached now");
    let on_b: Echoed = crate::support::http()
        .get(b.url("/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(on_b.header("x-auth-email"), Some("ada@example.com"));

    log_out(b, &cookie).await;
    let took =
        within(Duration::from_secs(1), || async { a.status_with_cookie(&cookie).await == 401 })
            .await;
    eprintln!("logout on B reached A's cache in {took:?}");

    // An API key revoked on B stops on A, which had it cached.
    let browser = b.signed_in("bob@example.com").await;
    let csrf = b.csrf(&browser).await;
    let created: Value = browser
        .post(b.url("/auth/api-keys"))
        .header("x-csrf-token", &csrf)
        .json(&json!({ "name": "ci" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let with_key = |app: &TestApp| {
        let request = crate::support::http().get(app.url("/x")).bearer_auth(&key);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(with_key(a).await, 200);
    let revoked = browser
        .delete(b.url(&format!("/auth/api-keys/{}", created["id"].as_str().unwrap())))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    within(Duration::from_secs(1), || async { with_key(a).await == 401 }).await;

    // An access token whose sign-in ends on A stops on B.
    let tokens = token_login(a, "bob@example.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let with_token = |app: &TestApp| {
        let request = crate::support::http().get(app.url("/x")).bearer_auth(&access);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(with_token(b).await, 200, "B verifies A's token with the shared keys");
    let logout = crate::support::http()
        .post(a.url("/auth/logout"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    within(Duration::from_secs(1), || async { with_token(b).await == 401 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_postgres_carries_the_revocations() {
    let replicas = TwoReplicas::on_postgres(|builder| builder).await;
    let (a, b) = (&replicas.a, &replicas.b);
    let cookie = a.session_cookie(&a.client(), "ada@example.com").await;
    assert_eq!(a.status_with_cookie(&cookie).await, 200);
    assert_eq!(b.status_with_cookie(&cookie).await, 200, "sessions live in PostgreSQL");
    log_out(b, &cookie).await;
    within(Duration::from_secs(1), || async { a.status_with_cookie(&cookie).await == 401 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_on_one_replica_loses_access_on_the_other_within_a_second() {
    use crate::orgs::{ROUTES, call, create_org, invite};
    let sink = SmtpSink::start().await;
    let replicas = TwoReplicas::on_postgres(|builder| {
        let url = sink.url();
        builder.routes(ROUTES).config(move |raw| {
            raw.email.transport = "smtp".into();
            raw.email.smtp_url = Some(url);
        })
    })
    .await;
    let (a, b) = (&replicas.a, &replicas.b);
    let ada = a.signed_in("ada@example.com").await;
    b.signed_in("bob@example.com").await;
    let org = create_org(a, &ada, "Acme").await;
    let link = invite(a, &sink, &ada, &org, "bob@example.com", "member").await;
    let accepted = crate::support::http().get(&link).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::FOUND);
    let cookie = cookie_pair(&accepted);
    let doc = |app: &TestApp| {
        let request = crate::support::http()
            .get(app.url(&format!("/orgs/{org}/doc")))
            .header("cookie", &cookie);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(doc(b).await, 200, "B has Bob's membership cached now");

    let members: Value = ada
        .get(a.url(&format!("/auth/orgs/{org}/members")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bob = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["email"] == "bob@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/auth/orgs/{org}/members/{bob}");
    assert_eq!(call(a, &ada, reqwest::Method::DELETE, &path, None).await.status(), 200);
    let took = within(Duration::from_secs(1), || async { doc(b).await == 403 }).await;
    eprintln!("a removal on A reached B's cache in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crashing_degrades_to_cached_traffic_and_recovers_without_a_restart() {
    let mut redis = RedisServer::start().await;
    let app = TestApp::builder().redis(&redis.url(), &unique_prefix()).spawn().await;
    let cached = app.session_cookie(&app.client(), "ada@example.com").await;
    assert_eq!(app.status_with_cookie(&cached).await, 200);
    // Signed in, but never used here since: not in the cache.
    let uncached_client = app.client();
    let uncached = app.session_cookie(&uncached_client, "bob@example.com").await;
    let users_before = app.user_count().await;

    redis.stop().await;
    assert_eq!(app.status_with_cookie(&cached).await, 200, "cached identities keep flowing");
    let response = crate::support::http()
        .get(app.url("/x"))
        .header("cookie", &uncached)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    let login = password_login(&app, &crate::support::http(), "ada@example.com", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    let signup = crate::support::http()
        .post(app.url("/auth/signup"))
        .json(&json!({ "email": "carol@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.user_count().await, users_before, "no half-made account");
    // Still ready (every replica shares Redis: failing readiness would empty the Service),
    // reporting the store as down in the body and in the metrics.
    let ready = crate::support::http().get(app.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["ephemeral_store"], false);
    let metrics = crate::support::http().get(app.admin_url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("portcullis_store_up{store=\"ephemeral\"} 0"), "{metrics}");

    // Redis comes back (empty: this one keeps nothing on disk). No restart of Portcullis.
    redis.restart().await;
    within(Duration::from_secs(10), || async {
        let ready = crate::support::http().get(app.admin_url("/readyz")).send().await.unwrap();
        ready.json::<Value>().await.unwrap()["status"] == "ready"
    })
    .await;
    let signup = crate::support::http()
        .post(app.url("/auth/signup"))
        .json(&json!({ "email": "carol@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED, "the retried sign-up works");
    let login = password_login(&app, &crate::support::http(), "ada@example.com", PASSWORD).await;
    assert_eq!(login.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_an_acl_user_that_starts_after_portcullis() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::reserve().with_tls_and_acl_user(dir.path());
    let (url, ca) = (redis.url(), dir.path().join("redis.crt").display().to_string());
    let starting = tokio::spawn(
        TestApp::builder()
            .redis(&url, &unique_prefix())
            .config(move |raw| {
                raw.storage.redis_ca_file = Some(ca);
                raw.storage.startup_wait = "20s".into();
            })
            .spawn(),
    );
    // Portcullis waits for Redis rather than failing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!starting.is_finished());
    redis.restart().await;
    let app = tokio::time::timeout(Duration::from_secs(20), starting).await.unwrap().unwrap();
    let client = app.signed_in("ada@example.com").await;
    assert_eq!(app.echo(&client, "/x").await.header("x-auth-email"), Some("ada@example.com"));
    let ready = crate::support::http().get(app.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // A logout (delete, index update, revocation appended and read) within the documented ACL.
    let cookie = app.session_cookie(&app.client(), "bob@example.com").await;
    assert_eq!(app.status_with_cookie(&cookie).await, 200);
    log_out(&app, &cookie).await;
    within(Duration::from_secs(2), || async { app.status_with_cookie(&cookie).await == 401 }).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let inspector = url.replace("portcullis:s3cret@", "inspector:look@");
    let client = redis::Client::build_with_tls(
        inspector,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(dir.path().join("redis.crt")).unwrap()),
        },
    )
    .unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let denied: Vec<redis::Value> =
        redis::cmd("ACL").arg("LOG").query_async(&mut connection).await.unwrap();
    assert!(denied.is_empty(), "commands outside the documented ACL: {denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_limit_is_shared_by_the_replicas() {
    let prefix = unique_prefix();
    // One clock for both: the shared window is per minute of it.
    let clock = portcullis::testing::clock::ManualClock::new();
    let replica = || {
        TestApp::builder()
            .redis(&redis_url(), &prefix)
            .clock(clock.clone())
            .config(|raw| {
                raw.rate_limit.auth_per_minute = portcullis::testing::config::values::Count(3)
            })
            .spawn()
    };
    let (a, b) = (replica().await, replica().await);
    three_per_minute_across(&a, &b).await;
}

/// Without Redis, replicas on one PostgreSQL share the limit through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_limit_is_shared_through_postgres_too() {
    let clock = portcullis::testing::clock::ManualClock::new();
    let replicas = TwoReplicas::on_postgres(|builder| {
        builder.clock(clock.clone()).config(|raw| {
            raw.rate_limit.auth_per_minute = portcullis::testing::config::values::Count(3)
        })
    })
    .await;
    three_per_minute_across(&replicas.a, &replicas.b).await;
}

/// Four failed logins from one address, alternating between `a` and `b`: the fourth is over a
/// limit of three per minute counted for both.
async fn three_per_minute_across(a: &TestApp, b: &TestApp) {
    let attempt = |app: &TestApp| {
        let http = crate::support::http();
        let request = login_request(app, &http, "nobody@example.com", "wrong password here");
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(attempt(a).await, 401);
    assert_eq!(attempt(b).await, 401);
    assert_eq!(attempt(a).await, 401);
    let refused = attempt(b).await;
    assert_eq!(refused, StatusCode::TOO_MANY_REQUESTS, "three per minute across both replicas");
}

#[tokio::test]
async fn startup_waits_for_an_absent_database_then_gives_up() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut raw = portcullis::testing::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.admin_listen = String::new();
    raw.storage.database_url = format!("postgres://postgres@{closed}/portcullis");
    raw.storage.startup_wait = "1s".into();
    let config = portcullis::testing::config::Config::try_from(raw).unwrap();
    let started = Instant::now();
    let error =
        portcullis::testing::app::App::start(config).await.expect_err("no database").to_string();
    assert!(error.contains("unavailable"), "{error}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "it retried for a while: {waited:?}");
    assert!(waited < Duration::from_secs(30), "and then gave up: {waited:?}");
}

/// What a proxied request costs the shared stores, counted on the wire: nothing on a cache hit;
/// on a session miss one Redis GET and one PostgreSQL statement (the user, roles and
/// memberships in one query); on an API-key miss three statements (the key, the user, the
/// last-used touch) and no Redis command. No statement is preceded by a ping. A forged
/// credential (its tag is wrong, or it has none) costs nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_hit_costs_no_store_operation_and_a_miss_one_query() {
    use crate::support::relay::Protocol;
    let database = TestDatabase::create().await;
    let prefix = unique_prefix();
    let a = TestApp::builder().database(&database.url).redis(&redis_url(), &prefix).spawn().await;
    let (pg, pg_url) =
        crate::support::relay::relayed(&database.url, Protocol::Postgres, Some("sslmode=disable"))
            .await;
    let (redis, redis_relayed) =
        crate::support::relay::relayed(&redis_url(), Protocol::Redis, None).await;
    let b = TestApp::builder().database(&pg_url).redis(&redis_relayed, &prefix).spawn().await;

    let client = a.signed_in("ada@example.com").await;
    let key = a.api_key(&client, "ci").await;
    let cookie = a.session_cookie(&a.client(), "bea@example.com").await;
    // Start-up work (migrations, subscriptions, first sweeps) is over.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // (PostgreSQL statements, PostgreSQL round trips, Redis commands) of one request on B.
    let costs = |credential: (&'static str, String), status: u16| {
        let (pg, redis, b) = (&pg, &redis, &b);
        async move {
            let (pg_before, trips_before) = pg.snapshot();
            let (redis_before, _) = redis.snapshot();
            let response = crate::support::http()
                .get(b.url("/x"))
                .header(credential.0, credential.1)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status);
            // sqlx returns the connection to the pool (with its `Sync`) after the answer.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (pg_after, trips_after) = pg.snapshot();
            (pg_after - pg_before, trips_after - trips_before, redis.snapshot().0 - redis_before)
        }
    };
    let cost = |credential: (&'static str, String)| costs(credential, 200);
    let session = || ("cookie", cookie.clone());
    let api_key = || ("authorization", format!("Bearer {key}"));

    let (statements, round_trips, redis_commands) = cost(session()).await;
    assert_eq!((statements, redis_commands), (1, 1), "a session miss");
    // Two when this pooled connection has not prepared the statement yet.
    // Once prepared on a connection, a statement is one round trip, plus the bare `Sync`
    // sqlx sends on every release (unconditionally, after the answer went out); a first use
    // on a connection adds the preparation. No ping precedes it.
    assert!(round_trips <= 3, "{round_trips} round trips");
    let mut fewest = u64::MAX;
    // The pool hands out its idle connections in turn: enough misses to come back to one.
    // (As many as the pool may hold, and one more.)
    for other in (0..11).map(|n| format!("user{n}@example.com")) {
        let cookie = a.session_cookie(&a.client(), &other).await;
        let (statements, round_trips, redis_commands) = cost(("cookie", cookie)).await;
        assert_eq!((statements, redis_commands), (1, 1), "another session's miss");
        fewest = fewest.min(round_trips);
    }
    assert_eq!(fewest, 2, "one round trip for the query, one for sqlx's release check");
    assert_eq!(cost(session()).await, (0, 0, 0), "a session hit");

    let (statements, _, redis_commands) = cost(api_key()).await;
    assert_eq!((statements, redis_commands), (3, 0), "an API-key miss");
    assert_eq!(cost(api_key()).await, (0, 0, 0), "an API-key hit");

    use portcullis::testing::crypto::tags::TokenTags;
    let elsewhere = TokenTags::random();
    let forged_session = portcullis::testing::identity::session::SessionToken::generate(&elsewhere);
    let untagged = format!("v1.{}", portcullis::testing::crypto::random_token());
    for (what, value) in [("forged", forged_session.cookie_value()), ("untagged", untagged)] {
        let cookie = ("cookie", format!("portcullis_session={value}"));
        assert_eq!(costs(cookie, 401).await, (0, 0, 0), "a {what} session cookie");
    }
    let forged_key = portcullis::testing::identity::api_key::generate(&elsewhere);
    let bearer = ("authorization", format!("Bearer {forged_key}"));
    assert_eq!(costs(bearer, 401).await, (0, 0, 0), "a forged API key");
}

/// PostgreSQL refusing connections (here the role's limit; a server at `max_connections` says
/// the same) is a store outage: 503 on every request meanwhile, never a 500, and service
/// resumes without a restart once connections are allowed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_connections_is_unavailable_and_recovers() {
    let database = TestDatabase::create().await;
    let role = format!("portcullis_limited_{}", uuid::Uuid::now_v7().simple());
    admin_sql(&format!("CREATE ROLE {role} LOGIN")).await;
    admin_sql(&format!("ALTER DATABASE {} OWNER TO {role}", database.name())).await;
    let url = database.url.replacen("postgres@", &format!("{role}@"), 1);
    let a = TestApp::builder().database(&url).spawn().await;
    let b = TestApp::builder().database(&url).spawn().await;
    let cookie = a.session_cookie(&a.client(), "ada@example.com").await;

    admin_sql(&format!("ALTER ROLE {role} CONNECTION LIMIT 0")).await;
    admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    ))
    .await;
    // Requests until every pooled connection was found dead and a new one was needed, which
    // PostgreSQL refuses with "too many connections" (sqlx tries again until the pool's
    // acquire timeout, 5 s, then gives up).
    let mut refused = false;
    for attempt in 0..15 {
        let started = Instant::now();
        let response =
            crate::support::http().get(b.url("/x")).header("cookie", &cookie).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "attempt {attempt}: {body}");
        assert_eq!(body["error"], "store_unavailable");
        if started.elapsed() > Duration::from_secs(1) {
            refused = true;
            break;
        }
    }
    assert!(refused, "the pool never had to open a connection");

    admin_sql(&format!("ALTER ROLE {role} CONNECTION LIMIT -1")).await;
    within(Duration::from_secs(10), || async { b.status_with_cookie(&cookie).await == 200 }).await;
    drop((a, b));
    drop(database);
    admin_sql(&format!("DROP ROLE IF EXISTS {role}")).await;
}

/// Behind a pooler: queries go through `database_url` (here a relay standing in for PgBouncer),
/// while migrations and the revocation listener, which need a session of their own, use
/// `database_direct_url`; revocations still reach the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_and_listen_take_the_direct_url() {
    use crate::support::relay::Protocol;
    let database = TestDatabase::create().await;
    let (pooler, pooled_url) =
        crate::support::relay::relayed(&database.url, Protocol::Postgres, Some("sslmode=disable"))
            .await;
    let replica = || {
        TestApp::builder()
            .database(&pooled_url)
            .config(|raw| raw.storage.database_direct_url = Some(database.url.clone()))
            .spawn()
    };
    let a = replica().await;
    let b = replica().await;
    let cookie = a.session_cookie(&a.client(), "ada@example.com").await;
    assert_eq!(b.status_with_cookie(&cookie).await, 200);
    log_out(&a, &cookie).await;
    within(Duration::from_secs(1), || async { b.status_with_cookie(&cookie).await == 401 }).await;

    let sql = pooler.sql();
    assert!(sql.iter().any(|text| text.contains("json_agg")), "queries take the pool: {sql:?}");
    for session_bound in ["LISTEN", "_sqlx_migrations", "pg_advisory", "CREATE TABLE"] {
        assert!(
            !sql.iter().any(|text| text.contains(session_bound)),
            "{session_bound} went through the pooler: {sql:?}"
        );
    }
}

/// PgBouncer for real (1.21 or later, transaction mode, `max_prepared_statements`, a pool of
/// three server connections under two replicas of ten each): concurrent sign-ups, sessions,
/// API keys and sign-outs run through it without a prepared-statement error, while migrations
/// and the revocation listener take `database_direct_url`; a sign-out reaches the other
/// replica within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_in_transaction_mode_carries_two_replicas() {
    let database = TestDatabase::create().await;
    let pgbouncer = crate::support::services::PgBouncer::start().await;
    let pooled = pgbouncer.url_for(&database.url);
    let replica = || {
        TestApp::builder()
            .database(&pooled)
            .config(|raw| raw.storage.database_direct_url = Some(database.url.clone()))
            .spawn()
    };
    let (a, b) = (replica().await, replica().await);
    let apps = [&a, &b];
    let sign_ups = (0..20).map(|n| {
        let app = apps[n % 2];
        async move { app.session_cookie(&app.client(), &format!("user{n}@example.com")).await }
    });
    let cookies = futures_util::future::join_all(sign_ups).await;
    let checks =
        cookies.iter().enumerate().map(|(n, cookie)| apps[(n + 1) % 2].status_with_cookie(cookie));
    for status in futures_util::future::join_all(checks).await {
        assert_eq!(status, StatusCode::OK, "a session made on the other replica");
    }
    let client = a.signed_in("ada@example.com").await;
    let key = a.api_key(&client, "ci").await;
    let with_key = crate::support::http().get(b.url("/x")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(with_key.status(), StatusCode::OK);
    log_out(&a, &cookies[0]).await;
    within(Duration::from_secs(1), || async { b.status_with_cookie(&cookies[0]).await == 401 })
        .await;
}

/// With `migrate_on_start = false` a server refuses to start on a schema that is behind, and
/// says what to run; `portcullis migrate` brings it up to date, after which it starts.
#[tokio::test]
async fn migrations_can_be_a_release_step_of_their_own() {
    let database = TestDatabase::create().await;
    let mut raw = portcullis::testing::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.admin_listen = String::new();
    raw.storage.database_url = database.url.clone();
    raw.storage.migrate_on_start = false;
    raw.storage.startup_wait = "1s".into();
    let config = || portcullis::testing::config::Config::try_from(raw.clone()).unwrap();
    let error = portcullis::testing::app::App::start(config())
        .await
        .expect_err("no schema yet")
        .to_string();
    assert!(error.contains("portcullis migrate"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "[storage]\ndatabase_url = \"postgres://127.0.0.1:1/unused\"\ndatabase_direct_url = \"{}\"\n",
        database.url
    );
    std::fs::write(dir.path().join("portcullis.toml"), file).unwrap();
    let migrated =
        crate::support::binary::run(dir.path(), &["--config", "portcullis.toml", "migrate"], "")
            .await;
    let stdout = String::from_utf8_lossy(&migrated.stdout);
    assert!(migrated.status.success(), "{stdout}{}", String::from_utf8_lossy(&migrated.stderr));
    assert!(stdout.contains("schema is at version"), "{stdout}");

    let running = portcullis::testing::app::App::start(config()).await.expect("migrated");
    running.stop().await;
}

/// Kills the connections of `redis` whose last command was `XREAD`: the revocation readers.
async fn kill_revocation_readers(redis_url: &str) -> usize {
    let client = redis::Client::open(redis_url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut connection).await.unwrap();
    let readers: Vec<String> = list
        .lines()
        .filter(|line| line.contains("cmd=xread"))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_owned)
        .collect();
    for id in &readers {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    readers.len()
}

/// The revocation log is read from each replica's own position: a reader whose connection is
/// killed reconnects, reads the logout published meanwhile, and keeps the rest of its cache
/// (another user's next request costs no store operation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_killed_mid_stream_catches_up_without_emptying_its_cache() {
    use crate::support::relay::Protocol;
    let redis = RedisServer::start().await;
    let database = TestDatabase::create().await;
    let prefix = unique_prefix();
    let a = TestApp::builder().database(&database.url).redis(&redis.url(), &prefix).spawn().await;
    let (relay, relayed_url) =
        crate::support::relay::relayed(&redis.url(), Protocol::Redis, None).await;
    let b = TestApp::builder().database(&database.url).redis(&relayed_url, &prefix).spawn().await;
    let ada = a.session_cookie(&a.client(), "ada@example.com").await;
    let bob = a.session_cookie(&a.client(), "bob@example.com").await;
    // B's reader is listening (its first connection empties the cache), then B caches both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.status_with_cookie(&ada).await, 200);
    assert_eq!(b.status_with_cookie(&bob).await, 200);

    assert!(kill_revocation_readers(&redis.url()).await >= 1, "no reader to kill");
    log_out(&a, &ada).await;
    let took =
        within(Duration::from_secs(6), || async { b.status_with_cookie(&ada).await == 401 }).await;
    eprintln!("the logout reached the reconnected reader after {took:?}");

    let (before, commands) = (relay.snapshot().0, relay.sql().len());
    assert_eq!(b.status_with_cookie(&bob).await, 200);
    let sent = &relay.sql()[commands..];
    assert_eq!(relay.snapshot().0 - before, 0, "bob was still cached, nothing flushed: {sent:?}");
}

/// The same over PostgreSQL (no Redis): the reader's connection is terminated by the server,
/// it reconnects, reads the log from its position and keeps its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_reader_killed_catches_up_without_emptying_its_cache() {
    use crate::support::relay::Protocol;
    let database = TestDatabase::create().await;
    let a = TestApp::builder().database(&database.url).spawn().await;
    let (relay, pooled) =
        crate::support::relay::relayed(&database.url, Protocol::Postgres, Some("sslmode=disable"))
            .await;
    let b = TestApp::builder()
        .database(&pooled)
        .config(|raw| raw.storage.database_direct_url = Some(database.url.clone()))
        .spawn()
        .await;
    let ada = a.session_cookie(&a.client(), "ada@example.com").await;
    let bob = a.session_cookie(&a.client(), "bob@example.com").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.status_with_cookie(&ada).await, 200);
    assert_eq!(b.status_with_cookie(&bob).await, 200);

    admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' \
         AND (query LIKE 'LISTEN%' OR query LIKE '%revocation_log%') AND pid <> pg_backend_pid()",
        database.name()
    ))
    .await;
    log_out(&a, &ada).await;
    within(Duration::from_secs(6), || async { b.status_with_cookie(&ada).await == 401 }).await;

    let before = relay.snapshot().0;
    assert_eq!(b.status_with_cookie(&bob).await, 200);
    assert_eq!(relay.snapshot().0 - before, 0, "bob was still cached: nothing was flushed");
}

/// A reader whose connection stalls without closing (a half-open connection: nothing arrives,
/// nothing fails) notices within a few seconds, as its heartbeat goes unanswered, reconnects
/// and reads the logout published meanwhile. The store's shared connection, stalled too, is
/// replaced after a command goes unanswered, so the replica serves again (it used to answer
/// 503 for as long as the stalled connection stayed open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_noticed_and_catches_up() {
    use crate::support::relay::Protocol;
    let database = TestDatabase::create().await;
    let prefix = unique_prefix();
    let a = TestApp::builder().database(&database.url).redis(&redis_url(), &prefix).spawn().await;
    let (relay, relayed_url) =
        crate::support::relay::relayed(&redis_url(), Protocol::Redis, None).await;
    let b = TestApp::builder().database(&database.url).redis(&relayed_url, &prefix).spawn().await;
    let ada = a.session_cookie(&a.client(), "ada@example.com").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.status_with_cookie(&ada).await, 200);

    relay.stall_open_connections();
    log_out(&a, &ada).await;
    // Unanswered for a heartbeat and its deadline (4 s), then a reconnection.
    let took = within(Duration::from_secs(8), || async {
        b.status_with_cookie(&ada).await != StatusCode::OK
    })
    .await;
    assert!(took >= Duration::from_secs(1), "the stall was not in the way: {took:?}");
    // The store's own connection stalled too: it is replaced, and b serves again.
    sign_ups_resume_within(&b, Duration::from_secs(15)).await;
    assert_eq!(b.status_with_cookie(&ada).await, StatusCode::UNAUTHORIZED, "signed out on b");
}

/// PostgreSQL stalls (its connections stay open and nothing is answered, as behind a dead
/// proxy or a hung server): a cache miss is answered 503 within seconds and an auth request
/// within its 30 s deadline, instead of hanging, and once the database answers again on new
/// connections, service resumes without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_database_is_unavailable_not_hung() {
    use crate::support::relay::Protocol;
    let database = TestDatabase::create().await;
    let prefix = unique_prefix();
    let a = TestApp::builder().database(&database.url).redis(&redis_url(), &prefix).spawn().await;
    let (relay, relayed_url) =
        crate::support::relay::relayed(&database.url, Protocol::Postgres, Some("sslmode=disable"))
            .await;
    let b = TestApp::builder()
        .database(&relayed_url)
        .redis(&redis_url(), &prefix)
        .config(|raw| raw.storage.database_direct_url = Some(database.url.clone()))
        .spawn()
        .await;
    let ada = a.session_cookie(&a.client(), "ada@example.com").await;
    let bob = a.session_cookie(&a.client(), "bob@example.com").await;
    assert_eq!(b.status_with_cookie(&ada).await, StatusCode::OK);

    relay.stall_open_connections();
    let started = Instant::now();
    let stalled = crate::support::app::client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(b.url("/x"))
        .header("cookie", &bob)
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(stalled.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert_eq!(b.status_with_cookie(&ada).await, StatusCode::OK, "cached identities flow");
    // An auth request whose statements go unanswered is cut off too (at 30 s).
    let patient =
        crate::support::app::client_builder().timeout(Duration::from_secs(45)).build().unwrap();
    let login = login_request(&b, &patient, "bob@example.com", PASSWORD)
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    within(Duration::from_secs(20), || async { b.status_with_cookie(&bob).await == 200 }).await;
}

/// A client that refreshes twice at once (two tabs, a retry), each request on another replica:
/// both get the same new refresh token, and the sign-in lives on (no reuse alarm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_refreshing_one_token_hand_out_the_same_successor() {
    let replicas = TwoReplicas::with_redis().await;
    let (a, b) = (&replicas.a, &replicas.b);
    a.sign_up(&a.client(), "ada@example.com").await;
    let login = token_login(a, "ada@example.com").await;
    let token = login["refresh_token"].as_str().unwrap();
    let refresh = |app: &TestApp| {
        let url = app.url("/auth/refresh");
        async move {
            let response = crate::support::http()
                .post(url)
                .json(&json!({ "refresh_token": token }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            response.json::<Value>().await.unwrap()
        }
    };
    let (on_a, on_b) = tokio::join!(refresh(a), refresh(b));
    assert_eq!(on_a["refresh_token"], on_b["refresh_token"]);
    // The successor works, once, on either replica.
    let next: Value = crate::support::http()
        .post(b.url("/auth/refresh"))
        .json(&json!({ "refresh_token": on_a["refresh_token"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(next["refresh_token"].as_str().unwrap().starts_with("rt_"));
}

/// Redis Cluster: two replicas on a three-node cluster. Keys spread over the nodes (commands
/// routed by slot), a sign-in on one replica works on the other, a single-use ticket is taken
/// once, the per-IP limit counts on the cluster, and a sign-out reaches the other replica
/// through the revocation stream (on the node of its slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_redis_cluster() {
    let cluster = crate::support::services::RedisCluster::start().await;
    let nodes = StringList(cluster.nodes.iter().map(RedisServer::address).collect());
    let prefix = unique_prefix();
    let database = TestDatabase::create().await;
    let start = || {
        let nodes = nodes.clone();
        TestApp::builder()
            .database(&database.url)
            .redis("redis://cluster-seeds", &prefix)
            .config(move |c| {
                c.storage.redis_cluster_nodes = nodes;
                c.rate_limit.auth_per_minute = portcullis::testing::config::values::Count(1000);
            })
            .spawn()
    };
    let (a, b) = (start().await, start().await);
    let mut cookies = Vec::new();
    for n in 0..6 {
        cookies.push(a.session_cookie(&a.client(), &format!("user{n}@example.com")).await);
    }
    for cookie in &cookies {
        assert_eq!(b.status_with_cookie(cookie).await, 200, "a session made on the other");
    }
    let spread = cluster.keys_per_node(&prefix).await;
    assert!(spread.iter().filter(|&&keys| keys > 0).count() >= 2, "keys on one node: {spread:?}");
    let ready: Value =
        a.client().get(a.admin_url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (&ready["status"], &ready["checks"]["ephemeral_store"]),
        (&json!("ready"), &json!(true))
    );

    // A WebSocket ticket made on A is taken once, on B.
    let client = a.signed_in("ada@example.com").await;
    let token = a.ws_ticket(&client).await;
    let url = b.url(&format!("/ws?access_token={token}")).replace("http://", "ws://");
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    drop(socket);
    let Err(tokio_tungstenite::tungstenite::Error::Http(replayed)) =
        tokio_tungstenite::connect_async(url.as_str()).await
    else {
        panic!("a used ticket must be refused");
    };
    assert_eq!(replayed.status(), 401);

    // A sign-out on B: A, which has the session cached, refuses it within a second.
    let fresh = login_cookie(&b, "user0@example.com").await;
    assert_eq!(a.status_with_cookie(&fresh).await, 200);
    log_out(&b, &fresh).await;
    within(Duration::from_secs(1), || async { a.status_with_cookie(&fresh).await == 401 }).await;
}

/// Redis Sentinel: the primary is the one the Sentinels name. When it crashes and the Sentinel
/// promotes its replica, Portcullis answers 503 meanwhile (never 500), asks the Sentinel again,
/// and writes work on the new primary within seconds, without a restart; sessions made before
/// the crash (replicated) still sign their users in, and the revocation log goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = RedisServer::start().await;
    let replica = RedisServer::reserve().replica_of(&primary);
    let mut replica = replica;
    replica.restart().await;
    let mut sentinel = RedisServer::reserve().sentinel_of(dir.path(), "portcullis-test", &primary);
    sentinel.restart().await;
    let sentinel_client = redis::Client::open(format!("redis://{}", sentinel.address())).unwrap();
    let mut sentinel_connection = sentinel_client.get_multiplexed_async_connection().await.unwrap();
    within(Duration::from_secs(15), || {
        // MultiplexedConnection is a cheap handle: each attempt takes its own.
        let mut connection = sentinel_connection.clone();
        async move {
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg("portcullis-test")
                .query_async(&mut connection)
                .await
                .unwrap();
            !replicas.is_empty()
        }
    })
    .await;

    let sentinels = StringList(vec![sentinel.address()]);
    let prefix = unique_prefix();
    let database = TestDatabase::create().await;
    let start = || {
        let sentinels = sentinels.clone();
        TestApp::builder()
            .database(&database.url)
            .redis("redis://named-by-sentinel", &prefix)
            .config(move |c| {
                c.storage.redis_sentinel_master = Some("portcullis-test".into());
                c.storage.redis_sentinels = sentinels;
                c.session.cache_ttl = "1s".into();
            })
            .spawn()
    };
    let app = start().await;
    let cookie = app.session_cookie(&app.client(), "ada@example.com").await;
    assert_eq!(app.status_with_cookie(&cookie).await, 200);
    // The session reached the replica before the primary goes.
    let mut on_primary = redis::Client::open(primary.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let acknowledged: i64 =
        redis::cmd("WAIT").arg(1).arg(5000).query_async(&mut on_primary).await.unwrap();
    assert_eq!(acknowledged, 1);

    primary.stop().await;
    sign_ups_resume_within(&app, Duration::from_secs(30)).await;
    let named: (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg("portcullis-test")
        .query_async(&mut sentinel_connection)
        .await
        .unwrap();
    assert_eq!(format!("{}:{}", named.0, named.1), replica.address(), "the replica was promoted");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.status_with_cookie(&cookie).await, 200, "a session from before the crash");

    // A second replica, started after the failover, finds the new primary; a sign-out on one
    // reaches the other through the revocation log.
    let other = start().await;
    assert_eq!(other.status_with_cookie(&cookie).await, 200);
    let fresh = login_cookie(&other, "ada@example.com").await;
    assert_eq!(app.status_with_cookie(&fresh).await, 200, "cached on the first replica");
    log_out(&other, &fresh).await;
    within(Duration::from_secs(2), || async { app.status_with_cookie(&fresh).await == 401 }).await;
    drop(replica);
}

/// A failover behind one address (a managed Redis whose name moves to the promoted replica):
/// the connection Portcullis holds now reaches a replica, which answers READONLY. Portcullis
/// answers 503 meanwhile, never 500, replaces the connection, and writes work again within
/// seconds, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_failover_behind_one_address_is_followed() {
    use crate::support::relay::Protocol;
    let old = RedisServer::start().await;
    let new = RedisServer::start().await;
    let (relay, url) = crate::support::relay::relayed(&old.url(), Protocol::Redis, None).await;
    let app = TestApp::builder().redis(&url, &unique_prefix()).spawn().await;
    app.session_cookie(&app.client(), "ada@example.com").await;

    let address = |url: String| -> std::net::SocketAddr {
        let url = reqwest::Url::parse(&url).unwrap();
        format!("127.0.0.1:{}", url.port().unwrap()).parse().unwrap()
    };
    relay.retarget(address(new.url()));
    let old_client = redis::Client::open(old.url()).unwrap();
    let mut old_connection = old_client.get_multiplexed_async_connection().await.unwrap();
    let new_port = address(new.url()).port();
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new_port)
        .query_async(&mut old_connection)
        .await
        .unwrap();

    sign_ups_resume_within(&app, Duration::from_secs(10)).await;
}
