//! Secrets the database keeps (token signing keys, the generated `auth.secret`, the credential
//! tag key), sealed with
//! AES-256-GCM under a key the database never holds (`storage.secrets_key`), so that a backup
//! or a dump of the database mints no tokens, assertions or CSRF tokens.
//!
//! A sealed value reads `sealed.v1.<key id>.<base64url(nonce ‖ ciphertext)>`; the key id is the
//! first 16 hex digits of the key's SHA-256, so a value says which key opens it without saying
//! anything about the key. Each value is bound to what it is (the associated data names the
//! row), so one sealed row cannot be passed off as another. Values written before a key was
//! configured are plain; [`Sealer::open`] says when a value should be written again (plain, or
//! sealed under a previous key), which is how existing rows are migrated and keys rotated.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// What every sealed value starts with. Plain values (base64) never contain a `.`.
const PREFIX: &str = "sealed.v1.";

/// Why a stored secret cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The value is sealed with a key that is not configured.
    #[error(
        "the database holds secrets sealed with key {0}, which neither storage.secrets_key nor \
         storage.secrets_key_previous is"
    )]
    KeyMissing(String),
    /// The value does not open (altered, or sealed for another row).
    #[error("a sealed secret does not open: it was altered or belongs to another row")]
    Corrupt,
}

/// Why a configured key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSealKey {
    /// Not base64.
    #[error("must be base64 of 32 random bytes (openssl rand -base64 32)")]
    NotBase64,
    /// Base64 of this many bytes, not 32.
    #[error("must be 32 bytes, not {0}")]
    Length(usize),
    /// ring refused the key.
    #[error("unusable key")]
    Unusable,
}

/// A configured key: 32 bytes, given base64-encoded.
#[derive(Clone)]
pub struct SealKey {
    id: String,
    key: std::sync::Arc<LessSafeKey>,
}

impl SealKey {
    /// Parses a key given as base64 of 32 bytes.
    ///
    /// # Errors
    /// Not base64, or not 32 bytes.
    pub fn parse(text: &str) -> Result<Self, InvalidSealKey> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| InvalidSealKey::NotBase64)?;
        if bytes.len() != 32 {
            return Err(InvalidSealKey::Length(bytes.len()));
        }
        let id = super::hex(&super::sha256(&bytes))[..16].to_owned();
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| InvalidSealKey::Unusable)?;
        Ok(Self { id, key: std::sync::Arc::new(LessSafeKey::new(key)) })
    }

    /// The key's public id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A stored secret, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The secret as it reads unsealed.
    pub text: String,
    /// Whether it should be written again with [`Sealer::seal`]: it is plain while a key is
    /// configured, or sealed with a previous key.
    pub reseal: bool,
}

/// Seals and opens stored secrets with the configured keys.
#[derive(Debug, Clone, Default)]
pub struct Sealer {
    current: Option<SealKey>,
    previous: Vec<SealKey>,
}

impl Sealer {
    /// Seals with `current` (none: values stay plain) and still opens values sealed with
    /// `previous` keys (rotation).
    pub fn new(current: Option<SealKey>, previous: Vec<SealKey>) -> Self {
        Self { current, previous }
    }

    /// Whether values are sealed when written.
    pub fn is_sealing(&self) -> bool {
        self.current.is_some()
    }

    /// `text` as it should be stored for `purpose` (the row it is for): sealed under the
    /// current key, or as is when no key is configured.
    ///
    /// # Errors
    /// The system cannot make a random nonce.
    pub fn seal(&self, purpose: &str, text: &str) -> Result<String, SealError> {
        let Some(key) = &self.current else { return Ok(text.to_owned()) };
        Ok(format!("{PREFIX}{}.{}", key.id, seal_with(&key.key, purpose, text)?))
    }

    /// The secret `stored` for `purpose` holds, and whether it should be written again.
    ///
    /// # Errors
    /// It is sealed with a key that is not configured, or does not open.
    pub fn open(&self, purpose: &str, stored: &str) -> Result<Opened, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Opened { text: stored.to_owned(), reseal: self.is_sealing() });
        };
        let (id, body) = rest.split_once('.').ok_or(SealError::Corrupt)?;
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|key| key.id == id)
            .ok_or_else(|| SealError::KeyMissing(id.to_owned()))?;
        let text = open_with(&key.key, purpose, body)?;
        let current = self.current.as_ref().is_some_and(|current| current.id == key.id);
        Ok(Opened { text, reseal: !current })
    }
}

/// `text` sealed under a key derived from `secret`, a token only its holder knows (not from its
/// stored hash): the store can keep it, and only someone who presents `secret` again can read
/// it. For `purpose` only.
///
/// # Errors
/// The system cannot make a random nonce.
pub(crate) fn seal_for_holder(
    secret: &str,
    purpose: &str,
    text: &str,
) -> Result<String, SealError> {
    seal_with(&holder_key(secret, purpose)?, purpose, text)
}

/// Opens what [`seal_for_holder`] sealed with the same `secret` and `purpose`.
///
/// # Errors
/// It was sealed with another secret or purpose, or is corrupt.
pub(crate) fn open_for_holder(
    secret: &str,
    purpose: &str,
    sealed: &str,
) -> Result<String, SealError> {
    open_with(&holder_key(secret, purpose)?, purpose, sealed)
}

/// AES-256-GCM of `text` under `key`, bound to `purpose`, with a fresh random nonce: base64 of
/// the nonce and the sealed text.
fn seal_with(key: &LessSafeKey, purpose: &str, text: &str) -> Result<String, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&super::random_bytes()[..NONCE_LEN]);
    let mut sealed = text.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(purpose.as_bytes()),
        &mut sealed,
    )
    .map_err(|_| SealError::Corrupt)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Opens what [`seal_with`] made with the same key and purpose.
fn open_with(key: &LessSafeKey, purpose: &str, sealed: &str) -> Result<String, SealError> {
    let mut bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| SealError::Corrupt)?;
    if bytes.len() < NONCE_LEN {
        return Err(SealError::Corrupt);
    }
    let (nonce, body) = bytes.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
    let opened = key
        .open_in_place(nonce, Aad::from(purpose.as_bytes()), body)
        .map_err(|_| SealError::Corrupt)?;
    String::from_utf8(opened.to_vec()).map_err(|_| SealError::Corrupt)
}

/// HKDF-SHA-256 of `secret` (salted, so unrelated to the SHA-256 the store keeps), for
/// `purpose`.
fn holder_key(secret: &str, purpose: &str) -> Result<LessSafeKey, SealError> {
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"portcullis holder key");
    let info = [purpose.as_bytes()];
    let prk = salt.extract(secret.as_bytes());
    let okm = prk.expand(&info, &AES_256_GCM).map_err(|_| SealError::Corrupt)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::parse(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn holder_sealed_values_open_only_with_the_same_secret_and_purpose() {
        let sealed = seal_for_holder("rt_secret", "refresh successor", "rt_next").unwrap();
        assert!(!sealed.contains("rt_next"));
        assert_eq!(open_for_holder("rt_secret", "refresh successor", &sealed).unwrap(), "rt_next");
        assert!(open_for_holder("rt_other", "refresh successor", &sealed).is_err());
        assert!(open_for_holder("rt_secret", "another purpose", &sealed).is_err());
        assert!(open_for_holder("rt_secret", "refresh successor", "garbage").is_err());
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_for_their_row() {
        let sealer = Sealer::new(Some(key(1)), Vec::new());
        let sealed = sealer.seal("signing_key:abc", "secret text").unwrap();
        assert!(sealed.starts_with("sealed.v1.") && !sealed.contains("secret"));
        let opened = sealer.open("signing_key:abc", &sealed).unwrap();
        assert_eq!(opened, Opened { text: "secret text".into(), reseal: false });
        assert_eq!(sealer.open("signing_key:other", &sealed), Err(SealError::Corrupt));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(sealer.open("signing_key:abc", &altered), Err(SealError::Corrupt));
        let none = Sealer::default();
        assert!(matches!(none.open("signing_key:abc", &sealed), Err(SealError::KeyMissing(_))));
    }

    #[test]
    fn plain_values_and_previous_keys_ask_to_be_sealed_again() {
        let plain = Sealer::default();
        assert_eq!(plain.seal("p", "x").unwrap(), "x", "no key: stays plain");
        assert_eq!(plain.open("p", "x").unwrap(), Opened { text: "x".into(), reseal: false });
        let old = Sealer::new(Some(key(1)), Vec::new()).seal("p", "x").unwrap();
        let rotated = Sealer::new(Some(key(2)), vec![key(1)]);
        assert_eq!(rotated.open("p", &old).unwrap(), Opened { text: "x".into(), reseal: true });
        assert_eq!(rotated.open("p", "x").unwrap(), Opened { text: "x".into(), reseal: true });
        assert!(SealKey::parse("short").is_err());
        assert!(SealKey::parse(&STANDARD.encode([0u8; 16])).is_err());
    }
}
