//! A tiny upstream app that shows what it received: run it, point Portcullis at it, and see the
//! identity headers an app gets.
//!
//! ```sh
//! cargo run --example echo -- 127.0.0.1:3000
//! PORTCULLIS_UPSTREAMS='[{name = "app", url = "http://127.0.0.1:3000"}]' cargo run
//! ```

use axum::Json;
use axum::Router;
use http::{HeaderMap, Method, Uri};
use serde_json::{Map, Value, json};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("echo app on http://{}", listener.local_addr()?);
    axum::serve(listener, Router::new().fallback(echo)).await
}

/// Replies with the method, URI, every header, and the identity headers on their own.
async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> Json<Value> {
    let mut all = Map::new();
    let mut identity = Map::new();
    for (name, value) in &headers {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        if name.as_str().starts_with("x-auth-") {
            identity.insert(name.to_string(), value.clone());
        }
        all.insert(name.to_string(), value);
    }
    Json(
        json!({ "method": method.as_str(), "uri": uri.to_string(), "identity": identity, "headers": all }),
    )
}
