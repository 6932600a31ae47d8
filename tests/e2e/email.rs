//! Email sign-in over real SMTP (lettre → the test's SMTP sink): magic links and codes, and the
//! abuse cases: replay, expiry, another email, brute force, header injection, unknown emails,
//! mail bombing. Plus the file transport.

use std::time::Duration;

use portcullis::testing::clock::ManualClock;
use portcullis::testing::config::values::Flag;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::smtp::SmtpSink;
use crate::support::{
    PASSWORD, TestApp, error_code, form_request, password_fields, password_login, post_form,
};

/// An app that mails through `sink`, as "Acme".
fn mailing(sink: &SmtpSink) -> crate::support::app::TestAppBuilder {
    let url = sink.url();
    TestApp::builder().config(move |raw| {
        raw.email.transport = "smtp".into();
        raw.email.smtp_url = Some(url);
        raw.email.product_name = "Acme".into();
    })
}

async fn app_with_mail(sink: &SmtpSink, clock: Option<ManualClock>) -> TestApp {
    let mut builder = mailing(sink);
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

    // A mail scanner or link preview that follows the link uses nothing up.
    for _ in 0..3 {
        let scanned = app.client().get(&link).send().await.unwrap();
        assert_eq!(scanned.status(), 200);
        assert!(scanned.text().await.unwrap().contains("new@example.com"));
    }
    assert_eq!(app.user_count().await, 0, "no account before the confirmation");
    let browser = app.client();
    let signed_in = app.confirm_magic_link(&browser, &link).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()["location"], "/welcome");
    let me: Value = browser.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email"], "new@example.com");
    assert_eq!(me["user"]["email_verified"], true);

    let replay = app.client().get(&link).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(replay.text().await.unwrap().contains("invalid, expired or already used"));
    let asked_json = app.client().get(&link).header("accept", "application/json").send().await;
    assert_eq!(
        error_code(asked_json.unwrap()).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into()),
        "JSON when asked for"
    );
}

/// The confirmation is a same-site form post: another site cannot post a stranger's link
/// token into the victim's browser (login CSRF), and an app can post the token as JSON.
#[tokio::test]
async fn the_link_signs_in_only_by_a_same_site_post() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    ask_link(&app, "ada@example.com").await;
    let link = sink.nth(1).await.link().unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let cross_site =
        form_request(&app, &app.client(), "/auth/magic-link/verify", &[("token", token.as_str())])
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let post =
        |body: Value| app.client().post(app.url("/auth/magic-link/verify")).json(&body).send();
    let mixed = post(json!({ "token": token, "email": "ada@example.com", "code": "123456" }));
    let mixed = mixed.await.unwrap();
    assert_eq!(error_code(mixed).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
    let elsewhere = post(json!({ "token": token, "redirect_uri": "https://evil.example/" }));
    assert_eq!(elsewhere.await.unwrap().status(), StatusCode::BAD_REQUEST);
    let by_app = post(json!({ "token": token })).await.unwrap();
    assert_eq!(by_app.status(), 200, "the refused posts used nothing up");
    let body: Value = by_app.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ada@example.com");
}

#[tokio::test]
async fn the_code_signs_in_and_five_wrong_codes_burn_it() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    app.sign_up(&app.client(), "ada@example.com").await;
    ask_link(&app, "ada@example.com").await;
    let code = sink.nth_about(1, "Sign in").await.code().expect("a code in the mail");
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
    let code = sink.nth_about(2, "Sign in").await.code().unwrap();
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
    // (No account there: the sign-up mail on first use is not involved.)
    assert_eq!(to_target, 3, "at most three of a kind an hour to one address from one client");
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
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("magic_link.txt"),
        "Custom words: {{ link }} / {{ code }}\n",
    )
    .unwrap();
    let templates_dir = templates.path().display().to_string();
    let app = TestApp::builder()
        .config(move |raw| {
            raw.email.transport = "file".into();
            raw.email.file_dir = Some(path.display().to_string());
            raw.email.templates_dir = Some(templates_dir);
        })
        .spawn()
        .await;
    ask_link(&app, "file@example.com").await;
    // The file appears before its content is written: wait for the whole message.
    let mut eml = String::new();
    for _ in 0..100 {
        let found = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .find(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"));
        if let Some(entry) = found {
            eml = std::fs::read_to_string(entry.path()).unwrap();
            if eml.trim_end().ends_with("--") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(eml.contains("To: file@example.com"), "{eml}");
    assert!(eml.contains("Custom words:"), "the text part comes from templates_dir");
}

#[tokio::test]
async fn sign_up_sends_a_verification_link_that_verifies_once() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    let client = app.signed_in("ada@example.com").await;
    let mail = sink.nth_about(1, "Confirm your email").await;
    assert_eq!(mail.to, ["ada@example.com"]);
    let link = mail.link().unwrap();
    let me: Value = client.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email_verified"], false);

    let verified =
        app.client().get(&link).header("accept", "application/json").send().await.unwrap();
    assert_eq!(verified.status(), 200);
    let me: Value = client.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email_verified"], true);
    let again = app.client().get(&link).header("accept", "application/json").send().await.unwrap();
    assert_eq!(error_code(again).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    // Asking again when verified is harmless; when not, it sends (session + CSRF).
    let csrf = app.csrf(&client).await;
    let resend = client
        .post(app.url("/auth/email/verify/send"))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status(), 200);
    let other = app.signed_in("bob@example.com").await;
    let no_csrf = other.post(app.url("/auth/email/verify/send")).send().await.unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let csrf = app.csrf(&other).await;
    let sent = other
        .post(app.url("/auth/email/verify/send"))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let second = sink.nth_about(3, "Confirm your email").await;
    assert_eq!(second.to, ["bob@example.com"]);
}

#[tokio::test]
async fn verification_mail_that_cannot_be_sent_is_a_502_for_the_signed_in_user() {
    // An SMTP server that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("shared.db").display());
    let app = TestApp::builder()
        .database(&database)
        .config(move |raw| {
            raw.email.transport = "smtp".into();
            raw.email.smtp_url = Some(format!("smtp://{closed}"));
        })
        .spawn()
        .await;
    let client = app.signed_in("ada@example.com").await;
    let csrf = app.csrf(&client).await;
    let response = client
        .post(app.url("/auth/email/verify/send"))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (StatusCode::BAD_GATEWAY, "email_send_failed".into()));
    // Where telling would enumerate accounts, the answer does not change.
    let forgot = app
        .client()
        .post(app.url("/auth/password/forgot"))
        .json(&json!({ "email": "ada@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(forgot.status(), 200);
    // With sign-up open every address gets a magic link, so a failed send is told.
    let magic = |app: &TestApp, email: &'static str| {
        app.client().post(app.url("/auth/magic-link")).json(&json!({ "email": email })).send()
    };
    for email in ["ada@example.com", "nobody@example.com"] {
        let response = magic(&app, email).await.unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_GATEWAY, "email_send_failed".into())
        );
    }
    // With sign-up closed only accounts get one: the answer stays the same.
    let closed_signup = TestApp::builder()
        .database(&database)
        .config(move |raw| {
            raw.auth.signup = Flag(false);
            raw.email.transport = "smtp".into();
            raw.email.smtp_url = Some(format!("smtp://{closed}"));
        })
        .spawn()
        .await;
    for email in ["ada@example.com", "nobody@example.com"] {
        assert_eq!(magic(&closed_signup, email).await.unwrap().status(), 200, "{email}");
    }
}

#[tokio::test]
async fn a_password_reset_works_once_and_ends_every_session() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    let old_session = app.signed_in("ada@example.com").await;
    assert_eq!(old_session.get(app.url("/auth/me")).send().await.unwrap().status(), 200);

    let answer = |email: &'static str| {
        app.client().post(app.url("/auth/password/forgot")).json(&json!({ "email": email })).send()
    };
    let known: Value = answer("ada@example.com").await.unwrap().json().await.unwrap();
    let unknown: Value = answer("nobody@example.com").await.unwrap().json().await.unwrap();
    assert_eq!(known, unknown, "the same answer for known and unknown addresses");
    let mail = sink.nth_about(1, "Reset your").await;
    assert_eq!(mail.to, ["ada@example.com"]);
    let link = mail.link().unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();

    // The link opens a page with the form.
    let page = app.client().get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Choose a new password"));

    let reset = |password: &'static str| {
        app.client()
            .post(app.url("/auth/password/reset"))
            .json(&json!({ "token": token, "password": password }))
            .send()
    };
    let weak = reset("password1").await.unwrap();
    assert_eq!(error_code(weak).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
    let done = reset("a brand new passphrase").await.unwrap();
    assert_eq!(done.status(), 200, "a weak attempt did not use up the link");
    assert_eq!(
        old_session.get(app.url("/auth/me")).send().await.unwrap().status(),
        401,
        "every session ended"
    );
    let reused = reset("another new passphrase").await.unwrap();
    assert_eq!(error_code(reused).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    let login =
        password_login(&app, &app.client(), "ada@example.com", "a brand new passphrase").await;
    assert_eq!(login.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sink.messages().iter().all(|m| m.to != ["nobody@example.com"]),
        "no mail for unknown addresses"
    );
}

#[tokio::test]
async fn the_sign_in_page_emails_a_link_and_takes_the_code_without_javascript() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    let browser = app.client();
    let csrf = app.form_csrf(&browser, "/auth/sign-in?redirect_uri=/inbox").await;
    let fields =
        [("csrf_token", csrf.as_str()), ("email", "page@example.com"), ("redirect_uri", "/inbox")];
    let sent = post_form(&app, &browser, "/auth/magic-link", &fields).await;
    assert_eq!(sent.status(), 200);
    let page = sent.text().await.unwrap();
    assert!(page.contains("Check your email") && page.contains("page@example.com"));
    let code = sink.nth_about(1, "Sign in").await.code().unwrap();

    let form_csrf = crate::support::form_token(&page);
    let typed = |code| {
        [
            ("csrf_token", form_csrf.as_str()),
            ("email", "page@example.com"),
            ("code", code),
            ("redirect_uri", "/inbox"),
        ]
    };
    let wrong = post_form(&app, &browser, "/auth/magic-link/verify", &typed("12345x")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("The code is wrong"));
    let signed_in =
        post_form(&app, &browser, "/auth/magic-link/verify", &typed(code.as_str())).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()["location"], "/inbox");
    assert_eq!(app.echo(&browser, "/inbox").await.header("x-auth-email"), Some("page@example.com"));

    // Email-first: any address that is not an SSO domain gets a link.
    let first = app
        .client()
        .post(app.url("/auth/sign-in"))
        .json(&json!({ "email": "first@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(first.json::<Value>().await.unwrap()["auth_method"], "magic_link");
    assert_eq!(sink.nth_about(2, "Sign in").await.to, ["first@example.com"]);
}

#[tokio::test]
async fn routes_can_require_a_verified_email() {
    let sink = SmtpSink::start().await;
    let app = mailing(&sink)
        .routes("[[routes]]\npath = \"/billing/*\"\nverified_email = true\n")
        .spawn()
        .await;
    let client = app.signed_in("ada@example.com").await;
    let refused = client
        .get(app.url("/billing/invoices"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("Verify your email"));
    let link = sink.nth_about(1, "Confirm your email").await.link().unwrap();
    assert_eq!(app.client().get(&link).send().await.unwrap().status(), StatusCode::FOUND);
    assert_eq!(app.echo(&client, "/billing/invoices").await.path, "/billing/invoices");
}

/// A stranger asking for someone else's mail, or guessing their password, spends the
/// stranger's own share: the owner, from their own address, still gets a working link and
/// signs in with the right password.
#[tokio::test]
async fn strangers_cannot_silence_mail_or_lock_the_owner_out() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::builder()
        .config(move |raw| {
            raw.email.transport = "smtp".into();
            raw.email.smtp_url = Some(url);
            raw.server.trusted_proxies =
                portcullis::testing::config::values::StringList(vec!["127.0.0.1/32".into()]);
        })
        .spawn()
        .await;
    const HOME: &str = "198.51.100.7";
    const STRANGER: &str = "203.0.113.66";
    let from = |ip: &'static str, path: &str, body: Value| {
        crate::support::http().post(app.url(path)).header("x-forwarded-for", ip).json(&body).send()
    };
    let owner = app.client();
    let signed_up = owner
        .post(app.url("/auth/signup"))
        .header("x-forwarded-for", HOME)
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), StatusCode::CREATED);
    let verification = sink.nth(1).await.link().unwrap();
    assert_eq!(owner.get(&verification).send().await.unwrap().status(), StatusCode::FOUND);

    for _ in 0..6 {
        let asked = from(STRANGER, "/auth/magic-link", json!({ "email": "ada@example.com" }));
        assert_eq!(asked.await.unwrap().status(), 200);
    }
    let asked = from(HOME, "/auth/magic-link", json!({ "email": "ada@example.com" }));
    assert_eq!(asked.await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let links: Vec<String> = sink
        .messages()
        .iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.starts_with("Sign in")))
        .filter_map(|m| m.link())
        .collect();
    assert_eq!(links.len(), 4, "three for the stranger, then the owner's still goes out");
    let owners = links.last().unwrap();
    let signed_in = app.confirm_magic_link(&app.client(), owners).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER, "the stranger did not replace it");

    for _ in 0..6 {
        let body = json!({ "email": "ada@example.com", "password": "not the password" });
        let guessed = from(STRANGER, "/auth/login", body).await.unwrap();
        assert!(matches!(guessed.status().as_u16(), 401 | 429), "{}", guessed.status());
    }
    let body = json!({ "email": "ada@example.com", "password": PASSWORD });
    assert_eq!(from(STRANGER, "/auth/login", body.clone()).await.unwrap().status(), 429);
    assert_eq!(
        from(HOME, "/auth/login", body).await.unwrap().status(),
        200,
        "the owner is not locked out"
    );
}

/// Only the latest reset link of an account works.
#[tokio::test]
async fn an_older_reset_link_is_dead() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None).await;
    app.signed_in("ada@example.com").await;
    let _verification = sink.nth(1).await;
    // Mail goes out in the background (the answer must not wait on it, or its timing would
    // tell who has an account), so each link is awaited before the next is asked for.
    let mut links = Vec::new();
    for n in 2..4 {
        let asked = app
            .client()
            .post(app.url("/auth/password/forgot"))
            .json(&json!({ "email": "ada@example.com" }))
            .send()
            .await
            .unwrap();
        assert_eq!(asked.status(), 200);
        links.push(sink.nth(n).await.link().unwrap());
    }
    let (first, second) = (links[0].clone(), links[1].clone());
    let token = |link: &str| link.split("token=").nth(1).unwrap().to_owned();
    let reset = |token: String| {
        app.client()
            .post(app.url("/auth/password/reset"))
            .json(&json!({ "token": token, "password": "another fine passphrase" }))
            .send()
    };
    assert_eq!(reset(token(&first)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reset(token(&second)).await.unwrap().status(), 200);
}

/// With `auth.signup_confirm`, a sign-up answers the same for a new and a taken address; the
/// mailed link or code makes the account (password and name as given), and a stranger's
/// sign-up of a taken address changes nothing and tells its owner.
#[tokio::test]
async fn a_sign_up_finished_by_mail_tells_nobody_whether_the_address_was_taken() {
    let sink = SmtpSink::start().await;
    let app = mailing(&sink).config(|raw| raw.auth.signup_confirm = Flag(true)).spawn().await;
    let sign_up = |client: &reqwest::Client, password: &str, name: &str| {
        let body = json!({ "email": "ada@example.com", "password": password, "name": name });
        client.post(app.url("/auth/signup")).json(&body).send()
    };
    let login = |password| {
        let (app, client) = (&app, app.client());
        async move { password_login(app, &client, "ada@example.com", password).await }
    };
    let answer = |response: reqwest::Response| async move {
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert!(
            cookies.iter().all(|c| !c.to_str().unwrap().contains("portcullis_session")),
            "no session before the proof: {cookies:?}"
        );
        (response.status(), response.text().await.unwrap())
    };

    let ada = app.client();
    let new = answer(sign_up(&ada, PASSWORD, "Ada").await.unwrap()).await;
    assert_eq!(new.0, StatusCode::ACCEPTED);
    assert_eq!(app.user_count().await, 0, "no account until the address is proven");
    let early = login(PASSWORD).await;
    assert_eq!(error_code(early).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));

    let mail = sink.nth(1).await;
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(mail.header("Subject").as_deref(), Some("Your Acme sign-up"));
    assert!(mail.data.contains("Finish signing up"), "{}", mail.data);
    assert!(mail.code().is_some(), "the mail holds a code too");
    let page = app.client().get(mail.link().unwrap()).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("Continue only if you signed up yourself"), "{page}");
    let confirmed = app.confirm_magic_link(&ada, &mail.link().unwrap()).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    let me: Value = ada.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email_verified"], true);
    assert_eq!(me["user"]["name"], "Ada");
    assert_eq!(login(PASSWORD).await.status(), 200, "the password holds");

    let mallory = app.client();
    let taken = answer(sign_up(&mallory, "mallory's own passphrase", "Mallory").await.unwrap());
    assert_eq!(taken.await, new, "the same answer for a taken address");
    let notice = sink.nth(2).await;
    assert_eq!(notice.to, ["ada@example.com"]);
    assert!(notice.data.contains("already has an account"), "{}", notice.data);
    let stolen = login("mallory's own passphrase").await;
    assert_eq!(error_code(stolen).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));
    assert_eq!(login(PASSWORD).await.status(), 200);
    // The notice's link signs the owner in, as the account stands.
    let owner = app.client();
    let signed_in = app.confirm_magic_link(&owner, &notice.link().unwrap()).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let me: Value = owner.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["name"], "Ada", "the stranger's sign-up changed nothing");
    assert_eq!(app.user_count().await, 1);

    // The sign-in page's form gets the "check your email" page, whose code finishes it.
    let browser = app.client();
    let csrf = app.form_csrf(&browser, "/auth/sign-in").await;
    let fields = password_fields("bob@example.com", PASSWORD, &csrf, Some("/inbox"));
    let page = post_form(&app, &browser, "/auth/signup", &fields).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("finishes the sign-up"), "{html}");
    let code = sink.nth(3).await.code().unwrap();
    let csrf = crate::support::form_token(&html);
    let typed = [
        ("email", "bob@example.com"),
        ("code", code.as_str()),
        ("csrf_token", csrf.as_str()),
        ("redirect_uri", "/inbox"),
    ];
    let done = post_form(&app, &browser, "/auth/magic-link/verify", &typed).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], "/inbox");
    let login = password_login(&app, &app.client(), "bob@example.com", PASSWORD).await;
    assert_eq!(login.status(), 200);

    // A stranger signs up someone else's new address; its owner, in their own browser, follows
    // the link: the account is theirs, without the stranger's password or name.
    let body = json!({ "email": "carol@example.com", "password": "mallory's own passphrase", "name": "Mallory" });
    let planted = mallory.post(app.url("/auth/signup")).json(&body).send().await.unwrap();
    assert_eq!(planted.status(), StatusCode::ACCEPTED);
    let carol = app.client();
    let link = sink.nth(4).await.link().unwrap();
    assert_eq!(app.confirm_magic_link(&carol, &link).await.status(), StatusCode::SEE_OTHER);
    let me: Value = carol.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email"], "carol@example.com");
    assert_ne!(me["user"]["name"], "Mallory");
    let stolen =
        password_login(&app, &app.client(), "carol@example.com", "mallory's own passphrase").await;
    assert_eq!(error_code(stolen).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));
}

/// Without `auth.signup_confirm` (the documented default), a taken address is a 409, but only
/// after the same password hashing a new account costs.
#[tokio::test]
async fn a_taken_address_costs_the_same_hashing_as_a_new_one() {
    let app = TestApp::spawn().await;
    let hashes = || async {
        let metrics = app.client().get(app.admin_url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        let line = text.lines().find(|line| line.starts_with("portcullis_password_hashes_total"));
        line.and_then(|line| line.split(' ').nth(1)).unwrap().parse::<u64>().unwrap()
    };
    app.sign_up(&app.client(), "ada@example.com").await;
    assert_eq!(hashes().await, 1, "the new account's password");
    let body = json!({ "email": "ada@example.com", "password": "another fine passphrase" });
    let taken = app.client().post(app.url("/auth/signup")).json(&body).send().await.unwrap();
    assert_eq!(error_code(taken).await, (StatusCode::CONFLICT, "conflict".into()));
    assert_eq!(hashes().await, 2, "a taken address is hashed too");
}
