//! Hostile input: every case gets the documented JSON error, nothing panics, nothing is stored.

use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::support::{
    PASSWORD, TestApp, form_request, log_out, login_request, password_login, post_form,
};

async fn expect_error(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].is_string());
    let text = body.to_string();
    assert!(!text.contains("panicked") && !text.contains("src/"), "leaked internals: {text}");
    body
}

#[tokio::test]
async fn malformed_bodies_get_invalid_request_and_store_nothing() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let post = |body: &'static [u8], content_type: &'static str| {
        client.post(app.url("/auth/signup")).header("content-type", content_type).body(body).send()
    };
    expect_error(
        post(b"{\"email\": ", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        post(b"\xff\xfe{}", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        post(b"[1, 2]", "application/json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let wrong_type =
        post(b"{\"email\": \"a@b.co\", \"password\": \"x\"}", "text/plain").await.unwrap();
    let body = expect_error(wrong_type, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(body["message"].as_str().unwrap().contains("application/json"));
    let missing = post(b"{\"email\": \"ada@example.com\"}", "application/json").await.unwrap();
    let body = expect_error(missing, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(body["message"].as_str().unwrap().contains("password"), "names the field: {body}");
    let wrong_field_type =
        post(b"{\"email\": 5, \"password\": \"x\"}", "application/json").await.unwrap();
    expect_error(wrong_field_type, StatusCode::BAD_REQUEST, "invalid_request").await;
    let bad_email = client
        .post(app.url("/auth/signup"))
        .json(&json!({"email": "not-an-email", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let body = expect_error(bad_email, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(body["message"].as_str().unwrap().starts_with("email"));
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn a_one_mebibyte_email_is_refused() {
    let app = TestApp::spawn().await;
    let email = format!("{}@example.com", "a".repeat(1 << 20));
    let response = app
        .client()
        .post(app.url("/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let login = password_login(&app, &app.client(), &email, PASSWORD).await;
    expect_error(login, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Just under the body limit but far over the address limit.
    let long = format!("{}@example.com", "a".repeat(1000));
    let response = app
        .client()
        .post(app.url("/auth/signup"))
        .json(&json!({"email": long, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(app.user_count().await, 0);
}

#[tokio::test]
async fn duplicate_signup_is_a_conflict_and_creates_no_second_user() {
    let app = TestApp::spawn().await;
    app.signed_in("ada@example.com").await;
    let again = app
        .client()
        .post(app.url("/auth/signup"))
        .json(&json!({"email": "ADA@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(again, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn forged_garbled_and_ended_session_cookies_are_refused() {
    let app = TestApp::spawn().await;
    let random_token = format!("v1.{}", "A".repeat(43));
    let wrong_tag = format!("v2.{}", "A".repeat(54));
    for (cookie, code) in [
        (random_token.as_str(), "unauthorized"),
        (wrong_tag.as_str(), "unauthorized"),
        ("garbage", "invalid_token"),
        ("v1.", "invalid_token"),
        ("v1.%00%ff<script>", "invalid_token"),
        ("v2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "invalid_token"),
    ] {
        let client = app.client();
        let response = client
            .get(app.url("/private"))
            .header("cookie", format!("portcullis_session={cookie}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert!(
            response.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"),
            "dead cookie cleared"
        );
        expect_error(response, StatusCode::UNAUTHORIZED, code).await;
        let me = client
            .get(app.url("/auth/me"))
            .header("cookie", format!("portcullis_session={cookie}"))
            .send()
            .await
            .unwrap();
        expect_error(me, StatusCode::UNAUTHORIZED, code).await;
    }

    // A cookie of a logged-out session.
    let client = app.client();
    let cookie = app.session_cookie(&client, "ada@example.com").await;
    log_out(&app, &client).await;
    let replayed = app
        .client()
        .get(app.url("/private"))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    expect_error(replayed, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn invalid_utf8_in_headers_and_cookies_is_harmless() {
    let app = TestApp::builder()
        .routes("[[routes]]\npath = \"/public/*\"\naccess = \"public\"\n")
        .spawn()
        .await;
    let client = app.signed_in("ada@example.com").await;
    let garbage = HeaderValue::from_bytes(b"\xff\xfe\xc3(").unwrap();
    let response = client
        .get(app.url("/public/x"))
        .header(HeaderName::from_static("x-custom"), garbage.clone())
        .header(HeaderName::from_static("x-auth-user-id"), garbage.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: crate::support::Echoed = response.json().await.unwrap();
    assert!(echoed.headers.contains_key("x-custom"), "other headers pass through as bytes");
    assert_ne!(
        echoed.header("x-auth-user-id").map(|v| v.contains('\u{fffd}')),
        Some(true),
        "spoof replaced"
    );

    let anonymous = app.client();
    let response = anonymous
        .get(app.url("/private"))
        .header("cookie", HeaderValue::from_bytes(b"portcullis_session=\xff\xfe").unwrap())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = login_request(&app, &anonymous, "ada@example.com", PASSWORD)
        .header("cookie", HeaderValue::from_bytes(b"portcullis_csrf=\xff").unwrap())
        .header("origin", garbage)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::FORBIDDEN, "csrf_failed").await;
}

#[tokio::test]
async fn unknown_auth_routes_and_methods_get_json_errors() {
    let app = TestApp::spawn().await;
    let client = app.client();
    expect_error(
        client.get(app.url("/auth/nope")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        client.get(app.url("/auth/login")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        client.delete(app.url("/auth/me")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let bad_query = client.post(app.url("/auth/logout?all=maybe")).send().await.unwrap();
    expect_error(bad_query, StatusCode::BAD_REQUEST, "invalid_request").await;
    let bad_path = client.get(app.url("/%zz")).send().await.unwrap();
    expect_error(bad_path, StatusCode::BAD_REQUEST, "invalid_request").await;
}

/// A client refused for a body too large reads the 413 and can go on: the server reads what is
/// left of the body and says it closes the connection, so the next request does not land on a
/// closing connection (it used to fail now and then with an incomplete message).
#[tokio::test]
async fn a_refused_body_leaves_the_client_its_answer_and_its_next_request() {
    let app = TestApp::spawn().await;
    let http = crate::support::http();
    for round in 0..30 {
        let small = http.post(app.url("/auth/device/poll")).json(&json!({})).send().await.unwrap();
        expect_error(small, StatusCode::BAD_REQUEST, "invalid_request").await;
        let huge = http
            .post(app.url("/auth/device/poll"))
            .json(&json!({ "device_code": "x".repeat(1 << 20) }))
            .send()
            .await
            .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
        assert_eq!(huge.headers()["connection"], "close");
        expect_error(huge, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
    // Past what is worth reading: the answer may be lost, the next request is not.
    let past = http
        .post(app.url("/auth/device/poll"))
        .json(&json!({ "device_code": "x".repeat(8 << 20) }))
        .send()
        .await;
    if let Ok(answer) = past {
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let after = http.post(app.url("/auth/device/poll")).json(&json!({})).send().await.unwrap();
    expect_error(after, StatusCode::BAD_REQUEST, "invalid_request").await;
}

/// A client that waits to be asked for its body (`Expect: 100-continue`) is refused without
/// being asked: reading the refused body would invite the upload the answer refuses.
#[tokio::test]
async fn a_body_too_large_is_refused_before_the_client_is_asked_for_it() {
    let app = TestApp::spawn().await;
    let addr = app.running().http_addr().unwrap();
    let head =
        b"POST /auth/device/poll HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n\
                 Content-Length: 1048576\r\nExpect: 100-continue\r\n\r\n";
    let answer = crate::support::raw::exchange(addr, head).await;
    assert_eq!(answer.status, 413, "not 100 Continue: {}", answer.body);
    assert_eq!(answer.error(), "payload_too_large");
}

#[tokio::test]
async fn token_key_and_device_endpoints_refuse_garbage_with_json_errors() {
    let app = TestApp::spawn().await;
    let browser = app.signed_in("ada@example.com").await;
    let csrf = app.csrf(&browser).await;
    let http = crate::support::http();
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("/auth/refresh", b"{\"refresh_token\": ", "application/json"),
        ("/auth/refresh", b"\xff\xfe", "application/json"),
        ("/auth/refresh", b"{\"refresh_token\": 7}", "application/json"),
        ("/auth/device/poll", b"{}", "application/json"),
        ("/auth/device/poll", b"not json", "application/json"),
        ("/auth/device/start", b"{\"scopes\": [\"Not Valid\"]}", "application/json"),
        ("/auth/device/start", b"{\"scopes\": \"read\"}", "application/json"),
        (
            "/auth/login",
            b"{\"email\": \"a@b.co\", \"password\": \"x\", \"mode\": \"jwt\"}",
            "application/json",
        ),
    ];
    for (path, body, content_type) in cases {
        let response = http
            .post(app.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Unknown refresh tokens of every shape are invalid_token, never a 500.
    for token in ["", "rt_", "rt_x", &format!("rt_{}", "a".repeat(43)), &"é".repeat(50)] {
        let response = http
            .post(app.url("/auth/refresh"))
            .json(&json!({ "refresh_token": token }))
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let huge = http
        .post(app.url("/auth/device/poll"))
        .json(&json!({ "device_code": "x".repeat(1 << 20) }))
        .send()
        .await
        .unwrap();
    expect_error(huge, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let long_code = http
        .post(app.url("/auth/device/poll"))
        .json(&json!({ "device_code": "x".repeat(10_000) }))
        .send()
        .await
        .unwrap();
    let body: Value = long_code.json().await.unwrap();
    assert_eq!(body["status"], "expired");
    let bad_key_body = browser
        .post(app.url("/auth/api-keys"))
        .header("x-csrf-token", csrf)
        .header("content-type", "application/json")
        .body(&b"{\"name\": [1]}"[..])
        .send()
        .await
        .unwrap();
    expect_error(bad_key_body, StatusCode::BAD_REQUEST, "invalid_request").await;
    let not_a_uuid = browser.delete(app.url("/auth/api-keys/not-a-uuid")).send().await.unwrap();
    expect_error(not_a_uuid, StatusCode::NOT_FOUND, "not_found").await;
    // Odd Authorization headers: not ours, so anonymous, never a 500.
    for value in ["Bearer", "Bearer    ", "Basic abc", "bearer a.b", "Bearer a.b.c.d"] {
        let response = http.get(app.url("/x")).header("authorization", value).send().await.unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let binary = http
        .get(app.url("/x"))
        .header("authorization", HeaderValue::from_bytes(b"Bearer pk_\xff\xfe").unwrap())
        .send()
        .await
        .unwrap();
    expect_error(binary, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn email_and_provider_endpoints_refuse_garbage_and_cross_site_posts() {
    let app = TestApp::spawn().await;
    let http = crate::support::http();
    for path in [
        "/auth/magic-link",
        "/auth/magic-link/verify",
        "/auth/password/forgot",
        "/auth/password/reset",
        "/auth/sign-in",
    ] {
        for body in [&b"{\"email\": "[..], b"\xff\xfe", b"[1]", b"{\"email\": 7}"] {
            let response = http
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            expect_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
        let cross_site = http
            .post(app.url(path))
            .header("origin", "https://evil.example")
            .json(&json!({ "email": "ada@example.com", "code": "123456", "token": "x", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        expect_error(cross_site, StatusCode::FORBIDDEN, "csrf_failed").await;
        let fields = [
            ("email", "ada@example.com"),
            ("code", "123456"),
            ("token", "x"),
            ("password", PASSWORD),
        ];
        let form_without_token = post_form(&app, &http, path, &fields).await;
        // Our pages' forms must carry the page's token (a form post is answered with the page
        // and the error); the endpoints no page posts to treat a form like an API call
        // (same-site checked above).
        let status = form_without_token.status();
        if ["/auth/magic-link", "/auth/magic-link/verify", "/auth/password/reset"].contains(&path) {
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        } else {
            assert_eq!(status, StatusCode::OK, "{path}");
        }
    }
    // Tokens of every shape: the documented error, never a 500.
    for token in ["", "x", &"é".repeat(43), &"A".repeat(43), "%00"] {
        let reset = http
            .post(app.url("/auth/password/reset"))
            .json(&json!({ "token": token, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        expect_error(reset, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        let verify = http
            .get(app.url(&format!("/auth/email/verify?token={encoded}")))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        expect_error(verify, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let code = http
        .post(app.url("/auth/magic-link/verify"))
        .json(&json!({ "email": "ada@example.com", "code": "not a code" }))
        .send()
        .await
        .unwrap();
    expect_error(code, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Provider and service-token paths.
    let unknown = http.get(app.url("/auth/login/nope")).send().await.unwrap();
    expect_error(unknown, StatusCode::NOT_FOUND, "provider_not_configured").await;
    let callback = http
        .get(app.url("/auth/callback/nope?code=x&state=y"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    expect_error(callback, StatusCode::NOT_FOUND, "provider_not_configured").await;
    let anonymous_mint =
        http.post(app.url("/auth/service-tokens/x")).json(&json!({})).send().await.unwrap();
    expect_error(anonymous_mint, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let client = app.signed_in("ada@example.com").await;
    let csrf = app.csrf(&client).await;
    let garbage_patch = client
        .patch(app.url("/auth/me"))
        .header("x-csrf-token", csrf)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    expect_error(garbage_patch, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn the_sign_out_form_needs_its_session_token() {
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let other = app.signed_in("bob@example.com").await;
    let page = client.get(app.url("/auth/sign-out")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let token = crate::support::form_token(&page.text().await.unwrap());
    let other_token = crate::support::form_token(
        &other.get(app.url("/auth/sign-out")).send().await.unwrap().text().await.unwrap(),
    );
    for (form, origin) in [
        (vec![], None),
        (vec![("csrf_token", other_token.as_str())], None),
        (vec![("csrf_token", token.as_str())], Some("https://evil.example")),
    ] {
        let mut request = form_request(&app, &client, "/auth/sign-out", &form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        expect_error(request.send().await.unwrap(), StatusCode::FORBIDDEN, "csrf_failed").await;
        assert_eq!(app.echo(&client, "/x").await.header("x-auth-email"), Some("ada@example.com"));
    }
    let signed_out = post_form(&app, &client, "/auth/sign-out", &[("csrf_token", &token)]).await;
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_out.headers()["location"], "/auth/sign-in");
    let after = client.get(app.url("/x")).header("accept", "application/json").send().await;
    assert_eq!(after.unwrap().status(), StatusCode::UNAUTHORIZED);
    let anonymous = app.client().get(app.url("/auth/sign-out")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::FOUND, "no session: to the sign-in page");
}
