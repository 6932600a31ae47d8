//! The message of an eviction: what the cache applies, and what the fan-out carries between
//! replicas in its wire form.

use uuid::Uuid;

use crate::model::credential::CredentialHash;

/// One eviction, as sent between replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// One credential (a session cookie, an API key).
    Credential(CredentialHash),
    /// Every credential of a user.
    User(Uuid),
    /// Every credential of a session or token family.
    Session(Uuid),
}

impl Revocation {
    /// The wire form: `c:<hex>`, `u:<uuid>` or `s:<uuid>`.
    pub fn encode(&self) -> String {
        match self {
            Self::Credential(hash) => format!("c:{}", hash.to_hex()),
            Self::User(id) => format!("u:{id}"),
            Self::Session(id) => format!("s:{id}"),
        }
    }

    /// Parses the wire form; anything else is `None` (and ignored).
    pub fn decode(text: &str) -> Option<Self> {
        let (kind, value) = text.split_once(':')?;
        match kind {
            "c" => CredentialHash::from_hex(value).map(Self::Credential),
            "u" => Uuid::parse_str(value).ok().map(Self::User),
            "s" => Uuid::parse_str(value).ok().map(Self::Session),
            _ => None,
        }
    }
}
