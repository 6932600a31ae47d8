//! Organizations: `GET/POST /orgs`, `POST /orgs/switch`, the choice after login
//! (`select.rs`), members (`members.rs`) and invites (`invites.rs`).
//!
//! Any credential may read; changes need a session (with CSRF) or an access token, never an
//! API key. Every membership change evicts the member's cached identities through the
//! revocation fan-out, so the gateway sees it on the next request on every replica.

mod invites;
mod members;
mod select;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, Caller, CsrfSession, CurrentSession};
use super::openapi::UserBody;
use super::sessions::user_response;
use crate::crypto;
use crate::error::{ApiError, ErrorCode};
use crate::identity::{AuthMethod, Identity};
use crate::model::org::{self, Membership};
use crate::state::AppState;
use crate::store::StoreError;

/// Routes: `GET/POST /orgs`, `POST /orgs/switch`, `GET/POST /orgs/select`, members, invites.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(switch))
        .merge(select::routes())
        .merge(members::routes())
        .merge(invites::routes())
}

/// `GET /orgs`: the caller's organizations with their roles, and the active one.
#[utoipa::path(
    get,
    path = "/orgs",
    tag = "orgs",
    responses(
        (status = 200, description = "The caller's organizations and the active one", body = OrgsBody),
    ),
)]
async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Result<Response, ApiError> {
    let orgs = state.orgs.memberships(caller.user_id).await?;
    let active = caller.active_org.as_ref().map(|org| org.org_id);
    Ok(Json(OrgsBody { organizations: orgs, active_org_id: active }).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    name: String,
    slug: Option<String>,
}

/// `POST /orgs {name, slug?}`: 201 with the organization; the caller is its owner. A session
/// in no organization yet starts acting in it.
#[utoipa::path(
    post,
    path = "/orgs",
    tag = "orgs",
    request_body = NewOrg,
    responses(
        (status = 201, description = "Created; the caller is its owner", body = OrgBody),
    ),
)]
async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    session: Option<CurrentSession>,
    ApiJson(body): ApiJson<NewOrg>,
) -> Result<Response, ApiError> {
    refuse_api_keys(&caller)?;
    let name = org::clean_name(&body.name).map_err(ApiError::invalid_request)?;
    room_for_one_more(&state, caller.user_id).await?;
    let now = state.clock.now();
    let created = match body.slug {
        Some(slug) => {
            org::check_slug(&slug).map_err(ApiError::invalid_request)?;
            state.orgs.create(&name, &slug, caller.user_id, now).await.map_err(slug_taken)?
        }
        None => create_with_free_slug(&state, &name, caller.user_id).await?,
    };
    state.services.sessions.refresh_user(caller.user_id);
    let session = session.filter(|session| {
        caller.method == AuthMethod::Session && session.identity.active_org.is_none()
    });
    if let Some(session) = session {
        state.services.sessions.set_active_org(&session.token.hash(), Some(created.id)).await?;
    }
    Ok((StatusCode::CREATED, Json(OrgBody { organization: created })).into_response())
}

/// Creates the organization under a slug made from its name, adding a random suffix while
/// that slug is taken.
async fn create_with_free_slug(
    state: &AppState,
    name: &str,
    owner: Uuid,
) -> Result<Membership, ApiError> {
    let base = org::slugify(name);
    for attempt in 0..4 {
        let suffix =
            || crypto::hex(&crypto::sha256(crypto::random_token().as_bytes()))[..6].to_owned();
        let slug = match (&base, attempt) {
            (Some(base), 0) => base.clone(),
            (Some(base), _) => format!("{base}-{}", suffix()),
            (None, _) => format!("org-{}", suffix()),
        };
        match state.orgs.create(name, &slug, owner, state.clock.now()).await {
            Err(StoreError::Conflict(_)) => continue,
            other => return Ok(other?),
        }
    }
    Err(ApiError::new(ErrorCode::Conflict, "No free slug: choose one"))
}

fn slug_taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::new(ErrorCode::Conflict, "This slug is taken"),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    org_id: Option<Uuid>,
}

/// `POST /orgs/switch {org_id}` (session + CSRF): the session acts in that organization from
/// the next request (`null`: in none).
#[utoipa::path(
    post,
    path = "/orgs/switch",
    tag = "orgs",
    request_body = SwitchBody,
    responses(
        (status = 200, description = "The session acts in the organization from the next request", body = UserBody),
    ),
)]
async fn switch(
    State(state): State<AppState>,
    CsrfSession(session): CsrfSession,
    ApiJson(body): ApiJson<SwitchBody>,
) -> Result<Response, ApiError> {
    if let Some(org_id) = body.org_id {
        member_of(&state, org_id, session.identity.user_id).await?;
        state.orgs.mark_active(org_id, session.identity.user_id, state.clock.now()).await?;
    }
    if !state.services.sessions.set_active_org(&session.token.hash(), body.org_id).await? {
        return Err(ApiError::unauthorized());
    }
    let user = state
        .services
        .users
        .find_enabled(session.identity.user_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    user_response(&state, &user, body.org_id).await
}

/// Refuses when the user already belongs to [`org::MAX_MEMBERSHIPS`] organizations.
///
/// # Errors
/// 403, or the database fails.
async fn room_for_one_more(state: &AppState, user_id: Uuid) -> Result<(), ApiError> {
    if state.orgs.roles_of(user_id).await?.len() >= org::MAX_MEMBERSHIPS {
        let most = org::MAX_MEMBERSHIPS;
        return Err(ApiError::forbidden(format!(
            "An account belongs to at most {most} organizations"
        )));
    }
    Ok(())
}

/// The user's membership in `org_id`; 404 when there is none, so non-members learn nothing
/// about the organization.
///
/// # Errors
/// 404, or the database fails.
async fn member_of(state: &AppState, org_id: Uuid, user_id: Uuid) -> Result<Membership, ApiError> {
    state
        .orgs
        .membership(org_id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("No such organization"))
}

/// Refuses unless the caller owns or administers the organization (404 for non-members), as
/// the member list and the invites need.
///
/// # Errors
/// 403 or 404, or the database fails.
async fn manager_of(state: &AppState, org_id: Uuid, caller: Uuid) -> Result<(), ApiError> {
    let membership = member_of(state, org_id, caller).await?;
    if !org::manages(&membership.role) {
        return Err(ApiError::forbidden("Only owners and admins manage the members and invites"));
    }
    Ok(())
}

/// Organizations are managed by people (sessions) and their token clients, not by API keys.
fn refuse_api_keys(caller: &Identity) -> Result<(), ApiError> {
    if caller.method == AuthMethod::ApiKey {
        return Err(ApiError::forbidden("An API key cannot manage organizations"));
    }
    Ok(())
}

/// `GET /orgs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgsBody {
    /// The caller's organizations, most recently active first.
    pub organizations: Vec<Membership>,
    /// The one the credential acts in.
    pub active_org_id: Option<Uuid>,
}

/// `POST /orgs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgBody {
    /// The new organization; the caller is its owner.
    pub organization: Membership,
}
