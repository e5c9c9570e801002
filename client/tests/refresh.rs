//! Refreshing the token in place against the real server: the token provider is
//! asked before the token expires and its token sent as `refresh`, so the connection
//! outlives its first token without a reconnect. Short-lived tokens (2 s, no leeway)
//! on tokio's clock; every wait is bounded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Server, WAIT, fast, next, settings, token, unix_now};
use switchyard_client::{
    Connected, Disconnected, ServerError, SignallingClient, SignallingClientOptions, State,
    SubscribeOptions, TokenRefreshed,
};

/// A client whose provider hands out `tokens(n)` on its `n`th call (0-based).
fn provided(
    url: &str,
    tokens: impl Fn(u32) -> String + Send + Sync + 'static,
) -> (SignallingClient, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let tokens = Arc::new(tokens);
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(url)
            .reconnect(fast())
            .refresh_margin(Duration::from_secs(1))
            .token_provider(move || {
                let token = tokens(counter.fetch_add(1, Ordering::SeqCst));
                async move { Ok::<_, std::io::Error>(token) }
            }),
    )
    .expect("valid options");
    (client, calls)
}

#[tokio::test]
async fn a_connection_refreshed_three_times_by_its_token_provider_stays_open_past_the_first_exp() {
    let server = Server::start(settings()).await;
    let (client, calls) = provided(&server.url(), |_| token("alice", 2));
    let mut connected = client.events::<Connected>();
    let mut disconnected = client.events::<Disconnected>();
    let mut refreshed = client.events::<TokenRefreshed>();
    client.connect().await.expect("connect");
    client
        .subscribe("rooms/a", SubscribeOptions::default())
        .await
        .expect("subscribe");
    let first = next(&mut connected, "the first Connected").await;
    let first_exp = first.expires_at.expect("a token expiry");

    let mut last = first_exp;
    for n in 1..=3 {
        let r = next(&mut refreshed, &format!("refresh {n}")).await;
        let exp = r.expires_at.expect("the refreshed token expires");
        assert!(exp >= last, "refresh {n} went back in time: {exp} < {last}");
        last = exp;
    }
    // The server closes an unrefreshed connection at exp (leeway 0): wait until the
    // first token is past, then prove the very same connection still answers.
    tokio::time::timeout(WAIT, async {
        while unix_now() <= first_exp {
            let _ = next(&mut refreshed, "a refresh while waiting out the first exp").await;
        }
    })
    .await
    .expect("the wall clock passed the first token's exp");
    client
        .publish("rooms/a", &serde_json::json!({"still": "here"}))
        .await
        .expect("the connection answers after the first exp");
    assert_eq!(client.state(), State::Connected);
    assert!(
        disconnected.try_recv().is_none(),
        "no Disconnected: no reconnect happened"
    );
    assert!(connected.try_recv().is_none(), "one Connected only");
    assert!(
        calls.load(Ordering::SeqCst) >= 4,
        "one connect and three refreshes"
    );
    assert_eq!(client.subscriptions(), ["rooms/a"]);
}

#[tokio::test]
async fn a_refused_refresh_falls_back_to_the_4002_close_and_a_reconnect() {
    let server = Server::start(settings()).await;
    // The first refresh's token is for another peer: refused; the reconnect's is good.
    let (client, _calls) = provided(&server.url(), |n| match n {
        0 => token("alice", 2),
        1 => token("mallory", 3600),
        _ => token("alice", 3600),
    });
    let mut connected = client.events::<Connected>();
    let mut disconnected = client.events::<Disconnected>();
    let mut errors = client.events::<ServerError>();
    client.connect().await.expect("connect");
    next(&mut connected, "the first Connected").await;
    let refused = next(&mut errors, "the refused refresh").await;
    assert_eq!(refused.code, "invalid_token");
    let drop = next(&mut disconnected, "the expiry close").await;
    assert_eq!((drop.code, drop.will_reconnect), (4002, true));
    let again = next(&mut connected, "the reconnect with a fresh token").await;
    assert!(again.is_reconnect);
}
