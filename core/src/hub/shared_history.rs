//! History on a cluster: the channel's stream lives with the engine (Redis), shared
//! by every node, so a client recovers on whichever node it reconnects to.
//!
//! A message to a channel with a history is not delivered by the node it was
//! published on: the engine stores it, numbers it, and carries it to every node, the
//! publishing one included ([`RemoteEvent::Stored`](crate::cluster::RemoteEvent)), so
//! every node delivers a channel's messages in offset order. A subscribe asks the
//! engine where the stream stands ([`Outbound::Recover`]); until the answer comes,
//! live messages for that subscription are held back, then the missed ones are
//! replayed, the ack sent, and the held ones follow: no gap, no duplicate at the
//! seam, whichever of the answer and a live message arrives first.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::history::{Entry, Retention};
use super::{Hub, Output};
use crate::cluster::{self, Outbound, Publication, RecoverRequest, Recovered};
use crate::ids::{ConnId, PeerId, TenantId};
use crate::wire::codec::{Answer, Message};
use crate::wire::{Position, RequestId, Stamp};

/// A subscription waiting for the engine's answer, or just answered.
#[derive(Debug)]
struct Pending {
    conn: ConnId,
    tenant: TenantId,
    channel: Box<str>,
    recover: Option<Position>,
    rid: Option<RequestId>,
    with_meta: bool,
    foreign: bool,
    /// Live frames held back until the answer, with their offsets.
    held: Vec<(u64, Bytes)>,
    /// After the answer: the stream's offset then. A live message at or below it
    /// was already replayed (its bus delivery lagged behind the read), and is
    /// dropped; the first one above it ends the watch.
    floor: Option<u64>,
}

/// Subscriptions waiting for (or just past) the engine's answer.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    next: u64,
    by_request: BTreeMap<u64, Pending>,
    by_sub: BTreeMap<(ConnId, TenantId, Box<str>), u64>,
    /// Publishes to history channels whose answer waits for the engine to store
    /// them: message number → publisher and its request id.
    acks: BTreeMap<u64, (ConnId, RequestId)>,
}

impl Waiting {
    /// Forgets what `conn` waited for (it closed).
    pub(super) fn forget_conn(&mut self, conn: ConnId) {
        let mine: Vec<_> = self
            .by_sub
            .range((conn, TenantId::new(""), Box::from(""))..)
            .take_while(|((c, _, _), _)| *c == conn)
            .map(|(k, r)| (k.clone(), *r))
            .collect();
        for (key, request) in mine {
            self.by_sub.remove(&key);
            self.by_request.remove(&request);
        }
        self.acks.retain(|_, (c, _)| *c != conn);
    }

    /// Forgets what `conn` waited for on `channel` (it unsubscribed).
    pub(super) fn forget_sub(&mut self, conn: ConnId, tenant: &TenantId, channel: &str) {
        if let Some(request) = self
            .by_sub
            .remove(&(conn, tenant.clone(), Box::from(channel)))
        {
            self.by_request.remove(&request);
        }
    }

    /// Panics if the two indexes disagree or a connection is not `live`.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn check(&self, live: impl Fn(ConnId) -> bool) {
        assert_eq!(self.by_request.len(), self.by_sub.len(), "waiting indexes");
        for ((conn, tenant, channel), request) in &self.by_sub {
            let p = &self.by_request[request];
            assert!(p.conn == *conn && p.tenant == *tenant && p.channel == *channel);
            assert!(live(*conn), "{conn} waits for history after it closed");
        }
        for (conn, _) in self.acks.values() {
            assert!(
                live(*conn),
                "{conn} waits for a publish answer after it closed"
            );
        }
    }
}

impl Hub {
    /// Whether messages to `channel` go through the engine's shared stream.
    pub(super) fn shared_retention(&self, channel: &str) -> Option<Retention> {
        if self.config.cluster {
            self.history.retention(channel)
        } else {
            None
        }
    }

    /// Hands a message for a channel with a history to the engine, which stores,
    /// numbers and brings it back to every node (this one included).
    /// The publisher's answer waits until the engine stored it, when it asked for one
    /// (`ack`): returns whether it does.
    pub(super) fn publish_shared(
        &mut self,
        tenant: &TenantId,
        message: &Message<'_>,
        retention: Retention,
        origin: Option<ConnId>,
        ack: Option<&RequestId>,
    ) -> bool {
        let mut p = self.publication(tenant, message);
        p.history = Some(to_cluster_retention(retention));
        p.origin_conn = origin.map(ConnId::as_u64);
        let deferred = match (origin, ack) {
            (Some(conn), Some(rid)) => {
                self.waiting.acks.insert(p.number, (conn, rid.clone()));
                true
            }
            _ => false,
        };
        self.out
            .push_back(Output::Cluster(Box::new(Outbound::Publish(p))));
        deferred
    }

    /// The engine stored one of this node's publications (`stored`) or could not:
    /// its publisher gets the answer it waits for.
    pub(super) fn answer_stored(&mut self, p: &Publication, stored: bool) {
        let Some((conn, rid)) = self.waiting.acks.remove(&p.number) else {
            return;
        };
        if p.origin_conn != Some(conn.as_u64()) {
            return;
        }
        if stored {
            let stamp = Stamp {
                number: p.number,
                unix_ms: p.unix_ms,
            };
            self.answer(conn, Some(&rid), Answer::Published(&stamp));
        } else {
            self.refuse_request(
                conn,
                crate::codes::ErrorCode::Unavailable,
                "the cluster could not store this message (its Redis is unreachable); it was not delivered",
                Some(&rid),
            );
        }
    }

    /// Asks the engine where `channel`'s stream stands (and what a client at
    /// `recover` missed); the subscribe is answered when it replies.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ask_position(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        channel: &str,
        recover: Option<&Position>,
        (with_meta, foreign): (bool, bool),
        rid: Option<&RequestId>,
        retention: Retention,
    ) {
        self.waiting.forget_sub(conn, tenant, channel);
        let w = &mut self.waiting;
        w.next += 1;
        let request = w.next;
        w.by_sub
            .insert((conn, tenant.clone(), Box::from(channel)), request);
        w.by_request.insert(
            request,
            Pending {
                conn,
                tenant: tenant.clone(),
                channel: Box::from(channel),
                recover: recover.cloned(),
                rid: rid.cloned(),
                with_meta,
                foreign,
                held: Vec::new(),
                floor: None,
            },
        );
        self.out
            .push_back(Output::Cluster(Box::new(Outbound::Recover(
                RecoverRequest {
                    request,
                    tenant: tenant.as_str().to_owned(),
                    channel: channel.to_owned(),
                    since: recover.map(|p| p.offset),
                    retention: to_cluster_retention(retention),
                },
            ))));
    }

    /// A numbered message of a shared stream: delivered here like any other,
    /// except to subscriptions still waiting for their position (held back) and to
    /// `origin` (its publisher).
    pub(super) fn deliver_stored(&mut self, p: &Publication, origin: Option<ConnId>) {
        let Some(offset) = p.offset else {
            return;
        };
        let tenant = TenantId::new(&p.tenant);
        // The subscriptions of this channel still waiting (or just answered), found
        // once per message rather than looked up per recipient.
        let waiting: BTreeMap<ConnId, u64> = self
            .waiting
            .by_request
            .iter()
            .filter(|(_, w)| w.tenant == tenant && *w.channel == *p.channel)
            .map(|(&request, w)| (w.conn, request))
            .collect();
        let before = self.out.len();
        self.deliver_remote(p, origin);
        if waiting.is_empty() {
            return;
        }
        // Sends to waiting subscriptions are taken back out.
        let mut i = before;
        while i < self.out.len() {
            let request = match &self.out[i] {
                Output::Send { conn, .. } => waiting.get(conn).copied(),
                _ => None,
            };
            let Some(pending) = request.and_then(|r| self.waiting.by_request.get_mut(&r)) else {
                i += 1;
                continue;
            };
            match pending.floor {
                None => {
                    let Some(Output::Send { frame, .. }) = self.out.remove(i) else {
                        unreachable!("checked above")
                    };
                    pending.held.push((offset, frame));
                }
                Some(floor) if offset <= floor => {
                    self.out.remove(i);
                }
                Some(_) => {
                    let key = (pending.conn, tenant.clone(), pending.channel.clone());
                    self.waiting.by_sub.remove(&key);
                    self.waiting.by_request.remove(&request.expect("matched"));
                    i += 1;
                }
            }
        }
    }

    /// The engine's answer: replay, ack, then what was held back.
    pub(super) fn on_recovered(&mut self, r: Recovered) {
        let Some(pending) = self.waiting.by_request.get_mut(&r.request) else {
            return;
        };
        if pending.floor.is_some() {
            return;
        }
        let conn = pending.conn;
        let tenant = pending.tenant.clone();
        let channel = pending.channel.clone();
        let recover = pending.recover.clone();
        let rid = pending.rid.clone();
        let (with_meta, foreign) = (pending.with_meta, pending.foreign);
        let held = std::mem::take(&mut pending.held);
        let ttl = self
            .history
            .retention(&channel)
            .map_or(std::time::Duration::MAX, |r| r.ttl);
        let now_unix = self.unix_ms(self.now);
        let fresh: Vec<&Publication> = r
            .publications
            .iter()
            .filter(|p| super::history::still_kept(p.unix_ms, now_unix, ttl))
            .collect();
        let recovered = recover.as_ref().map(|from| {
            r.error.is_none()
                && *from.epoch == *r.epoch
                && from.offset <= r.offset
                && fresh
                    .iter()
                    .map(|p| p.offset.unwrap_or(0))
                    .eq(from.offset + 1..=r.offset)
        });
        if recovered == Some(true) {
            for p in &fresh {
                let entry = entry_of(p, self.now);
                self.replay(conn, &tenant, &channel, &entry, with_meta, foreign);
            }
        }
        let answer = if r.error.is_some() {
            Answer::Positioned {
                position: None,
                recovered: recovered.map(|_| false),
            }
        } else {
            Answer::Positioned {
                position: Some((r.offset, &r.epoch)),
                recovered,
            }
        };
        self.answer(conn, rid.as_ref(), answer);
        let mut passed = false;
        for (offset, frame) in held {
            if offset > r.offset {
                self.out.push_back(Output::Send { conn, frame });
                passed = true;
            }
        }
        let key = (conn, tenant, channel);
        if passed || r.error.is_some() {
            self.waiting.by_sub.remove(&key);
            self.waiting.by_request.remove(&r.request);
        } else if let Some(p) = self.waiting.by_request.get_mut(&r.request) {
            p.floor = Some(r.offset);
        }
    }
}

fn to_cluster_retention(r: Retention) -> cluster::Retention {
    cluster::Retention {
        size: r.size,
        ttl_ms: u64::try_from(r.ttl.as_millis()).unwrap_or(u64::MAX),
    }
}

/// A stored publication as the hub's own history entry, for replay.
fn entry_of(p: &Publication, at: std::time::Instant) -> Entry {
    let data = match &p.payload {
        cluster::Payload::Json { data } => Bytes::from(data.clone()),
        cluster::Payload::Signal { .. } => Bytes::from_static(b"null"),
    };
    Entry {
        offset: p.offset.unwrap_or(0),
        at,
        stamp: Stamp {
            number: p.number,
            unix_ms: p.unix_ms,
        },
        from: PeerId::new(&p.from),
        meta: Arc::new(p.meta.clone()),
        data,
        event: p.event.as_deref().map(Box::from),
    }
}
