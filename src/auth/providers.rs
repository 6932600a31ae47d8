//! Discovery: which sign-in methods are enabled.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::app::AppState;

/// Routes: `GET /providers`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/providers", get(providers))
}

/// `GET /providers`: the enabled sign-in methods: every configured provider by name, then
/// `magic_link` and `password` (always on in this version).
async fn providers(State(state): State<AppState>) -> Json<Value> {
    let mut names: Vec<&str> = state.oauth.iter().map(|provider| provider.name.as_str()).collect();
    names.push("magic_link");
    names.push("password");
    Json(json!({ "providers": names }))
}
