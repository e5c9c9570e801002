//! The control plane: what an operator (REST, admin CLI) or, later, a broker adapter
//! asks of the hub. Same rules as peers' commands, same fan-out path.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Event, Hub, Output, auth};
use crate::codes::{CloseCode, ErrorCode};
use crate::config::{Config, ConfigError};
use crate::ids::{PeerId, SERVER_PEER_ID, TenantId};
use crate::pattern::Pattern;
use crate::wire::{Dialect, Stamp};

/// Counts for metrics and usage reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live connections.
    pub connections: usize,
    /// Live connections per dialect, in [`Dialect::ALL`] order.
    pub connections_by_dialect: Vec<(Dialect, usize)>,
    /// Connections still waiting to authenticate.
    pub unauthenticated: usize,
    /// Non-empty channels and rooms.
    pub channels: usize,
    /// Exact subscriptions and room memberships.
    pub memberships: usize,
    /// Wildcard subscriptions.
    pub pattern_subscriptions: usize,
    /// Messages kept in channel histories.
    pub history_messages: usize,
    /// Channels with a history stream.
    pub history_streams: usize,
    /// Armed timers.
    pub timers: usize,
}

/// One connection of a peer, as an operator sees it ([`Hub::peer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerConnection {
    /// The connection.
    pub conn: crate::ConnId,
    /// Its dialect.
    pub dialect: Dialect,
    /// Its rtc-signaller room.
    pub room: Option<String>,
    /// Its exact subscriptions.
    pub channels: Vec<String>,
    /// Its wildcard subscriptions.
    pub patterns: Vec<String>,
}

/// Why a control-plane request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The channel name is invalid or a pattern.
    #[error("invalid channel: {0}")]
    InvalidChannel(String),
    /// The tenant's quota for the period is used up.
    #[error("message quota for this period is used up")]
    OverQuota,
    /// `data` is not JSON.
    #[error("data is not valid JSON")]
    InvalidData,
    /// The channel keeps no history (no `history` rule names it).
    #[error("this channel keeps no history")]
    NoHistory,
}

/// A page of a channel's history ([`Hub::history`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's last offset (0: nothing published in this epoch yet).
    pub offset: u64,
    /// The messages after the asked offset, oldest first.
    pub messages: Vec<StoredMessage>,
}

impl HistoryPage {
    /// A page read from a cluster engine's shared stream (the stream lives there,
    /// not in the hub): the messages older than `ttl` at `unix_ms` are left out, as
    /// the hub leaves out its own.
    pub fn from_shared(
        epoch: String,
        offset: u64,
        publications: Vec<crate::cluster::Publication>,
        unix_ms: u64,
        ttl: Duration,
    ) -> Self {
        let messages = publications
            .into_iter()
            .filter(|p| super::history::still_kept(p.unix_ms, unix_ms, ttl))
            .filter_map(|p| {
                let crate::cluster::Payload::Json { data } = p.payload else {
                    return None;
                };
                Some(StoredMessage {
                    offset: p.offset?,
                    from: p.from,
                    data: Bytes::from(data),
                    event: p.event,
                    stamp: Stamp {
                        number: p.number,
                        unix_ms: p.unix_ms,
                    },
                })
            })
            .collect();
        Self {
            epoch,
            offset,
            messages,
        }
    }
}

/// One message of a channel's history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredMessage {
    /// Its offset in the stream.
    pub offset: u64,
    /// The sender's peer id (`_server` for the control plane).
    pub from: String,
    /// The JSON value, as published.
    pub data: Bytes,
    /// The Broadcaster event name, when the publisher gave one.
    pub event: Option<String>,
    /// The message's id and time.
    pub stamp: Stamp,
}

/// What a control-plane publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The message's id and time, as Broadcaster subscribers see them
    /// ([`Stamp::id`], [`Stamp::create_time`]).
    pub stamp: Stamp,
    /// How many sends were queued.
    pub deliveries: usize,
}

impl Hub {
    /// Publishes `data` (JSON) to `channel` in `tenant` on behalf of the server: every
    /// subscriber gets it with `from: "_server"` (rtc-signaller peers:
    /// `/message|_server|<data>`). Counts against the tenant's quota. Returns the
    /// number of deliveries.
    pub fn publish(
        &mut self,
        now: std::time::Instant,
        tenant: &str,
        channel: &str,
        data: Bytes,
    ) -> Result<usize, ControlError> {
        self.publish_event(now, tenant, channel, None, data)
            .map(|p| p.deliveries)
    }

    /// [`Hub::publish`] with a Broadcaster `event` name (The Broadcaster's REST
    /// publish): Broadcaster subscribers see it as `event`, JSON subscribers as an
    /// `event` field, rtc-signaller peers as a last argument. Returns the message's
    /// id and time with the number of deliveries.
    pub fn publish_event(
        &mut self,
        now: std::time::Instant,
        tenant: &str,
        channel: &str,
        event: Option<&str>,
        data: Bytes,
    ) -> Result<Published, ControlError> {
        self.tick(now);
        let result = self.publish_inner(tenant, channel, event, data);
        self.finish_tick();
        result
    }

    fn publish_inner(
        &mut self,
        tenant: &str,
        channel: &str,
        event: Option<&str>,
        data: Bytes,
    ) -> Result<Published, ControlError> {
        let pattern = Pattern::parse(channel, self.config.limits.max_channel_len)
            .map_err(|e| ControlError::InvalidChannel(e.to_string()))?;
        if pattern.is_wildcard() {
            return Err(ControlError::InvalidChannel(
                "cannot publish to a pattern".into(),
            ));
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_err() {
            return Err(ControlError::InvalidData);
        }
        let tenant = TenantId::new(tenant);
        if !self.charge_tenant_quota(&tenant) {
            return Err(ControlError::OverQuota);
        }
        let from = PeerId::new(SERVER_PEER_ID);
        let meta = Arc::new(Map::new());
        let (stamp, deliveries, _) =
            self.publish_message(&tenant, channel, &from, &meta, &data, event, None, None);
        Ok(Published { stamp, deliveries })
    }

    /// How long `channel` keeps its messages: `NoHistory` when no `history` rule
    /// names it, `InvalidChannel` for a pattern or a bad name (as [`Hub::history`]
    /// answers, without touching any stream).
    pub fn history_ttl(&self, channel: &str) -> Result<Duration, ControlError> {
        let pattern = Pattern::parse(channel, self.config.limits.max_channel_len)
            .map_err(|e| ControlError::InvalidChannel(e.to_string()))?;
        if pattern.is_wildcard() {
            return Err(ControlError::InvalidChannel(
                "a pattern has no history".into(),
            ));
        }
        self.history
            .retention(channel)
            .map(|r| r.ttl)
            .ok_or(ControlError::NoHistory)
    }

    /// Whether channel streams live with the cluster engine rather than in this hub
    /// (a cluster node): a reader of history asks the engine then.
    pub fn history_is_shared(&self) -> bool {
        self.config.cluster
    }

    /// Up to `limit` messages of `channel`'s history in `tenant` after offset `since`
    /// (0: from the oldest kept), with where the stream stands. A reader pages on by
    /// asking again after the last offset it got.
    pub fn history(
        &mut self,
        now: std::time::Instant,
        tenant: &str,
        channel: &str,
        since: u64,
        limit: usize,
    ) -> Result<HistoryPage, ControlError> {
        self.tick(now);
        self.history_ttl(channel)?;
        let tenant = TenantId::new(tenant);
        let page = self.history.page(&tenant, channel, self.now, since, limit);
        self.finish_tick();
        let (entries, offset, epoch) = page.ok_or(ControlError::NoHistory)?;
        Ok(HistoryPage {
            epoch: epoch.into(),
            offset,
            messages: entries
                .into_iter()
                .map(|e| StoredMessage {
                    offset: e.offset,
                    from: e.from.as_str().to_owned(),
                    data: e.data,
                    event: e.event.map(String::from),
                    stamp: e.stamp,
                })
                .collect(),
        })
    }

    /// Closes every connection of `peer` in `tenant` with `code` (an operator's
    /// disconnect is 4020). Returns how many were closed.
    pub fn disconnect(
        &mut self,
        now: std::time::Instant,
        tenant: &str,
        peer: &str,
        code: CloseCode,
        reason: &'static str,
    ) -> usize {
        self.tick(now);
        let conns = self
            .dir
            .peer_conns(&TenantId::new(tenant), &PeerId::new(peer));
        for conn in &conns {
            self.close(*conn, code, reason);
        }
        self.tell_cluster(|| crate::cluster::Outbound::Disconnect {
            tenant: tenant.to_owned(),
            peer: peer.to_owned(),
            code: code.0,
        });
        self.finish_tick();
        conns.len()
    }

    /// The peers present in `channel` of `tenant` and their presence metadata, by id.
    pub fn presence(&self, tenant: &str, channel: &str) -> Vec<(PeerId, Arc<Map<String, Value>>)> {
        let tenant = TenantId::new(tenant);
        let mut all: Vec<_> = self
            .dir
            .channel_id(&tenant, channel)
            .and_then(|id| self.dir.channel(id))
            .map(|ch| {
                ch.presence()
                    .map(|(p, metadata)| (p.clone(), Arc::clone(metadata)))
                    .collect()
            })
            .unwrap_or_default();
        if self.dir.remote_nodes() > 0 {
            for (peer, member) in self.dir.remote_only(&tenant, channel) {
                all.push((PeerId::new(peer), Arc::new(member.metadata.clone())));
            }
            all.sort_by(|a, b| a.0.cmp(&b.0));
        }
        all
    }

    /// The channels and rooms of `tenant` with anyone in them here, by name, each with
    /// its member connections on this node (exact subscriptions and room members; not
    /// wildcard subscribers). For operators' dashboards.
    pub fn channels(&self, tenant: &str) -> Vec<(String, usize)> {
        let tenant = TenantId::new(tenant);
        let mut all: Vec<(String, usize)> = self
            .dir
            .channels()
            .filter(|ch| ch.tenant() == &tenant)
            .map(|ch| (ch.name().to_string(), ch.members().count()))
            .collect();
        all.sort();
        all
    }

    /// The connections of `peer` in `tenant` on this node: each one's dialect, room,
    /// channels and patterns (sorted). For operators' dashboards.
    pub fn peer(&self, tenant: &str, peer: &str) -> Vec<PeerConnection> {
        let tenant = TenantId::new(tenant);
        let name = |id| self.dir.channel(id).map(|ch| ch.name().to_string());
        self.dir
            .peer_conns(&tenant, &PeerId::new(peer))
            .into_iter()
            .map(|conn| {
                let place = self.dir.place(conn);
                let mut channels: Vec<String> = place.subscriptions().filter_map(name).collect();
                channels.sort();
                let mut patterns: Vec<String> = place
                    .patterns()
                    .map(|(_, p)| p.as_str().to_owned())
                    .collect();
                patterns.sort();
                PeerConnection {
                    conn,
                    dialect: place.dialect(),
                    room: place.room().and_then(name),
                    channels,
                    patterns,
                }
            })
            .collect()
    }

    /// Counts for metrics.
    pub fn stats(&self) -> Stats {
        let by = |d: Dialect| self.dir.places().filter(|(_, p)| p.dialect() == d).count();
        let (channels, memberships, pattern_subscriptions) = self.dir.counts();
        Stats {
            connections: self.conns.len(),
            connections_by_dialect: Dialect::ALL.iter().map(|&d| (d, by(d))).collect(),
            unauthenticated: self
                .conns
                .keys()
                .filter(|c| !self.is_authenticated(**c))
                .count(),
            channels,
            memberships,
            pattern_subscriptions,
            timers: self.timers.len(),
            history_messages: self.history.held(),
            history_streams: self.history.streams(),
        }
    }

    /// Graceful shutdown: every connection is told the server is going away (JSON
    /// `going_away` with `retry_after`, an rtc-signaller `/error` saying so; The
    /// Broadcaster has no such notice), then closed with 1001. Nobody is told of each
    /// departure (everyone is leaving). Connections that open afterwards are closed
    /// with 1001 at once. Returns how many were closed.
    pub fn shutdown(&mut self, now: std::time::Instant, retry_after: Duration) -> usize {
        self.tick(now);
        self.shutting_down = true;
        let retry_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        let notices = Dialect::ALL.map(|d| d.codec().going_away(retry_ms));
        let conns: Vec<_> = self.conns.keys().copied().collect();
        for &conn in &conns {
            if let Some(frame) = &notices[self.dialect(conn).index()] {
                self.send(conn, frame.clone());
            }
            self.teardown(conn, false);
            self.out.push_back(Output::Close {
                conn,
                code: CloseCode::GOING_AWAY,
                reason: "server shutting down",
            });
            self.event(Event::Disconnected {
                conn,
                code: Some(CloseCode::GOING_AWAY),
            });
        }
        self.finish_tick();
        conns.len()
    }

    /// Swaps keys, grants and limits without a restart. New connections use the new
    /// config at once, and so do the limits of existing ones; an existing connection
    /// keeps its grants until it reconnects, unless what authenticated it is gone (a
    /// removed signing key, publishable key, or anonymous access): then it is closed
    /// with 4001. Returns how many were closed. An invalid config changes nothing.
    /// `id_seed` and `cluster` are kept from the running config (they are fixed at
    /// start).
    pub fn reconfigure(
        &mut self,
        now: std::time::Instant,
        config: Config,
    ) -> Result<usize, ConfigError> {
        self.tick(now);
        // Fixed for the hub's life: its id streams are already seeded, and whether it
        // is one node of a cluster is the driver's wiring.
        let mut config = config;
        config.id_seed = self.config.id_seed;
        config.cluster = self.config.cluster;
        let policy = auth::Policy::from_config(&config)?;
        self.history.reconfigure(&config)?;
        self.policy = policy;
        self.config = config;
        let revoked: Vec<_> = self
            .conns
            .iter()
            .filter_map(|(conn, c)| match &c.auth {
                auth::AuthState::Ready(g) if !self.policy.still_allows(&g.origin) => {
                    Some((*conn, matches!(g.origin, auth::Origin::Access(..))))
                }
                _ => None,
            })
            .collect();
        for &(conn, access) in &revoked {
            let reason = if access {
                "access token revoked"
            } else {
                "credentials revoked by reconfiguration"
            };
            self.close(conn, CloseCode::INVALID_TOKEN, reason);
        }
        self.finish_tick();
        Ok(revoked.len())
    }

    /// Replaces the access-token table only (an operator created or revoked a
    /// token), keeping the rest of the config. Connections authenticated with a token
    /// that is now revoked or gone are closed with 4001 at once, like
    /// [`Hub::reconfigure`]. Returns how many were closed; an invalid table changes
    /// nothing.
    pub fn set_access_tokens(
        &mut self,
        now: std::time::Instant,
        tokens: Vec<crate::access::AccessToken>,
    ) -> Result<usize, ConfigError> {
        let mut config = self.config.clone();
        config.auth.access_tokens = tokens;
        self.reconfigure(now, config)
    }
}

impl From<ControlError> for ErrorCode {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::InvalidChannel(_) | ControlError::NoHistory => Self::InvalidChannel,
            ControlError::OverQuota => Self::OverMessageQuota,
            ControlError::InvalidData => Self::InvalidMessage,
        }
    }
}
