//! Listeners: plain HTTP, HTTPS with certificate reload, and the admin listener; the request
//! observer and the client-address rules they share.

pub mod admin;
pub mod body;
pub mod front;
pub mod listener;
pub mod observe;
pub mod peer;
pub mod tls;
