//! An upstream app that trusts only what it can verify: it reads `X-Auth-Assertion`, checks it
//! against Portcullis's JWKS, and answers with the verified claims (or 401).
//!
//! ```sh
//! cargo run --example assertion_app -- 127.0.0.1:3000 http://127.0.0.1:8080 app
//! PORTCULLIS_UPSTREAMS='[{name = "app", url = "http://127.0.0.1:3000"}]' cargo run
//! ```
//! Arguments: listen address, Portcullis's public URL, and this app's upstream name (the
//! assertion's audience).
//!
//! This example uses Portcullis's ring-based jsonwebtoken backend; in your own app enable
//! jsonwebtoken's `rust_crypto` or `aws_lc_rs` feature instead of calling `install`.

mod verify;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use verify::AssertionVerifier;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    portcullis::testing::crypto::jwt_ring::install();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let portcullis = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let audience = args.next().unwrap_or_else(|| "app".into());
    let verifier = Arc::new(AssertionVerifier::new(
        reqwest::Client::builder().build().map_err(std::io::Error::other)?,
        &portcullis,
        &audience,
    ));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("assertion app on http://{}", listener.local_addr()?);
    axum::serve(listener, Router::new().fallback(whoami).with_state(verifier)).await
}

async fn whoami(
    State(verifier): State<Arc<AssertionVerifier>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let Some(token) = headers.get("x-auth-assertion").and_then(|value| value.to_str().ok()) else {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "error": "no assertion" })));
    };
    match verifier.verify(token).await {
        Ok(claims) => (
            StatusCode::OK,
            Json(json!({
                "user_id": claims.sub, "email": claims.email, "name": claims.name,
                "roles": claims.roles, "org": claims.org, "scope": claims.scope,
                "method": claims.method, "audience": claims.aud, "expires": claims.exp,
            })),
        ),
        Err(error) => (StatusCode::UNAUTHORIZED, Json(json!({ "error": error }))),
    }
}
