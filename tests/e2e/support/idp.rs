//! An in-process OpenID Connect provider for the tests: discovery, authorize (auto-approving
//! the user the test sets, or refusing), token (checking the client secret and PKCE, signing a
//! real ES256 ID token), userinfo and JWKS, on an ephemeral port. Knobs let a test break it the
//! ways real providers break: wrong audience, wrong nonce, a key not in the JWKS, a rotated key,
//! a failing token endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use parking_lot::Mutex;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "portcullis-test";
pub const CLIENT_SECRET: &str = "idp-client-secret";

/// The person the provider signs in next.
#[derive(Debug, Clone)]
pub struct IdpUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub groups: Vec<String>,
}

/// Ways to misbehave.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub deny: bool,
    pub wrong_audience: bool,
    pub wrong_nonce: bool,
    pub unknown_signing_key: bool,
    pub token_endpoint_fails: bool,
    /// Multi-tenant mode: a token whose `iss` names another tenant than its `tid`.
    pub issuer_of_another_tenant: bool,
    /// Two audiences, with another party as `azp`.
    pub authorized_party_elsewhere: bool,
    /// `iat` an hour ahead.
    pub issued_in_the_future: bool,
}

struct Key {
    kid: String,
    pair: rcgen::KeyPair,
}

struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    user: IdpUser,
}

struct Inner {
    issuer: String,
    keys: Vec<Key>,
    stray_key: rcgen::KeyPair,
    user: IdpUser,
    faults: Faults,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, IdpUser>,
    counter: u64,
    /// Microsoft-style multi-tenant mode: the tenant of the signed-in user.
    tenant: Option<String>,
}

/// A running provider.
#[derive(Clone)]
pub struct FakeIdp {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeIdp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            issuer: format!("http://{addr}"),
            keys: vec![Key { kid: "key-1".into(), pair: rcgen::KeyPair::generate().unwrap() }],
            stray_key: rcgen::KeyPair::generate().unwrap(),
            user: IdpUser {
                sub: "idp-user-1".into(),
                email: "ada@corp.example".into(),
                email_verified: true,
                name: "Ada Lovelace".into(),
                groups: vec!["engineering".into()],
            },
            faults: Faults::default(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            counter: 0,
            tenant: None,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/common/v2.0/.well-known/openid-configuration", get(multi_tenant_discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_user(&self, user: IdpUser) {
        self.inner.lock().user = user;
    }

    pub fn set_faults(&self, faults: Faults) {
        self.inner.lock().faults = faults;
    }

    /// Answers like Microsoft's multi-tenant endpoint, signing users of `tenant` in.
    pub fn set_tenant(&self, tenant: &str) {
        self.inner.lock().tenant = Some(tenant.to_owned());
    }

    /// Adds a new signing key (published, and used from now on).
    pub fn rotate_key(&self) {
        let mut inner = self.inner.lock();
        let kid = format!("key-{}", inner.keys.len() + 1);
        inner.keys.push(Key { kid, pair: rcgen::KeyPair::generate().unwrap() });
    }
}

async fn discovery(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Value> {
    let issuer = inner.lock().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

/// Discovery as `login.microsoftonline.com/common/v2.0` answers it: an issuer template.
async fn multi_tenant_discovery(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Value> {
    let base = inner.lock().issuer.clone();
    Json(json!({
        "issuer": format!("{base}/{{tenantid}}/v2.0"),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
    }))
}

async fn authorize(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock();
    let redirect_uri = query.get("redirect_uri").cloned().unwrap_or_default();
    let state = query.get("state").cloned().unwrap_or_default();
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || query.get("code_challenge_method").map(String::as_str) != Some("S256")
        || !query.get("scope").is_some_and(|scope| scope.split(' ').any(|s| s == "openid"))
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    if inner.faults.deny {
        return Redirect::to(&format!(
            "{redirect_uri}?error=access_denied&error_description=The+user+said+no&state={state}"
        ))
        .into_response();
    }
    inner.counter += 1;
    let code = format!("code-{}", inner.counter);
    let grant = Grant {
        nonce: query.get("nonce").cloned().unwrap_or_default(),
        challenge: query.get("code_challenge").cloned().unwrap_or_default(),
        redirect_uri: redirect_uri.clone(),
        user: inner.user.clone(),
    };
    inner.codes.insert(code.clone(), grant);
    Redirect::to(&format!("{redirect_uri}?code={code}&state={state}")).into_response()
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock();
    if inner.faults.token_endpoint_fails {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let expected = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "error": "invalid_client" })))
            .into_response();
    }
    let invalid_grant =
        || (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant" }))).into_response();
    let Some(grant) = form.get("code").and_then(|code| inner.codes.remove(code)) else {
        return invalid_grant();
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge =
        URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    if challenge != grant.challenge || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return invalid_grant();
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let faults = inner.faults.clone();
    let issuer = match &inner.tenant {
        Some(_) if faults.issuer_of_another_tenant => {
            format!("{}/other-tenant/v2.0", inner.issuer)
        }
        Some(tenant) => format!("{}/{tenant}/v2.0", inner.issuer),
        None => inner.issuer.clone(),
    };
    let claims = json!({
        "iss": issuer,
        "tid": inner.tenant,
        "aud": if faults.wrong_audience {
            json!("someone-else")
        } else if faults.authorized_party_elsewhere {
            json!([CLIENT_ID, "someone-else"])
        } else {
            json!(CLIENT_ID)
        },
        "azp": if faults.authorized_party_elsewhere { Some("someone-else") } else { None },
        "sub": grant.user.sub,
        "email": grant.user.email,
        "email_verified": grant.user.email_verified,
        "name": grant.user.name,
        "groups": grant.user.groups,
        "nonce": if faults.wrong_nonce { "not-the-nonce" } else { grant.nonce.as_str() },
        "iat": if faults.issued_in_the_future { now + 3600 } else { now },
        "exp": now + 7200,
    });
    let current = inner.keys.last().unwrap();
    let (kid, pair) = if faults.unknown_signing_key {
        (current.kid.clone(), &inner.stray_key)
    } else {
        (current.kid.clone(), &current.pair)
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid);
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let id_token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    inner.counter += 1;
    let access_token = format!("at-{}", inner.counter);
    inner.tokens.insert(access_token.clone(), grant.user);
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

async fn userinfo(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let inner = inner.lock();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match inner.tokens.get(token) {
        Some(user) => Json(json!({
            "sub": user.sub,
            "email": user.email,
            "picture": "https://cdn.corp.example/ada.png",
        }))
        .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn jwks(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Value> {
    let inner = inner.lock();
    let keys: Vec<Value> = inner
        .keys
        .iter()
        .map(|key| {
            let point = key.pair.public_key_raw();
            json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": key.kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            })
        })
        .collect();
    Json(json!({ "keys": keys }))
}
