//! What the protocol promises, checked once the chaos stops: presence, departures and
//! deliveries per room, then an empty server once everyone has gone.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::probes::{fd_count, get};
use super::{Env, Ev, Incarnation, ROOMS, lock};

/// Presence, departures and deliveries, as seen by every member that stayed
/// connected throughout (the stable ones).
pub(super) fn check_rooms(all: &[&Incarnation]) -> Result<(), String> {
    let mut complaints = Vec::new();
    for stable in all.iter().filter(|i| i.stable) {
        let r = lock(&stable.rec);
        if r.ended {
            complaints.push(format!(
                "stable client {} ({:?} {:?}) was disconnected (close {:?})",
                r.id, stable.wire, stable.lang, r.close
            ));
            continue;
        }
        for other in all.iter().filter(|o| o.room == stable.room) {
            if Arc::ptr_eq(&other.rec, &stable.rec) {
                continue;
            }
            let o = lock(&other.rec);
            if o.id.is_empty() {
                continue;
            }
            let (id, live) = (&o.id, other.fate.is_none() && !o.ended);
            let joins = r.events.iter().filter(|e| **e == Ev::Join(id.clone()));
            let leaves = r.events.iter().filter(|e| **e == Ev::Leave(id.clone()));
            let (joins, leaves) = (joins.count(), leaves.count());
            let seen_by = || format!("{} ({:?} {:?})", r.id, stable.wire, stable.lang);
            let what = || {
                format!(
                    "{id} ({:?} {:?}, fate {:?}, close {:?})",
                    other.wire, other.lang, other.fate, o.close
                )
            };
            if live && o.joined && (joins, leaves) != (1, 0) {
                complaints.push(format!(
                    "{} saw live {} join {joins}x and leave {leaves}x",
                    seen_by(),
                    what()
                ));
            }
            if !live && (joins > 1 || leaves != joins || (o.joined && joins != 1)) {
                complaints.push(format!(
                    "{} saw departed {} (joined: {}) join {joins}x and leave {leaves}x",
                    seen_by(),
                    what(),
                    o.joined
                ));
            }
            // This publisher's messages: 0, 1, 2… with nothing before its arrival
            // or after its departure.
            let mut next = 0;
            let mut present = false;
            for e in &r.events {
                match e {
                    Ev::Join(j) if j == id => present = true,
                    Ev::Leave(l) if l == id => present = false,
                    Ev::Msg(from, n) if from == id => {
                        if *n != next || !present {
                            complaints.push(format!(
                                "{} got message {n} from {} (expected {next}, present: {present})",
                                seen_by(),
                                what()
                            ));
                            break;
                        }
                        next += 1;
                    }
                    _ => {}
                }
            }
            let lost = if live {
                next != o.sent
            } else {
                next < o.acked || next > o.sent
            };
            if lost {
                complaints.push(format!(
                    "{} got {next} messages from {} which sent {} ({} acked)",
                    seen_by(),
                    what(),
                    o.sent,
                    o.acked
                ));
            }
        }
    }
    complaints.truncate(20);
    if complaints.is_empty() {
        Ok(())
    } else {
        Err(complaints.join("\n"))
    }
}

/// The hub's presence and REST's `/v1/presence` against the live, joined clients.
pub(super) async fn check_presence(env: &Env, all: &[&Incarnation]) -> Result<(), String> {
    let mut complaints = Vec::new();
    for room in 0..ROOMS {
        let live: BTreeSet<String> = all
            .iter()
            .filter(|i| i.room == room && i.live() && lock(&i.rec).joined)
            .map(|i| i.id())
            .collect();
        let channel = format!("room-{room}");
        let c = channel.clone();
        let hub: BTreeSet<String> = env
            .driver()
            .call(move |hub, _| {
                hub.check_invariants();
                hub.presence("default", &c)
                    .into_iter()
                    .map(|(p, _)| p.as_str().to_owned())
                    .collect()
            })
            .await
            .expect("driver alive");
        if hub != live {
            complaints.push(format!(
                "{channel}: hub has {:?} extra and {:?} missing",
                hub.difference(&live).collect::<Vec<_>>(),
                live.difference(&hub).collect::<Vec<_>>()
            ));
            continue;
        }
        let addr = env.running.ws_addr.expect("ws");
        let (status, body) = get(addr, &format!("/v1/presence?channel={channel}")).await;
        let rest: BTreeSet<String> = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["peers"].as_array().cloned())
            .into_iter()
            .flatten()
            .filter_map(|p| p["peerId"].as_str().map(str::to_owned))
            .collect();
        if status != 200 || rest != live {
            complaints.push(format!(
                "{channel}: REST says {status} {rest:?}, not {live:?}"
            ));
        }
    }
    if complaints.is_empty() {
        Ok(())
    } else {
        Err(complaints.join("\n"))
    }
}

/// The server's own counts, once every client is gone: nothing left anywhere.
pub(super) async fn check_empty(env: &Env, baseline_fds: usize) -> Result<(), String> {
    let (empty, stats) = env
        .driver()
        .call(|hub, _| {
            hub.check_invariants();
            (hub.is_empty(), hub.stats())
        })
        .await
        .expect("driver alive");
    let wires = env.driver().metrics().connections_by_wire();
    let fds = fd_count();
    if !empty || stats.connections != 0 || wires.iter().any(|(_, n)| *n != 0) {
        return Err(format!("hub empty: {empty}, {stats:?}, wires {wires:?}"));
    }
    if fds > baseline_fds {
        return Err(format!(
            "{fds} file descriptors open, {baseline_fds} before the run"
        ));
    }
    let (status, metrics) = get(env.running.ws_addr.expect("ws"), "/metrics").await;
    let nonzero: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            [
                "switchyard_connections{",
                "switchyard_channels ",
                "switchyard_memberships ",
            ]
            .iter()
            .any(|m| l.starts_with(m))
                || l.starts_with("switchyard_unauthenticated_connections ")
                || l.starts_with("switchyard_connection_panics_total ")
        })
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    if status != 200 || !nonzero.is_empty() {
        return Err(format!("/metrics {status}: {nonzero:?}"));
    }
    Ok(())
}
