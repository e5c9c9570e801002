//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through the
//! same target bodies the fuzzer runs (`switchyard_core::testing::targets`), so the
//! corpus is a regression suite on stable. A crash the fuzzer finds becomes a test by
//! committing its input to the target's corpus directory (see `docs/fuzzing.md`).
//!
//! The `seed-*` files are written by `write_seed_corpus` below (ignored; run it with
//! `cargo test -p switchyard-core --test corpus -- --ignored` after changing the
//! seeds or the op format); the others are inputs the fuzzer found and kept.

use std::path::{Path, PathBuf};

use switchyard_core::testing::model::GOLDEN;
use switchyard_core::testing::ops::{SeededBytes, encode_ops, scenarios};
use switchyard_core::testing::{targets, token_for, token_with};

fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    for file in corpus(target) {
        let data = std::fs::read(&file).expect("readable corpus file");
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            panic!("{target} fails on {}", file.display());
        }
    }
}

#[test]
fn signaller_decode_corpus_replays() {
    replay("signaller_decode", targets::signaller_decode);
}

#[test]
fn json_decode_corpus_replays() {
    replay("json_decode", targets::json_decode);
}

#[test]
fn broadcaster_decode_corpus_replays() {
    replay("broadcaster_decode", targets::broadcaster_decode);
}

#[test]
fn token_verify_corpus_replays() {
    replay("token_verify", targets::token_verify);
}

#[test]
fn hub_ops_corpus_replays() {
    replay("hub_ops", targets::hub_ops);
}

/// Seeds: the golden rtc-signaller frames, JSON frames as the tests send them,
/// tokens, and the hub scenarios plus a few random operation sequences.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for line in GOLDEN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, frame) = line.split_once(": ").expect("name: frame");
        out.push((
            "signaller_decode",
            format!("golden-{name}"),
            frame.as_bytes().to_vec(),
        ));
    }
    let signaller = [
        ("announce", r#"/announce|alice|{"id":"alice","room":"r"}"#),
        (
            "announce_json_sender",
            r#"/announce|{"id":"alice"}|{"id":"alice","room":"r","token":"t"}"#,
        ),
        ("to", "/to|bob|/x|alice|1"),
        ("leave", r#"/leave|alice|{"id":"alice"}"#),
        ("chat_crlf", "/chat|alice|hi\r\n"),
        (
            "to_announce_token",
            r#"/to|bob|/announce|alice|{"id":"alice","room":"r","token":"t|u"}"#,
        ),
    ];
    for (name, frame) in signaller {
        out.push(("signaller_decode", format!("frame-{name}"), frame.into()));
    }
    let json = [
        (
            "subscribe",
            r#"{"type":"subscribe","channel":"room-1","requestId":"sub-1","includeSenderMetadata":false}"#,
        ),
        (
            "unsubscribe",
            r#"{"type":"unsubscribe","channel":"rooms/*","requestId":"unsub-1"}"#,
        ),
        (
            "publish",
            r#"{"type":"publish","channel":"room-1","data":{"any":"json"},"requestId":"pub-1"}"#,
        ),
        (
            "send",
            r#"{"type":"send","to":"bob","data":"x|y","requestId":"send-1"}"#,
        ),
        (
            "auth",
            r#"{"type":"auth","token":"a.b.c","requestId":"auth-1"}"#,
        ),
        (
            "refresh",
            r#"{"type":"refresh","token":"a.b.c","requestId":"r1"}"#,
        ),
        (
            "bad_request_id",
            r#"{"type":"publish","channel":"c","requestId":5}"#,
        ),
        ("unknown_type", r#"{"type":"nope","requestId":"r"}"#),
    ];
    for (name, frame) in json {
        out.push(("json_decode", format!("frame-{name}"), frame.into()));
    }
    let broadcaster = [
        (
            "auth",
            r#"{"id":1,"method":"auth","params":{"token":"a.b.c"}}"#,
        ),
        (
            "subscribe",
            r#"{"id":"s-1","method":"subscribe","params":{"channel":"news"}}"#,
        ),
        (
            "unsubscribe",
            r#"{"id":2,"method":"unsubscribe","params":{"channel":"news"}}"#,
        ),
        (
            "publish",
            r#"{"id":3,"method":"publish","params":{"channel":"news","event":"e","payload":{"k":[1,"|"]}}}"#,
        ),
        ("ping", r#"{"id":-1.5e3,"method":"ping","params":null}"#),
        ("unknown_method", r#"{"id":4,"method":"nope"}"#),
        (
            "wrong_type",
            r#"{"id":5,"method":"publish","params":{"channel":7}}"#,
        ),
        ("no_id", r#"{"method":"ping"}"#),
    ];
    for (name, frame) in broadcaster {
        out.push(("broadcaster_decode", format!("frame-{name}"), frame.into()));
    }
    let token = token_for("alice", &["room-1", "rooms/**"]);
    let claims = serde_json::json!({
        "sub": "bob", "channels": ["app/**"], "scope": "publish send", "exp": 1_700_003_600u64,
        "aud": ["x"], "tenant": "t2", "metadata": {"iceServers": []},
    });
    let tokens: [(&str, Vec<u8>); 6] = [
        ("valid", [b"\0", token.as_bytes()].concat()),
        (
            "no_exp",
            [
                b"\0",
                token_with(serde_json::json!({"sub": "a"})).as_bytes(),
            ]
            .concat(),
        ),
        (
            "alg_none",
            b"\0eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.eyJzdWIiOiJhIn0.".to_vec(),
        ),
        ("garbage", b"\0not-a-jwt".to_vec()),
        ("claims", [b"\x01", claims.to_string().as_bytes()].concat()),
        ("round_trip", b"\x02seed".to_vec()),
    ];
    for (name, data) in tokens {
        out.push(("token_verify", format!("token-{name}"), data));
    }
    for (name, variant, ops) in scenarios() {
        out.push((
            "hub_ops",
            format!("scenario-{name}"),
            encode_ops(variant, &ops),
        ));
    }
    for seed in 0..8 {
        let mut rng = SeededBytes::new(1000 + seed);
        out.push(("hub_ops", format!("random-{seed}"), rng.bytes(400)));
    }
    out
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand after changing the seeds"]
fn write_seed_corpus() {
    for (target, name, data) in seeds() {
        let dir = dir(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
    }
}
