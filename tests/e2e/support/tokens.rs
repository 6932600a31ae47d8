//! Token login: a password login in `"mode": "token"`, whose answer carries an access token and
//! a refresh token instead of a session cookie.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use super::PASSWORD;
use super::server::Server;

/// Logs the existing user `email` in with the test password in token mode, from a fresh
/// client; the answer, unread, for a test that checks its headers.
pub async fn token_login_response(server: &impl Server, email: &str) -> Response {
    super::http()
        .post(server.url("/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD, "mode": "token" }))
        .send()
        .await
        .unwrap()
}

/// Logs the existing user `email` in with the test password in token mode, which must work;
/// the token answer (`access_token`, `refresh_token`, `expires_in`, `user`).
pub async fn token_login(server: &impl Server, email: &str) -> Value {
    let response = token_login_response(server, email).await;
    assert_eq!(response.status(), StatusCode::OK, "token login of {email}");
    response.json().await.unwrap()
}
