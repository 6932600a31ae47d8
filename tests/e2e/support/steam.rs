//! A Steam-shaped OpenID 2.0 provider for the tests: `checkid_setup` answers with a positive
//! assertion for the Steam id the test sets, `check_authentication` vouches only for assertions
//! it made (once, unaltered), and the Web API serves a persona name.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;

pub const API_KEY: &str = "steam-web-api-key";

struct Inner {
    base: String,
    steam_id: String,
    /// Signatures made, with the claimed id each was made for.
    issued: HashMap<String, String>,
    used: HashSet<String>,
    counter: u64,
    /// How old the nonce of the next assertions is.
    nonce_age: std::time::Duration,
    /// The `openid.signed` list of the next assertions.
    signed: String,
}

const SIGNED: &str = "signed,op_endpoint,claimed_id,identity,return_to,response_nonce,assoc_handle";

/// A running fake.
#[derive(Clone)]
pub struct FakeSteam {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSteam {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            base: format!("http://{addr}"),
            steam_id: "76561197960287930".into(),
            issued: HashMap::new(),
            used: HashSet::new(),
            counter: 0,
            nonce_age: std::time::Duration::ZERO,
            signed: SIGNED.into(),
        }));
        let app = Router::new()
            .route("/openid/login", get(checkid_setup).post(check_authentication))
            .route("/ISteamUser/GetPlayerSummaries/v0002/", get(summaries))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_steam_id(&self, steam_id: &str) {
        self.inner.lock().steam_id = steam_id.to_owned();
    }

    /// Makes the next assertions' nonces this old.
    pub fn set_nonce_age(&self, age: std::time::Duration) {
        self.inner.lock().nonce_age = age;
    }

    /// Signs the next assertions over these fields only (`None`: all of them).
    pub fn set_signed(&self, signed: Option<&str>) {
        self.inner.lock().signed = signed.unwrap_or(SIGNED).to_owned();
    }
}

async fn checkid_setup(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock();
    let return_to = query.get("openid.return_to").cloned().unwrap_or_default();
    if query.get("openid.mode").map(String::as_str) != Some("checkid_setup")
        || !query.get("openid.realm").is_some_and(|realm| return_to.starts_with(realm.as_str()))
    {
        return (axum::http::StatusCode::BAD_REQUEST, "bad request").into_response();
    }
    inner.counter += 1;
    let claimed = format!("{}/openid/id/{}", inner.base, inner.steam_id);
    let sig = format!("sig-{}", inner.counter);
    inner.issued.insert(sig.clone(), claimed.clone());
    let endpoint = format!("{}/openid/login", inner.base);
    let params: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("openid.ns", "http://specs.openid.net/auth/2.0")
        .append_pair("openid.mode", "id_res")
        .append_pair("openid.op_endpoint", &endpoint)
        .append_pair("openid.claimed_id", &claimed)
        .append_pair("openid.identity", &claimed)
        .append_pair("openid.return_to", &return_to)
        .append_pair("openid.response_nonce", &{
            let at = std::time::SystemTime::now() - inner.nonce_age;
            format!("{}n{}", humantime::format_rfc3339_seconds(at), inner.counter)
        })
        .append_pair("openid.assoc_handle", "1234567890")
        .append_pair("openid.signed", &inner.signed.clone())
        .append_pair("openid.sig", &sig)
        .finish();
    let separator = if return_to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{return_to}{separator}{params}")).into_response()
}

async fn check_authentication(
    State(inner): State<Arc<Mutex<Inner>>>,
    Form(form): Form<HashMap<String, String>>,
) -> String {
    let mut inner = inner.lock();
    let sig = form.get("openid.sig").cloned().unwrap_or_default();
    let valid = form.get("openid.mode").map(String::as_str) == Some("check_authentication")
        && inner.issued.get(&sig) == form.get("openid.claimed_id")
        && inner.used.insert(sig);
    format!("ns:http://specs.openid.net/auth/2.0\nis_valid:{valid}\n")
}

async fn summaries(Query(query): Query<HashMap<String, String>>) -> Response {
    if query.get("key").map(String::as_str) != Some(API_KEY) {
        return axum::http::StatusCode::FORBIDDEN.into_response();
    }
    Json(json!({ "response": { "players": [{ "steamid": query.get("steamids"), "personaname": "gaben", "avatarfull": "https://avatars.steamstatic.example/gaben_full.jpg" }] } }))
        .into_response()
}
