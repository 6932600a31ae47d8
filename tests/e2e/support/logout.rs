//! Logging a browser out: the CSRF-protected `POST /auth/logout` of its session.

use reqwest::{Client, Response};

use super::csrf::csrf_token;
use super::server::Server;

/// Logs `client`'s session out with its CSRF token; the answer, whatever its status.
pub async fn log_out(server: &impl Server, client: &Client) -> Response {
    let csrf = csrf_token(server, client).await;
    client.post(server.url("/auth/logout")).header("x-csrf-token", csrf).send().await.unwrap()
}
