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

use uuid::Uuid;

use crate::clock::Timestamp;
use crate::identity::Scopes;
use crate::identity::UserView;
use crate::identity::tokens::TokenPair;
use crate::model::org::{Member, Membership};
use crate::store::api_keys::ApiKeyRecord;
use crate::store::invites::Invite;

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
pub struct MessageBody {
    /// What happened.
    pub message: String,
}

impl MessageBody {
    /// `{"message": text}` as a JSON answer.
    pub fn json(text: impl Into<String>) -> Json<Self> {
        Json(Self { message: text.into() })
    }
}

/// `{"user": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody<'a> {
    /// The user.
    pub user: UserView<'a>,
}

/// A token login: the pair and the user.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenLogin<'a> {
    /// The tokens.
    #[serde(flatten)]
    pub pair: TokenPair,
    /// The user.
    pub user: UserView<'a>,
}

/// A `cookie_token` login: the user, and the tokens' type and lifetime (the tokens are in
/// httpOnly cookies).
#[derive(Debug, Serialize, ToSchema)]
pub struct CookieTokenLogin<'a> {
    /// The user.
    pub user: UserView<'a>,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime, seconds.
    pub expires_in: u64,
}

/// A login that waits for the user to choose an organization (`[orgs] require_selection`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingChoice {
    /// For `POST /auth/orgs/select`; single use, ten minutes.
    pub pending_token: String,
    /// The organizations to choose from.
    pub organizations: Vec<Membership>,
}

/// What a sign-in answers with JSON: a session's user, tokens, or a pending choice.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignedInBody<'a> {
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
pub struct CsrfBody {
    /// For the `X-CSRF-Token` header (or a form's `csrf_token` field).
    pub csrf_token: String,
}

/// `POST /ws-token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WsTicketBody {
    /// `ws_…`, single use.
    pub token: String,
    /// Seconds it stays usable.
    pub expires_in: u64,
}

/// One of the user's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDoc {
    /// Session id.
    pub id: Uuid,
    /// Sign-in time.
    pub created_at: Timestamp,
    /// Last activity (at most a minute stale).
    pub last_seen_at: Timestamp,
    /// Client IP at sign-in.
    pub ip: Option<String>,
    /// Client user agent at sign-in.
    pub user_agent: Option<String>,
    /// Whether it is the session of this request.
    pub current: bool,
}

/// `GET /sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsBody {
    /// Newest first.
    pub sessions: Vec<SessionDoc>,
}

/// An API key as listed (never the key).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDoc {
    /// Key id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its first characters.
    pub prefix: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The organization it acts in.
    pub org_id: Option<Uuid>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last use.
    pub last_used_at: Option<Timestamp>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

impl ApiKeyDoc {
    /// The listed form of a stored key.
    pub fn of(record: &ApiKeyRecord) -> Self {
        let scopes = match &record.scopes {
            Scopes::Only(scopes) => scopes.to_vec(),
            Scopes::All => Vec::new(),
        };
        Self {
            id: record.id,
            name: record.name.clone(),
            prefix: record.prefix.clone(),
            scopes,
            org_id: record.org_id,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            expires_at: record.expires_at,
        }
    }
}

/// `GET /api-keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeysBody {
    /// The caller's keys.
    pub api_keys: Vec<ApiKeyDoc>,
}

/// `POST /api-keys`: the key, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyBody {
    /// Key id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// `pk_…`: store it now.
    pub key: String,
    /// Its first characters.
    pub prefix: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The organization it acts in.
    pub org_id: Option<Uuid>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
}

/// `POST /device/start` (RFC 8628).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceStartBody {
    /// For polling.
    pub device_code: String,
    /// What the user types.
    pub user_code: String,
    /// Where the user approves.
    pub verification_uri: String,
    /// The same, with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds the codes live.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// `POST /device/poll`: the status, and the tokens once on completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePollBody {
    /// `pending`, `slow_down`, `expired`, `denied` or `completed`.
    pub status: &'static str,
    /// On completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// On completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// On completion: `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// On completion: access token lifetime, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// An error of the OAuth token endpoint (RFC 6749 §5.2), with our `message` too.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_grant`, `authorization_pending`, …
    pub error: &'static str,
    /// What went wrong (absent when the request itself was malformed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<&'static str>,
    /// The same, as in every other error.
    pub message: &'static str,
}

/// `POST /service-tokens/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceTokenBody {
    /// The service's JWT.
    pub token: String,
    /// Its expiry.
    pub expires_at: Timestamp,
}

/// A provider linked to the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkDoc {
    /// Provider name.
    pub provider: String,
    /// When it was linked.
    pub linked_at: Timestamp,
}

/// `GET /providers/linked`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedBody {
    /// Oldest first.
    pub providers: Vec<LinkDoc>,
}

/// `GET /providers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersBody {
    /// Enabled sign-in methods.
    pub providers: Vec<String>,
}

/// `POST /sign-in`: how this address signs in.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignInAnswer {
    /// `sso`, `magic_link` or `password`.
    pub auth_method: &'static str,
    /// For `sso`: the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// For `sso`: where to send the browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// For `sso`: the `state` the provider sends back to the callback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
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

/// `GET /orgs/{id}/members`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembersBody {
    /// Oldest first.
    pub members: Vec<Member>,
}

/// `PATCH /orgs/{id}/members/{user_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberBody {
    /// The member as changed.
    pub member: Member,
}

/// An invite (never its token).
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteDoc {
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
pub struct InviteBody {
    /// The invite sent.
    pub invite: InviteDoc,
}

/// `GET /orgs/{id}/invites`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitesBody {
    /// Pending invites, newest first.
    pub invites: Vec<InviteDoc>,
}

/// The finished document for routes served under `base_path`, as JSON.
pub fn document(mut api: OpenApi, base_path: &str) -> Bytes {
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
pub struct Document(pub Bytes);

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "session",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API")))]
pub async fn openapi(Extension(document): Extension<Document>) -> Response {
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
