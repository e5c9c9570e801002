//! Channel history on Redis: one stream per channel that keeps a history, shared by
//! every node, so a client recovers on whichever node it reconnects to.
//!
//! For a prefix `P`, tenant `T` (length `L`) and channel `C`:
//! - **`P:history:L:T:C`**, a Redis stream capped at the channel's `size`: entry id
//!   `<offset>-1`, one field `e`, the message's envelope (the same JSON as on the bus,
//!   without offset and epoch).
//! - **`P:history-meta:L:T:C`**, a hash: `epoch` (16 hex digits, drawn by whichever
//!   node created the stream) and `top` (the last offset handed out).
//! - Both keys expire `ttl_ms` after the stream was last written or read, together:
//!   an idle stream is forgotten, and so is every stream of a Redis restarted without
//!   persistence. The next one has another epoch, so clients told `recovered: false`
//!   reload rather than miss something silently.
//! - A message is stored, numbered and published in one script
//!   ([`STORE_AND_PUBLISH`]), so offsets on the bus come in order; the bus text is
//!   `S<offset>:<epoch>:<envelope>`. Each node (the publishing one included) delivers
//!   it when it arrives.

use redis::aio::MultiplexedConnection;
use switchyard_core::cluster::{NodeId, Outbound, Publication, RecoverRequest, Recovered};

use crate::envelope::{Envelope, WireEvent};

/// Stores a message, numbers it and publishes it on the bus.
/// KEYS: stream, meta. ARGV: size, ttl_ms, a new epoch (used when the stream has
/// none), the envelope, the bus.
const STORE_AND_PUBLISH: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local top = redis.call('HINCRBY', KEYS[2], 'top', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], top .. '-1', 'e', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[5], 'S' .. top .. ':' .. epoch .. ':' .. ARGV[4])
return top
";

/// Where a stream stands, and the entries after `since` (none when it is -1), at
/// most `count` of them (0: all).
/// KEYS: stream, meta. ARGV: a new epoch, ttl_ms, since, count.
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'top', 0)
end
local top = tonumber(redis.call('HGET', KEYS[2], 'top') or '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local entries = {}
local since = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
if since >= 0 and count > 0 then
  entries = redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+', 'COUNT', count)
elseif since >= 0 then
  entries = redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+')
end
return {epoch, top, entries}
";

/// The stream and meta keys of a channel.
pub(super) fn keys(prefix: &str, tenant: &str, channel: &str) -> (String, String) {
    let tail = format!("{}:{tenant}:{channel}", tenant.len());
    (
        format!("{prefix}history:{tail}"),
        format!("{prefix}history-meta:{tail}"),
    )
}

fn new_epoch() -> String {
    format!("{:016x}", crate::backoff::random_seed())
}

/// Adds the script that stores, numbers and publishes `p` to `pipe`.
pub(super) fn store_and_publish(
    pipe: &mut redis::Pipeline,
    prefix: &str,
    bus: &str,
    node: &NodeId,
    p: Publication,
) {
    let retention = p
        .history
        .unwrap_or(switchyard_core::cluster::Retention { size: 1, ttl_ms: 1 });
    let (stream, meta) = keys(prefix, &p.tenant, &p.channel);
    let envelope = Envelope {
        node: node.clone(),
        event: WireEvent::Changed(Outbound::Publish(p)),
    };
    pipe.cmd("EVAL")
        .arg(STORE_AND_PUBLISH)
        .arg(2)
        .arg(stream)
        .arg(meta)
        .arg(retention.size)
        .arg(retention.ttl_ms)
        .arg(new_epoch())
        .arg(envelope.encode())
        .arg(bus)
        .ignore();
}

/// A numbered message from the bus: `S<offset>:<epoch>:<envelope>`, with the offset
/// and epoch set on its publication. `None` for any other text.
pub(super) fn parse_stored(payload: &[u8]) -> Option<Result<Envelope, String>> {
    let rest = payload.strip_prefix(b"S")?;
    Some(parse_numbered(rest))
}

fn parse_numbered(rest: &[u8]) -> Result<Envelope, String> {
    let mut parts = rest.splitn(3, |&b| b == b':');
    let (Some(offset), Some(epoch), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a numbered message without offset or epoch".into());
    };
    let offset: u64 = std::str::from_utf8(offset)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("a numbered message with a bad offset")?;
    let epoch = std::str::from_utf8(epoch).map_err(|_| "a numbered message with a bad epoch")?;
    numbered(text, offset, epoch).map(|(node, p)| Envelope {
        node,
        event: WireEvent::Changed(Outbound::Publish(p)),
    })
}

/// An envelope's publication with its `offset` and `epoch` set, and its node.
fn numbered(text: &[u8], offset: u64, epoch: &str) -> Result<(NodeId, Publication), String> {
    let envelope = Envelope::decode(text).map_err(|e| e.to_string())?;
    let WireEvent::Changed(Outbound::Publish(mut p)) = envelope.event else {
        return Err("a numbered message that is not a publication".into());
    };
    p.offset = Some(offset);
    p.epoch = Some(epoch.to_owned());
    Ok((envelope.node, p))
}

/// Reads where a stream stands and what a client after `since` missed.
pub(super) async fn read(
    commands: &mut MultiplexedConnection,
    prefix: &str,
    r: &RecoverRequest,
) -> Recovered {
    let page = read_page(
        commands,
        prefix,
        &r.tenant,
        &r.channel,
        r.since,
        0,
        r.retention.ttl_ms,
    )
    .await;
    match page {
        Ok((epoch, offset, publications)) => Recovered {
            request: r.request,
            epoch,
            offset,
            publications,
            error: None,
        },
        Err(e) => failed(r, &e.to_string()),
    }
}

/// The epoch, the last offset, and up to `count` (0: all) messages after `since`.
pub(super) async fn read_page(
    commands: &mut MultiplexedConnection,
    prefix: &str,
    tenant: &str,
    channel: &str,
    since: Option<u64>,
    count: usize,
    ttl_ms: u64,
) -> redis::RedisResult<(String, u64, Vec<Publication>)> {
    let (stream, meta) = keys(prefix, tenant, channel);
    let since = since.map_or(-1, i128::from);
    let (epoch, offset, entries): (String, u64, Vec<(String, Vec<String>)>) = redis::cmd("EVAL")
        .arg(READ)
        .arg(2)
        .arg(stream)
        .arg(meta)
        .arg(new_epoch())
        .arg(ttl_ms)
        .arg(since.to_string())
        .arg(count)
        .query_async(commands)
        .await?;
    let mut publications = Vec::with_capacity(entries.len());
    for (id, fields) in entries {
        let text = fields.get(1).map_or("", String::as_str);
        let read = id
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("entry id {id:?}"))
            .and_then(|n| numbered(text.as_bytes(), n, &epoch));
        match read {
            Ok((_, mut p)) => {
                p.origin_conn = None;
                publications.push(p);
            }
            Err(error) => {
                tracing::warn!(%error, "cluster engine: unreadable history entry, skipped");
            }
        }
    }
    Ok((epoch, offset, publications))
}

/// The answer when the stream cannot be read.
pub(super) fn failed(r: &RecoverRequest, why: &str) -> Recovered {
    Recovered {
        request: r.request,
        epoch: String::new(),
        offset: 0,
        publications: Vec::new(),
        error: Some(why.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_be_confused_across_tenants() {
        assert_ne!(keys("p:", "a:b", "c"), keys("p:", "a", "b:c"));
    }

    #[test]
    fn a_numbered_message_reads_back_with_its_offset_and_epoch() {
        let p = Publication {
            tenant: "t".into(),
            channel: "c".into(),
            from: "x".into(),
            meta: serde_json::Map::new(),
            payload: switchyard_core::cluster::Payload::Json {
                data: "{\"a\":\"1:2\"}".into(),
            },
            event: None,
            number: 7,
            unix_ms: 1,
            original: None,
            history: None,
            offset: None,
            epoch: None,
            origin_conn: Some(3),
        };
        let text = Envelope {
            node: NodeId::new("n1"),
            event: WireEvent::Changed(Outbound::Publish(p.clone())),
        }
        .encode();
        let bus = format!("S42:00ff:{text}");
        let back = parse_stored(bus.as_bytes()).unwrap().unwrap();
        let WireEvent::Changed(Outbound::Publish(q)) = back.event else {
            panic!("a publication")
        };
        assert_eq!((q.offset, q.epoch.as_deref()), (Some(42), Some("00ff")));
        assert_eq!(q.payload, p.payload);
        assert!(parse_stored(b"{\"node\":1}").is_none());
        assert!(parse_stored(b"Sx:e:{}").unwrap().is_err());
    }
}
