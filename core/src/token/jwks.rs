//! [`Jwks`]: the keys of a JSON Web Key Set (RFC 7517) as [`SigningKey`]s, from
//! the bytes the driver read (the server's `jwks_file`).
//!
//! Each key's algorithm is fixed here, by the JWK itself: its `alg` when it has
//! one, else its type (`kty` RSA: RS256; EC on P-256: ES256; OKP on Ed25519:
//! EdDSA). A token's header never chooses it. The rules, in order:
//!
//! - `use` other than `sig`: skipped (an encryption key is not for tokens);
//! - an `alg` other than RS256, ES256 or EdDSA: skipped;
//! - no `kid` (or an empty one): the whole set is refused, since a token could not
//!   name that key;
//! - `kty: oct` (a shared secret): skipped; secrets are configured, never taken
//!   from a key set;
//! - an `alg` that does not fit the key's type or curve, or components that do not
//!   form a valid key: the whole set is refused;
//! - another curve (P-384, X25519 …) without an `alg`: skipped.
//!
//! Skipped keys are listed in [`Jwks::skipped`] so the driver can log them.

use aws_lc_rs::encoding::AsDer as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use serde_json::Value;

use super::verify::b64url_decode;
use super::{Algorithm, PublicKey, SigningKey};

/// Why a key set was refused as a whole.
///
/// Exists so a broken `jwks_file` fails the start or the reload (which then
/// keeps the old keys) instead of silently dropping keys.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array of objects.
    #[error("not a JSON Web Key Set: {0}")]
    NotJwks(String),
    /// A signature key without a `kid`.
    #[error("key {index} of the set has no kid")]
    MissingKid {
        /// Its position in `keys`, from 0.
        index: usize,
    },
    /// A key whose `alg` and type disagree, or whose components are invalid.
    #[error("key {kid:?}: {why}")]
    Key {
        /// The key's id.
        kid: String,
        /// What is wrong.
        why: String,
    },
}

/// A key of the set that is not used, and why.
///
/// Exists so the driver can log what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedJwk {
    /// The key's `kid`, if it has one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub why: String,
}

/// The usable keys of a JSON Web Key Set.
///
/// Exists so the driver can turn a key set file into keys for the core's
/// [`KeySet`](super::KeySet) next to the configured ones.
#[derive(Debug, Clone)]
pub struct Jwks {
    /// One verify-only key per usable JWK, in the set's order, without audience
    /// or tenant (the driver sets those).
    pub keys: Vec<SigningKey>,
    /// The keys left out.
    pub skipped: Vec<SkippedJwk>,
}

impl Jwks {
    /// Parses a key set (`{"keys": [...]}`) by the rules of this module's docs.
    ///
    /// Exists as the one place a JWK becomes a key.
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        let not_jwks = |why: &str| JwksError::NotJwks(why.to_owned());
        let doc: Value = serde_json::from_slice(json).map_err(|e| not_jwks(&e.to_string()))?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(not_jwks("no \"keys\" array"));
        };
        let mut jwks = Self {
            keys: Vec::new(),
            skipped: Vec::new(),
        };
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(map) = entry else {
                return Err(not_jwks("a key is not a JSON object"));
            };
            let kid = match map.get("kid") {
                Some(Value::String(k)) if !k.is_empty() => Some(k.clone()),
                _ => None,
            };
            let skip = |why: String| SkippedJwk {
                kid: kid.clone(),
                why,
            };
            match map.get("use") {
                None | Some(Value::Null) => {}
                Some(Value::String(u)) if u == "sig" => {}
                Some(other) => {
                    jwks.skipped.push(skip(format!("use {other} is not sig")));
                    continue;
                }
            }
            let alg = match map.get("alg") {
                None | Some(Value::Null) => None,
                Some(Value::String(a)) => match a.parse::<Algorithm>() {
                    Ok(alg) if !alg.is_hmac() && alg.as_str() == a => Some(alg),
                    _ => {
                        jwks.skipped
                            .push(skip(format!("algorithm {a:?} is not accepted")));
                        continue;
                    }
                },
                Some(other) => {
                    jwks.skipped
                        .push(skip(format!("algorithm {other} is not accepted")));
                    continue;
                }
            };
            let Some(kid) = kid else {
                return Err(JwksError::MissingKid { index });
            };
            let bad = |why: String| JwksError::Key {
                kid: kid.clone(),
                why,
            };
            let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|e| bad(e.to_string()))?;
            let public = match public_key(&jwk, alg) {
                Ok(Some(public)) => public,
                Ok(None) => {
                    jwks.skipped.push(SkippedJwk {
                        kid: Some(kid),
                        why: "not an RSA, P-256 or Ed25519 public key".into(),
                    });
                    continue;
                }
                Err(why) => return Err(bad(why)),
            };
            jwks.keys.push(SigningKey::public(kid, public));
        }
        Ok(jwks)
    }
}

/// The public key of `jwk` for `alg` (or the algorithm its type implies); `None`
/// for a type or curve no accepted algorithm uses, when `alg` does not name one.
fn public_key(jwk: &Jwk, alg: Option<Algorithm>) -> Result<Option<PublicKey>, String> {
    let decode = |what: &str, b64: &str| {
        b64url_decode(b64).ok_or_else(|| format!("{what} is not base64url"))
    };
    let (implied, der) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let components = aws_lc_rs::rsa::PublicKeyComponents {
                n: decode("n", &rsa.n)?,
                e: decode("e", &rsa.e)?,
            };
            let der = components
                .as_der()
                .map_err(|_| "n and e are not an RSA public key".to_owned())?;
            (Algorithm::RS256, der.as_ref().to_vec())
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            let (x, y) = (decode("x", &ec.x)?, decode("y", &ec.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("x and y must be 32 bytes each on P-256".into());
            }
            // An uncompressed SEC 1 point: 0x04, x, y.
            let point = [&[4u8][..], &x, &y].concat();
            (Algorithm::ES256, point)
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, decode("x", &okp.x)?)
        }
        _ => {
            return match alg {
                Some(alg) => Err(format!("alg {alg} does not fit the key's type or curve")),
                None => Ok(None),
            };
        }
    };
    if alg.is_some_and(|a| a != implied) {
        return Err(format!(
            "alg {} does not fit the key's type or curve ({implied})",
            alg.map_or("", Algorithm::as_str)
        ));
    }
    PublicKey::from_der(implied, &der)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::keys::TestKeyPair;
    use crate::token::test_support::{NOW, base_claims};
    use crate::token::{KeySet, TokenError, Verifier};

    fn pair(alg: Algorithm) -> &'static TestKeyPair {
        TestKeyPair::get(alg)
    }

    fn parse(keys: Value) -> Result<Jwks, JwksError> {
        Jwks::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn jwks_keys_take_their_algorithm_from_the_jwk() {
        let mut rs_no_alg = pair(Algorithm::RS256).jwk("rs-derived");
        rs_no_alg.as_object_mut().unwrap().remove("alg");
        let mut es_no_alg_no_use = pair(Algorithm::ES256).jwk("es-derived");
        es_no_alg_no_use.as_object_mut().unwrap().remove("alg");
        es_no_alg_no_use.as_object_mut().unwrap().remove("use");
        let mut ed_no_alg = pair(Algorithm::EdDSA).jwk("ed-derived");
        ed_no_alg.as_object_mut().unwrap().remove("alg");
        let jwks = parse(json!([
            pair(Algorithm::RS256).jwk("rs"),
            pair(Algorithm::ES256).jwk("es"),
            pair(Algorithm::EdDSA).jwk("ed"),
            rs_no_alg,
            es_no_alg_no_use,
            ed_no_alg,
        ]))
        .unwrap();
        assert!(jwks.skipped.is_empty());
        let got: Vec<(String, Algorithm)> = jwks
            .keys
            .iter()
            .map(|k| (k.kid.clone(), k.algorithm))
            .collect();
        assert_eq!(
            got.iter()
                .map(|(k, a)| (k.as_str(), *a))
                .collect::<Vec<_>>(),
            [
                ("rs", Algorithm::RS256),
                ("es", Algorithm::ES256),
                ("ed", Algorithm::EdDSA),
                ("rs-derived", Algorithm::RS256),
                ("es-derived", Algorithm::ES256),
                ("ed-derived", Algorithm::EdDSA),
            ]
        );
        let v = Verifier::new(KeySet::new(jwks.keys).unwrap());
        for (kid, alg) in got {
            let token = pair(alg).token(&kid, &base_claims());
            assert_eq!(v.verify(&token, NOW).unwrap().kid, Some(kid));
        }
        // The set's own key is the only one that verifies: a token under "es" signed
        // with the RSA pair says RS256 and is refused before any signature check.
        let token = pair(Algorithm::RS256).token("es", &base_claims());
        assert_eq!(v.verify(&token, NOW), Err(TokenError::WrongAlgorithm));
    }

    #[test]
    fn jwks_skips_what_is_not_for_signatures() {
        let with = |mut jwk: Value, k: &str, v: Value| {
            jwk[k] = v;
            jwk
        };
        let rs = || pair(Algorithm::RS256).jwk("rs");
        let jwks = parse(json!([
            with(rs(), "use", json!("enc")),
            with(rs(), "alg", json!("RS384")),
            with(rs(), "alg", json!("PS256")),
            with(rs(), "alg", json!("rs256")),
            with(rs(), "alg", json!("HS256")),
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384",
             "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
             "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            // Skipped before its kid is looked at.
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            pair(Algorithm::EdDSA).jwk("kept"),
        ]))
        .unwrap();
        assert_eq!(
            jwks.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["kept"]
        );
        let skipped: Vec<Option<&str>> = jwks.skipped.iter().map(|s| s.kid.as_deref()).collect();
        assert_eq!(
            skipped,
            [
                Some("rs"),
                Some("rs"),
                Some("rs"),
                Some("rs"),
                Some("rs"),
                Some("secret"),
                Some("p384"),
                None
            ]
        );
        assert!(
            jwks.skipped[1].why.contains("RS384"),
            "{:?}",
            jwks.skipped[1]
        );
    }

    #[test]
    fn jwks_refuses_keys_it_cannot_trust() {
        let mut no_kid = pair(Algorithm::ES256).jwk("x");
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_eq!(
            parse(json!([pair(Algorithm::RS256).jwk("rs"), no_kid])).unwrap_err(),
            JwksError::MissingKid { index: 1 }
        );
        let mut es_as_rs = pair(Algorithm::ES256).jwk("confused");
        es_as_rs["alg"] = json!("RS256");
        let mut rs_as_ed = pair(Algorithm::RS256).jwk("confused");
        rs_as_ed["alg"] = json!("EdDSA");
        let mut bad_point = pair(Algorithm::ES256).jwk("confused");
        bad_point["x"] = bad_point["y"].clone();
        let mut short = pair(Algorithm::EdDSA).jwk("confused");
        short["x"] = json!("AAAA");
        let mut not_b64 = pair(Algorithm::RS256).jwk("confused");
        not_b64["n"] = json!("a+b/");
        for bad in [es_as_rs, rs_as_ed, bad_point, short, not_b64] {
            assert!(
                matches!(parse(json!([bad])), Err(JwksError::Key { ref kid, .. }) if kid == "confused"),
                "{bad}"
            );
        }
        for not_jwks in [&b"{"[..], b"[]", b"{\"keys\": {}}", b"{\"keys\": [1]}"] {
            assert!(matches!(Jwks::parse(not_jwks), Err(JwksError::NotJwks(_))));
        }
        assert!(parse(json!([])).unwrap().keys.is_empty());
    }
}
