//! Choosing an organization after a login that answered a pending choice
//! (`[orgs] require_selection`): `POST /orgs/select {pending_token, org_id}` from API clients,
//! or the `GET /orgs/select` page and its form, which carry the token in a cookie.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::SET_COOKIE;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::csrf::SiteContext;
use crate::auth::error::{AuthError, BadRequest, Refusal, Spent};
use crate::auth::extract::{BodyKind, JsonOrForm};
use crate::auth::landing::{self, Reply};
use crate::auth::openapi::SignedInBody;
use crate::auth::pages;
use crate::auth::pages::{ErrorPage, PageError};
use crate::auth::state::AppState;
use crate::cookies::Own;
use crate::identity::session::ClientInfo;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes: the page and the post.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(page, select))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct SelectBody {
    pending_token: Option<String>,
    org_id: Uuid,
    csrf_token: Option<String>,
}

/// `POST /orgs/select`: finishes the sign-in in the chosen organization, as the login would
/// have (session cookie or tokens; a browser is redirected where it was going).
#[utoipa::path(
    post,
    path = "/orgs/select",
    tag = "orgs",
    request_body(content(
        (SelectBody = "application/json"),
        (SelectBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Signed in, acting in the organization", body = SignedInBody),
        (status = 303, description = "A form post: on to the sign-in's target"),
    ),
)]
async fn select(
    State(state): State<AppState>,
    site: SiteContext,
    JsonOrForm(body, kind): JsonOrForm<SelectBody>,
) -> Response {
    let result = async {
        state.csrf.check_anonymous_post(&site, kind, body.csrf_token.as_deref())?;
        let token = match (body.pending_token.as_deref(), kind) {
            (Some(token), _) => token,
            (None, BodyKind::Form) => {
                state.cookies.read(&site.headers, Own::Choice).one().unwrap_or("")
            }
            (None, BodyKind::Json) => {
                return Err(AuthError::from(BadRequest::NoPendingToken));
            }
        };
        let choice = state.choices.peek(token).await?.ok_or_else(expired)?;
        let membership = state.services.orgs.membership(body.org_id, choice.user_id).await?;
        let membership = membership.ok_or_else(|| AuthError::from(Refusal::NotMember))?;
        // Used up only now, so a wrong org id does not cost the user their sign-in.
        let choice = state.choices.take(token).await?.ok_or_else(expired)?;
        let user = state.services.users.find_enabled(choice.user_id).await?;
        let user = user.ok_or_else(|| AuthError::from(Refusal::Disabled))?;
        state.services.orgs.mark_active(membership.id, user.id).await?;
        let orgs = state.services.orgs.memberships(user.id).await?;
        let reply = match kind {
            BodyKind::Json => Reply::Json,
            BodyKind::Form => Reply::see_other(choice.redirect.as_deref().unwrap_or("/")),
        };
        let client = ClientInfo { ip: choice.ip, user_agent: choice.user_agent };
        let active = Some(membership.id);
        let mut response = landing::finish(
            &state,
            &user,
            &orgs,
            active,
            client,
            choice.after,
            reply,
            "org_select",
        )
        .await?;
        for cookie in state.cookies.clear_choice() {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        Ok::<_, AuthError>(response)
    }
    .await;
    match (result, kind) {
        (Ok(response), _) => response,
        (Err(error), BodyKind::Json) => error.into_response(),
        // The choices again with the error (only the error if the choice is gone).
        (Err(error), BodyKind::Form) => {
            PageError::new(error, ErrorPage::OrgChoice).render(&state, &site, false).await
        }
    }
}

/// `GET /orgs/select`: the organizations of the pending sign-in, as a form.
#[utoipa::path(
    get,
    path = "/orgs/select",
    tag = "pages",
    responses(
        (status = 200, description = "The choice of organization", content_type = "text/html"),
    ),
)]
async fn page(State(state): State<AppState>, site: SiteContext) -> Response {
    pages::org_choice_page(&state, &site, None).await
}

fn expired() -> AuthError {
    AuthError::Spent(Spent::Choice)
}
