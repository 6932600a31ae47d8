//! Discovery: which sign-in methods are enabled.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::oauth::Providers;
use crate::auth::state::AppState;

/// Routes: `GET /providers`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(providers))
}

/// `GET /providers`: the enabled sign-in methods: every configured provider by name, then
/// `magic_link` and `password` (always on in this version).
#[utoipa::path(
    get,
    path = "/providers",
    tag = "providers",
    responses(
        (status = 200, description = "The enabled sign-in methods", body = ProvidersBody),
    ),
)]
async fn providers(State(oauth): State<Arc<Providers>>) -> Json<ProvidersBody> {
    let mut names: Vec<String> = oauth.iter().map(|provider| provider.name.clone()).collect();
    names.push("magic_link".into());
    names.push("password".into());
    Json(ProvidersBody { providers: names })
}

/// `GET /providers`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProvidersBody {
    /// Enabled sign-in methods.
    pub providers: Vec<String>,
}
