//! What apps moving over from their own auth code rely on: profile edits, dev sign-in, operator
//! sign-in links, service tokens and JWTs kept in httpOnly cookies.

use std::time::Duration;

use portcullis::testing::clock::ManualClock;
use portcullis::testing::config::raw::RawServiceToken;
use portcullis::testing::config::values::{Flag, StringList};
use portcullis::testing::identity::one_time::OneTimeLink;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Echoed, PASSWORD, TestApp, error_code, log_out};

async fn patch_me(app: &TestApp, client: &reqwest::Client, body: Value) -> reqwest::Response {
    let csrf = app.csrf(client).await;
    client.patch(app.url("/auth/me")).header("x-csrf-token", csrf).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn the_profile_can_be_edited_and_reaches_the_app() {
    let app = TestApp::builder()
        .config(|raw| raw.headers.locale = Some("X-Auth-Locale".into()))
        .spawn()
        .await;
    let client = app.client();
    let response = client
        .post(app.url("/auth/signup"))
        .header("accept-language", "pt-BR, pt;q=0.9, en;q=0.8")
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["locale"], "pt-BR", "from the first sign-in's Accept-Language");
    assert_eq!(app.echo(&client, "/x").await.header("x-auth-locale"), Some("pt-BR"));

    let without_csrf =
        client.patch(app.url("/auth/me")).json(&json!({ "name": "x" })).send().await.unwrap();
    assert_eq!(without_csrf.status(), StatusCode::FORBIDDEN);

    let updated = patch_me(
        &app,
        &client,
        json!({ "name": "Ada Lovelace", "username": "Ada.L", "locale": "en-GB",
                "avatar_url": "https://cdn.example.com/ada.png" }),
    )
    .await;
    assert_eq!(updated.status(), 200);
    let user: Value = updated.json().await.unwrap();
    assert_eq!(user["user"]["username"], "ada.l");
    assert_eq!(user["user"]["locale"], "en-GB");
    assert_eq!(user["user"]["avatar_url"], "https://cdn.example.com/ada.png");
    let me: Value = client.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["name"], "Ada Lovelace");
    // The identity headers follow at once (the cached identity was dropped).
    let echoed = app.echo(&client, "/x").await;
    assert_eq!(echoed.header("x-auth-name"), Some("Ada Lovelace"));
    assert_eq!(echoed.header("x-auth-locale"), Some("en-GB"));

    let other = app.signed_in("bob@example.com").await;
    let taken = patch_me(&app, &other, json!({ "username": "ADA.L" })).await;
    assert_eq!(error_code(taken).await, (StatusCode::CONFLICT, "conflict".into()));
    for bad in [
        json!({ "locale": "english" }),
        json!({ "locale": "en_US" }),
        json!({ "username": "a b" }),
        json!({ "avatar_url": "http://cdn.example.com/a.png" }),
        json!({ "avatar_url": "javascript:alert(1)" }),
        json!({ "name": "a\u{0007}b" }),
        json!({ "email": "new@example.com" }),
    ] {
        let response = patch_me(&app, &other, bad.clone()).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{bad}"
        );
    }
    let cleared = patch_me(&app, &client, json!({ "username": "", "avatar_url": "" })).await;
    let user: Value = cleared.json().await.unwrap();
    assert!(user["user"]["username"].is_null() && user["user"]["avatar_url"].is_null());
}

#[tokio::test]
async fn dev_sign_in_exists_only_when_enabled_and_never_behind_https_unless_forced() {
    let off = TestApp::spawn().await;
    let response =
        off.client().post(off.url("/auth/dev-sign-in")).json(&json!({})).send().await.unwrap();
    assert_eq!(error_code(response).await, (StatusCode::NOT_FOUND, "not_found".into()));

    let on = TestApp::builder().config(|raw| raw.dev.enabled = Flag(true)).spawn().await;
    let client = on.client();
    let signed_in: Value = client
        .post(on.url("/auth/dev-sign-in"))
        .json(&json!({ "email": "tester@example.com" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(signed_in["user"]["email"], "tester@example.com");
    assert_eq!(on.echo(&client, "/x").await.header("x-auth-email"), Some("tester@example.com"));
    let default = on.client();
    let response = default.post(on.url("/auth/dev-sign-in")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cross_site = on
        .client()
        .post(on.url("/auth/dev-sign-in"))
        .header("origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);

    let mut raw = portcullis::testing::config::RawConfig::default();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.admin_listen = String::new();
    raw.server.public_url = Some("https://app.example.com".into());
    raw.storage.ephemeral = "memory".into();
    raw.storage.database_url = "sqlite::memory:".into();
    raw.dev.enabled = Flag(true);
    raw.email.force_log_transport = Flag(true);
    let refused = portcullis::testing::config::Config::try_from(raw.clone());
    let error = refused.expect_err("an https public URL refuses dev sign-in").to_string();
    assert!(error.contains("dev.enabled") && error.contains("dev.force"), "{error}");
    raw.dev.force = Flag(true);
    let forced = portcullis::testing::app::App::start(
        portcullis::testing::config::Config::try_from(raw).unwrap(),
    )
    .await;
    forced.unwrap().stop().await;
}

#[tokio::test]
async fn a_sign_in_link_works_once_and_expires() {
    let clock = ManualClock::new();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    app.sign_up(&app.client(), "ada@example.com").await;
    let state = app.running().state();
    let email = portcullis::testing::identity::Email::parse("ada@example.com").unwrap();
    let (user, _) = state.services.users.find_by_email(&email).await.unwrap().unwrap();
    let link = OneTimeLink { user_id: user.id, redirect: "/welcome?x=1".into() };
    let token = state.one_time.mint_for(&link, Duration::from_secs(900)).await.unwrap();

    let browser = app.client();
    let first =
        browser.get(app.url(&format!("/auth/one-time?token={token}"))).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::FOUND);
    assert_eq!(first.headers()["location"], "/welcome?x=1");
    assert_eq!(app.echo(&browser, "/x").await.header("x-auth-email"), Some("ada@example.com"));
    let again =
        app.client().get(app.url(&format!("/auth/one-time?token={token}"))).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.text().await.unwrap().contains("invalid, expired or already used"));
    let asked_json = app
        .client()
        .get(app.url(&format!("/auth/one-time?token={token}")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::support::error_code(asked_json).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into()),
        "JSON when asked for"
    );

    let late = state.one_time.mint_for(&link, Duration::from_secs(60)).await.unwrap();
    clock.advance(Duration::from_secs(61));
    let expired =
        app.client().get(app.url(&format!("/auth/one-time?token={late}"))).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let garbage = app.client().get(app.url("/auth/one-time?token=%00%ff")).send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
}

fn livekit(roles: &[&str]) -> RawServiceToken {
    RawServiceToken {
        algorithm: Some("HS256".into()),
        secret: Some("livekit-secret-livekit-secret-livekit".into()),
        issuer: Some("APIxxxxxxxx".into()),
        ttl: Some("6h".into()),
        roles: StringList(roles.iter().map(|role| (*role).to_owned()).collect()),
        params: StringList(vec!["room".into()]),
        claims: Some(
            r#"{"sub": "{user.id}", "name": "{user.name}", "video": {"room": "{param.room}", "roomJoin": true}}"#
                .into(),
        ),
    }
}

#[tokio::test]
async fn a_livekit_room_token_is_minted_from_the_template() {
    portcullis::testing::crypto::jwt_ring::install();
    let app = TestApp::builder()
        .config(|raw| {
            raw.service_tokens.insert("livekit".into(), livekit(&[]));
            raw.service_tokens.insert("admin-only".into(), livekit(&["admin"]));
        })
        .spawn()
        .await;
    let client = app.signed_in("ada@example.com").await;
    let csrf = app.csrf(&client).await;
    let mint = |name: &str, body: Value| {
        client
            .post(app.url(&format!("/auth/service-tokens/{name}")))
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let minted: Value =
        mint("livekit", json!({ "room": "standup" })).await.unwrap().json().await.unwrap();
    let token = minted["token"].as_str().unwrap();
    assert!(minted["expires_at"].is_string());
    let key = jsonwebtoken::DecodingKey::from_secret(b"livekit-secret-livekit-secret-livekit");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["APIxxxxxxxx"]);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims;
    assert_eq!(claims["video"]["room"], "standup");
    assert_eq!(claims["video"]["roomJoin"], true);
    assert_eq!(claims["name"], "Test User");
    let me: Value = client.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(claims["sub"], me["user"]["id"]);
    let wrong_key = jsonwebtoken::DecodingKey::from_secret(b"not-the-livekit-secret-at-all!!!!");
    assert!(jsonwebtoken::decode::<Value>(token, &wrong_key, &validation).is_err());

    for bad in [
        json!({ "room": "a\", \"roomAdmin\": true, \"x\": \"" }),
        json!({ "room": "{user.email}" }),
        json!({ "room": "salle-réunion" }),
        json!({ "room": "🎥" }),
        json!({ "room": "x", "roomAdmin": "true" }),
        json!({}),
    ] {
        let response = mint("livekit", bad.clone()).await.unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{bad}"
        );
    }
    let forbidden = mint("admin-only", json!({ "room": "x" })).await.unwrap();
    assert_eq!(error_code(forbidden).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let unknown = mint("nope", json!({})).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn single_page_apps_can_keep_their_tokens_in_httponly_cookies() {
    let app = TestApp::spawn().await;
    app.sign_up(&app.client(), "ada@example.com").await;
    let browser = app.client();
    let login = browser
        .post(app.url("/auth/login"))
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD, "mode": "cookie_token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    assert!(cookies.iter().any(|c| c.starts_with("portcullis_access=") && c.contains("HttpOnly")));
    assert!(cookies.iter().any(|c| c.starts_with("portcullis_refresh=") && c.contains("HttpOnly")));
    let body: Value = login.json().await.unwrap();
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    assert_eq!(body["user"]["email"], "ada@example.com");

    let echoed: Echoed = browser.get(app.url("/x")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed.header("x-auth-method"), Some("jwt"));
    assert!(echoed.header("cookie").is_none(), "the token cookies never reach the app");

    let refreshed = browser.post(app.url("/auth/refresh")).send().await.unwrap();
    assert_eq!(refreshed.status(), 200);
    assert_eq!(refreshed.headers().get_all("set-cookie").iter().count(), 2);

    // Cookie-authenticated, so a state change needs the CSRF token.
    let no_csrf = browser.post(app.url("/auth/logout")).send().await.unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let logout = log_out(&app, &browser).await;
    assert_eq!(logout.status(), 200);
    let after =
        browser.get(app.url("/x")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}
