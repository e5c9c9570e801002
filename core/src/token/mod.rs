//! JWT verification and minting with caller-supplied time.
//!
//! `jsonwebtoken` is used only for the signature check
//! (`jsonwebtoken::crypto::verify`, HMAC or public key) and for signing. Its `decode`/`Validation`
//! path is not used at all: that path reads the system clock and runs its own
//! claim parser. Header, payload, `exp`, `nbf` and `aud` are handled here
//! against the `unix_now` the caller passes in, which keeps the server core
//! deterministic and testable.
//!
//! The accepted algorithm comes from the key's configuration, never from the
//! token header, so `alg: none` and algorithm-confusion tokens are refused
//! before any cryptography runs. The only parts of the header read are `alg`,
//! `kid` and `crit`: keys embedded or referenced there (`jwk`, `jku`, `x5u`,
//! `x5c`) are never used.
//!
//! Layout: `keys` (algorithms, signing keys, the key set), `public` (the
//! [`PublicKey`] of an RS256, ES256 or EdDSA key, from PEM or DER), `jwks` (a JSON
//! Web Key Set's keys), `permissions` (the
//! grant bitset), `claims` (the validated claims and the claim parser) and
//! `verify` (the [`Verifier`], header parsing and [`mint`]). Every public item
//! is re-exported here, so `crate::token::X` is the only path callers use.

mod claims;
#[cfg(test)]
mod confusion_tests;
mod jwks;
mod keys;
mod permissions;
mod public;
#[cfg(test)]
mod test_support;
mod verify;

pub use claims::{Claims, MAX_ID_CHARS};
pub use jwks::{Jwks, JwksError, SkippedJwk};
pub use keys::{Algorithm, KeySet, KeySetError, SigningKey};
pub use permissions::Permissions;
pub use public::{PublicKey, PublicKeyError};
pub use verify::{
    DEFAULT_LEEWAY_SECS, DEFAULT_MAX_CHANNEL_LEN, DEFAULT_MAX_TOKEN_LEN, Verifier, mint,
};

/// Why a token was refused.
///
/// Exists so the connection layer can answer with a stable, specific reason
/// and count refusals per reason (see [`TokenError::reason`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS (three base64url parts, JSON header and
    /// payload), or too long, or uses an unsupported header feature (`crit`).
    #[error("malformed token")]
    Malformed,
    /// The header has no `kid` and the verifier holds more than one key.
    #[error("token has no key id")]
    MissingKid,
    /// The header's `kid` names no configured key.
    #[error("unknown key id")]
    UnknownKid,
    /// The header says `alg: none` (unsigned token).
    #[error("unsigned tokens (alg none) are not accepted")]
    AlgNone,
    /// The header's `alg` differs from the algorithm configured for the key.
    #[error("token algorithm does not match the key")]
    WrongAlgorithm,
    /// The signature does not verify with the selected key.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token has no `exp` and the verifier requires one.
    #[error("token has no expiry")]
    MissingExp,
    /// The key requires an audience the token does not name.
    #[error("token audience mismatch")]
    WrongAudience,
    /// A claim is missing, of the wrong type or has an invalid value.
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
}

impl TokenError {
    /// A stable snake_case label for metrics and logs.
    ///
    /// Exists so dashboards don't depend on the human-readable messages.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::AlgNone => "alg_none",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingExp => "missing_exp",
            Self::WrongAudience => "wrong_audience",
            Self::InvalidClaims(_) => "invalid_claims",
        }
    }

    /// True for [`TokenError::Expired`].
    ///
    /// Exists so clients can be told to refresh their token rather than treat
    /// the refusal as final.
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired)
    }
}

/// A [`TokenError::InvalidClaims`] with this message; shared by the claim
/// parser and [`mint`].
fn invalid(msg: &str) -> TokenError {
    TokenError::InvalidClaims(msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reasons() {
        let all = [
            TokenError::Malformed,
            TokenError::MissingKid,
            TokenError::UnknownKid,
            TokenError::AlgNone,
            TokenError::WrongAlgorithm,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::MissingExp,
            TokenError::WrongAudience,
            TokenError::InvalidClaims("x".into()),
        ];
        let reasons: std::collections::BTreeSet<_> = all.iter().map(TokenError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(TokenError::UnknownKid.reason(), "unknown_kid");
        assert!(all.iter().all(|e| !e.to_string().is_empty()));
        assert_eq!(all.iter().filter(|e| e.is_expired()).count(), 1);
    }
}
