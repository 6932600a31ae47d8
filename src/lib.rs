//! Portcullis: an authentication sidecar. It terminates TLS, serves the sign-in API and pages,
//! checks a credential on every request through an in-memory cache, and forwards allowed
//! traffic to the app with identity headers.
//!
//! [`App::start`] builds everything from a [`config::Config`]; `main.rs` and the end-to-end
//! tests both go through it.

mod app;
mod auth;
pub mod cli;
mod clock;
mod config;
mod conn;
mod cookies;
mod crypto;
mod demo;
mod error;
mod gateway;
mod identity;
mod mail;
mod metrics;
mod model;
mod server;
mod services;
mod store;

pub use app::{App, Running, StartupError};

#[doc(hidden)]
pub mod testing;

#[cfg(test)]
mod layering_tests;
