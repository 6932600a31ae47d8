//! The domain services over the stores: sessions, API keys, tokens, tickets, device grants,
//! magic links, single-use tokens, the account flows, the identity cache and the revocation
//! fan-out between replicas. The types they trade in ([`User`], [`Identity`], [`Scopes`], …)
//! are the leaf model in [`crate::model`], re-exported here.

pub(crate) mod accounts;
pub(crate) mod api_key;
pub(crate) mod cache;
pub(crate) mod device;
pub(crate) mod email_token;
pub(crate) mod key_ring;
pub(crate) mod magic_link;
pub(crate) mod one_time;
pub(crate) mod org_choice;
pub(crate) mod orgs;
pub(crate) mod password_policy;
pub(crate) mod profile;
pub(crate) mod providers;
pub(crate) mod revocation;
pub(crate) mod service_token;
pub(crate) mod session;
pub(crate) mod single_use;
pub(crate) mod ticket;
pub(crate) mod tokens;

pub(crate) use crate::model::{
    ACCOUNT_SCOPE, AuthMethod, Email, Identity, IdentityParts, OrgRole, Scopes, User, UserView,
    validate_role,
};
