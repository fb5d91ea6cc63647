//! Reading and checking TLS files: a TLS listener's certificate chain and
//! private key, and an upstream pool's CA bundle, all PEM.
//!
//! Validation (`switchyard check`, every reload) must judge these files
//! exactly as the proxy (which serves the certificate) and the upstream
//! client (which trusts the bundle) will load them, so the loading lives
//! here, below all three. Owns parsing and the checks (the chain parses,
//! the key matches it, the certificate is within its validity period; the
//! bundle holds a usable certificate). It must not keep state: no store,
//! no reload, no sockets (those are `proxy`'s and `upstream`'s).

use crate::config::TlsFiles;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use x509_parser::error::X509Error;

/// Why a certificate, key or CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("the private key in {} cannot be used: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {} {}", path.display(), validity_text(*not_before, *not_after, *now))]
    OutsideValidity {
        path: PathBuf,
        not_before: i64,
        not_after: i64,
        now: i64,
    },
    #[error("the certificate in {} cannot be read: {source}", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: X509Error,
    },
    #[error("TLS settings refused: {0}")]
    Rustls(#[source] rustls::Error),
    #[error("cannot read CA bundle {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA bundle {} is not valid PEM: {source}", path.display())]
    ParseCa {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA bundle {} holds no usable certificate", path.display())]
    NoCa { path: PathBuf },
}

fn validity_text(not_before: i64, not_after: i64, now: i64) -> String {
    let at = |s: i64| crate::clock::rfc3339(u64::try_from(s.max(0)).unwrap_or(0) * 1000);
    if now > not_after {
        format!("expired at {}", at(not_after))
    } else {
        format!("is not valid before {}", at(not_before))
    }
}

/// A certificate and key that passed every check, ready to serve.
#[derive(Debug)]
pub struct CheckedCert {
    pub key: CertifiedKey,
    /// The end of the certificate's validity, in Unix seconds.
    pub not_after: i64,
}

/// Parse and check a certificate chain and key given as PEM (`files`
/// names them in errors), at `now_unix` seconds.
pub fn check_cert_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
    now_unix: i64,
) -> Result<CheckedCert, TlsFileError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsFileError::Pem {
            path: files.cert.clone(),
            source,
        })?;
    let leaf = chain.first().ok_or_else(|| TlsFileError::NoCertificate {
        path: files.cert.clone(),
    })?;
    let (not_before, not_after) = validity(leaf).map_err(|source| TlsFileError::Certificate {
        path: files.cert.clone(),
        source,
    })?;
    if now_unix < not_before || now_unix > not_after {
        return Err(TlsFileError::OutsideValidity {
            path: files.cert.clone(),
            not_before,
            not_after,
            now: now_unix,
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsFileError::Pem {
        path: files.key.clone(),
        source,
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsFileError::Key {
            path: files.key.clone(),
            source,
        })?;
    let key = CertifiedKey::new(chain, signing);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsFileError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        // A key type whose public half rustls cannot compute: served as is.
        Err(rustls::Error::InconsistentKeys(_)) => {}
        Err(e) => return Err(TlsFileError::Rustls(e)),
    }
    Ok(CheckedCert { key, not_after })
}

/// Whether `files` could be served now, as `switchyard check` and a
/// reload's validation ask: the same checks as a listener's load. On
/// failure, also whether the key file (not the certificate) is at fault.
pub fn check_cert_files(files: &TlsFiles) -> Result<(), (bool, TlsFileError)> {
    let key_fault = |e: TlsFileError| {
        let key = match &e {
            TlsFileError::Read { path, .. } | TlsFileError::Pem { path, .. } => *path == files.key,
            TlsFileError::Key { .. } | TlsFileError::KeyMismatch { .. } => true,
            _ => false,
        };
        (key, e)
    };
    let provider = rustls::crypto::ring::default_provider();
    let cert = read(&files.cert).map_err(key_fault)?;
    let key = read(&files.key).map_err(key_fault)?;
    check_cert_key(files, &cert, &key, &provider, now_unix())
        .map(drop)
        .map_err(key_fault)
}

/// `(not_before, not_after)` of a DER certificate, in Unix seconds
/// (RFC 5280 section 4.1.2.5; x509-parser reads both time forms).
pub fn validity(cert_der: &[u8]) -> Result<(i64, i64), X509Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
        x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
    })?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// The bytes of a certificate or key file.
pub fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Now, in Unix seconds, as certificate validity counts it.
pub fn now_unix() -> i64 {
    i64::try_from(crate::clock::unix_ms() / 1000).unwrap_or(i64::MAX)
}

/// The trusted roots in the CA bundle at `path`: at least one usable
/// certificate, else an error.
pub fn ca_roots(path: &Path) -> Result<RootCertStore, TlsFileError> {
    let pem = std::fs::read(path).map_err(|source| TlsFileError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsFileError::ParseCa {
            path: path.to_path_buf(),
            source,
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsFileError::NoCa {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::listener_tls::selfsigned::Ca;
    use std::time::{Duration, SystemTime};

    const DAY: Duration = Duration::from_secs(86_400);

    fn files() -> TlsFiles {
        TlsFiles {
            cert: "tls.crt".into(),
            key: "tls.key".into(),
        }
    }

    fn checked(cert: &str, key: &str) -> Result<CheckedCert, TlsFileError> {
        let provider = rustls::crypto::ring::default_provider();
        check_cert_key(
            &files(),
            cert.as_bytes(),
            key.as_bytes(),
            &provider,
            now_unix(),
        )
    }

    fn der(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn validity_reads_utc_and_generalized_times() {
        // Up to 2049 a UTCTime (YY >= 50 is 19YY), from 2050 a GeneralizedTime.
        let cert = der((2020, 1, 2), (2060, 6, 30));
        assert_eq!(validity(&cert).unwrap(), (1_577_923_200, 2_855_779_200));
        let cert = der((1999, 12, 31), (2049, 12, 31));
        assert_eq!(validity(&cert).unwrap(), (946_598_400, 2_524_521_600));
        let cert = der((1950, 1, 1), (2050, 1, 1));
        assert_eq!(validity(&cert).unwrap(), (-631_152_000, 2_524_608_000));
    }

    #[test]
    fn a_malformed_certificate_is_an_error_not_a_panic() {
        let cert = der((2020, 1, 2), (2060, 6, 30));
        for cut in [0, 1, 5, 40, cert.len() / 2, cert.len() - 1] {
            assert!(validity(&cert[..cut]).is_err(), "cut at {cut}");
        }
        assert!(validity(b"\x30\x84\xff\xff\xff\xff").is_err());
        // Through the whole check: named as a certificate that cannot be read.
        let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        let err = checked(pem, "").unwrap_err();
        assert!(matches!(err, TlsFileError::Certificate { .. }), "{err}");
        assert!(err.to_string().contains("cannot be read"), "{err}");
    }

    #[test]
    fn a_good_certificate_passes() {
        let ca = Ca::new("test CA").unwrap();
        let good = ca.issue(&["localhost"]).unwrap();
        let c = checked(&good.cert_pem, &good.key_pem).unwrap();
        assert!(c.not_after > now_unix() + 300 * 86_400);
    }

    #[test]
    fn expired_mismatched_and_empty_are_refused() {
        let ca = Ca::new("test CA").unwrap();
        let now = SystemTime::now();
        let expired = ca
            .issue_valid(&["localhost"], now - 10 * DAY, now - DAY)
            .unwrap();
        let err = checked(&expired.cert_pem, &expired.key_pem).unwrap_err();
        assert!(matches!(err, TlsFileError::OutsideValidity { .. }), "{err}");
        assert!(err.to_string().contains("expired at"), "{err}");
        let future = ca
            .issue_valid(&["localhost"], now + DAY, now + 10 * DAY)
            .unwrap();
        let err = checked(&future.cert_pem, &future.key_pem).unwrap_err();
        assert!(err.to_string().contains("not valid before"), "{err}");

        let a = ca.issue(&["localhost"]).unwrap();
        let b = ca.issue(&["localhost"]).unwrap();
        let err = checked(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(matches!(err, TlsFileError::KeyMismatch { .. }), "{err}");

        let err = checked("", &a.key_pem).unwrap_err();
        assert!(matches!(err, TlsFileError::NoCertificate { .. }), "{err}");
        let err = checked(&a.cert_pem, "").unwrap_err();
        assert!(matches!(err, TlsFileError::Pem { .. }), "{err}");
    }

    #[test]
    fn the_key_file_is_blamed_for_its_own_faults() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let ca = Ca::new("test CA").unwrap();
        let (a, b) = (
            ca.issue(&["localhost"]).unwrap(),
            ca.issue(&["localhost"]).unwrap(),
        );
        std::fs::write(&files.cert, &a.cert_pem).unwrap();
        assert!(matches!(
            check_cert_files(&files),
            Err((true, TlsFileError::Read { .. }))
        ));
        std::fs::write(&files.key, &b.key_pem).unwrap();
        assert!(matches!(
            check_cert_files(&files),
            Err((true, TlsFileError::KeyMismatch { .. }))
        ));
        std::fs::write(&files.cert, "").unwrap();
        assert!(matches!(
            check_cert_files(&files),
            Err((false, TlsFileError::NoCertificate { .. }))
        ));
        std::fs::write(&files.cert, &b.cert_pem).unwrap();
        assert!(check_cert_files(&files).is_ok());
    }

    #[test]
    fn a_ca_bundle_needs_a_usable_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        assert!(matches!(ca_roots(&path), Err(TlsFileError::ReadCa { .. })));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = ca_roots(&path).unwrap_err();
        assert!(matches!(err, TlsFileError::NoCa { .. }), "{err}");
        assert!(err.to_string().starts_with("CA bundle"), "{err}");
        let ca = Ca::new("test CA").unwrap();
        std::fs::write(&path, &ca.cert_pem).unwrap();
        assert_eq!(ca_roots(&path).unwrap().len(), 1);
    }
}
