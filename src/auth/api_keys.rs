//! API key management: `POST /api-keys`, `GET /api-keys`, `DELETE /api-keys/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CACHE_CONTROL;
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi::MessageBody;
use crate::auth::error::{AuthError, BadRequest, Missing, Refusal};
use crate::auth::state::AppState;
use crate::clock::Timestamp;
use crate::identity::api_key::ApiKeyService;
use crate::identity::api_key::{CreateKeyError, KeyRequest};
use crate::identity::orgs::Organizations;
use crate::identity::{AuthMethod, Scopes};
use crate::metrics::Metrics;
use crate::store::api_keys::ApiKeyRecord;

/// Routes: `POST /api-keys`, `GET /api-keys`, `DELETE /api-keys/{id}`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(revoke))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_in_days: Option<u32>,
    org_id: Option<Uuid>,
}

/// `POST /api-keys`: a session (with CSRF) or an access token creates a key with at most the
/// scopes it holds itself; a key cannot mint keys.
#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "api_keys",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The key, shown this once", body = NewApiKeyBody),
    ),
)]
async fn create(
    State(api_keys): State<ApiKeyService>,
    State(orgs): State<Organizations>,
    State(metrics): State<Arc<Metrics>>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, AuthError> {
    if caller.method == AuthMethod::ApiKey {
        return Err(AuthError::from(Refusal::ApiKey("create API keys")));
    }
    let scopes = Scopes::parse_list(body.scopes.iter().map(String::as_str))?;
    if !caller.scopes.covers(&scopes) {
        return Err(AuthError::from(Refusal::WiderScopes));
    }
    if let Some(org_id) = body.org_id {
        let member = orgs.membership(org_id, caller.user_id).await?;
        member.ok_or_else(|| AuthError::from(Refusal::NotMember))?;
    }
    let request = KeyRequest {
        name: &body.name,
        scopes,
        expires_in_days: body.expires_in_days,
        org_id: body.org_id,
    };
    let created = api_keys.create(caller.user_id, request).await.map_err(|error| match error {
        CreateKeyError::Invalid(message) => AuthError::from(BadRequest::ApiKey(message)),
        CreateKeyError::Store(error) => error.into(),
    })?;
    metrics.record_auth("api_key", "created");
    let view = ApiKeyDoc::of(&created.record);
    let body = NewApiKeyBody {
        id: view.id,
        name: view.name,
        key: created.secret,
        prefix: view.prefix,
        scopes: view.scopes,
        org_id: view.org_id,
        created_at: view.created_at,
        expires_at: view.expires_at,
    };
    Ok((StatusCode::CREATED, [(CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// `GET /api-keys`: the caller's keys.
#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "api_keys",
    responses((status = 200, description = "The caller's keys", body = ApiKeysBody)),
)]
async fn list(
    State(api_keys): State<ApiKeyService>,
    Caller(caller): Caller,
) -> Result<Response, AuthError> {
    let keys = api_keys.list(caller.user_id).await?;
    let api_keys = keys.iter().map(ApiKeyDoc::of).collect();
    Ok(Json(ApiKeysBody { api_keys }).into_response())
}

/// `DELETE /api-keys/{id}`: revokes one of the caller's keys; it stops working at once here
/// (and on other replicas within the cache TTL, or at once with the revocation fan-out).
#[utoipa::path(
    delete,
    path = "/api-keys/{id}",
    tag = "api_keys",
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 200, description = "Revoked, on every replica", body = MessageBody),
    ),
)]
async fn revoke(
    State(api_keys): State<ApiKeyService>,
    State(metrics): State<Arc<Metrics>>,
    ApiPath(id): ApiPath<Uuid>,
    Caller(caller): Caller,
) -> Result<Response, AuthError> {
    if !api_keys.revoke(caller.user_id, id).await? {
        return Err(AuthError::from(Missing::ApiKey));
    }
    metrics.record_auth("api_key", "revoked");
    Ok(MessageBody::json("API key revoked").into_response())
}

/// An API key as listed (never the key).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyDoc {
    /// Key id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its first characters.
    pub prefix: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The organization it acts in.
    pub org_id: Option<Uuid>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last use.
    pub last_used_at: Option<Timestamp>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

impl ApiKeyDoc {
    /// The listed form of a stored key.
    pub(crate) fn of(record: &ApiKeyRecord) -> Self {
        let scopes = match &record.scopes {
            Scopes::Only(scopes) => scopes.to_vec(),
            Scopes::All => Vec::new(),
        };
        Self {
            id: record.id,
            name: record.name.clone(),
            prefix: record.prefix.clone(),
            scopes,
            org_id: record.org_id,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            expires_at: record.expires_at,
        }
    }
}

/// `GET /api-keys`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeysBody {
    /// The caller's keys.
    pub api_keys: Vec<ApiKeyDoc>,
}

/// `POST /api-keys`: the key, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewApiKeyBody {
    /// Key id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// `pk_…`: store it now.
    pub key: String,
    /// Its first characters.
    pub prefix: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The organization it acts in.
    pub org_id: Option<Uuid>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}
