//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`, here so that the fuzzer
//! (on nightly) and `core/tests/corpus.rs` (on stable, replaying every committed
//! corpus file) run exactly the same code. Each takes the raw input and panics on a
//! violation.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Value, json};

use super::keys::TestKeyPair;
use super::ops::SeededBytes;
use super::{TEST_UNIX, test_key};
use crate::token::{Algorithm, Jwks, KeySet, Verifier, mint};
use crate::wire::json::MAX_REQUEST_ID_CHARS;
use crate::wire::{Command, DecodeError, Dialect, RequestId};

/// `signaller_decode`: any bytes through the rtc-signaller codec. It never panics,
/// and what it decodes is consistent: forwarded frames are the input (trimmed) or,
/// for an announce that carried a `token`, a copy that decodes to the same announce
/// without one.
pub fn signaller_decode(data: &[u8]) {
    let Ok(command) = Dialect::Signaller.decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let trimmed = trim_line_end(data);
    match command {
        Command::Announce(a) => {
            assert!(!a.metadata.contains_key("token"), "token left in metadata");
            if a.token.is_none() {
                assert_eq!(a.frame, trimmed, "announce forwards the input as sent");
            } else {
                let again = Dialect::Signaller.decode(a.frame.clone());
                let Ok(Command::Announce(b)) = again else {
                    panic!("stripped announce does not decode: {again:?}");
                };
                assert!(b.token.is_none(), "token survived stripping");
                assert_eq!((&b.id, &b.room, &b.metadata), (&a.id, &a.room, &a.metadata));
                assert_eq!(b.sender, a.sender, "stripping changed the sender");
            }
        }
        Command::Leave(l) => assert_eq!(l.frame, trimmed),
        Command::Signal(s) => {
            assert_eq!(s.frame, trimmed);
            assert!(s.args_at <= s.frame.len());
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            let _ = s.args();
        }
        Command::To(t) => {
            assert!(t.args_at <= t.frame.len());
            assert!(!t.target.is_empty());
            let _ = t.args();
            if t.frame != trimmed {
                // Only a wrapped announce with a token is rewritten, and the copy
                // routes the same way.
                assert_eq!(t.name, "announce", "only announces are rewritten");
                let again = Dialect::Signaller.decode(t.frame.clone());
                let Ok(Command::To(u)) = again else {
                    panic!("rewritten /to does not decode: {again:?}");
                };
                assert_eq!(
                    (&u.target, &u.name, &u.sender),
                    (&t.target, &t.name, &t.sender)
                );
                assert_eq!(u.frame, t.frame, "stripping is idempotent");
                let before = wrapped_payload(trimmed).expect("the input had a payload");
                let after = wrapped_payload(&u.frame).expect("the copy has a payload");
                let mut expected = before;
                expected.remove("token").expect("only a token is stripped");
                assert_eq!(after, expected, "the copy is the payload without its token");
            }
        }
        other => panic!("the rtc-signaller codec produced {other:?}"),
    }
}

/// `json_decode`: any bytes through the JSON codec. It never panics, `data` is the
/// sender's JSON byte for byte, and request ids are valid.
pub fn json_decode(data: &[u8]) {
    let check_rid = |rid: &Option<RequestId>| {
        if let Some(rid) = rid {
            let s: String = serde_json::from_str(rid.as_json()).expect("request ids are strings");
            assert!(s.chars().count() <= MAX_REQUEST_ID_CHARS);
        }
    };
    match Dialect::Json.decode(Bytes::copy_from_slice(data)) {
        Ok(Command::Subscribe(s)) => check_rid(&s.request_id),
        Ok(Command::Unsubscribe(u)) => check_rid(&u.request_id),
        Ok(Command::Publish(p)) => {
            check_rid(&p.request_id);
            is_json(&p.data);
        }
        Ok(Command::Send(s)) => {
            check_rid(&s.request_id);
            is_json(&s.data);
        }
        Ok(Command::Auth(a) | Command::Refresh(a)) => check_rid(&a.request_id),
        Ok(other) => panic!("the JSON codec produced {other:?}"),
        Err(DecodeError::Malformed { request_id, .. }) => check_rid(&request_id),
        Err(_) => {}
    }
}

/// `broadcaster_decode`: any bytes through The Broadcaster's codec. It never panics;
/// request ids are JSON numbers or strings of at most 128 characters; a publish's
/// payload is the sender's JSON byte for byte; every decoded request, written back
/// as a Broadcaster frame, decodes to the same command; and the frames the server
/// answers it with (an error echoing its id, a push with any `seq` spliced in) are
/// JSON objects of the documented shape.
pub fn broadcaster_decode(data: &[u8]) {
    use crate::codes::ErrorCode;
    use crate::wire::Stamp;
    use crate::wire::broadcaster::{self, Push};

    let check_rid = |rid: Option<&RequestId>| -> Value {
        let rid = rid.expect("every Broadcaster request has an id");
        let v: Value = serde_json::from_str(rid.as_json()).expect("ids are JSON literals");
        match &v {
            Value::String(s) => assert!(s.chars().count() <= broadcaster::MAX_REQUEST_ID_CHARS),
            Value::Number(_) => assert!(rid.as_json().len() <= broadcaster::MAX_REQUEST_ID_CHARS),
            other => panic!("a request id decoded as {other}"),
        }
        v
    };
    let quoted = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let command = match Dialect::Broadcaster.decode(Bytes::copy_from_slice(data)) {
        Ok(command) => command,
        Err(DecodeError::Malformed { request_id, reason }) => {
            let frame = broadcaster::error(ErrorCode::InvalidMessage, reason, request_id.as_ref());
            let v: Value = serde_json::from_slice(&frame).expect("error frames are JSON");
            let id = request_id.as_ref().map(|r| check_rid(Some(r)));
            assert_eq!(v["requestId"], id.unwrap_or(Value::Null));
            assert_eq!(v["error"]["code"], "InvalidArgument");
            return;
        }
        Err(_) => return,
    };
    let (rid, method, params) = match &command {
        Command::Auth(a) => (
            &a.request_id,
            "auth",
            format!(r#"{{"token":{}}}"#, quoted(&a.token.0)),
        ),
        Command::Subscribe(s) => {
            assert!(!s.include_sender_metadata);
            (
                &s.request_id,
                "subscribe",
                format!(r#"{{"channel":{}}}"#, quoted(&s.channel)),
            )
        }
        Command::Unsubscribe(u) => (
            &u.request_id,
            "unsubscribe",
            format!(r#"{{"channel":{}}}"#, quoted(&u.channel)),
        ),
        Command::Publish(p) => {
            is_json(&p.data);
            let event = p.event.as_deref().map_or_else(|| "null".to_owned(), quoted);
            let params = format!(
                r#"{{"channel":{},"event":{event},"payload":{}}}"#,
                quoted(&p.channel),
                String::from_utf8_lossy(&p.data)
            );
            // The push that carries it is JSON whatever `seq` is spliced in.
            let stamp = Stamp {
                number: u64::from(data.len() as u32),
                unix_ms: TEST_UNIX * 1000,
            };
            let push = Push::new(
                &stamp,
                &p.channel,
                p.event.as_deref().unwrap_or("message"),
                &p.data,
            );
            for seq in [1, u64::MAX] {
                // The payload is read as raw JSON: it is the publisher's bytes, and JSON
                // allows numbers no f64 holds (`1E99999`), which a `Value` refuses.
                let frame = push.with_seq(seq);
                let push: PushShape<'_> = serde_json::from_slice(&frame).expect("pushes are JSON");
                assert_eq!(push.method, "message");
                assert_eq!(push.params.seq, seq);
                assert_eq!(push.params.channel, p.channel);
                assert_eq!(push.params.payload.get().as_bytes(), &p.data[..]);
            }
            (&p.request_id, "publish", params)
        }
        Command::Ping(p) => (&p.request_id, "ping", "null".to_owned()),
        other => panic!("the Broadcaster codec produced {other:?}"),
    };
    let id = rid.as_ref().expect("every Broadcaster request has an id");
    check_rid(Some(id));
    let again = format!(
        r#"{{"id":{},"method":"{method}","params":{params}}}"#,
        id.as_json()
    );
    let decoded = Dialect::Broadcaster
        .decode(Bytes::from(again))
        .expect("a re-written request decodes");
    assert_eq!(decoded, command, "round trip through a written frame");
}

/// The JSON payload of `/to|<target>|/announce|<sender>|<payload>`.
fn wrapped_payload(frame: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let text = std::str::from_utf8(frame).ok()?;
    let mut parts = text.splitn(4, '|');
    let rest = parts.nth(3)?;
    let (_, payload) = rest.split_once('|')?;
    match serde_json::from_str(payload).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A Broadcaster push, its payload kept raw.
#[derive(serde::Deserialize)]
struct PushShape<'a> {
    method: &'a str,
    #[serde(borrow)]
    params: PushParams<'a>,
}

#[derive(serde::Deserialize)]
struct PushParams<'a> {
    seq: u64,
    channel: String,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

fn is_json(data: &[u8]) {
    serde_json::from_slice::<serde::de::IgnoredAny>(data)
        .unwrap_or_else(|e| panic!("data is not JSON ({e}): {data:?}"));
}

fn trim_line_end(data: &[u8]) -> &[u8] {
    let mut end = data.len();
    while end > 0 && matches!(data[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &data[..end]
}

/// `token_verify`: the verifier never panics. The first byte picks how the rest is
/// used: as a token string; as claims JSON, minted with the test key then verified;
/// as the seed of well-formed claims that must verify and round-trip; as a JWKS file
/// ([`Jwks::parse`]); or as a header JSON object signed by one of the public test
/// keys, which may verify only under that key's own `kid`. The verifier holds the
/// HMAC test key and an RS256, ES256 and EdDSA key (generated once per process).
pub fn token_verify(data: &[u8]) {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        let mut keys = vec![test_key()];
        keys.extend(PUBLIC_KIDS.map(|(alg, kid)| TestKeyPair::get(alg).signing_key(kid)));
        Verifier::new(KeySet::new(keys).expect("distinct kids"))
    });
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let now = TEST_UNIX;
    match mode % 5 {
        0 => {
            let _ = verifier.verify(&String::from_utf8_lossy(rest), now);
        }
        1 => {
            if let Ok(claims @ Value::Object(_)) = serde_json::from_slice::<Value>(rest) {
                let token = mint(&test_key(), &claims).expect("objects sign");
                let _ = verifier.verify(&token, now);
            }
        }
        2 => valid_claims_round_trip(verifier, rest, now),
        3 => {
            let _ = Jwks::parse(rest);
        }
        _ => {
            let (pick, header) = rest.split_first().unwrap_or((&0, &[]));
            let (alg, kid) = PUBLIC_KIDS[usize::from(*pick) % PUBLIC_KIDS.len()];
            let Ok(header @ Value::Object(_)) = serde_json::from_slice::<Value>(header) else {
                return;
            };
            let claims = json!({"sub": "fuzz", "exp": now + 60});
            let token = TestKeyPair::get(alg).sign(&header, &claims);
            if let Ok(c) = verifier.verify(&token, now) {
                // Whatever the header says, only the signer's own key verifies it.
                assert_eq!(c.kid.as_deref(), Some(kid), "accepted under {header}");
            }
        }
    }
}

/// The public test keys of [`token_verify`] and their kids.
const PUBLIC_KIDS: [(Algorithm, &str); 3] = [
    (Algorithm::RS256, "rs"),
    (Algorithm::ES256, "es"),
    (Algorithm::EdDSA, "ed"),
];

fn valid_claims_round_trip(verifier: &Verifier, seed: &[u8], now: u64) {
    let mut rng = SeededBytes::new(
        seed.iter()
            .fold(0u64, |h, &b| h.rotate_left(8) ^ u64::from(b)),
    );
    let mut pick = |n: u64| rng.next_u64() % n;
    let subs = ["alice", "ck9a1x0qz0000a1b2c3d4e5f6", "ü-ñ", "a b c"];
    let channels = ["r1", "rooms/*", "app/**", "**", "a-*-b"];
    let names = ["publish", "subscribe", "presence", "send"];
    let sub = subs[pick(4) as usize];
    let granted: Vec<&str> = channels.iter().filter(|_| pick(2) == 0).copied().collect();
    let perms: Vec<&str> = names.iter().filter(|_| pick(2) == 0).copied().collect();
    let exp = now + 1 + pick(10_000);
    let mut claims = json!({ "sub": sub, "channels": granted, "exp": exp });
    if pick(2) == 0 {
        claims["permissions"] = json!(perms);
    } else {
        claims["scope"] = json!(perms.join(" "));
    }
    if pick(2) == 0 {
        claims["tenant"] = json!("t2");
    }
    if pick(2) == 0 {
        claims["metadata"] = json!({ "name": sub, "iceServers": [] });
    }
    let token = mint(&test_key(), &claims).expect("objects sign");
    let got = verifier
        .verify(&token, now)
        .unwrap_or_else(|e| panic!("valid claims {claims} refused: {e}"));
    assert_eq!(got.sub, sub);
    assert_eq!(got.exp, Some(exp));
    let got_channels: Vec<&str> = got.channels.iter().map(|p| p.as_str()).collect();
    assert_eq!(got_channels, granted);
    assert_eq!(got.permissions.names().collect::<Vec<_>>(), perms);
    assert!(got.metadata.is_none_or(|m| !m.contains_key("iceServers")));
}

/// `hub_ops`: the hub as a whole, against the reference model (see
/// [`super::model`]).
pub fn hub_ops(data: &[u8]) {
    let _ = super::model::run_ops(data);
}
