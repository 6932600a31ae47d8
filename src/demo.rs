//! The built-in demo app: an upstream that shows the identity headers it received, as HTML for
//! browsers and JSON otherwise. Portcullis starts it on loopback when no upstream is configured,
//! so that `portcullis` with no configuration is a complete demo: sign up, then see yourself.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Json, Response};
use http::header::ACCEPT;
use http::{HeaderMap, Method, Uri};
use minijinja::{Environment, context};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portcullis demo app</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
code{font-size:.9rem;word-break:break-all}h2{margin-top:2rem}</style></head>
<body><h1>Hello{% if email %}, {{ email }}{% endif %}</h1>
<p>This is the demo app behind Portcullis. It sees you only through the headers below: the proxy
removed any identity headers your browser sent and added its own.</p>
{% if email %}<p><a href="/auth/sign-out">Sign out</a></p>{% endif %}
<h2>Identity headers</h2><table>{% for name, value in identity|items %}<tr><th><code>{{ name }}</code></th><td><code>{{ value }}</code></td></tr>{% else %}<tr><td>None: this route is public and you are not signed in.</td></tr>{% endfor %}</table>
<h2>Request</h2><p><code>{{ method }} {{ uri }}</code></p>
<h2>All headers</h2><table>{% for name, value in headers|items %}<tr><th><code>{{ name }}</code></th><td><code>{{ value }}</code></td></tr>{% endfor %}</table>
</body></html>"#;

/// Starts the demo app on an ephemeral loopback port until `shutdown`.
///
/// # Errors
/// Binding fails.
pub(crate) async fn spawn(shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let mut env = Environment::new();
    env.add_template("page.html", PAGE).map_err(std::io::Error::other)?;
    let app = Router::new().fallback(echo).with_state(Arc::new(env));
    tokio::spawn(async move {
        let served =
            axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(error) = served {
            tracing::error!(%error, "demo app stopped");
        }
    });
    Ok(addr)
}

async fn echo(
    State(env): State<Arc<Environment<'static>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut all = Map::new();
    let mut identity = Map::new();
    for (name, value) in &headers {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name.as_str().starts_with("x-auth-") {
            identity.insert(name.as_str().to_owned(), Value::String(text.clone()));
        }
        all.insert(name.as_str().to_owned(), Value::String(text));
    }
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if !wants_html {
        return Json(json!({ "method": method.as_str(), "uri": uri.to_string(), "identity": identity, "headers": all }))
            .into_response();
    }
    let rendered = env.get_template("page.html").and_then(|template| {
        template.render(context! {
            email => identity.get("x-auth-email").and_then(Value::as_str),
            identity => minijinja::value::Serde(&identity),
            headers => minijinja::value::Serde(&all),
            method => method.as_str(),
            uri => uri.to_string(),
        })
    });
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(error) => (http::StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
