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
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSubStream};
use switchyard_core::cluster::NodeId;

use crate::backoff::{Backoff, random_seed};
use crate::{Engine, EngineContext, EngineState, EngineStatus};

mod session;
mod streams;
use session::Session;

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

    /// A reader of the channels' shared history, for the server's REST API
    /// (`GET /v1/history` on a cluster reads Redis, like a recovering subscribe).
    pub fn history_reader(&self) -> HistoryReader {
        HistoryReader {
            client: self.client.clone(),
            prefix: self.table_prefix.clone(),
            connection: Arc::default(),
        }
    }

    async fn connect(&self) -> redis::RedisResult<(MultiplexedConnection, PubSubStream)> {
        let commands = self.client.get_multiplexed_async_connection().await?;
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.bus).await?;
        Ok((commands, pubsub.into_on_message()))
    }
}

/// Reads channel history from Redis outside the engine's own session, over a
/// connection of its own (opened on first use, again after an error).
#[derive(Clone)]
pub struct HistoryReader {
    client: redis::Client,
    prefix: String,
    connection: Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl crate::HistoryStore for HistoryReader {
    async fn page(
        &self,
        tenant: &str,
        channel: &str,
        since: u64,
        limit: usize,
        ttl_ms: u64,
    ) -> Result<(String, u64, Vec<switchyard_core::cluster::Publication>), String> {
        let mut slot = self.connection.lock().await;
        let mut commands = match slot.take() {
            Some(c) => c,
            None => self
                .client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?,
        };
        let count = limit.max(1);
        let page = streams::read_page(
            &mut commands,
            &self.prefix,
            tenant,
            channel,
            Some(since),
            count,
            ttl_ms,
        )
        .await
        .map_err(|e| e.to_string())?;
        *slot = Some(commands);
        Ok(page)
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

    fn history(&self) -> Option<Arc<dyn crate::HistoryStore>> {
        Some(Arc::new(self.history_reader()))
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
                // A subscribe waits for this answer: it is told the stream is out of reach.
                Some(switchyard_core::cluster::Outbound::Recover(request)) => {
                    let answer = streams::failed(&request, "the cluster engine is not connected to Redis");
                    let _ = ctx.driver.remote(switchyard_core::cluster::Remote {
                        node: ctx.node.clone(),
                        event: switchyard_core::cluster::RemoteEvent::Recovered(answer),
                    }).await;
                }
                Some(switchyard_core::cluster::Outbound::Publish(p)) if p.history.is_some() => {
                    EngineStatus::count(&ctx.status.dropped, 1);
                    not_stored(ctx, p).await;
                }
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

/// Tells this node's hub that Redis did not store `p`: its publisher gets an
/// `unavailable` error instead of an ack.
async fn not_stored(ctx: &EngineContext, p: switchyard_core::cluster::Publication) {
    let _ = ctx
        .driver
        .remote(switchyard_core::cluster::Remote {
            node: ctx.node.clone(),
            event: switchyard_core::cluster::RemoteEvent::NotStored(p),
        })
        .await;
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
    use crate::envelope::{Envelope, WireEvent};
    use switchyard_core::cluster::NodeState;

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
