//! What the serving layer attaches to a request for the layers above it (the gateway, the auth
//! API): the connection's [`peer::Peer`] and the client-address rules, with what the peer
//! carries (the connection's activity: its open requests, its slot, the tasks it outlives itself
//! with; and its own upstream connection), the access-log slot a request's identity is noted
//! in, and the request-body rules (the body timeout's error, reading a refused body away).

pub(crate) mod access;
pub(crate) mod activity;
pub(crate) mod body;
pub(crate) mod link;
pub(crate) mod peer;
