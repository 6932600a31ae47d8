//! The device flow, from the example CLI's side (its own client code) and a browser's side,
//! plus the RFC 8628 token endpoint that standard OAuth device clients use.

use std::time::Duration;

use portcullis::testing::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::device_client::{DeviceClient, PollStatus};
use crate::support::{Echoed, TestApp, post_form};

/// The browser side: a signed-in user approves or denies `user_code`.
async fn answer(
    app: &TestApp,
    browser: &reqwest::Client,
    user_code: &str,
    approve: bool,
) -> StatusCode {
    let csrf = app.csrf(browser).await;
    browser
        .post(app.url("/auth/device/complete"))
        .header("x-csrf-token", csrf)
        .json(&json!({ "user_code": user_code, "approve": approve }))
        .send()
        .await
        .unwrap()
        .status()
}

fn cli(app: &TestApp, dir: &tempfile::TempDir) -> DeviceClient {
    DeviceClient::new(crate::support::http(), &app.url(""), dir.path().join("tokens.json"))
}

#[tokio::test]
async fn the_cli_signs_in_with_the_device_flow_and_calls_the_app() {
    let clock = ManualClock::new();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cli = cli(&app, &dir);

    let started = cli.start("test cli").await.unwrap();
    assert_eq!(started.interval, 5);
    assert_eq!(started.expires_in, 600);
    assert!(
        started.verification_uri_complete.ends_with(&format!("?user_code={}", started.user_code))
    );
    let code = &started.user_code;
    assert_eq!(code.len(), 9, "XXXX-XXXX: {code}");
    assert!(code.chars().all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c)), "{code}");

    assert_eq!(cli.poll_once(&started.device_code).await.unwrap(), PollStatus::Pending);
    assert_eq!(cli.poll_once(&started.device_code).await.unwrap(), PollStatus::SlowDown);

    // The user, signed in in a browser, opens the link and approves.
    let browser = app.signed_in("ada@example.com").await;
    let page = browser.get(&started.verification_uri_complete).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(code.as_str()) && html.contains("test cli"), "{html}");
    assert_eq!(answer(&app, &browser, &code.to_lowercase(), true).await, StatusCode::OK);

    // The CLI's own polling loop, with time passing on the app's clock instead of sleeping.
    let tokens = cli
        .wait_for_tokens(&started, |interval| {
            clock.advance(interval);
            std::future::ready(())
        })
        .await
        .unwrap();
    assert_eq!(cli.load().unwrap(), tokens, "saved for the next run");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tokens.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "tokens are private to their owner");
    }

    let response = cli.get("/projects").await.unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));
    assert_eq!(echoed.header("x-auth-method"), Some("jwt"));

    // The tokens went out once.
    clock.advance(Duration::from_secs(5));
    assert_eq!(cli.poll_once(&started.device_code).await.unwrap(), PollStatus::Expired);

    // Near expiry the CLI refreshes by itself, and the rotated pair is saved.
    let refreshed = cli.refresh(&tokens).await.unwrap();
    assert_ne!(refreshed.refresh_token, tokens.refresh_token);
    assert_eq!(cli.load().unwrap(), refreshed);
    assert_eq!(cli.get("/projects").await.unwrap().status(), 200);
    cli.logout().await.unwrap();
    assert!(cli.load().is_err());
    let after_logout = crate::support::http()
        .get(app.url("/projects"))
        .bearer_auth(&refreshed.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(after_logout.status(), 401, "logout revoked the sign-in");
}

#[tokio::test]
async fn denied_and_expired_grants_end_the_cli_wait() {
    let clock = ManualClock::new();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cli = cli(&app, &dir);
    let browser = app.signed_in("ada@example.com").await;

    let denied = cli.start("cli").await.unwrap();
    assert_eq!(answer(&app, &browser, &denied.user_code, false).await, StatusCode::OK);
    assert_eq!(
        answer(&app, &browser, &denied.user_code, true).await,
        StatusCode::NOT_FOUND,
        "answered once"
    );
    let advance = |interval| {
        clock.advance(interval);
        std::future::ready(())
    };
    assert!(cli.wait_for_tokens(&denied, advance).await.unwrap_err().contains("denied"));

    let late = cli.start("cli").await.unwrap();
    clock.advance(Duration::from_secs(601));
    assert!(cli.wait_for_tokens(&late, advance).await.unwrap_err().contains("expired"));
    assert_eq!(answer(&app, &browser, &late.user_code, true).await, StatusCode::NOT_FOUND);
    assert!(cli.load().is_err(), "nothing saved");
}

#[tokio::test]
async fn standard_oauth_device_clients_get_rfc_8628_answers() {
    let clock = ManualClock::new();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let http = crate::support::http();
    let started: Value = http
        .post(app.url("/auth/device/start"))
        .form(&[("client_id", "gh-cli"), ("scope", "read write")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = started["device_code"].as_str().unwrap().to_owned();
    let token = || {
        http.post(app.url("/auth/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
                ("client_id", "gh-cli"),
            ])
            .send()
    };
    let error = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        body["error"].as_str().unwrap().to_owned()
    };
    assert_eq!(error(token().await.unwrap()).await, "authorization_pending");
    assert_eq!(error(token().await.unwrap()).await, "slow_down");

    let browser = app.signed_in("ada@example.com").await;
    let page = browser
        .get(app.url(&format!("/auth/device?user_code={}", started["user_code"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("read write"), "the page names the scopes asked for");
    assert_eq!(
        answer(&app, &browser, started["user_code"].as_str().unwrap(), true).await,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(5));
    let granted = token().await.unwrap();
    assert_eq!(granted.status(), 200);
    let body: Value = granted.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let echoed: Echoed = http
        .get(app.url("/x"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed.header("x-auth-scopes"), Some("read,write"));
    clock.advance(Duration::from_secs(5));
    assert_eq!(error(token().await.unwrap()).await, "expired_token");

    let unknown = post_form(&app, &http, "/auth/token", &[("grant_type", "password")]).await;
    assert_eq!(error(unknown).await, "unsupported_grant_type");
}

#[tokio::test]
async fn the_device_page_sends_strangers_to_sign_in_and_needs_csrf() {
    let app = TestApp::spawn().await;
    let anonymous =
        app.client().get(app.url("/auth/device?user_code=BCDF-GHJK")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::FOUND);
    assert_eq!(
        anonymous.headers()["location"],
        "/auth/sign-in?redirect_uri=%2Fauth%2Fdevice%3Fuser_code%3DBCDF-GHJK"
    );

    let browser = app.signed_in("ada@example.com").await;
    let unknown = browser.get(app.url("/auth/device?user_code=BCDF-GHJK")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.text().await.unwrap().contains("unknown, expired or already used"));
    let empty = browser.get(app.url("/auth/device")).send().await.unwrap();
    assert_eq!(empty.status(), 200);

    let started: Value = crate::support::http()
        .post(app.url("/auth/device/start"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let no_csrf = browser
        .post(app.url("/auth/device/complete"))
        .json(&json!({ "user_code": started["user_code"], "approve": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let cross_site = browser
        .post(app.url("/auth/device/complete"))
        .header("origin", "https://evil.example")
        .header("x-csrf-token", app.csrf(&browser).await)
        .json(&json!({ "user_code": started["user_code"], "approve": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);

    // The page's own form post works and answers with a page.
    let page = browser
        .get(app.url(&format!("/auth/device?user_code={}", started["user_code"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = crate::support::form_token(&page);
    let fields = [
        ("csrf_token", token.as_str()),
        ("user_code", started["user_code"].as_str().unwrap()),
        ("approve", "true"),
    ];
    let form = post_form(&app, &browser, "/auth/device/complete", &fields).await;
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("Device approved"));
}

#[tokio::test]
async fn polling_is_paced_by_slow_down_not_by_the_ip_limit() {
    let app = TestApp::builder()
        .config(|raw| {
            raw.rate_limit.auth_per_minute = portcullis::testing::config::values::Count(3)
        })
        .spawn()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cli = cli(&app, &dir);
    let started = cli.start("cli").await.unwrap();
    for _ in 0..10 {
        let status = cli.poll_once(&started.device_code).await.unwrap();
        assert!(matches!(status, PollStatus::Pending | PollStatus::SlowDown), "{status:?}");
    }
}
