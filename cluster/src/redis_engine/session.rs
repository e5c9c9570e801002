//! One connection to Redis, served until it fails or the engine stops: the
//! heartbeat, the watchdog, the bus, the outbound queue and the shared tables.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubStream};
use switchyard_core::cluster::{NodeId, NodeState, Outbound, Remote, RemoteEvent};
use tokio::time::MissedTickBehavior;

use super::{BATCH, Ended, RedisEngine, state_envelope, streams};
use crate::envelope::{Envelope, TableEntry, WireEvent};
use crate::{EngineContext, EngineState, EngineStatus, TableNews, TableWrite, WriteMode};

/// One node's life on Redis, across connections.
pub(super) struct Session<'a> {
    pub(super) engine: &'a RedisEngine,
    /// This node's key.
    pub(super) key: String,
    /// Other nodes and when they were last heard from.
    pub(super) known: BTreeMap<NodeId, Instant>,
}

impl Session<'_> {
    /// Serves one connection until it fails or the engine is to stop.
    pub(super) async fn run(
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
    /// the `until`-th item taken) in one pipeline, in queue order. A message to a
    /// channel with a history is stored and numbered on the way
    /// ([`streams::store_and_publish`]); a question about a stream is answered
    /// after what was queued before it went out.
    async fn publish(
        &self,
        ctx: &mut EngineContext,
        commands: &mut MultiplexedConnection,
        first: Outbound,
        until: Option<u64>,
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        let mut n = 0u64;
        // The history publications in `pipe`: their publishers hear if it fails.
        let mut stored = Vec::new();
        let mut taken = 0u64;
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Outbound::Recover(request) => {
                    self.flush(ctx, commands, &mut pipe, &mut n, &mut stored)
                        .await?;
                    let answer = streams::read(commands, &self.engine.table_prefix, &request).await;
                    let _ = ctx
                        .driver
                        .remote(Remote {
                            node: ctx.node.clone(),
                            event: RemoteEvent::Recovered(answer),
                        })
                        .await;
                }
                Outbound::Publish(p) if p.history.is_some() => {
                    let prefix = &self.engine.table_prefix;
                    stored.push(p.clone());
                    streams::store_and_publish(&mut pipe, prefix, &self.engine.bus, &ctx.node, p);
                    n += 1;
                }
                item => {
                    let envelope = Envelope {
                        node: ctx.node.clone(),
                        event: WireEvent::Changed(item),
                    };
                    pipe.cmd("PUBLISH")
                        .arg(&self.engine.bus)
                        .arg(envelope.encode())
                        .ignore();
                    n += 1;
                }
            }
            taken += 1;
            let below = until.is_none_or(|mark| {
                ctx.status.taken.load(std::sync::atomic::Ordering::Relaxed) < mark
            });
            next = if taken < BATCH as u64 && below {
                ctx.queued_outbound()
            } else {
                None
            };
        }
        self.flush(ctx, commands, &mut pipe, &mut n, &mut stored)
            .await
    }

    /// Sends the `n` commands gathered in `pipe`, if any.
    async fn flush(
        &self,
        ctx: &EngineContext,
        commands: &mut MultiplexedConnection,
        pipe: &mut redis::Pipeline,
        n: &mut u64,
        stored: &mut Vec<switchyard_core::cluster::Publication>,
    ) -> redis::RedisResult<()> {
        if *n == 0 {
            return Ok(());
        }
        let count = std::mem::take(n);
        let sent = std::mem::replace(pipe, redis::pipe());
        let history = std::mem::take(stored);
        match sent.query_async::<()>(commands).await {
            Ok(()) => {
                EngineStatus::count(&ctx.status.published, count);
                Ok(())
            }
            Err(e) => {
                EngineStatus::count(&ctx.status.dropped, count);
                for p in history {
                    super::not_stored(ctx, p).await;
                }
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
        let decoded = match streams::parse_stored(payload) {
            Some(numbered) => numbered,
            None => Envelope::decode(payload).map_err(|e| e.to_string()),
        };
        let mut envelope = match decoded {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, "cluster engine: unreadable envelope on the bus, skipped");
                return Ok(());
            }
        };
        if envelope.node == ctx.node {
            // Only this node's numbered messages come back to it: it delivers them
            // now, in the stream's order.
            if let WireEvent::Changed(Outbound::Publish(p)) = envelope.event
                && p.offset.is_some()
            {
                let _ = ctx
                    .driver
                    .remote(Remote {
                        node: ctx.node.clone(),
                        event: RemoteEvent::Stored(p),
                    })
                    .await;
            }
            return Ok(());
        }
        if let WireEvent::Changed(Outbound::Publish(p)) = &mut envelope.event {
            // Another node's connection number means nothing here.
            p.origin_conn = None;
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
    pub(super) async fn goodbye(
        &self,
        ctx: &mut EngineContext,
        commands: &mut MultiplexedConnection,
    ) {
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
        let gone = Envelope {
            node: ctx.node.clone(),
            event: WireEvent::Gone,
        };
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
