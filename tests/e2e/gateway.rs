//! The gateway: forwarding, header rules, route policy, streaming, upgrades, upstream faults.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use portcullis::testing::config::raw::RawUpstream;
use portcullis::testing::config::values::{Flag, StringList};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{EchoUpstream, Echoed, TestApp};

#[tokio::test]
async fn a_signed_in_request_reaches_the_app_with_identity_headers() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let user = app.sign_up(&client, "ada@example.com").await;
    let echoed = app.echo(&client, "/hello/world?x=1&y=2").await;
    assert_eq!(echoed.path, "/hello/world");
    assert_eq!(echoed.query.as_deref(), Some("x=1&y=2"));
    assert_eq!(echoed.header("x-auth-user-id"), user["id"].as_str());
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));
    assert_eq!(echoed.header("x-auth-name"), Some("Test User"));
    assert_eq!(echoed.header("x-auth-method"), Some("session"));
    assert_eq!(echoed.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echoed.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echoed.header("x-forwarded-host"), Some(app.url("").trim_start_matches("http://")));
    assert!(echoed.header("cookie").is_none(), "our session cookie never reaches the app");
}

#[tokio::test]
async fn unauthenticated_browsers_are_redirected_and_apis_get_401() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let browser = client
        .get(app.url("/dashboard?tab=2"))
        .header("accept", "text/html,*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::FOUND);
    assert_eq!(browser.headers()["location"], "/auth/sign-in?redirect_uri=%2Fdashboard%3Ftab%3D2");

    let api = client
        .get(app.url("/dashboard"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert!(api.headers().contains_key("x-request-id"));
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    let post =
        client.post(app.url("/dashboard")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED, "only GET/HEAD navigations are redirected");
}

#[tokio::test]
async fn client_identity_headers_are_stripped_in_every_spelling_even_on_public_routes() {
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"/public/*\"\naccess = \"public\"\n")
        .spawn()
        .await;
    let anonymous = app.client();
    let response = anonymous
        .get(app.url("/public/page"))
        .header("X-Auth-User-Id", "spoofed-admin")
        .header("x_auth_email", "spoof@evil.example")
        .header("X-Auth-Roles", "admin")
        .header("X-Auth-Whatever", "x")
        .header("X-Forwarded-Email", "spoof@evil.example")
        .header("X-Forwarded-User", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Echoed = response.json().await.unwrap();
    for name in [
        "x-auth-user-id",
        "x_auth_email",
        "x-auth-roles",
        "x-auth-whatever",
        "x-forwarded-email",
        "x-forwarded-user",
    ] {
        assert!(!echoed.headers.contains_key(name), "{name} reached the app: {:?}", echoed.headers);
    }

    // Signed in: our values replace the client's, never appended beside them.
    let client = app.signed_in("ada@example.com").await;
    let echoed: Echoed = client
        .get(app.url("/public/page"))
        .header("X-Auth-Email", "spoof@evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));
}

#[tokio::test]
async fn our_cookies_are_cut_out_and_the_apps_pass_unchanged() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let session = app.session_cookie(&client, "ada@example.com").await;
    let bare = reqwest::Client::builder().build().unwrap();
    let echoed: Echoed = bare
        .get(app.url("/x"))
        .header("cookie", format!("app_theme=dark; {session}; portcullis_csrf=abc; other=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed.header("cookie"), Some("app_theme=dark; other=1"));
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));

    // And the app cannot set ours.
    let response = client.get(app.url("/x?set_cookies=1")).send().await.unwrap();
    let set: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(set, ["app_pref=dark; Path=/"]);
}

#[tokio::test]
async fn oauth2_proxy_preset_emits_its_header_names() {
    let app = TestApp::builder().config(|c| c.headers.preset = "oauth2-proxy".into()).spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let echoed = app.echo(&client, "/").await;
    assert_eq!(echoed.header("x-forwarded-email"), Some("ada@example.com"));
    assert_eq!(echoed.header("x-auth-request-email"), Some("ada@example.com"));
    assert!(echoed.header("x-forwarded-user").is_some());
    assert!(echoed.header("x-auth-email").is_none());
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_forwarded() {
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let response =
        client.get(app.url("/")).header("x-request-id", "trace-abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("x-request-id"), Some("trace-abc-123"));

    let response =
        client.get(app.url("/")).header("x-request-id", "has spaces in it").send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "has spaces in it");
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("x-request-id"), Some(id.as_str()));

    // Two ids: the app and the log must not read different ones, so both are replaced by one.
    let response = client
        .get(app.url("/"))
        .header("x-request-id", "first-id")
        .header("x-request-id", "second-id")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id != "first-id" && id != "second-id", "{id}");
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("x-request-id"), Some(id.as_str()), "exactly one, the logged one");
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let untrusted = TestApp::spawn().await;
    let client = untrusted.signed_in("ada@example.com").await;
    let echoed: Echoed = client
        .get(untrusted.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=203.0.113.7")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echoed.header("x-forwarded-proto"), Some("http"));
    assert_ne!(echoed.header("x-forwarded-host"), Some("evil.example"));
    assert!(echoed.header("forwarded").is_none());

    let trusted = TestApp::builder()
        .config(|c| c.server.trusted_proxies = StringList(vec!["127.0.0.1/32".into()]))
        .spawn()
        .await;
    let client = trusted.signed_in("ada@example.com").await;
    let echoed: Echoed = client
        .get(trusted.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed.header("x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(echoed.header("x-forwarded-proto"), Some("https"));
    assert_eq!(echoed.header("x-forwarded-host"), Some("app.example.com"));
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_cross_the_proxy() {
    let app =
        TestApp::builder().routes("[[routes]]\npath = \"/*\"\naccess = \"public\"\n").spawn().await;
    let addr = app.running().http_addr().unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /raw HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Hop-Secret\r\n\
                   X-Hop-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nProxy-Authorization: Basic eDp5\r\n\
                   X-End-To-End: kept\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let body = body.find('{').map_or(body, |start| &body[start..body.rfind('}').unwrap() + 1]);
    let echoed: Echoed = serde_json::from_str(body).unwrap();
    for gone in ["x-hop-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(!echoed.headers.contains_key(gone), "{gone} crossed: {:?}", echoed.headers);
    }
    assert_eq!(echoed.header("x-end-to-end"), Some("kept"));
    assert_eq!(echoed.header("host"), Some("example.test"), "the app sees the client's Host");
}

#[tokio::test]
async fn upstreams_are_chosen_by_host_then_longest_prefix() {
    let api = EchoUpstream::start("api").await;
    let admin = EchoUpstream::start("admin").await;
    let upstream = |name: &str, url: String, hosts: &[&str], prefix: &str| RawUpstream {
        name: name.into(),
        url,
        hosts: StringList(hosts.iter().map(|h| (*h).to_owned()).collect()),
        path_prefix: Some(prefix.into()),
        http2: Flag(false),
        ..RawUpstream::default()
    };
    let (api_url, admin_url) = (api.url(), admin.url());
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"*\"\naccess = \"public\"\n")
        .config(move |c| {
            c.upstreams = vec![
                upstream("api", api_url, &[], "/api"),
                upstream("admin", admin_url, &["admin.example.com"], "/"),
            ];
        })
        .spawn()
        .await;
    let client = app.client();
    let pick = |host: &'static str, path: &'static str| {
        let client = client.clone();
        let url = app.url(path);
        async move {
            let response = client.get(url).header("host", host).send().await.unwrap();
            if response.status() == 404 {
                return "none".to_owned();
            }
            response.json::<Echoed>().await.unwrap().upstream
        }
    };
    assert_eq!(pick("app.example.com", "/api/users").await, "api");
    assert_eq!(pick("admin.example.com", "/api/users").await, "admin");
    assert_eq!(pick("app.example.com", "/other").await, "app", "the any-host upstream at `/`");
}

#[tokio::test]
async fn route_policy_public_deny_roles_methods_and_scopes() {
    let app = TestApp::builder()
        .routes(
            r#"
            [[routes]]
            path = "/public/*"
            access = "public"
            [[routes]]
            path = "/internal/*"
            access = "deny"
            [[routes]]
            path = "/admin/*"
            roles = ["admin"]
            [[routes]]
            path = "/api/*"
            methods = ["POST"]
            scopes = ["write"]
            on_unauthenticated = "401"
            [[routes]]
            path = "/docs/*"
            on_unauthenticated = "redirect"
            [[routes]]
            path = "/verified/*"
            verified_email = true
            "#,
        )
        .spawn()
        .await;
    let anonymous = app.client();
    let status = |client: &reqwest::Client, method: reqwest::Method, path: &str| {
        client.request(method, app.url(path)).header("accept", "text/html").send()
    };
    use reqwest::Method;
    assert_eq!(status(&anonymous, Method::GET, "/public/a").await.unwrap().status(), 200);
    assert_eq!(status(&anonymous, Method::GET, "/internal/a").await.unwrap().status(), 403);
    assert_eq!(
        status(&anonymous, Method::GET, "/api/a").await.unwrap().status(),
        302,
        "GET falls to the default rule"
    );
    assert_eq!(status(&anonymous, Method::POST, "/api/a").await.unwrap().status(), 401);
    assert_eq!(status(&anonymous, Method::POST, "/docs/a").await.unwrap().status(), 302);

    let ada = app.signed_in("ada@example.com").await;
    let forbidden = status(&ada, Method::GET, "/admin/panel").await.unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(forbidden.json::<Value>().await.unwrap()["error"], "forbidden");
    assert_eq!(status(&ada, Method::GET, "/internal/a").await.unwrap().status(), 403);
    assert_eq!(
        status(&ada, Method::POST, "/api/a").await.unwrap().status(),
        200,
        "sessions carry every scope"
    );
    assert_eq!(status(&ada, Method::GET, "/verified/a").await.unwrap().status(), 403);
    assert_eq!(
        status(&ada, Method::GET, "/%61dmin/panel").await.unwrap().status(),
        403,
        "encoded path"
    );
    assert_eq!(
        status(&ada, Method::GET, "/public/../admin/panel").await.unwrap().status(),
        403,
        "dot segments"
    );

    // Granting the role takes effect on the next request, although the identity was cached.
    let state = app.running().state();
    let user = state
        .services
        .users
        .find_by_email(&portcullis::testing::identity::Email::parse("ada@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    state.services.users.set_roles(user.id, &["admin".into()], state.clock.now()).await.unwrap();
    state.services.sessions.refresh_user(user.id);
    let allowed = status(&ada, Method::GET, "/admin/panel").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.json::<Echoed>().await.unwrap().header("x-auth-roles"), Some("admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_and_the_limit_is_enforced() {
    let app = TestApp::builder().config(|c| c.server.max_body = "1MiB".into()).spawn().await;
    let client = app.signed_in("ada@example.com").await;

    let body = vec![7u8; 512 * 1024];
    let echoed: Echoed = client
        .post(app.url("/upload"))
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed.body_len, body.len() as u64);
    assert_eq!(
        echoed.body_sha256,
        crate::support::echo::hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref())
    );

    // Refused by its declared length. An HTTP/1.1 client still sending reads the answer (the
    // rest of the body is read and dropped) and is told the connection closes, so its next
    // request takes a new one.
    for _ in 0..10 {
        let declared =
            client.post(app.url("/upload")).body(vec![0u8; 2 * 1024 * 1024]).send().await.unwrap();
        assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(declared.headers()["connection"], "close");
        assert_eq!(declared.json::<Value>().await.unwrap()["error"], "payload_too_large");
        let next = client.get(app.url("/after")).send().await.unwrap();
        assert_eq!(next.status(), StatusCode::OK);
    }
    // Over HTTP/2 the stream is reset on its own, and nothing is drained.
    let h2 = crate::support::app::client_builder().http2_prior_knowledge().build().unwrap();
    app.sign_up(&h2, "bob@example.com").await;
    let declared =
        h2.post(app.url("/upload")).body(vec![0u8; 2 * 1024 * 1024]).send().await.unwrap();
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.json::<Value>().await.unwrap()["error"], "payload_too_large");

    // No Content-Length: cut off once it passes the limit.
    let chunks =
        futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![1u8; 64 * 1024])));
    let chunked =
        h2.post(app.url("/upload")).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let download = client.get(app.url("/d?download=5000000")).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().len(), 5_000_000);
}

#[tokio::test]
async fn websockets_are_passed_through_for_signed_in_users() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let cookie = app.session_cookie(&client, "ada@example.com").await;
    let ws_url = app.url("/ws").replace("http://", "ws://");

    let mut request = ws_url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("ping through the proxy")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "ping through the proxy");
    socket.close(None).await.unwrap();

    let anonymous = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = anonymous else {
        panic!("an anonymous upgrade must be refused");
    };
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"*\"\naccess = \"public\"\n")
        .config(move |c| {
            c.server.upstream_timeout = "300ms".into();
            c.upstreams = vec![RawUpstream {
                name: "down".into(),
                url: format!("http://{closed}"),
                path_prefix: Some("/down".into()),
                ..RawUpstream::default()
            }];
        })
        .spawn()
        .await;
    let client = app.client();
    let down = client.get(app.url("/down/x")).send().await.unwrap();
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(down.json::<Value>().await.unwrap()["error"], "upstream_unavailable");

    let slow = client.get(app.url("/slow?sleep_ms=2000")).send().await.unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow.json::<Value>().await.unwrap()["error"], "upstream_timeout");
}

/// A connection keeps one timer for its upstream deadlines, moved lazily: one still set for an
/// earlier request, or long elapsed, must neither cut a later request short nor let a slow one
/// run past its own deadline.
#[tokio::test]
async fn each_request_on_a_connection_gets_its_own_full_upstream_deadline() {
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"*\"\naccess = \"public\"\n")
        .config(|c| c.server.upstream_timeout = "600ms".into())
        .spawn()
        .await;
    let client = app.client();
    let get = |path: &'static str| {
        let (client, url) = (&client, app.url(path));
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/x").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The first request's deadline passes while this one waits: it must get its own.
    assert_eq!(get("/slow?sleep_ms=450").await.0, StatusCode::OK, "cut short by a stale timer");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(get("/slow?sleep_ms=200").await.0, StatusCode::OK, "cut by an elapsed timer");
    let started = std::time::Instant::now();
    let (status, body) = get("/slow?sleep_ms=3000").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_eq!(get("/x").await.0, StatusCode::OK, "the connection goes on");
}

#[tokio::test]
async fn http2_clients_are_served_with_prior_knowledge() {
    let app = TestApp::spawn().await;
    let client = crate::support::app::client_builder().http2_prior_knowledge().build().unwrap();
    app.sign_up(&client, "ada@example.com").await;
    let response = client.get(app.url("/h2")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));
    assert_eq!(echoed.version, "HTTP/1.1", "the upstream speaks HTTP/1.1 by default");
    assert!(echoed.header("host").is_some(), "Host is set from :authority");
}

#[tokio::test]
async fn pooled_connections_are_reused_to_the_upstream() {
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    for _ in 0..20 {
        app.echo(&client, "/again").await;
    }
    // The echo app counts nothing; but connections: one TCP accept per request would show up as
    // many established sockets to its port. Check the proxy keeps only a few open.
    let connections = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = format!(":{:04X}", app.echo.addr.port());
    let established =
        connections.lines().filter(|line| line.contains(&port) && line.contains(" 01 ")).count();
    assert!(
        established <= 4,
        "{established} connections to the upstream for 20 sequential requests"
    );
}

/// Each HTTP/1.1 client connection sends its requests on an upstream connection of its own
/// (connection affinity): the upstream sees one connection per client connection, never one
/// shared by two clients at once.
#[tokio::test]
async fn each_client_connection_keeps_its_own_upstream_connection() {
    let app = TestApp::spawn().await;
    let ada = app.signed_in("ada@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let mut seen = [Vec::new(), Vec::new()];
    for _ in 0..5 {
        seen[0].push(app.echo(&ada, "/a").await.peer);
        seen[1].push(app.echo(&bob, "/b").await.peer);
    }
    for peers in &seen {
        assert!(peers.iter().all(|peer| *peer == peers[0]), "{peers:?}");
    }
    assert_ne!(seen[0][0], seen[1][0], "two client connections, two upstream connections");
    let h2 = crate::support::app::client_builder().http2_prior_knowledge().build().unwrap();
    app.sign_up(&h2, "eve@example.com").await;
    let echoed: Echoed = h2.get(app.url("/h2")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed.header("x-auth-email"), Some("eve@example.com"), "HTTP/2 uses the pool");
}

/// A client connection that alternates between two upstreams keeps its connection to the
/// first and takes the pool for the other, and clients that close their connection after one
/// request take the pool: neither opens (and closes) an upstream connection per request.
#[tokio::test]
async fn alternating_upstreams_and_one_request_clients_reuse_upstream_connections() {
    let other = EchoUpstream::start("other").await;
    let other_url = other.url();
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"*\"\naccess = \"public\"\n")
        .config(move |c| {
            c.upstreams.push(RawUpstream {
                name: "other".into(),
                url: other_url,
                path_prefix: Some("/other".into()),
                ..RawUpstream::default()
            });
        })
        .spawn()
        .await;
    let client = app.client();
    let (mut main_peers, mut other_peers) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        main_peers.push(app.echo(&client, "/main").await.peer);
        other_peers.push(app.echo(&client, "/other/x").await.peer);
    }
    assert!(main_peers.iter().all(|p| *p == main_peers[0]), "{main_peers:?}");
    assert!(other_peers.iter().all(|p| *p == other_peers[0]), "{other_peers:?}");

    let addr = app.running().http_addr().unwrap();
    let mut closing = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let request = b"GET /closing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        closing.insert(crate::support::raw::exchange(addr, request).await.echoed().peer);
        // Time for the pooled connection to go back to the pool.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closing.len() <= 2, "pooled, not one per request: {closing:?}");
}

/// An upstream that closes its connection after every answer (without saying so) costs the
/// client nothing: a kept upstream connection found closed is replaced, and the request, not
/// yet written, goes on the new one.
#[tokio::test]
async fn an_upstream_that_hangs_up_between_requests_fails_no_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = vec![0; 8192];
                let mut read = 0;
                while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                let _ = stream.write_all(answer.as_bytes()).await;
                // Closed with no `Connection: close`: the proxy learns it only from the socket.
            });
        }
    });
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"*\"\naccess = \"public\"\n")
        .config(move |c| {
            c.upstreams = vec![RawUpstream {
                name: "flaky".into(),
                url: format!("http://{addr}"),
                ..RawUpstream::default()
            }];
        })
        .spawn()
        .await;
    let client = app.client();
    for n in 0..10 {
        let response = client.get(app.url("/x")).send().await.unwrap();
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 10);
}

#[tokio::test]
async fn upstreams_can_be_spoken_to_over_http2() {
    let h2 = EchoUpstream::start("h2").await;
    let url = h2.url();
    let app = TestApp::builder()
        .config(move |c| {
            c.upstreams = vec![RawUpstream {
                name: "h2".into(),
                url,
                http2: Flag(true),
                ..RawUpstream::default()
            }];
        })
        .spawn()
        .await;
    let client = app.signed_in("ada@example.com").await;
    let echoed = app.echo(&client, "/over-h2").await;
    assert_eq!(echoed.upstream, "h2");
    assert_eq!(echoed.version, "HTTP/2.0");
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));
}

/// Forged credentials (a wrong tag, or no tag on a new installation) are refused without a
/// lookup and cost the client nothing. Unknown credentials with a right tag (ended sessions,
/// revoked keys) make the stores look each one up; past
/// `rate_limit.failed_credentials_per_minute` such a client's credentials are checked against
/// the cache only: uncached ones get 429 (their cookie is not cleared), cached ones keep
/// working, and the budget recovers by itself.
#[tokio::test]
async fn a_client_failing_too_many_credentials_is_held_to_the_cache() {
    use portcullis::testing::clock::ManualClock;
    use portcullis::testing::identity::session::SessionToken;
    // The budget refills by one failure a second: on the program's clock, frozen here, so the
    // count does not depend on how fast this machine sends the requests.
    let clock = ManualClock::new();
    let app = TestApp::builder()
        .clock(clock.clone())
        .config(|c| {
            c.rate_limit.failed_credentials_per_minute =
                portcullis::testing::config::values::Count(60)
        })
        .spawn()
        .await;
    let tags = app.running().state().services.tags.clone();
    let ada = app.session_cookie(&app.client(), "ada@example.com").await;
    let bob = app.session_cookie(&app.client(), "bob@example.com").await;
    let get = |cookie: String| {
        let url = app.url("/x");
        async move { crate::support::http().get(url).header("cookie", cookie).send().await.unwrap() }
    };
    let unknown = || format!("portcullis_session={}", SessionToken::generate(&tags).cookie_value());
    // Another installation's tag, and the untagged format, which a new installation never made.
    let other_installation = portcullis::testing::crypto::tags::TokenTags::random();
    for attempt in 0..200 {
        let forged = if attempt % 2 == 0 {
            SessionToken::generate(&other_installation).cookie_value()
        } else {
            format!("v1.{}", portcullis::testing::crypto::random_token())
        };
        let refused = get(format!("portcullis_session={forged}")).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "forgery {attempt}");
    }
    assert_eq!(get(ada.clone()).await.status(), StatusCode::OK, "ada is cached now");

    // One dead cookie sent again and again (a browser on public pages) costs one lookup: the
    // rest are answered from the negative cache and do not count.
    let dead = unknown();
    for attempt in 0..100 {
        assert_eq!(get(dead.clone()).await.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }

    for attempt in 0..59 {
        assert_eq!(get(unknown()).await.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let over = get(unknown()).await;
    assert_eq!(over.status(), StatusCode::UNAUTHORIZED, "the failure that goes over");
    let held = get(unknown()).await;
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(held.headers()["retry-after"], "1");
    assert!(held.headers().get("set-cookie").is_none(), "a held-back cookie is not cleared");
    assert_eq!(held.json::<Value>().await.unwrap()["error"], "rate_limited");
    let key = portcullis::testing::identity::api_key::generate(&tags);
    let held = crate::support::http().get(app.url("/x")).bearer_auth(key).send().await.unwrap();
    assert_eq!(held.status(), StatusCode::TOO_MANY_REQUESTS, "API keys too");

    assert_eq!(get(ada.clone()).await.status(), StatusCode::OK, "a cached session goes on");
    assert_eq!(get(bob.clone()).await.status(), StatusCode::TOO_MANY_REQUESTS, "bob is not cached");
    clock.advance(Duration::from_millis(1100));
    assert_eq!(get(bob).await.status(), StatusCode::OK, "the budget recovers");
}

/// A dead session cookie on a public page: the page is served, and the browser is told to drop
/// the cookie (else it would send it, and cost a lookup, with every request).
#[tokio::test]
async fn a_dead_cookie_on_a_public_route_is_cleared() {
    use portcullis::testing::identity::session::SessionToken;
    let app =
        TestApp::builder().routes("[[routes]]\npath = \"*\"\naccess = \"public\"\n").spawn().await;
    let tags = app.running().state().services.tags.clone();
    let dead = format!("portcullis_session={}", SessionToken::generate(&tags).cookie_value());
    let response =
        crate::support::http().get(app.url("/page")).header("cookie", dead).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cleared: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter(|value| value.starts_with("portcullis_session=") && value.contains("Max-Age=0"))
        .collect();
    assert_eq!(cleared.len(), 1, "{:?}", response.headers());

    // A live one is left alone.
    let live = app.session_cookie(&app.client(), "ada@example.com").await;
    let response =
        crate::support::http().get(app.url("/page")).header("cookie", live).send().await.unwrap();
    assert!(response.headers().get("set-cookie").is_none());
}
