//! Discovery: which sign-in methods are enabled.

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::app::AppState;

/// Routes: `GET /providers`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/providers", get(providers))
}

/// `GET /providers`: the enabled sign-in methods. Email + password is always on in this
/// version; OAuth providers and magic links join the list as they are configured.
async fn providers() -> Json<Value> {
    Json(json!({ "providers": ["password"] }))
}
