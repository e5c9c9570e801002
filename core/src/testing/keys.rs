//! Key pairs for RS256, ES256 and EdDSA tokens in tests: generated with aws-lc-rs
//! (the backend the verifier uses), once per process and algorithm, and a signer
//! that writes any header, so tests can build the tokens an attacker would.
//!
//! ```
//! use switchyard_core::testing::keys::TestKeyPair;
//! use switchyard_core::token::{Algorithm, KeySet, Verifier};
//!
//! let pair = TestKeyPair::get(Algorithm::ES256);
//! let v = Verifier::new(KeySet::new(vec![pair.signing_key("es")]).unwrap());
//! let token = pair.token("es", &serde_json::json!({"sub": "alice", "exp": 2_000_000_000u64}));
//! assert_eq!(v.verify(&token, 1_700_000_000).unwrap().sub, "alice");
//! ```

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::token::{Algorithm, PublicKey, SigningKey};

/// The private half of a test key.
enum Private {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A generated key pair for one public-key algorithm.
pub struct TestKeyPair {
    algorithm: Algorithm,
    private: Private,
}

impl TestKeyPair {
    /// This process's key pair for `algorithm` (RS256, ES256 or EdDSA), generated
    /// on first use (an RSA key takes a moment).
    ///
    /// # Panics
    /// For an HMAC algorithm.
    pub fn get(algorithm: Algorithm) -> &'static Self {
        static RS256: OnceLock<TestKeyPair> = OnceLock::new();
        static ES256: OnceLock<TestKeyPair> = OnceLock::new();
        static EDDSA: OnceLock<TestKeyPair> = OnceLock::new();
        let cell = match algorithm {
            Algorithm::RS256 => &RS256,
            Algorithm::ES256 => &ES256,
            Algorithm::EdDSA => &EDDSA,
            other => panic!("{other} has no key pair"),
        };
        cell.get_or_init(|| Self::generate(algorithm))
    }

    /// A fresh key pair for `algorithm`, not shared with anyone.
    ///
    /// # Panics
    /// For an HMAC algorithm, or if the generator fails.
    pub fn generate(algorithm: Algorithm) -> Self {
        let private = match algorithm {
            Algorithm::RS256 => Private::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA")),
            Algorithm::ES256 => Private::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256"),
            ),
            Algorithm::EdDSA => Private::Ed(Ed25519KeyPair::generate().expect("Ed25519")),
            other => panic!("{other} has no key pair"),
        };
        Self { algorithm, private }
    }

    /// The algorithm the pair signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_der(&self) -> Vec<u8> {
        // Invariant: aws-lc-rs encodes the public half of a key it generated.
        match &self.private {
            Private::Rsa(k) => k.public_key().as_der().expect("SPKI").as_ref().to_vec(),
            Private::Ec(k) => k.public_key().as_der().expect("SPKI").as_ref().to_vec(),
            Private::Ed(k) => k.public_key().as_der().expect("SPKI").as_ref().to_vec(),
        }
    }

    /// The public key as a `PUBLIC KEY` PEM file's text.
    pub fn public_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.public_der()))
    }

    /// The public key for the verifier.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_der(self.algorithm, &self.public_der()).expect("own public key")
    }

    /// A verify-only key under `kid`.
    pub fn signing_key(&self, kid: &str) -> SigningKey {
        SigningKey::public(kid, self.public_key())
    }

    /// The public key as a JWK under `kid`, with `alg` and `use: sig`.
    pub fn jwk(&self, kid: &str) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match &self.private {
            Private::Rsa(k) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Private::Ec(k) => {
                // An uncompressed point: 0x04, x, y.
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Private::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(self.algorithm.as_str());
        jwk["use"] = json!("sig");
        jwk
    }

    /// A token with the header `{"alg": <own>, "kid": kid, "typ": "JWT"}`.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": self.algorithm.as_str(), "kid": kid, "typ": "JWT"});
        self.sign(&header, claims)
    }

    /// A token with exactly `header` and `claims`, signed with this pair's private
    /// key whatever the header says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        // Invariant: signing with a key aws-lc-rs generated does not fail.
        let signature = match &self.private {
            Private::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut sig)
                    .expect("RSA signs");
                sig
            }
            Private::Ec(k) => k
                .sign(&rng, message.as_bytes())
                .expect("ECDSA signs")
                .as_ref()
                .to_vec(),
            Private::Ed(k) => k.sign(message.as_bytes()).as_ref().to_vec(),
        };
        format!("{message}.{}", b64(&signature))
    }
}
