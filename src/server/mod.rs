//! Listeners: plain HTTP, HTTPS with certificate reload, and the admin listener; the worker
//! threads that serve the first two; the request observer, its access log, and the
//! client-address rules they share.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod front;
pub mod listener;
pub mod observe;
pub mod peer;
pub mod tls;
pub mod workers;
