//! The real binary: the quick start on embedded defaults, `check-config`, the user CLI,
//! SIGTERM, and a 1 GiB upload through the proxy process with flat memory.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::support::binary::{Binary, run};
use crate::support::{EchoUpstream, Echoed, PASSWORD, password_login, token_login};

fn client() -> reqwest::Client {
    crate::support::init();
    crate::support::app::client_builder().build().unwrap()
}

/// The ports are the only thing changed from the embedded defaults (tests run in parallel).
const EPHEMERAL_PORTS: [(&str, &str); 2] = [
    ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0"),
    ("PORTCULLIS_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
];

/// A directory holding a `portcullis.toml` (listener on an ephemeral port, no admin listener,
/// the database at `database_url`, one upstream `app` echoing what it gets), where the CLI and
/// the server both run.
struct CliSetup {
    dir: tempfile::TempDir,
    _echo: EchoUpstream,
}

impl CliSetup {
    /// A setup whose database URL `database_url` makes from the directory.
    async fn new(database_url: impl FnOnce(&std::path::Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let echo = EchoUpstream::start("app").await;
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n[storage]\ndatabase_url = \"{}\"\n[[upstreams]]\nname = \"app\"\nurl = \"{}\"\n",
            database_url(dir.path()),
            echo.url()
        );
        std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
        Self { dir, _echo: echo }
    }

    /// Runs `portcullis --config portcullis.toml ARGS` with `stdin`.
    async fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut full = vec!["--config", "portcullis.toml"];
        full.extend_from_slice(args);
        run(self.dir.path(), &full, stdin).await
    }

    /// Starts the server on this configuration.
    async fn start(&self) -> Binary {
        Binary::start(self.dir.path(), &["--config", "portcullis.toml"], &[]).await
    }
}

#[tokio::test]
async fn quick_start_on_embedded_defaults_shows_the_demo_app() {
    let dir = tempfile::tempdir().unwrap();
    let mut portcullis = Binary::start(dir.path(), &[], &EPHEMERAL_PORTS).await;
    assert!(
        dir.path().join("portcullis.db").exists(),
        "SQLite file created in the working directory"
    );
    let client = client();
    let to_sign_in = client
        .get(format!("{}/", portcullis.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(to_sign_in.status(), 302);
    let sign_in = client.get(format!("{}/auth/sign-in", portcullis.url)).send().await.unwrap();
    assert!(sign_in.text().await.unwrap().contains("Create an account"));

    let signup = client
        .post(format!("{}/auth/signup", portcullis.url))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let page = client
        .get(format!("{}/", portcullis.url))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Hello, ada@example.com"), "{html}");
    assert!(html.contains("x-auth-user-id"));
    let json: Value = client
        .get(format!("{}/me.json", portcullis.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["identity"]["x-auth-email"], "ada@example.com");
    let ready = client
        .get(format!("{}/readyz", portcullis.admin_url.as_ref().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // The container HEALTHCHECK: no shell, no curl; an admin listener on every interface is
    // asked on loopback.
    let admin_port = portcullis.admin_url.as_ref().unwrap().rsplit(':').next().unwrap().to_owned();
    let config = format!("[server]\nadmin_listen = \"0.0.0.0:{admin_port}\"\n");
    std::fs::write(dir.path().join("healthcheck.toml"), config).unwrap();
    let healthcheck = ["healthcheck", "--config", "healthcheck.toml"];
    let healthy = run(dir.path(), &healthcheck, "").await;
    assert!(healthy.status.success(), "{}", String::from_utf8_lossy(&healthy.stderr));

    portcullis.signal("INT");
    assert!(portcullis.wait(Duration::from_secs(10)).await.success(), "exit 0 on SIGINT (Ctrl-C)");
    let gone = run(dir.path(), &healthcheck, "").await;
    assert_eq!(gone.status.code(), Some(1), "nothing answers any more");
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_then_exits_zero() {
    let echo = EchoUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n[[upstreams]]\nname = \"app\"\nurl = \"{}\"\n[[routes]]\npath = \"*\"\naccess = \"public\"\n",
        echo.url()
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    let mut portcullis = Binary::start(dir.path(), &["--config", "portcullis.toml"], &[]).await;
    let slow = tokio::spawn(client().get(format!("{}/slow?sleep_ms=800", portcullis.url)).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    portcullis.terminate();
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert!(portcullis.wait(Duration::from_secs(10)).await.success());
    assert!(portcullis.logged("portcullis stopped", Duration::from_secs(5)).await);
}

#[tokio::test]
async fn check_config_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "a-very-secret-hmac-key-of-32-bytes-or-more\n")
        .unwrap();
    std::fs::write(
        dir.path().join("ok.toml"),
        "[auth]\nsecret_file = \"secret\"\n[storage]\ndatabase_url = \"postgres://user:hunter2@db/portcullis\"\n",
    )
    .unwrap();
    let output = run(dir.path(), &["check-config", "--config", "ok.toml"], "").await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed.contains("[server]") && printed.contains("listen = \"127.0.0.1:8080\""),
        "{printed}"
    );
    assert!(!printed.contains("a-very-secret") && !printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("postgres://user:********@db/portcullis"), "{printed}");

    std::fs::write(dir.path().join("typo.toml"), "[session]\ncookie_nmae = \"x\"\n").unwrap();
    let output = run(dir.path(), &["check-config", "--config", "typo.toml"], "").await;
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.contains("session") && error.contains("cookie_nmae"), "{error}");

    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nmax_body = \"lots\"\n[[routes]]\npath = \"x\"\n",
    )
    .unwrap();
    let output = run(dir.path(), &["check-config", "--config", "bad.toml"], "").await;
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.contains("server.max_body") && error.contains("routes[0].path"), "{error}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let output = run(dir.path(), &["check-config", "--config", example], "").await;
    assert!(
        output.status.success(),
        "config.example.toml: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_user_cli_creates_sets_roles_and_disables() {
    let setup = CliSetup::new(|dir| format!("sqlite://{}", dir.join("users.db").display())).await;
    let cli = |args: &'static [&'static str], stdin: &'static str| setup.cli(args, stdin);
    let created = cli(
        &[
            "user",
            "create",
            "ada@example.com",
            "--name",
            "Ada",
            "--roles",
            "admin,support",
            "--password-stdin",
        ],
        "correct horse battery staple\n",
    )
    .await;
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let weak = cli(&["user", "create", "bob@example.com", "--password-stdin"], "password\n").await;
    assert!(!weak.status.success());
    let bad_role = cli(&["user", "set-roles", "ada@example.com", "Not A Role"], "").await;
    assert!(!bad_role.status.success());

    let mut portcullis = setup.start().await;
    let client = client();
    let login = password_login(&portcullis, &client, "ada@example.com", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let echoed: Echoed =
        client.get(format!("{}/x", portcullis.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed.header("x-auth-roles"), Some("admin,support"));
    assert_eq!(echoed.header("x-auth-name"), Some("Ada"));

    let set = cli(&["user", "set-roles", "ada@example.com", "support"], "").await;
    assert!(set.status.success());
    let disabled = cli(&["user", "disable", "ada@example.com"], "").await;
    assert!(disabled.status.success(), "{}", String::from_utf8_lossy(&disabled.stderr));
    assert!(String::from_utf8_lossy(&disabled.stdout).contains("ended 1 session"));
    // The session is gone from the shared store; the server's cache holds it at most cache_ttl.
    let after = client.get(format!("{}/auth/sessions", portcullis.url)).send().await.unwrap();
    assert_eq!(after.status(), 200, "still cached (30 s by default)");
    let fresh = crate::support::app::client_builder().build().unwrap();
    let login = password_login(&portcullis, &fresh, "ada@example.com", PASSWORD).await;
    assert_eq!(login.status(), 401, "disabled users cannot sign in");
    let missing = cli(&["user", "disable", "nobody@example.com"], "").await;
    assert!(!missing.status.success());
    portcullis.terminate();
    portcullis.wait(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_api_key_and_signing_key_clis() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoUpstream::start("app").await;
    // The same port for both starts: the public URL derived from it is the tokens' issuer.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"\"\n[storage]\ndatabase_url = \"sqlite://{}\"\n[[upstreams]]\nname = \"app\"\nurl = \"{}\"\n",
        dir.path().join("keys.db").display(),
        echo.url()
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    let cli = |args: Vec<String>, stdin: &'static str| {
        let dir = dir.path().to_owned();
        async move {
            let mut full = vec!["--config".to_owned(), "portcullis.toml".to_owned()];
            full.extend(args);
            let full: Vec<&str> = full.iter().map(String::as_str).collect();
            let output = run(&dir, &full, stdin).await;
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            (output.status.success(), stdout, String::from_utf8_lossy(&output.stderr).into_owned())
        }
    };
    let args = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let (ok, _, err) =
        cli(args("user create ada@example.com --password-stdin"), "correct horse battery staple\n")
            .await;
    assert!(ok, "{err}");
    let (ok, out, err) =
        cli(args("api-key create ada@example.com --name ci --scopes read,deploy"), "").await;
    assert!(ok, "{err}");
    let key = out.lines().next().unwrap().to_owned();
    assert!(key.starts_with("pk_"), "{out}");
    let (ok, out, _) = cli(args("api-key list ada@example.com"), "").await;
    assert!(ok && out.contains(" ci ") && out.contains("scopes=[deploy,read]"), "{out}");
    assert!(!out.contains(&key), "the key is never shown again");
    let id = out.split_whitespace().next().unwrap().to_owned();
    let (ok, out, _) = cli(args("keys list"), "").await;
    assert!(ok && out.contains("no signing keys yet"), "{out}");

    let mut portcullis = Binary::start(dir.path(), &["--config", "portcullis.toml"], &[]).await;
    let bearer = |token: String| {
        let url = format!("{}/x", portcullis.url);
        async move { client().get(url).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(bearer(key.clone()).await, 200);
    let login = token_login(&portcullis, "ada@example.com").await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    assert_eq!(bearer(access.clone()).await, 200);
    portcullis.terminate();
    portcullis.wait(Duration::from_secs(10)).await;

    let (ok, out, err) = cli(args("keys rotate"), "").await;
    assert!(ok && out.contains("new signing key"), "{out}{err}");
    let (ok, out, _) = cli(args("keys list"), "").await;
    assert!(
        ok && out.lines().count() == 2 && out.contains("retired") && out.contains("current"),
        "{out}"
    );
    let (ok, _, err) =
        cli(vec!["api-key".into(), "revoke".into(), "ada@example.com".into(), id.clone()], "")
            .await;
    assert!(ok, "{err}");
    let (ok, _, _) =
        cli(vec!["api-key".into(), "revoke".into(), "ada@example.com".into(), id], "").await;
    assert!(!ok, "revoking twice is an error");

    let mut portcullis = Binary::start(dir.path(), &["--config", "portcullis.toml"], &[]).await;
    let status = client()
        .get(format!("{}/x", portcullis.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "the revoked key is refused");
    let status = client()
        .get(format!("{}/x", portcullis.url))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "a token signed before the rotation still works");
    portcullis.terminate();
    portcullis.wait(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_running_servers_through_postgres() {
    let database = crate::support::services::TestDatabase::create().await;
    let setup = CliSetup::new(|_| database.url.clone()).await;
    let cli = |args: &'static [&'static str]| setup.cli(args, "");
    let mut portcullis = setup.start().await;
    let client = client();
    let signup = client
        .post(format!("{}/auth/signup", portcullis.url))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let roles = |client: reqwest::Client, url: String| async move {
        let response = client.get(format!("{url}/x")).send().await.unwrap();
        if response.status() != 200 {
            return None;
        }
        let echoed: Echoed = response.json().await.unwrap();
        Some(echoed.header("x-auth-roles").unwrap_or("").to_owned())
    };
    assert_eq!(roles(client.clone(), portcullis.url.clone()).await.as_deref(), Some(""));

    // A role change by the CLI shows on the server's next request (it had the identity cached).
    let set = cli(&["user", "set-roles", "ada@example.com", "support"]).await;
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let started = std::time::Instant::now();
    while roles(client.clone(), portcullis.url.clone()).await.as_deref() != Some("support") {
        assert!(started.elapsed() < Duration::from_secs(1), "the role change did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Disabling ends the session on the running server within a second.
    let disabled = cli(&["user", "disable", "ada@example.com"]).await;
    assert!(disabled.status.success(), "{}", String::from_utf8_lossy(&disabled.stderr));
    let started = std::time::Instant::now();
    while roles(client.clone(), portcullis.url.clone()).await.is_some() {
        assert!(started.elapsed() < Duration::from_secs(1), "the disable did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    portcullis.terminate();
    portcullis.wait(Duration::from_secs(10)).await;
}

/// The CLI runs the server's own account flow: disabling ends token sign-ins as well as
/// browser sessions, and a running server refuses the access token and the refresh token at
/// once (it had the token's identity cached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_disable_ends_token_sign_ins_on_running_servers() {
    let database = crate::support::services::TestDatabase::create().await;
    let setup = CliSetup::new(|_| database.url.clone()).await;
    let cli = |args: &'static [&'static str], stdin: &'static str| setup.cli(args, stdin);
    let created = cli(
        &["user", "create", "ada@example.com", "--password-stdin"],
        "correct horse battery staple\n",
    )
    .await;
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let mut portcullis = setup.start().await;
    let client = client();
    let login = token_login(&portcullis, "ada@example.com").await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let bearer = |token: String| {
        let (client, url) = (client.clone(), format!("{}/x", portcullis.url));
        async move { client.get(url).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(bearer(access.clone()).await, 200, "cached from here on");

    let disabled = cli(&["user", "disable", "ada@example.com"], "").await;
    assert!(disabled.status.success(), "{}", String::from_utf8_lossy(&disabled.stderr));
    let said = String::from_utf8_lossy(&disabled.stdout).into_owned();
    assert!(said.contains("ended 0 session(s) and 1 token sign-in(s)"), "{said}");
    let started = std::time::Instant::now();
    while bearer(access.clone()).await != 401 {
        assert!(started.elapsed() < Duration::from_secs(1), "the access token still works");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refreshed = client
        .post(format!("{}/auth/refresh", portcullis.url))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 401, "the token family is revoked");
    portcullis.terminate();
    portcullis.wait(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn dev_mode_warns_at_start_and_the_cli_mints_single_use_sign_in_links() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoUpstream::start("app").await;
    // A fixed port: the link the CLI prints points at the server's public URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"\"\n[storage]\ndatabase_url = \"sqlite://{}\"\n[dev]\nenabled = true\n[[upstreams]]\nname = \"app\"\nurl = \"{}\"\n",
        dir.path().join("links.db").display(),
        echo.url()
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    let mut portcullis = Binary::start(dir.path(), &["--config", "portcullis.toml"], &[]).await;
    assert!(portcullis.logged("DEV SIGN-IN IS ON", Duration::from_secs(5)).await);
    let dev = client()
        .post(format!("{}/auth/dev-sign-in", portcullis.url))
        .json(&json!({"email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dev.status(), 200);

    let args = ["--config", "portcullis.toml", "user", "sign-in-link", "ada@example.com"];
    let output = run(dir.path(), &[&args[..], &["--redirect", "/inbox"]].concat(), "").await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let link = stdout.lines().next().unwrap().to_owned();
    assert!(link.starts_with(&format!("http://127.0.0.1:{port}/auth/one-time?token=")), "{link}");
    let browser = client();
    let first = browser.get(&link).send().await.unwrap();
    assert_eq!(first.status(), 302);
    assert_eq!(first.headers()["location"], "/inbox");
    let second = client().get(&link).send().await.unwrap();
    assert_eq!(second.status(), 401, "a link works once");
    let outside =
        run(dir.path(), &[&args[..], &["--redirect", "https://evil.example/"]].concat(), "").await;
    assert!(!outside.status.success(), "redirects are validated like everywhere else");
    let nobody = run(
        dir.path(),
        &["--config", "portcullis.toml", "user", "sign-in-link", "x@example.com"],
        "",
    )
    .await;
    assert!(!nobody.status.success());
    portcullis.terminate();
    portcullis.wait(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gibibyte_upload_streams_through_with_flat_memory() {
    const TOTAL: u64 = 1 << 30;
    const CHUNK: usize = 256 * 1024;
    let echo = EchoUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\nmax_body = \"2GiB\"\n[[upstreams]]\nname = \"app\"\nurl = \"{}\"\n[[routes]]\npath = \"/upload\"\naccess = \"public\"\n",
        echo.url()
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    let mut portcullis = Binary::start(dir.path(), &["--config", "portcullis.toml"], &[]).await;
    let baseline = portcullis.peak_rss_kib();

    let digest = Arc::new(Mutex::new(ring::digest::Context::new(&ring::digest::SHA256)));
    let sink = Arc::clone(&digest);
    let chunks = futures_util::stream::iter(0..TOTAL / CHUNK as u64).map(move |index| {
        let chunk = vec![u8::try_from(index % 251).unwrap(); CHUNK];
        sink.lock().update(&chunk);
        Ok::<_, std::io::Error>(chunk)
    });
    use futures_util::StreamExt;
    let response = client()
        .post(format!("{}/upload", portcullis.url))
        .header("content-length", TOTAL.to_string())
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.body_len, TOTAL);
    let expected = Arc::try_unwrap(digest).ok().unwrap().into_inner().finish();
    assert_eq!(echoed.body_sha256, crate::support::echo::hex(expected.as_ref()));
    let peak = portcullis.peak_rss_kib();
    assert!(
        peak - baseline < 64 * 1024,
        "proxy memory grew by {} KiB for a 1 GiB upload",
        peak - baseline
    );
    portcullis.terminate();
    portcullis.wait(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_with_who_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = EPHEMERAL_PORTS.to_vec();
    env.push(("PORTCULLIS_LOG__FORMAT", "json"));
    let portcullis = Binary::start(dir.path(), &[], &env).await;
    let client = client();
    let signup = client
        .post(format!("{}/auth/signup", portcullis.url))
        .header("x-request-id", "signup-1")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let session = signup.headers()["set-cookie"].to_str().unwrap().to_owned();
    let user_id = signup.json::<Value>().await.unwrap()["user"]["id"].as_str().unwrap().to_owned();
    let page = client
        .get(format!("{}/me.json?token=secret-in-query", portcullis.url))
        .header("x-request-id", "page-1")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(portcullis.logged("\"request_id\":\"page-1\"", Duration::from_secs(5)).await);

    let log = portcullis.log.lock().clone();
    let line = |id: &str| -> Value {
        let needle = format!("\"request_id\":\"{id}\"");
        let line = log.lines().find(|line| line.contains(&needle)).unwrap();
        serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
    };
    let proxied = line("page-1");
    let fields = &proxied["fields"];
    assert_eq!(fields["class"], "proxy");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["auth_method"], "session");
    assert_eq!(fields["user_id"], user_id.as_str());
    assert_eq!(fields["path"], "/me.json", "the path only: queries can hold tokens");
    assert!(fields["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line("signup-1")["fields"]["class"], "auth");
    let cookie_value = session.split(';').next().unwrap().split_once('=').unwrap().1;
    for secret in [PASSWORD, cookie_value, "secret-in-query"] {
        assert!(!log.contains(secret), "{secret} was logged");
    }
}
