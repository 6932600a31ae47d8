//! The access-log slot: who a request turned out to be, noted by the layer that identified it
//! for the access line the serving layer writes.

use std::sync::{Arc, OnceLock};

use http::Extensions;
use uuid::Uuid;

use crate::model::Identity;

/// Who a request turned out to be, for its access-log line: filled by whatever identifies the
/// request (the gateway, the auth API's extractors). Only present while the access log is on,
/// so the hot path pays nothing for it otherwise.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessSlot(Arc<OnceLock<(&'static str, Uuid)>>);

impl AccessSlot {
    /// Notes `identity` as the request's, if the request is being logged.
    pub(crate) fn record(extensions: &Extensions, identity: &Identity) {
        if let Some(slot) = extensions.get::<Self>() {
            let _ = slot.0.set((identity.method.as_str(), identity.user_id));
        }
    }

    /// The authentication method and user noted, if any.
    pub(crate) fn get(&self) -> Option<&(&'static str, Uuid)> {
        self.0.get()
    }
}
