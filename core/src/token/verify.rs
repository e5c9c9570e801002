//! The [`Verifier`]: compact-JWS shape, header and signature checks at a
//! caller-supplied time, then the claim parser; and [`mint`], its inverse.
//!
//! Base64url comes from the `base64` crate with the strict engine
//! [`B64URL`]; see there for what it refuses.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::Value;

use super::claims::check_audience;
use super::{Claims, KeySet, SigningKey, TokenError, invalid};

/// Checks tokens against a [`KeySet`] at a caller-supplied time.
///
/// Exists as the one place where token policy (leeway, mandatory `exp`,
/// size limits) is applied.
#[derive(Debug)]
pub struct Verifier {
    keys: KeySet,
    pub(super) leeway_secs: u64,
    pub(super) require_exp: bool,
    pub(super) max_channel_len: usize,
    max_token_len: usize,
}

/// Default clock-skew allowance for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;
/// Default maximum length in bytes of a granted channel pattern.
pub const DEFAULT_MAX_CHANNEL_LEN: usize = 255;
/// Default maximum length in bytes of a whole token.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8192;

impl Verifier {
    /// A verifier with the defaults: 5 s leeway, `exp` required, patterns up
    /// to 255 bytes, tokens up to 8 KiB.
    ///
    /// Exists as the normal constructor; adjust with the `with_*` methods.
    pub fn new(keys: KeySet) -> Self {
        Self {
            keys,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            require_exp: true,
            max_channel_len: DEFAULT_MAX_CHANNEL_LEN,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// Sets the clock-skew allowance applied to `exp` and `nbf`.
    ///
    /// Exists because client and server clocks drift.
    #[must_use]
    pub fn with_leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Sets whether tokens without `exp` are refused.
    ///
    /// Exists for development setups with long-lived tokens.
    #[must_use]
    pub fn with_require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    /// Sets the maximum length of each granted channel pattern.
    ///
    /// Exists to keep token grants consistent with the server's channel
    /// length limit.
    #[must_use]
    pub fn with_max_channel_len(mut self, len: usize) -> Self {
        self.max_channel_len = len;
        self
    }

    /// Sets the maximum accepted token length in bytes.
    ///
    /// Exists to bound the work done on untrusted input.
    #[must_use]
    pub fn with_max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// The configured keys.
    ///
    /// Exists so the mint endpoint can reuse the verifier's configuration.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Verifies `token` at time `unix_now` (seconds since the Unix epoch)
    /// and returns its validated claims.
    ///
    /// Exists as the only way to turn an untrusted token into [`Claims`].
    /// Order of checks: shape and header, `alg: none`, key by `kid`,
    /// algorithm against the key's, signature, `exp`/`nbf`, `aud`, then the
    /// remaining claims.
    pub fn verify(&self, token: &str, unix_now: u64) -> Result<Claims, TokenError> {
        if token.len() > self.max_token_len {
            return Err(TokenError::Malformed);
        }
        // Compact JWS: header.payload.signature, exactly three parts.
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = RawHeader::parse(h64)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        let entry = self.keys.select(header.kid.as_deref())?;
        if header.alg != entry.key.algorithm.as_str() {
            return Err(TokenError::WrongAlgorithm);
        }
        // The signed message is the first two parts with their dot.
        let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        match jsonwebtoken::crypto::verify(
            s64,
            message,
            &entry.decoding,
            entry.key.algorithm.to_jwt(),
        ) {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::BadSignature),
            // Signature part is not base64url.
            Err(_) => return Err(TokenError::Malformed),
        }
        let payload = b64url_decode(p64).ok_or(TokenError::Malformed)?;
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&payload) else {
            return Err(TokenError::Malformed);
        };
        self.check_claims(map, &entry.key, unix_now)
    }

    /// Checks that an already verified `token` lists `audience` in `aud`, whatever
    /// its signing key requires.
    ///
    /// Exists for dialects whose clients hold tokens minted for a fixed audience
    /// (The Broadcaster's `aud: "broadcaster"`). Call it after
    /// [`Verifier::verify`], which checks the signature this relies on.
    pub fn require_audience(&self, token: &str, audience: &str) -> Result<(), TokenError> {
        let payload = token
            .split('.')
            .nth(1)
            .and_then(b64url_decode)
            .ok_or(TokenError::Malformed)?;
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&payload) else {
            return Err(TokenError::Malformed);
        };
        check_audience(map.get("aud"), Some(audience))
    }
}

/// Signs `claims` (a JSON object) with `key`'s algorithm and secret, putting
/// the key's `kid` in the header. Only HMAC keys sign: a public key cannot.
///
/// Exists for tests, the `gentoken` CLI and the REST mint endpoint. It does
/// not validate the claims: minting a token that [`Verifier::verify`] would
/// refuse is possible on purpose.
pub fn mint(key: &SigningKey, claims: &Value) -> Result<String, TokenError> {
    if !claims.is_object() {
        return Err(invalid("claims must be a JSON object"));
    }
    if !key.algorithm.is_hmac() {
        return Err(invalid(
            "a public key (RS256, ES256, EdDSA) cannot sign; only HMAC keys mint tokens",
        ));
    }
    let mut header = Header::new(key.algorithm.to_jwt());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&key.secret))
        .map_err(|e| TokenError::InvalidClaims(format!("signing failed: {e}")))
}

/// The parts of the JOSE header we decide on before any cryptography.
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl RawHeader {
    fn parse(h64: &str) -> Result<Self, TokenError> {
        let bytes = b64url_decode(h64).ok_or(TokenError::Malformed)?;
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(TokenError::Malformed);
        };
        // We implement no JWS extensions, so a critical one can't be honoured.
        if map.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let alg = match map.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(TokenError::Malformed),
        };
        let kid = match map.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(TokenError::Malformed),
        };
        Ok(Self { alg, kid })
    }
}

/// Unpadded base64url (RFC 4648 §5), strict: `=` padding, characters outside
/// the URL-safe alphabet (`+`, `/`, whitespace), a length of 1 mod 4 and
/// non-zero trailing bits are all refused.
///
/// This is exactly the set the hand-written decoder it replaced refused; the
/// settings are spelled out rather than taken from `URL_SAFE_NO_PAD` so that a
/// change of that constant's defaults cannot loosen them.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes one part of a compact JWS (or a JWK component) with [`B64URL`].
pub(super) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    B64URL.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pattern::Pattern;
    use crate::token::test_support::*;
    use crate::token::{Algorithm, Permissions};

    #[test]
    fn base64url_round_trip_and_strictness() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(250))
                .collect();
            assert_eq!(b64url_decode(&b64url_encode(&data)).unwrap(), data);
        }
        assert_eq!(
            b64url_decode("eyJhbGciOiJub25lIn0").unwrap(),
            br#"{"alg":"none"}"#
        );
        assert!(b64url_decode("QQ==").is_none());
        assert!(b64url_decode("QR").is_none()); // non-zero trailing bits
        assert!(b64url_decode("Q").is_none());
        assert!(b64url_decode("a+b/").is_none());
    }

    /// The corners the `base64` engine must refuse exactly as the hand-written
    /// decoder it replaced did (and what it must still accept).
    #[test]
    fn base64url_corners_match_the_old_decoder() {
        // Accepted: every remainder length but 1 mod 4, and the empty part.
        assert_eq!(b64url_decode("").unwrap(), b"");
        assert_eq!(b64url_decode("QQ").unwrap(), b"A");
        assert_eq!(b64url_decode("QUI").unwrap(), b"AB");
        assert_eq!(b64url_decode("QUJD").unwrap(), b"ABC");
        assert_eq!(b64url_decode("-_-_").unwrap(), [0xfb, 0xff, 0xbf]);
        let refused: [(&str, &[&str]); 5] = [
            (
                "padding, due or not",
                &["QQ=", "QQ==", "QUI=", "QUJD=", "QUJD====", "=", "=="],
            ),
            ("standard alphabet", &["+/+/", "QUJ+", "QUJ/"]),
            (
                "whitespace",
                &[" QUJD", "QUJD ", "QU JD", "QUJD\n", "QU\r\nJD", "\tQUJD"],
            ),
            ("length 1 mod 4", &["Q", "QUJDR"]),
            // The canonical forms are QQ and QUI.
            ("non-zero trailing bits", &["QR", "QX", "QUJ", "QUK"]),
        ];
        for (why, bad) in refused {
            for s in bad {
                assert!(b64url_decode(s).is_none(), "{why}: {s:?}");
            }
        }
        for s in ["QUJé", "QU.D", "QU*D", "QU\0D"] {
            assert!(b64url_decode(s).is_none(), "stray character: {s:?}");
        }
    }

    #[test]
    fn mint_then_verify_round_trip() {
        let token = mint(&k1(), &base_claims()).unwrap();
        let c = verifier(vec![k1()]).verify(&token, NOW).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.exp, Some(NOW + 600));
        assert_eq!(c.iat, Some(NOW - 10));
        assert_eq!(c.nbf, None);
        assert_eq!(c.kid.as_deref(), Some("k1"));
        assert_eq!(c.tenant, None);
        assert_eq!(c.metadata, None);
        assert_eq!(c.ice_servers, None);
        let pats: Vec<&str> = c.channels.iter().map(Pattern::as_str).collect();
        assert_eq!(pats, ["rooms/*", "app/**"]);
        assert_eq!(c.permissions, Permissions::PUBLISH | Permissions::SUBSCRIBE);
        assert!(c.allows_channel("rooms/lobby"));
        assert!(!c.allows_channel("other"));
        assert!(c.allows_pattern(&Pattern::parse("app/x/*", 255).unwrap()));
        assert!(!c.allows_pattern(&Pattern::parse("rooms/**", 255).unwrap()));
    }

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let k = key("k", "s3cret", alg);
            let token = mint(&k, &base_claims()).unwrap();
            assert!(token.starts_with("eyJ"));
            assert_eq!(verifier(vec![k]).verify(&token, NOW).unwrap().sub, "alice");
        }
    }

    #[test]
    fn no_kid_uses_the_only_key() {
        let k = k1();
        let token = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &base_claims(),
            &EncodingKey::from_secret(&k.secret),
        )
        .unwrap();
        assert_eq!(
            verifier(vec![k1()])
                .verify(&token, NOW)
                .unwrap()
                .kid
                .as_deref(),
            Some("k1")
        );
        assert_eq!(
            verifier(vec![k1(), k2()]).verify(&token, NOW),
            Err(TokenError::MissingKid)
        );
    }

    #[test]
    fn unknown_kid() {
        let token = mint(&key("k9", "whatever", Algorithm::HS256), &base_claims()).unwrap();
        assert_eq!(
            verifier(vec![k1()]).verify(&token, NOW),
            Err(TokenError::UnknownKid)
        );
        assert_eq!(
            verifier(vec![k1(), k2()]).verify(&token, NOW),
            Err(TokenError::UnknownKid)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        // Header {"alg":"none"} is eyJhbGciOiJub25lIn0; add a kid too.
        let v = verifier(vec![k1()]);
        let hdr = b64url_encode(br#"{"alg":"none","kid":"k1"}"#);
        let body = b64url_encode(base_claims().to_string().as_bytes());
        assert_eq!(
            v.verify(&format!("{hdr}.{body}."), NOW),
            Err(TokenError::AlgNone)
        );
        assert_eq!(
            v.verify(&format!("eyJhbGciOiJub25lIn0.{body}."), NOW),
            Err(TokenError::AlgNone)
        );
        let tok = raw_token(&json!({"alg": "NoNe", "kid": "k1"}), &base_claims());
        assert_eq!(v.verify(&tok, NOW), Err(TokenError::AlgNone));
    }

    #[test]
    fn hs512_token_against_hs256_key() {
        // Same kid and secret as k1, but signed with HS512.
        let evil = key("k1", "first-secret-0123456789abcdef", Algorithm::HS512);
        let token = mint(&evil, &base_claims()).unwrap();
        assert_eq!(
            verifier(vec![k1()]).verify(&token, NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn rs256_header_is_refused() {
        let tok = raw_token(&json!({"alg": "RS256", "kid": "k1"}), &base_claims());
        assert_eq!(
            verifier(vec![k1()]).verify(&tok, NOW),
            Err(TokenError::WrongAlgorithm)
        );
        let tok = raw_token(&json!({"alg": "hs256", "kid": "k1"}), &base_claims());
        assert_eq!(
            verifier(vec![k1()]).verify(&tok, NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn tampered_payload() {
        let token = mint(&k1(), &base_claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let evil = with(base_claims(), "sub", json!("mallory"));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url_encode(evil.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            verifier(vec![k1()]).verify(&forged, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn signature_part_problems() {
        let v = verifier(vec![k1()]);
        let token = mint(&k1(), &base_claims()).unwrap();
        let (msg, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            v.verify(&format!("{msg}."), NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            v.verify(&format!("{msg}.*bad*"), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn wrong_secret() {
        let other = key("k1", "some-other-secret", Algorithm::HS256);
        let token = mint(&other, &base_claims()).unwrap();
        assert_eq!(
            verifier(vec![k1()]).verify(&token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens() {
        let v = verifier(vec![k1()]);
        let good = mint(&k1(), &base_claims()).unwrap();
        for bad in [
            String::new(),
            "abc".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{good}.x"),
            format!("!!{good}"),
            raw_token(&json!(["alg", "HS256"]), &base_claims()),
            raw_token(&json!({"kid": "k1"}), &base_claims()),
            raw_token(&json!({"alg": "HS256", "kid": 7}), &base_claims()),
            raw_token(
                &json!({"alg": "HS256", "kid": "k1", "crit": ["b64"]}),
                &base_claims(),
            ),
            "x".repeat(DEFAULT_MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(v.verify(&bad, NOW), Err(TokenError::Malformed), "{bad:?}");
        }
        // A validly signed payload that is not a JSON object.
        let k = k1();
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("k1".into());
        let arr =
            jsonwebtoken::encode(&h, &json!([1, 2]), &EncodingKey::from_secret(&k.secret)).unwrap();
        assert_eq!(v.verify(&arr, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn two_live_keys_both_verify() {
        let v = verifier(vec![k1(), k2()]);
        let c1 = v
            .verify(&mint(&k1(), &base_claims()).unwrap(), NOW)
            .unwrap();
        let c2 = v
            .verify(&mint(&k2(), &base_claims()).unwrap(), NOW)
            .unwrap();
        assert_eq!(c1.kid.as_deref(), Some("k1"));
        assert_eq!(c2.kid.as_deref(), Some("k2"));
        // A k2-signed token relabelled as k1 fails (different alg and secret).
        let k2_as_k1 = key("k1", "second-secret-0123456789abcdef", Algorithm::HS256);
        assert_eq!(
            v.verify(&mint(&k2_as_k1, &base_claims()).unwrap(), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn mint_requires_an_object() {
        assert!(matches!(
            mint(&k1(), &json!([1])),
            Err(TokenError::InvalidClaims(_))
        ));
        let tok = mint(&k1(), &base_claims()).unwrap();
        let hdr = b64url_decode(tok.split('.').next().unwrap()).unwrap();
        let hdr: Value = serde_json::from_slice(&hdr).unwrap();
        assert_eq!(hdr["kid"], json!("k1"));
        assert_eq!(hdr["alg"], json!("HS256"));
    }
}
