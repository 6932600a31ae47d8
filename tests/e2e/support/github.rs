//! A GitHub-shaped OAuth 2 server and user API for the tests: authorize, access_token (client
//! secret and PKCE checked), `/user`, `/user/emails`, `/user/orgs`, `/user/teams`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "gh-client";
pub const CLIENT_SECRET: &str = "gh-secret";

/// The GitHub account that signs in next.
#[derive(Debug, Clone)]
pub struct GithubAccount {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    /// `(email, primary, verified)`.
    pub emails: Vec<(String, bool, bool)>,
    pub orgs: Vec<String>,
    /// `(org, team slug)`.
    pub teams: Vec<(String, String)>,
}

struct Inner {
    account: GithubAccount,
    codes: HashMap<String, (String, GithubAccount)>,
    tokens: HashMap<String, GithubAccount>,
    counter: u64,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeGithub {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGithub {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            account: GithubAccount {
                id: 583231,
                login: "octocat".into(),
                name: Some("The Octocat".into()),
                emails: vec![("octocat@github.example".into(), true, true)],
                orgs: vec!["acme".into()],
                teams: vec![("acme".into(), "ops".into())],
            },
            codes: HashMap::new(),
            tokens: HashMap::new(),
            counter: 0,
        }));
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/api/user", get(user))
            .route("/api/user/emails", get(emails))
            .route("/api/user/orgs", get(orgs))
            .route("/api/user/teams", get(teams))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_account(&self, account: GithubAccount) {
        self.inner.lock().account = account;
    }
}

async fn authorize(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock();
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    }
    inner.counter += 1;
    let code = format!("gh-code-{}", inner.counter);
    let challenge = query.get("code_challenge").cloned().unwrap_or_default();
    let account = inner.account.clone();
    inner.codes.insert(code.clone(), (challenge, account));
    let redirect_uri = query.get("redirect_uri").cloned().unwrap_or_default();
    let state = query.get("state").cloned().unwrap_or_default();
    Redirect::to(&format!("{redirect_uri}?code={code}&state={state}")).into_response()
}

async fn access_token(
    State(inner): State<Arc<Mutex<Inner>>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock();
    let Some((challenge, account)) = form.get("code").and_then(|code| inner.codes.remove(code))
    else {
        return Json(json!({ "error": "bad_verification_code" })).into_response();
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed =
        URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    if computed != challenge {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant" })))
            .into_response();
    }
    inner.counter += 1;
    let token = format!("gho_{}", inner.counter);
    inner.tokens.insert(token.clone(), account);
    Json(json!({ "access_token": token, "token_type": "bearer", "scope": "read:user,user:email" }))
        .into_response()
}

fn account(inner: &Arc<Mutex<Inner>>, headers: &HeaderMap) -> Option<GithubAccount> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?.to_owned();
    inner.lock().tokens.get(&token).cloned()
}

async fn user(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    match account(&inner, &headers) {
        Some(a) => Json(json!({ "id": a.id, "login": a.login, "name": a.name, "avatar_url": "https://avatars.github.example/u/1" })).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn emails(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    match account(&inner, &headers) {
        Some(a) => {
            let list: Vec<Value> = a
                .emails
                .iter()
                .map(|(email, primary, verified)| json!({ "email": email, "primary": primary, "verified": verified }))
                .collect();
            Json(list).into_response()
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// One page of a list, as GitHub pages it (`per_page`, default 30; `page` from 1).
fn page<T: serde::Serialize>(items: Vec<T>, query: &HashMap<String, String>) -> Response {
    let size: usize = query.get("per_page").and_then(|n| n.parse().ok()).unwrap_or(30);
    let page: usize = query.get("page").and_then(|n| n.parse().ok()).unwrap_or(1);
    let start = (page - 1) * size;
    Json(items.into_iter().skip(start).take(size).collect::<Vec<_>>()).into_response()
}

async fn orgs(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match account(&inner, &headers) {
        Some(a) => page(a.orgs.iter().map(|org| json!({ "login": org })).collect(), &query),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn teams(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match account(&inner, &headers) {
        Some(a) => page(
            a.teams
                .iter()
                .map(|(org, slug)| json!({ "slug": slug, "organization": { "login": org } }))
                .collect(),
            &query,
        ),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}
