//! `wss://` against the real server with `[tls]`: clients that trust its certificate
//! (by IP address and by name) subscribe and publish to each other; a client that
//! does not trust it fails its first connect at once, with the TLS reason.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{PK, fast, next, settings};
use serde_json::json;
use switchyard::server::Running;
use switchyard_client::{
    CertificateDer, Message, SignallingClient, SignallingClientOptions, SignallingError, State,
    StateChange, SubscribeOptions,
};

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files in a fresh
/// directory (removed on drop).
struct CertFiles {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl CertFiles {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-client-tls-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("a certificate");
        let der = generated.cert.der().clone();
        let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
        let key_pem = pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            generated.signing_key.serialize_der(),
        ));
        std::fs::write(dir.join("cert.pem"), cert_pem).expect("write the certificate");
        std::fs::write(dir.join("key.pem"), key_pem).expect("write the key");
        Self { dir, der }
    }

    /// The real server, WebSocket on 127.0.0.1:0 with `[tls]` on these files.
    async fn start(&self) -> (Running, u16) {
        let mut s = settings();
        s.tls.cert_file = self.dir.join("cert.pem").display().to_string();
        s.tls.key_file = self.dir.join("key.pem").display().to_string();
        let running = switchyard::server::start(&s).await.expect("server starts");
        assert!(running.ws_tls, "the server speaks wss://");
        let port = running.ws_addr.expect("a WebSocket listener").port();
        (running, port)
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client(options: SignallingClientOptions) -> SignallingClient {
    SignallingClient::new(options.api_key(PK).reconnect(fast())).expect("valid options")
}

#[tokio::test]
async fn wss_clients_trusting_the_certificate_subscribe_and_publish() {
    let certs = CertFiles::new("round-trip");
    let (_server, port) = certs.start().await;

    // By IP address, trusting only the test certificate.
    let alice = client(
        SignallingClientOptions::new()
            .url(format!("wss://127.0.0.1:{port}/v1"))
            .trusted_certs(vec![certs.der.clone()])
            .web_pki_roots(false),
    );
    // By name, with the web PKI roots as well (the default).
    let bob = client(
        SignallingClientOptions::new()
            .url(format!("wss://localhost:{port}"))
            .trusted_certs(vec![certs.der.clone()]),
    );
    alice.connect().await.expect("alice connects over wss://");
    bob.connect().await.expect("bob connects over wss://");
    assert_eq!(
        (alice.state(), bob.state()),
        (State::Connected, State::Connected)
    );

    let mut alice_messages = alice.events::<Message>();
    let mut bob_messages = bob.events::<Message>();
    for c in [&alice, &bob] {
        c.subscribe("rooms/tls", SubscribeOptions::default())
            .await
            .expect("subscribe acked");
    }
    alice
        .publish("rooms/tls", &json!({"from": "alice"}))
        .await
        .expect("publish acked");
    let got = next(&mut bob_messages, "alice's message").await;
    assert_eq!(
        (got.channel.as_str(), &got.data),
        ("rooms/tls", &json!({"from": "alice"}))
    );
    bob.publish("rooms/tls", &json!({"from": "bob"}))
        .await
        .expect("publish acked");
    let got = next(&mut alice_messages, "bob's message").await;
    assert_eq!(got.data, json!({"from": "bob"}));

    alice.close(1000, "done").await;
    bob.close(1000, "done").await;
    assert_eq!((alice.state(), bob.state()), (State::Closed, State::Closed));
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_its_first_connect() {
    let certs = CertFiles::new("untrusted");
    let (_server, port) = certs.start().await;

    // The web PKI roots only: a self-signed certificate is not among them.
    let client = client(SignallingClientOptions::new().url(format!("wss://127.0.0.1:{port}/v1")));
    let mut states = client.events::<StateChange>();
    let error = tokio::time::timeout(common::WAIT, client.connect())
        .await
        .expect("the first connect fails promptly")
        .expect_err("an untrusted certificate is refused");
    let SignallingError::Connect(connect) = &error else {
        panic!("expected a connect error, got {error:?}");
    };
    assert_eq!(connect.close_code, 1006, "{connect}");
    assert!(
        connect.reason.starts_with("TLS handshake failed")
            && connect.reason.contains("certificate"),
        "the reason names the TLS failure: {}",
        connect.reason
    );
    assert_eq!(client.state(), State::Closed);

    // No retry loop: idle → connecting → closed, and nothing after.
    let mut seen = Vec::new();
    while let Ok(Some(change)) =
        tokio::time::timeout(Duration::from_millis(300), states.recv()).await
    {
        seen.push(change.to);
    }
    assert_eq!(seen, [State::Connecting, State::Closed]);
}

#[test]
fn wss_without_web_pki_roots_needs_a_trusted_certificate() {
    let options = SignallingClientOptions::new()
        .api_key(PK)
        .url("wss://example.com/v1")
        .web_pki_roots(false);
    assert!(SignallingClient::new(options.clone()).is_err());
    let der = CertFiles::new("options").der.clone();
    assert!(SignallingClient::new(options.trusted_certs(vec![der])).is_ok());
}
