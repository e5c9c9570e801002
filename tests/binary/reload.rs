//! SIGHUP: the config file read again, what a reload changes and what it refuses.

use super::common::{WAIT, Ws};
use super::*;

/// Sends the server `signal` (`HUP`, `TERM`) the way an operator does, with `kill`.
pub(super) async fn signal(server: &Served, signal: &str) {
    let pid = server
        .child
        .id()
        .expect("the server is running")
        .to_string();
    let status = tokio::time::timeout(
        WAIT,
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status(),
    )
    .await
    .unwrap_or_else(|_| panic!("kill -{signal} {pid} did not finish"))
    .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status:?}");
}

/// Reads the server's log until a line contains `needle`, within [`WAIT`] in all.
pub(super) async fn log_until(server: &mut Served, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let line = tokio::time::timeout_at(deadline, server.logs.next_line())
            .await
            .unwrap_or_else(|_| panic!("the server did not log {needle:?} within {WAIT:?}"))
            .expect("read the server's log")
            .unwrap_or_else(|| panic!("the server exited before logging {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn assert_running(server: &mut Served, after: &str) {
    let exited = server.child.try_wait().expect("poll the server process");
    assert!(
        exited.is_none(),
        "the server exited after {after}: {exited:?}"
    );
}

/// Stops the server with SIGTERM and checks it exits cleanly: it was still running,
/// and no earlier signal had ended it.
pub(super) async fn stop(mut server: Served) {
    signal(&server, "TERM").await;
    let status = tokio::time::timeout(WAIT, server.child.wait())
        .await
        .expect("the server did not exit after SIGTERM")
        .expect("wait for the server");
    assert!(status.success(), "exit status {status:?}");
}

pub(super) async fn expect_welcome(ws: &mut Ws, who: &str) -> String {
    let text = ws.expect_text(&format!("{who}'s welcome")).await;
    assert!(text.starts_with(r#"{"type":"welcome""#), "{who}: {text}");
    text
}

/// A peer the server still serves answers a subscribe with its ack (past the presence
/// snapshots of earlier subscribes).
async fn expect_served(ws: &mut Ws, who: &str) {
    ws.send(r#"{"type":"subscribe","channel":"lobby","requestId":"still"}"#)
        .await;
    let ack = r#"{"type":"ack","requestId":"still"}"#;
    for _ in 0..20 {
        if ws.expect_text(&format!("{who}'s ack")).await == ack {
            return;
        }
    }
    panic!("{who} is no longer served: no {ack}");
}

/// The first frame `ws` gets is a close (no `welcome` before it): its code and reason.
pub(super) async fn expect_refused(ws: &mut Ws, who: &str) -> (u16, String) {
    match ws.next(&format!("{who}'s close")).await {
        Message::Close(Some(frame)) => (frame.code.into(), frame.reason.to_string()),
        other => panic!("{who}: expected a close before any frame, got {other:?}"),
    }
}

#[tokio::test]
async fn sighup_reloads_the_config_file_and_closes_the_peers_it_no_longer_allows() {
    let dir = temp_dir("sighup");
    let config = write_config(&dir);
    allow_anonymous(&config);
    let mut server = serve(&config).await;
    let mut anonymous = Ws::connect(server.ws, "/v1").await;
    expect_welcome(&mut anonymous, "the anonymous peer").await;
    let mut js = Ws::connect(
        server.ws,
        &format!("/v1?token={}", token(&config, "js").await),
    )
    .await;
    expect_welcome(&mut js, "js").await;

    // The operator turns anonymous access off (and shortens the auth timeout), then
    // tells the running server.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "anonymous = true",
        "anonymous = false\nauth_timeout_ms = 300",
    );
    std::fs::write(&config, text).unwrap();
    signal(&server, "HUP").await;

    assert_eq!(
        anonymous
            .expect_close("the anonymous peer's close after SIGHUP")
            .await,
        (4001, "credentials revoked by reconfiguration".to_owned())
    );
    let reloaded = log_until(&mut server, "SIGHUP: config reloaded").await;
    assert!(reloaded.contains("closed=1"), "{reloaded}");
    assert_running(&mut server, "SIGHUP");
    // The token peer's key is still configured: it carries on.
    expect_served(&mut js, "js").await;
    // A new anonymous peer gets no welcome, and is closed at the new auth timeout
    // (the old one, 10 s, is longer than any wait here).
    let mut late = Ws::connect(server.ws, "/v1").await;
    assert_eq!(
        expect_refused(&mut late, "a new anonymous peer").await,
        (4001, "no credentials within the auth timeout".to_owned())
    );
    let mut js2 = Ws::connect(
        server.ws,
        &format!("/v1?token={}", token(&config, "js2").await),
    )
    .await;
    assert!(
        expect_welcome(&mut js2, "js2")
            .await
            .contains(r#""peerId":"js2""#)
    );
    stop(server).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_sighup_with_an_invalid_config_file_keeps_the_server_and_its_old_config() {
    let dir = temp_dir("sighup-invalid");
    let config = write_config(&dir);
    allow_anonymous(&config);
    let good = std::fs::read_to_string(&config).unwrap();
    let off = good.replace("anonymous = true", "anonymous = false");
    let mut server = serve(&config).await;
    let mut anonymous = Ws::connect(server.ws, "/v1").await;
    expect_welcome(&mut anonymous, "the anonymous peer").await;

    // Each would turn anonymous access off, were it applied.
    let broken = [
        (
            "a file that does not parse",
            Some(off.replace("[ws]", "[ws")),
        ),
        (
            "an unknown key",
            Some(off.replace("anonymous = false", "anonymous = false\nanonymus = true")),
        ),
        (
            "a value the core refuses",
            Some(format!("{off}\n[limits]\nmessage_rate = 0\n")),
        ),
        ("a missing file", None),
    ];
    for (what, text) in broken {
        match text {
            Some(text) => std::fs::write(&config, text).unwrap(),
            None => std::fs::remove_file(&config).unwrap(),
        }
        signal(&server, "HUP").await;
        let refused = log_until(&mut server, "SIGHUP: config refused").await;
        assert!(refused.contains("ERROR"), "{what}: {refused}");
        assert_running(&mut server, &format!("a SIGHUP with {what}"));
        expect_served(&mut anonymous, &format!("the anonymous peer after {what}")).await;
        let mut another = Ws::connect(server.ws, "/v1").await;
        expect_welcome(&mut another, &format!("a new anonymous peer after {what}")).await;
    }

    // The next good file still applies: the refusals left the old config whole and
    // the server listening for SIGHUP.
    std::fs::write(&config, &off).unwrap();
    signal(&server, "HUP").await;
    assert_eq!(
        anonymous
            .expect_close("the anonymous peer's close after a good SIGHUP")
            .await
            .0,
        4001
    );
    log_until(&mut server, "SIGHUP: config reloaded").await;
    stop(server).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_sighup_in_dev_mode_has_no_file_to_read_and_changes_nothing() {
    // Dev mode's listeners, moved to port 0 by the environment overrides it honours.
    let mut server = serve_with(
        &["serve"],
        &[
            ("SWITCHYARD_LISTEN_WS", "127.0.0.1:0"),
            ("SWITCHYARD_LISTEN_TCP", "127.0.0.1:0"),
        ],
    )
    .await;
    let mut anonymous = Ws::connect(server.ws, "/v1").await;
    expect_welcome(&mut anonymous, "the anonymous peer").await;
    signal(&server, "HUP").await;
    log_until(&mut server, "SIGHUP: no config file to read again").await;
    assert_running(&mut server, "SIGHUP in dev mode");
    expect_served(&mut anonymous, "the anonymous peer").await;
    stop(server).await;
}
