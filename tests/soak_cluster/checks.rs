//! What the cluster promises, checked once the chaos stops: presence on every
//! survivor, departures (the killed node's within the TTL) and deliveries per room,
//! with loss allowed only inside the documented windows; and how to wait for them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::http;
use super::harness::{API_KEY, TTL};
use super::{Cmd, Ev, Incarnation, KILL_MARGIN, ROOMS, WINDOW_SLACK, lock};

/// When the cluster was allowed to lose cross-node traffic.
pub(super) struct Windows {
    /// The node killed with `kill -9`, and when.
    pub(super) killed: usize,
    pub(super) killed_at: Instant,
    /// The Redis outage, slack included at both ends.
    pub(super) outage: (Instant, Instant),
    /// When Redis was killed: the origin of the times in complaints.
    pub(super) redis_killed_at: Instant,
}

impl Windows {
    fn in_outage(&self, t: Instant) -> bool {
        self.outage.0 <= t && t <= self.outage.1
    }

    fn kill_deadline(&self) -> Instant {
        self.killed_at + TTL + KILL_MARGIN
    }

    /// `t` in milliseconds from the Redis kill, for complaints.
    fn since_redis_kill(&self, t: Instant) -> String {
        match t.checked_duration_since(self.redis_killed_at) {
            Some(d) => format!("+{}ms", d.as_millis()),
            None => format!("-{}ms", (self.redis_killed_at - t).as_millis()),
        }
    }
}

/// What the last pass of [`check_rooms`] counted.
#[derive(Debug, Default)]
pub(super) struct Figures {
    /// Deliveries whose order was checked, on every client.
    pub(super) deliveries: u64,
    /// (publisher, observer) pairs with at least one message published.
    pub(super) pairs: u64,
    /// Messages an observer missed, all inside a window.
    pub(super) lost_in_window: u64,
    /// Leaves of the killed node's peers seen by observers on the survivors.
    pub(super) kill_leaves: u64,
    /// The latest of those, after the kill.
    pub(super) slowest_kill_leave: Duration,
    /// Cross-node messages that arrived after their publisher's leave although it
    /// sent them before leaving (see [`check_rooms`]), and the first such.
    pub(super) after_leave: u64,
    pub(super) after_leave_example: Option<String>,
}

/// Departures and deliveries as seen by every member that stayed connected
/// throughout on a node that survived (the observers); and no client on a survivor
/// hearing of the killed node's peers arriving once they should be gone.
pub(super) fn check_rooms(
    all: &[&Incarnation],
    w: &Windows,
    figures: &mut Figures,
) -> Result<(), String> {
    *figures = Figures::default();
    let mut complaints = Vec::new();
    let dead: BTreeSet<String> = all
        .iter()
        .filter(|i| i.node == w.killed)
        .map(|i| i.id())
        .collect();
    for inc in all {
        // Every subscriber, observer or not, killed or not: each publisher's sequence
        // numbers strictly increase.
        let r = lock(&inc.rec);
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &r.events {
            if let Ev::Msg(from, n) = e {
                figures.deliveries += 1;
                if let Some(l) = last.insert(from, *n)
                    && *n <= l
                {
                    complaints.push(format!(
                        "{} (node {}) got message {n} from {from} after {l}: duplicated or \
                         reordered",
                        r.id, inc.node
                    ));
                }
            }
        }
        if inc.node == w.killed {
            continue;
        }
        for (e, at) in r.events.iter().zip(&r.at) {
            if let Ev::Join(id) = e
                && dead.contains(id)
                && *at > w.kill_deadline()
            {
                complaints.push(format!(
                    "{} (node {}) heard killed node {}'s peer {id} arrive {:?} after the kill",
                    r.id,
                    inc.node,
                    w.killed,
                    *at - w.killed_at
                ));
            }
        }
    }
    let observers = all
        .iter()
        .filter(|i| i.stable && i.round == 0 && i.node != w.killed);
    for observer in observers {
        let r = lock(&observer.rec);
        let seen_by = || format!("{} ({:?} on node {})", r.id, observer.lang, observer.node);
        if r.ended {
            complaints.push(format!("observer {} was disconnected", seen_by()));
            continue;
        }
        for other in all.iter().filter(|o| o.room == observer.room) {
            if Arc::ptr_eq(&other.rec, &observer.rec) {
                continue;
            }
            let o = lock(&other.rec);
            if o.id.is_empty() {
                continue;
            }
            let id = &o.id;
            let same_node = other.node == observer.node;
            let live = other.fate.is_none() && !o.ended;
            let what = || {
                format!(
                    "{id} ({:?} on node {}, fate {:?}, close {:?})",
                    other.lang, other.node, other.fate, o.close
                )
            };
            let joins = r.events.iter().filter(|e| **e == Ev::Join(id.clone()));
            let leaves = r.events.iter().filter(|e| **e == Ev::Leave(id.clone()));
            let (joins, leaves) = (joins.count(), leaves.count());
            // A cross-node life inside a window may go unseen altogether.
            let unseen_ok = !same_node
                && o.joined_at.is_some_and(|j| {
                    let end = other.fate_at.unwrap_or_else(Instant::now);
                    (w.in_outage(j) && w.in_outage(end))
                        || (other.node == w.killed && j >= w.killed_at - WINDOW_SLACK)
                });
            if live && o.joined && (joins, leaves) != (1, 0) {
                complaints.push(format!(
                    "{} saw live {} join {joins}x and leave {leaves}x: {}",
                    seen_by(),
                    what(),
                    trace(&r.events, &r.at, id, w, false)
                ));
            }
            let departed_ok = joins <= 1
                && leaves == joins
                && (!o.joined || joins == 1 || (joins == 0 && unseen_ok));
            if !live && !departed_ok {
                complaints.push(format!(
                    "{} saw departed {} (joined: {}, gone at {}) join {joins}x and leave \
                     {leaves}x: {}",
                    seen_by(),
                    what(),
                    o.joined,
                    other.fate_at.map_or("-".into(), |t| w.since_redis_kill(t)),
                    trace(&r.events, &r.at, id, w, false)
                ));
            }
            if other.fate == Some(Cmd::Killed) && leaves == 1 {
                let at = r
                    .events
                    .iter()
                    .zip(&r.at)
                    .find_map(|(e, at)| (*e == Ev::Leave(id.clone())).then_some(*at))
                    .expect("a leave");
                figures.kill_leaves += 1;
                let after = at.saturating_duration_since(w.killed_at);
                figures.slowest_kill_leave = figures.slowest_kill_leave.max(after);
                if at > w.kill_deadline() {
                    complaints.push(format!(
                        "{} saw killed {} leave {after:?} after the kill, past presence_ttl \
                         {TTL:?} + {KILL_MARGIN:?}",
                        seen_by(),
                        what()
                    ));
                }
            }
            // Sequence numbers strictly increasing: no duplicate, no reordering; and
            // none while the publisher is absent, outside a window.
            let mut got = BTreeSet::new();
            let mut last: Option<u64> = None;
            let mut present = false;
            let mut left = false;
            for e in &r.events {
                match e {
                    Ev::Join(j) if j == id => present = true,
                    Ev::Leave(l) if l == id => (present, left) = (false, true),
                    Ev::Msg(from, n) if from == id => {
                        let sent_at = o.sent_at.get(*n as usize).copied();
                        if last.is_some_and(|l| *n <= l) || sent_at.is_none() {
                            complaints.push(format!(
                                "{} got message {n} from {} after {last:?} (it sent {}): \
                                 duplicated or reordered",
                                seen_by(),
                                what(),
                                o.sent
                            ));
                            continue;
                        }
                        let excused = !same_node && sent_at.is_some_and(|t| w.in_outage(t));
                        // A message must never arrive after its publisher's leave: the
                        // engine sends a heartbeat's state only after every change the
                        // state already reflects (cluster/src/redis_engine.rs).
                        let overtaken = !same_node
                            && left
                            && other
                                .fate_at
                                .zip(sent_at)
                                .is_some_and(|(gone, sent)| sent <= gone);
                        if !present && overtaken {
                            figures.after_leave += 1;
                            complaints.push(format!(
                                "{} got message {n} from {} after its publisher's leave: {}",
                                seen_by(),
                                what(),
                                trace(&r.events, &r.at, id, w, true)
                            ));
                        } else if !present && !excused {
                            complaints.push(format!(
                                "{} got message {n} (sent at {} from the Redis kill) from {} \
                                 while it was not present; what it saw of it: {}",
                                seen_by(),
                                w.since_redis_kill(sent_at.expect("checked above")),
                                what(),
                                trace(&r.events, &r.at, id, w, true)
                            ));
                        }
                        last = Some(*n);
                        got.insert(*n);
                    }
                    _ => {}
                }
            }
            if o.sent > 0 {
                figures.pairs += 1;
            }
            // Every message not received must have a reason.
            let mut lost = Vec::new();
            for (n, t) in o.sent_at.iter().enumerate() {
                let n = n as u64;
                if got.contains(&n) {
                    continue;
                }
                // A reset may discard what the node had not read; a connection that
                // ended under the client, anything.
                let unacked_at_departure = (n >= o.acked
                    && matches!(other.fate, Some(Cmd::Reset | Cmd::Killed)))
                    || (!live && other.fate.is_none());
                let windowed = !same_node
                    && (w.in_outage(*t)
                        || (other.node == w.killed && *t >= w.killed_at - WINDOW_SLACK));
                if windowed {
                    figures.lost_in_window += 1;
                } else if !unacked_at_departure {
                    lost.push(format!("{n} at {}", w.since_redis_kill(*t)));
                }
            }
            if !lost.is_empty() {
                complaints.push(format!(
                    "{} lost {} message(s) from {} outside any window: {:?} (sent at, from the \
                     Redis kill; it sent {}, {} acked)",
                    seen_by(),
                    lost.len(),
                    what(),
                    &lost[..lost.len().min(10)],
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
        Err(format!(
            "(the Redis outage's window, slack included, runs from {} to {} from its kill; node \
             {} was killed at {})\n{}",
            w.since_redis_kill(w.outage.0),
            w.since_redis_kill(w.outage.1),
            w.killed,
            w.since_redis_kill(w.killed_at),
            complaints.join("\n")
        ))
    }
}

/// What `events` show of peer `id` (its messages too with `msgs`), each with its time
/// from the Redis kill.
fn trace(events: &[Ev], at: &[Instant], id: &str, w: &Windows, msgs: bool) -> String {
    let seen: Vec<String> = events
        .iter()
        .zip(at)
        .filter_map(|(e, t)| {
            let what = match e {
                Ev::Join(j) if j == id => "join".to_owned(),
                Ev::Leave(l) if l == id => "leave".to_owned(),
                Ev::Msg(from, n) if msgs && from == id => format!("msg {n}"),
                _ => return None,
            };
            Some(format!("{what} {}", w.since_redis_kill(*t)))
        })
        .take(12)
        .collect();
    seen.join(", ")
}

/// The peers `GET /v1/presence` on `addr` lists in `channel`.
async fn presence(addr: SocketAddr, channel: &str) -> Result<BTreeSet<String>, String> {
    let path = format!("/v1/presence?channel={channel}");
    let (status, body) = http(addr, "GET", &path, Some(API_KEY), "").await;
    if status != 200 {
        return Err(format!("{addr}{path}: {status} {body}"));
    }
    Ok(serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["peers"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|p| p["peerId"].as_str().map(str::to_owned))
        .collect())
}

/// REST presence on every survivor against the live, joined clients of the cluster.
pub(super) async fn check_presence(
    survivors: &[SocketAddr],
    all: &[&Incarnation],
) -> Result<(), String> {
    let mut complaints = Vec::new();
    for room in 0..ROOMS {
        let live: BTreeSet<String> = all
            .iter()
            .filter(|i| i.room == room && i.live() && lock(&i.rec).joined)
            .map(|i| i.id())
            .collect();
        let channel = format!("room-{room}");
        for addr in survivors {
            let rest = presence(*addr, &channel).await?;
            if rest != live {
                complaints.push(format!(
                    "{channel} on {addr}: {:?} extra and {:?} missing",
                    rest.difference(&live).collect::<Vec<_>>(),
                    live.difference(&rest).collect::<Vec<_>>()
                ));
            }
        }
    }
    if complaints.is_empty() {
        Ok(())
    } else {
        Err(complaints.join("\n"))
    }
}

/// None of `dead` in REST presence on any survivor, in any room.
pub(super) async fn check_absent(survivors: &[SocketAddr], dead: &[String]) -> Result<(), String> {
    let mut complaints = Vec::new();
    for addr in survivors {
        for room in 0..ROOMS {
            let channel = format!("room-{room}");
            let listed = presence(*addr, &channel).await?;
            let stale: Vec<&String> = dead.iter().filter(|d| listed.contains(*d)).collect();
            if !stale.is_empty() {
                complaints.push(format!("{channel} on {addr}: {stale:?}"));
            }
        }
    }
    if complaints.is_empty() {
        Ok(())
    } else {
        Err(complaints.join("\n"))
    }
}

/// Waits until `check` passes, at most `within`; panics with its last complaint.
pub(super) async fn converge<F, Fut>(what: &str, seed: u64, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(complaint) if Instant::now() >= deadline => panic!(
                "soak_cluster (seed {seed}): {what} did not hold within {within:?}:\n{complaint}\n\
                 replay with SWITCHYARD_SOAK_SEED={seed}"
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
