//! `GET /one-time?token=`: redeems an operator's sign-in link (single use), starts a session
//! and redirects; a bad link shows the sign-in page with the reason (JSON when asked for).

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::csrf::SiteContext;
use super::extract::{ApiQuery, Client};
use super::landing::{self, Reply};
use crate::auth::error::{AuthError, BadRequest, Refusal, Spent};
use crate::auth::pages::PageError;
use crate::auth::state::AppState;
use crate::identity::org_choice::After;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes: `GET /one-time`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(one_time))
}

#[derive(Debug, Deserialize)]
struct OneTimeQuery {
    token: Option<String>,
}

#[utoipa::path(
    get,
    path = "/one-time",
    tag = "session",
    params(("token" = Option<String>, Query, description = "The link's token")),
    responses(
        (status = 302, description = "Signed in: on to the link's target"),
        (status = 303, description = "To the organization choice"),
    ),
)]
async fn one_time(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    ApiQuery(query): ApiQuery<OneTimeQuery>,
) -> Response {
    let result = async {
        let token = query.token.as_deref().unwrap_or("");
        let link = state.one_time.take(token).await?.ok_or(Spent::SignInLink)?;
        let user = state.services.users.find_enabled(link.user_id).await?;
        let user = user.ok_or_else(|| AuthError::from(Refusal::Disabled))?;
        // Checked again: the redirect policy may have changed since the link was minted.
        let target = state.redirects.check(&link.redirect).map_err(BadRequest::Redirect)?;
        landing::end_previous_session(&state, &site.headers).await?;
        let reply = Reply::found(target.as_str());
        landing::sign_in(&state, &user, client, After::Session, reply, "one_time").await
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
