//! Hand-written operation sequences: the situations random bytes rarely line up.

use super::{Creds, Expiry, FrameSpec, Op, Step, TokenSpec};

/// Hand-written operation sequences that reach what random bytes rarely line up:
/// a crowded room over the presence cap, take-over, token expiry and the auth
/// timeout, the golden rtc-signaller session, in-band auth, floods. They seed the
/// `hub_ops` corpus and run in the property test. Each is `(name, variant, ops)`.
pub fn scenarios() -> Vec<(&'static str, u8, Vec<Op>)> {
    let full = |sub| Creds::Token(TokenSpec::full(sub));
    let open = |json, creds| Op::Open {
        json,
        broadcaster: false,
        creds,
    };
    let open_broadcaster = |creds| Op::Open {
        json: false,
        broadcaster: true,
        creds,
    };
    let built = |conn, kind, a, b, c| Op::Frame {
        conn,
        frame: FrameSpec::Built {
            kind,
            a,
            b,
            c,
            token: None,
        },
    };
    // Kinds in the connection's dialect (see `model::Run::render`).
    let (subscribe, unsubscribe, publish, send, auth) = (0, 4, 6, 11, 14);
    let (announce, leave, to, signal, golden) = (0, 4, 6, 10, 14);
    let soon = Creds::Token(TokenSpec {
        exp: Expiry::Soon,
        ..TokenSpec::full(3)
    });
    let crowded = vec![
        open(true, full(0)),            // #0 alice (JSON)
        open(true, full(1)),            // #1 bob (JSON)
        open(false, full(2)),           // #2 carol (rtc-signaller)
        open(true, soon),               // #3 dave (JSON), token expires in 20 s
        open(false, Creds::None),       // #4 must authenticate in-band
        built(0, subscribe, 0, 1, 1),   // alice subscribes r1
        built(1, subscribe, 0, 1, 1),   // bob subscribes r1
        built(2, announce, 0, 0, 0),    // carol announces into r1
        built(3, subscribe, 0, 1, 1),   // dave subscribes r1: over the cap of 2
        built(0, publish, 0, 0, 3),     // alice publishes to r1
        built(2, signal, 1, 0, 0),      // carol's pass-through
        open(false, full(2)),           // #5 carol again
        built(5, announce, 0, 0, 0),    // takes over carol's place in r1
        built(2, signal, 1, 0, 0),      // the replaced connection is out of the room
        Op::Advance(Step::Expiry),      // dave's token expires, #4 times out
        built(1, unsubscribe, 0, 0, 3), // bob unsubscribes: back within the cap
        built(5, leave, 0, 0, 0),       // carol leaves gracefully
        Op::Close {
            conn: 5,
            graceful: false,
        },
        Op::Blocked { conn: 0 },
    ];
    let mut golden_session = vec![open(false, full(0)), open(false, full(1))];
    for (i, conn) in (0..10u8).zip([0u8, 1].into_iter().cycle()) {
        golden_session.push(built(conn, golden, i, 1 - conn, 0));
    }
    golden_session.extend([
        built(0, to, 0, 1, 0x40),
        built(1, leave, 0, 0, 0),
        Op::Close {
            conn: 0,
            graceful: true,
        },
    ]);
    let pubsub = vec![
        open(true, full(0)),
        open(true, full(1)),
        open(true, Creds::Key(true)),
        open(false, full(2)),
        built(0, subscribe, 2 << 3 | 4, 6, 1), // alice: pattern
        built(1, subscribe, 2 << 3 | 4, 1, 2), // bob: c/a with fromMetadata
        built(2, subscribe, 2 << 3 | 4, 0, 3), // the key's peer, tenant t2
        built(3, announce, 0, 0, 0),
        built(1, publish, 2 << 3 | 4, 0, 4),
        built(0, publish, 0, 1, 5),
        built(0, send, 1, 0, 6),
        built(1, send, 2 << 2 | 1, 3, 7),
        built(3, to, 0, 0, 0x40),
        built(1, unsubscribe, 0, 0, 8),
        Op::Advance(Step::Hour),
    ];
    let in_band = vec![
        open(true, Creds::None),
        open(false, Creds::None),
        open(true, Creds::Garbage),
        open(false, Creds::Key(false)),
        built(0, publish, 0, 0, 1), // refused: unauthenticated (kind 3 mod 4)
        built(0, auth, 1, 0, 2),
        built(1, announce, 2, 0, 0),
        built(0, auth, 1, 3, 3), // already authenticated (b & 3 == 3: not a refresh)
        open(true, Creds::None),
        Op::Advance(Step::AuthTimeout),
    ];
    // Refreshes: narrowed grants end a subscription (bob hears the leave), a token
    // for another peer is refused, a short-lived one is warned 10 s before its exp
    // and closed 4002 at exp + leeway; a Broadcaster refreshes with `auth`.
    let refresh_kind = 15;
    let refresh = vec![
        open(true, full(0)),                // #0 alice, an hour
        open(true, full(1)),                // #1 bob
        open_broadcaster(Creds::None),      // #2
        built(0, subscribe, 0, 0, 1),       // alice: r1
        built(1, subscribe, 0, 0, 1),       // bob: r1
        built(2, auth, 2, 0, 1),            // #2 authenticates as carol
        built(0, refresh_kind, 4, 0x10, 4), // alice: no channels, an hour: r1 ends
        Op::Frame {
            conn: 0,
            frame: FrameSpec::Built {
                kind: refresh_kind,
                a: 0,
                b: 0,
                c: 5,
                token: Some(TokenSpec::full(1)), // bob's token: invalid_token
            },
        },
        built(0, refresh_kind, 0, 0, 6), // alice: every channel, 20 s
        built(2, auth, 1, 0, 2),         // #2 refreshes (r1, c/*), 20 s
        Op::Advance(Step::Millis(2000)),
        Op::Advance(Step::Expiry), // alice warned at +12 s, closed at +27 s
        Op::Advance(Step::Expiry),
    ];
    // History (variant bit 0x80: `c/a` keeps 2 messages for 5 s). JSON subscribe
    // `b`: bits 3..6 pick the `recover` (3 own position, 5 from the start, 6 a
    // future offset, 7 another epoch), bit 0 fromMetadata; `c`: request id q<c&15>,
    // `c >> 4` how far off.
    let recover = |pick: u8| pick << 3;
    let history = vec![
        open(true, full(0)),          // #0 alice
        open(true, full(1)),          // #1 bob
        built(0, subscribe, 0, 0, 3), // alice: c/a, offset 0, epoch learned
        built(1, publish, 0, 0, 4),   // offsets 1, 2, 3: 1 trimmed
        built(1, publish, 0, 1, 4),
        built(1, publish, 0, 3, 4),
        built(1, subscribe, 0, recover(5), 5), // bob from 0: trimmed, not recovered
        built(0, unsubscribe, 0, 0, 6),        // alice misses offset 4
        built(1, publish, 0, 5, 4),
        built(0, subscribe, 0, recover(3) | 1, 7), // alice from 3: replays 4
        built(0, subscribe, 0, recover(6), 8),     // a future offset
        built(0, subscribe, 0, recover(7), 0x19),  // a made-up epoch
        Op::Advance(Step::Millis(2550)),
        Op::Advance(Step::Millis(2550)), // 5.1 s: aged out, the stream forgotten
        built(1, publish, 0, 0, 4),      // a new life: offset 1
        built(0, subscribe, 0, recover(3), 9), // alice's epoch is the old one
        built(0, subscribe, 0, recover(3) | 6, 10), // c/*: a pattern has no position
        built(0, subscribe, 4, recover(3), 11), // r1 keeps no history
        Op::Advance(Step::Hour),
    ];
    let mut flood = vec![open(true, full(0)), open(true, full(1))];
    flood.push(built(1, subscribe, 0, 0, 1));
    for i in 0..14 {
        flood.push(built(0, publish, 0, i, 1));
    }
    flood.extend([
        Op::Frame {
            conn: 1,
            frame: FrameSpec::Oversize,
        },
        Op::Frame {
            conn: 0,
            frame: FrameSpec::Raw(b"{\"type\":".to_vec()),
        },
        Op::Advance(Step::Millis(2001)),
        built(0, publish, 0, 0, 1),
    ]);
    let anonymous = vec![
        open(true, Creds::None),
        open(true, Creds::None),
        open(false, Creds::None),
        built(0, subscribe, 1, 0, 1),
        built(1, subscribe, 1, 0, 1),
        built(2, announce, 1, 1, 0),
        built(0, send, 1, 0, 1),
        built(2, signal, 0, 1, 0),
        Op::Close {
            conn: 1,
            graceful: true,
        },
    ];
    // Broadcaster kinds: subscribe 0, unsubscribe 4, publish 6, ping 11, auth 14.
    let ping = 11;
    let broadcaster = vec![
        open_broadcaster(Creds::None), // #0 authenticates in band
        open_broadcaster(full(1)),     // #1 bob, token at connect
        open(true, full(0)),           // #2 alice (JSON)
        open(false, full(2)),          // #3 carol (rtc-signaller)
        built(0, subscribe, 3, 1, 1),  // #0 is pending: auth as dave
        built(0, subscribe, 0, 1, 1),  // dave subscribes r1
        built(1, subscribe, 0, 1, 2),  // bob subscribes r1
        built(1, subscribe, 0, 1, 3),  // again: already_subscribed
        built(2, subscribe, 0, 1, 4),  // alice subscribes r1
        built(3, announce, 0, 0, 0),   // carol announces into r1
        built(1, publish, 0, 0, 5),    // bob publishes: pushes with seq 1
        built(2, publish, 0, 1, 6),    // alice publishes: seq 2
        built(3, signal, 1, 0, 0),     // carol's pass-through: seq 3
        built(0, ping, 0, 0, 7),
        built(0, unsubscribe, 0, 0, 8),
        built(0, unsubscribe, 0, 0, 9), // not_subscribed
        built(1, subscribe, 4, 6, 10),  // a wildcard: invalid_channel
        open_broadcaster(Creds::None),  // #4 never authenticates
        built(4, 7, 0, 0, 3),           // a publish (kind 3 mod 4): unauthenticated
        Op::Advance(Step::AuthTimeout),
    ];
    vec![
        ("broadcaster", 8, broadcaster),
        ("crowded", 8, crowded),
        ("golden_session", 8, golden_session),
        ("pubsub", 8, pubsub),
        ("in_band_auth", 8, in_band),
        ("refresh", 8, refresh),
        ("history", 0x88, history),
        ("flood", 10, flood),
        ("anonymous", 9, anonymous),
    ]
}
