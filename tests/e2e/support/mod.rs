//! Test harness: the real app on ephemeral ports, an echo upstream, the real binary.

#![allow(dead_code)]

pub mod app;
pub mod binary;
pub mod cookies;
pub mod csrf;
pub mod echo;
pub mod forms;
pub mod github;
pub mod idp;
pub mod logout;
pub mod password;
pub mod proxies;
pub mod raw;
pub mod relay;
pub mod replicas;
pub mod server;
pub mod services;
pub mod smtp;
pub mod steam;
pub mod tokens;

pub use app::{PASSWORD, TestApp, form_token, http};
pub use cookies::cookie_pair;
pub use echo::{EchoUpstream, Echoed};
pub use forms::{form_request, post_form};
pub use logout::log_out;
pub use password::{login_cookie, login_form, login_request, password_fields, password_login};
pub use replicas::TwoReplicas;
pub use tokens::{token_login, token_login_response};

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
