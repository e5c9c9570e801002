//! The handshake and the stream: ALPN picks the dialect (an unknown name fails), one
//! bidirectional stream and no other, and a listener started from settings with its
//! dev certificate written out.

use futures_util::FutureExt;
use switchyard::core::Dialect;
use switchyard::server;
use switchyard::settings::Settings;
use switchyard::transports::quic::quinn::rustls::pki_types::CertificateDer;
use switchyard::transports::quic::quinn::rustls::pki_types::pem::PemObject;
use switchyard::transports::quic::quinn::{self, ConnectionError};
use switchyard_core::testing::keyed_config;

use super::common::Setup;
use super::{IDLE, Quic, Server, field, handshake, quic_welcome, start};

#[tokio::test]
async fn the_broadcaster_alpn_speaks_the_broadcaster_and_authenticates_in_band() {
    let server = start(Setup {
        hub: keyed_config(),
        ..Setup::default()
    })
    .await;
    let mut peer = Quic::connect(&server, Dialect::Broadcaster).await;
    peer.send(r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!(
        peer.expect_line("the refusal before auth").await,
        r#"{"requestId":1,"error":{"code":"Unauthenticated","message":"authenticate first"}}"#
    );
    // The server runs on the real clock: the token expires ten minutes from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let token = switchyard_core::testing::token_with(serde_json::json!({
        "sub": "bo", "aud": "broadcaster", "authorizedChannels": ["news"],
        "scope": ["subscribe"], "exp": now + 600,
    }));
    peer.send(&format!(
        r#"{{"id":2,"method":"auth","params":{{"token":"{token}"}}}}"#
    ))
    .await;
    assert_eq!(
        peer.expect_line("the auth answer").await,
        r#"{"requestId":2,"result":{"success":true}}"#
    );
    peer.send(r#"{"id":3,"method":"nope"}"#).await;
    assert_eq!(
        peer.expect_line("the unknown method").await,
        r#"{"requestId":3,"error":{"code":"InvalidArgument","message":"unknown \"method\""}}"#
    );
}

#[tokio::test]
async fn an_unknown_alpn_fails_the_handshake() {
    let server = start(Setup::default()).await;
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(server.certificate.clone()).expect("root");
    let provider = quinn::rustls::crypto::aws_lc_rs::default_provider();
    let mut tls = quinn::rustls::ClientConfig::builder_with_provider(provider.into())
        .with_protocol_versions(&[&quinn::rustls::version::TLS13])
        .expect("tls 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let client = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
    match handshake(server.quic, client).await {
        Err(ConnectionError::ConnectionClosed(close)) => {
            // TLS alert 120, no_application_protocol, as a QUIC crypto error.
            assert_eq!(close.error_code, quinn::TransportErrorCode::crypto(120));
        }
        Err(other) => panic!("expected a TLS alert, got {other}"),
        Ok(_) => panic!("the handshake should fail for an unknown ALPN name"),
    }
}

#[tokio::test]
async fn the_server_grants_one_bidirectional_stream_and_no_other() {
    let server = start(Setup::default()).await;
    let mut peer = Quic::connect(&server, Dialect::Json).await;
    quic_welcome(&mut peer).await;
    // Stream credit is known from the handshake: opening more cannot even start.
    assert!(peer.connection.open_bi().now_or_never().is_none());
    assert!(peer.connection.open_uni().now_or_never().is_none());
    // The one stream carries on.
    peer.send(r#"{"type":"subscribe","channel":"c","requestId":"s"}"#)
        .await;
    assert_eq!(field(&peer.expect_line("ack").await, "type"), "ack");
}

#[tokio::test]
async fn the_server_starts_a_quic_listener_from_settings_and_writes_its_dev_certificate() {
    let dir = std::env::temp_dir().join(format!("switchyard-quic-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pem_path = dir.join("dev.pem");
    let toml = format!(
        "[listen]\nws = \"127.0.0.1:0\"\nquic = \"127.0.0.1:0\"\n\
         [quic]\ndev_cert_file = {:?}\n[auth]\nanonymous = true\n",
        pem_path.display().to_string()
    );
    let env = [(
        "SWITCHYARD_QUIC_IDLE_TIMEOUT_MS".to_owned(),
        "300".to_owned(),
    )];
    let settings = Settings::from_toml(&toml, env).expect("settings");
    assert_eq!(settings.quic_config().idle_timeout, IDLE);
    let running = server::start(&settings).await.expect("server starts");

    // What a client would do: trust the PEM file the server wrote.
    let pem = std::fs::read(&pem_path).expect("the dev certificate's PEM");
    let certificate = CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
    let der = std::fs::read(pem_path.with_extension("der")).expect("the DER beside it");
    assert_eq!(certificate.as_ref(), der.as_slice());
    assert_eq!(running.quic_certificate.as_deref(), Some(der.as_slice()));
    let server = Server {
        ws: running.ws_addr.expect("ws"),
        quic: running.quic_addr.expect("quic addr"),
        certificate,
    };
    let mut peer = Quic::connect(&server, Dialect::Json).await;
    quic_welcome(&mut peer).await;
    let _ = std::fs::remove_dir_all(&dir);
}
