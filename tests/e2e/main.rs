//! End-to-end tests: the real app over real sockets, one binary with a module per area.

// A test binary: `pub` only shares helpers between its modules.
#![allow(unreachable_pub, missing_docs)]
// Test helpers fail loudly: a panic is the test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth_api;
mod bad_input;
mod binary;
mod gateway;
mod lifecycle;
mod tls;
