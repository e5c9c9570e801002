//! Python's grpcio against the service, with stubs from the committed proto.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::*;

fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyclients/bin/python")
}

/// Python's grpcio, generating its stubs from `proto/switchyard.proto` into a temp dir
/// with `grpc_tools.protoc`: two streams in one channel, a bad token and unary
/// Publish; a WebSocket peer in the same channel sees the Python peer's message.
#[tokio::test]
async fn python_grpcio_speaks_to_the_service_from_the_committed_proto() {
    let python = venv_python();
    let probe = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{} cannot import grpc and grpc_tools ({probe:?}): run scripts/test, which installs \
         tests/clients/requirements.txt into target/pyclients",
        python.display()
    );
    let server = start().await;
    let mut ws = ws_peer(&server, &live_token("ws-py-watcher")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"subscribe","channel":"room-py","requestId":"w"}),
    )
    .await;
    ws_expect(&mut ws, "ack", "subscribe ack").await;

    let out = std::env::temp_dir().join(format!("switchyard-grpc-py-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = vec![
        root.join("tests/clients/grpc_client.py")
            .display()
            .to_string(),
        root.join("proto").display().to_string(),
        out.display().to_string(),
        server.grpc_addr.expect("gRPC").to_string(),
        live_token("py-sub"),
        live_token("py-pub"),
        "ak_ops:ops-secret".into(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(args)
            .output()
            .expect("python runs")
    });
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client finishes within a minute")
        .expect("join");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        output.status.success(),
        "the Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let message = ws_expect(&mut ws, "message", "the Python peer's publish").await;
    assert_eq!(message["from"], "py-pub");
    assert_eq!(message["data"], serde_json::json!({"py": true}));
}
