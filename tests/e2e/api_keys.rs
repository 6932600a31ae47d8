//! API keys: creation (shown once), scopes checked by the route policy, expiry, revocation of a
//! cached key, mistyped keys, and what the app receives.

use std::time::Duration;

use portcullis::testing::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Echoed, PASSWORD, TestApp, error_code, password_login};

const API_ROUTES: &str = r#"
[[routes]]
path = "/api/*"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["write"]
on_unauthenticated = "401"
[[routes]]
path = "/api/*"
scopes = ["read"]
on_unauthenticated = "401"
"#;

/// Creates a key as the signed-in `client` (with CSRF); returns the 201 body.
async fn create_key(app: &TestApp, client: &reqwest::Client, body: Value) -> Value {
    let csrf = app.csrf(client).await;
    let response = client
        .post(app.url("/auth/api-keys"))
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn with_key(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> reqwest::Response {
    crate::support::http().request(method, app.url(path)).bearer_auth(key).send().await.unwrap()
}

#[tokio::test]
async fn a_key_reaches_the_app_with_its_scopes_and_never_its_secret() {
    let app = TestApp::builder().routes(API_ROUTES).spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let created = create_key(&app, &client, json!({ "name": "ci", "scopes": ["read"] })).await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("pk_") && key.len() > 40, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["scopes"], json!(["read"]));

    let response = with_key(&app, reqwest::Method::GET, "/api/things", key).await;
    assert_eq!(response.status(), 200);
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("x-auth-method"), Some("api_key"));
    assert_eq!(echoed.header("x-auth-scopes"), Some("read"));
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));
    assert!(echoed.header("authorization").is_none(), "the key never reaches the app");

    let (status, error) =
        error_code(with_key(&app, reqwest::Method::POST, "/api/things", key).await).await;
    assert_eq!((status, error.as_str()), (StatusCode::FORBIDDEN, "forbidden"));

    let writer =
        create_key(&app, &client, json!({ "name": "deploy", "scopes": ["read", "write"] })).await;
    let writer = writer["key"].as_str().unwrap();
    assert_eq!(with_key(&app, reqwest::Method::POST, "/api/things", writer).await.status(), 200);

    // Listed without the secret, newest first, with the last use recorded.
    let listed: Value =
        client.get(app.url("/auth/api-keys")).send().await.unwrap().json().await.unwrap();
    let keys = listed["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["name"], "deploy");
    assert!(keys.iter().all(|key| key.get("key").is_none()));
    assert!(!listed.to_string().contains(writer));
    assert!(keys[1]["last_used_at"].is_string(), "{listed}");
}

#[tokio::test]
async fn creating_keys_needs_csrf_and_a_person_not_a_key() {
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let without_csrf = client
        .post(app.url("/auth/api-keys"))
        .json(&json!({ "name": "x", "scopes": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(without_csrf).await, (StatusCode::FORBIDDEN, "csrf_failed".into()));

    let created = create_key(&app, &client, json!({ "name": "k" })).await;
    let by_key = crate::support::http()
        .post(app.url("/auth/api-keys"))
        .bearer_auth(created["key"].as_str().unwrap())
        .json(&json!({ "name": "minted" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(by_key).await, (StatusCode::FORBIDDEN, "forbidden".into()));

    for bad in [
        json!({ "name": "", "scopes": [] }),
        json!({ "name": "x", "scopes": ["Not Valid"] }),
        json!({ "name": "x", "expires_in_days": 0 }),
        json!({ "name": "x", "surprise": true }),
    ] {
        let csrf = app.csrf(&client).await;
        let response = client
            .post(app.url("/auth/api-keys"))
            .header("x-csrf-token", csrf)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn expired_revoked_mistyped_and_unknown_keys_are_refused() {
    let clock = ManualClock::new();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let client = app.signed_in("ada@example.com").await;

    // Revoking a key that is cached (used a moment ago) stops it on the next request.
    let created = create_key(&app, &client, json!({ "name": "revoke me" })).await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(with_key(&app, reqwest::Method::GET, "/x", key).await.status(), 200);
    let csrf = app.csrf(&client).await;
    let revoked = client
        .delete(app.url(&format!("/auth/api-keys/{}", created["id"].as_str().unwrap())))
        .header("x-csrf-token", csrf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let (status, error) = error_code(with_key(&app, reqwest::Method::GET, "/x", key).await).await;
    assert_eq!((status, error.as_str()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let again = client
        .delete(app.url(&format!("/auth/api-keys/{}", created["id"].as_str().unwrap())))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // A typo fails the checksum; a well-formed stranger is unknown: both are invalid_token.
    let live = create_key(&app, &client, json!({ "name": "live" })).await;
    let live = live["key"].as_str().unwrap();
    let mut typo = live.to_owned().into_bytes();
    let at = typo.len() - 10;
    typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let stranger = format!("pk_{}", "A".repeat(49));
    for bad in [typo.as_str(), stranger.as_str(), "pk_short"] {
        let (status, error) =
            error_code(with_key(&app, reqwest::Method::GET, "/x", bad).await).await;
        assert_eq!((status, error.as_str()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{bad}");
    }
    assert_eq!(with_key(&app, reqwest::Method::GET, "/x", live).await.status(), 200);

    // A key past its expiry is refused, even though it was cached a moment before.
    let expiring = create_key(&app, &client, json!({ "name": "day", "expires_in_days": 1 })).await;
    let expiring = expiring["key"].as_str().unwrap();
    assert_eq!(with_key(&app, reqwest::Method::GET, "/x", expiring).await.status(), 200);
    clock.advance(Duration::from_secs(2 * 86_400));
    let (status, error) =
        error_code(with_key(&app, reqwest::Method::GET, "/x", expiring).await).await;
    assert_eq!((status, error.as_str()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    assert_eq!(with_key(&app, reqwest::Method::GET, "/x", live).await.status(), 200);
}

#[tokio::test]
async fn another_users_key_cannot_be_revoked_or_listed() {
    let app = TestApp::spawn().await;
    let ada = app.signed_in("ada@example.com").await;
    let eve = app.signed_in("eve@example.com").await;
    let created = create_key(&app, &ada, json!({ "name": "ada's" })).await;
    let csrf = app.csrf(&eve).await;
    let response = eve
        .delete(app.url(&format!("/auth/api-keys/{}", created["id"].as_str().unwrap())))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let listed: Value =
        eve.get(app.url("/auth/api-keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["api_keys"], json!([]));
    let key = created["key"].as_str().unwrap();
    assert_eq!(with_key(&app, reqwest::Method::GET, "/x", key).await.status(), 200);
}

/// A key limited to `read` reaches the app, not the account: it cannot revoke keys, end the
/// user's sessions or mint keys. The `account` scope opens the account endpoints.
#[tokio::test]
async fn account_endpoints_need_the_account_scope() {
    let app = TestApp::builder().routes(API_ROUTES).spawn().await;
    let owner = app.signed_in("ada@example.com").await;
    let reader = create_key(&app, &owner, json!({ "name": "reader", "scopes": ["read"] })).await;
    let reader_key = reader["key"].as_str().unwrap();
    let other = create_key(&app, &owner, json!({ "name": "other", "scopes": ["read"] })).await;
    let other_id = other["id"].as_str().unwrap();

    let logout_all = crate::support::http()
        .post(app.url("/auth/logout?all=true"))
        .bearer_auth(reader_key)
        .send()
        .await
        .unwrap();
    assert_eq!(logout_all.status(), StatusCode::FORBIDDEN);
    let revoke =
        with_key(&app, reqwest::Method::DELETE, &format!("/auth/api-keys/{other_id}"), reader_key)
            .await;
    assert_eq!(revoke.status(), StatusCode::FORBIDDEN);
    let body: Value = revoke.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("`account` scope"), "{body}");
    let me = owner.get(app.url("/auth/me")).send().await.unwrap();
    assert_eq!(me.status(), 200, "the browser session is still alive");
    let keys: Value =
        owner.get(app.url("/auth/api-keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 2, "no key was revoked");
    // Reading who it is stays open to any key; the app is reached as before.
    let me = with_key(&app, reqwest::Method::GET, "/auth/me", reader_key).await;
    assert_eq!(me.status(), 200);

    let admin =
        create_key(&app, &owner, json!({ "name": "admin", "scopes": ["read", "account"] })).await;
    let listed =
        with_key(&app, reqwest::Method::GET, "/auth/api-keys", admin["key"].as_str().unwrap())
            .await;
    assert_eq!(listed.status(), 200);
}

/// A WebSocket ticket opens a WebSocket through the gateway and nothing else: sent to the auth
/// API with an upgrade header, it is no credential at all.
#[tokio::test]
async fn a_websocket_ticket_is_not_a_credential_for_the_auth_api() {
    let app = TestApp::builder().routes(API_ROUTES).spawn().await;
    let owner = app.signed_in("ada@example.com").await;
    let ticket = app.ws_ticket(&owner).await;
    let minted = crate::support::http()
        .post(app.url(&format!("/auth/api-keys?access_token={ticket}")))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .json(&json!({ "name": "stolen", "scopes": ["read", "write"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), StatusCode::UNAUTHORIZED);
    let me = crate::support::http()
        .get(app.url(&format!("/auth/me?access_token={ticket}")))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let keys: Value =
        owner.get(app.url("/auth/api-keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(keys["api_keys"], json!([]), "no key was minted");
}

/// An installation upgraded from a version without credential tags: its untagged session
/// cookies and API keys keep working (they are looked up) while they can be live, and once no
/// live untagged key is left an untagged key is refused unread. A new installation never
/// looks one up. Whether a credential was looked up shows in the negative cache, which only a
/// lookup fills.
#[tokio::test]
async fn untagged_credentials_of_an_upgraded_installation_work_while_they_can_live() {
    use portcullis::testing::crypto::{hex, random_token, sha256};
    use portcullis::testing::model::credential::CredentialHash;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("upgraded.db").display());
    let mut app = TestApp::builder().database(&url).spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let tagged_key = app.api_key(&client, "old").await;
    let cookie = app.session_cookie(&app.client(), "bea@example.com").await;
    let state = app.running().state();
    let looked_up = |state: &portcullis::testing::auth::state::AppState, credential: &str| {
        state.services.cache.holds(&CredentialHash::from_bytes(sha256(credential.as_bytes())))
    };

    // On this new installation, untagged credentials are refused unread.
    let made_up_key = untagged_key();
    assert_eq!(key_status(&app, &made_up_key).await, StatusCode::UNAUTHORIZED);
    assert!(!looked_up(state, &made_up_key));
    let made_up_token = random_token();
    let made_up_cookie = format!("portcullis_session=v1.{made_up_token}");
    assert_eq!(app.status_with_cookie(&made_up_cookie).await, StatusCode::UNAUTHORIZED);
    assert!(!looked_up(state, &made_up_token));

    // Turn the database into one an untagged version wrote: the key and a copy of bea's
    // session under untagged credentials, and no record of when tagging began.
    let old_key = untagged_key();
    sqlx::query("UPDATE api_keys SET key_hash = $1, tagged = 0 WHERE key_hash = $2")
        .bind(hex(&sha256(old_key.as_bytes())))
        .bind(hex(&sha256(tagged_key.as_bytes())))
        .execute(state.services.db.pool())
        .await
        .unwrap();
    let tagged_token = cookie.split_once("=v2.").unwrap().1;
    let record = state
        .services
        .ephemeral
        .get(&format!("session:{}", hex(&sha256(tagged_token.as_bytes()))))
        .await
        .unwrap()
        .unwrap();
    let old_token = random_token();
    let old_session = format!("session:{}", hex(&sha256(old_token.as_bytes())));
    state.services.ephemeral.put(&old_session, &record, Duration::from_secs(3600)).await.unwrap();
    sqlx::query("DELETE FROM settings WHERE key = 'tagged_tokens_since_ms'")
        .execute(state.services.db.pool())
        .await
        .unwrap();
    app.stop().await;

    let clock = ManualClock::new();
    let app = TestApp::builder().database(&url).clock(clock.clone()).spawn().await;
    let state = app.running().state();
    let old_cookie = format!("portcullis_session=v1.{old_token}");
    assert_eq!(app.status_with_cookie(&old_cookie).await, StatusCode::OK, "an untagged session");
    assert_eq!(key_status(&app, &old_key).await, StatusCode::OK, "an untagged key");
    let made_up_key = untagged_key();
    assert_eq!(key_status(&app, &made_up_key).await, StatusCode::UNAUTHORIZED);
    assert!(looked_up(state, &made_up_key), "looked up while untagged keys may be live");

    // The last untagged key is revoked: once no replica of the earlier version can be making
    // more (a day after the upgrade), untagged keys go unread.
    let client = app.client();
    let login = password_login(&app, &client, "ada@example.com", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    let keys: Value =
        client.get(app.url("/auth/api-keys")).send().await.unwrap().json().await.unwrap();
    let id = keys["api_keys"][0]["id"].as_str().unwrap().to_owned();
    let csrf = app.csrf(&client).await;
    let revoked = client
        .delete(app.url(&format!("/auth/api-keys/{id}")))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    state.services.api_keys.recheck_untagged().await.unwrap();
    let made_up_key = untagged_key();
    assert_eq!(key_status(&app, &made_up_key).await, StatusCode::UNAUTHORIZED);
    assert!(looked_up(state, &made_up_key), "older replicas may still be making keys");
    assert_eq!(
        app.status_with_cookie(&old_cookie).await,
        StatusCode::OK,
        "sessions are unaffected"
    );
    clock.advance(Duration::from_secs(86_400 + 60));
    state.services.api_keys.recheck_untagged().await.unwrap();
    let made_up_key = untagged_key();
    assert_eq!(key_status(&app, &made_up_key).await, StatusCode::UNAUTHORIZED);
    assert!(!looked_up(state, &made_up_key), "refused unread");
    assert_eq!(key_status(&app, &old_key).await, StatusCode::UNAUTHORIZED);
}

/// A key in the format of versions without tags: `pk_`, 43 base62 characters and a six-digit
/// checksum (the first 32 bits of the body's SHA-256 in base62).
fn untagged_key() -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let body: String = portcullis::testing::crypto::random_bytes()
        .iter()
        .chain(portcullis::testing::crypto::random_bytes().iter())
        .take(43)
        .map(|byte| char::from(BASE62[usize::from(byte % 62)]))
        .collect();
    let digest = portcullis::testing::crypto::sha256(body.as_bytes());
    let mut value = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut checksum = [b'0'; 6];
    for digit in checksum.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    format!("pk_{body}{}", String::from_utf8(checksum.to_vec()).unwrap())
}

async fn key_status(app: &TestApp, key: &str) -> StatusCode {
    with_key(app, reqwest::Method::GET, "/x", key).await.status()
}
