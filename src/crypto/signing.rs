//! The key pairs that sign access tokens and identity assertions, and a set of them: sign with
//! the current key, verify with any held key (the header's `alg` must be the key's own), and
//! publish the public halves as a JWKS. Where the keys are kept and when they rotate is
//! `identity::key_ring`'s business.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::clock::Timestamp;

/// How tokens and assertions are signed (`tokens.algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// Ed25519 (`EdDSA`): small keys and signatures, fast to verify.
    EdDsa,
    /// ECDSA P-256 with SHA-256 (`ES256`), for verifiers without Ed25519.
    Es256,
}

impl SigningAlgorithm {
    /// The JWT `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    /// The algorithm named by a JWT `alg` value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "EdDSA" => Some(Self::EdDsa),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    /// The algorithm as the JWT library names it.
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// No key is available (the key table is empty and none could be made).
    #[error("no signing key")]
    NoKey,
    /// The JWT library refused.
    #[error("cannot sign: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The header names no key, or one this ring does not hold.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature, algorithm or claims are wrong, or the token is malformed or expired.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// A key that cannot be used: unreadable, or of another algorithm.
#[derive(Debug, thiserror::Error)]
#[error("unusable key: {0}")]
pub(crate) struct BadKey(String);

/// One key pair.
pub(crate) struct SigningKey {
    kid: String,
    algorithm: SigningAlgorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
    retired_at: Option<Timestamp>,
}

/// The keys held: the one that signs, and every one that verifies.
#[derive(Default)]
pub(crate) struct KeySet {
    signer: Option<Arc<SigningKey>>,
    by_kid: HashMap<String, Arc<SigningKey>>,
}

impl KeySet {
    /// The set of `keys`, given oldest first: the newest key of `algorithm` that is not
    /// retired signs.
    pub(crate) fn new(keys: Vec<SigningKey>, algorithm: SigningAlgorithm) -> Self {
        let mut set = Self::default();
        for key in keys {
            let key = Arc::new(key);
            if key.retired_at.is_none() && key.algorithm == algorithm {
                set.signer = Some(Arc::clone(&key));
            }
            set.by_kid.insert(key.kid.clone(), key);
        }
        set
    }

    /// Signs `claims` with the current key.
    ///
    /// # Errors
    /// No key, or the claims do not serialize.
    pub(crate) fn sign(&self, claims: &impl Serialize) -> Result<String, SigningError> {
        let key = self.signer.as_ref().ok_or(SigningError::NoKey)?;
        let mut header = Header::new(key.algorithm.jwt());
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// Verifies a token signed by one of these keys: the header's `alg` must be the key's own
    /// (so `none` and algorithm confusion fail), then `validation`'s claim checks apply.
    ///
    /// # Errors
    /// [`VerifyError::UnknownKey`] when the key id is not held (the caller may reload and
    /// retry); [`VerifyError::Invalid`] for everything else.
    pub(crate) fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.by_kid.get(&kid).ok_or(VerifyError::UnknownKey)?;
        let mut validation = validation.clone();
        validation.algorithms = vec![key.algorithm.jwt()];
        Ok(jsonwebtoken::decode::<T>(token, &key.decoding, &validation)?.claims)
    }

    /// The public keys as a JSON Web Key Set.
    pub(crate) fn jwks(&self) -> Value {
        let mut published: Vec<&Arc<SigningKey>> = self.by_kid.values().collect();
        published.sort_by(|a, b| a.kid.cmp(&b.kid));
        json!({ "keys": published.iter().map(|key| &key.jwk).collect::<Vec<_>>() })
    }

    /// The id of the key that signs.
    pub(crate) fn current_kid(&self) -> Option<&str> {
        self.signer.as_ref().map(|key| key.kid.as_str())
    }

    /// The algorithm of the key that signs.
    pub(crate) fn signing_algorithm(&self) -> Option<SigningAlgorithm> {
        self.signer.as_ref().map(|key| key.algorithm)
    }

    /// How many keys verify.
    pub(crate) fn len(&self) -> usize {
        self.by_kid.len()
    }
}

impl SigningKey {
    /// A key pair from its PKCS#8 document.
    ///
    /// # Errors
    /// The document is not a key of `algorithm`.
    pub(crate) fn from_pkcs8(
        kid: String,
        algorithm: SigningAlgorithm,
        pkcs8: &[u8],
        retired_at: Option<Timestamp>,
    ) -> Result<Self, BadKey> {
        let corrupt = || BadKey(format!("signing key {kid}"));
        let (decoding, mut jwk) = match algorithm {
            SigningAlgorithm::EdDsa => {
                let pair =
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| corrupt())?;
                let public = pair.public_key().as_ref();
                let jwk = json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(public),
                });
                (DecodingKey::from_ed_der(public), jwk)
            }
            SigningAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                    &SystemRandom::new(),
                )
                .map_err(|_| corrupt())?;
                // Uncompressed point: 0x04, then x and y, 32 bytes each.
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..).ok_or_else(corrupt)?.split_at(32);
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                });
                (DecodingKey::from_ec_der(point), jwk)
            }
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(algorithm.as_str());
        jwk["use"] = json!("sig");
        let encoding = match algorithm {
            SigningAlgorithm::EdDsa => EncodingKey::from_ed_der(pkcs8),
            SigningAlgorithm::Es256 => EncodingKey::from_ec_der(pkcs8),
        };
        Ok(Self { kid, algorithm, encoding, decoding, jwk, retired_at })
    }
}

/// A new private key for `algorithm`, as a PKCS#8 document.
pub(crate) fn generate(algorithm: SigningAlgorithm) -> Result<Vec<u8>, BadKey> {
    let rng = SystemRandom::new();
    let generated = match algorithm {
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        SigningAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        }
    }
    .map_err(|_| BadKey("the system cannot generate signing keys".into()))?;
    Ok(generated.as_ref().to_vec())
}
