//! `rediss://`: the Redis client over rustls, with the server's CA from `redis.tls_ca_file`
//! or the built-in Mozilla roots, and Redis connection errors told apart as TLS failures.
//!
//! The redis crate builds its rustls configuration itself, from the process-wide default
//! crypto provider; this module makes sure that is `ring` before the first `rediss://`
//! connection (an application that installed a provider of its own keeps it).

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::tls::TlsFailure;

/// A client for `url` (already validated): over TLS for `rediss://`, trusting `ca_file`
/// when given.
pub(crate) fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client> {
    let unusable = |e: redis::RedisError| StorageError::UnsupportedUrl {
        url: crate::redact_url(url),
        reason: format!("not a usable Redis URL: {e}"),
    };
    if !url.starts_with("rediss://") {
        return redis::Client::open(url).map_err(unusable);
    }
    // Err means a provider is installed already, which then serves (it is the process's).
    let _ = crate::tls::provider().as_ref().clone().install_default();
    let root_cert = match ca_file {
        Some(path) => {
            // Read and checked here, so a bad file fails the open with a clear error rather
            // than every connection attempt later.
            let (_, pem) = crate::tls::read_roots(path).map_err(|failure| StorageError::Tls {
                server: server(url),
                failure,
            })?;
            Some(pem)
        }
        None => None,
    };
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert,
    };
    redis::Client::build_with_tls(url, certificates).map_err(unusable)
}

/// How a Redis server is named in errors: its URL without the password.
pub(crate) fn server(url: &str) -> String {
    format!("Redis at {}", crate::redact_url(url))
}

/// The TLS failure behind a Redis error, if it is one.
pub(crate) fn failure(err: &redis::RedisError, url: &str) -> Option<TlsFailure> {
    crate::tls::classify(err, host(url))
}

/// The host part of a Redis URL (what the certificate must name).
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_a_tls_error_without_the_password() {
        let err = client(
            "rediss://:s3cret@cache.example:6380/0",
            Some(Path::new("/nonexistent/ca.pem")),
        )
        .err();
        let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(
                &err,
                Some(StorageError::Tls {
                    failure: TlsFailure::RootCertificate { .. },
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(text.starts_with("TLS connection to Redis at rediss://:***@cache.example"));
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn the_host_is_taken_from_the_url() {
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let err =
            redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::InvalidData, name));
        for url in [
            "rediss://u:pw@cache.example:6380/0",
            "rediss://cache.example:6380",
            "rediss://cache.example",
        ] {
            assert_eq!(
                failure(&err, url),
                Some(TlsFailure::HostnameMismatch {
                    host: "cache.example".into()
                }),
                "{url}"
            );
        }
    }
}
