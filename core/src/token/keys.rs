//! Signing keys: the HMAC [`Algorithm`] fixed per key, the [`SigningKey`]
//! itself and the [`KeySet`] a verifier selects from by `kid`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TokenError;

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
    /// A key has an empty secret.
    #[error("signing key {0:?} has an empty secret")]
    EmptySecret(String),
}

/// The HMAC algorithms a key may be configured with.
///
/// Exists so the algorithm is fixed per key by configuration; serialized as
/// `"HS256"` etc., parsed case-insensitively (`"hs256"` is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl Algorithm {
    /// The JOSE name (`"HS256"` …), as it appears in a token header.
    ///
    /// Exists for header comparison and serialization.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    pub(super) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
            Self::HS384 => jsonwebtoken::Algorithm::HS384,
            Self::HS512 => jsonwebtoken::Algorithm::HS512,
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
        [Self::HS256, Self::HS384, Self::HS512]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unsupported algorithm {s:?} (expected HS256, HS384 or HS512)"))
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

/// One shared-secret key that may sign and verify tokens.
///
/// Exists so several keys can be live at once (rotation) and so each key
/// carries its own algorithm, expected audience and forced tenant. `Debug`
/// does not print the secret.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id, matched against the token header's `kid`.
    pub kid: String,
    /// The HMAC secret.
    pub secret: Vec<u8>,
    /// The only algorithm accepted for tokens under this key.
    pub algorithm: Algorithm,
    /// If set, tokens must list this audience in `aud`.
    pub audience: Option<String>,
    /// If set, every token signed by this key belongs to this tenant.
    pub tenant: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
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
    /// Builds a key set; rejects an empty list, empty kids or secrets, and
    /// duplicate kids.
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
            if key.secret.is_empty() {
                return Err(KeySetError::EmptySecret(key.kid));
            }
            if by_kid.insert(key.kid.clone(), entries.len()).is_some() {
                return Err(KeySetError::DuplicateKid(key.kid));
            }
            entries.push(KeyEntry {
                decoding: DecodingKey::from_secret(&key.secret),
                key,
            });
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
        assert!(serde_json::from_value::<Algorithm>(json!("RS256")).is_err());
        assert!(serde_json::from_value::<Algorithm>(json!("none")).is_err());
        assert_eq!(
            serde_json::to_value(Algorithm::HS384).unwrap(),
            json!("HS384")
        );
    }
}
