//! Argon2id password hashing, run on the blocking pool with bounded concurrency.
//!
//! Hashing costs tens of milliseconds of CPU and ~19 MiB of memory by design. Running it on the
//! async workers would stall every proxied request on that worker, so each hash runs under
//! `spawn_blocking`, and a semaphore caps how many run at once (the app allows half the
//! cores): a login storm queues instead of taking all the memory and the cores the proxy needs.

use std::sync::Arc;

use argon2::password_hash::PasswordVerifier;
use argon2::{Argon2, PasswordHasher};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PasswordHashError {
    /// The argon2 implementation refused its input.
    #[error("argon2: {0}")]
    Argon2(String),
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The semaphore closed, which only happens during shutdown.
    #[error("password hasher is shutting down")]
    Closed,
}

/// Hashes and verifies passwords off the async workers.
#[derive(Debug, Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the account does not exist so
    /// that unknown emails cost the same time as wrong passwords.
    decoy: Arc<str>,
    /// Hashes and verifications run: the argon2 load, for metrics.
    runs: Counter,
}

impl PasswordHasherPool {
    /// A pool allowing `concurrency` hashes at once (at least one).
    ///
    /// # Errors
    /// Fails if the decoy hash cannot be computed, which means argon2 is unusable.
    pub fn new(concurrency: usize) -> Result<Self, PasswordHashError> {
        let decoy = hash_now(&super::random_token())?;
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        Ok(Self { permits, decoy: decoy.into(), runs: Counter::default() })
    }

    /// The counter of hashes and verifications run, for the metrics registry.
    pub fn runs(&self) -> Counter {
        self.runs.clone()
    }

    /// The PHC string (`$argon2id$v=19$…`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordHashError> {
        let _permit = self.permits.acquire().await.map_err(|_| PasswordHashError::Closed)?;
        self.runs.inc();
        tokio::task::spawn_blocking(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `stored`; with `None` (unknown account) it checks the decoy
    /// so that the answer takes the same time, and always returns false.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordHashError> {
        let _permit = self.permits.acquire().await.map_err(|_| PasswordHashError::Closed)?;
        self.runs.inc();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy.to_string());
        let matches = tokio::task::spawn_blocking(move || {
            Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await?;
        Ok(known && matches)
    }
}

fn hash_now(password: &str) -> Result<String, PasswordHashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordHashError::Argon2(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() {
        let pool = PasswordHasherPool::new(2).unwrap();
        let hash = pool.hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(pool.verify("correct horse battery".into(), Some(hash.clone())).await.unwrap());
        assert!(!pool.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(!pool.verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_garbled_stored_hash_is_a_mismatch_not_a_panic() {
        let pool = PasswordHasherPool::new(1).unwrap();
        assert!(!pool.verify("x".into(), Some("not a phc string".into())).await.unwrap());
    }
}
