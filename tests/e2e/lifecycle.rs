//! Operations: health, readiness, metrics and graceful shutdown.

use std::time::Duration;

use serde_json::Value;

use crate::support::TestApp;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let client = app.client();
    let health: Value =
        client.get(app.admin_url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = client.get(app.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let signed_in = app.signed_in("ada@example.com").await;
    for _ in 0..3 {
        app.echo(&signed_in, "/x").await;
    }
    client.get(app.url("/nowhere")).header("accept", "application/json").send().await.unwrap();
    let metrics = client.get(app.admin_url("/metrics")).send().await.unwrap();
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(text.contains("portcullis_requests_total{class=\"proxy\",status=\"200\"} 3"), "{text}");
    assert!(text.contains("portcullis_requests_total{class=\"proxy\",status=\"401\"} 1"), "{text}");
    assert!(text.contains("portcullis_requests_total{class=\"auth\",status=\"201\"} 1"), "{text}");
    assert!(
        text.contains("portcullis_auth_outcomes_total{method=\"password\",outcome=\"signup\"} 1"),
        "{text}"
    );
    assert!(text.contains("portcullis_upstream_duration_seconds_count 3"), "{text}");
    assert!(text.contains("portcullis_cached_identities"), "{text}");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.running().state().db.close().await;
    let ready = app.client().get(app.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    assert_eq!(body["checks"]["database"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_stops_accepting() {
    let mut app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let slow = tokio::spawn({
        let request = client.get(app.url("/slow?sleep_ms=700"));
        async move { request.send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = app.url("/after");
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(started.elapsed() >= Duration::from_millis(300), "waited for the request in flight");
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "the request in flight completed");
    let fresh = crate::support::app::client_builder().build().unwrap();
    assert!(fresh.get(url).send().await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_no_longer_than_the_shutdown_timeout() {
    let mut app =
        TestApp::builder().config(|c| c.server.shutdown_timeout = "300ms".into()).spawn().await;
    let client = app.signed_in("ada@example.com").await;
    let hung = tokio::spawn({
        let request = client.get(app.url("/hung?sleep_ms=10000"));
        async move { request.send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(3), "stopped after {:?}", started.elapsed());
    hung.abort();
}
