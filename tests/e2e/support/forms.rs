//! Form posts, as a browser sends them from our pages (`application/x-www-form-urlencoded`).

use reqwest::{Client, RequestBuilder, Response};

use super::server::Server;

/// A form post of `fields` to `path` from `client`, not yet sent: for a test that adds a
/// header (an `Origin`, say) before sending it.
pub fn form_request(
    server: &impl Server,
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
) -> RequestBuilder {
    client.post(server.url(path)).form(fields)
}

/// Posts `fields` to `path` from `client` as a form; the answer (redirects not followed).
pub async fn post_form(
    server: &impl Server,
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
) -> Response {
    form_request(server, client, path, fields).send().await.unwrap()
}
