//! `GET /orgs/{id}/members`, `PATCH` and `DELETE /orgs/{id}/members/{user_id}`: owners and
//! admins manage members; anyone may leave; the last owner can neither leave nor be demoted.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::refuse_api_keys;
use crate::auth::error::AuthError;
use crate::auth::extract::{ApiJson, ApiPath, Caller};
use crate::auth::openapi::MessageBody;
use crate::auth::state::AppState;
use crate::identity::orgs::Organizations;
use crate::model::org::Member;

/// Routes: the member list and one member.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(set_role, remove))
}

/// `GET /orgs/{id}/members` (owners and admins).
#[utoipa::path(
    get,
    path = "/orgs/{id}/members",
    tag = "orgs",
    params(("id" = Uuid, Path, description = "Organization id")),
    responses(
        (status = 200, description = "The members (owners and admins only)", body = MembersBody),
    ),
)]
async fn list(
    State(orgs): State<Organizations>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<Uuid>,
) -> Result<Response, AuthError> {
    let members = orgs.members(org_id, caller.user_id).await?;
    Ok(Json(MembersBody { members }).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

/// `PATCH /orgs/{id}/members/{user_id} {role}`.
#[utoipa::path(
    patch,
    path = "/orgs/{id}/members/{user_id}",
    tag = "orgs",
    params(
        ("id" = Uuid, Path, description = "Organization id"),
        ("user_id" = Uuid, Path, description = "Member"),
    ),
    request_body = RoleBody,
    responses(
        (status = 200, description = "The member, changed", body = MemberBody),
    ),
)]
async fn set_role(
    State(orgs): State<Organizations>,
    Caller(caller): Caller,
    ApiPath((org_id, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Response, AuthError> {
    refuse_api_keys(&caller)?;
    let member = orgs.set_role(org_id, caller.user_id, user_id, &body.role).await?;
    Ok(Json(MemberBody { member }).into_response())
}

/// `DELETE /orgs/{id}/members/{user_id}`: removes a member, or leaves.
#[utoipa::path(
    delete,
    path = "/orgs/{id}/members/{user_id}",
    tag = "orgs",
    params(
        ("id" = Uuid, Path, description = "Organization id"),
        ("user_id" = Uuid, Path, description = "Member"),
    ),
    responses(
        (status = 200, description = "Removed, on every replica", body = MessageBody),
    ),
)]
async fn remove(
    State(orgs): State<Organizations>,
    Caller(caller): Caller,
    ApiPath((org_id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Response, AuthError> {
    refuse_api_keys(&caller)?;
    orgs.remove(org_id, caller.user_id, user_id).await?;
    Ok(MessageBody::json("removed").into_response())
}

/// `GET /orgs/{id}/members`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MembersBody {
    /// Oldest first.
    pub members: Vec<Member>,
}

/// `PATCH /orgs/{id}/members/{user_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MemberBody {
    /// The member as changed.
    pub member: Member,
}
