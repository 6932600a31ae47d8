//! What a credential is known by once it arrives: the SHA-256 of its text. The stores and the
//! identity cache keep this, never the credential, so a copy of either signs nobody in.

use std::fmt;

use crate::crypto;

/// SHA-256 of a credential: the cache key and the store key. Only [`CredentialHash::of`] makes
/// one from a credential, so a hash of something else cannot be passed where one is wanted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialHash([u8; 32]);

impl CredentialHash {
    /// The hash of the credential `text`.
    pub fn of(text: &str) -> Self {
        Self(crypto::sha256(text.as_bytes()))
    }

    /// A hash as stored (read back from a store).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A hash from its hex form; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        crypto::unhex32(text).map(Self)
    }

    /// The hash's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash in lower-case hex, as the stores keep it.
    pub fn to_hex(&self) -> String {
        crypto::hex(&self.0)
    }
}

impl fmt::Debug for CredentialHash {
    /// A prefix is enough to tell two apart in a log or a failed test.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialHash({}…)", crypto::hex(&self.0[..6]))
    }
}
