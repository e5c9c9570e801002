//! The hub against its reference model (`switchyard_core::testing::model`), fed
//! with operation sequences from a seeded generator: the same checker the
//! `hub_ops` fuzz target runs, on stable, in a few seconds. A failure prints the
//! seed and the last steps; `SWITCHYARD_PROPTEST_SEED=<seed>` reruns that case
//! alone and `SWITCHYARD_PROPTEST_CASES=<n>` runs more.

use switchyard_core::testing::model::{Coverage, run_ops};
use switchyard_core::testing::ops::{
    Creds, Expiry, FrameSpec, Op, SeededBytes, Step, TokenSpec, encode_ops,
};
use switchyard_core::testing::targets::hub_ops;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn run_seed(seed: u64) -> Coverage {
    let mut rng = SeededBytes::new(seed);
    let len = 64 + (rng.next_u64() % 700) as usize;
    let input = rng.bytes(len);
    match std::panic::catch_unwind(|| run_ops(&input)) {
        Ok(coverage) => coverage,
        Err(e) => {
            eprintln!("hub_ops failed for seed {seed}: rerun with SWITCHYARD_PROPTEST_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn the_hub_agrees_with_the_model_on_random_operation_sequences() {
    if let Some(seed) = env_u64("SWITCHYARD_PROPTEST_SEED") {
        run_seed(seed);
        return;
    }
    let cases = env_u64("SWITCHYARD_PROPTEST_CASES").unwrap_or(300);
    let mut total = Coverage::default();
    for seed in 0..cases {
        total.merge(&run_seed(seed));
    }
    eprintln!("coverage over {cases} cases: {:#?}", total.0);
    // A generator that only bounces off refusals would pass vacuously.
    for what in [
        "accepted announce",
        "accepted leave",
        "accepted to",
        "accepted signal",
        "accepted subscribe",
        "accepted pattern subscribe",
        "accepted unsubscribe",
        "accepted publish",
        "accepted send",
        "accepted auth",
        "delivery",
        "departure",
        "presence frame",
        "presence member above the cap",
        "presence resync",
        "replaced",
        "timer close",
        "closed after a frame",
        "refused",
    ] {
        assert!(
            total.count(what) > 0,
            "no case reached {what:?}: {:?}",
            total.0
        );
    }
}

/// Random bytes rarely line up a crowded room, so one scripted sequence makes sure
/// the presence cap, take-over, token expiry and the auth timeout are always reached.
#[test]
fn the_hub_agrees_with_the_model_on_a_crowded_scripted_run() {
    let full = |sub| Creds::Token(TokenSpec::full(sub));
    let soon = Creds::Token(TokenSpec {
        exp: Expiry::Soon,
        ..TokenSpec::full(3)
    });
    let built = |kind, a, b, c| FrameSpec::Built {
        kind,
        a,
        b,
        c,
        token: None,
    };
    let frame = |conn, frame| Op::Frame { conn, frame };
    let ops = vec![
        Op::Open {
            json: true,
            creds: full(0),
        }, // #0 alice (JSON)
        Op::Open {
            json: true,
            creds: full(1),
        }, // #1 bob (JSON)
        Op::Open {
            json: false,
            creds: full(2),
        }, // #2 carol (rtc-signaller)
        Op::Open {
            json: true,
            creds: soon,
        }, // #3 dave (JSON), token expires in 20 s
        Op::Open {
            json: false,
            creds: Creds::None,
        }, // #4 must authenticate in-band
        frame(0, built(0, 0, 1, 1)), // alice subscribes r1
        frame(1, built(0, 0, 1, 1)), // bob subscribes r1
        frame(2, built(0, 0, 0, 0)), // carol announces into r1
        frame(3, built(0, 0, 1, 1)), // dave subscribes r1: 4 peers, over the cap of 2
        frame(0, built(2, 0, 0, 2)), // alice publishes to r1
        frame(2, built(4, 1, 0, 0)), // carol's pass-through
        Op::Open {
            json: false,
            creds: full(2),
        }, // #5 carol again
        frame(5, built(0, 0, 0, 0)), // takes over carol's place in r1
        frame(2, built(4, 1, 0, 0)), // the replaced connection is out of the room
        Op::Advance(Step::Expiry),   // dave's token expires, #4's auth times out
        frame(1, built(1, 0, 0, 3)), // bob unsubscribes: back within the cap
        frame(5, built(2, 0, 0, 0)), // carol leaves gracefully
        Op::Close {
            conn: 5,
            graceful: false,
        },
        Op::Blocked { conn: 0 },
    ];
    // Variant 8: generous rate, no anonymous access, 2 KiB frames.
    hub_ops(&encode_ops(8, &ops));
}
