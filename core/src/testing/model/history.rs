//! Channel history as the model keeps it: per (tenant, channel) stream, the epoch the
//! hub named for this life of the stream, the last offset, the kept messages with
//! the time each was stored, and when the stream was last used. From it the model
//! predicts the `offset` of every message, the position in a subscribe's ack, and
//! what a `recover` replays and whether it `recovered`.
//!
//! The rules are the run's config read with the model's own `glob` (first match
//! wins). Aging follows the hub's clock: the model ages its streams at every
//! `handle_timeout` the run makes, and the run makes one at every deadline the hub
//! reports, so both drop the same entries at the same instants. An epoch cannot be
//! predicted (it comes from the hub's seeded id stream): the model learns it from
//! the first ack that names it, then holds the hub to it while the stream lives, and
//! requires every later life of any stream to get an epoch never seen before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Run;
use super::expect::Exp;
use super::state::Key;
use crate::testing::frames::{Seen, glob};
use crate::wire::Position;

/// One kept message.
#[derive(Clone, Debug)]
pub(super) struct Stored {
    offset: u64,
    at: Instant,
    from: String,
    data: Bytes,
}

#[derive(Debug)]
pub(super) struct Stream {
    /// The hub's name for this life of the stream, once an ack told the model.
    epoch: Option<String>,
    top: u64,
    entries: VecDeque<Stored>,
    touched: Instant,
    size: usize,
    ttl: Duration,
}

impl Stream {
    fn deadline(&self) -> Instant {
        self.entries
            .front()
            .map_or(self.touched, |e| e.at)
            .checked_add(self.ttl)
            .expect("short runs")
    }
}

/// Every live stream, and every epoch the hub has named in this run.
#[derive(Debug, Default)]
pub(super) struct Streams {
    live: BTreeMap<Key, Stream>,
    epochs: BTreeSet<String>,
    /// Streams forgotten at least once: their next epoch is a new life's.
    forgotten: BTreeSet<Key>,
}

/// What a subscribe to a channel must be answered: the messages replayed, in
/// order, then the ack (when it has a request id).
pub(super) struct Answer {
    pub(super) replay: Vec<Exp>,
    pub(super) ack: Option<Exp>,
}

impl Run {
    /// How much `channel` keeps (size, ttl): the first rule naming it.
    fn retention(&self, channel: &str) -> Option<(usize, Duration)> {
        self.config
            .history
            .iter()
            .find(|r| glob(&r.channels, channel))
            .map(|r| (r.size, r.ttl))
    }

    /// The stream of `key` used now: the live one, or a new life (offset 0, epoch
    /// still unknown).
    fn touch(&mut self, key: &Key, (size, ttl): (usize, Duration)) -> &mut Stream {
        let now = self.now;
        let stream = self.streams.live.entry(key.clone()).or_insert(Stream {
            epoch: None,
            top: 0,
            entries: VecDeque::new(),
            touched: now,
            size,
            ttl,
        });
        stream.touched = now;
        (stream.size, stream.ttl) = (size, ttl);
        stream
    }

    /// A publish the hub accepted on `key`: its offset, or `None` when the channel
    /// keeps no history.
    pub(super) fn store(&mut self, key: &Key, from: &str, data: &Bytes) -> Option<u64> {
        let retention = self.retention(&key.1)?;
        let at = self.now;
        let stream = self.touch(key, retention);
        stream.top += 1;
        stream.entries.push_back(Stored {
            offset: stream.top,
            at,
            from: from.to_owned(),
            data: data.clone(),
        });
        let trimmed = stream.entries.len() > stream.size;
        if trimmed {
            stream.entries.pop_front();
        }
        let offset = stream.top;
        if trimmed {
            self.coverage.add("history: trimmed by size");
        }
        self.coverage.add("history: stored");
        Some(offset)
    }

    /// The answer to an accepted JSON subscribe to the exact `channel` with a request
    /// id `rid` (if any), recovering from `recover` (if asked) with `fromMetadata`
    /// when `meta`. `seen` is what the subscriber received: the epoch of a new life
    /// is learned from its ack.
    pub(super) fn position(
        &mut self,
        idx: usize,
        channel: &str,
        rid: Option<&str>,
        recover: Option<&Position>,
        meta: bool,
        seen: &[(Seen, Bytes)],
    ) -> Answer {
        let key = (self.conns[idx].tenant.clone(), channel.to_owned());
        let Some(retention) = self.retention(channel) else {
            if recover.is_some() {
                self.coverage.add("history: not recovered: no history");
            }
            return Answer {
                replay: Vec::new(),
                ack: rid.map(|rid| match recover {
                    Some(_) => Exp::Positioned {
                        rid: rid.to_owned(),
                        position: None,
                        recovered: Some(false),
                    },
                    None => Exp::Ack(rid.to_owned()),
                }),
            };
        };
        self.touch(&key, retention);
        self.learn_epoch(&key, rid, seen);
        let stream = &self.streams.live[&key];
        let (top, epoch) = (stream.top, stream.epoch.clone());
        let first = stream.entries.front().map_or(top + 1, |e| e.offset);
        let mut replay = Vec::new();
        // `Err` names why a recover failed.
        let outcome = recover.map(|from| {
            if epoch.as_deref() != Some(from.epoch.as_str()) {
                return Err("history: not recovered: epoch");
            }
            if from.offset > top {
                return Err("history: not recovered: future offset");
            }
            if first > from.offset + 1 {
                return Err("history: not recovered: trimmed");
            }
            for e in stream.entries.iter().filter(|e| e.offset > from.offset) {
                replay.push(Exp::Message {
                    channel: channel.to_owned(),
                    from: e.from.clone(),
                    data: Some(e.data.clone()),
                    command: None,
                    meta,
                    offset: Some(e.offset),
                });
            }
            Ok(())
        });
        match outcome {
            Some(Err(why)) => self.coverage.add(why),
            Some(Ok(())) if replay.is_empty() => {
                self.coverage.add("history: recovered, nothing missed");
            }
            Some(Ok(())) => self.coverage.add("history: recovered"),
            None => {}
        }
        let recovered = outcome.map(|o| o.is_ok());
        for _ in &replay {
            self.coverage.add("history: replayed message");
        }
        if let Some(epoch) = &epoch {
            self.conns[idx]
                .positions
                .insert(channel.to_owned(), (top, epoch.clone()));
        }
        let ack = rid.map(|rid| Exp::Positioned {
            rid: rid.to_owned(),
            // Unknown only when no ack names it (checked by `learn_epoch`).
            position: epoch.map(|e| (top, e)),
            recovered,
        });
        Answer { replay, ack }
    }

    /// Adopts the epoch of a new life of `key` from the subscriber's ack: 16 hex
    /// digits (checked by the frame parser), never one the hub named before.
    fn learn_epoch(&mut self, key: &Key, rid: Option<&str>, seen: &[(Seen, Bytes)]) {
        let Some(rid) = rid else { return };
        if self.streams.live[key].epoch.is_some() {
            return;
        }
        let named = seen.iter().find_map(|(s, _)| match s {
            Seen::Positioned {
                rid: r,
                position: Some((_, epoch)),
                ..
            } if r == rid => Some(epoch.clone()),
            _ => None,
        });
        let Some(epoch) = named else {
            // The ack's absence is reported when the expectations are compared.
            return;
        };
        let fresh = self.streams.epochs.insert(epoch.clone());
        self.check(
            fresh,
            format!("{key:?}: epoch {epoch} was already used by an earlier stream"),
        );
        if self.streams.forgotten.contains(key) {
            self.coverage.add("history: new epoch");
        }
        self.trace.push(format!("  model: {key:?} epoch {epoch}"));
        self.streams.live.get_mut(key).expect("touched").epoch = Some(epoch);
    }

    /// Ages the streams to `now`, as the hub's `handle_timeout` does: entries older
    /// than their ttl go, and a stream with none left, unused for its ttl, is
    /// forgotten.
    pub(super) fn age_history(&mut self, now: Instant) {
        let mut aged = 0;
        let mut forgotten = Vec::new();
        for (key, s) in &mut self.streams.live {
            while s.entries.front().is_some_and(|e| e.at + s.ttl <= now) {
                s.entries.pop_front();
                aged += 1;
            }
            if s.entries.is_empty() && s.touched + s.ttl <= now {
                forgotten.push(key.clone());
            }
        }
        for _ in 0..aged {
            self.coverage.add("history: aged out");
        }
        for key in forgotten {
            self.streams.live.remove(&key);
            self.streams.forgotten.insert(key);
            self.coverage.add("history: stream forgotten");
        }
    }

    /// When the model's history next ages something out.
    pub(super) fn history_deadline(&self) -> Option<Instant> {
        self.streams.live.values().map(Stream::deadline).min()
    }

    /// Whether any stream lives.
    pub(super) fn history_held(&self) -> bool {
        !self.streams.live.is_empty()
    }

    /// For a subscribe that will recover (`pick` as in [`Run::recover_field`]), a
    /// channel of connection `idx`'s tenant whose stream's epoch the model knows,
    /// the `i`th of them.
    pub(super) fn resumable(&self, idx: usize, pick: u8, i: u8) -> Option<String> {
        if self.config.history.is_empty() || pick < 3 {
            return None;
        }
        let tenant = &self.conns[idx].tenant;
        let known: Vec<&String> = self
            .streams
            .live
            .iter()
            .filter(|((t, _), s)| t == tenant && s.epoch.is_some())
            .map(|((_, ch), _)| ch)
            .collect();
        (!known.is_empty()).then(|| known[usize::from(i) % known.len()].clone())
    }

    /// The `recover` a JSON subscribe to `channel` carries, picked by `pick` from
    /// what the model knows: the connection's own last position, the stream's top
    /// or a little behind it, its start (recoverable or trimmed), a future offset, an
    /// epoch of another stream or life, or a made-up one. Empty in runs without history, so their frames stay as they were.
    pub(super) fn recover_field(&self, idx: usize, channel: &str, pick: u8, by: u8) -> String {
        if self.config.history.is_empty() || pick < 3 {
            return String::new();
        }
        let c = &self.conns[idx];
        let live = self
            .streams
            .live
            .get(&(c.tenant.clone(), channel.to_owned()));
        let current = live.and_then(|s| s.epoch.clone().map(|e| (s.top, e)));
        let unknown = || "00000000000000ff".to_owned();
        let (offset, epoch) = match pick {
            3 => c
                .positions
                .get(channel)
                .cloned()
                .or(current)
                .unwrap_or((0, unknown())),
            4 => current.map_or((0, unknown()), |(top, e)| {
                (top.saturating_sub(u64::from(by & 3)), e)
            }),
            // From the start: recovered only while nothing was trimmed or aged out.
            5 => current.map_or((0, unknown()), |(_, e)| (0, e)),
            6 => current.map_or((1, unknown()), |(top, e)| (top + 1 + u64::from(by & 1), e)),
            _ => {
                // An epoch of another life (or another stream), else a made-up one.
                let old = self.streams.epochs.iter().nth(usize::from(by));
                let top = live.map_or(0, |s| s.top);
                (top, old.cloned().unwrap_or_else(unknown))
            }
        };
        format!(r#","recover":{{"offset":{offset},"epoch":"{epoch}"}}"#)
    }
}
