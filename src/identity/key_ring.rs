//! The signing keys of this installation: generated on first start, kept in the database
//! (`store::signing_keys`, sealed) so every replica signs and verifies with the same set,
//! published as a JWKS, and rotated without logging anyone out (a retired key still verifies
//! until nothing it signed can be valid).
//!
//! Replicas pick up keys another replica or `portcullis keys rotate` created by reloading: every
//! minute, and at once (rate-limited) when a token names a key id they do not know.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Validation;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::clock::{Clock, Timestamp};
use crate::crypto::signing::{KeySet, SigningAlgorithm, SigningError, SigningKey, VerifyError};
use crate::crypto::{self, signing};
use crate::store::StoreError;
use crate::store::signing_keys::SigningKeyStore;
use crate::store::sql::Database;

/// Shortest time between two reloads triggered by unknown key ids, so that tokens with made-up
/// key ids cannot turn into a database query each.
const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

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
        crate::crypto::jwt_ring::install();
        let ring = Self {
            store: SigningKeyStore::new(db.clone()),
            algorithm,
            clock,
            publish_for,
            keys: RwLock::new(Arc::default()),
            last_reload: Mutex::new(None),
        };
        ring.reload().await?;
        let current = ring.keys.read().signing_algorithm();
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
        let mut keys = Vec::with_capacity(stored.len());
        for row in stored {
            if row.retired_at.is_some_and(|at| at.plus(self.publish_for) <= now) {
                continue;
            }
            let kid = row.kid;
            let corrupt = || StoreError::Corrupt(format!("signing key {kid}"));
            let algorithm = SigningAlgorithm::parse(&row.algorithm)
                .ok_or_else(|| StoreError::Corrupt(format!("algorithm of signing key {kid}")))?;
            let private = STANDARD.decode(row.private_key).map_err(|_| corrupt())?;
            let key = SigningKey::from_pkcs8(kid.clone(), algorithm, &private, row.retired_at)
                .map_err(|_| corrupt())?;
            keys.push(key);
        }
        // Rows come oldest first: the newest current key of the configured algorithm signs.
        let set = KeySet::new(keys, self.algorithm);
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
        Arc::clone(&self.keys.read()).sign(claims)
    }

    /// Verifies a token signed by one of these keys (see [`KeySet::verify`]).
    ///
    /// # Errors
    /// [`VerifyError::UnknownKey`] when the key id is not held (the caller may reload and
    /// retry); [`VerifyError::Invalid`] for everything else.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<T, VerifyError> {
        Arc::clone(&self.keys.read()).verify(token, validation)
    }

    /// The public keys as a JSON Web Key Set (`GET /auth/jwks.json`).
    pub fn jwks(&self) -> Value {
        self.keys.read().jwks()
    }

    /// The id of the key that signs now.
    pub fn current_kid(&self) -> Option<String> {
        self.keys.read().current_kid().map(str::to_owned)
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
        crate::crypto::jwt_ring::install();
        let cutoff = now.as_millis().saturating_sub(crate::clock::duration_millis(publish_for));
        let private =
            signing::generate(algorithm).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        // 96 random bits: unique, short, and says nothing about the key.
        let kid = crypto::random_token()[..16].to_owned();
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
            .field("current", &keys.current_kid())
            .field("published", &keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, DecodingKey};
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
