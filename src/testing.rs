//! What the end-to-end tests, the benches and the examples reach inside the crate, and nothing
//! more: every other module is private to the crate, so `unreachable_pub` finds what nothing
//! outside it uses. Not an API for users: it follows the code.

/// Starting and stopping the whole program.
pub mod app {
    pub use crate::app::{App, Running};
}

/// The auth API's state, to reach the services of a running server.
pub mod auth {
    /// The state the handlers share.
    pub mod state {
        pub use crate::auth::state::AppState;
    }
}

/// Time, and the manual clock of tests.
pub mod clock {
    pub use crate::clock::{Clock, ManualClock, SystemClock, Timestamp};
}

/// The configuration, raw and compiled.
pub mod config {
    pub use crate::config::{Config, LogFormat, RawConfig};

    /// The TOML schema.
    pub mod raw {
        pub use crate::config::raw::{
            RawConfig, RawProvider, RawRoute, RawServiceToken, RawSsoDomain, RawUpstream,
        };
    }

    /// Values that may come from the environment as strings.
    pub mod values {
        pub use crate::config::values::{Count, Flag, StringList};
    }
}

/// Our cookies.
pub mod cookies {
    pub use crate::cookies::{CookieJar, Own, strip_own};
}

/// Random tokens, hashes, signing and password hashing.
pub mod crypto {
    pub use crate::crypto::{hex, random_bytes, random_token, sha256};

    /// The JWT crypto provider.
    pub mod jwt_ring {
        pub use crate::crypto::jwt_ring::install;
    }

    /// Password hashing.
    pub mod password {
        pub use crate::crypto::password::PasswordHasherPool;
    }

    /// JWT signing keys.
    pub mod signing {
        pub use crate::crypto::signing::SigningAlgorithm;
    }

    /// Credential tags.
    pub mod tags {
        pub use crate::crypto::tags::{TagKind, TokenTags};
    }
}

/// The data plane's pure parts, for the micro-benchmarks.
pub mod gateway {
    /// Signed assertions.
    pub mod assertion {
        pub use crate::gateway::assertion::AssertionSigner;
    }

    /// What a request's credentials identify.
    pub mod identify {
        pub use crate::gateway::identify::Identified;
    }

    /// Path normalization.
    pub mod path {
        pub use crate::gateway::path::normalize_path;
    }

    /// The route policy.
    pub mod policy {
        pub use crate::gateway::policy::{Decision, decide};
    }
}

/// The domain model and credential services.
pub mod identity {
    pub use crate::model::{Email, Identity, IdentityParts, OrgRole, Scopes, User};

    /// API keys.
    pub mod api_key {
        pub use crate::identity::api_key::{KeyRequest, generate, hash_of};
    }

    /// The identity cache.
    pub mod cache {
        pub use crate::identity::cache::IdentityCache;
        pub use crate::model::credential::CredentialHash;
    }

    /// The signing-key ring.
    pub mod key_ring {
        pub use crate::identity::key_ring::KeyRing;
    }

    /// Operator sign-in links.
    pub mod one_time {
        pub use crate::identity::one_time::OneTimeLink;
    }

    /// The revocation fan-out.
    pub mod revocation {
        pub use crate::identity::revocation::READER_NAME;
    }

    /// Browser sessions.
    pub mod session {
        pub use crate::identity::session::{ClientInfo, SessionToken};
    }
}

/// Model types.
pub mod model {
    /// Credential hashes.
    pub mod credential {
        pub use crate::model::credential::CredentialHash;
    }

    /// Identity header names.
    pub mod headers {
        pub use crate::model::headers::HeaderNames;
    }
}

/// The access log, for its micro-benchmark.
pub mod server {
    /// Access lines.
    pub mod access_log {
        pub use crate::server::access_log::{AccessLine, AccessLog};
    }
}

/// The stores and services a server runs on.
pub mod services {
    pub use crate::services::Services;
}

/// The stores.
pub mod store {
    /// SQL.
    pub mod sql {
        pub use crate::store::sql::Database;
    }

    /// Users.
    pub mod users {
        pub use crate::store::users::NewUser;
    }
}
