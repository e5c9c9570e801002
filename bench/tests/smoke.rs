//! A seconds-long smoke test that the load tool works: every scenario, tiny, against a
//! Switchyard started in process on port 0 (and fan-out against the baseline). Real
//! figures come from `bench/compare.sh`, never from CI.

use std::time::Duration;

use switchyard::settings::Settings;
use switchyard_bench::client::{Target, parse_key};
use switchyard_bench::fanout::{self, FanoutOpts};
use switchyard_bench::proto::Proto;
use switchyard_bench::{idle, rooms, storm, wires};

const KEY: &str = "k1:smoke-test-secret-smoke-test-secret";

fn fanout_opts(target: Target) -> FanoutOpts {
    FanoutOpts {
        target,
        subs: 4,
        payload: 100,
        duration: Duration::from_millis(200),
        grace: Duration::from_millis(200),
        rates: vec![2_000],
        knee: None,
        server_pid: Some(std::process::id()),
        concurrency: 8,
        publish_target: None,
        watched: Vec::new(),
        redis: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_tiny_and_counts_deliveries() {
    let (kid, secret) = KEY.split_once(':').expect("kid:secret");
    let settings = Settings::from_toml(
        &format!(
            r#"
            [listen]
            ws = "127.0.0.1:0"
            [auth]
            anonymous = true
            [[auth.keys]]
            kid = "{kid}"
            secret = "{secret}"
            [limits]
            message_rate = 100000
            message_burst = 100000
            "#
        ),
        std::iter::empty(),
    )
    .expect("valid settings");
    let server = switchyard::server::start(&settings)
        .await
        .expect("server starts");
    let addr = server.ws_addr.expect("a WebSocket listener");
    let key = Some(parse_key(KEY).expect("key"));
    let json = Target::parse(&format!("ws://{addr}/v1"), Proto::Json, key.clone()).expect("url");
    let signaller = Target::parse(&format!("ws://{addr}/"), Proto::Signaller, None).expect("url");

    for target in [json.clone(), signaller.clone()] {
        let r = fanout::run(&fanout_opts(target))
            .await
            .expect("fanout runs");
        let step = &r.steps[0];
        assert_eq!(r.joined, 4);
        assert!(step.delivered > 0, "{step:?}");
        assert_eq!(step.delivered, step.expected, "{step:?}");
        assert_eq!(step.errors, 0, "{step:?}");
    }

    let r = rooms::run(&rooms::RoomsOpts {
        target: signaller,
        rooms: 2,
        peers: 3,
        rounds: 2,
        interval: Duration::ZERO,
        candidates: 2,
        sdp_bytes: 300,
        candidate_bytes: 100,
        server_pid: None,
        expect_leaves: true,
    })
    .await
    .expect("rooms runs");
    assert!(r.delivered > 0 && r.delivered == r.expected, "{r:?}");
    assert_eq!(r.leaves_received, r.leaves_expected, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");

    for key in [key.clone(), None] {
        let target = Target::parse(&format!("ws://{addr}/v1"), Proto::Json, key).expect("url");
        let r = storm::run(&storm::StormOpts {
            target,
            conns: 20,
            concurrency: 8,
            server_pid: None,
        })
        .await
        .expect("storm runs");
        assert_eq!((r.ok, r.failed), (20, 0), "{r:?}");
    }

    let r = idle::run(&idle::IdleOpts {
        target: json,
        steps: vec![10],
        concurrency: 8,
        settle: Duration::from_millis(50),
        server_pid: Some(std::process::id()),
    })
    .await
    .expect("idle runs");
    assert_eq!(r.failed, 0);
    assert!(r.points[1].rss_bytes > 0);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let baseline = listener.local_addr().expect("addr");
    tokio::spawn(switchyard_bench::baseline::serve(listener));
    let raw = Target::parse(&format!("ws://{baseline}/"), Proto::Raw, None).expect("url");
    let r = fanout::run(&fanout_opts(raw))
        .await
        .expect("baseline fanout");
    assert_eq!(r.steps[0].delivered, r.steps[0].expected);

    // The same baseline on the second stack.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let baseline = listener.local_addr().expect("addr");
    tokio::spawn(switchyard_bench::baseline::serve_on(
        listener,
        switchyard_bench::baseline::Stack::TokioWebsockets,
    ));
    let raw = Target::parse(&format!("ws://{baseline}/"), Proto::Raw, None).expect("url");
    let r = fanout::run(&fanout_opts(raw))
        .await
        .expect("baseline fanout on tokio-websockets");
    assert_eq!(r.steps[0].delivered, r.steps[0].expected);
}

/// A `redis-server` of the test's own on a free port, killed on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let redis = Self { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while switchyard_bench::redis_info::publish_calls(redis.addr()).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} never answered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        redis
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_fanout_publishes_to_redis_once_per_message() {
    let redis = Redis::start();
    let (kid, secret) = KEY.split_once(':').expect("kid:secret");
    let mut nodes = Vec::new();
    for id in ["smoke-a", "smoke-b"] {
        let settings = Settings::from_toml(
            &format!(
                r#"
                [listen]
                ws = "127.0.0.1:0"
                [auth]
                anonymous = true
                [[auth.keys]]
                kid = "{kid}"
                secret = "{secret}"
                [limits]
                message_rate = 100000
                message_burst = 100000
                [engine]
                kind = "redis"
                url = "redis://{addr}"
                node_id = "{id}"
                "#,
                addr = redis.addr()
            ),
            std::iter::empty(),
        )
        .expect("valid settings");
        nodes.push(
            switchyard::server::start(&settings)
                .await
                .expect("node starts"),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nodes.iter().any(|n| n.engine.state().name() != "connected") {
        assert!(
            std::time::Instant::now() < deadline,
            "nodes never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = |n: &switchyard::server::Running| {
        let addr = n.ws_addr.expect("a WebSocket listener");
        let key = Some(parse_key(KEY).expect("key"));
        Target::parse(&format!("ws://{addr}/v1"), Proto::Json, key).expect("url")
    };
    let mut opts = fanout_opts(url(&nodes[1]));
    opts.publish_target = Some(url(&nodes[0]));
    opts.redis = Some(redis.addr());
    let r = fanout::run(&opts).await.expect("cross-node fanout runs");
    let step = &r.steps[0];
    assert!(step.delivered > 0, "{step:?}");
    assert_eq!(step.delivered, step.expected, "{step:?}");
    assert_eq!(step.errors, 0, "{step:?}");
    // One PUBLISH per message (plus a few heartbeats), not one per subscriber.
    let publishes = step.redis_publishes.expect("Redis answered INFO");
    assert!(
        publishes >= step.published && publishes < step.published + 20,
        "{publishes} PUBLISH for {} messages to {} subscribers",
        step.published,
        step.subs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wires_scenario_counts_grpc_and_websocket_deliveries() {
    let (kid, secret) = KEY.split_once(':').expect("kid:secret");
    let settings = Settings::from_toml(
        &format!(
            r#"
            [listen]
            ws = "127.0.0.1:0"
            grpc = "127.0.0.1:0"
            [[auth.keys]]
            kid = "{kid}"
            secret = "{secret}"
            [limits]
            message_rate = 100000
            message_burst = 100000
            "#
        ),
        std::iter::empty(),
    )
    .expect("valid settings");
    let server = switchyard::server::start(&settings)
        .await
        .expect("server starts");
    let addr = server.ws_addr.expect("a WebSocket listener");
    let key = Some(parse_key(KEY).expect("key"));
    let target = Target::parse(&format!("ws://{addr}/v1"), Proto::Json, key).expect("url");
    let r = wires::run(&wires::WiresOpts {
        target,
        grpc: server.grpc_addr.expect("a gRPC listener"),
        subs: 3,
        rates: vec![2_000],
        payload: 100,
        duration: Duration::from_millis(200),
        grace: Duration::from_millis(200),
        server_pid: Some(std::process::id()),
    })
    .await
    .expect("wires runs");
    assert_eq!((r.ws_joined, r.grpc_joined), (3, 3));
    let [ws, grpc, mixed] = &r.phases[..] else {
        panic!("three phases: {r:?}");
    };
    assert!(ws.published > 0 && ws.grpc_delivered == 0, "{ws:?}");
    assert_eq!(ws.ws_delivered, ws.published * 3, "{ws:?}");
    assert!(grpc.published > 0 && grpc.ws_delivered == 0, "{grpc:?}");
    assert_eq!(grpc.grpc_delivered, grpc.published * 3, "{grpc:?}");
    assert_eq!(mixed.ws_delivered, mixed.published * 3, "{mixed:?}");
    assert_eq!(mixed.grpc_delivered, mixed.published * 3, "{mixed:?}");
    assert_eq!(r.grpc_over_ws_cpu.len(), 1);
}
