//! `TestApp`: a real Portcullis on ephemeral loopback ports with its own SQLite database, in
//! front of an `EchoUpstream`, plus clients that keep cookies and never follow redirects.

use std::sync::Arc;

use portcullis::testing::app::{App, Running};
use portcullis::testing::clock::{Clock, ManualClock};
use portcullis::testing::config::Config;
use portcullis::testing::config::raw::{RawConfig, RawRoute, RawUpstream};
use portcullis::testing::config::values::Count;
use reqwest::Client;
use serde_json::{Value, json};

use super::echo::{EchoUpstream, Echoed};

pub const PASSWORD: &str = "correct horse battery staple";

/// Builds a [`TestApp`].
pub struct TestAppBuilder {
    raw: RawConfig,
    database_url: Option<String>,
    clock: Option<ManualClock>,
    echo_name: String,
}

impl TestAppBuilder {
    /// Changes the configuration before start.
    pub fn config(mut self, change: impl FnOnce(&mut RawConfig)) -> Self {
        change(&mut self.raw);
        self
    }

    /// Replaces the route table with a `[[routes]]` TOML snippet.
    pub fn routes(self, toml_text: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Routes {
            routes: Vec<RawRoute>,
        }
        let routes: Routes = toml::from_str(toml_text).unwrap();
        self.config(|raw| raw.routes = routes.routes)
    }

    /// Uses this database instead of a SQLite file of its own.
    pub fn database(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    /// Keeps ephemeral state in Redis at `url`, under `prefix`.
    pub fn redis(self, url: &str, prefix: &str) -> Self {
        let (url, prefix) = (url.to_owned(), prefix.to_owned());
        self.config(move |raw| {
            raw.storage.ephemeral = "redis".into();
            raw.storage.redis_url = url;
            raw.storage.redis_prefix = prefix;
        })
    }

    /// Uses a manual clock.
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Starts the echo upstream and Portcullis.
    pub async fn spawn(mut self) -> TestApp {
        super::init();
        let dir = tempfile::tempdir().unwrap();
        let echo = EchoUpstream::start(&self.echo_name).await;
        // The echo app serves every path that no upstream of the test claims; a test that
        // configures the `app` upstream itself leaves its URL empty for the echo app's.
        for upstream in &mut self.raw.upstreams {
            if upstream.name == "app" && upstream.url.is_empty() {
                upstream.url = echo.url();
            }
        }
        if !self.raw.upstreams.iter().any(|upstream| upstream.name == "app") {
            self.raw.upstreams.push(RawUpstream {
                name: "app".into(),
                url: echo.url(),
                ..RawUpstream::default()
            });
        }
        self.raw.storage.database_url = self
            .database_url
            .take()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("portcullis.db").display()));
        let config = Config::try_from(self.raw).unwrap();
        let running = match self.clock.clone() {
            Some(clock) => App::start_with_clock(config, Arc::new(clock) as Arc<dyn Clock>).await,
            None => App::start(config).await,
        }
        .unwrap();
        TestApp { running: Some(running), echo, clock: self.clock, _dir: dir }
    }
}

/// A running Portcullis with its echo upstream.
pub struct TestApp {
    running: Option<Running>,
    pub echo: EchoUpstream,
    pub clock: Option<ManualClock>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// The defaults of the tests: ephemeral ports, generous rate limits.
    pub fn builder() -> TestAppBuilder {
        let mut raw = RawConfig::default();
        raw.server.listen = "127.0.0.1:0".into();
        raw.server.admin_listen = "127.0.0.1:0".into();
        raw.rate_limit.auth_per_minute = Count(10_000);
        raw.rate_limit.failed_credentials_per_minute = Count(10_000);
        TestAppBuilder { raw, database_url: None, clock: None, echo_name: "app".into() }
    }

    /// Starts with the test defaults.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Stops Portcullis (graceful shutdown) and returns when it has.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().http_addr().unwrap())
    }

    /// `https://localhost:port` + `path` (resolve `localhost` to the listener in the client).
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.running().https_addr().unwrap().port())
    }

    /// The admin listener's `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().admin_addr().unwrap())
    }

    /// A client with its own cookie jar that does not follow redirects.
    pub fn client(&self) -> Client {
        client_builder().build().unwrap()
    }

    /// Signs up `email` with the test password on `client`; returns the user JSON.
    pub async fn sign_up(&self, client: &Client, email: &str) -> Value {
        let response = client
            .post(self.url("/auth/signup"))
            .json(&json!({ "email": email, "password": PASSWORD, "name": "Test User" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "signup of {email}");
        response.json::<Value>().await.unwrap()["user"].clone()
    }

    /// Signs up `email` on `client` and returns its session cookie as `name=value`, for
    /// clients that set the `Cookie` header by hand.
    pub async fn session_cookie(&self, client: &Client, email: &str) -> String {
        let response = client
            .post(self.url("/auth/signup"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "signup of {email}");
        super::cookie_pair(&response)
    }

    /// A new client signed up as `email`.
    pub async fn signed_in(&self, email: &str) -> Client {
        let client = self.client();
        self.sign_up(&client, email).await;
        client
    }

    /// The CSRF token for `client`'s session.
    pub async fn csrf(&self, client: &Client) -> String {
        super::csrf::csrf_token(self, client).await
    }

    /// A WebSocket ticket for `client`'s session (`POST /auth/ws-token`); the ticket.
    pub async fn ws_ticket(&self, client: &Client) -> String {
        let csrf = self.csrf(client).await;
        let response =
            client.post(self.url("/auth/ws-token")).header("x-csrf-token", csrf).send().await;
        let ticket: Value = response.unwrap().json().await.unwrap();
        ticket["token"].as_str().unwrap().to_owned()
    }

    /// The status of `GET /x` sent with `cookie` (`name=value`) by a fresh client.
    pub async fn status_with_cookie(&self, cookie: &str) -> reqwest::StatusCode {
        http().get(self.url("/x")).header("cookie", cookie).send().await.unwrap().status()
    }

    /// Creates an API key named `name` for `client`'s user; the key.
    pub async fn api_key(&self, client: &Client, name: &str) -> String {
        let csrf = self.csrf(client).await;
        let response = client
            .post(self.url("/auth/api-keys"))
            .header("x-csrf-token", csrf)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        created["key"].as_str().unwrap().to_owned()
    }

    /// Loads the page at `path` on `client` and returns its form's CSRF token.
    pub async fn form_csrf(&self, client: &Client, path: &str) -> String {
        let html = client.get(self.url(path)).send().await.unwrap().text().await.unwrap();
        form_token(&html)
    }

    /// Follows a magic link as a browser does: opens its confirmation page, which must name
    /// the address, then posts the page's form. Answers the post (not followed).
    pub async fn confirm_magic_link(&self, client: &Client, link: &str) -> reqwest::Response {
        let page = client.get(link).send().await.unwrap();
        assert_eq!(page.status(), 200, "the link opens the confirmation page");
        let html = page.text().await.unwrap();
        assert!(html.contains("Continue as"), "{html}");
        let token = link.split("token=").nth(1).unwrap().split('&').next().unwrap();
        let fields = [("token", token), ("csrf_token", &form_token(&html))];
        super::post_form(self, client, "/auth/magic-link/verify", &fields).await
    }

    /// GETs `path` through the gateway and returns what the app received.
    pub async fn echo(&self, client: &Client, path: &str) -> Echoed {
        let response = client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// How many users the database holds.
    pub async fn user_count(&self) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.running().state().services.db.pool())
            .await
            .unwrap()
            .get("n")
    }
}

/// The client settings every test uses.
pub fn client_builder() -> reqwest::ClientBuilder {
    Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none())
}

/// A fresh client with an empty cookie jar, for bearer-token calls.
pub fn http() -> Client {
    client_builder().build().unwrap()
}

/// The CSRF token of the first form in `html`.
pub fn form_token(html: &str) -> String {
    let start = "name=\"csrf_token\" value=\"";
    let from = html.find(start).expect("a form with a CSRF token") + start.len();
    let to = html[from..].find('"').unwrap() + from;
    html[from..to].to_owned()
}
