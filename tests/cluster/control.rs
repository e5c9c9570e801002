//! The operator's hand across nodes: a REST disconnect on one node closes a peer
//! another node holds, and REST-issued access tokens are one table for the cluster.

use std::time::Instant;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{WAIT, Ws, http};
use crate::harness::{API_KEY, Node, Options, Redis, until};
use crate::{Json, nodes, nodes_with};

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

    // A peer no node holds is 404, as on one node (tests/rest.rs).
    let body = json!({"peerId": "nobody-anywhere"}).to_string();
    let (status, answer) = http(a.ws, "POST", "/v1/disconnect", Some(API_KEY), &body).await;
    assert_eq!(status, 404, "{answer}");
}

/// A JSON client authenticated with an access token in `Authorization: Bearer`.
async fn bearer(node: &Node, token: &str) -> Ws {
    let mut request = format!("ws://{}/v1", node.ws)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let stream = tokio::net::TcpStream::connect(node.ws)
        .await
        .expect("connect");
    let (inner, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .unwrap_or_else(|_| panic!("handshake with node {} timed out", node.id))
        .expect("handshake");
    Ws { inner }
}

/// `bearer`, and its `welcome`.
async fn welcomed(node: &Node, token: &str) -> Ws {
    let mut ws = bearer(node, token).await;
    let text = ws
        .expect_text(&format!("welcome on node {}", node.id))
        .await;
    let welcome: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(welcome["type"], "welcome", "node {}: {welcome}", node.id);
    ws
}

/// `POST /v1/access-tokens` on `node`: the id and the full token.
async fn issue(node: &Node) -> (String, String) {
    let body = json!({"channels": ["c"]}).to_string();
    let (status, text) = http(node.ws, "POST", "/v1/access-tokens", Some(API_KEY), &body).await;
    assert_eq!(status, 201, "issue on node {}: {text}", node.id);
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let id = v["id"].as_str().expect("id").to_owned();
    let token = v["token"].as_str().expect("token").to_owned();
    (id, token)
}

/// Waits until `GET /v1/access-tokens` on `node` lists `id` with `revoked`.
async fn wait_listed(node: &Node, id: &str, revoked: bool) {
    let what = format!("node {} to list token {id} with revoked={revoked}", node.id);
    until(WAIT, &what, || async {
        let (status, text) = http(node.ws, "GET", "/v1/access-tokens", Some(API_KEY), "").await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        v["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .any(|t| t["id"] == id && t["revoked"] == revoked)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_access_token_issued_on_one_node_works_on_another_and_a_revocation_anywhere_closes_it_everywhere()
 {
    let redis = Redis::start("tokens");
    let options = Options {
        anonymous: false,
        token_file: true,
        ..Options::default()
    };
    let [a, b] =
        <[Node; 2]>::try_from(nodes_with(&redis, &[("ta", options), ("tb", options)]).await)
            .ok()
            .unwrap();
    let (revoked_id, revoked) = issue(&a).await;
    let (kept_id, kept) = issue(&a).await;
    wait_listed(&b, &revoked_id, false).await;
    wait_listed(&b, &kept_id, false).await;
    let mut on_a = welcomed(&a, &revoked).await;
    let mut on_b = welcomed(&b, &revoked).await;

    // Revoked on the other node than the one that issued it: both connections close.
    let asked = Instant::now();
    let (status, text) = http(
        b.ws,
        "DELETE",
        &format!("/v1/access-tokens/{revoked_id}"),
        Some(API_KEY),
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    for (ws, node) in [(&mut on_b, "tb"), (&mut on_a, "ta")] {
        let (code, reason) = ws
            .expect_close(&format!("the revocation's close on node {node}"))
            .await;
        assert_eq!(
            (code, reason.as_str()),
            (4001, "access token revoked"),
            "node {node}"
        );
    }
    eprintln!(
        "closed on both nodes {:?} after the DELETE",
        asked.elapsed()
    );
    wait_listed(&a, &revoked_id, true).await;
    let mut late = bearer(&a, &revoked).await;
    assert_eq!(
        late.expect_close("the revoked token on its issuing node")
            .await
            .0,
        4001
    );

    // A node that starts later reads the table from Redis: the revocation and the
    // token still valid.
    let c = Node::start_with(&redis, "tc", options).await;
    wait_listed(&c, &revoked_id, true).await;
    wait_listed(&c, &kept_id, false).await;
    let mut refused = bearer(&c, &revoked).await;
    assert_eq!(
        refused
            .expect_close("the revoked token on the late node")
            .await
            .0,
        4001
    );
    welcomed(&c, &kept).await;
}
