//! The auth API: sign-up, login, logout, sessions, CSRF, forward-auth, the sign-in page, limits.

use std::time::Duration;

use portcullis::testing::clock::ManualClock;
use portcullis::testing::config::values::{Count, StringList};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    PASSWORD, TestApp, log_out, login_form, login_request, password_fields, password_login,
    post_form,
};

#[tokio::test]
async fn signup_login_me_and_logout() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let response = client
        .post(app.url("/auth/signup"))
        .json(&json!({"email": "Ada@Example.com", "password": PASSWORD, "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["portcullis_session=v2.", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "public URL is http");
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["user"]["email"], "ada@example.com");
    assert_eq!(user["user"]["email_verified"], false);

    let me: Value = client.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["id"], user["user"]["id"]);
    assert_eq!(me["user"]["organizations"], json!([]));

    let logout = log_out(&app, &client).await;
    assert_eq!(logout.status(), 200);
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(client.get(app.url("/auth/me")).send().await.unwrap().status(), 401);

    let other = app.client();
    let login = password_login(&app, &other, "ada@example.com", PASSWORD).await;
    assert_eq!(login.status(), 200);
    assert_eq!(login.json::<Value>().await.unwrap()["user"]["email"], "ada@example.com");
    assert_eq!(other.get(app.url("/auth/me")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.signed_in("ada@example.com").await;
    let client = app.client();
    let mut answers = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        let response = password_login(&app, &client, email, "wrong password here").await;
        answers.push((response.status(), response.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].1.contains("invalid_credentials"));
}

#[tokio::test]
async fn weak_passwords_are_refused_naming_the_rule() {
    let app = TestApp::spawn().await;
    let client = app.client();
    for (password, rule) in [
        ("short", "at least 10 characters"),
        ("password1234", "too common"),
        ("ada@example.com", "email"),
    ] {
        let response = client
            .post(app.url("/auth/signup"))
            .json(&json!({"email": "ada@example.com", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{password}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
        assert!(body["message"].as_str().unwrap().contains(rule), "{body}");
    }
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn signup_rules_closed_signup_and_allowed_domains() {
    let closed = TestApp::builder()
        .config(|c| c.auth.signup = portcullis::testing::config::values::Flag(false))
        .spawn()
        .await;
    let response = closed
        .client()
        .post(closed.url("/auth/signup"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    let domains = TestApp::builder()
        .config(|c| c.auth.allowed_email_domains = StringList(vec!["acme.com".into()]))
        .spawn()
        .await;
    let client = domains.client();
    let outsider = client
        .post(domains.url("/auth/signup"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(outsider.status(), 403);
    domains.sign_up(&client, "ada@acme.com").await;
}

#[tokio::test]
async fn sessions_are_listed_and_ended_one_by_one_or_all_at_once() {
    let app = TestApp::spawn().await;
    let first = app.signed_in("ada@example.com").await;
    let second = app.client();
    let login = login_request(&app, &second, "ada@example.com", PASSWORD)
        .header("user-agent", "second-device")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    let listed: Value =
        first.get(app.url("/auth/sessions")).send().await.unwrap().json().await.unwrap();
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["user_agent"], "second-device");
    assert_eq!(other["ip"], "127.0.0.1");

    // Warm the second session's cache entry, then end it from the first device.
    assert_eq!(second.get(app.url("/anything")).send().await.unwrap().status(), 200);
    let token = app.csrf(&first).await;
    let id = other["id"].as_str().unwrap();
    let ended = first
        .delete(app.url(&format!("/auth/sessions/{id}")))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    assert_eq!(
        second
            .get(app.url("/anything"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let again = first
        .delete(app.url(&format!("/auth/sessions/{id}")))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let bad_id = first
        .delete(app.url("/auth/sessions/not-a-uuid"))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 404);

    // Log out everywhere.
    let third = app.client();
    password_login(&app, &third, "ada@example.com", PASSWORD).await;
    assert_eq!(third.get(app.url("/x")).send().await.unwrap().status(), 200);
    let all = first
        .post(app.url("/auth/logout?all=true"))
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 200);
    assert_eq!(third.get(app.url("/x")).send().await.unwrap().status(), 401);
    assert_eq!(first.get(app.url("/x")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn csrf_is_required_on_cookie_authenticated_changes() {
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let missing = client.post(app.url("/auth/logout")).send().await.unwrap();
    assert_eq!(missing.status(), 403);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "csrf_failed");
    let wrong =
        client.post(app.url("/auth/logout")).header("x-csrf-token", "forged").send().await.unwrap();
    assert_eq!(wrong.status(), 403);

    let token = app.csrf(&client).await;
    let cross_site = client
        .post(app.url("/auth/logout"))
        .header("x-csrf-token", &token)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let fetch_site = client
        .post(app.url("/auth/logout"))
        .header("x-csrf-token", &token)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(fetch_site.status(), 403);
    assert_eq!(
        client.get(app.url("/auth/me")).send().await.unwrap().status(),
        200,
        "still signed in"
    );

    // Another user's token does not work for this session.
    let other = app.signed_in("bob@example.com").await;
    let bobs = app.csrf(&other).await;
    let borrowed =
        client.post(app.url("/auth/logout")).header("x-csrf-token", bobs).send().await.unwrap();
    assert_eq!(borrowed.status(), 403);

    let same_origin = client
        .post(app.url("/auth/logout"))
        .header("x-csrf-token", &token)
        .header("origin", app.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 200);

    let login_cross_site = login_request(&app, &app.client(), "ada@example.com", PASSWORD)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(login_cross_site.status(), 403, "login CSRF");
}

#[tokio::test]
async fn the_sign_in_page_works_without_javascript() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let page = client.get(app.url("/auth/sign-in?redirect_uri=%2Fdashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(page.headers()["set-cookie"].to_str().unwrap().starts_with("portcullis_csrf="));
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""));
    assert!(!html.contains("<script"));
    let csrf = crate::support::form_token(&html);
    assert!(html.contains("value=\"&#x2f;dashboard\""), "redirect kept in the form");

    // Sign up through the form: 303 to the target, signed in.
    let fields = password_fields("ada@example.com", PASSWORD, &csrf, Some("/dashboard"));
    let signup = post_form(&app, &client, "/auth/signup", &fields).await;
    assert_eq!(signup.status(), StatusCode::SEE_OTHER);
    assert_eq!(signup.headers()["location"], "/dashboard");
    assert_eq!(client.get(app.url("/dashboard")).send().await.unwrap().status(), 200);

    // A wrong password through the form shows the page again with the message.
    let other = app.client();
    let csrf = app.form_csrf(&other, "/auth/sign-in").await;
    let failed = login_form(&app, &other, "ada@example.com", "not the password", &csrf, None).await;
    assert_eq!(failed.status(), 401);
    assert!(failed.text().await.unwrap().contains("Invalid email or password"));

    // A form post without the page's token is refused (login CSRF).
    let fields = [("email", "ada@example.com"), ("password", PASSWORD)];
    let forged = post_form(&app, &app.client(), "/auth/login", &fields).await;
    assert_eq!(forged.status(), 403);

    // A form login lands on the validated target.
    let login = login_form(&app, &other, "ada@example.com", PASSWORD, &csrf, Some("/after")).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()["location"], "/after");
}

#[tokio::test]
async fn redirect_targets_on_other_origins_are_refused() {
    let app = TestApp::builder()
        .config(|c| c.auth.redirect_origins = StringList(vec!["https://admin.example.com".into()]))
        .spawn()
        .await;
    let client = app.client();
    for target in
        ["https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"]
    {
        let url = format!("{}?redirect_uri={}", app.url("/auth/sign-in"), urlencode(target));
        let page = client.get(url).send().await.unwrap();
        assert_eq!(page.status(), 400, "{target}");
        let html = page.text().await.unwrap();
        assert!(!html.contains("evil.example"), "{target} must not be echoed into the form");
    }
    let allowed = format!(
        "{}?redirect_uri={}",
        app.url("/auth/sign-in"),
        urlencode("https://admin.example.com/x")
    );
    assert_eq!(client.get(allowed).send().await.unwrap().status(), 200);

    let csrf = app.form_csrf(&client, "/auth/sign-in").await;
    let fields = password_fields("ada@example.com", PASSWORD, &csrf, Some("https://evil.example/"));
    let posted = post_form(&app, &client, "/auth/signup", &fields).await;
    assert_eq!(posted.status(), 400);
    assert_eq!(app.user_count().await, 0, "nothing is created on a refused redirect");
}

#[tokio::test]
async fn csrf_endpoint_binds_tokens_to_the_session_or_a_cookie() {
    let app = TestApp::spawn().await;
    let anonymous = app.client();
    let first = anonymous.get(app.url("/auth/csrf")).send().await.unwrap();
    assert!(first.headers()["set-cookie"].to_str().unwrap().contains("portcullis_csrf="));
    let first: Value = first.json().await.unwrap();
    let second: Value =
        anonymous.get(app.url("/auth/csrf")).send().await.unwrap().json().await.unwrap();
    assert_eq!(first, second, "the same cookie gives the same token");

    let signed_in = app.signed_in("ada@example.com").await;
    let token = app.csrf(&signed_in).await;
    assert_ne!(json!(token), first["csrf_token"]);
}

#[tokio::test]
async fn forward_auth_verify_answers_with_identity_headers() {
    let app = TestApp::builder()
        .routes(
            r#"
            [[routes]]
            path = "/admin/*"
            roles = ["admin"]
            [[routes]]
            path = "/open/*"
            access = "public"
            [[routes]]
            path = "/read-only/*"
            methods = ["POST", "DELETE"]
            access = "deny"
            "#,
        )
        .config(|c| {
            c.rate_limit.auth_per_minute = Count(2);
            c.server.trusted_proxies = StringList(vec!["127.0.0.1/32".into()]);
        })
        .spawn()
        .await;
    let verify =
        |client: &reqwest::Client, query: &str, headers: &[(&'static str, &'static str)]| {
            let mut request = client.get(app.url(&format!("/auth/verify{query}")));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send()
        };
    let client = app.signed_in("ada@example.com").await;
    let get = ("x-original-method", "GET");
    let allowed = verify(&client, "", &[("x-original-uri", "/app/page?x=1"), get]).await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-auth-email"], "ada@example.com");
    assert_eq!(allowed.headers()["x-auth-method"], "session");
    // Every identity header is answered, empty when the identity lacks it, so a proxy that
    // copies them overwrites a client's spoofed copy (Traefik, Caddy).
    assert_eq!(allowed.headers()["x-auth-org-id"], "");
    assert!(!allowed.headers()["x-auth-assertion"].is_empty(), "forward-auth signs assertions");
    let forbidden = verify(&client, "", &[("x-forwarded-uri", "/admin/x"), get]).await.unwrap();
    assert_eq!(forbidden.status(), 403);

    // Method-specific rules see the original method.
    let read = [("x-original-uri", "/read-only/x"), ("x-original-method", "GET")];
    assert_eq!(verify(&client, "", &read).await.unwrap().status(), 200);
    let write = [("x-forwarded-uri", "/read-only/x"), ("x-forwarded-method", "POST")];
    assert_eq!(verify(&client, "", &write).await.unwrap().status(), 403);

    let anonymous = app.client();
    let html = [("x-original-uri", "/app"), ("accept", "text/html"), get];
    let refused = verify(&anonymous, "", &html).await.unwrap();
    assert_eq!(refused.status(), 401, "auth_request needs 401, not a redirect");
    assert_eq!(
        refused.headers()["location"],
        "/auth/sign-in?redirect_uri=%2Fapp",
        "where the proxy sends the browser"
    );
    let redirect =
        verify(&anonymous, "?redirect=1", &[("x-original-uri", "/app?q=1"), get]).await.unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], "/auth/sign-in?redirect_uri=%2Fapp%3Fq%3D1");
    let public = verify(&anonymous, "", &[("x-original-uri", "/open/x"), get]).await.unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(public.headers()["x-auth-email"], "", "anonymous: empty, overwriting spoofs");

    // Forward-auth checks every proxied request: /verify is never rate limited.
    for _ in 0..20 {
        let page = [("x-original-uri", "/app"), get];
        assert_eq!(verify(&client, "", &page).await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn providers_lists_password() {
    let app = TestApp::spawn().await;
    let body: Value =
        app.client().get(app.url("/auth/providers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"providers": ["magic_link", "password"]}));
}

#[tokio::test]
async fn auth_requests_are_rate_limited_per_client_ip() {
    let app = TestApp::builder().config(|c| c.rate_limit.auth_per_minute = Count(5)).spawn().await;
    let client = app.client();
    let attempt = || password_login(&app, &client, "x@example.com", "y");
    for _ in 0..5 {
        assert_eq!(attempt().await.status(), 401);
    }
    let limited = attempt().await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(limited.json::<Value>().await.unwrap()["error"], "rate_limited");
    // X-Forwarded-For from an untrusted peer does not buy a new budget.
    let spoofed = login_request(&app, &client, "x@example.com", "y")
        .header("x-forwarded-for", "203.0.113.99")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        client.get(app.url("/auth/providers")).send().await.unwrap().status(),
        200,
        "reads are not limited"
    );

    // From a trusted proxy, each forwarded client has its own budget.
    let behind_proxy = TestApp::builder()
        .config(|c| {
            c.rate_limit.auth_per_minute = Count(2);
            c.server.trusted_proxies = StringList(vec!["127.0.0.1".into()]);
        })
        .spawn()
        .await;
    let client = behind_proxy.client();
    for ip in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..2 {
            let response = login_request(&behind_proxy, &client, "x@example.com", "y")
                .header("x-forwarded-for", ip)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{ip}");
        }
    }
}

#[tokio::test]
async fn repeated_failures_on_one_account_back_off() {
    let clock = ManualClock::new();
    let app = TestApp::builder()
        .clock(clock.clone())
        .config(|c| c.rate_limit.login_failures_before_backoff = Count(3))
        .spawn()
        .await;
    app.signed_in("ada@example.com").await;
    let client = app.client();
    let login = |password: &'static str| password_login(&app, &client, "ada@example.com", password);
    for _ in 0..3 {
        assert_eq!(login("wrong password!").await.status(), 401);
    }
    let locked = login(PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    assert!(locked.headers().contains_key("retry-after"));
    clock.advance(Duration::from_secs(5));
    assert_eq!(login(PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn idle_sessions_expire() {
    let clock = ManualClock::new();
    let app = TestApp::builder()
        .clock(clock.clone())
        .config(|c| {
            c.session.idle_timeout = "10m".into();
            c.session.cache_ttl = "30s".into();
        })
        .spawn()
        .await;
    let client = app.signed_in("ada@example.com").await;
    assert_eq!(client.get(app.url("/x")).send().await.unwrap().status(), 200);
    for _ in 0..3 {
        clock.advance(Duration::from_secs(9 * 60));
        assert_eq!(
            client.get(app.url("/x")).send().await.unwrap().status(),
            200,
            "activity slides the idle window"
        );
    }
    clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(
        client
            .get(app.url("/x"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn the_memory_ephemeral_store_serves_sessions_too() {
    let app = TestApp::builder().config(|c| c.storage.ephemeral = "memory".into()).spawn().await;
    let client = app.signed_in("ada@example.com").await;
    assert_eq!(client.get(app.url("/x")).send().await.unwrap().status(), 200);
    let listed: Value =
        client.get(app.url("/auth/sessions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1);
    log_out(&app, &client).await;
    assert_eq!(client.get(app.url("/x")).send().await.unwrap().status(), 401);
}

/// A session in use stays alive however short the idle timeout: its last use is recorded often
/// enough (here every 10 s of a 40 s timeout, used every 25 s).
#[tokio::test]
async fn a_short_idle_timeout_does_not_end_a_session_in_use() {
    let clock = ManualClock::new();
    let app = TestApp::builder()
        .clock(clock.clone())
        .config(|c| {
            c.session.idle_timeout = "40s".into();
            c.session.cache_ttl = "5s".into();
        })
        .spawn()
        .await;
    let client = app.signed_in("ada@example.com").await;
    for step in 0..8 {
        clock.advance(Duration::from_secs(25));
        let status = client.get(app.url("/x")).send().await.unwrap().status();
        assert_eq!(status, 200, "use {step}: a session in use stays alive");
    }
    clock.advance(Duration::from_secs(41));
    let idle = client.get(app.url("/x")).header("accept", "application/json").send().await;
    assert_eq!(idle.unwrap().status(), 401, "and idles out once unused");
}
