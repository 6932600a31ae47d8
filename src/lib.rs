//! Portcullis: an authentication sidecar. It terminates TLS, serves the sign-in API and pages,
//! checks a credential on every request through an in-memory cache, and forwards allowed
//! traffic to the app with identity headers.
//!
//! [`App::start`] builds everything from a [`config::Config`]; `main.rs` and the end-to-end
//! tests both go through it.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod cookies;
pub mod crypto;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod server;
pub mod services;
pub mod store;

pub use app::{App, Running, StartupError};

#[cfg(test)]
mod layering_tests;
