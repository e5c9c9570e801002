//! Public-key tokens (RS256, ES256, EdDSA): accepted with the right private key,
//! with the same claims and grants as an HS256 token, and every algorithm
//! confusion refused with the reason the HMAC keys already had.
//!
//! The keys come from [`TestKeyPair`]; the attacker's own pair is a fresh one.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::test_support::*;
use super::{Algorithm, KeySet, KeySetError, SigningKey, TokenError, Verifier, mint};
use crate::pattern::Pattern;
use crate::testing::keys::TestKeyPair;

const PUBLIC: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

fn kid(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "rs",
        Algorithm::ES256 => "es",
        Algorithm::EdDSA => "ed",
        _ => "hs",
    }
}

/// One key of each public algorithm under its [`kid`], plus HS256 `k1`.
fn mixed_verifier() -> Verifier {
    let mut keys: Vec<SigningKey> = PUBLIC
        .iter()
        .map(|&a| TestKeyPair::get(a).signing_key(kid(a)))
        .collect();
    keys.push(k1());
    Verifier::new(KeySet::new(keys).unwrap())
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "kid": kid, "typ": "JWT"})
}

#[test]
fn public_key_tokens_verify_with_the_same_grants() {
    let v = mixed_verifier();
    let hs = v
        .verify(&mint(&k1(), &base_claims()).unwrap(), NOW)
        .unwrap();
    for alg in PUBLIC {
        let token = TestKeyPair::get(alg).token(kid(alg), &base_claims());
        let c = v.verify(&token, NOW).unwrap();
        assert_eq!(c.kid.as_deref(), Some(kid(alg)));
        assert_eq!(
            (&c.sub, c.exp, c.permissions),
            (&hs.sub, hs.exp, hs.permissions)
        );
        let pats: Vec<&str> = c.channels.iter().map(Pattern::as_str).collect();
        assert_eq!(pats, ["rooms/*", "app/**"]);
        // Expiry is checked after the signature, as for HMAC keys.
        assert_eq!(v.verify(&token, NOW + 3600), Err(TokenError::Expired));
    }
    // A single public key is used for a token without kid, as a single HMAC key is.
    let pair = TestKeyPair::get(Algorithm::ES256);
    let only = Verifier::new(KeySet::new(vec![pair.signing_key("es")]).unwrap());
    let no_kid = pair.sign(&json!({"alg": "ES256"}), &base_claims());
    assert_eq!(
        only.verify(&no_kid, NOW).unwrap().kid.as_deref(),
        Some("es")
    );
}

#[test]
fn hs256_token_keyed_with_the_rsa_public_key_is_refused() {
    let v = mixed_verifier();
    let pair = TestKeyPair::get(Algorithm::RS256);
    // The classic confusion: HMAC whose secret is the public key the server holds,
    // as PEM text or as DER, under the RSA key's kid.
    for secret in [pair.public_pem().into_bytes(), pair.public_der()] {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut h = Header::new(alg);
            h.kid = Some("rs".into());
            let token =
                jsonwebtoken::encode(&h, &base_claims(), &EncodingKey::from_secret(&secret))
                    .unwrap();
            assert_eq!(v.verify(&token, NOW), Err(TokenError::WrongAlgorithm));
            // Claiming RS256 while the signature is an HMAC one fails the RSA check.
            let (_, rest) = token.split_once('.').unwrap();
            let lying = format!(
                "{}.{rest}",
                b64url_encode(header("RS256", "rs").to_string().as_bytes())
            );
            assert_eq!(v.verify(&lying, NOW), Err(TokenError::BadSignature));
        }
    }
}

#[test]
fn tokens_of_one_public_algorithm_under_another_kid_are_refused() {
    let v = mixed_verifier();
    for key_alg in PUBLIC {
        for signer in PUBLIC.into_iter().filter(|a| *a != key_alg) {
            let pair = TestKeyPair::get(signer);
            // Honest header: its alg is not the key's.
            let token = pair.token(kid(key_alg), &base_claims());
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::WrongAlgorithm),
                "{signer} token under the {key_alg} kid"
            );
            // Lying header: the key's alg, the other algorithm's signature.
            let token = pair.sign(&header(key_alg.as_str(), kid(key_alg)), &base_claims());
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::BadSignature),
                "{signer} signature under a {key_alg} header"
            );
        }
        // Public-key tokens under the HMAC kid, and the header's case matters.
        let pair = TestKeyPair::get(key_alg);
        assert_eq!(
            v.verify(&pair.token("k1", &base_claims()), NOW),
            Err(TokenError::WrongAlgorithm)
        );
        let lower = pair.sign(
            &header(&key_alg.as_str().to_lowercase(), kid(key_alg)),
            &base_claims(),
        );
        assert_eq!(v.verify(&lower, NOW), Err(TokenError::WrongAlgorithm));
    }
}

#[test]
fn alg_none_under_a_public_key_is_refused() {
    let v = mixed_verifier();
    for alg in PUBLIC {
        let body = b64url_encode(base_claims().to_string().as_bytes());
        let hdr = b64url_encode(header("none", kid(alg)).to_string().as_bytes());
        assert_eq!(
            v.verify(&format!("{hdr}.{body}."), NOW),
            Err(TokenError::AlgNone)
        );
        // Even with a valid signature of the right key behind it.
        let signed = TestKeyPair::get(alg).sign(&header("none", kid(alg)), &base_claims());
        assert_eq!(v.verify(&signed, NOW), Err(TokenError::AlgNone));
    }
}

#[test]
fn keys_in_the_token_header_are_never_used() {
    let v = mixed_verifier();
    for alg in PUBLIC {
        let mallory = TestKeyPair::generate(alg);
        let embedded = [
            ("jwk", mallory.jwk(kid(alg))),
            ("jku", json!("https://attacker.invalid/jwks.json")),
            ("x5u", json!("https://attacker.invalid/cert.pem")),
            ("x5c", json!([b64url_encode(&mallory.public_der())])),
        ];
        for (field, value) in embedded {
            let mut h = header(alg.as_str(), kid(alg));
            h[field] = value.clone();
            assert_eq!(
                v.verify(&mallory.sign(&h, &base_claims()), NOW),
                Err(TokenError::BadSignature),
                "{alg} with {field}"
            );
            // A kid the server does not know is not looked up in the header either.
            h["kid"] = json!("mallory");
            assert_eq!(
                v.verify(&mallory.sign(&h, &base_claims()), NOW),
                Err(TokenError::UnknownKid),
                "{alg} with {field} and an unknown kid"
            );
        }
        // The right key still verifies a token that carries such fields.
        let mut h = header(alg.as_str(), kid(alg));
        h["jwk"] = mallory.jwk("mallory");
        assert!(
            v.verify(&TestKeyPair::get(alg).sign(&h, &base_claims()), NOW)
                .is_ok()
        );
    }
}

#[test]
fn public_keys_do_not_mint_and_do_not_mix_material() {
    let rs = TestKeyPair::get(Algorithm::RS256);
    assert!(matches!(
        mint(&rs.signing_key("rs"), &base_claims()),
        Err(TokenError::InvalidClaims(_))
    ));
    let with = |f: &dyn Fn(&mut SigningKey)| {
        let mut k = rs.signing_key("rs");
        f(&mut k);
        KeySet::new(vec![k]).unwrap_err()
    };
    assert_eq!(
        with(&|k| k.public_key = None),
        KeySetError::MissingPublicKey("rs".into())
    );
    assert_eq!(
        with(&|k| k.secret = b"also a secret".to_vec()),
        KeySetError::MixedMaterial("rs".into())
    );
    assert_eq!(
        with(&|k| k.algorithm = Algorithm::HS256),
        KeySetError::MixedMaterial("rs".into())
    );
    assert_eq!(
        with(&|k| k.algorithm = Algorithm::ES256),
        KeySetError::AlgorithmMismatch {
            kid: "rs".into(),
            configured: Algorithm::ES256,
            key: Algorithm::RS256
        }
    );
    let shown = format!("{:?}", rs.signing_key("rs"));
    assert!(
        shown.contains("<public key>") && !shown.contains("MII"),
        "{shown}"
    );
}
