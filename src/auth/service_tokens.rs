//! `POST /service-tokens/{name}`: mints a token for a third-party service from its
//! `[service_tokens.NAME]` template, for any signed-in credential whose global roles the
//! service allows.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AnyCaller, ApiJson, ApiPath};
use super::no_store;
use crate::auth::error::{AuthError, BadRequest, Missing, Refusal};
use crate::auth::state::AppState;
use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::identity::service_token::MintError;
use crate::metrics::Metrics;
use crate::store::users::UserStore;

/// Routes: `POST /service-tokens/{name}`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mint))
}

#[utoipa::path(
    post,
    path = "/service-tokens/{name}",
    tag = "tokens",
    params(
        ("name" = String, Path, description = "A `[service_tokens.NAME]` of the configuration"),
    ),
    request_body(content((Object = "application/json")), description = "The template's parameters"),
    responses(
        (status = 200, description = "A token for the service", body = ServiceTokenBody),
    ),
)]
async fn mint(
    State(config): State<Arc<Config>>,
    State(users): State<UserStore>,
    State(clock): State<Arc<dyn Clock>>,
    State(metrics): State<Arc<Metrics>>,
    ApiPath(name): ApiPath<String>,
    AnyCaller(caller): AnyCaller,
    ApiJson(params): ApiJson<Map<String, Value>>,
) -> Result<Response, AuthError> {
    let service =
        config.service_tokens.get(&name).ok_or_else(|| AuthError::from(Missing::Service))?;
    if !service.roles.is_empty() && !service.roles.iter().any(|role| caller.has_role(role)) {
        return Err(AuthError::from(Refusal::ServiceRole));
    }
    let user = super::extract::caller_user(&users, &caller).await?;
    let (token, expires_at) =
        service.mint(&user, &params, clock.now()).map_err(|error| match error {
            MintError::BadParam(message) => AuthError::from(BadRequest::ServiceParam(message)),
            MintError::Signing(_) => AuthError::internal(error),
        })?;
    metrics.record_auth("service_token", "minted");
    Ok(no_store(Json(ServiceTokenBody { token, expires_at }).into_response()))
}

/// `POST /service-tokens/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceTokenBody {
    /// The service's JWT.
    pub token: String,
    /// Its expiry.
    pub expires_at: Timestamp,
}
