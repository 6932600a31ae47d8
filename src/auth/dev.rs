//! `POST /dev-sign-in`: signs in as a given (or a fixed) user without a password, for local
//! development and end-to-end tests of apps behind Portcullis. The route exists only with
//! `dev.enabled = true`; startup refuses an https public URL unless `dev.force = true`, and
//! every start logs a warning while it is on.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::csrf::SiteContext;
use super::extract::{ApiJson, Client};
use super::landing::{self, Reply};
use super::openapi::SignedInBody;
use super::sessions::default_locale;
use crate::auth::error::{AuthError, Refusal};
use crate::auth::state::AppState;
use crate::identity::Email;
use crate::identity::org_choice::After;
use crate::store::users::NewUser;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The user signed in when no email is given.
const DEFAULT_EMAIL: &str = "dev@example.com";

/// Routes: `POST /dev-sign-in`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dev_sign_in))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DevSignIn {
    email: Option<String>,
}

#[utoipa::path(
    post,
    path = "/dev-sign-in",
    tag = "session",
    request_body = DevSignIn,
    responses(
        (status = 200, description = "Signed in (development only)", body = SignedInBody),
    ),
)]
async fn dev_sign_in(
    State(state): State<AppState>,
    site: SiteContext,
    Client(client): Client,
    ApiJson(body): ApiJson<DevSignIn>,
) -> Result<Response, AuthError> {
    state.csrf.check_same_site(&site)?;
    let email = Email::parse(body.email.as_deref().unwrap_or(DEFAULT_EMAIL))?;
    let mut user = match state.services.users.find_by_email(&email).await? {
        Some((user, _)) => user,
        None => {
            let new = NewUser { email, name: None, password_hash: None, roles: Vec::new() };
            state.services.users.create(new, state.clock.now()).await?
        }
    };
    if user.disabled_at.is_some() {
        return Err(AuthError::from(Refusal::Disabled));
    }
    default_locale(&state, &mut user, &site.headers).await?;
    tracing::warn!(user = %user.id, "dev sign-in");
    landing::sign_in(&state, &user, client, After::Session, Reply::Json, "dev").await
}
