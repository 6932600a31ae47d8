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
    // The first request of the session loaded it; the two after it were cache hits.
    assert!(text.contains("portcullis_identity_cache_misses_total 1"), "{text}");
    assert!(text.contains("portcullis_identity_cache_hits_total 2"), "{text}");
    assert!(text.contains("portcullis_store_unavailable_total"), "{text}");

    // The example Grafana dashboard only charts metrics that exist.
    let path = format!("{}/examples/grafana/portcullis.json", env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("portcullis_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(text.contains(&format!("\n{name}")), "{name} is not exported");
                charted += 1;
            }
        }
    }
    assert!(charted >= 8, "{charted}");
}

#[tokio::test]
async fn readiness_reports_a_lost_database_and_stays_ready_for_cached_identities() {
    let app = TestApp::spawn().await;
    let client = app.signed_in("ada@example.com").await;
    assert_eq!(app.echo(&client, "/x").await.header("x-auth-email"), Some("ada@example.com"));
    let started = app.client().get(app.admin_url("/startupz")).send().await.unwrap();
    assert_eq!(started.status(), 200);
    app.running().state().services.db.close().await;
    let ready = app.client().get(app.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "a store every replica shares must not empty the Service");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"], false);
    let metrics = app.client().get(app.admin_url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("portcullis_store_up{store=\"database\"} 0"), "{metrics}");
    // And it can serve: the cached identity still flows.
    assert_eq!(app.echo(&client, "/x").await.header("x-auth-email"), Some("ada@example.com"));
}

/// Readiness fails only for what no replica can serve around: an upstream name that does
/// not resolve.
#[tokio::test]
async fn readiness_fails_when_an_upstream_name_does_not_resolve() {
    let app = TestApp::builder()
        .config(|raw| {
            raw.upstreams.push(portcullis::testing::config::raw::RawUpstream {
                name: "gone".into(),
                url: "http://no-such-host.invalid:80".into(),
                ..Default::default()
            });
        })
        .spawn()
        .await;
    let ready = app.client().get(app.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert_eq!(body["checks"]["upstreams"], false);
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

/// With several worker threads, each serving the connections it accepted, shutdown still
/// waits for every request in flight on every worker, then stops them all accepting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_drains_its_own_connections_at_shutdown() {
    let mut app = TestApp::builder()
        .config(|c| c.server.workers = portcullis::testing::config::values::Count(3))
        .spawn()
        .await;
    let mut slow = Vec::new();
    for n in 0..6 {
        let client = app.signed_in(&format!("user{n}@example.com")).await;
        let request = client.get(app.url("/slow?sleep_ms=600"));
        slow.push(tokio::spawn(async move { request.send().await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = app.url("/after");
    app.stop().await;
    for request in slow {
        assert_eq!(request.await.unwrap().unwrap().status(), 200, "finished during the drain");
    }
    let fresh = crate::support::app::client_builder().build().unwrap();
    assert!(fresh.get(url).send().await.is_err(), "no worker is accepting");
}

/// A server dropped without being stopped stops anyway: its worker threads do not outlive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_stops_its_workers() {
    let app = TestApp::spawn().await;
    let addr = app.running().http_addr().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(app);
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "still accepting 5 s after the server was dropped");
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

/// The configurations in the Kubernetes examples are valid, with their secret files in place.
#[test]
fn the_kubernetes_examples_carry_valid_configurations() {
    for example in ["sidecar.yaml", "replicas.yaml"] {
        let path = format!("{}/examples/kubernetes/{example}", env!("CARGO_MANIFEST_DIR"));
        let yaml = std::fs::read_to_string(&path).unwrap();
        let embedded: String = yaml
            .lines()
            .skip_while(|line| !line.contains("portcullis.toml: |"))
            .skip(1)
            .take_while(|line| line.starts_with("    ") || line.is_empty())
            .map(|line| format!("{}\n", line.get(4..).unwrap_or("")))
            .collect();
        assert!(embedded.contains("[server]"), "{example}: no embedded portcullis.toml");
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().display().to_string();
        for (name, value) in [
            ("auth_secret", "0123456789abcdef0123456789abcdef0123456789abcdef"),
            ("database_url", "postgres://portcullis:pw@postgres/portcullis"),
            ("redis_url", "rediss://default:pw@redis:6380"),
            ("smtp_url", "smtp://user:pw@mail.example.com:587"),
            ("secrets_key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        ] {
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, embedded.replace("/run/secrets/portcullis", &secrets))
            .unwrap();
        let config =
            portcullis::testing::config::Config::load(Some(&config_path), std::iter::empty());
        assert!(config.is_ok(), "{example}: {}", config.err().unwrap());
    }
}
