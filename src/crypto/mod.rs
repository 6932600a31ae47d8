//! Random tokens, hashing, HMAC and constant-time comparison: the only place secrets are made.
//!
//! Everything secret a client holds (session tokens, CSRF nonces, later API keys and one-time
//! links) is 256 bits from the operating system's CSPRNG, and the server stores only its SHA-256.

pub(crate) mod jwt_ring;
pub(crate) mod password;
pub(crate) mod sealed;
pub(crate) mod signing;
pub(crate) mod tags;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// 32 random bytes, the size of every secret token.
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    // The OS CSPRNG failing is unrecoverable: no secret can be made safely without it.
    #[allow(clippy::expect_used)]
    SystemRandom::new().fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// A 256-bit random token, base64url without padding (43 characters).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// Whether `text` has the shape [`random_token`] makes: 43 base64url characters. Checked
/// before any lookup, so malformed credentials cost nothing.
pub(crate) fn is_random_token(text: &str) -> bool {
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of `data`: how tokens are stored and looked up. Every request's credential is
/// hashed here, so this uses the `sha2` crate, which runs on the CPU's SHA instructions where
/// there are some (about a tenth of the instructions of ring's digest for a token).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Parses 64 hex digits into 32 bytes.
pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equality of two secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The server's HMAC key (from `auth.secret`), used to bind CSRF tokens to their owner.
#[derive(Clone)]
pub struct SecretKey(hmac::Key);

impl SecretKey {
    /// A key from the configured or generated secret bytes.
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// HMAC-SHA256 of `parts`, each length-prefixed so that no two inputs collide,
    /// base64url-encoded.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        for part in parts {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        URL_SAFE_NO_PAD.encode(context.sign().as_ref())
    }

    /// Whether `signature` is the HMAC of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], signature: &str) -> bool {
        constant_time_eq(self.sign(parts).as_bytes(), signature.as_bytes())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
    }

    #[test]
    fn sha256_and_hex_match_known_vector() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let hash = sha256(b"abc");
        assert_eq!(unhex32(&hex(&hash)), Some(hash));
        assert_eq!(unhex32("zz"), None);
        assert_eq!(unhex32(&"g".repeat(64)), None);
    }

    #[test]
    fn hmac_binds_every_part_and_rejects_changes() {
        let key = SecretKey::new(b"0123456789abcdef0123456789abcdef");
        let signature = key.sign(&[b"csrf", b"session-1"]);
        assert!(key.verify(&[b"csrf", b"session-1"], &signature));
        assert!(!key.verify(&[b"csrf", b"session-2"], &signature));
        // Moving a byte between parts changes the input: parts are length-prefixed.
        assert!(!key.verify(&[b"csr", b"fsession-1"], &signature));
        assert!(
            !SecretKey::new(b"another secret of enough length!")
                .verify(&[b"csrf", b"session-1"], &signature)
        );
    }
}
