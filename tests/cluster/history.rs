//! History on a cluster: the channel's stream lives in Redis, so a client recovers
//! on any node what was published while it was away, and a Redis that lost its data
//! changes the epoch instead of leaving a silent gap. The nodes keep `kept/**`
//! (harness config).

use serde_json::{Value, json};

use crate::common::{WAIT, http};
use crate::harness::{API_KEY, Redis, until};
use crate::{Json, nodes};

impl Json {
    /// Subscribes to `channel` (recovering from `recover`); returns the messages that
    /// came before the ack, and the ack.
    async fn subscribe_at(
        &mut self,
        channel: &str,
        recover: Option<(u64, &str)>,
    ) -> (Vec<Value>, Value) {
        let mut frame = json!({"type": "subscribe", "channel": channel, "requestId": "sub"});
        if let Some((offset, epoch)) = recover {
            frame["recover"] = json!({"offset": offset, "epoch": epoch});
        }
        self.send(frame).await;
        let mut messages = Vec::new();
        loop {
            let frame = self.next("the subscribe ack").await;
            match frame["type"].as_str() {
                Some("message") => messages.push(frame),
                Some("ack") => return (messages, frame),
                Some("presence") => {}
                _ => panic!("unexpected frame before the subscribe ack: {frame}"),
            }
        }
    }

    /// The next `n` messages' `(data, offset)`.
    async fn messages(&mut self, n: usize, what: &str) -> Vec<(u64, u64)> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let m = self.next_of("message", what).await;
            got.push(pair(&m));
        }
        got
    }
}

fn pair(m: &Value) -> (u64, u64) {
    (
        m["data"]
            .as_u64()
            .unwrap_or_else(|| panic!("numbered data: {m}")),
        m["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("an offset: {m}")),
    )
}

/// Publishes the numbers `from..=to` and waits for the last ack.
async fn publish_range(publisher: &mut Json, from: u64, to: u64) {
    for n in from..=to {
        publisher
            .publish("kept/x", json!(n), &format!("p{n}"))
            .await;
    }
    publisher.until_ack(&format!("p{to}")).await;
}

#[tokio::test]
async fn a_client_recovers_on_another_node_exactly_what_was_published_while_it_was_away() {
    let redis = Redis::start("history");
    let [a, b] = <[_; 2]>::try_from(nodes(&redis, &["ha", "hb"]).await)
        .ok()
        .unwrap();
    let mut reader = Json::connect(&b).await;
    let (_, ack) = reader.subscribe_at("kept/x", None).await;
    assert_eq!(ack["offset"], 0, "{ack}");
    let epoch = ack["epoch"].as_str().expect("an epoch").to_owned();
    let mut publisher = Json::connect(&a).await;
    publish_range(&mut publisher, 1, 10).await;
    let live: Vec<(u64, u64)> = (1..=10).map(|n| (n, n)).collect();
    assert_eq!(reader.messages(10, "the first ten").await, live);

    drop(reader);
    publish_range(&mut publisher, 11, 110).await;
    // Back on the other node, from offset 10.
    let mut back = Json::connect(&a).await;
    let (replayed, ack) = back.subscribe_at("kept/x", Some((10, &epoch))).await;
    let replayed: Vec<(u64, u64)> = replayed.iter().map(pair).collect();
    let missed: Vec<(u64, u64)> = (11..=110).map(|n| (n, n)).collect();
    assert_eq!(replayed, missed, "exactly the hundred missed, in order");
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(
        (ack["offset"].clone(), ack["epoch"].clone()),
        (json!(110), json!(epoch))
    );
    // Live ones follow from either node, numbered on.
    let mut other = Json::connect(&b).await;
    publish_range(&mut other, 111, 112).await;
    assert_eq!(
        back.messages(2, "live after the seam").await,
        [(111, 111), (112, 112)]
    );
    // REST reads the same stream on any node.
    let path = "/v1/history?channel=kept/x&since=105&limit=5";
    let (status, body) = http(a.ws, "GET", path, Some(API_KEY), "").await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (page["offset"].clone(), page["epoch"].clone()),
        (json!(112), json!(epoch))
    );
    let offsets: Vec<u64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, [106, 107, 108, 109, 110], "{body}");
    assert_eq!(page["messages"][0]["data"], 106);
    assert_eq!(page["next"], 110);
    let (status, _) = http(b.ws, "GET", "/v1/history?channel=news", Some(API_KEY), "").await;
    assert_eq!(
        status, 404,
        "a channel without a rule has no history on a cluster either"
    );
}

#[tokio::test]
async fn a_redis_that_lost_its_data_gives_the_stream_a_new_epoch_and_old_positions_do_not_recover()
{
    let mut redis = Redis::start("history-restart");
    let port = redis.port;
    let [a] = <[_; 1]>::try_from(nodes(&redis, &["hr"]).await)
        .ok()
        .unwrap();
    let mut reader = Json::connect(&a).await;
    let (_, ack) = reader.subscribe_at("kept/y", None).await;
    let epoch = ack["epoch"].as_str().unwrap().to_owned();
    let mut publisher = Json::connect(&a).await;
    publisher.publish("kept/y", json!(1), "p1").await;
    publisher.until_ack("p1").await;
    assert_eq!(pair(&reader.next_of("message", "the first").await), (1, 1));

    redis.kill();
    a.wait_health("engine: redis reconnecting").await;
    // Nothing can store it now: the publisher is told, nobody receives it.
    publisher.publish("kept/y", json!(2), "p2").await;
    let refused = publisher
        .next_of("error", "the refusal while Redis is down")
        .await;
    assert_eq!(
        (refused["code"].clone(), refused["requestId"].clone()),
        (json!("unavailable"), json!("p2")),
        "{refused}"
    );
    let _redis = until(WAIT, "redis to start again on its port", || async {
        Redis::start_on("history-restart", port)
    })
    .await;
    a.wait_health("engine: redis connected").await;
    let mut back = Json::connect(&a).await;
    let (replayed, ack) = back.subscribe_at("kept/y", Some((1, &epoch))).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_ne!(ack["epoch"], json!(epoch), "{ack}");
    assert_eq!(ack["offset"], 0, "{ack}");
}
