//! QUIC's side of TLS: one ALPN name per dialect, and the quinn crypto configs built on
//! them (TLS 1.3 only, aws-lc-rs). The certificate and the resolver a reload swaps are
//! shared with `wss://` and live in [`crate::tls`].

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls::pki_types::CertificateDer;
use quinn::rustls::server::ResolvesServerCert;
use quinn::rustls::{self, RootCertStore};
use switchyard_core::Dialect;

use super::QuicError;
use crate::tls::{CertResolver, provider};

/// The ALPN name of `dialect` on QUIC: `switchyard-` and the dialect's name
/// (`switchyard-rtc-signaller`, `switchyard-json`).
pub fn alpn(dialect: Dialect) -> Vec<u8> {
    format!("switchyard-{}", dialect.name()).into_bytes()
}

/// The dialect an ALPN name stands for.
pub(super) fn dialect_of(alpn_name: &[u8]) -> Option<Dialect> {
    Dialect::ALL.into_iter().find(|&d| alpn(d) == alpn_name)
}

/// The rustls server side for QUIC, presenting whatever `certificate` holds: TLS 1.3
/// only, one ALPN name per dialect.
pub(super) fn server_crypto(
    certificate: &Arc<CertResolver>,
) -> Result<QuicServerConfig, QuicError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(certificate) as Arc<dyn ResolvesServerCert>);
    tls.alpn_protocols = Dialect::ALL.into_iter().map(alpn).collect();
    QuicServerConfig::try_from(tls)
        .map_err(|e| QuicError::Tls(rustls::Error::General(e.to_string())))
}

/// A client config that trusts only `roots` (a dev certificate, a private CA) and
/// offers the ALPN name of `dialect`: for the examples, the tests and Rust clients.
///
/// # Errors
///
/// A root is not a usable certificate.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    dialect: Dialect,
) -> Result<quinn::ClientConfig, QuicError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(store)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn(dialect)];
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|e| QuicError::Tls(rustls::Error::General(e.to_string())))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{DEV_NAMES, TlsIdentity};

    #[test]
    fn alpn_names_map_back_to_their_dialects() {
        assert_eq!(alpn(Dialect::Json), b"switchyard-json");
        assert_eq!(alpn(Dialect::Signaller), b"switchyard-rtc-signaller");
        assert_eq!(alpn(Dialect::Broadcaster), b"switchyard-broadcaster");
        for dialect in Dialect::ALL {
            assert_eq!(dialect_of(&alpn(dialect)), Some(dialect));
        }
        assert_eq!(dialect_of(b"h3"), None);
    }

    #[test]
    fn a_dev_certificate_makes_the_quic_server_and_client_configs() {
        let dev = TlsIdentity::self_signed(&DEV_NAMES).expect("dev certificate");
        let resolver = CertResolver::new(&dev).expect("the key fits");
        assert!(server_crypto(&resolver).is_ok());
        assert!(client_config(std::slice::from_ref(dev.certificate()), Dialect::Json).is_ok());
    }
}
