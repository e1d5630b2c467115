//! TLS to PostgreSQL over rustls, with libpq's `sslmode` and `sslrootcert` URL parameters.
//!
//! | `sslmode` | TLS | chain verified | host name verified |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` (default, as libpq) | if the server offers it | only with `sslrootcert` | no |
//! | `require` | always | only with `sslrootcert` (libpq) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! The chain is verified against `sslrootcert` (a PEM file) or, without it, the built-in
//! Mozilla roots (`webpki-roots`; `sslrootcert=system` names them explicitly). tokio-postgres
//! knows only `disable`, `prefer` and `require` and refuses `sslrootcert`, so [`split_url`]
//! takes both parameters off the URL and passes it the transport mode; the verification is
//! this module's rustls configuration. Unlike libpq, `prefer` falls back to plain text only
//! when the server declines TLS, not after a failed handshake; and no channel binding is
//! offered (`channel_binding=require` fails).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::error::{Result, StorageError};
use crate::tls::TlsFailure;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS parameters of a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    /// `sslrootcert`; `None` (or `system`) means the built-in roots.
    pub(crate) root_cert: Option<PathBuf>,
}

/// `url` without `sslrootcert` and with `sslmode` as tokio-postgres understands it, and the
/// TLS settings the two parameters gave (libpq's default `prefer` when absent).
fn split_url(url: &str) -> Result<(String, TlsSettings)> {
    let unsupported = |reason: String| StorageError::UnsupportedUrl {
        url: crate::redact_url(url),
        reason,
    };
    let mut settings = TlsSettings {
        mode: SslMode::Prefer,
        root_cert: None,
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        match name {
            "sslmode" => {
                settings.mode = match percent_decode(value).as_str() {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(unsupported(format!(
                            "sslmode {other:?} is not supported; use disable, prefer, require, \
                             verify-ca or verify-full"
                        )));
                    }
                }
            }
            "sslrootcert" => {
                let path = percent_decode(value);
                settings.root_cert = match path.as_str() {
                    "" | "system" => None,
                    _ => Some(PathBuf::from(path)),
                };
            }
            _ => kept.push(param),
        }
    }
    let transport = match settings.mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
    };
    let sslmode = format!("sslmode={transport}");
    kept.push(&sslmode);
    Ok((format!("{base}?{}", kept.join("&")), settings))
}

/// `%XX` escapes of a URL parameter decoded (`+` stays as it is, as in libpq). An invalid
/// escape is kept literally.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The driver's configuration of `url` and the connector its `sslmode` and `sslrootcert`
/// give: how every connection of the backend reaches the server (its pools and its change
/// listener), and, through `testing::postgres::transport`, the benchmark's PostgreSQL peer,
/// so both run over the same transport from the same URL. Reads `sslrootcert` now.
pub fn transport(url: &str) -> Result<(tokio_postgres::Config, MakeRustls)> {
    let (driver_url, settings) = split_url(url)?;
    let config = tokio_postgres::Config::from_str(&driver_url).map_err(|e| {
        StorageError::UnsupportedUrl {
            url: crate::redact_url(url),
            reason: format!("not a valid PostgreSQL URL: {e}"),
        }
    })?;
    Ok((config, connector(&settings)?))
}

/// The connector for `settings`: reads `sslrootcert` now, so an unusable file fails the open.
fn connector(settings: &TlsSettings) -> Result<MakeRustls> {
    let provider = crate::tls::provider();
    let roots = match &settings.root_cert {
        Some(path) => {
            crate::tls::read_roots(path)
                .map_err(|failure| StorageError::Tls {
                    server: "PostgreSQL".into(),
                    failure,
                })?
                .0
        }
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let config_error = |e: rustls::Error| {
        StorageError::Config(format!("cannot configure TLS for PostgreSQL: {e}"))
    };
    let chain = || {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
            .build()
            .map_err(|e| StorageError::Config(format!("cannot configure TLS for PostgreSQL: {e}")))
    };
    let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
        SslMode::VerifyFull => chain()?,
        SslMode::VerifyCa => Arc::new(ChainOnly(chain()?)),
        // libpq: with a root certificate, `require` (and `prefer`) verify the chain.
        SslMode::Prefer | SslMode::Require if settings.root_cert.is_some() => {
            Arc::new(ChainOnly(chain()?))
        }
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(EncryptOnly(provider.clone()))
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What libpq 17 sends; servers that do not know ALPN ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustls {
        config: Arc::new(config),
    })
}

/// The TLS failure behind a connection error, as the store's error.
pub(crate) fn storage_error(err: &tokio_postgres::Error) -> Option<StorageError> {
    use std::error::Error as _;
    let cause = err.source()?;
    if let Some(handshake) = cause.downcast_ref::<Handshake>() {
        return Some(StorageError::Tls {
            server: format!("PostgreSQL at {}", handshake.host),
            failure: handshake.failure.clone(),
        });
    }
    // tokio-postgres's own words when the server answers an SSLRequest with 'N' under
    // `require`; pinned by tests/it/pg_tls.rs.
    (cause.to_string() == "server does not support TLS").then(|| StorageError::Tls {
        server: "PostgreSQL".into(),
        failure: TlsFailure::NotSupported,
    })
}

/// `require` without a root certificate: encrypted, and the handshake signatures are checked
/// (the peer holds the certificate's key), but who the certificate names is not.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI verification, except that a certificate for another name is
/// accepted. rustls checks the chain before the name, so a name error means the chain
/// verified.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A failed handshake with the host it was for (the error tokio-postgres carries back).
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct Handshake {
    host: String,
    failure: TlsFailure,
}

/// The [`MakeTlsConnect`] of every pool: one rustls configuration, shared.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = Handshake;

    fn make_tls_connect(&mut self, domain: &str) -> std::result::Result<RustlsConnect, Handshake> {
        // A Unix socket has no host name (""): no error here, since the server will decline
        // TLS on it under `prefer`; a handshake without a name fails in `connect`.
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            name: ServerName::try_from(domain.to_owned()).ok(),
            host: domain.to_owned(),
        })
    }
}

/// One connection's handshake.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
    host: String,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = Handshake;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<RustlsStream, Handshake>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let host = self.host;
            let Some(name) = self.name else {
                let failure = TlsFailure::Handshake {
                    detail: format!("{host:?} is not a host name or address to verify"),
                };
                return Err(Handshake { host, failure });
            };
            match tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await
            {
                Ok(stream) => Ok(RustlsStream(Box::new(stream))),
                Err(e) => {
                    let failure =
                        crate::tls::classify(&e, &host).unwrap_or_else(|| TlsFailure::Handshake {
                            detail: e.to_string(),
                        });
                    Err(Handshake { host, failure })
                }
            }
        })
    }
}

/// A TLS connection to the server.
pub struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.get_mut().0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    /// None: `tls-server-end-point` needs the hash of the certificate's signature algorithm,
    /// which would mean parsing the certificate; SCRAM runs without channel binding.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_taken_off_the_url() -> Result<()> {
        let (url, s) = split_url("postgres://u:pw@h/db")?;
        assert_eq!(url, "postgres://u:pw@h/db?sslmode=prefer");
        assert_eq!(s.mode, SslMode::Prefer, "libpq's default");
        let (url, s) = split_url(
            "postgres://h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem",
        )?;
        assert_eq!(url, "postgres://h/db?application_name=x&sslmode=require");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert, Some(PathBuf::from("/etc/ca x.pem")));
        let (_, s) = split_url("postgres://h/db?sslmode=verify-ca&sslrootcert=system")?;
        assert_eq!((s.mode, s.root_cert), (SslMode::VerifyCa, None));
        let (url, s) = split_url("postgres://h/db?sslmode=disable")?;
        assert_eq!(
            (url.as_str(), s.mode),
            ("postgres://h/db?sslmode=disable", SslMode::Disable)
        );
        Ok(())
    }

    #[test]
    fn an_unknown_sslmode_is_refused_without_the_password() {
        let err = split_url("postgres://u:s3cret@h/db?sslmode=allow").err();
        let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(err, Some(StorageError::UnsupportedUrl { .. })),
            "{err:?}"
        );
        assert!(
            text.contains("sslmode \"allow\" is not supported"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
