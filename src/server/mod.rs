//! Listeners: plain HTTP, HTTPS with certificate reload, and the admin listener; the worker
//! threads that serve the first two; the request observer and its access log; the listeners'
//! body wrappers. What they attach to each request for the layers above is in `conn`.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod front;
pub mod listener;
pub mod observe;
pub mod tls;
pub mod workers;
