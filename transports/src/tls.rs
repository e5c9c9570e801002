//! TLS for both listeners that speak it: `wss://` and `https://` on the WebSocket port
//! ([`crate::ws`]) and QUIC ([`crate::quic`]), on aws-lc-rs (the tree's one crypto
//! backend).
//!
//! What the two share lives here: the certificate chain and its key
//! ([`TlsIdentity`], read from PEM or self-signed for development) and the certificate
//! a running listener presents, which a reload replaces without a restart
//! ([`CertResolver`]). Each listener builds its own rustls config from a resolver: the
//! WebSocket port with [`CertResolver::rustls_server_config`] and [`crate::ws::ALPN`],
//! QUIC with [`quic::server_config_with`](crate::quic::server_config_with) (TLS 1.3
//! only, one ALPN name per dialect).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// The names a self-signed dev certificate is valid for.
pub const DEV_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file is unreadable, or holds no certificate or key.
    #[error("PEM: {0}")]
    Pem(String),
    /// The dev certificate could not be generated.
    #[error("certificate generation: {0}")]
    Certificate(String),
    /// rustls refused the certificate or the key (a key of another certificate, say).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What a listener presents in the TLS handshake: a certificate chain and its key.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive() // never the key
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1), as written by certbot, mkcert or openssl.
    ///
    /// # Errors
    ///
    /// A file cannot be read, holds no certificate or no key.
    pub fn from_pem_files(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert_file)
            .and_then(Iterator::collect)
            .map_err(|e| TlsError::Pem(format!("{}: {e}", cert_file.display())))?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| TlsError::Pem(format!("{}: {e}", key_file.display())))?;
        Self::new(chain, key)
    }

    /// The same from PEM text in memory.
    ///
    /// # Errors
    ///
    /// No certificate, or no key, in the text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Pem(format!("key: {e}")))?;
        Self::new(chain, key)
    }

    /// A fresh self-signed certificate for `names` (DNS names or IP addresses), for
    /// development: clients must be told to trust it ([`TlsIdentity::certificate_pem`],
    /// [`TlsIdentity::fingerprint`]).
    ///
    /// # Errors
    ///
    /// A name is neither a DNS name nor an IP address.
    pub fn self_signed(names: &[&str]) -> Result<Self, TlsError> {
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        Self::new(vec![generated.cert.der().clone()], key.into())
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        if chain.is_empty() {
            return Err(TlsError::Pem("no certificate found".into()));
        }
        Ok(Self { chain, key })
    }

    /// The leaf certificate, DER-encoded.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        // Invariant: `new` refuses an empty chain.
        &self.chain[0]
    }

    /// The leaf certificate as PEM: what a client adds to its trusted roots.
    pub fn certificate_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.certificate().to_vec()))
    }

    /// The SHA-256 fingerprint of the leaf certificate, as `AB:CD:…` (what
    /// `openssl x509 -fingerprint -sha256` prints), to check a dev certificate by eye.
    pub fn fingerprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.certificate());
        let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }

    /// A rustls server config for TCP listeners (the WebSocket/HTTP port) presenting
    /// this identity, on aws-lc-rs, offering the ALPN names `alpn` (`[b"http/1.1"]`
    /// there; empty: no ALPN). QUIC builds its own (one ALPN name per dialect). To
    /// replace the certificate later without a restart, use [`CertResolver`].
    ///
    /// # Errors
    ///
    /// rustls refused the certificate or the key (a key that does not match, say).
    pub fn rustls_server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        CertResolver::new(self)?.rustls_server_config(alpn)
    }

    /// The certificate and its parsed key, checked to belong together.
    fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let key = CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider())?;
        Ok(Arc::new(key))
    }
}

/// The certificate a TLS listener presents, replaceable while it runs: rustls asks for
/// the current one on every handshake, so a renewed certificate (a SIGHUP after
/// certbot ran) reaches new connections while established ones keep theirs.
///
/// One resolver can serve several listeners; [`CertResolver::rustls_server_config`]
/// builds the TCP side and [`quic::server_config_with`](crate::quic::server_config_with)
/// the QUIC side.
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive() // never the key
    }
}

impl CertResolver {
    /// A resolver presenting `identity` until [`CertResolver::replace`].
    ///
    /// # Errors
    ///
    /// The key cannot be parsed, or does not belong to the certificate.
    pub fn new(identity: &TlsIdentity) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(identity.certified_key()?),
        }))
    }

    /// Presents `identity` from the next handshake on. On an error the old
    /// certificate stays.
    ///
    /// # Errors
    ///
    /// As [`CertResolver::new`].
    pub fn replace(&self, identity: &TlsIdentity) -> Result<(), TlsError> {
        let next = identity.certified_key()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }

    /// A rustls server config for TCP listeners presenting whatever this resolver
    /// holds, offering the ALPN names `alpn`.
    ///
    /// # Errors
    ///
    /// rustls refused the protocol versions (never, with aws-lc-rs).
    pub fn rustls_server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let mut tls = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        tls.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
        Ok(Arc::new(tls))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// aws-lc-rs, explicitly: the process-wide default provider may be unset, or ring's in
/// a program that links both.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_certificate_round_trips_through_pem() {
        let dev = TlsIdentity::self_signed(&DEV_NAMES).expect("dev certificate");
        let pem = dev.certificate_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let parsed = CertificateDer::from_pem_slice(pem.as_bytes()).expect("parse back");
        assert_eq!(&parsed, dev.certificate());
        let fingerprint = dev.fingerprint();
        assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
        let resolver = CertResolver::new(&dev).expect("the key fits");
        assert!(resolver.rustls_server_config(&crate::ws::ALPN).is_ok());
    }

    #[test]
    fn a_resolver_refuses_a_key_of_another_certificate_and_keeps_the_old_one() {
        let first = TlsIdentity::self_signed(&DEV_NAMES).expect("dev certificate");
        let second = TlsIdentity::self_signed(&DEV_NAMES).expect("dev certificate");
        let resolver = CertResolver::new(&first).expect("the key fits");
        let current = || resolver.current.read().expect("not poisoned").cert[0].clone();
        assert_eq!(&current(), first.certificate());

        let mismatched = TlsIdentity {
            chain: second.chain.clone(),
            key: first.key.clone_key(),
        };
        assert!(CertResolver::new(&mismatched).is_err());
        assert!(resolver.replace(&mismatched).is_err());
        assert_eq!(
            &current(),
            first.certificate(),
            "a failed replace keeps the old one"
        );

        resolver.replace(&second).expect("a matching pair");
        assert_eq!(&current(), second.certificate());
    }
}
