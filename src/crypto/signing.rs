//! Keys that sign access tokens and identity assertions: generated on first start, kept in the
//! database (`store::signing_keys`, sealed) so every replica signs and verifies with the same
//! set, published as a JWKS, and rotated without logging anyone out (a retired key still verifies until nothing it signed can
//! be valid).
//!
//! Replicas pick up keys another replica or `portcullis keys rotate` created by reloading: every
//! minute, and at once (rate-limited) when a token names a key id they do not know.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::jwt_ring;
use crate::clock::{Clock, Timestamp};
use crate::store::StoreError;
use crate::store::signing_keys::SigningKeyStore;
use crate::store::sql::Database;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::{Mutex, RwLock};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Shortest time between two reloads triggered by unknown key ids, so that tokens with made-up
/// key ids cannot turn into a database query each.
const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

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

    fn parse(text: &str) -> Option<Self> {
        match text {
            "EdDSA" => Some(Self::EdDsa),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
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

/// One key pair.
struct Key {
    kid: String,
    algorithm: SigningAlgorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
    retired_at: Option<Timestamp>,
}

#[derive(Default)]
struct KeySet {
    signer: Option<Arc<Key>>,
    by_kid: HashMap<String, Arc<Key>>,
}

/// The signing keys in use, shared by every signer and verifier of this process.
pub struct KeyRing {
    store: SigningKeyStore,
    algorithm: SigningAlgorithm,
    clock: Arc<dyn Clock>,
    /// How long a retired key stays published: the longest a token it signed can live.
    publish_for: Duration,
    keys: RwLock<Arc<KeySet>>,
    last_reload: Mutex<Option<Instant>>,
}

impl KeyRing {
    /// Loads the keys, generating one for `algorithm` when there is no current key.
    ///
    /// # Errors
    /// The database fails or holds an unreadable key.
    pub async fn open(
        db: Database,
        algorithm: SigningAlgorithm,
        clock: Arc<dyn Clock>,
        publish_for: Duration,
    ) -> Result<Self, StoreError> {
        jwt_ring::install();
        let ring = Self {
            store: SigningKeyStore::new(db.clone()),
            algorithm,
            clock,
            publish_for,
            keys: RwLock::new(Arc::default()),
            last_reload: Mutex::new(None),
        };
        ring.reload().await?;
        let current = ring.keys.read().signer.as_ref().map(|key| key.algorithm);
        if current != Some(algorithm) {
            // First start, or the configured algorithm changed: make a key for it. Tokens
            // signed by a previous key keep verifying until they expire.
            Self::rotate(&db, algorithm, ring.clock.now(), publish_for).await?;
            ring.reload().await?;
        }
        Ok(ring)
    }

    /// Reads the key table again.
    ///
    /// # Errors
    /// The database fails or holds an unreadable key.
    pub async fn reload(&self) -> Result<(), StoreError> {
        *self.last_reload.lock() = Some(Instant::now());
        let stored = self.store.load().await?;
        let now = self.clock.now();
        let mut set = KeySet::default();
        for row in stored {
            if row.retired_at.is_some_and(|at| at.plus(self.publish_for) <= now) {
                continue;
            }
            let kid = row.kid;
            let algorithm = SigningAlgorithm::parse(&row.algorithm)
                .ok_or_else(|| StoreError::Corrupt(format!("algorithm of signing key {kid}")))?;
            let private = STANDARD
                .decode(row.private_key)
                .map_err(|_| StoreError::Corrupt(format!("signing key {kid}")))?;
            let retired_at = row.retired_at;
            let key = Arc::new(Key::from_pkcs8(kid, algorithm, &private, retired_at)?);
            // Rows come oldest first: the newest current key of the configured algorithm signs.
            if key.retired_at.is_none() && key.algorithm == self.algorithm {
                set.signer = Some(Arc::clone(&key));
            }
            set.by_kid.insert(key.kid.clone(), key);
        }
        *self.keys.write() = Arc::new(set);
        Ok(())
    }

    /// Reloads when a token names an unknown key id, at most every few seconds. Returns
    /// whether a reload happened.
    pub async fn reload_for_unknown_kid(&self) -> bool {
        let due =
            self.last_reload.lock().is_none_or(|at| at.elapsed() >= UNKNOWN_KID_RELOAD_INTERVAL);
        if !due {
            return false;
        }
        match self.reload().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot reload signing keys");
                false
            }
        }
    }

    /// Signs `claims` with the current key.
    ///
    /// # Errors
    /// No key, or the claims do not serialize.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, SigningError> {
        let keys = Arc::clone(&self.keys.read());
        let key = keys.signer.as_ref().ok_or(SigningError::NoKey)?;
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
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let keys = Arc::clone(&self.keys.read());
        let key = keys.by_kid.get(&kid).ok_or(VerifyError::UnknownKey)?;
        let mut validation = validation.clone();
        validation.algorithms = vec![key.algorithm.jwt()];
        Ok(jsonwebtoken::decode::<T>(token, &key.decoding, &validation)?.claims)
    }

    /// The public keys as a JSON Web Key Set (`GET /auth/jwks.json`).
    pub fn jwks(&self) -> Value {
        let keys = Arc::clone(&self.keys.read());
        let mut published: Vec<&Arc<Key>> = keys.by_kid.values().collect();
        published.sort_by(|a, b| a.kid.cmp(&b.kid));
        json!({ "keys": published.iter().map(|key| &key.jwk).collect::<Vec<_>>() })
    }

    /// The id of the key that signs now.
    pub fn current_kid(&self) -> Option<String> {
        self.keys.read().signer.as_ref().map(|key| key.kid.clone())
    }

    /// Makes a new current key and retires the others (they keep verifying until tokens they
    /// signed have expired); deletes keys retired longer ago than `publish_for`. Returns the
    /// new key id. Running replicas pick the key up on their next reload.
    ///
    /// # Errors
    /// The database fails.
    pub async fn rotate(
        db: &Database,
        algorithm: SigningAlgorithm,
        now: Timestamp,
        publish_for: Duration,
    ) -> Result<String, StoreError> {
        jwt_ring::install();
        let cutoff = now.as_millis().saturating_sub(crate::clock::duration_millis(publish_for));
        let private = generate(algorithm)?;
        // 96 random bits: unique, short, and says nothing about the key.
        let kid = super::random_token()[..16].to_owned();
        SigningKeyStore::new(db.clone())
            .rotate_to(
                &kid,
                algorithm.as_str(),
                &STANDARD.encode(private),
                now,
                Timestamp::from_millis(cutoff),
            )
            .await?;
        tracing::info!(kid, algorithm = algorithm.as_str(), "generated a token signing key");
        Ok(kid)
    }

    /// Every key in the table, for `portcullis keys list`: id, algorithm, created, retired.
    ///
    /// # Errors
    /// The database fails.
    pub async fn list(
        db: &Database,
    ) -> Result<Vec<(String, String, Timestamp, Option<Timestamp>)>, StoreError> {
        let keys = SigningKeyStore::new(db.clone()).list().await?;
        Ok(keys
            .into_iter()
            .map(|key| (key.kid, key.algorithm, key.created_at, key.retired_at))
            .collect())
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.read();
        f.debug_struct("KeyRing")
            .field("algorithm", &self.algorithm)
            .field("current", &keys.signer.as_ref().map(|key| key.kid.as_str()))
            .field("published", &keys.by_kid.len())
            .finish()
    }
}

impl Key {
    fn from_pkcs8(
        kid: String,
        algorithm: SigningAlgorithm,
        pkcs8: &[u8],
        retired_at: Option<Timestamp>,
    ) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("signing key {kid}"));
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
fn generate(algorithm: SigningAlgorithm) -> Result<Vec<u8>, StoreError> {
    let rng = SystemRandom::new();
    let generated = match algorithm {
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        SigningAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        }
    }
    .map_err(|_| StoreError::Corrupt("the system cannot generate signing keys".into()))?;
    Ok(generated.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        sub: String,
        exp: i64,
    }

    async fn ring(db: &Database, algorithm: SigningAlgorithm) -> KeyRing {
        KeyRing::open(db.clone(), algorithm, Arc::new(ManualClock::new()), Duration::from_secs(900))
            .await
            .unwrap()
    }

    fn claims(clock_now: Timestamp) -> Claims {
        Claims { sub: "u".into(), exp: clock_now.as_millis() / 1000 + 600 }
    }

    fn validation() -> Validation {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_aud = false;
        validation
    }

    #[tokio::test]
    async fn signs_verifies_and_publishes_both_algorithms() {
        for algorithm in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
            let db = Database::connect("sqlite::memory:", 1).await.unwrap();
            let keys = ring(&db, algorithm).await;
            let now = ManualClock::new().now();
            let token = keys.sign(&claims(now)).unwrap();
            assert_eq!(keys.verify::<Claims>(&token, &validation()).unwrap(), claims(now));

            let jwks = keys.jwks();
            let jwk = &jwks["keys"][0];
            assert_eq!(jwk["alg"], algorithm.as_str());
            assert_eq!(jwk["kid"].as_str(), keys.current_kid().as_deref());
            assert!(jwk.get("d").is_none(), "no private part is published");
            // A verifier that only has the JWKS accepts the token.
            let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
            let decoding = DecodingKey::from_jwk(&parsed).unwrap();
            let mut outside = Validation::new(algorithm.jwt());
            outside.validate_aud = false;
            jsonwebtoken::decode::<Claims>(&token, &decoding, &outside).unwrap();

            // Reopening keeps the key.
            let again = ring(&db, algorithm).await;
            assert_eq!(again.current_kid(), keys.current_kid());
        }
    }

    #[tokio::test]
    async fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let db = Database::connect("sqlite::memory:", 1).await.unwrap();
        let keys = ring(&db, SigningAlgorithm::EdDsa).await;
        let now = ManualClock::new().now();
        let old_token = keys.sign(&claims(now)).unwrap();
        let old_kid = keys.current_kid().unwrap();

        let new_kid = KeyRing::rotate(&db, SigningAlgorithm::EdDsa, now, Duration::from_secs(900))
            .await
            .unwrap();
        // Not yet reloaded: the old key still signs, and the new one is unknown.
        let new_token = {
            let other = ring(&db, SigningAlgorithm::EdDsa).await;
            assert_eq!(other.current_kid().as_deref(), Some(new_kid.as_str()));
            other.sign(&claims(now)).unwrap()
        };
        assert!(matches!(
            keys.verify::<Claims>(&new_token, &validation()),
            Err(VerifyError::UnknownKey)
        ));
        assert!(keys.reload_for_unknown_kid().await || keys.reload().await.is_ok());
        keys.reload().await.unwrap();
        assert_eq!(keys.current_kid().as_deref(), Some(new_kid.as_str()));
        keys.verify::<Claims>(&new_token, &validation()).unwrap();
        keys.verify::<Claims>(&old_token, &validation()).unwrap();
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        assert_ne!(old_kid, new_kid);
    }

    #[tokio::test]
    async fn changing_the_algorithm_makes_a_new_key_and_retires_the_old() {
        let db = Database::connect("sqlite::memory:", 1).await.unwrap();
        let eddsa = ring(&db, SigningAlgorithm::EdDsa).await;
        let now = ManualClock::new().now();
        let old_token = eddsa.sign(&claims(now)).unwrap();
        let es256 = ring(&db, SigningAlgorithm::Es256).await;
        assert_ne!(es256.current_kid(), eddsa.current_kid());
        let new_token = es256.sign(&claims(now)).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&new_token).unwrap().alg, Algorithm::ES256);
        es256.verify::<Claims>(&old_token, &validation()).unwrap();
        es256.verify::<Claims>(&new_token, &validation()).unwrap();
        let keys = KeyRing::list(&db).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].3.is_some() && keys[1].3.is_none(), "the EdDSA key is retired");
    }

    #[tokio::test]
    async fn forged_and_unsigned_tokens_are_refused() {
        let db = Database::connect("sqlite::memory:", 1).await.unwrap();
        let keys = ring(&db, SigningAlgorithm::EdDsa).await;
        let now = ManualClock::new().now();
        let token = keys.sign(&claims(now)).unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[0] ^= 1;
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert!(matches!(
            keys.verify::<Claims>(&forged, &validation()),
            Err(VerifyError::Invalid(_))
        ));

        let kid = keys.current_kid().unwrap();
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
        let payload = signed.split_once('.').unwrap().1;
        let unsigned = format!("{header}.{payload}.");
        assert!(keys.verify::<Claims>(&unsigned, &validation()).is_err());

        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
        let confused = format!("{header}.{payload}.{signature}");
        assert!(keys.verify::<Claims>(&confused, &validation()).is_err());
    }
}
