//! Signing in with a password: the JSON login an app's script sends, and the sign-in page's
//! forms a browser without JavaScript posts.

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::json;

use super::cookies::cookie_pair;
use super::forms::post_form;
use super::server::Server;

/// A JSON password login (`POST /auth/login`, session cookie mode) of `email` from `client`,
/// not yet sent: for a test that adds a header (`User-Agent`, `Origin`, `X-Forwarded-For`).
pub fn login_request(
    server: &impl Server,
    client: &Client,
    email: &str,
    password: &str,
) -> RequestBuilder {
    client.post(server.url("/auth/login")).json(&json!({ "email": email, "password": password }))
}

/// Logs `email` in with `password` on `client` (JSON, session cookie mode); the answer,
/// whatever its status.
pub async fn password_login(
    server: &impl Server,
    client: &Client,
    email: &str,
    password: &str,
) -> Response {
    login_request(server, client, email, password).send().await.unwrap()
}

/// Logs the existing user `email` in with the test password from a fresh client, which must
/// work; the session cookie as `name=value`, for a `Cookie` header set by hand.
pub async fn login_cookie(server: &impl Server, email: &str) -> String {
    let login = password_login(server, &super::http(), email, super::PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK, "login of {email}");
    cookie_pair(&login)
}

/// The fields the sign-in page's password forms (login and sign-up) post: `email`,
/// `password`, the page's `csrf_token` and, when given, the `redirect_uri` to land on.
pub fn password_fields<'a>(
    email: &'a str,
    password: &'a str,
    csrf: &'a str,
    redirect_uri: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![("email", email), ("password", password), ("csrf_token", csrf)];
    fields.extend(redirect_uri.map(|target| ("redirect_uri", target)));
    fields
}

/// Posts the sign-in page's login form (`POST /auth/login`) from `client` with the page's
/// `csrf` token; the answer (a 303 to the target when it worked, the page again when not).
pub async fn login_form(
    server: &impl Server,
    client: &Client,
    email: &str,
    password: &str,
    csrf: &str,
    redirect_uri: Option<&str>,
) -> Response {
    let fields = password_fields(email, password, csrf, redirect_uri);
    post_form(server, client, "/auth/login", &fields).await
}
