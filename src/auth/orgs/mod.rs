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

use super::extract::{ApiJson, Caller, CsrfSession, CurrentSession, caller_user};
use super::openapi::UserBody;
use super::sessions::user_response;
use crate::auth::error::{AuthError, Refusal};
use crate::auth::state::AppState;
use crate::identity::orgs::Organizations;
use crate::identity::session::SessionService;
use crate::identity::{AuthMethod, Identity};
use crate::model::org::Membership;
use crate::store::users::UserStore;

/// Routes: `GET/POST /orgs`, `POST /orgs/switch`, `GET/POST /orgs/select`, members, invites.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
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
async fn list(
    State(orgs): State<Organizations>,
    Caller(caller): Caller,
) -> Result<Response, AuthError> {
    let organizations = orgs.memberships(caller.user_id).await?;
    let active = caller.active_org.as_ref().map(|org| org.org_id);
    Ok(Json(OrgsBody { organizations, active_org_id: active }).into_response())
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
    State(orgs): State<Organizations>,
    State(sessions): State<SessionService>,
    Caller(caller): Caller,
    session: Option<CurrentSession>,
    ApiJson(body): ApiJson<NewOrg>,
) -> Result<Response, AuthError> {
    refuse_api_keys(&caller)?;
    let created = orgs.create(caller.user_id, &body.name, body.slug.as_deref()).await?;
    let session = session.filter(|session| {
        caller.method == AuthMethod::Session && session.identity.active_org.is_none()
    });
    if let Some(session) = session {
        sessions.set_active_org(&session.token.hash(), Some(created.id)).await?;
    }
    Ok((StatusCode::CREATED, Json(OrgBody { organization: created })).into_response())
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
    State(orgs): State<Organizations>,
    State(sessions): State<SessionService>,
    State(users): State<UserStore>,
    CsrfSession(session): CsrfSession,
    ApiJson(body): ApiJson<SwitchBody>,
) -> Result<Response, AuthError> {
    if let Some(org_id) = body.org_id {
        orgs.switch_to(org_id, session.identity.user_id).await?;
    }
    if !sessions.set_active_org(&session.token.hash(), body.org_id).await? {
        return Err(AuthError::not_signed_in());
    }
    let user = caller_user(&users, &session.identity).await?;
    user_response(&orgs, &user, body.org_id).await
}

/// Organizations are managed by people (sessions) and their token clients, not by API keys.
fn refuse_api_keys(caller: &Identity) -> Result<(), AuthError> {
    if caller.method == AuthMethod::ApiKey {
        return Err(AuthError::from(Refusal::ApiKey("manage organizations")));
    }
    Ok(())
}

/// `GET /orgs`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrgsBody {
    /// The caller's organizations, most recently active first.
    pub organizations: Vec<Membership>,
    /// The one the credential acts in.
    pub active_org_id: Option<Uuid>,
}

/// `POST /orgs`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OrgBody {
    /// The new organization; the caller is its owner.
    pub organization: Membership,
}
