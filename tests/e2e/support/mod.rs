//! Test harness: the real app on ephemeral ports, an echo upstream, the real binary.

#![allow(dead_code)]

pub mod app;
pub mod binary;
pub mod echo;
pub mod github;
pub mod idp;
pub mod proxies;
pub mod raw;
pub mod relay;
pub mod services;
pub mod smtp;
pub mod steam;

pub use app::{PASSWORD, TestApp, form_token, http};
pub use echo::{EchoUpstream, Echoed};

/// Process-wide setup: the TLS provider for the test clients, and logs when `RUST_LOG` asks.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The status and the `error` code of an API error response.
pub async fn error_code(response: reqwest::Response) -> (reqwest::StatusCode, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}
