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

use super::{manager_of, member_of, refuse_api_keys};
use crate::auth::extract::{ApiJson, ApiPath, Caller};
use crate::auth::openapi::MessageBody;
use crate::error::{ApiError, ErrorCode};
use crate::model::org::Member;
use crate::model::org::{self, Change, Membership};
use crate::state::AppState;
use crate::store::orgs::Outcome;

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
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    manager_of(&state, org_id, caller.user_id).await?;
    let members = state.orgs.members(org_id).await?;
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
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Response, ApiError> {
    refuse_api_keys(&caller)?;
    if !state.config.orgs.roles.contains(&body.role) {
        let known = state.config.orgs.roles.names().join(", ");
        return Err(ApiError::invalid_request(format!("role: must be one of {known}")));
    }
    let (actor, target) = actor_and_target(&state, org_id, caller.user_id, user_id).await?;
    let change = Change::SetRole { from: &target.role, to: &body.role };
    if !org::may(&actor.role, change, user_id == caller.user_id) {
        return Err(ApiError::forbidden("Your role in this organization does not allow this"));
    }
    let outcome = state.orgs.set_role(org_id, user_id, &body.role, state.clock.now()).await?;
    changed(&state, outcome, user_id)?;
    let member = state.orgs.members(org_id).await?.into_iter().find(|m| m.user_id == user_id);
    // Removed by someone else in the meantime.
    let member = member.ok_or_else(|| ApiError::not_found("No such member"))?;
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
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((org_id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    refuse_api_keys(&caller)?;
    let (actor, target) = actor_and_target(&state, org_id, caller.user_id, user_id).await?;
    let change = Change::Remove { role: &target.role };
    if !org::may(&actor.role, change, user_id == caller.user_id) {
        return Err(ApiError::forbidden("Your role in this organization does not allow this"));
    }
    let outcome = state.orgs.remove(org_id, user_id, state.clock.now()).await?;
    changed(&state, outcome, user_id)?;
    Ok(MessageBody::json("removed").into_response())
}

/// The caller's membership (404 for non-members) and the target's (404 when there is none).
async fn actor_and_target(
    state: &AppState,
    org_id: Uuid,
    caller: Uuid,
    target: Uuid,
) -> Result<(Membership, Membership), ApiError> {
    let actor = member_of(state, org_id, caller).await?;
    let target = state
        .orgs
        .membership(org_id, target)
        .await?
        .ok_or_else(|| ApiError::not_found("No such member"))?;
    Ok((actor, target))
}

/// Maps a store outcome, and on success evicts the member's cached identities everywhere so
/// the change holds from their next request.
fn changed(state: &AppState, outcome: Outcome, user_id: Uuid) -> Result<(), ApiError> {
    match outcome {
        Outcome::Done => {
            state.services.sessions.refresh_user(user_id);
            Ok(())
        }
        Outcome::NotMember => Err(ApiError::not_found("No such member")),
        Outcome::LastOwner => Err(ApiError::new(
            ErrorCode::Conflict,
            "The organization needs an owner: make someone else owner first",
        )),
    }
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
