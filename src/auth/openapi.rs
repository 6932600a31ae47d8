//! The OpenAPI 3.1 document of the auth API (`GET /auth/openapi.json`), generated from the
//! handlers themselves: every route is registered through `utoipa_axum::routes!`, which only
//! takes handlers carrying a `#[utoipa::path]`, so a route cannot exist undocumented, and the
//! document is built from the same registrations, so it cannot list a route that does not exist.
//!
//! The schemas here describe bodies the handlers build with `json!`; the schemathesis run in
//! CI checks real answers against them.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use serde::Serialize;
use utoipa::openapi::OpenApi;
use utoipa::{OpenApi as _, ToSchema};

use crate::identity::UserView;
use crate::identity::tokens::TokenPair;
use crate::model::org::Membership;

/// The document's fixed parts: title, tags and the shared schemas.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Portcullis auth API",
        description = "Sign-in, sessions, tokens, API keys and organizations. Errors are always \
                       `{\"error\", \"message\"}` with the status of the error code.",
    ),
    tags(
        (name = "session", description = "The signed-in user and their sessions"),
        (name = "password", description = "Email and password"),
        (name = "email", description = "Magic links, codes, verification and password reset"),
        (name = "providers", description = "OAuth 2.0, OpenID Connect and Steam sign-in"),
        (name = "tokens", description = "Access and refresh tokens, device flow, WebSocket tickets"),
        (name = "api_keys", description = "API keys"),
        (name = "orgs", description = "Organizations, members and invites"),
        (name = "pages", description = "Server-rendered pages (HTML)"),
        (name = "forward_auth", description = "For reverse proxies"),
    ),
    components(schemas(crate::error::ErrorBody))
)]
struct Base;

/// `{"message": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageBody {
    /// What happened.
    pub message: String,
}

impl MessageBody {
    /// `{"message": text}` as a JSON answer.
    pub(crate) fn json(text: impl Into<String>) -> Json<Self> {
        Json(Self { message: text.into() })
    }
}

/// `{"user": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserBody<'a> {
    /// The user.
    pub user: UserView<'a>,
}

/// A token login: the pair and the user.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenLogin<'a> {
    /// The tokens.
    #[serde(flatten)]
    pub pair: TokenPair,
    /// The user.
    pub user: UserView<'a>,
}

/// A `cookie_token` login: the user, and the tokens' type and lifetime (the tokens are in
/// httpOnly cookies).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CookieTokenLogin<'a> {
    /// The user.
    pub user: UserView<'a>,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime, seconds.
    pub expires_in: u64,
}

/// A login that waits for the user to choose an organization (`[orgs] require_selection`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PendingChoice {
    /// For `POST /auth/orgs/select`; single use, ten minutes.
    pub pending_token: String,
    /// The organizations to choose from.
    pub organizations: Vec<Membership>,
}

/// What a sign-in answers with JSON: a session's user, tokens, or a pending choice.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum SignedInBody<'a> {
    /// A session cookie was set.
    Session(UserBody<'a>),
    /// `"mode": "token"`.
    Tokens(TokenLogin<'a>),
    /// `"mode": "cookie_token"`.
    CookieTokens(CookieTokenLogin<'a>),
    /// Choose an organization first.
    Choice(PendingChoice),
}

/// `GET /csrf`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CsrfBody {
    /// For the `X-CSRF-Token` header (or a form's `csrf_token` field).
    pub csrf_token: String,
}

/// The finished document for routes served under `base_path`, as JSON.
pub(crate) fn document(mut api: OpenApi, base_path: &str) -> Bytes {
    let base = Base::openapi();
    api.info = base.info;
    api.tags = base.tags;
    let components = api.components.get_or_insert_with(Default::default);
    if let Some(extra) = base.components {
        components.schemas.extend(extra.schemas);
    }
    api.paths.paths = std::mem::take(&mut api.paths.paths)
        .into_iter()
        .map(|(path, item)| (format!("{base_path}{path}"), item))
        .collect();
    let mut json = serde_json::to_value(&api).unwrap_or_default();
    unique_operation_ids(&mut json);
    Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
}

/// Every operation may answer an error in the one format (browser flows: on a page), so the
/// error responses are added here once rather than written on each handler.
fn add_error_responses(responses: &mut serde_json::Value) {
    let Some(responses) = responses.as_object_mut() else { return };
    let content = serde_json::json!({
        "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } },
        "text/html": { "schema": { "type": "string" } },
    });
    for (status, description) in [
        ("4XX", "Refused: the `error` code says why (browser flows show the message on a page)"),
        ("5XX", "A store is down (`store_unavailable`), or a bug (`internal`)"),
    ] {
        responses.entry(status).or_insert_with(
            || serde_json::json!({ "description": description, "content": content.clone() }),
        );
    }
}

/// Operation ids from method and path (`post_auth_orgs_id_invites`): handlers in different
/// modules share names (`list`, `create`), and OpenAPI wants every id unique.
fn unique_operation_ids(document: &mut serde_json::Value) {
    let Some(paths) = document.get_mut("paths").and_then(|paths| paths.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let words: Vec<String> = path
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            if let Some(operation) = operation.as_object_mut() {
                let id = format!("{method}_{}", words.join("_"));
                operation.insert("operationId".into(), serde_json::Value::String(id));
                if let Some(responses) = operation.get_mut("responses") {
                    add_error_responses(responses);
                }
            }
        }
    }
}

/// The document, as [`document`] made it.
#[derive(Debug, Clone)]
pub(crate) struct Document(pub Bytes);

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "session",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API")))]
pub(crate) async fn openapi(Extension(document): Extension<Document>) -> Response {
    ([(CONTENT_TYPE, "application/json")], document.0).into_response()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// `docs/openapi.json` is the document of the embedded defaults, so that readers (and
    /// client generators) have it without running a server. Rewrite it with
    /// `UPDATE_OPENAPI=1 cargo test --lib openapi`.
    #[test]
    fn the_committed_document_is_current() {
        let config = Config::defaults().unwrap();
        let document: serde_json::Value =
            serde_json::from_slice(&crate::auth::api_document(&config)).unwrap();
        let current = serde_json::to_string_pretty(&document).unwrap() + "\n";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &current).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test --lib openapi` and \
             commit it"
        );
    }
}
