//! `GET /metrics`: the hub's, the driver's and the cluster engine's counts in the
//! Prometheus text format; `GET /healthz`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use switchyard_cluster::{EngineState, EngineStatus};
use switchyard_core::{CloseCode, Dialect};

use super::{Api, ApiResult, driver_gone, unauthorized};

/// `GET /healthz`: `ok` on one node; with a cluster engine its state and this node
/// (`degraded` while the engine is not connected; see the module docs of `rest`).
pub(super) async fn healthz(State(api): State<Api>) -> String {
    let status = &api.cluster.status;
    match status.state() {
        EngineState::Memory => "ok\n".into(),
        state => format!(
            "{}\nengine: {} {}\nnode: {}\n",
            if state == EngineState::Connected {
                "ok"
            } else {
                "degraded"
            },
            status.kind(),
            state.name(),
            api.cluster.node
        ),
    }
}

pub(super) async fn metrics(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let need_key = api.settings().metrics_need_key;
    if need_key && api.key(&headers).is_none() {
        return Err(unauthorized());
    }
    let (stats, nodes) = api
        .driver
        .call(|hub, _| (hub.stats(), hub.cluster_nodes()))
        .await
        .map_err(|_| driver_gone())?;
    let m = api.driver.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP switchyard_{name} {help}");
        let _ = writeln!(out, "# TYPE switchyard_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "switchyard_{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v.to_string())];
    family(
        "connections",
        "gauge",
        "Live connections by transport.",
        m.connections_by_wire()
            .into_iter()
            .map(|(w, n)| (format!("{{transport=\"{w}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "connections_by_dialect",
        "gauge",
        "Live connections by dialect.",
        stats
            .connections_by_dialect
            .iter()
            .map(|(d, n)| {
                (
                    format!("{{dialect=\"{}\"}}", Dialect::name(*d)),
                    n.to_string(),
                )
            })
            .collect(),
    );
    let scalars: [(&str, &str, &str, u64); 11] = [
        (
            "unauthenticated_connections",
            "gauge",
            "Connections waiting to authenticate.",
            stats.unauthenticated as u64,
        ),
        (
            "channels",
            "gauge",
            "Non-empty channels and rooms.",
            stats.channels as u64,
        ),
        (
            "memberships",
            "gauge",
            "Channel memberships (subscriptions and room members).",
            stats.memberships as u64,
        ),
        (
            "pattern_subscriptions",
            "gauge",
            "Wildcard subscriptions.",
            stats.pattern_subscriptions as u64,
        ),
        (
            "frames_in_total",
            "counter",
            "Frames received from connections.",
            load(&m.frames_in),
        ),
        (
            "frames_out_total",
            "counter",
            "Frames queued to connections.",
            load(&m.frames_out),
        ),
        (
            "messages_total",
            "counter",
            "Messages routed (publish, room broadcast, direct).",
            load(&m.messages),
        ),
        (
            "deliveries_total",
            "counter",
            "Fan-out deliveries of routed messages.",
            load(&m.deliveries),
        ),
        (
            "connections_opened_total",
            "counter",
            "Connections opened.",
            load(&m.opened),
        ),
        (
            "dropped_frames_total",
            "counter",
            "Frames for connections already gone.",
            load(&m.dropped_for_closed),
        ),
        (
            "connection_panics_total",
            "counter",
            "Connection tasks that panicked (each still closed in the hub).",
            load(&m.connection_panics),
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(name, kind, help, one(value));
    }
    let closes = m.closes();
    let slow = closes
        .iter()
        .find(|(c, _)| *c == CloseCode::SLOW_CONSUMER.0)
        .map_or(0, |(_, n)| *n);
    family(
        "slow_consumer_closes_total",
        "counter",
        "Connections closed as slow consumers (4013).",
        one(slow),
    );
    family(
        "server_closes_total",
        "counter",
        "Connections the server closed, by close code.",
        closes
            .into_iter()
            .map(|(c, n)| (format!("{{code=\"{c}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "errors_total",
        "counter",
        "Refused frames, by error code.",
        m.refusals()
            .into_iter()
            .map(|(c, n)| (format!("{{code=\"{c}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "auth_failures_total",
        "counter",
        "Refused credentials, by reason.",
        m.auth_failures()
            .into_iter()
            .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "inbox_depth",
        "gauge",
        "Messages waiting for the driver.",
        one(api.driver.inbox_depth() as u64),
    );
    let engine = &api.cluster.status;
    let kind = engine.kind();
    let labelled = |v: u64| vec![(format!("{{engine=\"{kind}\"}}"), v.to_string())];
    let engine_families: [(&str, &str, &str, u64); 8] = [
        (
            "engine_published_total",
            "counter",
            "Envelopes this node published to the other nodes.",
            EngineStatus::load(&engine.published),
        ),
        (
            "engine_received_total",
            "counter",
            "Envelopes from other nodes fed to the hub.",
            EngineStatus::load(&engine.received),
        ),
        (
            "engine_reconnects_total",
            "counter",
            "Connections to the engine's broker after the first.",
            EngineStatus::load(&engine.reconnects),
        ),
        (
            "engine_dropped_total",
            "counter",
            "Cluster items dropped: engine not connected, or its queue full.",
            EngineStatus::load(&engine.dropped) + load(&m.cluster_dropped),
        ),
        (
            "engine_connected",
            "gauge",
            "1 while the engine is connected (always 1 for the memory engine).",
            u64::from(matches!(
                engine.state(),
                EngineState::Connected | EngineState::Memory
            )),
        ),
        (
            "engine_heartbeat_lag_ms",
            "gauge",
            "How late the last heartbeat was written, from its due time, milliseconds.",
            EngineStatus::load(&engine.heartbeat_lag_ms),
        ),
        (
            "engine_nodes",
            "gauge",
            "Other nodes this node's hub knows (from their last state, until they are gone).",
            nodes as u64,
        ),
        (
            "engine_live_nodes",
            "gauge",
            "Other nodes heard from within presence_ttl.",
            EngineStatus::load(&engine.live_nodes),
        ),
    ];
    for (name, kind, help, value) in engine_families {
        family(name, kind, help, labelled(value));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
