//! Access and refresh tokens: token login, the gateway accepting our JWTs (and only ours),
//! refresh rotation and reuse detection, revocation, keys and rotation, identity assertions,
//! and WebSocket tickets.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use portcullis::testing::clock::ManualClock;
use portcullis::testing::config::values::{Flag, StringList};
use portcullis::testing::identity::key_ring::KeyRing;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::assertion_verify::AssertionVerifier;
use crate::support::{Echoed, TestApp, error_code, post_form, token_login_response};

/// Signs `email` up, then logs in with `"mode": "token"`; returns the token answer.
async fn token_login(app: &TestApp, email: &str) -> Value {
    app.sign_up(&app.client(), email).await;
    let response = token_login_response(app, email).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none(), "token mode sets no cookie");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn bearer_get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    crate::support::http().get(app.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    crate::support::http()
        .post(app.url("/auth/refresh"))
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap()
}

fn access(answer: &Value) -> &str {
    answer["access_token"].as_str().unwrap()
}

#[tokio::test]
async fn a_token_login_works_at_the_gateway_and_the_api() {
    let app = TestApp::spawn().await;
    let answer = token_login(&app, "ada@example.com").await;
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 900);
    assert_eq!(answer["user"]["email"], "ada@example.com");
    assert!(answer["refresh_token"].as_str().unwrap().starts_with("rt_"));

    let me: Value = bearer_get(&app, "/auth/me", access(&answer)).await.json().await.unwrap();
    assert_eq!(me["user"]["email"], "ada@example.com");

    let response = bearer_get(&app, "/anything", access(&answer)).await;
    assert_eq!(response.status(), 200);
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("x-auth-method"), Some("jwt"));
    assert_eq!(echoed.header("x-auth-user-id"), answer["user"]["id"].as_str());
    assert!(echoed.header("authorization").is_none(), "our JWT never reaches the app");

    // The claims README lists for access tokens.
    let payload = access(&answer).split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    for claim in ["sub", "sid", "email", "roles", "iat", "exp", "iss", "aud"] {
        assert!(claims.get(claim).is_some(), "{claim} in {claims}");
    }
    assert_eq!(claims["iss"], app.running().public_url().trim_end_matches('/'));
}

#[tokio::test]
async fn refresh_rotates_and_a_replayed_refresh_token_revokes_the_family() {
    let clock = ManualClock::new();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let first = token_login(&app, "ada@example.com").await;

    let second: Value =
        refresh(&app, first["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(bearer_get(&app, "/x", access(&second)).await.status(), 200);

    clock.advance(Duration::from_secs(10));
    let replay = refresh(&app, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(error_code(replay).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    // Every token of that sign-in is dead, the cached access token included.
    let after = bearer_get(&app, "/x", access(&second)).await;
    assert_eq!(error_code(after).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let next = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(next.status(), StatusCode::UNAUTHORIZED);

    // The RFC 6749 form of the same exchange, for standard OAuth clients.
    let fresh = token_login(&app, "bob@example.com").await;
    let grant = [
        ("grant_type", "refresh_token"),
        ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
    ];
    let rfc = post_form(&app, &crate::support::http(), "/auth/token", &grant).await;
    assert_eq!(rfc.status(), 200);
    let body: Value = rfc.json().await.unwrap();
    assert!(body["access_token"].is_string());
    let grant = [("grant_type", "refresh_token"), ("refresh_token", "rt_nope")];
    let spent = post_form(&app, &crate::support::http(), "/auth/token", &grant).await;
    assert_eq!(error_code(spent).await, (StatusCode::BAD_REQUEST, "invalid_grant".into()));
}

#[tokio::test]
async fn forged_expired_revoked_unsigned_and_unknown_key_tokens_are_refused() {
    let clock = ManualClock::new();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let answer = token_login(&app, "ada@example.com").await;
    let token = access(&answer);
    let [header, payload, signature]: [&str; 3] =
        token.split('.').collect::<Vec<_>>().try_into().unwrap();

    let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
    flipped[5] ^= 0x40;
    let forged = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(flipped));
    let header_json: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    let unsigned =
        format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#));
    let unknown_kid = format!(
        "{}.{payload}.{signature}",
        URL_SAFE_NO_PAD
            .encode(json!({ "alg": header_json["alg"], "kid": "not-a-key" }).to_string())
    );
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["roles"] = json!(["admin"]);
    let tampered = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    for bad in [&forged, &unsigned, &unknown_kid, &tampered] {
        let response = bearer_get(&app, "/x", bad).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNAUTHORIZED, "invalid_token".into()),
            "{bad}"
        );
    }
    assert_eq!(bearer_get(&app, "/x", token).await.status(), 200);

    // Expired (the clock passes access_ttl and the leeway).
    clock.advance(Duration::from_secs(16 * 60));
    let expired = bearer_get(&app, "/x", token).await;
    assert_eq!(error_code(expired).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    // Revoked: logging out with the token ends its sign-in at once, cached or not.
    let live = token_login(&app, "bob@example.com").await;
    assert_eq!(bearer_get(&app, "/x", access(&live)).await.status(), 200);
    let logout = crate::support::http()
        .post(app.url("/auth/logout"))
        .bearer_auth(access(&live))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    let revoked = bearer_get(&app, "/x", access(&live)).await;
    assert_eq!(error_code(revoked).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    assert_eq!(refresh(&app, live["refresh_token"].as_str().unwrap()).await.status(), 401);
}

#[tokio::test]
async fn another_issuers_bearer_token_is_left_to_the_app() {
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"/public/*\"\naccess = \"public\"\n")
        .spawn()
        .await;
    let foreign = format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"theirs"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"iss":"https://login.example.org","sub":"42"}"#)
    );
    let response = bearer_get(&app, "/public/page", &foreign).await;
    assert_eq!(response.status(), 200);
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("authorization"), Some(format!("Bearer {foreign}").as_str()));
    assert!(echoed.header("x-auth-user-id").is_none());
    let protected = bearer_get(&app, "/private", &foreign).await;
    assert_eq!(error_code(protected).await, (StatusCode::UNAUTHORIZED, "unauthorized".into()));
}

#[tokio::test]
async fn keys_rotate_without_logging_anyone_out() {
    let app = TestApp::spawn().await;
    let before = token_login(&app, "ada@example.com").await;
    let jwks: Value = reqwest::get(app.url("/auth/jwks.json")).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert!(jwks["keys"][0].get("d").is_none());

    let state = app.running().state();
    let config = &state.config;
    let kid = KeyRing::rotate(
        &state.services.db,
        config.tokens.algorithm,
        state.clock.now(),
        config.tokens.key_publish_time(),
    )
    .await
    .unwrap();
    state.tokens.keys().reload().await.unwrap();

    let after = token_login(&app, "bob@example.com").await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD.decode(access(&after).split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(
        bearer_get(&app, "/x", access(&before)).await.status(),
        200,
        "old tokens still work"
    );
    assert_eq!(bearer_get(&app, "/x", access(&after)).await.status(), 200);
    let jwks: Value = reqwest::get(app.url("/auth/jwks.json")).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_app_can_verify_the_assertion_against_the_jwks() {
    portcullis::testing::crypto::jwt_ring::install();
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let response = client
        .get(app.url("/x"))
        .header("x-auth-assertion", "forged-by-the-client")
        .send()
        .await
        .unwrap();
    let first: Echoed = response.json().await.unwrap();
    let assertion = first.header("x-auth-assertion").unwrap().to_owned();
    assert_ne!(assertion, "forged-by-the-client");

    let verifier =
        AssertionVerifier::new(crate::support::http(), app.running().public_url(), "app");
    let claims = verifier.verify(&assertion).await.unwrap();
    assert_eq!(claims.email.as_deref(), Some("ada@example.com"));
    assert_eq!(claims.name.as_deref(), Some("Test User"));
    assert_eq!(claims.method, "session");
    assert_eq!(Some(claims.sub.as_str()), first.header("x-auth-user-id"));

    // Signed once, reused by the next requests of the same identity.
    let second = app.echo(&client, "/y").await;
    assert_eq!(second.header("x-auth-assertion"), Some(assertion.as_str()));
    // Made for this upstream only.
    let elsewhere =
        AssertionVerifier::new(crate::support::http(), app.running().public_url(), "billing");
    assert!(elsewhere.verify(&assertion).await.is_err());

    let plain =
        TestApp::builder().config(|raw| raw.tokens.assertion_header = Flag(false)).spawn().await;
    let client = plain.signed_in("ada@example.com").await;
    assert!(plain.echo(&client, "/x").await.header("x-auth-assertion").is_none());
}

#[tokio::test]
async fn websocket_tickets_work_once_and_never_reach_the_app() {
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let without_csrf = client.post(app.url("/auth/ws-token")).send().await.unwrap();
    assert_eq!(without_csrf.status(), StatusCode::FORBIDDEN);
    let csrf = app.csrf(&client).await;
    let ticket: Value = client
        .post(app.url("/auth/ws-token"))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ticket["expires_in"], 30);
    let token = ticket["token"].as_str().unwrap();
    assert!(token.starts_with("ws_"));

    let url =
        app.url(&format!("/ws?room=7&access_token={token}&report=1")).replace("http://", "ws://");
    let (mut socket, response) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    assert_eq!(response.status(), 101);
    let first = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_text().unwrap().as_str(), "query=room=7&report=1");
    socket.send(Message::text("hi")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "hi");
    socket.close(None).await.unwrap();

    let replay = tokio_tungstenite::connect_async(url.as_str()).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = replay else {
        panic!("a used ticket must be refused");
    };
    assert_eq!(response.status(), 401);
    // Another installation's ticket: well-formed, but its tag is not ours.
    let forged = portcullis::testing::crypto::tags::TokenTags::random()
        .mint(portcullis::testing::crypto::tags::TagKind::Ticket);
    let forged_url = url.replace(token, &format!("ws_{forged}"));
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) =
        tokio_tungstenite::connect_async(forged_url.as_str()).await
    else {
        panic!("a forged ticket must be refused");
    };
    assert_eq!(response.status(), 401);

    // A token client gets one with its access token; an API key does not.
    let answer = token_login(&app, "bob@example.com").await;
    let by_token = crate::support::http()
        .post(app.url("/auth/ws-token"))
        .bearer_auth(access(&answer))
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), 200);
}

#[tokio::test]
async fn the_refresh_cookie_rotates_in_place_and_is_refused_cross_site() {
    let app = TestApp::spawn().await;
    let answer = token_login(&app, "ada@example.com").await;
    let cookie = format!("portcullis_refresh={}", answer["refresh_token"].as_str().unwrap());
    let cross_site = crate::support::http()
        .post(app.url("/auth/refresh"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(cross_site).await, (StatusCode::FORBIDDEN, "csrf_failed".into()));

    let response = crate::support::http()
        .post(app.url("/auth/refresh"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let body: Value = response.json().await.unwrap();
    let fresh = body["refresh_token"].as_str().unwrap();
    let refresh_cookie = set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("portcullis_refresh="))
        .expect("the refresh cookie is rotated");
    assert!(refresh_cookie.starts_with(&format!("portcullis_refresh={fresh}")), "{refresh_cookie}");
    assert!(refresh_cookie.contains("HttpOnly"));
    assert!(set_cookies.iter().any(|cookie| cookie.starts_with("portcullis_access=")));

    // The app never sees the refresh cookie.
    let echoed: Echoed = crate::support::http()
        .get(app.url("/x"))
        .bearer_auth(access(&body))
        .header("cookie", format!("portcullis_refresh={fresh}; theme=dark"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed.header("cookie"), Some("theme=dark"));
    let missing = crate::support::http().post(app.url("/auth/refresh")).send().await.unwrap();
    assert_eq!(error_code(missing).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
}

/// The signing keys and the generated auth secret are sealed in the database under
/// `storage.secrets_key`: rows written plain before are sealed at the next start, a database
/// whose secrets are sealed does not start without the key, and a rotation (new key, old one in
/// `secrets_key_previous`) seals them again under the new key. Tokens survive all of it.
#[tokio::test]
async fn secrets_are_sealed_at_rest_migrated_and_rotated() {
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("sealed.db").display());
    let key = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let stored = |app: &TestApp| {
        let pool = app.running().state().services.db.pool().clone();
        async move {
            let keys: Vec<String> = sqlx::query("SELECT private_key FROM signing_keys")
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("private_key"))
                .collect();
            let secret: String =
                sqlx::query("SELECT value FROM settings WHERE key = 'auth_secret'")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .get("value");
            (keys, secret)
        }
    };

    // Plain at first (no key), with a token issued.
    // One issuer across the restarts (each listens on a new port).
    let issuer = || Some("http://portcullis.test".to_owned());
    let mut plain = TestApp::builder()
        .database(&database)
        .config(move |raw| raw.server.public_url = issuer())
        .spawn()
        .await;
    let login = token_login(&plain, "ada@example.com").await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let (keys, secret) = stored(&plain).await;
    assert!(!keys[0].starts_with("sealed.") && !secret.starts_with("sealed."));
    plain.stop().await;

    // With a key: what was plain is sealed, and the token still verifies.
    let first = key(1);
    let mut sealed = TestApp::builder()
        .database(&database)
        .config(move |raw| {
            raw.storage.secrets_key = Some(first);
            raw.server.public_url = issuer();
        })
        .spawn()
        .await;
    let (keys, secret) = stored(&sealed).await;
    assert!(keys.iter().all(|k| k.starts_with("sealed.v1.")), "{keys:?}");
    assert!(secret.starts_with("sealed.v1."), "{secret}");
    assert_eq!(bearer_get(&sealed, "/x", &access).await.status(), 200);
    sealed.stop().await;

    // Without the key the database's secrets cannot be read: a clear start-up error.
    let mut raw = portcullis::testing::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.admin_listen = String::new();
    raw.storage.database_url = database.clone();
    let config = portcullis::testing::config::Config::try_from(raw).unwrap();
    let error = portcullis::testing::app::App::start(config).await.unwrap_err().to_string();
    assert!(error.contains("storage.secrets_key"), "{error}");

    // Rotation: the new key seals, the previous one still opens (and is sealed over).
    let (second, old) = (key(2), key(1));
    let rotated = TestApp::builder()
        .database(&database)
        .config(move |raw| {
            raw.storage.secrets_key = Some(second);
            raw.storage.secrets_key_previous = StringList(vec![old]);
            raw.server.public_url = issuer();
        })
        .spawn()
        .await;
    let (keys_after, secret_after) = stored(&rotated).await;
    assert_ne!(keys_after[0], keys[0], "sealed again under the new key");
    assert_ne!(secret_after, secret);
    assert_eq!(bearer_get(&rotated, "/x", &access).await.status(), 200);
}
