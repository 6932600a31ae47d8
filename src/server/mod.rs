//! Listeners: plain HTTP, HTTPS with certificate reload, and the admin listener; the worker
//! threads that serve the first two; the request observer and its access log; the listeners'
//! body wrappers. What they attach to each request for the layers above is in `conn`.

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod body;
pub(crate) mod front;
pub(crate) mod listener;
pub(crate) mod observe;
pub(crate) mod tls;
pub(crate) mod workers;
