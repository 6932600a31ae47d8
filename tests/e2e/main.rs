//! End-to-end tests: the real app over real sockets, one binary with a module per area.

// A test binary: `pub` only shares helpers between its modules.
#![allow(unreachable_pub, missing_docs)]
// Test helpers fail loudly: a panic is the test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

// The example app's verifier, exercised here exactly as the example runs it.
#[allow(dead_code, reason = "the example reads claims the tests do not")]
#[path = "../../examples/assertion_app/verify.rs"]
mod assertion_verify;
// The example CLI's device-flow client.
#[allow(dead_code, reason = "the CLI uses parts the tests do not")]
#[path = "../../examples/device_cli/client.rs"]
mod device_client;

mod api_keys;
mod auth_api;
mod bad_input;
mod binary;
mod boundary;
mod browser;
mod device;
mod email;
mod forward_auth;
mod gateway;
mod lifecycle;
mod oidc;
mod openapi;
mod orgs;
mod parity;
mod replicas;
mod scale_out;
mod tls;
mod tokens;
