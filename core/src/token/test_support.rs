//! Keys, claims and raw-token builders shared by the token unit tests.
//!
//! Kept apart so each module's tests stay next to the code they test while
//! using the same fixtures.

use serde_json::{Value, json};

use super::{Algorithm, KeySet, SigningKey, Verifier};

pub(super) const NOW: u64 = 1_700_000_000;

pub(super) fn key(kid: &str, secret: &str, algorithm: Algorithm) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        secret: secret.as_bytes().to_vec(),
        algorithm,
        public_key: None,
        audience: None,
        tenant: None,
    }
}

pub(super) fn k1() -> SigningKey {
    key("k1", "first-secret-0123456789abcdef", Algorithm::HS256)
}

pub(super) fn k2() -> SigningKey {
    key("k2", "second-secret-0123456789abcdef", Algorithm::HS512)
}

pub(super) fn verifier(keys: Vec<SigningKey>) -> Verifier {
    Verifier::new(KeySet::new(keys).unwrap())
}

pub(super) fn base_claims() -> Value {
    json!({
        "sub": "alice",
        "exp": NOW + 600,
        "iat": NOW - 10,
        "channels": ["rooms/*", "app/**"],
        "permissions": ["publish", "subscribe"],
    })
}

pub(super) fn with(mut v: Value, k: &str, val: Value) -> Value {
    v[k] = val;
    v
}

pub(super) fn without(mut v: Value, k: &str) -> Value {
    v.as_object_mut().unwrap().remove(k);
    v
}

pub(super) fn b64url_encode(data: &[u8]) -> String {
    const ALPHA: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHA[((acc >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token with an arbitrary header/payload and a junk signature.
pub(super) fn raw_token(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(payload.to_string().as_bytes()),
        b64url_encode(b"not-a-real-signature")
    )
}
