//! TLS to PostgreSQL and Redis: [`TlsFailure`], what every TLS error names, and (with either
//! network feature) the pieces both backends share — the `ring` crypto provider, reading a
//! PEM root-certificate file, and turning a rustls error into a [`TlsFailure`].
//!
//! Both backends use rustls, never OpenSSL. The PostgreSQL side is `backend/postgres/tls.rs`
//! (libpq's `sslmode` and `sslrootcert`), the Redis side `remote/tls.rs` (`rediss://` and
//! `redis.tls_ca_file`).

use std::path::PathBuf;

/// Why a TLS connection could not be set up, in [`StorageError::Tls`](crate::StorageError::Tls).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// TLS is required (`sslmode=require` or stricter), but the server answered that it does
    /// not do TLS (a PostgreSQL server with `ssl = off`).
    #[error("the server does not support TLS")]
    NotSupported,
    /// The server's certificate does not lead to a trusted root certificate (a wrong CA, a
    /// self-signed certificate, an expired one).
    #[error("certificate verification failed: {detail}")]
    UntrustedCertificate {
        /// What did not verify.
        detail: String,
    },
    /// The certificate is trusted but not issued for the host connected to
    /// (`sslmode=verify-full`, and always for `rediss://`).
    #[error("certificate verification failed: the certificate is not valid for host {host:?}")]
    HostnameMismatch {
        /// The host name (or address) connected to.
        host: String,
    },
    /// The root-certificate file (`sslrootcert`, `redis.tls_ca_file`) could not be read or
    /// holds no usable certificate.
    #[error("cannot use the root certificate file {}: {detail}", path.display())]
    RootCertificate {
        /// The file as configured.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Any other failure of the handshake (no common protocol version, the connection closed,
    /// an alert from the server).
    #[error("TLS handshake failed: {detail}")]
    Handshake {
        /// The TLS library's description.
        detail: String,
    },
}

#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) use shared::*;

#[cfg(any(feature = "postgres", feature = "redis"))]
mod shared {
    use std::error::Error;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use rustls::{CertificateError, RootCertStore};

    use super::TlsFailure;

    /// The one crypto provider: `ring` (no cmake or assembler toolchain needed to build).
    pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// The certificates of the PEM file at `path`, as a root store, and the file's bytes.
    pub(crate) fn read_roots(path: &Path) -> Result<(RootCertStore, Vec<u8>), TlsFailure> {
        let failure = |detail: String| TlsFailure::RootCertificate {
            path: path.to_owned(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| failure(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| failure(format!("not a PEM certificate file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| failure(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(failure("no PEM certificate in it".into()));
        }
        Ok((roots, pem))
    }

    /// The TLS failure somewhere in `err`'s chain, if there is one; `host` is the server's
    /// name as connected to.
    ///
    /// rustls errors travel inside `io::Error`s (tokio-rustls) and, in the Redis client, inside
    /// an `Arc`; neither exposes its payload through `source()`, so both are unwrapped here.
    pub(crate) fn classify(err: &(dyn Error + 'static), host: &str) -> Option<TlsFailure> {
        let mut next = Some(err);
        // A bounded walk: a cyclic chain (never seen, but possible) must not hang.
        for _ in 0..16 {
            let e = next?;
            if let Some(rustls) = e.downcast_ref::<rustls::Error>() {
                return Some(from_rustls(rustls, host));
            }
            if let Some(failure) = e.downcast_ref::<TlsFailure>() {
                return Some(failure.clone());
            }
            let wrapped = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn Error + 'static))
                .or_else(|| {
                    e.downcast_ref::<Arc<dyn Error + Send + Sync>>()
                        .map(|inner| inner.as_ref() as &(dyn Error + 'static))
                });
            if let Some(found) = wrapped.and_then(|inner| classify(inner, host)) {
                return Some(found);
            }
            next = e.source();
        }
        None
    }

    /// A rustls error as a [`TlsFailure`].
    pub(crate) fn from_rustls(err: &rustls::Error, host: &str) -> TlsFailure {
        match err {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => TlsFailure::HostnameMismatch {
                host: host.to_owned(),
            },
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                TlsFailure::UntrustedCertificate {
                    detail: "the certificate is not signed by a trusted CA (unknown issuer)".into(),
                }
            }
            rustls::Error::InvalidCertificate(other) => TlsFailure::UntrustedCertificate {
                detail: format!("{other:?}"),
            },
            other => TlsFailure::Handshake {
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(all(test, any(feature = "postgres", feature = "redis")))]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_inside_io_errors_are_found() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        let failure = classify(&io, "db.example");
        assert!(
            matches!(failure, Some(TlsFailure::UntrustedCertificate { .. })),
            "{failure:?}"
        );
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let arc: std::sync::Arc<dyn std::error::Error + Send + Sync> =
            std::sync::Arc::new(std::io::Error::new(std::io::ErrorKind::InvalidData, name));
        assert_eq!(
            classify(&arc, "db.example"),
            Some(TlsFailure::HostnameMismatch {
                host: "db.example".into()
            })
        );
        assert_eq!(classify(&std::io::Error::other("refused"), "h"), None);
    }

    #[test]
    fn a_root_file_without_certificates_is_refused() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n")?;
        let err = read_roots(&path).err();
        assert!(
            matches!(&err, Some(TlsFailure::RootCertificate { detail, .. }) if detail.contains("no PEM")),
            "{err:?}"
        );
        let missing = read_roots(&dir.path().join("absent.pem")).err();
        assert!(
            missing.as_ref().is_some_and(|e| e
                .to_string()
                .starts_with("cannot use the root certificate file")),
            "{missing:?}"
        );
        Ok(())
    }
}
