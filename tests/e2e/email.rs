//! Email sign-in over real SMTP (lettre → the test's SMTP sink): magic links and codes, and the
//! abuse cases: replay, expiry, another email, brute force, header injection, unknown emails,
//! mail bombing. Plus the file transport.

use std::time::Duration;

use portcullis::clock::ManualClock;
use portcullis::config::values::Flag;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::smtp::SmtpSink;
use crate::support::{TestApp, error_code};

async fn app_with_mail(sink: &SmtpSink, clock: Option<ManualClock>) -> TestApp {
    let url = sink.url();
    let mut builder = TestApp::builder().config(move |raw| {
        raw.email.transport = "smtp".into();
        raw.email.smtp_url = Some(url);
        raw.email.product_name = "Acme".into();
    });
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.spawn().await
}

async fn ask_link(app: &TestApp, email: &str) -> reqwest::Response {
    app.client()
        .post(app.url("/auth/magic-link"))
        .json(&json!({ "email": email, "redirect_uri": "/welcome" }))
        .send()
        .await
        .unwrap()
}

const ANSWER: &str = "if an account exists with that email, a login link has been sent";

#[tokio::test]
async fn a_new_user_signs_in_with_the_emailed_link_once() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    let response = ask_link(&app, "new@example.com").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["message"], ANSWER);

    let mail = sink.nth(1).await;
    assert_eq!(mail.to, ["new@example.com"]);
    assert_eq!(mail.header("Subject").as_deref(), Some("Sign in to Acme"));
    assert!(mail.header("Message-ID").is_some() && mail.header("Date").is_some());
    assert!(mail.data.contains("multipart/alternative"));
    assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
    let link = mail.link().expect("a link in the mail");
    assert!(link.contains("/auth/magic-link/verify?token="), "{link}");

    let browser = app.client();
    let signed_in = browser.get(&link).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::FOUND);
    assert_eq!(signed_in.headers()["location"], "/welcome");
    let me: Value = browser.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email"], "new@example.com");
    assert_eq!(me["user"]["email_verified"], true);

    let replay = app.client().get(&link).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(replay.text().await.unwrap().contains("invalid, expired or already used"));
}

#[tokio::test]
async fn the_code_signs_in_and_five_wrong_codes_burn_it() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    app.sign_up(&app.client(), "ada@example.com").await;
    ask_link(&app, "ada@example.com").await;
    let code = sink.nth(1).await.code().expect("a code in the mail");
    let verify = |email: &'static str, code: String| {
        app.client()
            .post(app.url("/auth/magic-link/verify"))
            .json(&json!({ "email": email, "code": code }))
            .send()
    };
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let other = verify("eve@example.com", code.clone()).await.unwrap();
    assert_eq!(
        error_code(other).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into()),
        "another email"
    );
    let signed_in = verify("ada@example.com", code.clone()).await.unwrap();
    assert_eq!(signed_in.status(), 200);
    let body: Value = signed_in.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ada@example.com");

    ask_link(&app, "ada@example.com").await;
    let code = sink.nth(2).await.code().unwrap();
    for _ in 0..5 {
        let response = verify("ada@example.com", wrong.to_owned()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let burnt = verify("ada@example.com", code).await.unwrap();
    assert_eq!(burnt.status(), StatusCode::UNAUTHORIZED, "five wrong codes burn the grant");
}

#[tokio::test]
async fn expired_links_unknown_emails_injection_and_mail_bombing() {
    let sink = SmtpSink::start().await;
    let clock = ManualClock::new();
    let app = app_with_mail(&sink, Some(clock.clone())).await;

    ask_link(&app, "late@example.com").await;
    let link = sink.nth(1).await.link().unwrap();
    clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(app.client().get(&link).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    for bad in ["a@b.c\r\nBcc: x@evil.example", "a@b.c\nBcc: x@evil.example", "not-an-email"] {
        let response = ask_link(&app, bad).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{bad:?}"
        );
    }

    for _ in 0..7 {
        let response = ask_link(&app, "target@example.com").await;
        assert_eq!(response.status(), 200, "the answer never changes");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_target = sink.messages().iter().filter(|m| m.to == ["target@example.com"]).count();
    assert_eq!(to_target, 5, "at most five messages an hour to one address");
    assert!(sink.messages().iter().all(|m| !m.data.to_ascii_lowercase().contains("bcc:")));

    // With sign-up closed, an unknown email gets the same answer and no mail.
    let closed_sink = SmtpSink::start().await;
    let url = closed_sink.url();
    let closed = TestApp::builder()
        .config(move |raw| {
            raw.email.transport = "smtp".into();
            raw.email.smtp_url = Some(url);
            raw.auth.signup = Flag(false);
        })
        .spawn()
        .await;
    let response = ask_link(&closed, "stranger@example.com").await;
    assert_eq!(response.json::<Value>().await.unwrap()["message"], ANSWER);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(closed_sink.messages().is_empty());
}

#[tokio::test]
async fn the_file_transport_writes_one_eml_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let app = TestApp::builder()
        .config(move |raw| {
            raw.email.transport = "file".into();
            raw.email.file_dir = Some(path.display().to_string());
        })
        .spawn()
        .await;
    ask_link(&app, "file@example.com").await;
    let mut found = None;
    for _ in 0..50 {
        found = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .find(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"));
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let eml = std::fs::read_to_string(found.expect("an .eml file").path()).unwrap();
    assert!(eml.contains("To: file@example.com"));
}
