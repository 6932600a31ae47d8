//! A provider sign-in in progress: its state (PKCE verifier, nonce, where to go, the browser
//! that started it) kept single-use behind the OAuth `state`, and the browser binding that
//! makes a callback count only in the browser that started the flow.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::csrf::SiteContext;
use crate::auth::error::{AuthError, Refusal, Spent};
use crate::auth::state::AppState;
use crate::cookies::Own;
use crate::crypto;
use crate::identity::single_use::{SingleUse, TokenShape};

/// How long a sign-in may take at the provider.
pub(super) const FLOW_TTL: Duration = Duration::from_secs(600);

/// A sign-in in progress.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Flow {
    pub(super) provider: String,
    pub(super) verifier: String,
    pub(super) nonce: String,
    pub(super) redirect: String,
    /// Set when a signed-in user links this provider instead of signing in.
    pub(super) link_user: Option<Uuid>,
    /// SHA-256 (hex) of the binding cookie of the browser that started the flow.
    #[serde(default)]
    pub(super) binding: String,
}

/// The browser's binding of the flows it starts (provider sign-ins, mailed sign-ups): its
/// binding cookie's value, or a new one to set.
pub(crate) fn browser_binding(state: &AppState, headers: &http::HeaderMap) -> String {
    state
        .cookies
        .read(headers, Own::Flow)
        .one()
        .filter(|value| crypto::is_random_token(value))
        .map_or_else(crypto::random_token, str::to_owned)
}

/// The SHA-256 (hex) of the binding cookie a request carries, empty when it carries none.
pub(crate) fn browser_binding_hash(state: &AppState, headers: &http::HeaderMap) -> String {
    match state.cookies.read(headers, Own::Flow).one() {
        Some(binding) if crypto::is_random_token(binding) => {
            crypto::hex(&crypto::sha256(binding.as_bytes()))
        }
        _ => String::new(),
    }
}

/// Refuses a callback from a browser other than the one that started the flow, and a link
/// flow finished by anyone but the user who started it.
pub(super) async fn check_binding(
    state: &AppState,
    site: &SiteContext,
    flow: &Flow,
) -> Result<(), AuthError> {
    let binding = state.cookies.read(&site.headers, Own::Flow).one().unwrap_or_default();
    let hash = crypto::hex(&crypto::sha256(binding.as_bytes()));
    if binding.is_empty() || !crypto::constant_time_eq(hash.as_bytes(), flow.binding.as_bytes()) {
        return Err(AuthError::from(Refusal::OtherBrowser));
    }
    if let Some(user_id) = flow.link_user {
        let session = state.gateway.session(&site.headers).await?;
        if session.is_none_or(|(_, identity)| identity.user_id != user_id) {
            return Err(AuthError::from(Refusal::OtherLinker));
        }
    }
    Ok(())
}

pub(super) async fn take_flow(
    state: &AppState,
    flow_state: Option<&str>,
) -> Result<Flow, AuthError> {
    let flow = flows(state).take(flow_state.unwrap_or_default()).await?;
    flow.ok_or(AuthError::Spent(Spent::ProviderFlow))
}

/// Sign-ins in progress, behind the `state` sent to the provider.
pub(super) fn flows(state: &AppState) -> SingleUse<Flow> {
    SingleUse::new(
        Arc::clone(&state.services.ephemeral),
        "oauth_flow",
        TokenShape::Opaque,
        FLOW_TTL,
    )
}
