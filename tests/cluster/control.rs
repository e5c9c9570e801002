//! The operator's hand across nodes: a REST disconnect on one node closes a peer
//! another node holds, and REST-issued access tokens are one table for the cluster.

use std::time::Instant;

use serde_json::{Value, json};

use crate::common::http;
use crate::harness::{API_KEY, Node, Redis};
use crate::{Json, nodes};

#[tokio::test]
async fn rest_disconnect_on_one_node_closes_a_peer_held_by_another_with_4020() {
    let redis = Redis::start("kick");
    let [a, c] = <[Node; 2]>::try_from(nodes(&redis, &["ka", "kc"]).await)
        .ok()
        .unwrap();
    let mut victim = Json::connect(&a).await;
    victim.subscribe("kicks").await;
    let mut bystander = Json::connect(&a).await;
    bystander.subscribe("kicks").await;
    c.wait_presence("kicks", &[&victim.peer, &bystander.peer])
        .await;
    let body = json!({"peerId": victim.peer}).to_string();
    let asked = Instant::now();
    let (status, answer) = http(c.ws, "POST", "/v1/disconnect", Some(API_KEY), &body).await;
    // Node kc holds no connection of the peer: forwarded to the others, not found here.
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).expect("JSON"),
        json!({"disconnected": 0, "forwarded": true})
    );
    let (code, reason) = victim.ws.expect_close("the kick from node kc").await;
    assert_eq!(code, 4020, "{reason}");
    eprintln!("closed {:?} after the REST call", asked.elapsed());
    // The others see it leave; the bystander stays.
    let delta = bystander
        .next_of("presence", "the kicked peer's leave")
        .await;
    assert_eq!(crate::peers(&delta, "left"), vec![victim.peer.clone()]);
    c.wait_presence("kicks", &[&bystander.peer]).await;

    // One node alone still answers 404 for a peer nobody holds (tests/rest.rs); in a
    // cluster it cannot know, and says it forwarded.
    let body = json!({"peerId": "nobody-anywhere"}).to_string();
    let (status, answer) = http(a.ws, "POST", "/v1/disconnect", Some(API_KEY), &body).await;
    assert_eq!(status, 202, "{answer}");
}
