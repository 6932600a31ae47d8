//! A `jsonwebtoken` [`CryptoProvider`] backed by `ring`.
//!
//! The project already uses `ring` everywhere (rustls, sqlx's TLS, tokens, HMAC). The backends
//! `jsonwebtoken` ships would pull in a second cryptography stack: `aws_lc_rs` (a C build) or
//! the RustCrypto crates (`rsa`, `p256`, `p384`, `ed25519-dalek`, ...). This module signs and
//! verifies every JWT algorithm with `ring` instead. Call [`install`] once at startup, before
//! any other use of `jsonwebtoken`: the crate picks its provider on first use.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    self as ring_signature, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair,
    RsaEncoding, RsaKeyPair, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey,
    VerificationAlgorithm,
};
use ring::{digest, hmac};

/// The `ring`-backed provider; [`install`] makes it the process default.
pub(crate) static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_public_key_from_private_key,
        compute_digest,
    },
};

/// Installs [`PROVIDER`] as `jsonwebtoken`'s process default; later calls do nothing.
pub fn install() {
    // `install_default` only fails when a provider is already set. That is the normal case
    // on a second call (tests, several apps in one process) and harmless when it is ours.
    if let Err(existing) = PROVIDER.install_default()
        && !std::ptr::eq(existing, &PROVIDER)
    {
        // jsonwebtoken was used before `install` and fixed its own default, which (with
        // `default-features = false`) panics on every signature.
        tracing::warn!("jsonwebtoken already has another crypto provider; ring's is not in use");
    }
}

/// Refuses a key of another family than the algorithm, e.g. an RSA key for HS256.
fn check_family(algorithm: Algorithm, key_family: AlgorithmFamily) -> Result<()> {
    if algorithm.family() == key_family { Ok(()) } else { Err(ErrorKind::InvalidKeyFormat.into()) }
}

// --- Signing ---

/// A parsed private key, ready to sign.
enum SigningKey {
    Hmac(hmac::Key),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
}

/// Signs with one algorithm and one key.
struct RingSigner {
    algorithm: Algorithm,
    key: SigningKey,
}

/// `CryptoProvider::signer_factory`: a signer for `algorithm`, if `key` suits it.
fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    check_family(*algorithm, key.family())?;
    let key = signing_key(*algorithm, key.as_bytes())?;
    Ok(Box::new(RingSigner { algorithm: *algorithm, key }))
}

/// Parses `bytes` (an HMAC secret or a DER private key) for `algorithm`.
fn signing_key(algorithm: Algorithm, bytes: &[u8]) -> Result<SigningKey> {
    use ring_signature as sig;
    let key = match algorithm {
        Algorithm::HS256 => SigningKey::Hmac(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
        Algorithm::HS384 => SigningKey::Hmac(hmac::Key::new(hmac::HMAC_SHA384, bytes)),
        Algorithm::HS512 => SigningKey::Hmac(hmac::Key::new(hmac::HMAC_SHA512, bytes)),
        Algorithm::ES256 => {
            SigningKey::Ecdsa(ecdsa_key_pair(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, bytes)?)
        }
        Algorithm::ES384 => {
            SigningKey::Ecdsa(ecdsa_key_pair(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, bytes)?)
        }
        Algorithm::EdDSA => SigningKey::Ed25519(ed25519_key_pair(bytes)?),
        Algorithm::RS256 => SigningKey::Rsa(rsa_key_pair(bytes)?, &sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => SigningKey::Rsa(rsa_key_pair(bytes)?, &sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => SigningKey::Rsa(rsa_key_pair(bytes)?, &sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => SigningKey::Rsa(rsa_key_pair(bytes)?, &sig::RSA_PSS_SHA256),
        Algorithm::PS384 => SigningKey::Rsa(rsa_key_pair(bytes)?, &sig::RSA_PSS_SHA384),
        Algorithm::PS512 => SigningKey::Rsa(rsa_key_pair(bytes)?, &sig::RSA_PSS_SHA512),
        // `Algorithm` is non-exhaustive: a variant added upstream is not supported here yet.
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(key)
}

/// An ECDSA key pair from PKCS#8 v1 DER (which must include the public key).
fn ecdsa_key_pair(algorithm: &'static EcdsaSigningAlgorithm, pkcs8: &[u8]) -> Result<EcdsaKeyPair> {
    EcdsaKeyPair::from_pkcs8(algorithm, pkcs8, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey.into())
}

/// An Ed25519 key pair from PKCS#8 v1 or v2 DER.
fn ed25519_key_pair(pkcs8: &[u8]) -> Result<Ed25519KeyPair> {
    // "maybe_unchecked" also accepts v1 documents, which carry no public key to check:
    // `openssl genpkey` writes those, and they are the only form `Jwk::from_encoding_key` takes.
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| ErrorKind::InvalidEddsaKey.into())
}

/// An RSA key pair from PKCS#1 `RSAPrivateKey` DER (what `EncodingKey::from_rsa_pem` stores),
/// or else from PKCS#8 DER.
fn rsa_key_pair(der: &[u8]) -> Result<RsaKeyPair> {
    RsaKeyPair::from_der(der)
        .or_else(|_| RsaKeyPair::from_pkcs8(der))
        .map_err(|rejected| ErrorKind::InvalidRsaKey(rejected.to_string()).into())
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        match &self.key {
            SigningKey::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            SigningKey::Ecdsa(key_pair) => key_pair
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| SignatureError::from_source("ring: ECDSA signing failed")),
            SigningKey::Ed25519(key_pair) => Ok(key_pair.sign(message).as_ref().to_vec()),
            SigningKey::Rsa(key_pair, encoding) => rsa_sign(key_pair, *encoding, message),
        }
    }
}

/// An RSA signature, as long as the modulus.
fn rsa_sign(
    key_pair: &RsaKeyPair,
    encoding: &'static dyn RsaEncoding,
    message: &[u8],
) -> std::result::Result<Vec<u8>, SignatureError> {
    let mut signature = vec![0; key_pair.public().modulus_len()];
    key_pair
        .sign(encoding, &SystemRandom::new(), message, &mut signature)
        .map_err(|_| SignatureError::from_source("ring: RSA signing failed"))?;
    Ok(signature)
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

// --- Verification ---

/// How an algorithm checks signatures, before a key is attached.
enum Scheme {
    Hmac(hmac::Algorithm),
    /// ECDSA and Ed25519: the key is the raw public point (what the JWK and PEM loaders store).
    Point(&'static dyn VerificationAlgorithm),
    Rsa(&'static RsaParameters),
}

/// A public key (or HMAC secret), ready to verify.
enum VerifyingKey {
    Hmac(hmac::Key),
    Public(UnparsedPublicKey<Vec<u8>>),
    RsaComponents(RsaPublicKeyComponents<Vec<u8>>, &'static RsaParameters),
}

/// Verifies with one algorithm and one key.
struct RingVerifier {
    algorithm: Algorithm,
    key: VerifyingKey,
}

/// `CryptoProvider::verifier_factory`: a verifier for `algorithm`, if `key` suits it.
fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    check_family(*algorithm, key.family())?;
    let key = verifying_key(*algorithm, key.kind())?;
    Ok(Box::new(RingVerifier { algorithm: *algorithm, key }))
}

/// The ring verification algorithm for a JWT algorithm.
fn scheme(algorithm: Algorithm) -> Result<Scheme> {
    use ring_signature as sig;
    Ok(match algorithm {
        Algorithm::HS256 => Scheme::Hmac(hmac::HMAC_SHA256),
        Algorithm::HS384 => Scheme::Hmac(hmac::HMAC_SHA384),
        Algorithm::HS512 => Scheme::Hmac(hmac::HMAC_SHA512),
        Algorithm::ES256 => Scheme::Point(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Scheme::Point(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Scheme::Point(&sig::ED25519),
        Algorithm::RS256 => Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Scheme::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Scheme::Rsa(&sig::RSA_PSS_2048_8192_SHA512),
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    })
}

/// Attaches the key to the algorithm's scheme, refusing keys of the wrong shape.
fn verifying_key(algorithm: Algorithm, kind: &DecodingKeyKind) -> Result<VerifyingKey> {
    match (scheme(algorithm)?, kind) {
        (Scheme::Hmac(hmac_algorithm), DecodingKeyKind::SecretOrDer(secret)) => {
            Ok(VerifyingKey::Hmac(hmac::Key::new(hmac_algorithm, secret)))
        }
        (Scheme::Point(verification), DecodingKeyKind::SecretOrDer(point)) => {
            check_point_len(algorithm, point)?;
            Ok(VerifyingKey::Public(UnparsedPublicKey::new(verification, point.clone())))
        }
        // PKCS#1 `RSAPublicKey` DER, as `DecodingKey::from_rsa_pem`/`from_rsa_der` store it.
        (Scheme::Rsa(parameters), DecodingKeyKind::SecretOrDer(der)) => {
            Ok(VerifyingKey::Public(UnparsedPublicKey::new(parameters, der.clone())))
        }
        (Scheme::Rsa(parameters), DecodingKeyKind::RsaModulusExponent { n, e }) => {
            // ring refuses leading zero bytes, which some JWK publishers leave in `n`.
            let components = RsaPublicKeyComponents {
                n: without_leading_zeros(n).to_vec(),
                e: without_leading_zeros(e).to_vec(),
            };
            Ok(VerifyingKey::RsaComponents(components, parameters))
        }
        _ => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

/// Refuses a public key whose length cannot fit the algorithm, so a misconfigured key fails
/// when it is loaded rather than as "invalid signature" on every token.
fn check_point_len(algorithm: Algorithm, point: &[u8]) -> Result<()> {
    let (expected, error) = match algorithm {
        // Uncompressed SEC1 points: 0x04, x, y.
        Algorithm::ES256 => (65, ErrorKind::InvalidEcdsaKey),
        Algorithm::ES384 => (97, ErrorKind::InvalidEcdsaKey),
        Algorithm::EdDSA => (32, ErrorKind::InvalidEddsaKey),
        _ => return Ok(()),
    };
    if point.len() == expected { Ok(()) } else { Err(error.into()) }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), SignatureError> {
        let checked = match &self.key {
            // `hmac::verify` compares in constant time.
            VerifyingKey::Hmac(key) => hmac::verify(key, message, signature),
            VerifyingKey::Public(key) => key.verify(message, signature),
            VerifyingKey::RsaComponents(key, parameters) => {
                key.verify(parameters, message, signature)
            }
        };
        checked.map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

// --- Key utilities for JWKs ---

/// `n` and `e` of an RSA private key (PKCS#1 or PKCS#8 DER), big-endian without leading zeros.
fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let key_pair = rsa_key_pair(der)?;
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(key_pair.public());
    Ok((components.n, components.e))
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey` DER.
fn rsa_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let (n, e) = parse_rsa_public_key(der)
        .ok_or_else(|| ErrorKind::InvalidRsaKey("not a PKCS#1 RSAPublicKey".to_owned()))?;
    Ok((n.to_vec(), e.to_vec()))
}

/// The modulus and exponent of a PKCS#1 `RSAPublicKey` (`SEQUENCE { INTEGER, INTEGER }`),
/// big-endian without leading zeros. ring verifies with such keys but exposes no parser.
fn parse_rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    let (body, rest) = der_element(der, SEQUENCE)?;
    let (n, body) = der_positive_integer(body)?;
    let (e, body) = der_positive_integer(body)?;
    (rest.is_empty() && body.is_empty()).then_some((n, e))
}

/// Reads a DER INTEGER that must be positive; returns it without leading zeros, and the rest.
fn der_positive_integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    const INTEGER: u8 = 0x02;
    let (value, rest) = der_element(input, INTEGER)?;
    // A set high bit on the first byte means a negative number.
    if value.first()? & 0x80 != 0 {
        return None;
    }
    let value = without_leading_zeros(value);
    (!value.is_empty()).then_some((value, rest))
}

/// Reads one DER element with tag `tag`: returns its contents and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, input) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, input) = input.split_first()?;
    let (len, input) = if first < 0x80 {
        (usize::from(first), input)
    } else {
        // Long form: the low bits count the length bytes that follow (0 is BER-only).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, input) = input.split_at_checked(count)?;
        (len_bytes.iter().fold(0, |len, &byte| (len << 8) | usize::from(byte)), input)
    };
    input.split_at_checked(len)
}

/// `bytes` as a big-endian number without leading zero bytes.
fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&byte| byte != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The curve and public `x`, `y` of a P-256 (ES256) or P-384 (ES384) PKCS#8 private key.
fn ec_components_from_private_key(
    pkcs8: &[u8],
    algorithm: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve, coordinate_len) = match algorithm {
        Algorithm::ES256 => {
            (&ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING, EllipticCurve::P256, 32)
        }
        Algorithm::ES384 => {
            (&ring_signature::ECDSA_P384_SHA384_FIXED_SIGNING, EllipticCurve::P384, 48)
        }
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let key_pair = ecdsa_key_pair(signing, pkcs8)?;
    let (x, y) = split_uncompressed_point(key_pair.public_key().as_ref(), coordinate_len)
        .ok_or(ErrorKind::InvalidEcdsaKey)?;
    Ok((curve, x.to_vec(), y.to_vec()))
}

/// Splits `0x04 || x || y` into `x` and `y`, each `coordinate_len` bytes.
fn split_uncompressed_point(point: &[u8], coordinate_len: usize) -> Option<(&[u8], &[u8])> {
    match point.split_first() {
        Some((0x04, coordinates)) if coordinates.len() == 2 * coordinate_len => {
            Some(coordinates.split_at(coordinate_len))
        }
        _ => None,
    }
}

/// The 32-byte Ed25519 public key of a PKCS#8 private key.
fn ed_public_key_from_private_key(pkcs8: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(ed25519_key_pair(pkcs8)?.public_key().as_ref().to_vec())
}

/// SHA-2 of `data`, for JWK thumbprints.
fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests;
