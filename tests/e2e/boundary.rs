//! The boundary, tried as an attacker would: paths with more than one meaning, odd methods,
//! two credentials at once, renamed identity headers, two `Host`s, routing headers from
//! strangers, stalled bodies and idle or excess connections, cookie tossing, and the response
//! headers every answer of ours carries.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::testing::config::raw::RawUpstream;
use portcullis::testing::config::values::{Count, Flag, StringList};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::raw::{self, RawResponse};
use crate::support::{EchoUpstream, Echoed, PASSWORD, TestApp, token_login};

const ROUTES: &str = r#"
[[routes]]
path = "/public/*"
access = "public"
[[routes]]
path = "/admin/*"
roles = ["admin"]
[[routes]]
path = "/internal/*"
access = "deny"
[[routes]]
path = "/api/*"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["write"]
on_unauthenticated = "401"
[[routes]]
path = "/cache/*"
methods = ["PURGE"]
access = "deny"
[[routes]]
path = "/reports/*"
methods = ["GET"]
access = "deny"
[[routes]]
path = "/odata/$batch"
access = "deny"
[[routes]]
path = "/ws"
access = "public"
"#;

/// `GET target` over a raw connection, with `headers`.
async fn get(app: &TestApp, target: &str, headers: &[&str]) -> RawResponse {
    raw::request(app.running().http_addr().unwrap(), "GET", target.as_bytes(), headers).await
}

/// The JSON answer to `request`.
async fn json<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}

/// A new API key of the signed-in `owner`, with `scopes`.
async fn api_key(app: &TestApp, owner: &reqwest::Client, scopes: Value) -> String {
    let csrf = app.csrf(owner).await;
    let request = owner
        .post(app.url("/auth/api-keys"))
        .header("x-csrf-token", csrf)
        .json(&json!({ "name": "k", "scopes": scopes }));
    let created: Value = json(request).await;
    created["key"].as_str().unwrap().to_owned()
}

/// Gives `email` the global role `admin` (the identity cache is told).
async fn make_admin(app: &TestApp, email: &str) {
    let state = app.running().state();
    let email = portcullis::testing::identity::Email::parse(email).unwrap();
    let user = state.services.users.find_by_email(&email).await.unwrap().unwrap().0;
    state.services.users.set_roles(user.id, &["admin".into()], state.clock.now()).await.unwrap();
    state.services.sessions.refresh_user(user.id);
}

#[tokio::test]
async fn paths_with_more_than_one_meaning_are_refused_before_any_rule() {
    let app = TestApp::builder().routes(ROUTES).spawn().await;
    let client = app.client();
    let cookie = app.session_cookie(&client, "eve@example.com").await;
    let cookie = format!("Cookie: {cookie}");
    let cases: [(&str, &[&str]); 9] = [
        ("/public/..;/admin/x", &[]),
        ("/public/..%2Fadmin/x", &[]),
        ("/public/..%2fadmin/x", &[]),
        ("/public/..%5Cadmin/x", &[]),
        ("/public/..\\admin/x", &[]),
        ("/admin;jsessionid=1/x", &[&cookie]),
        ("/admin%2fx", &[&cookie]),
        ("/internal;/x", &[&cookie]),
        ("/internal%00/x", &[&cookie]),
    ];
    for (target, headers) in cases {
        let response = get(&app, target, headers).await;
        assert_eq!(response.status, 400, "{target}: {}", response.body);
        assert_eq!(response.error(), "invalid_request", "{target}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
    // A path that only resolves into the auth prefix means Portcullis to one reader and the
    // app to another.
    assert_eq!(get(&app, "//auth/me", &[&cookie]).await.status, 400);
    assert_eq!(get(&app, "/x/../auth/me", &[&cookie]).await.status, 400);
    assert_eq!(get(&app, "/admin%+1", &[&cookie]).await.status, 400, "not an escape");
    // What has one meaning is resolved, and decided as resolved.
    assert_eq!(get(&app, "/public/../admin/x", &[&cookie]).await.status, 403);
    assert_eq!(get(&app, "/odata/%24batch", &[&cookie]).await.status, 403, "%24 is `$`");
    assert_eq!(get(&app, "/odata/$batch", &[&cookie]).await.status, 403);
    assert_eq!(get(&app, "/public/%2e%2e/internal/x", &[]).await.status, 403);
    let echoed = get(&app, "/public/caf%c3%a9/./x", &[]).await.echoed();
    assert_eq!(echoed.path, "/public/caf%C3%A9/x", "forwarded as decided");
}

#[tokio::test]
async fn an_upstream_may_opt_into_matrix_parameters_or_encoded_slashes() {
    let files = EchoUpstream::start("files").await;
    let app = TestApp::builder()
        .routes(ROUTES)
        .config(|raw| {
            raw.upstreams.push(RawUpstream {
                name: "app".into(),
                url: String::new(),
                allow_matrix_params: Flag(true),
                ..RawUpstream::default()
            });
            raw.upstreams.push(RawUpstream {
                name: "files".into(),
                url: files.url(),
                path_prefix: Some("/files".into()),
                allow_encoded_slashes: Flag(true),
                ..RawUpstream::default()
            });
        })
        .spawn()
        .await;
    let client = app.client();
    let cookie = format!("Cookie: {}", app.session_cookie(&client, "eve@example.com").await);
    // Matrix parameters: matched without them, as Tomcat reads the path, forwarded with them.
    assert_eq!(get(&app, "/admin;jsessionid=1/x", &[&cookie]).await.status, 403);
    assert_eq!(get(&app, "/public/..;/admin/x", &[]).await.status, 401);
    make_admin(&app, "eve@example.com").await;
    let echoed = get(&app, "/admin;jsessionid=1/x", &[&cookie]).await.echoed();
    assert_eq!(echoed.path, "/admin;jsessionid=1/x");
    // Encoded slashes stay encoded, one segment, for the upstream that takes them only.
    let echoed = get(&app, "/files/a%2fb", &[&cookie]).await.echoed();
    assert_eq!((echoed.upstream.as_str(), echoed.path.as_str()), ("files", "/files/a%2Fb"));
    assert_eq!(get(&app, "/other/a%2Fb", &[&cookie]).await.status, 400);
    assert_eq!(get(&app, "/files/a;b", &[&cookie]).await.status, 400);
    // A dot segment behind an encoded slash is refused even there: an app that decodes `%2F`
    // after all would step up.
    assert_eq!(get(&app, "/files/..%2Fsecret", &[&cookie]).await.status, 400);
    assert_eq!(get(&app, "/files/a%2F..%2F..%2Fb", &[&cookie]).await.status, 400);
}

#[tokio::test]
async fn standard_methods_match_in_any_case_and_reach_the_app_upper_case() {
    let app = TestApp::builder().routes(ROUTES).spawn().await;
    let owner = app.signed_in("ada@example.com").await;
    let reader = api_key(&app, &owner, json!(["read"])).await;
    let writer = api_key(&app, &owner, json!(["read", "write"])).await;
    let send = |method: &'static str, path: &'static str, key: &str| {
        let request = crate::support::http()
            .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(path))
            .bearer_auth(key);
        async move { request.send().await.unwrap() }
    };
    for method in ["DELETE", "delete", "Delete", "put", "patch", "pOsT"] {
        let response = send(method, "/api/items", &reader).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} with a read-only key");
    }
    // A POST that names another method in its query (Symfony, Laravel, Rails run it so).
    let overriding = send("POST", "/public/x?_method=DELETE", &writer).await;
    assert_eq!(overriding.status(), StatusCode::BAD_REQUEST);
    let encoded = send("POST", "/public/x?%5Fmethod=DELETE", &writer).await;
    assert_eq!(encoded.status(), StatusCode::BAD_REQUEST);
    assert_eq!(send("GET", "/public/x?_method=x", &writer).await.status(), 200, "GET is GET");
    let head = send("HEAD", "/reports/x", &writer).await;
    assert_eq!(head.status(), StatusCode::FORBIDDEN, "a rule on GET covers HEAD");
    let allowed = send("delete", "/api/items", &writer).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.json::<Echoed>().await.unwrap().method, "DELETE");
    // An extension method matches only a rule that names it; one not in upper case is
    // refused, since frameworks upper-case it and would run `PURGE` past the rule.
    assert_eq!(send("PURGE", "/cache/x", &writer).await.status(), StatusCode::FORBIDDEN);
    for method in ["purge", "Purge"] {
        let response = send(method, "/cache/x", &writer).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{method}");
    }
    let other = send("MKCOL", "/dav/x", &writer).await;
    assert_eq!(other.status(), 200, "an extension method no rule names: the path's rule");
    assert_eq!(other.json::<Echoed>().await.unwrap().method, "MKCOL");
}

#[tokio::test]
async fn every_credential_of_ours_is_cut_whichever_one_identified_the_request() {
    let app = TestApp::builder().routes(ROUTES).spawn().await;
    let ada = app.signed_in("ada@example.com").await;
    // Another user's API key and access token, sent beside Ada's cookie.
    let bob = app.signed_in("bob@example.com").await;
    let bobs_key = api_key(&app, &bob, json!(["read"])).await;
    let login = token_login(&app, "bob@example.com").await;
    let bobs_jwt = login["access_token"].as_str().unwrap().to_owned();
    let ticket = app.ws_ticket(&bob).await;

    for bearer in [&bobs_key, &bobs_jwt] {
        let echoed: Echoed = json(ada.get(app.url("/x")).bearer_auth(bearer)).await;
        assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"), "the cookie won");
        assert!(echoed.header("authorization").is_none(), "our credential reached the app");
    }
    let echoed: Echoed =
        json(ada.get(app.url(&format!("/x?room=1&access_token={ticket}&b=2")))).await;
    assert_eq!(echoed.query.as_deref(), Some("room=1&b=2"), "the ticket is cut from the query");
    let echoed: Echoed = json(ada.get(app.url(&format!("/x?access%5Ftoken={ticket}&b=2")))).await;
    assert_eq!(echoed.query.as_deref(), Some("b=2"), "an encoded name is the same parameter");

    // `Authorization` is a single header: two are refused, so none can slip past beside another.
    let two = get(
        &app,
        "/x",
        &["Authorization: Basic YTpi", &format!("Authorization: Bearer {bobs_key}")],
    )
    .await;
    assert_eq!((two.status, two.error().as_str()), (400, "invalid_request"));
    let tab = crate::support::http()
        .get(app.url("/x"))
        .header("authorization", format!("Bearer\t{bobs_key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(tab.json::<Echoed>().await.unwrap().header("authorization"), None);

    // An app cookie that is not UTF-8 hides neither Ada's session nor its removal.
    let ada_cookie = app.session_cookie(&app.client(), "ada2@example.com").await;
    let mut request =
        format!("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nCookie: {ada_cookie}; pref=")
            .into_bytes();
    request.extend_from_slice("café\r\n\r\n".as_bytes());
    let echoed = raw::exchange(app.running().http_addr().unwrap(), &request).await.echoed();
    assert_eq!(echoed.header("x-auth-email"), Some("ada2@example.com"));
    assert_eq!(echoed.header("cookie"), Some("pref=café"));
    // Another issuer's token is the app's business.
    let foreign = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwczovL290aGVyLmV4YW1wbGUifQ.c2ln";
    let echoed: Echoed = json(ada.get(app.url("/x")).bearer_auth(foreign)).await;
    assert_eq!(echoed.header("authorization"), Some(format!("Bearer {foreign}").as_str()));
    let echoed: Echoed = json(ada.get(app.url("/x?access_token=app-own-token"))).await;
    assert_eq!(echoed.query.as_deref(), Some("access_token=app-own-token"));
}

#[tokio::test]
async fn renamed_identity_headers_are_stripped_in_every_spelling() {
    let app = TestApp::builder()
        .routes(ROUTES)
        .config(|raw| {
            raw.headers.user_id = Some("Remote-User".into());
            raw.headers.roles = Some("Remote-Groups".into());
            raw.headers.email = Some("Remote-Email".into());
        })
        .spawn()
        .await;
    let spoofs = ["Remote-User: admin", "Remote-Groups: admin", "Remote_Groups: admin"];
    let echoed = get(&app, "/public/x", &spoofs).await.echoed();
    for name in ["remote-user", "remote-groups", "remote_groups"] {
        assert!(!echoed.headers.contains_key(name), "{name} reached the app: {:?}", echoed.headers);
    }
    let client = app.client();
    let cookie = format!("Cookie: {}", app.session_cookie(&client, "ada@example.com").await);
    let mut headers = spoofs.to_vec();
    headers.push(&cookie);
    let echoed = get(&app, "/dashboard", &headers).await.echoed();
    assert_ne!(echoed.header("remote-user"), Some("admin"));
    assert_eq!(echoed.header("remote-email"), Some("ada@example.com"));
    assert!(
        !echoed.headers.contains_key("remote-groups"),
        "Ada has no roles: {:?}",
        echoed.headers
    );
    assert!(!echoed.headers.contains_key("remote_groups"));
}

#[tokio::test]
async fn a_request_has_one_host_and_strangers_cannot_name_the_path() {
    let app = TestApp::builder().routes(ROUTES).spawn().await;
    let two = get(&app, "/public/x", &["Host: a.example", "Host: b.example"]).await;
    assert_eq!((two.status, two.error().as_str()), (400, "invalid_request"));

    // HTTP/2: `:authority` and a `Host` header that disagree.
    let stream = tokio::net::TcpStream::connect(app.running().http_addr().unwrap()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("http://a.example/public/x")
        .header("host", "b.example")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 400, "Host and :authority disagree");
    let request =
        http::Request::get("http://a.example/public/x").body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echoed: Echoed = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed.header("host"), Some("a.example"), "HTTP/1.1 apps get the authority");

    let routing = [
        "X-Original-URL: /admin/x",
        "X-Rewrite-URL: /admin/x",
        "X-Forwarded-Prefix: /admin",
        "X-Forwarded-Port: 8443",
        "X-Forwarded-Server: evil",
        "X-Host: evil.example",
        "X_Original_URL: /admin/x",
        "Forwarded: host=evil.example",
    ];
    let echoed = get(&app, "/public/x", &routing).await.echoed();
    for name in ["x-original-url", "x-rewrite-url", "x-forwarded-prefix", "x-forwarded-port"] {
        assert!(!echoed.headers.contains_key(name), "{name}: {:?}", echoed.headers);
    }
    for name in ["x-forwarded-server", "x-host", "x_original_url", "forwarded"] {
        assert!(!echoed.headers.contains_key(name), "{name}: {:?}", echoed.headers);
    }

    // From a trusted proxy they are its own and pass.
    let trusting = TestApp::builder()
        .routes(ROUTES)
        .config(|raw| raw.server.trusted_proxies = StringList(vec!["127.0.0.1/32".into()]))
        .spawn()
        .await;
    let echoed = get(&trusting, "/public/x", &routing).await.echoed();
    assert_eq!(echoed.header("x-forwarded-prefix"), Some("/admin"));
    assert_eq!(echoed.header("x-forwarded-server"), Some("evil"));
    // A header naming another path or method is never the app's to follow: the decision was
    // made on the request's own.
    for name in ["x-original-url", "x-rewrite-url", "x_original_url"] {
        assert!(!echoed.headers.contains_key(name), "{name} from a trusted proxy");
    }
    let overrides =
        ["X-HTTP-Method-Override: DELETE", "X-Method-Override: DELETE", "X-HTTP-Method: DELETE"];
    let echoed = get(&trusting, "/public/x", &overrides).await.echoed();
    assert_eq!(echoed.method, "GET");
    for name in ["x-http-method-override", "x-method-override", "x-http-method"] {
        assert!(!echoed.headers.contains_key(name), "{name}");
    }
}

#[tokio::test]
async fn stalled_bodies_are_cut_off() {
    let app = TestApp::builder()
        .routes(ROUTES)
        .config(|raw| raw.server.body_read_timeout = "1s".into())
        .spawn()
        .await;
    let addr = app.running().http_addr().unwrap();
    for path in ["/public/upload", "/auth/signup"] {
        let started = std::time::Instant::now();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{"
        );
        let response = raw::exchange(addr, request.as_bytes()).await;
        assert_eq!(response.status, 408, "{path}: {}", response.body);
        assert_eq!(response.error(), "request_timeout", "{path}");
        assert!(started.elapsed() < Duration::from_secs(5), "{path}: {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn idle_connections_are_closed_and_excess_ones_refused() {
    let app = TestApp::builder()
        .config(|raw| {
            raw.server.idle_timeout = "1s".into();
            raw.server.max_connections = Count(2);
        })
        .routes(ROUTES)
        .spawn()
        .await;
    let addr = app.running().http_addr().unwrap();

    // An HTTP/2 connection that made one request and then went quiet.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{addr}/public/x"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(closed.is_ok(), "the idle HTTP/2 connection is still open after 5 s");

    // Two connections are the limit; a third is told so and closed.
    // Each is served once, so both surely hold their slots. The HTTP/2 connection's slot may
    // still be held for a moment (the client sees the close before the server's side ends).
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /public/x HTTP/1.1\r\nHost: app\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        if &head == b"HTTP/1.1 200" {
            held.push(stream);
            if held.len() == 2 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(held.len(), 2, "two connections are served");
    let refused = raw::exchange(addr, b"").await;
    assert_eq!((refused.status, refused.error().as_str()), (503, "overloaded"));
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A WebSocket keeps its slot after the upgrade, until it closes.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
    socket.send(tokio_tungstenite::tungstenite::Message::text("hi")).await.unwrap();
    assert!(socket.next().await.is_some());
    let other = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = raw::exchange(addr, b"").await;
    assert_eq!(refused.status, 503, "the WebSocket still holds its slot");
    drop((socket, other));
    // Once they are gone, connections are served again.
    let mut served = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if get(&app, "/public/x", &[]).await.status == 200 {
            served += 1;
            break;
        }
    }
    assert_eq!(served, 1);
}

#[tokio::test]
async fn answers_are_hardened_and_session_cookies_cannot_be_tossed() {
    let app = TestApp::builder()
        .routes(ROUTES)
        .config(|raw| {
            raw.server.public_url = Some("https://app.example".into());
            raw.email.force_log_transport = Flag(true);
        })
        .spawn()
        .await;
    let providers = app.client().get(app.url("/auth/providers")).send().await.unwrap();
    assert_eq!(providers.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(providers.headers()["x-content-type-options"], "nosniff");
    let refused = get(&app, "/dashboard", &["Accept: application/json"]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(refused.header("strict-transport-security"), Some("max-age=31536000"));
    let redirect = get(&app, "/dashboard", &["Accept: text/html"]).await;
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("x-content-type-options"), Some("nosniff"));

    // https without a cookie domain: the session cookie is `__Host-`, out of a sibling's reach.
    let signup = app
        .client()
        .post(app.url("/auth/signup"))
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    let set_cookie = signup.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("__Host-portcullis_session=v2."), "{set_cookie}");
    assert!(set_cookie.contains("Secure") && set_cookie.contains("Path=/"), "{set_cookie}");
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    let value = set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();

    let as_ada = |cookie: String| {
        let app = &app;
        async move {
            let headers = [format!("Cookie: {cookie}"), "Accept: application/json".to_owned()];
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            get(app, "/dashboard", &headers).await
        }
    };
    let seen = as_ada(format!("__Host-portcullis_session={value}")).await;
    assert_eq!(seen.echoed().header("x-auth-email"), Some("ada@example.com"));
    assert!(seen.echoed().header("cookie").is_none(), "our cookie never reaches the app");
    // A session issued since the switch, planted under the old name, is not read.
    let planted = as_ada(format!("portcullis_session={value}")).await;
    assert_eq!(planted.status, 401, "{}", planted.body);
    // A sibling subdomain can plant only the old name; the prefixed cookie wins over it.
    let seen =
        as_ada(format!("portcullis_session=v1.planted; __Host-portcullis_session={value}")).await;
    assert_eq!(seen.echoed().header("x-auth-email"), Some("ada@example.com"));

    // Without the prefix (plain http), two different session cookies are refused, not guessed.
    let plain = TestApp::builder().routes(ROUTES).spawn().await;
    let client = plain.client();
    let cookie = plain.session_cookie(&client, "ada@example.com").await;
    let mallory = plain.client();
    let planted = plain.session_cookie(&mallory, "mallory@example.com").await;
    for order in [format!("{planted}; {cookie}"), format!("{cookie}; {planted}")] {
        let headers = [format!("Cookie: {order}"), "Accept: application/json".to_owned()];
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let refused = get(&plain, "/dashboard", &headers).await;
        assert_eq!(refused.status, 401, "{order}: {}", refused.body);
    }
    // And there is no HSTS over a plain http public URL.
    let response = plain.client().get(plain.url("/auth/providers")).send().await.unwrap();
    assert!(response.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn sessions_from_before_the_host_prefix_keep_their_old_cookie_name() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("shared.db").display());
    let mut before = TestApp::builder().routes(ROUTES).database(&database).spawn().await;
    let client = before.client();
    let old = before.session_cookie(&client, "ada@example.com").await;
    assert!(old.starts_with("portcullis_session="), "{old}");
    before.stop().await;

    let after = TestApp::builder()
        .routes(ROUTES)
        .database(&database)
        .config(|raw| {
            raw.server.public_url = Some("https://app.example".into());
            raw.email.force_log_transport = Flag(true);
        })
        .spawn()
        .await;
    let headers = [format!("Cookie: {old}"), "Accept: application/json".to_owned()];
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let seen = get(&after, "/dashboard", &headers).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.echoed().header("x-auth-email"), Some("ada@example.com"));
    assert!(seen.echoed().header("cookie").is_none(), "the old name is ours too");
}

/// A client that trickles a request's headers (slow-loris) loses the connection, on a fresh
/// connection and on a kept-alive one alike, however steadily it trickles: the headers of a
/// request must all arrive within the limit (at most `server.idle_timeout`).
#[tokio::test]
async fn trickled_request_headers_lose_the_connection() {
    let app = TestApp::builder()
        .config(|raw| raw.server.idle_timeout = "1s".into())
        .routes(ROUTES)
        .spawn()
        .await;
    let addr = app.running().http_addr().unwrap();
    for kept_alive in [false, true] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        if kept_alive {
            stream.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
            let mut answer = [0u8; 4096];
            let read = stream.read(&mut answer).await.unwrap();
            assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "kept alive after one request");
        }
        stream.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let closed = async {
            let mut buffer = [0u8; 256];
            loop {
                // One more header byte every 200 ms: never idle, never finished.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b"X").await.is_err() {
                    return;
                }
                let read = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buffer));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    return;
                }
            }
        };
        let closed = tokio::time::timeout(Duration::from_secs(5), closed).await;
        assert!(
            closed.is_ok(),
            "kept_alive={kept_alive}: still open after {:?}",
            started.elapsed()
        );
    }
}
