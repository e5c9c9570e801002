//! The QUIC listener's TLS: its certificate and key, the rustls configs on aws-lc-rs
//! (the tree's one crypto backend), and ALPN.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls::crypto::CryptoProvider;
use quinn::rustls::pki_types::pem::PemObject;
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use quinn::rustls::server::{ClientHello, ResolvesServerCert};
use quinn::rustls::sign::CertifiedKey;
use quinn::rustls::{self, RootCertStore};
use switchyard_core::Dialect;

use super::QuicError;

/// The names a self-signed dev certificate is valid for.
pub const DEV_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What the listener presents in the TLS handshake: a certificate chain and its key.
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
    pub fn from_pem_files(cert_file: &Path, key_file: &Path) -> Result<Self, QuicError> {
        let chain = CertificateDer::pem_file_iter(cert_file)
            .and_then(Iterator::collect)
            .map_err(|e| QuicError::Pem(format!("{}: {e}", cert_file.display())))?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| QuicError::Pem(format!("{}: {e}", key_file.display())))?;
        Self::new(chain, key)
    }

    /// The same from PEM text in memory.
    ///
    /// # Errors
    ///
    /// No certificate, or no key, in the text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, QuicError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QuicError::Pem(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| QuicError::Pem(format!("key: {e}")))?;
        Self::new(chain, key)
    }

    /// A fresh self-signed certificate for `names` (DNS names or IP addresses), for
    /// development: clients must be told to trust it ([`TlsIdentity::certificate_pem`],
    /// [`TlsIdentity::fingerprint`]).
    ///
    /// # Errors
    ///
    /// A name is neither a DNS name nor an IP address.
    pub fn self_signed(names: &[&str]) -> Result<Self, QuicError> {
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| QuicError::Certificate(e.to_string()))?;
        let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        Self::new(vec![generated.cert.der().clone()], key.into())
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, QuicError> {
        if chain.is_empty() {
            return Err(QuicError::Pem("no certificate found".into()));
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
    pub fn rustls_server_config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, QuicError> {
        CertResolver::new(self)?.rustls_server_config(alpn)
    }

    /// The certificate and its parsed key, checked to belong together.
    fn certified_key(&self) -> Result<Arc<CertifiedKey>, QuicError> {
        let key = CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider())?;
        Ok(Arc::new(key))
    }
}

/// The certificate a TLS listener presents, replaceable while it runs: rustls asks for
/// the current one on every handshake, so a renewed certificate (a SIGHUP after
/// certbot ran) reaches new connections while established ones keep theirs.
///
/// One resolver can serve several listeners; [`CertResolver::rustls_server_config`]
/// builds the TCP side and [`server_config_with`](super::server_config_with) the QUIC
/// side.
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
    pub fn new(identity: &TlsIdentity) -> Result<Arc<Self>, QuicError> {
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
    pub fn replace(&self, identity: &TlsIdentity) -> Result<(), QuicError> {
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
    ) -> Result<Arc<rustls::ServerConfig>, QuicError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        tls.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
        Ok(Arc::new(tls))
    }

    /// The rustls server side for QUIC: TLS 1.3 only, one ALPN name per dialect.
    pub(super) fn server_crypto(self: &Arc<Self>) -> Result<QuicServerConfig, QuicError> {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        tls.alpn_protocols = Dialect::ALL.into_iter().map(alpn).collect();
        QuicServerConfig::try_from(tls)
            .map_err(|e| QuicError::Tls(rustls::Error::General(e.to_string())))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// The ALPN name of `dialect` on QUIC: `switchyard-` and the dialect's name
/// (`switchyard-rtc-signaller`, `switchyard-json`).
pub fn alpn(dialect: Dialect) -> Vec<u8> {
    format!("switchyard-{}", dialect.name()).into_bytes()
}

/// The dialect an ALPN name stands for.
pub(super) fn dialect_of(alpn_name: &[u8]) -> Option<Dialect> {
    Dialect::ALL.into_iter().find(|&d| alpn(d) == alpn_name)
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

/// aws-lc-rs, explicitly: the process-wide default provider may be unset, or ring's in
/// a program that links both.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_dev_certificate_round_trips_through_pem() {
        let dev = TlsIdentity::self_signed(&DEV_NAMES).expect("dev certificate");
        let pem = dev.certificate_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let parsed = CertificateDer::from_pem_slice(pem.as_bytes()).expect("parse back");
        assert_eq!(&parsed, dev.certificate());
        let fingerprint = dev.fingerprint();
        assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
        let resolver = CertResolver::new(&dev).expect("the key fits");
        assert!(resolver.server_crypto().is_ok());
        assert!(client_config(std::slice::from_ref(dev.certificate()), Dialect::Json).is_ok());
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
