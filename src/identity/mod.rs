//! The domain services over the stores: sessions, API keys, tokens, tickets, device grants,
//! magic links, single-use tokens, the account flows, the identity cache and the revocation
//! fan-out between replicas. The types they trade in ([`User`], [`Identity`], [`Scopes`], …)
//! are the leaf model in [`crate::model`], re-exported here.

pub mod accounts;
pub mod api_key;
pub mod cache;
pub mod device;
pub mod email_token;
pub mod key_ring;
pub mod magic_link;
pub mod one_time;
pub mod org_choice;
pub mod orgs;
pub mod password_policy;
pub mod profile;
pub mod providers;
pub mod revocation;
pub mod service_token;
pub mod session;
pub mod single_use;
pub mod ticket;
pub mod tokens;

pub use crate::model::{
    ACCOUNT_SCOPE, AuthMethod, Email, Identity, IdentityParts, OrgRole, Scopes, User, UserView,
    validate_role,
};
