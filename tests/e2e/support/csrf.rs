//! The CSRF token a cookie-authenticated change must carry (`x-csrf-token`).

use reqwest::Client;

use super::server::Server;

/// The CSRF token of `client`'s session (or of its CSRF cookie when signed out), from
/// `GET /auth/csrf`.
pub async fn csrf_token(server: &impl Server, client: &Client) -> String {
    let body: serde_json::Value =
        client.get(server.url("/auth/csrf")).send().await.unwrap().json().await.unwrap();
    body["csrf_token"].as_str().unwrap().to_owned()
}
