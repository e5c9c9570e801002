//! The Redis engine: one pub/sub channel per cluster, one key per live node.
//!
//! The protocol (also in `docs/cluster-redis.md`), for a prefix `P` and node id `N`:
//!
//! - **`P:bus`**, a pub/sub channel, carries every [`Envelope`] as JSON:
//!   `{"node":"N","event":…}`. Each node subscribes and ignores its own. A node publishes
//!   the [`Outbound`] items of its queue in order on one connection, so every other
//!   node sees one node's changes in the order that node made them.
//! - **Heartbeat**, every `presence_ttl / 3`: the node reads its whole state
//!   (`Hub::node_state`), writes it to **`P:node:N`** (`SET … PX presence_ttl`, the
//!   bare `NodeState` JSON) and publishes it as a `state` event.
//! - **Watchdog**: a node not heard from (any envelope) for `presence_ttl` is gone:
//!   [`RemoteEvent::Gone`] goes to the driver and its peers leave. The watchdog only
//!   runs while this node's own connection is up: with it down, silence proves nothing.
//! - **(Re)connect**: subscribe, publish the own state, then read every `P:node:*` key
//!   (`SCAN`) and feed each as a `state` event. Nodes known from before the outage get
//!   a full `presence_ttl` to be heard from again.
//! - **First contact**: a change from a node this one does not know yet is preceded by
//!   that node's key, when it has one, so the change lands on a complete view; and
//!   this node sends its own heartbeat at once, because the keys a newcomer read
//!   are up to a heartbeat old.
//! - **Down**: outbound items are dropped and counted; local traffic goes on.
//!   Reconnects follow a capped exponential backoff with jitter.
//! - **Shutdown**: the queue is flushed, a `gone` event published, the key deleted.
//! - **Shared tables** ([`crate::Tables`]): table `T` is the hash **`P:T`**. A write
//!   is `HSETNX` ([`WriteMode::Insert`]) or `HSET` ([`WriteMode::Replace`]) and a
//!   `table` event on the bus, in one pipeline; other nodes hand the event to their
//!   server. After every (re)connect the engine reads each table (`HGETALL`) and hands
//!   it over whole. Writes while down are dropped (and counted): the snapshot after the
//!   reconnect lets the server write back what the hash lacks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubStream};
use switchyard_core::cluster::{NodeId, NodeState, Outbound, Remote, RemoteEvent};
use tokio::time::MissedTickBehavior;

use crate::backoff::{Backoff, random_seed};
use crate::envelope::{Envelope, TableEntry, WireEvent};
use crate::{Engine, EngineContext, EngineState, EngineStatus, TableNews, TableWrite, WriteMode};

/// Outbound items published in one pipeline at most.
const BATCH: usize = 256;
/// The first reconnect delay and the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How long the goodbye (flush, `gone`, delete) may take at shutdown.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(2);

/// How to reach Redis and name things there.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// Prefix of the channel and keys (`<prefix>:bus`, `<prefix>:node:<id>`).
    pub prefix: String,
    /// A node silent this long is gone; heartbeats go out every third of it.
    pub presence_ttl: Duration,
}

/// What is wrong with a Redis URL, if anything (for the config check).
pub fn redis_url_problem(url: &str) -> Option<String> {
    if url.starts_with("rediss://") {
        return Some(
            "engine: rediss:// (Redis over TLS) is not supported yet: it would bring a second \
             TLS stack into the server; use redis:// on a private network, or a local TLS tunnel"
                .into(),
        );
    }
    if !(url.starts_with("redis://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://"))
    {
        return Some("engine: url must start with redis:// (or unix:// for a socket)".into());
    }
    redis::Client::open(url)
        .err()
        .map(|e| format!("engine: url does not parse: {}", e))
}

/// Redis pub/sub between nodes. See the module docs for the protocol.
pub struct RedisEngine {
    client: redis::Client,
    bus: String,
    key_prefix: String,
    /// `<prefix>:`, before a shared table's name.
    table_prefix: String,
    ttl: Duration,
    seed: u64,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client: its connection info holds the password.
        f.debug_struct("RedisEngine")
            .field("bus", &self.bus)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisEngine {
    /// An engine for `settings` (nothing connects until it runs).
    pub fn new(settings: &RedisSettings) -> Result<Self, String> {
        if let Some(problem) = redis_url_problem(&settings.url) {
            return Err(problem);
        }
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("engine: url does not parse: {}", e))?;
        Ok(Self {
            client,
            bus: format!("{}:bus", settings.prefix),
            key_prefix: format!("{}:node:", settings.prefix),
            table_prefix: format!("{}:", settings.prefix),
            ttl: settings.presence_ttl,
            seed: random_seed(),
        })
    }

    async fn connect(&self) -> redis::RedisResult<(MultiplexedConnection, PubSubStream)> {
        let commands = self.client.get_multiplexed_async_connection().await?;
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.bus).await?;
        Ok((commands, pubsub.into_on_message()))
    }
}

/// Why a session ended.
enum Ended {
    Shutdown(MultiplexedConnection),
    Lost(String),
}

#[async_trait::async_trait]
impl Engine for RedisEngine {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn run(self: Box<Self>, mut ctx: EngineContext) {
        let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_CAP, self.seed);
        let mut session = Session {
            engine: &self,
            key: format!("{}{}", self.key_prefix, ctx.node),
            known: BTreeMap::new(),
        };
        let mut connected_before = false;
        loop {
            ctx.status.set_state(EngineState::Reconnecting);
            let attempt = tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                attempt = tokio::time::timeout(self.ttl.max(Duration::from_secs(2)), self.connect()) => attempt,
            };
            match attempt {
                Ok(Ok((commands, bus))) => {
                    if connected_before {
                        EngineStatus::count(&ctx.status.reconnects, 1);
                    }
                    connected_before = true;
                    backoff.reset();
                    match session.run(&mut ctx, commands, bus).await {
                        Ended::Shutdown(mut commands) => {
                            let goodbye = session.goodbye(&mut ctx, &mut commands);
                            if tokio::time::timeout(GOODBYE_DEADLINE, goodbye)
                                .await
                                .is_err()
                            {
                                tracing::warn!("cluster engine: goodbye to Redis timed out");
                            }
                            break;
                        }
                        Ended::Lost(error) => tracing::warn!(
                            %error,
                            "cluster engine lost Redis: local traffic goes on, cluster traffic is dropped until it is back"
                        ),
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "cluster engine cannot reach Redis"),
                Err(_) => tracing::warn!("cluster engine cannot reach Redis: connect timed out"),
            }
            ctx.status.set_state(EngineState::Reconnecting);
            if !drop_while_waiting(&mut ctx, backoff.next_delay()).await {
                break;
            }
        }
        ctx.status.set_state(EngineState::Stopped);
    }
}

/// Waits `delay`, dropping (and counting) what the driver queues meanwhile. False when
/// the engine is to stop.
async fn drop_while_waiting(ctx: &mut EngineContext, delay: Duration) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    let (mut open, mut writes_open) = (true, true);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return false,
            () = &mut sleep => return true,
            item = ctx.outbound.recv(), if open => match crate::counted(&ctx.status, item) {
                Some(_) => EngineStatus::count(&ctx.status.dropped, 1),
                None => open = false,
            },
            write = ctx.tables.writes.recv(), if writes_open => match write {
                Some(_) => EngineStatus::count(&ctx.status.dropped, 1),
                None => writes_open = false,
            },
        }
    }
}

/// One node's life on Redis, across connections.
struct Session<'a> {
    engine: &'a RedisEngine,
    /// This node's key.
    key: String,
    /// Other nodes and when they were last heard from.
    known: BTreeMap<NodeId, Instant>,
}

impl Session<'_> {
    /// Serves one connection until it fails or the engine is to stop.
    async fn run(
        &mut self,
        ctx: &mut EngineContext,
        mut commands: MultiplexedConnection,
        mut bus: PubSubStream,
    ) -> Ended {
        let start = Instant::now();
        if let Err(e) = self.heartbeat(ctx, &mut commands, start).await {
            return Ended::Lost(e.to_string());
        }
        // Silence during this node's own outage proves nothing: everyone starts afresh.
        for heard in self.known.values_mut() {
            *heard = start;
        }
        if let Err(e) = self.catch_up(ctx, &mut commands).await {
            return Ended::Lost(e.to_string());
        }
        if let Err(e) = self.snapshot_tables(ctx, &mut commands).await {
            return Ended::Lost(e.to_string());
        }
        // Connected once this node is heard and has heard everyone's state.
        ctx.status.set_state(EngineState::Connected);
        tracing::info!(node = %ctx.node, channel = %self.engine.bus, "cluster engine connected to Redis");
        let period = self.engine.ttl / 3;
        let mut heartbeat = tokio::time::interval_at((start + period).into(), period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watchdog =
            tokio::time::interval((self.engine.ttl / 10).max(Duration::from_millis(10)));
        watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut queue_open, mut writes_open) = (true, true);
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return Ended::Shutdown(commands),
                due = heartbeat.tick() => {
                    if let Err(e) = self.heartbeat(ctx, &mut commands, due.into_std()).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                _ = watchdog.tick() => {
                    // What already arrived is read first: a busy engine must not take
                    // its own backlog for the other nodes' silence.
                    while let Some(Some(message)) = bus.next().now_or_never() {
                        if let Err(e) = self.receive(ctx, &mut commands, message.get_payload_bytes()).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                    self.expire(ctx).await;
                }
                message = bus.next() => {
                    let Some(message) = message else {
                        return Ended::Lost("the subscription ended".into());
                    };
                    if let Err(e) = self.receive(ctx, &mut commands, message.get_payload_bytes()).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                item = ctx.outbound.recv(), if queue_open => {
                    let Some(first) = crate::counted(&ctx.status, item) else {
                        queue_open = false;
                        continue;
                    };
                    if let Err(e) = self.publish(ctx, &mut commands, first, None).await {
                        return Ended::Lost(e.to_string());
                    }
                }
                write = ctx.tables.writes.recv(), if writes_open => {
                    let Some(write) = write else {
                        writes_open = false;
                        continue;
                    };
                    if let Err(e) = self.write_table(ctx, &mut commands, write).await {
                        return Ended::Lost(e.to_string());
                    }
                }
            }
        }
    }

    /// Publishes `first` and whatever else is queued (up to [`BATCH`], and never past
    /// the `until`-th item taken) in one pipeline, in queue order.
    async fn publish(
        &self,
        ctx: &mut EngineContext,
        commands: &mut MultiplexedConnection,
        first: Outbound,
        until: Option<u64>,
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        let mut n = 0u64;
        let mut next = Some(first);
        while let Some(item) = next {
            let envelope = Envelope::new(Remote {
                node: ctx.node.clone(),
                event: RemoteEvent::Changed(item),
            });
            pipe.cmd("PUBLISH")
                .arg(&self.engine.bus)
                .arg(envelope.encode())
                .ignore();
            n += 1;
            let below = until.is_none_or(|mark| {
                ctx.status.taken.load(std::sync::atomic::Ordering::Relaxed) < mark
            });
            next = if n < BATCH as u64 && below {
                ctx.queued_outbound()
            } else {
                None
            };
        }
        match pipe.query_async::<()>(commands).await {
            Ok(()) => {
                EngineStatus::count(&ctx.status.published, n);
                Ok(())
            }
            Err(e) => {
                EngineStatus::count(&ctx.status.dropped, n);
                Err(e)
            }
        }
    }

    /// Writes one record to its table's hash and tells the other nodes, in one
    /// pipeline.
    async fn write_table(
        &self,
        ctx: &EngineContext,
        commands: &mut MultiplexedConnection,
        write: TableWrite,
    ) -> redis::RedisResult<()> {
        let hash = format!("{}{}", self.engine.table_prefix, write.table);
        let set = match write.mode {
            WriteMode::Insert => "HSETNX",
            WriteMode::Replace => "HSET",
        };
        let envelope = Envelope {
            node: ctx.node.clone(),
            event: WireEvent::Table(TableEntry {
                table: write.table,
                key: write.key.clone(),
                value: write.value.clone(),
            }),
        };
        let written = redis::pipe()
            .cmd(set)
            .arg(&hash)
            .arg(&write.key)
            .arg(&write.value)
            .ignore()
            .cmd("PUBLISH")
            .arg(&self.engine.bus)
            .arg(envelope.encode())
            .ignore()
            .query_async::<()>(commands)
            .await;
        match written {
            Ok(()) => {
                EngineStatus::count(&ctx.status.published, 1);
                Ok(())
            }
            Err(e) => {
                EngineStatus::count(&ctx.status.dropped, 1);
                Err(e)
            }
        }
    }

    /// Hands the server every shared table as Redis holds it.
    async fn snapshot_tables(
        &self,
        ctx: &EngineContext,
        commands: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        for table in &ctx.tables.names {
            let hash = format!("{}{table}", self.engine.table_prefix);
            let entries: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(&hash)
                .query_async(commands)
                .await?;
            // The server is stopping when nobody listens.
            let _ = ctx.tables.news.send(TableNews::Snapshot {
                table: table.clone(),
                entries,
            });
        }
        Ok(())
    }

    /// Writes this node's state to its key and publishes it.
    async fn heartbeat(
        &self,
        ctx: &mut EngineContext,
        commands: &mut MultiplexedConnection,
        due: Instant,
    ) -> redis::RedisResult<()> {
        // The state and how many changes the driver had queued for the engine when it
        // was taken, in one step of the driver: those changes go out first, and the
        // state before any later one. A state overtaking a change it already reflects
        // would, say, announce a publisher's leave before its last message.
        let metrics = Arc::clone(ctx.driver.metrics());
        let snapshot = ctx
            .driver
            .call(move |hub, _| {
                let queued = metrics
                    .cluster_out
                    .load(std::sync::atomic::Ordering::Relaxed);
                (hub.node_state(), queued)
            })
            .await;
        let Ok((state, queued)) = snapshot else {
            return Ok(()); // the driver is gone: the server is stopping
        };
        while ctx.status.taken.load(std::sync::atomic::Ordering::Relaxed) < queued {
            let Some(item) = ctx.next_outbound().await else {
                break;
            };
            self.publish(ctx, commands, item, Some(queued)).await?;
        }
        let state = serde_json::to_string(&state).expect("a node state serialises");
        redis::pipe()
            .cmd("SET")
            .arg(&self.key)
            .arg(&state)
            .arg("PX")
            .arg(self.engine.ttl.as_millis() as u64)
            .ignore()
            .cmd("PUBLISH")
            .arg(&self.engine.bus)
            .arg(state_envelope(&ctx.node, &state))
            .ignore()
            .query_async::<()>(commands)
            .await?;
        EngineStatus::count(&ctx.status.published, 1);
        let lag = Instant::now().saturating_duration_since(due);
        ctx.status
            .heartbeat_lag_ms
            .store(lag.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Reads every node's key and feeds each as its state.
    async fn catch_up(
        &mut self,
        ctx: &EngineContext,
        commands: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let pattern = format!("{}*", self.engine.key_prefix);
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(100)
                .query_async(commands)
                .await?;
            keys.extend(batch.into_iter().filter(|k| *k != self.key));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        for key in keys {
            let Some(id) = key.strip_prefix(&self.engine.key_prefix) else {
                continue;
            };
            let node = NodeId::new(id);
            self.feed_key(ctx, commands, node).await?;
        }
        Ok(())
    }

    /// Feeds `node`'s key as its state, if it has one (else nothing: it is gone, or
    /// has not written it yet).
    async fn feed_key(
        &mut self,
        ctx: &EngineContext,
        commands: &mut MultiplexedConnection,
        node: NodeId,
    ) -> redis::RedisResult<()> {
        let key = format!("{}{node}", self.engine.key_prefix);
        let text: Option<String> = redis::cmd("GET").arg(&key).query_async(commands).await?;
        let Some(text) = text else {
            return Ok(());
        };
        match serde_json::from_str::<NodeState>(&text) {
            Ok(state) => {
                self.known.insert(node.clone(), Instant::now());
                self.count_live(ctx);
                let _ = ctx
                    .driver
                    .remote(Remote {
                        node,
                        event: RemoteEvent::State(state),
                    })
                    .await;
            }
            Err(error) => tracing::warn!(%key, %error, "cluster engine: unreadable node key"),
        }
        Ok(())
    }

    /// Handles one envelope from the bus.
    async fn receive(
        &mut self,
        ctx: &mut EngineContext,
        commands: &mut MultiplexedConnection,
        payload: &[u8],
    ) -> redis::RedisResult<()> {
        let envelope = match Envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, "cluster engine: unreadable envelope on the bus, skipped");
                return Ok(());
            }
        };
        if envelope.node == ctx.node {
            return Ok(());
        }
        let node = envelope.node.clone();
        if let WireEvent::Table(entry) = envelope.event {
            EngineStatus::count(&ctx.status.received, 1);
            let _ = ctx.tables.news.send(TableNews::Written {
                table: entry.table,
                key: entry.key,
                value: entry.value,
            });
            return Ok(());
        }
        let newcomer = match envelope.event {
            WireEvent::Gone => {
                self.known.remove(&node);
                false
            }
            WireEvent::State(_) => self.known.insert(node, Instant::now()).is_none(),
            WireEvent::Changed(_) => {
                let newcomer = self.known.insert(node.clone(), Instant::now()).is_none();
                if newcomer {
                    self.feed_key(ctx, commands, node).await?;
                }
                newcomer
            }
            WireEvent::Table(_) => false,
        };
        if newcomer {
            // The keys it read on connecting are up to a heartbeat old: a fresh state
            // now spares it that wait.
            self.heartbeat(ctx, commands, Instant::now()).await?;
        }
        self.count_live(ctx);
        EngineStatus::count(&ctx.status.received, 1);
        if let Some(remote) = envelope.into_remote() {
            let _ = ctx.driver.remote(remote).await;
        }
        Ok(())
    }

    fn count_live(&self, ctx: &EngineContext) {
        ctx.status.live_nodes.store(
            self.known.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Forgets the nodes not heard from for `presence_ttl`: their peers leave.
    async fn expire(&mut self, ctx: &EngineContext) {
        let now = Instant::now();
        let ttl = self.engine.ttl;
        let silent: Vec<NodeId> = self
            .known
            .iter()
            .filter(|(_, heard)| now.saturating_duration_since(**heard) > ttl)
            .map(|(node, _)| node.clone())
            .collect();
        for node in silent {
            self.known.remove(&node);
            self.count_live(ctx);
            tracing::info!(%node, "cluster node silent for presence_ttl: gone");
            let _ = ctx
                .driver
                .remote(Remote {
                    node,
                    event: RemoteEvent::Gone,
                })
                .await;
        }
    }

    /// At shutdown: publishes what is still queued, then `gone`, and deletes the key.
    async fn goodbye(&self, ctx: &mut EngineContext, commands: &mut MultiplexedConnection) {
        while let Some(item) = ctx.queued_outbound() {
            if self.publish(ctx, commands, item, None).await.is_err() {
                return;
            }
        }
        while let Ok(write) = ctx.tables.writes.try_recv() {
            if self.write_table(ctx, commands, write).await.is_err() {
                return;
            }
        }
        let gone = Envelope::new(Remote {
            node: ctx.node.clone(),
            event: RemoteEvent::Gone,
        });
        let said = redis::pipe()
            .cmd("PUBLISH")
            .arg(&self.engine.bus)
            .arg(gone.encode())
            .ignore()
            .cmd("DEL")
            .arg(&self.key)
            .ignore()
            .query_async::<()>(commands)
            .await;
        match said {
            Ok(()) => {
                EngineStatus::count(&ctx.status.published, 1);
                tracing::info!(node = %ctx.node, "cluster engine said goodbye");
            }
            Err(error) => tracing::warn!(%error, "cluster engine: goodbye not delivered"),
        }
    }
}

/// `{"node":…,"event":{"state":<state>}}` around an already serialised state (it is
/// also the key's value, so it is serialised once).
fn state_envelope(node: &NodeId, state: &str) -> String {
    let node = serde_json::to_string(node).expect("a node id serialises");
    format!(r#"{{"node":{node},"event":{{"state":{state}}}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spliced_state_envelope_reads_back() {
        let state = NodeState::default();
        let text = state_envelope(
            &NodeId::new("n\"1"),
            &serde_json::to_string(&state).unwrap(),
        );
        let back = Envelope::decode(text.as_bytes()).expect(&text);
        assert_eq!(back.node, NodeId::new("n\"1"));
        assert_eq!(back.event, WireEvent::State(state));
    }

    #[test]
    fn tls_and_foreign_urls_are_refused_with_a_reason() {
        assert!(
            redis_url_problem("rediss://h:6380")
                .unwrap()
                .contains("TLS")
        );
        assert!(redis_url_problem("http://h").is_some());
        assert_eq!(redis_url_problem("redis://:pw@127.0.0.1:6379/0"), None);
    }
}
