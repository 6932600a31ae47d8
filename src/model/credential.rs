//! What a credential is known by once it arrives: the SHA-256 of its text. The stores and the
//! identity cache keep this, never the credential, so a copy of either signs nobody in.

/// SHA-256 of a credential: the cache key and the store key.
pub type CredentialHash = [u8; 32];
