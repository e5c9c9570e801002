//! Channel history: the last messages of the channels a rule names, bounded by count
//! and by age on the hub's clock, so that a client coming back can ask for what it
//! missed.
//!
//! Each channel's history is a *stream*: messages get increasing offsets (1, 2, …)
//! within the stream's *epoch*, a name for this life of the stream. A stream is
//! forgotten when it has been idle (no message, no subscriber asking where it stands)
//! for its rule's `ttl`; the next one gets a new epoch, and so does every stream of a
//! restarted server (the epochs come from the hub's seeded id stream). A client that
//! names an epoch the hub does not have learns it cannot recover, never a silent gap.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::config::{Config, ConfigError, HistoryRule};
use crate::ids::{IdGen, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::wire::{Position, Stamp};

/// Keeps epochs apart from the peer and message ids drawn from the same seed.
const EPOCH_STREAM: u64 = 0x4E90_C4A1_57EA_A5E1;

/// A channel in a tenant.
type Key = (TenantId, Box<str>);

/// How much a channel keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retention {
    pub(crate) size: usize,
    pub(crate) ttl: Duration,
}

/// One stored message: what it takes to render it again in any dialect.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    /// When it was stored, on the hub's clock (for the age bound).
    pub(crate) at: Instant,
    pub(crate) stamp: Stamp,
    pub(crate) from: PeerId,
    pub(crate) meta: Arc<Map<String, Value>>,
    /// The JSON value, as published.
    pub(crate) data: Bytes,
    pub(crate) event: Option<Box<str>>,
}

#[derive(Debug)]
struct Stream {
    epoch: Box<str>,
    /// The last offset handed out (0: none yet).
    top: u64,
    entries: VecDeque<Entry>,
    retention: Retention,
    /// The last message or position query: the stream is forgotten `ttl` after it.
    touched: Instant,
}

impl Stream {
    /// When something about the stream next falls due: its oldest entry ages out, or
    /// (with none left) the stream itself.
    fn deadline(&self) -> Instant {
        match self.entries.front() {
            Some(oldest) => oldest.at + self.retention.ttl,
            None => self.touched + self.retention.ttl,
        }
    }

    fn trim(&mut self, now: Instant) {
        while self.entries.len() > self.retention.size
            || self
                .entries
                .front()
                .is_some_and(|e| e.at + self.retention.ttl <= now)
        {
            self.entries.pop_front();
        }
    }
}

/// The outcome of a recovery request.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// Whether every message after the client's position is in `replay`.
    pub(crate) recovered: bool,
    /// The messages after the client's position, oldest first (empty when not
    /// recovered: the client reloads instead).
    pub(crate) replay: Vec<Entry>,
    /// Where the stream stands: its last offset and epoch.
    pub(crate) offset: u64,
    pub(crate) epoch: Box<str>,
}

/// Every channel's stream, and the rules that say which channels have one.
#[derive(Debug)]
pub(crate) struct History {
    rules: Vec<(Pattern, Retention)>,
    streams: BTreeMap<Key, Stream>,
    /// Each stream's [`Stream::deadline`], to age entries out on time.
    deadlines: BTreeSet<(Instant, Key)>,
    epochs: IdGen,
    /// Messages held across all streams (for stats and the bounds checks).
    held: usize,
}

impl History {
    pub(crate) fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            rules: rules(config)?,
            streams: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            epochs: IdGen::new(config.id_seed ^ EPOCH_STREAM),
            held: 0,
        })
    }

    /// A new config's rules. Streams already kept stay as they are until they age
    /// out; new messages follow the new rules.
    pub(crate) fn reconfigure(&mut self, config: &Config) -> Result<(), ConfigError> {
        self.rules = rules(config)?;
        Ok(())
    }

    /// How much `channel` keeps; `None`: no history.
    pub(crate) fn retention(&self, channel: &str) -> Option<Retention> {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches(channel))
            .map(|&(_, r)| r)
    }

    /// Stores a message published to `channel`; returns its offset, or `None` when
    /// the channel keeps no history.
    pub(crate) fn append(
        &mut self,
        tenant: &TenantId,
        channel: &str,
        now: Instant,
        make: impl FnOnce(u64) -> Entry,
    ) -> Option<u64> {
        let retention = self.retention(channel)?;
        let key = self.touch(tenant, channel, now, retention);
        let stream = self.streams.get_mut(&key).expect("touched");
        stream.top += 1;
        let before = stream.entries.len();
        stream.entries.push_back(make(stream.top));
        stream.trim(now);
        let after = stream.entries.len();
        let (offset, deadline) = (stream.top, stream.deadline());
        self.held = self.held + after - before;
        self.deadlines.insert((deadline, key));
        Some(offset)
    }

    /// Where `channel`'s stream stands, creating it (offset 0, a new epoch) when
    /// there is none; `None` when the channel keeps no history.
    pub(crate) fn position(
        &mut self,
        tenant: &TenantId,
        channel: &str,
        now: Instant,
    ) -> Option<(u64, Box<str>)> {
        let retention = self.retention(channel)?;
        let key = self.touch(tenant, channel, now, retention);
        let stream = self.streams.get_mut(&key).expect("touched");
        // What aged out since the last timer goes now, so nothing below serves it.
        let before = stream.entries.len();
        stream.trim(now);
        self.held -= before - stream.entries.len();
        let deadline = stream.deadline();
        let answer = (stream.top, stream.epoch.clone());
        self.deadlines.insert((deadline, key));
        Some(answer)
    }

    /// What a client at `from` missed of `channel`. `None` when the channel keeps no
    /// history.
    pub(crate) fn recover(
        &mut self,
        tenant: &TenantId,
        channel: &str,
        now: Instant,
        from: &Position,
    ) -> Option<Recovery> {
        // `position` aged out what is due: every entry left is fresh.
        let (offset, epoch) = self.position(tenant, channel, now)?;
        let stream = &self.streams[&(tenant.clone(), Box::from(channel))];
        let first = stream.entries.front().map(|e| e.offset);
        let recovered = recoverable(from, &epoch, offset, first);
        let replay = if recovered {
            stream
                .entries
                .iter()
                .filter(|e| e.offset > from.offset)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Some(Recovery {
            recovered,
            replay,
            offset,
            epoch,
        })
    }

    /// Up to `limit` messages of `channel` after offset `since`, oldest first, with
    /// where the stream stands; `None` when the channel keeps no history.
    pub(crate) fn page(
        &mut self,
        tenant: &TenantId,
        channel: &str,
        now: Instant,
        since: u64,
        limit: usize,
    ) -> Option<(Vec<Entry>, u64, Box<str>)> {
        let (offset, epoch) = self.position(tenant, channel, now)?;
        let stream = &self.streams[&(tenant.clone(), Box::from(channel))];
        let entries = stream
            .entries
            .iter()
            .filter(|e| e.offset > since)
            .take(limit)
            .cloned()
            .collect();
        Some((entries, offset, epoch))
    }

    /// The earliest time something ages out.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Ages out what is due at `now`: old messages, and idle streams.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.deadlines.first() {
            if *at > now {
                break;
            }
            let (_, key) = self.deadlines.pop_first().expect("checked");
            let Some(stream) = self.streams.get_mut(&key) else {
                continue;
            };
            let before = stream.entries.len();
            stream.trim(now);
            self.held -= before - stream.entries.len();
            if stream.entries.is_empty() && stream.touched + stream.retention.ttl <= now {
                self.streams.remove(&key);
            } else {
                let deadline = stream.deadline();
                self.deadlines.insert((deadline, key));
            }
        }
    }

    /// Messages held across all channels.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Streams kept.
    pub(crate) fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Marks the stream of `channel` used at `now`, creating it when there is none.
    /// Its old deadline is taken out of the index; the caller puts the new one in.
    fn touch(&mut self, tenant: &TenantId, channel: &str, now: Instant, r: Retention) -> Key {
        let key: Key = (tenant.clone(), Box::from(channel));
        match self.streams.get_mut(&key) {
            Some(stream) => {
                self.deadlines.remove(&(stream.deadline(), key.clone()));
                stream.touched = now;
                stream.retention = r;
            }
            None => {
                let epoch = format!("{:016x}", self.epochs.next_u64()).into_boxed_str();
                self.streams.insert(
                    key.clone(),
                    Stream {
                        epoch,
                        top: 0,
                        entries: VecDeque::new(),
                        retention: r,
                        touched: now,
                    },
                );
            }
        }
        key
    }

    /// Panics if a stream exceeds its bounds, an offset is out of order, the count
    /// of held messages is off, or a stream's deadline is not indexed.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn check(&self, now: Instant) {
        let mut held = 0;
        for (key, s) in &self.streams {
            assert!(
                s.entries.len() <= s.retention.size,
                "history of {key:?} holds {} > {}",
                s.entries.len(),
                s.retention.size
            );
            assert!(
                s.entries
                    .iter()
                    .zip(s.entries.iter().skip(1))
                    .all(|(a, b)| a.offset + 1 == b.offset),
                "history of {key:?} has a gap or disorder"
            );
            assert!(s.entries.back().is_none_or(|e| e.offset == s.top));
            assert!(
                s.entries.iter().all(|e| e.at + s.retention.ttl > now) || s.deadline() <= now,
                "history of {key:?} keeps an expired message past its deadline"
            );
            assert!(
                self.deadlines.contains(&(s.deadline(), key.clone())),
                "history of {key:?}: deadline not indexed"
            );
            held += s.entries.len();
        }
        assert_eq!(held, self.held, "held messages miscounted");
        assert_eq!(self.deadlines.len(), self.streams.len(), "stale deadlines");
    }
}

/// Whether a message of a shared (engine-kept) stream, stored at `stored_ms`, is
/// still within `ttl` at `unix_ms`: the age bound the hub applies to its own streams,
/// applied to what an engine hands back.
pub(crate) fn still_kept(stored_ms: u64, unix_ms: u64, ttl: Duration) -> bool {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    stored_ms.saturating_add(ttl_ms) > unix_ms
}

/// The one rule of recovery: a client at `from` missed nothing it cannot be given
/// when it names the stream's `epoch`, is not ahead of its last offset `top`, and
/// the oldest message still kept (`first`; `None`: none is) comes right after it.
pub(crate) fn recoverable(from: &Position, epoch: &str, top: u64, first: Option<u64>) -> bool {
    let first = first.unwrap_or(top + 1);
    *from.epoch == *epoch && from.offset <= top && first <= from.offset + 1
}

fn rules(config: &Config) -> Result<Vec<(Pattern, Retention)>, ConfigError> {
    config
        .history
        .iter()
        .map(
            |HistoryRule {
                 channels,
                 size,
                 ttl,
             }| {
                if *size == 0 || ttl.is_zero() {
                    return Err(ConfigError::History(channels.clone()));
                }
                let pattern =
                    Pattern::parse(channels, config.limits.max_channel_len).map_err(|e| {
                        ConfigError::Pattern {
                            pattern: channels.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                Ok((
                    pattern,
                    Retention {
                        size: *size,
                        ttl: *ttl,
                    },
                ))
            },
        )
        .collect()
}
