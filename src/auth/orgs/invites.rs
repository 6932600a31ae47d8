//! `POST /orgs/{id}/invites` mails a single-use link; `GET /invites/accept?token=` joins the
//! organization, creating the account when sign-up allows, and signs in.
//!
//! The link is a credential for the invited address (like a magic link): following it proves
//! the address, so the email counts as verified.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use minijinja::context;
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::refuse_api_keys;
use crate::auth::csrf::SiteContext;
use crate::auth::email::{MailKind, link, requester, within_send_limit};
use crate::auth::error::{AuthError, BadRequest};
use crate::auth::extract::{ApiJson, ApiPath, ApiQuery, Caller, Client};
use crate::auth::landing::{self, Reply};
use crate::auth::openapi::MessageBody;
use crate::auth::pages::PageError;
use crate::auth::state::AppState;
use crate::clock::Timestamp;
use crate::identity::Email;
use crate::identity::org_choice::After;
use crate::identity::orgs::{Organizations, SentInvite};
use crate::mail::Template;
use crate::store::invites::Invite;

/// Routes: sending and accepting invites.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, send)).routes(routes!(revoke)).routes(routes!(accept))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewInviteBody {
    email: String,
    role: Option<String>,
}

/// `POST /orgs/{id}/invites {email, role?}` (owners and admins): 201 once the mail is sent.
#[utoipa::path(
    post,
    path = "/orgs/{id}/invites",
    tag = "orgs",
    params(("id" = Uuid, Path, description = "Organization id")),
    request_body = NewInviteBody,
    responses((status = 201, description = "The invite, mailed", body = InviteBody)),
)]
async fn send(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Client(client): Client,
    ApiPath(org_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NewInviteBody>,
) -> Result<Response, AuthError> {
    refuse_api_keys(&caller)?;
    let email = Email::parse(&body.email)?;
    let orgs = &state.services.orgs;
    let draft = orgs.draft_invite(org_id, caller.user_id, email, body.role.as_deref()).await?;
    if !within_send_limit(&state, MailKind::Invite, draft.email(), &requester(&client)).await? {
        return Err(AuthError::RateLimited { retry_after_secs: 3600 });
    }
    let org_name = draft.org.name.clone();
    let SentInvite { invite, token, email } = orgs.issue_invite(draft).await?;
    let inviter = state.services.users.find(caller.user_id).await?;
    let inviter = inviter
        .map(|user| user.name.unwrap_or_else(|| user.email.as_str().to_owned()))
        .unwrap_or_default();
    let context = context! {
        link => link(&state, "/invites/accept", &token),
        ttl => humantime::format_duration(orgs.invite_ttl()).to_string(),
        org_name,
        inviter,
    };
    state
        .mailer
        .send(Template::OrgInvite, &email, context)
        .await
        .map_err(|error| AuthError::MailFailed { what: "invite", cause: error })?;
    Ok((StatusCode::CREATED, Json(InviteBody { invite: InviteDoc::from(&invite) })).into_response())
}

/// `GET /orgs/{id}/invites` (owners and admins): the invites still waiting, newest first.
#[utoipa::path(
    get,
    path = "/orgs/{id}/invites",
    tag = "orgs",
    params(("id" = Uuid, Path, description = "Organization id")),
    responses(
        (status = 200, description = "Pending invites (owners and admins)", body = InvitesBody),
    ),
)]
async fn list(
    State(orgs): State<Organizations>,
    Caller(caller): Caller,
    ApiPath(org_id): ApiPath<Uuid>,
) -> Result<Response, AuthError> {
    let invites = orgs.pending_invites(org_id, caller.user_id).await?;
    let invites = invites.iter().map(InviteDoc::from).collect();
    Ok(Json(InvitesBody { invites }).into_response())
}

/// `DELETE /orgs/{id}/invites/{invite_id}` (owners and admins): the link stops working.
#[utoipa::path(
    delete,
    path = "/orgs/{id}/invites/{invite_id}",
    tag = "orgs",
    params(
        ("id" = Uuid, Path, description = "Organization id"),
        ("invite_id" = Uuid, Path, description = "Invite id"),
    ),
    responses((status = 200, description = "Withdrawn", body = MessageBody)),
)]
async fn revoke(
    State(orgs): State<Organizations>,
    Caller(caller): Caller,
    ApiPath((org_id, invite_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Response, AuthError> {
    refuse_api_keys(&caller)?;
    orgs.revoke_invite(org_id, caller.user_id, invite_id).await?;
    Ok(MessageBody::json("invite withdrawn").into_response())
}

#[derive(Debug, Deserialize)]
struct AcceptQuery {
    token: Option<String>,
    redirect_uri: Option<String>,
}

/// `GET /invites/accept?token=[&redirect_uri=]`: joins, signs in acting in the organization,
/// 302 to the redirect (default `/`). Errors show the sign-in page.
#[utoipa::path(
    get,
    path = "/invites/accept",
    tag = "orgs",
    params(
        ("token" = Option<String>, Query, description = "From the mail"),
        ("redirect_uri" = Option<String>, Query, description = "Where to go"),
    ),
    responses(
        (status = 302, description = "Joined and signed in: on to the target"),
    ),
)]
async fn accept(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    ApiQuery(query): ApiQuery<AcceptQuery>,
) -> Response {
    let result = async {
        let target = state
            .redirects
            .check(query.redirect_uri.as_deref().unwrap_or("/"))
            .map_err(BadRequest::Redirect)?;
        let orgs = &state.services.orgs;
        let (user, invite) = orgs.accept_invite(query.token.as_deref().unwrap_or("")).await?;
        landing::end_previous_session(&state, &site.headers).await?;
        let memberships = orgs.memberships(user.id).await?;
        let reply = Reply::found(target.as_str());
        let active = Some(invite.org_id);
        landing::finish(
            &state,
            &user,
            &memberships,
            active,
            client,
            After::Session,
            reply,
            "invite",
        )
        .await
    }
    .await;
    match result {
        Ok(response) => response,
        Err(error) => {
            let json = crate::auth::wants_json(&site.headers);
            PageError::link(error).render(&state, &site, json).await
        }
    }
}

/// An invite (never its token).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct InviteDoc {
    /// Invite id.
    pub id: Uuid,
    /// The organization.
    pub org_id: Uuid,
    /// Who it went to.
    pub email: String,
    /// The role it grants.
    pub role: String,
    /// Who sent it.
    pub invited_by: Option<Uuid>,
    /// When.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
}

impl From<&Invite> for InviteDoc {
    fn from(invite: &Invite) -> Self {
        Self {
            id: invite.id,
            org_id: invite.org_id,
            email: invite.email.clone(),
            role: invite.role.clone(),
            invited_by: invite.invited_by,
            created_at: invite.created_at,
            expires_at: invite.expires_at,
        }
    }
}

/// `POST /orgs/{id}/invites`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct InviteBody {
    /// The invite sent.
    pub invite: InviteDoc,
}

/// `GET /orgs/{id}/invites`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct InvitesBody {
    /// Pending invites, newest first.
    pub invites: Vec<InviteDoc>,
}
