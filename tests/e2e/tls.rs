//! HTTPS: HTTP/2 and HTTP/1.1 by ALPN, Secure cookies, and certificate reload without restart
//! or dropped connections.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::json;

use crate::support::TestApp;

struct Cert {
    pem: String,
}

fn write_cert(dir: &Path) -> Cert {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = generated.cert.pem();
    std::fs::write(dir.join("tls.crt"), &pem).unwrap();
    std::fs::write(dir.join("tls.key"), generated.signing_key.serialize_pem()).unwrap();
    Cert { pem }
}

async fn tls_app(dir: &Path) -> TestApp {
    let cert = dir.join("tls.crt").display().to_string();
    let key = dir.join("tls.key").display().to_string();
    TestApp::builder()
        .config(move |c| {
            c.server.tls_listen = Some("127.0.0.1:0".into());
            c.server.tls_cert = Some(cert);
            c.server.tls_key = Some(key);
            c.server.tls_reload_interval = "100ms".into();
            c.server.public_url = Some("https://localhost".into());
            c.email.force_log_transport = portcullis::testing::config::values::Flag(true);
        })
        .spawn()
        .await
}

fn https_client(app: &TestApp, cert: &Cert, http1_only: bool) -> reqwest::Client {
    let mut builder = crate::support::app::client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .resolve("localhost", app.running().https_addr().unwrap());
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn https_speaks_http2_and_http1_and_sets_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path());
    let app = tls_app(dir.path()).await;

    let h2 = https_client(&app, &cert, false);
    let signup = h2
        .post(app.https_url("/auth/signup"))
        .json(&json!({"email": "ada@example.com", "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.version(), reqwest::Version::HTTP_2);
    assert_eq!(signup.status(), 201);
    assert!(signup.headers()["set-cookie"].to_str().unwrap().contains("Secure"));
    let echoed: crate::support::Echoed =
        h2.get(app.https_url("/x")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed.header("x-forwarded-proto"), Some("https"));
    assert_eq!(echoed.header("x-auth-email"), Some("ada@example.com"));

    let h1 = https_client(&app, &cert, true);
    let response = h1.get(app.https_url("/auth/providers")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

/// A client connection that trusts only `cert_pem`, kept open across requests.
async fn connect(
    addr: std::net::SocketAddr,
    cert_pem: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> u16 {
    let request = http::Request::get("/auth/providers")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    sender.send_request(request).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_replaced_certificate_is_served_without_dropping_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_cert(dir.path());
    let app = tls_app(dir.path()).await;
    let addr = app.running().https_addr().unwrap();

    let mut open = connect(addr, &old.pem).await.unwrap();
    assert_eq!(get(&mut open).await, 200);

    // A broken replacement is ignored: the old certificate stays in service.
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&mut connect(addr, &old.pem).await.unwrap()).await, 200);

    let new = write_cert(dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut fresh) = connect(addr, &new.pem).await {
            assert_eq!(get(&mut fresh).await, 200);
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        connect(addr, &old.pem).await.is_err(),
        "new handshakes no longer get the old certificate"
    );
    assert_eq!(get(&mut open).await, 200, "the connection opened before the reload still works");
}

/// The log mail transport prints sign-in links, so it refuses an https public URL, given or
/// derived from the TLS listener, unless forced; check-config reports the given one.
#[tokio::test]
async fn the_log_mail_transport_is_refused_behind_https_unless_forced() {
    use portcullis::testing::config::{Config, RawConfig, values::Flag};
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path());
    let mut raw = RawConfig::default();
    raw.server.listen = String::new();
    raw.server.admin_listen = String::new();
    raw.server.tls_listen = Some("127.0.0.1:0".into());
    raw.server.tls_cert = Some(dir.path().join("tls.crt").display().to_string());
    raw.server.tls_key = Some(dir.path().join("tls.key").display().to_string());
    raw.storage.ephemeral = "memory".into();
    raw.storage.database_url = "sqlite::memory:".into();

    let derived =
        portcullis::testing::app::App::start(Config::try_from(raw.clone()).unwrap()).await;
    let error = derived.expect_err("a derived https URL refuses the log transport").to_string();
    assert!(error.contains("email.transport") && error.contains("force_log_transport"), "{error}");

    let mut given = raw.clone();
    given.server.public_url = Some("https://app.example.com".into());
    let error = Config::try_from(given.clone()).expect_err("check-config reports it").to_string();
    assert!(error.contains("email.transport"), "{error}");
    given.email.transport = "file".into();
    given.email.file_dir = Some(dir.path().display().to_string());
    assert!(Config::try_from(given).is_ok(), "a real transport is fine");

    raw.email.force_log_transport = Flag(true);
    let forced = portcullis::testing::app::App::start(Config::try_from(raw).unwrap()).await;
    forced.unwrap().stop().await;
}
