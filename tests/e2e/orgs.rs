//! Organizations end to end: two users, three organizations; switching and the headers that
//! follow, tenant isolation and role-gated routes at the gateway, membership changes taking
//! effect on a cached session, the last-owner rule, invites (new and existing users, replay,
//! expiry) over real SMTP, and the choice of organization after every kind of login.

use std::time::Duration;

use base64::Engine;
use portcullis::testing::clock::ManualClock;
use portcullis::testing::config::values::Flag;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::assertion_verify::AssertionVerifier;
use crate::support::app::{PASSWORD, form_token};
use crate::support::smtp::SmtpSink;
use crate::support::{TestApp, error_code, login_form, password_login, post_form};

pub const ROUTES: &str = r#"
[[routes]]
path = "/orgs/{org_id}/*"
on_unauthenticated = "401"
[[routes]]
path = "/admin/*"
org_roles = ["owner", "admin"]
on_unauthenticated = "401"
[[routes]]
path = "/*"
on_unauthenticated = "401"
"#;

async fn app_with_mail(sink: &SmtpSink, clock: Option<ManualClock>, selection: bool) -> TestApp {
    let url = sink.url();
    let mut builder = TestApp::builder().routes(ROUTES).config(move |raw| {
        raw.email.transport = "smtp".into();
        raw.email.smtp_url = Some(url);
        raw.email.product_name = "Acme".into();
        raw.orgs.require_selection = Flag(selection);
    });
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.spawn().await
}

/// A cookie-authenticated call with the session's CSRF token.
pub async fn call(
    app: &TestApp,
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let csrf = app.csrf(client).await;
    let mut request = client.request(method, app.url(path)).header("x-csrf-token", csrf);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

pub async fn create_org(app: &TestApp, client: &Client, name: &str) -> String {
    let response =
        call(app, client, Method::POST, "/auth/orgs", Some(json!({ "name": name }))).await;
    assert_eq!(response.status(), StatusCode::CREATED, "create {name}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["organization"]["role"], "owner");
    body["organization"]["id"].as_str().unwrap().to_owned()
}

async fn status_of(client: &Client, url: String) -> StatusCode {
    client.get(url).send().await.unwrap().status()
}

async fn me(app: &TestApp, client: &Client) -> Value {
    client.get(app.url("/auth/me")).send().await.unwrap().json::<Value>().await.unwrap()["user"]
        .clone()
}

/// Invites `email` to `org` as `role` from `client`; returns the accept link from the mail.
pub async fn invite(
    app: &TestApp,
    sink: &SmtpSink,
    client: &Client,
    org: &str,
    email: &str,
    role: &str,
) -> String {
    let sent_before = sink.messages().iter().filter(|m| m.to == [email]).count();
    let path = format!("/auth/orgs/{org}/invites");
    let body = json!({ "email": email, "role": role });
    let response = call(app, client, Method::POST, &path, Some(body)).await;
    assert_eq!(response.status(), StatusCode::CREATED, "invite {email}");
    let invite: Value = response.json().await.unwrap();
    assert_eq!(invite["invite"]["role"], role);
    for _ in 0..100 {
        let mails: Vec<_> = sink.messages().into_iter().filter(|m| m.to == [email]).collect();
        if mails.len() > sent_before {
            let mail = mails.last().unwrap();
            assert!(mail.header("Subject").unwrap().contains("invited"));
            assert!(mail.data.contains("Test User invited you to join"), "{}", mail.data);
            return mail.link().expect("an accept link");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no invite reached {email}");
}

#[tokio::test]
async fn two_users_three_orgs_switching_isolation_roles_and_removal() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None, false).await;
    let ada = app.signed_in("ada@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let acme = create_org(&app, &ada, "Acme").await;
    let beta = create_org(&app, &ada, "Beta").await;
    let gamma = create_org(&app, &bob, "Gamma").await;

    // Ada's session started acting in her first organization.
    let user = me(&app, &ada).await;
    assert_eq!(user["active_org_id"], acme.as_str());
    let names: Vec<&str> = user["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Acme") && names.contains(&"Beta"));
    let seen = app.echo(&ada, "/x").await;
    assert_eq!(seen.header("x-auth-org-id"), Some(acme.as_str()));
    assert_eq!(seen.header("x-auth-org-role"), Some("owner"));
    let verifier =
        AssertionVerifier::new(crate::support::http(), app.running().public_url(), "app");
    let claims = verifier.verify(seen.header("x-auth-assertion").unwrap()).await.unwrap();
    assert_eq!(claims.org.as_deref(), Some(acme.as_str()));

    // Switching: CSRF required, members only, headers follow at once.
    let no_csrf = ada
        .post(app.url("/auth/orgs/switch"))
        .json(&json!({ "org_id": beta }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(no_csrf).await, (StatusCode::FORBIDDEN, "csrf_failed".into()));
    let foreign =
        call(&app, &ada, Method::POST, "/auth/orgs/switch", Some(json!({ "org_id": gamma }))).await;
    assert_eq!(error_code(foreign).await, (StatusCode::NOT_FOUND, "not_found".into()));
    let switched =
        call(&app, &ada, Method::POST, "/auth/orgs/switch", Some(json!({ "org_id": beta }))).await;
    assert_eq!(switched.status(), 200);
    assert_eq!(switched.json::<Value>().await.unwrap()["user"]["active_org_id"], beta.as_str());
    assert_eq!(app.echo(&ada, "/x").await.header("x-auth-org-id"), Some(beta.as_str()));
    let listed: Value = ada.get(app.url("/auth/orgs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["active_org_id"], beta.as_str());

    // Bob joins Acme as a member through an invite, while signed in as himself.
    let link = invite(&app, &sink, &ada, &acme, "bob@example.com", "member").await;
    let accepted = bob.get(&link).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::FOUND);
    assert_eq!(accepted.headers()["location"], "/");
    let seen = app.echo(&bob, "/x").await;
    assert_eq!(seen.header("x-auth-org-id"), Some(acme.as_str()), "the invite's org is active");
    assert_eq!(seen.header("x-auth-org-role"), Some("member"));

    // Tenant isolation: a member of Acme and Gamma, not of Beta.
    assert_eq!(status_of(&bob, app.url(&format!("/orgs/{acme}/doc"))).await, StatusCode::OK);
    assert_eq!(status_of(&bob, app.url(&format!("/orgs/{gamma}/doc"))).await, StatusCode::OK);
    let other = bob.get(app.url(&format!("/orgs/{beta}/doc"))).send().await.unwrap();
    assert_eq!(error_code(other).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let bogus = bob.get(app.url("/orgs/not-an-id/doc")).send().await.unwrap();
    assert_eq!(bogus.status(), StatusCode::FORBIDDEN);
    // Role-gated: in his active org (Acme) Bob is a member; Ada is owner of hers.
    assert_eq!(status_of(&bob, app.url("/admin/panel")).await, StatusCode::FORBIDDEN);
    assert_eq!(status_of(&ada, app.url("/admin/panel")).await, StatusCode::OK);

    // Members do not manage.
    let members_path = format!("/auth/orgs/{acme}/members");
    assert_eq!(status_of(&bob, app.url(&members_path)).await, StatusCode::FORBIDDEN);
    let bob_id = me(&app, &bob).await["id"].as_str().unwrap().to_owned();
    let ada_id = me(&app, &ada).await["id"].as_str().unwrap().to_owned();
    let ada_path = format!("/auth/orgs/{acme}/members/{ada_id}");
    let demote =
        call(&app, &bob, Method::PATCH, &ada_path, Some(json!({ "role": "member" }))).await;
    assert_eq!(demote.status(), StatusCode::FORBIDDEN);

    // A promotion reaches Bob's cached session on his next request.
    let bob_path = format!("/auth/orgs/{acme}/members/{bob_id}");
    let promote =
        call(&app, &ada, Method::PATCH, &bob_path, Some(json!({ "role": "admin" }))).await;
    assert_eq!(promote.status(), 200);
    assert_eq!(promote.json::<Value>().await.unwrap()["member"]["role"], "admin");
    assert_eq!(status_of(&bob, app.url("/admin/panel")).await, StatusCode::OK);
    let members: Value =
        bob.get(app.url(&members_path)).send().await.unwrap().json().await.unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    // An admin cannot touch the owner or make owners.
    let make_owner =
        call(&app, &bob, Method::PATCH, &bob_path, Some(json!({ "role": "owner" }))).await;
    assert_eq!(make_owner.status(), StatusCode::FORBIDDEN);
    assert_eq!(call(&app, &bob, Method::DELETE, &ada_path, None).await.status(), 403);
    let unknown = call(&app, &ada, Method::PATCH, &bob_path, Some(json!({ "role": "boss" }))).await;
    assert_eq!(error_code(unknown).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));

    // The last owner can neither be demoted nor leave.
    let last = call(&app, &ada, Method::PATCH, &ada_path, Some(json!({ "role": "admin" }))).await;
    assert_eq!(error_code(last).await, (StatusCode::CONFLICT, "conflict".into()));
    let leave = call(&app, &ada, Method::DELETE, &ada_path, None).await;
    assert_eq!(error_code(leave).await, (StatusCode::CONFLICT, "conflict".into()));

    // Removal takes effect on the next request of Bob's cached session.
    assert_eq!(status_of(&bob, app.url(&format!("/orgs/{acme}/doc"))).await, StatusCode::OK);
    assert_eq!(call(&app, &ada, Method::DELETE, &bob_path, None).await.status(), 200);
    assert_eq!(status_of(&bob, app.url(&format!("/orgs/{acme}/doc"))).await, StatusCode::FORBIDDEN);
    let seen = app.echo(&bob, "/x").await;
    assert_eq!(seen.header("x-auth-org-id"), None, "the removed org is no longer active");
    assert_eq!(status_of(&bob, app.url("/admin/panel")).await, StatusCode::FORBIDDEN);
    assert_eq!(me(&app, &bob).await["organizations"].as_array().unwrap().len(), 1);

    // A second owner lets the first leave.
    let link = invite(&app, &sink, &ada, &beta, "bob@example.com", "owner").await;
    assert_eq!(bob.get(&link).send().await.unwrap().status(), StatusCode::FOUND);
    let ada_in_beta = format!("/auth/orgs/{beta}/members/{ada_id}");
    assert_eq!(call(&app, &ada, Method::DELETE, &ada_in_beta, None).await.status(), 200);
    assert_eq!(app.echo(&ada, "/x").await.header("x-auth-org-id"), None);
}

/// Picks `org` on the choice page `client` was sent to, as a browser would; the answer.
pub async fn choose_on_page(app: &TestApp, client: &Client, org: &str) -> reqwest::Response {
    let page = client.get(app.url("/auth/orgs/select")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("value=\"{org}\"")), "{html}");
    post_form(
        app,
        client,
        "/auth/orgs/select",
        &[("org_id", org), ("csrf_token", &form_token(&html))],
    )
    .await
}

/// Logs in by password, with `mode` (None: a cookie).
async fn login(app: &TestApp, client: &Client, mode: Option<&str>) -> reqwest::Response {
    let mut body = json!({ "email": "ada@example.com", "password": PASSWORD });
    if let Some(mode) = mode {
        body["mode"] = json!(mode);
    }
    client.post(app.url("/auth/login")).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn with_require_selection_every_login_chooses_an_organization() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None, true).await;
    let setup = app.signed_in("ada@example.com").await;
    let acme = create_org(&app, &setup, "Acme").await;
    let beta = create_org(&app, &setup, "Beta").await;

    // JSON login: a pending token and the choices, no session.
    let client = app.client();
    let pending = login(&app, &client, None).await;
    assert_eq!(pending.status(), 200);
    assert!(pending.headers().get("set-cookie").is_none());
    let body: Value = pending.json().await.unwrap();
    let token = body["pending_token"].as_str().unwrap().to_owned();
    assert_eq!(body["organizations"].as_array().unwrap().len(), 2);
    assert_eq!(status_of(&client, app.url("/x")).await, StatusCode::UNAUTHORIZED);
    let select = |body: Value| client.post(app.url("/auth/orgs/select")).json(&body).send();
    let outsider = Uuid::now_v7().to_string();
    let wrong = select(json!({ "pending_token": token, "org_id": outsider })).await.unwrap();
    assert_eq!(error_code(wrong).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let chosen = select(json!({ "pending_token": token, "org_id": beta })).await.unwrap();
    assert_eq!(chosen.status(), 200, "a wrong org did not burn the token");
    assert_eq!(chosen.json::<Value>().await.unwrap()["user"]["active_org_id"], beta.as_str());
    assert_eq!(app.echo(&client, "/x").await.header("x-auth-org-id"), Some(beta.as_str()));
    let replay = select(json!({ "pending_token": token, "org_id": beta })).await.unwrap();
    assert_eq!(error_code(replay).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    // Token login: the access token carries the chosen org.
    let tokens = app.client();
    let body: Value = login(&app, &tokens, Some("token")).await.json().await.unwrap();
    assert!(body.get("access_token").is_none());
    let token = body["pending_token"].as_str().unwrap();
    let pair: Value = tokens
        .post(app.url("/auth/orgs/select"))
        .json(&json!({ "pending_token": token, "org_id": acme }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = pair["access_token"].as_str().unwrap();
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["org"], acme.as_str());
    let seen: crate::support::echo::Echoed = crate::support::http()
        .get(app.url("/x"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen.header("x-auth-org-id"), Some(acme.as_str()));
    assert_eq!(seen.header("x-auth-method"), Some("jwt"));
    // Refreshed tokens keep it.
    let refreshed: Value = crate::support::http()
        .post(app.url("/auth/refresh"))
        .json(&json!({ "refresh_token": pair["refresh_token"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payload = refreshed["access_token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["org"], acme.as_str());

    // The sign-in page's form: a redirect to the choice page, then its form, no JavaScript.
    let browser = app.client();
    let csrf = app.form_csrf(&browser, "/auth/sign-in?redirect_uri=/dashboard").await;
    let posted =
        login_form(&app, &browser, "ada@example.com", PASSWORD, &csrf, Some("/dashboard")).await;
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    assert_eq!(posted.headers()["location"], "/auth/orgs/select");
    let page = browser.get(app.url("/auth/orgs/select")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Acme") && html.contains("Beta"), "{html}");
    assert!(html.contains(&format!("value=\"{beta}\"")));
    let choice = [("org_id", beta.as_str()), ("csrf_token", &form_token(&html))];
    let chosen = post_form(&app, &browser, "/auth/orgs/select", &choice).await;
    assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
    assert_eq!(chosen.headers()["location"], "/dashboard");
    assert_eq!(app.echo(&browser, "/x").await.header("x-auth-org-id"), Some(beta.as_str()));
    let again = browser.get(app.url("/auth/orgs/select")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "the choice is finished");

    // A magic link lands on the same choice.
    let clicker = app.client();
    clicker
        .post(app.url("/auth/magic-link"))
        .json(&json!({ "email": "ada@example.com", "redirect_uri": "/inbox" }))
        .send()
        .await
        .unwrap();
    let link = sink.nth_about(1, "Sign in").await.link().unwrap();
    let landed = app.confirm_magic_link(&clicker, &link).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()["location"], "/auth/orgs/select");
    let chosen = choose_on_page(&app, &clicker, &acme).await;
    assert_eq!(chosen.headers()["location"], "/inbox");
    assert_eq!(app.echo(&clicker, "/x").await.header("x-auth-org-id"), Some(acme.as_str()));

    // One organization: no choice to make.
    let solo = app.signed_in("solo@example.com").await;
    let only = create_org(&app, &solo, "Solo").await;
    let login = password_login(&app, &app.client(), "solo@example.com", PASSWORD).await;
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["user"]["active_org_id"], only.as_str());
}

#[tokio::test]
async fn invites_make_accounts_work_once_and_expire() {
    let sink = SmtpSink::start().await;
    let clock = ManualClock::new();
    let app = app_with_mail(&sink, Some(clock.clone()), false).await;
    let ada = app.signed_in("ada@example.com").await;
    let acme = create_org(&app, &ada, "Acme").await;

    // A new user: the link creates the account (verified), joins and signs in.
    let link = invite(&app, &sink, &ada, &acme, "new@example.com", "member").await;
    assert!(link.contains("/auth/invites/accept?token="), "{link}");
    let users = app.user_count().await;
    let newcomer = app.client();
    let accepted = newcomer.get(&link).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::FOUND);
    assert_eq!(app.user_count().await, users + 1);
    let user = me(&app, &newcomer).await;
    assert_eq!(user["email"], "new@example.com");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["active_org_id"], acme.as_str());
    assert_eq!(user["organizations"][0]["role"], "member");

    // Used once.
    let replay = app.client().get(&link).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(replay.text().await.unwrap().contains("invalid, expired or already used"));
    let garbage =
        app.client().get(app.url("/auth/invites/accept?token=nope")).send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);

    // Only the latest invite to an address works; invites expire.
    let first = invite(&app, &sink, &ada, &acme, "late@example.com", "member").await;
    let second = invite(&app, &sink, &ada, &acme, "late@example.com", "admin").await;
    let stale = app.client().get(&first).header("accept", "application/json").send().await.unwrap();
    assert_eq!(error_code(stale).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));

    // Pending invites are listed to managers, and can be withdrawn.
    let withdrawn = invite(&app, &sink, &ada, &acme, "gone@example.com", "member").await;
    let invites_path = format!("/auth/orgs/{acme}/invites");
    let listed: Value = ada.get(app.url(&invites_path)).send().await.unwrap().json().await.unwrap();
    let pending = listed["invites"].as_array().unwrap();
    let emails: Vec<&str> = pending.iter().map(|i| i["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["gone@example.com", "late@example.com"], "newest first, used ones gone");
    assert_eq!(pending[1]["role"], "admin", "only the latest invite to an address");
    assert!(!listed.to_string().contains("token"), "never the token");
    let id = pending[0]["id"].as_str().unwrap();
    let revoke = call(&app, &ada, Method::DELETE, &format!("{invites_path}/{id}"), None).await;
    assert_eq!(revoke.status(), 200);
    assert_eq!(app.client().get(&withdrawn).send().await.unwrap().status(), 401);
    let again = call(&app, &ada, Method::DELETE, &format!("{invites_path}/{id}"), None).await;
    assert_eq!(error_code(again).await, (StatusCode::NOT_FOUND, "not_found".into()));
    let by_member = newcomer.get(app.url(&invites_path)).send().await.unwrap();
    assert_eq!(by_member.status(), StatusCode::FORBIDDEN);

    // Inviting a member again is a conflict; members cannot invite; nobody invites elsewhere.
    let body = json!({ "email": "new@example.com", "role": "member" });
    let path = format!("/auth/orgs/{acme}/invites");
    let again = call(&app, &ada, Method::POST, &path, Some(body.clone())).await;
    assert_eq!(error_code(again).await, (StatusCode::CONFLICT, "conflict".into()));
    let by_member =
        call(&app, &newcomer, Method::POST, &path, Some(json!({ "email": "x@example.com" }))).await;
    assert_eq!(error_code(by_member).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let outsider = app.signed_in("eve@example.com").await;
    let elsewhere =
        call(&app, &outsider, Method::POST, &path, Some(json!({ "email": "x@example.com" }))).await;
    assert_eq!(error_code(elsewhere).await, (StatusCode::NOT_FOUND, "not_found".into()));

    // Invites expire (seven days by default).
    clock.advance(Duration::from_secs(7 * 24 * 3600 + 60));
    assert_eq!(app.client().get(&second).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_sign_up_closed_invites_still_make_accounts() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None, false).await;
    let ada = app.signed_in("ada@example.com").await;
    app.signed_in("bob@example.com").await;
    let acme = create_org(&app, &ada, "Acme").await;
    let closed = {
        let url = sink.url();
        TestApp::builder()
            .database(&app.running().state().config.storage.database_url)
            .config(move |raw| {
                raw.auth.signup = Flag(false);
                raw.email.transport = "smtp".into();
                raw.email.smtp_url = Some(url);
            })
            .spawn()
            .await
    };
    let stranger = invite(&app, &sink, &ada, &acme, "stranger@example.com", "member").await;
    let bob = invite(&app, &sink, &ada, &acme, "bob@example.com", "member").await;
    let port = |url: &str| url.replace(&app.url(""), &closed.url(""));
    // An invite is how a closed deployment adds people: the stranger gets an account.
    let newcomer = closed.client();
    let joined = newcomer.get(port(&stranger)).send().await.unwrap();
    assert_eq!(joined.status(), StatusCode::FOUND);
    assert_eq!(me(&closed, &newcomer).await["email"], "stranger@example.com");
    let client = closed.client();
    assert_eq!(client.get(port(&bob)).send().await.unwrap().status(), StatusCode::FOUND);
    assert_eq!(me(&closed, &client).await["active_org_id"], acme.as_str());
}

#[tokio::test]
async fn org_endpoints_refuse_garbage_keys_and_cross_site_posts() {
    let app = TestApp::builder().routes(ROUTES).spawn().await;
    let ada = app.signed_in("ada@example.com").await;
    let acme = create_org(&app, &ada, "Acme").await;
    let post = |body: Value| call(&app, &ada, Method::POST, "/auth/orgs", Some(body));
    for bad in [
        json!({ "name": "" }),
        json!({ "name": "x".repeat(101) }),
        json!({ "name": "Ok", "slug": "Not A Slug" }),
        json!({ "name": "Ok", "slug": Uuid::now_v7().to_string() }),
        json!({ "name": 7 }),
        json!({ "name": "Ok", "extra": true }),
    ] {
        let response = post(bad.clone()).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{bad}"
        );
    }
    assert_eq!(post(json!({ "name": "Two", "slug": "two" })).await.status(), 201);
    let taken = post(json!({ "name": "Again", "slug": "two" })).await;
    assert_eq!(error_code(taken).await, (StatusCode::CONFLICT, "conflict".into()));
    let same_name = post(json!({ "name": "Acme" })).await;
    assert_eq!(same_name.status(), 201, "a free slug is found for a taken name");
    let slug = same_name.json::<Value>().await.unwrap()["organization"]["slug"].clone();
    assert!(slug.as_str().unwrap().starts_with("acme-"), "{slug}");

    let csrf = app.csrf(&ada).await;
    let raw = ada
        .post(app.url("/auth/orgs"))
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body(b"{\"name\": \"\xff\xfe\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let cross_site = ada
        .post(app.url("/auth/orgs"))
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .json(&json!({ "name": "Evil" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(cross_site).await, (StatusCode::FORBIDDEN, "csrf_failed".into()));
    let bad_path = call(&app, &ada, Method::GET, "/auth/orgs/nope/members", None).await;
    assert_eq!(bad_path.status(), StatusCode::NOT_FOUND);
    let select = app
        .client()
        .post(app.url("/auth/orgs/select"))
        .json(&json!({ "pending_token": "garbage", "org_id": acme }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(select).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    let anonymous = app.client().get(app.url("/auth/orgs")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // A key without the `account` scope reaches no account endpoint; one with it reads
    // organizations but does not manage them.
    let plain: Value =
        call(&app, &ada, Method::POST, "/auth/api-keys", Some(json!({ "name": "app" })))
            .await
            .json()
            .await
            .unwrap();
    let http = crate::support::http();
    let refused =
        http.get(app.url("/auth/orgs")).bearer_auth(plain["key"].as_str().unwrap()).send().await;
    assert_eq!(refused.unwrap().status(), StatusCode::FORBIDDEN);
    let body = json!({ "name": "ci", "scopes": ["account"] });
    let key: Value =
        call(&app, &ada, Method::POST, "/auth/api-keys", Some(body)).await.json().await.unwrap();
    let key = key["key"].as_str().unwrap();
    let listed = http.get(app.url("/auth/orgs")).bearer_auth(key).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let created = http
        .post(app.url("/auth/orgs"))
        .bearer_auth(key)
        .json(&json!({ "name": "By key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(created).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    // A key sees its owner's memberships on org-scoped paths.
    let scoped = http.get(app.url(&format!("/orgs/{acme}/x"))).bearer_auth(key).send().await;
    assert_eq!(scoped.unwrap().status(), 200);
    let seen: crate::support::Echoed =
        http.get(app.url("/x")).bearer_auth(key).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen.header("x-auth-org-id"), None, "a key made for no organization acts in none");
    // A key made for an organization acts in it; only for one its creator belongs to.
    let body = json!({ "name": "acme ci", "org_id": acme });
    let bound: Value =
        call(&app, &ada, Method::POST, "/auth/api-keys", Some(body)).await.json().await.unwrap();
    assert_eq!(bound["org_id"], acme.as_str());
    let bound = bound["key"].as_str().unwrap();
    let seen: crate::support::Echoed =
        http.get(app.url("/x")).bearer_auth(bound).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen.header("x-auth-org-id"), Some(acme.as_str()));
    assert_eq!(seen.header("x-auth-org-role"), Some("owner"));
    let body = json!({ "name": "elsewhere", "org_id": Uuid::now_v7() });
    let foreign = call(&app, &ada, Method::POST, "/auth/api-keys", Some(body)).await;
    assert_eq!(error_code(foreign).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let count: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM organizations")
            .fetch_one(app.running().state().services.db.pool())
            .await
            .unwrap()
            .get("n")
    };
    assert_eq!(count, 3, "no refused request created anything");
}

#[tokio::test]
async fn an_account_belongs_to_at_most_a_hundred_organizations() {
    let app = TestApp::spawn().await;
    let ada = app.signed_in("ada@example.com").await;
    let csrf = app.csrf(&ada).await;
    for n in 0..100 {
        let response = ada
            .post(app.url("/auth/orgs"))
            .header("x-csrf-token", &csrf)
            .json(&json!({ "name": format!("Org {n}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "org {n}");
    }
    let one_more = call(&app, &ada, Method::POST, "/auth/orgs", Some(json!({ "name": "More" })));
    assert_eq!(error_code(one_more.await).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let listed: Value = ada.get(app.url("/auth/orgs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["organizations"].as_array().unwrap().len(), 100);
}

/// An invite holds only while its sender may still invite: an admin who is made a plain member
/// takes their pending invites with them.
#[tokio::test]
async fn an_invite_is_withdrawn_when_its_sender_loses_the_right_to_invite() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink, None, false).await;
    let ada = app.signed_in("ada@example.com").await;
    let acme = create_org(&app, &ada, "Acme").await;
    let bob_link = invite(&app, &sink, &ada, &acme, "bob@example.com", "admin").await;
    let bob = app.client();
    assert_eq!(bob.get(&bob_link).send().await.unwrap().status(), StatusCode::FOUND);
    let bob_id = me(&app, &bob).await["id"].as_str().unwrap().to_owned();
    let named = call(&app, &bob, Method::PATCH, "/auth/me", Some(json!({ "name": "Test User" })));
    assert_eq!(named.await.status(), 200);
    let carol_link = invite(&app, &sink, &bob, &acme, "carol@example.com", "member").await;
    let dave_link = invite(&app, &sink, &bob, &acme, "dave@example.com", "member").await;
    // Dave joins while Bob is an admin.
    assert_eq!(app.client().get(&dave_link).send().await.unwrap().status(), StatusCode::FOUND);

    let path = format!("/auth/orgs/{acme}/members/{bob_id}");
    let demoted = call(&app, &ada, Method::PATCH, &path, Some(json!({ "role": "member" }))).await;
    assert_eq!(demoted.status(), 200);
    let carol =
        app.client().get(&carol_link).header("accept", "application/json").send().await.unwrap();
    assert_eq!(error_code(carol).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
}
