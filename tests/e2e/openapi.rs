//! The OpenAPI document: served at `/auth/openapi.json`, OpenAPI 3.1, every documented
//! operation exists, and every route is documented (routes are only registered through
//! `utoipa_axum::routes!`, which takes documented handlers only; this checks no module
//! registers one behind its back). Then schemathesis, from PyPI, fuzzes the API against it.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::support::TestApp;

/// A value for a path parameter that routes (the handler may still refuse it).
fn placeholder(name: &str) -> &'static str {
    match name {
        "provider" => "corp",
        "name" => "livekit",
        _ => "00000000-0000-0000-0000-000000000000",
    }
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_that_exist() {
    let app = TestApp::spawn().await;
    let response = app.client().get(app.url("/auth/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with("/auth/"), "{path}");
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()));
            let id = operation["operationId"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "operationId {id} twice");
            let mut url = String::new();
            for segment in path.split('/').filter(|s| !s.is_empty()) {
                url.push('/');
                match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => url.push_str(placeholder(name)),
                    None => url.push_str(segment),
                }
            }
            let answer = app.client().request(method.clone(), app.url(&url)).send().await.unwrap();
            let status = answer.status();
            let body = answer.text().await.unwrap();
            assert!(
                !body.contains("No such auth endpoint"),
                "{method} {path} is documented but not routed ({status})"
            );
            operations += 1;
        }
    }
    assert!(operations >= 50, "{operations} operations");
    // Unknown paths and methods still get the JSON 404.
    let unknown = app.client().get(app.url("/auth/nope")).send().await.unwrap();
    assert!(unknown.text().await.unwrap().contains("No such auth endpoint"));

    // No route is registered around the documentation.
    let mut undocumented = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src/auth")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains(".route(") {
                    undocumented.push(path.display().to_string());
                }
            }
        }
    }
    assert!(undocumented.is_empty(), "routes registered without routes!: {undocumented:?}");
}

/// Runs schemathesis against `app` with `extra` arguments; panics with its report on failure.
async fn schemathesis(app: &TestApp, extra: &[&str]) {
    let st = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("ci-python/bin/st");
    assert!(st.is_file(), "schemathesis is required: .ci/run installs it into target/ci-python");
    // Its cache and reports go to a scratch directory, not the working tree.
    let scratch = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(&st)
        .current_dir(scratch.path())
        .arg("run")
        .arg(app.url("/auth/openapi.json"))
        .args(["--url", &app.url("")])
        // Every check but: `unsupported_method` (docs/api.md answers an unknown method on a known
        // path with the same 404 `not_found` as an unknown path, not 405); `ignored_auth` and
        // `positive_data_acceptance` (the document cannot say which credentials, codes and
        // tokens are valid, so refusing generated ones is right).
        .args(["--checks", "all"])
        .args(["--exclude-checks", "unsupported_method,ignored_auth,positive_data_acceptance"])
        .args(["--max-examples", "25", "--seed", "7"])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis took over ten minutes")
        .expect("schemathesis runs");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let app = TestApp::spawn().await;
    // Signed out: every operation.
    schemathesis(&app, &[]).await;
    // Signed in with CSRF, so the handlers behind the checks are fuzzed too; operations that
    // end or replace the session are left to the signed-out run.
    let cookie = app.session_cookie(&app.client(), "fuzz@example.com").await;
    let csrf = {
        let me = crate::support::http();
        let body: Value = me
            .get(app.url("/auth/csrf"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["csrf_token"].as_str().unwrap().to_owned()
    };
    let cookie_header = format!("Cookie: {cookie}");
    let csrf_header = format!("X-CSRF-Token: {csrf}");
    let session_enders = "/(logout|sign-out|sessions/|login|signup|magic-link/verify|invites/accept|one-time|orgs/select|dev-sign-in|password/reset)";
    let extra = ["-H", &cookie_header, "-H", &csrf_header, "--exclude-path-regex", session_enders];
    schemathesis(&app, &extra).await;
}
