//! Signing keys: the [`Algorithm`] fixed per key, the [`SigningKey`] itself
//! (an HMAC secret or a [`PublicKey`]) and the [`KeySet`] a verifier selects
//! from by `kid`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PublicKey, TokenError};

/// Why a set of signing keys could not be built.
///
/// Exists to catch configuration mistakes at startup instead of at the first
/// token.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// No keys were given.
    #[error("no signing keys configured")]
    NoKeys,
    /// A key has an empty `kid`.
    #[error("signing key with empty kid")]
    EmptyKid,
    /// Two keys share a `kid`.
    #[error("duplicate signing key id {0:?}")]
    DuplicateKid(String),
    /// An HMAC key has an empty secret.
    #[error("signing key {0:?} has an empty secret")]
    EmptySecret(String),
    /// A key of a public-key algorithm (RS256, ES256, EdDSA) has no public key.
    #[error("signing key {0:?} uses a public-key algorithm but has no public key")]
    MissingPublicKey(String),
    /// An HMAC key also carries a public key, or a public-key one a secret: a
    /// key holds exactly one kind of material, so which one verifies is never
    /// in doubt.
    #[error("signing key {0:?} holds both a secret and a public key")]
    MixedMaterial(String),
    /// The public key was parsed for another algorithm than the key names.
    #[error("signing key {kid:?} is configured for {configured} but its public key is for {key}")]
    AlgorithmMismatch {
        /// The key's id.
        kid: String,
        /// [`SigningKey::algorithm`].
        configured: Algorithm,
        /// [`PublicKey::algorithm`].
        key: Algorithm,
    },
}

/// The algorithms a key may be configured with.
///
/// Exists so the algorithm is fixed per key by configuration (or by the JWK a
/// key came from), never by the token header; serialized as `"HS256"` etc.,
/// parsed case-insensitively (`"hs256"` and `"eddsa"` are accepted).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256 (shared secret).
    HS256,
    /// HMAC with SHA-384 (shared secret).
    HS384,
    /// HMAC with SHA-512 (shared secret).
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA keys of 2048 to 8192 bits.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in a fixed order.
    const ALL: [Self; 6] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::ES256,
        Self::EdDSA,
    ];

    /// The JOSE name (`"HS256"` …), as it appears in a token header.
    ///
    /// Exists for header comparison and serialization.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// True for the shared-secret (HMAC) algorithms.
    ///
    /// Exists because a key of these holds a secret and can sign; the others
    /// hold a [`PublicKey`] and only verify.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    pub(super) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
            Self::HS384 => jsonwebtoken::Algorithm::HS384,
            Self::HS512 => jsonwebtoken::Algorithm::HS512,
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unsupported algorithm {s:?} (expected HS256, HS384, HS512, RS256, ES256 or EdDSA)"
                )
            })
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One key that tokens are verified with: a shared secret (HS256/384/512),
/// which can also sign, or a [`PublicKey`] (RS256, ES256, EdDSA), which only
/// verifies.
///
/// Exists so several keys can be live at once (rotation) and so each key
/// carries its own algorithm, expected audience and forced tenant. `Debug`
/// prints neither the secret nor the public key. [`KeySet::new`] checks that
/// the material fits the algorithm: an HMAC key has a non-empty `secret` and
/// no `public_key`; any other has a `public_key` parsed for its algorithm and
/// an empty `secret`.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id, matched against the token header's `kid`.
    pub kid: String,
    /// The HMAC secret; empty for a public-key algorithm.
    pub secret: Vec<u8>,
    /// The only algorithm accepted for tokens under this key.
    pub algorithm: Algorithm,
    /// The public key of an RS256, ES256 or EdDSA key; `None` for HMAC.
    pub public_key: Option<PublicKey>,
    /// If set, tokens must list this audience in `aud`.
    pub audience: Option<String>,
    /// If set, every token signed by this key belongs to this tenant.
    pub tenant: Option<String>,
}

impl SigningKey {
    /// A verify-only key under `kid` for `public_key`, whose algorithm it takes;
    /// no audience, no tenant.
    ///
    /// Exists so a public key cannot be paired with another algorithm by
    /// mistake.
    pub fn public(kid: impl Into<String>, public_key: PublicKey) -> Self {
        Self {
            kid: kid.into(),
            secret: Vec::new(),
            algorithm: public_key.algorithm(),
            public_key: Some(public_key),
            audience: None,
            tenant: None,
        }
    }

    /// The material tokens under this key are verified with, checked against
    /// the key's algorithm.
    fn decoding(&self) -> Result<DecodingKey, KeySetError> {
        let kid = || self.kid.clone();
        match (&self.public_key, self.algorithm.is_hmac()) {
            (None, true) if self.secret.is_empty() => Err(KeySetError::EmptySecret(kid())),
            (None, true) => Ok(DecodingKey::from_secret(&self.secret)),
            (None, false) => Err(KeySetError::MissingPublicKey(kid())),
            (Some(_), true) => Err(KeySetError::MixedMaterial(kid())),
            (Some(_), false) if !self.secret.is_empty() => Err(KeySetError::MixedMaterial(kid())),
            (Some(pk), false) if pk.algorithm() != self.algorithm => {
                Err(KeySetError::AlgorithmMismatch {
                    kid: kid(),
                    configured: self.algorithm,
                    key: pk.algorithm(),
                })
            }
            (Some(pk), false) => Ok(pk.decoding().clone()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field(
                "public_key",
                &self.public_key.as_ref().map(|_| "<public key>"),
            )
            .field("audience", &self.audience)
            .field("tenant", &self.tenant)
            .finish()
    }
}

pub(super) struct KeyEntry {
    pub(super) key: SigningKey,
    pub(super) decoding: DecodingKey,
}

/// The set of keys a [`Verifier`](super::Verifier) accepts, indexed by `kid`.
///
/// Exists to hold several live keys during rotation and to precompute the
/// per-key verification state once.
pub struct KeySet {
    entries: Vec<KeyEntry>,
    by_kid: BTreeMap<String, usize>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.key))
            .finish()
    }
}

impl KeySet {
    /// Builds a key set; rejects an empty list, empty kids, duplicate kids and
    /// material that does not fit a key's algorithm (see [`SigningKey`]).
    ///
    /// Exists so misconfiguration fails at startup.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeySetError> {
        if keys.is_empty() {
            return Err(KeySetError::NoKeys);
        }
        let mut entries = Vec::with_capacity(keys.len());
        let mut by_kid = BTreeMap::new();
        for key in keys {
            if key.kid.is_empty() {
                return Err(KeySetError::EmptyKid);
            }
            let decoding = key.decoding()?;
            if by_kid.insert(key.kid.clone(), entries.len()).is_some() {
                return Err(KeySetError::DuplicateKid(key.kid));
            }
            entries.push(KeyEntry { key, decoding });
        }
        Ok(Self { entries, by_kid })
    }

    /// The key with this `kid`, if configured.
    ///
    /// Exists for the mint endpoint and the `gentoken` tool to pick a key.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.by_kid.get(kid).map(|&i| &self.entries[i].key)
    }

    /// All configured keys, in configuration order.
    ///
    /// Exists for diagnostics and for choosing a default minting key.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        self.entries.iter().map(|e| &e.key)
    }

    /// Number of configured keys (never zero).
    ///
    /// Exists for diagnostics.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false (a `KeySet` has at least one key); provided for API
    /// completeness next to [`KeySet::len`].
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn select(&self, kid: Option<&str>) -> Result<&KeyEntry, TokenError> {
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .map(|&i| &self.entries[i])
                .ok_or(TokenError::UnknownKid),
            None if self.entries.len() == 1 => Ok(&self.entries[0]),
            None => Err(TokenError::MissingKid),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::token::test_support::*;

    #[test]
    fn key_set_rejects_misconfiguration() {
        assert_eq!(KeySet::new(vec![]).unwrap_err(), KeySetError::NoKeys);
        assert_eq!(
            KeySet::new(vec![key("", "s", Algorithm::HS256)]).unwrap_err(),
            KeySetError::EmptyKid
        );
        assert_eq!(
            KeySet::new(vec![key("a", "", Algorithm::HS256)]).unwrap_err(),
            KeySetError::EmptySecret("a".into())
        );
        assert_eq!(
            KeySet::new(vec![k1(), k1()]).unwrap_err(),
            KeySetError::DuplicateKid("k1".into())
        );
        let ks = KeySet::new(vec![k1(), k2()]).unwrap();
        assert_eq!(ks.len(), 2);
        assert!(!ks.is_empty());
        assert_eq!(ks.get("k2").unwrap().algorithm, Algorithm::HS512);
        assert!(ks.get("k3").is_none());
        assert_eq!(
            ks.keys().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["k1", "k2"]
        );
        assert!(!format!("{ks:?}").contains("first-secret"));
    }

    #[test]
    fn algorithm_serde() {
        let a: Algorithm = serde_json::from_value(json!("HS256")).unwrap();
        assert_eq!(a, Algorithm::HS256);
        let a: Algorithm = serde_json::from_value(json!("hs512")).unwrap();
        assert_eq!(a, Algorithm::HS512);
        let a: Algorithm = serde_json::from_value(json!("eddsa")).unwrap();
        assert_eq!(a, Algorithm::EdDSA);
        for refused in ["none", "RS384", "PS256", "ES384", "HS1"] {
            assert!(serde_json::from_value::<Algorithm>(json!(refused)).is_err());
        }
        assert!(Algorithm::ALL.iter().filter(|a| a.is_hmac()).count() == 3);
        assert_eq!(
            serde_json::to_value(Algorithm::HS384).unwrap(),
            json!("HS384")
        );
    }
}
