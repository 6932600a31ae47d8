//! TLS: the rustls server configuration (HTTP/2 and HTTP/1.1 by ALPN) with a certificate that
//! is reloaded when its files change.
//!
//! New handshakes use the new certificate as soon as it is loaded; open connections keep the one
//! they negotiated, so nothing is dropped. A replacement that does not parse, or whose key does
//! not match, is logged and ignored: the old certificate stays in service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM holds no certificate or no usable key.
    #[error("{path}: {reason}")]
    Pem {
        /// File path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The key does not belong to the certificate, or its type is unsupported.
    #[error("certificate and key do not work together: {0}")]
    Key(#[from] rustls::Error),
}

/// Serves the current certificate to every handshake.
#[derive(Debug)]
pub(crate) struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The file contents it was loaded from, to notice replacements.
    source: (Vec<u8>, Vec<u8>),
}

impl ReloadingCert {
    /// Loads the certificate chain and key.
    ///
    /// # Errors
    /// See [`TlsError`].
    pub(crate) fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let source = read_pair(cert_path, key_path)?;
        let key = certified_key(&source, cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Loaded { key: Arc::new(key), source }),
        })
    }

    /// Reloads if either file changed. Returns whether a new certificate is now in service.
    ///
    /// # Errors
    /// The changed files do not hold a usable certificate and key (the old one stays).
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let source = read_pair(&self.cert_path, &self.key_path)?;
        if self.current.read().source == source {
            return Ok(false);
        }
        let key = certified_key(&source, &self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write() = Loaded { key: Arc::new(key), source };
        Ok(true)
    }

    /// Checks the files every `interval` until `shutdown`.
    pub(crate) async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let this = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Ok(true)) => {
                    tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded")
                }
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "TLS certificate not reloaded; keeping the current one")
                }
                Err(error) => tracing::error!(%error, "TLS reload task failed"),
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().key))
    }
}

/// A server configuration offering HTTP/2 and HTTP/1.1 with the given certificate.
///
/// # Errors
/// The provider supports no safe protocol versions (not the case for ring).
pub(crate) fn server_config(
    cert: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|source| TlsError::Read { path: path.display().to_string(), source })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

fn certified_key(
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem_error =
        |path: &Path, reason: String| TlsError::Pem { path: path.display().to_string(), reason };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(cert_path, error.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(cert_path, "no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| pem_error(key_path, error.to_string()))?;
    let signing_key = provider.key_provider.load_private_key(key)?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match()?;
    Ok(certified)
}
