//! [`PublicKey`]: the verify-only material of an RS256, ES256 or EdDSA key,
//! parsed from the bytes the driver read (a PEM file, a JWK's components) and
//! checked against its algorithm once, when the key set is built.
//!
//! Implementation note: `jsonwebtoken` is built without its `use_pem` feature
//! (it would pull a second PEM and an ASN.1 crate), so the PEM armour is
//! removed here with the `pem` crate already in the tree, and the DER inside is
//! checked with aws-lc-rs, the backend `jsonwebtoken` verifies with. The
//! `DecodingKey` keeps that same DER, which aws-lc-rs parses again at each
//! verification.

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey};
use jsonwebtoken::DecodingKey;

use super::Algorithm;

/// Smallest RSA modulus accepted, in bits (what aws-lc-rs's RS256 verifies).
const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
const RSA_MAX_BITS: usize = 8192;

/// Why bytes are not a public key for an algorithm.
///
/// Exists so a wrong file is refused at startup (or at reload) with a message
/// that says what to give instead.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// The algorithm is an HMAC one: its key is a secret, not a public key.
    #[error("{0} keys are shared secrets, not public keys")]
    NotPublicKeyAlgorithm(Algorithm),
    /// Not PEM text, or more than one PEM block.
    #[error("not a PEM file holding exactly one public key")]
    NotPem,
    /// A PEM certificate.
    #[error(
        "a certificate, not a public key (extract it with `openssl x509 -pubkey -noout -in CERT`)"
    )]
    Certificate,
    /// A PEM private key.
    #[error("a private key: give the server its public key only (`openssl pkey -pubout -in KEY`)")]
    PrivateKey,
    /// A PEM block of another kind.
    #[error("a PEM {0:?} block, expected \"PUBLIC KEY\"")]
    Label(String),
    /// The key is not one the algorithm can verify with: another key type, another
    /// curve, an RSA modulus out of range, or bytes that do not parse.
    #[error("not {algorithm} public key: {why}")]
    Rejected {
        /// The algorithm the key was parsed for.
        algorithm: Algorithm,
        /// What is wrong.
        why: String,
    },
}

/// A public key fixed to one algorithm: RS256, ES256 or EdDSA.
///
/// Exists so the binary can hand the core key material it read from files,
/// already checked, without the core doing any IO. `Debug` prints the
/// algorithm only.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: Algorithm,
    decoding: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses a PEM file's text: one `PUBLIC KEY` block (SubjectPublicKeyInfo), or
    /// for RS256 also `RSA PUBLIC KEY` (PKCS#1). Certificates and private keys are
    /// refused with a message saying how to get the public key out of them.
    ///
    /// Exists for `public_key_file` in the server's config.
    pub fn from_pem(algorithm: Algorithm, pem_text: &[u8]) -> Result<Self, PublicKeyError> {
        let blocks = pem::parse_many(pem_text).map_err(|_| PublicKeyError::NotPem)?;
        let [block] = blocks.as_slice() else {
            return Err(PublicKeyError::NotPem);
        };
        match block.tag() {
            "PUBLIC KEY" => {}
            "RSA PUBLIC KEY" if algorithm == Algorithm::RS256 => {}
            "CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE" => {
                return Err(PublicKeyError::Certificate);
            }
            tag if tag.ends_with("PRIVATE KEY") => return Err(PublicKeyError::PrivateKey),
            tag => return Err(PublicKeyError::Label(tag.to_owned())),
        }
        Self::from_der(algorithm, block.contents())
    }

    /// Parses DER: a SubjectPublicKeyInfo for any algorithm; for RS256 also a
    /// PKCS#1 `RSAPublicKey`, for ES256 also an uncompressed P-256 point and for
    /// EdDSA also the raw 32-byte Ed25519 key.
    ///
    /// Exists for keys that arrive without PEM armour (a JWK's components).
    pub fn from_der(algorithm: Algorithm, der: &[u8]) -> Result<Self, PublicKeyError> {
        let rejected = |why: String| PublicKeyError::Rejected { algorithm, why };
        let decoding = match algorithm {
            Algorithm::RS256 => {
                let key = aws_lc_rs::rsa::PublicKey::from_der(der)
                    .map_err(|e| rejected(format!("not an RSA public key ({e})")))?;
                let bits = key.modulus_len() * 8;
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(rejected(format!(
                        "a {bits}-bit RSA key; {RSA_MIN_BITS} to {RSA_MAX_BITS} bits are accepted"
                    )));
                }
                DecodingKey::from_rsa_der(der)
            }
            Algorithm::ES256 => {
                ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, der)
                    .map_err(|e| rejected(format!("not a P-256 public key ({e})")))?;
                DecodingKey::from_ec_der(der)
            }
            Algorithm::EdDSA => {
                ParsedPublicKey::new(&ED25519, der)
                    .map_err(|e| rejected(format!("not an Ed25519 public key ({e})")))?;
                DecodingKey::from_ed_der(der)
            }
            hmac => return Err(PublicKeyError::NotPublicKeyAlgorithm(hmac)),
        };
        Ok(Self {
            algorithm,
            decoding,
        })
    }

    /// The algorithm this key verifies, and the only one it ever will.
    ///
    /// Exists so [`SigningKey::public`](super::SigningKey::public) can take it.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(super) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    use super::*;
    use crate::testing::keys::TestKeyPair;

    const PUBLIC: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    fn pem_of(tag: &str, der: &[u8]) -> String {
        pem::encode(&pem::Pem::new(tag, der.to_vec()))
    }

    #[test]
    fn pem_public_keys_parse_for_their_algorithm() {
        for alg in PUBLIC {
            let pair = TestKeyPair::get(alg);
            let key = PublicKey::from_pem(alg, pair.public_pem().as_bytes()).unwrap();
            assert_eq!(key.algorithm(), alg);
            assert_eq!(
                format!("{key:?}"),
                format!("PublicKey {{ algorithm: {alg:?}, .. }}")
            );
        }
        // PKCS#1 (`RSA PUBLIC KEY`) for RS256: aws-lc-rs's `AsRef` of an RSA public
        // key is that encoding.
        let Ok(rsa) =
            aws_lc_rs::rsa::PublicKey::from_der(&TestKeyPair::get(Algorithm::RS256).public_der())
        else {
            panic!("own RSA key");
        };
        let pkcs1 = pem_of("RSA PUBLIC KEY", rsa.as_ref());
        assert!(PublicKey::from_pem(Algorithm::RS256, pkcs1.as_bytes()).is_ok());
    }

    #[test]
    fn pem_of_the_wrong_type_is_refused() {
        let pem = |alg| TestKeyPair::get(alg).public_pem();
        for key_alg in PUBLIC {
            for as_alg in PUBLIC.into_iter().filter(|a| *a != key_alg) {
                assert!(
                    matches!(
                        PublicKey::from_pem(as_alg, pem(key_alg).as_bytes()),
                        Err(PublicKeyError::Rejected { algorithm, .. }) if algorithm == as_alg
                    ),
                    "{key_alg} key accepted as {as_alg}"
                );
            }
        }
        // A P-384 key is not an ES256 key.
        let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let p384 = pem_of("PUBLIC KEY", p384.public_key().as_der().unwrap().as_ref());
        assert!(matches!(
            PublicKey::from_pem(Algorithm::ES256, p384.as_bytes()),
            Err(PublicKeyError::Rejected { .. })
        ));
        // A 1024-bit RSA key is too small.
        let mut n = vec![0xC5u8; 128];
        n[127] = 0x01;
        let small = aws_lc_rs::rsa::PublicKeyComponents {
            n,
            e: vec![1, 0, 1],
        };
        let small = pem_of("PUBLIC KEY", small.as_der().unwrap().as_ref());
        let err = PublicKey::from_pem(Algorithm::RS256, small.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("1024-bit"), "{err}");
        // Other armour, other blocks, no PEM at all.
        let der = TestKeyPair::get(Algorithm::ES256).public_der();
        let refused = [
            (pem_of("CERTIFICATE", &der), PublicKeyError::Certificate),
            (pem_of("PRIVATE KEY", &der), PublicKeyError::PrivateKey),
            (pem_of("EC PRIVATE KEY", &der), PublicKeyError::PrivateKey),
            (
                pem_of("RSA PUBLIC KEY", &der),
                PublicKeyError::Label("RSA PUBLIC KEY".into()),
            ),
            (pem_of("PUBLIC KEY", &der).repeat(2), PublicKeyError::NotPem),
            ("not a pem file".to_owned(), PublicKeyError::NotPem),
            (String::new(), PublicKeyError::NotPem),
        ];
        for (text, want) in refused {
            assert_eq!(
                PublicKey::from_pem(Algorithm::ES256, text.as_bytes()).unwrap_err(),
                want
            );
        }
        assert_eq!(
            PublicKey::from_pem(Algorithm::HS256, pem(Algorithm::RS256).as_bytes()).unwrap_err(),
            PublicKeyError::NotPublicKeyAlgorithm(Algorithm::HS256)
        );
        assert!(
            PublicKeyError::Certificate
                .to_string()
                .contains("openssl x509 -pubkey")
        );
    }
}
