//! TLS on the WebSocket/HTTP port (`[tls] cert_file`/`key_file`): `wss://` peers that
//! get their welcome and exchange a publish, `https://` REST on the same port, and
//! clients that do not speak TLS, or never finish their handshake, dropped without
//! stalling anyone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// A certificate for `localhost` and 127.0.0.1, its PEM files in a fresh directory.
struct CertFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl CertFiles {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("switchyard-tls-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("a certificate");
        let der = generated.cert.der().clone();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
        let key_pem = pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            generated.signing_key.serialize_der(),
        ));
        std::fs::write(&cert, cert_pem).expect("write the certificate");
        std::fs::write(&key, key_pem).expect("write the key");
        Self {
            dir,
            cert,
            key,
            der,
        }
    }

    /// A config with `[tls]` pointing at these files, plus `extra` TOML.
    fn config(&self, extra: &str) -> String {
        format!(
            "[listen]\nws = \"127.0.0.1:0\"\n[auth]\nanonymous = true\n\
             [tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}",
            self.cert.display().to_string(),
            self.key.display().to_string(),
        )
    }

    /// A client that trusts only this certificate and offers `http/1.1`.
    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("a usable root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(toml: &str, env: Vec<(String, String)>) -> (Running, SocketAddr) {
    let settings = Settings::from_toml(toml, env).expect("test settings");
    let running = server::start(&settings).await.expect("server starts");
    let addr = running.ws_addr.expect("ws listener");
    assert!(running.ws_tls);
    (running, addr)
}

async fn tls_connect(certs: &CertFiles, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let name = ServerName::try_from("localhost").expect("a server name");
    let tls = tokio::time::timeout(WAIT, certs.connector().connect(name, tcp))
        .await
        .expect("tls handshake timed out")
        .expect("tls handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

async fn wss(certs: &CertFiles, addr: SocketAddr, path: &str) -> Wss {
    let tls = tls_connect(certs, addr).await;
    let upgrade = tokio_tungstenite::client_async(format!("wss://localhost{path}"), tls);
    tokio::time::timeout(WAIT, upgrade)
        .await
        .expect("websocket upgrade timed out")
        .expect("websocket upgrade")
        .0
}

async fn expect_json(ws: &mut Wss, what: &str) -> Value {
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("closed before {what}"))
            .unwrap_or_else(|e| panic!("error before {what}: {e}"));
        match next {
            Message::Text(text) => {
                return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("{what}: unexpected {other:?}"),
        }
    }
}

async fn send(ws: &mut Wss, text: &str) {
    ws.send(Message::text(text)).await.expect("websocket send");
}

/// Reads until the peer closes (EOF, or a TLS stream cut without `close_notify`) or
/// `WAIT` runs out; returns what arrived and whether the peer closed.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (all, true),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (all, false),
        }
    }
}

async fn https_get(certs: &CertFiles, addr: SocketAddr, path: &str) -> String {
    let mut tls = tls_connect(certs, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let (response, closed) = read_until_closed(&mut tls).await;
    assert!(closed, "the server should close after Connection: close");
    String::from_utf8(response).expect("a UTF-8 response")
}

#[tokio::test]
async fn wss_peers_get_their_welcome_and_exchange_a_publish() {
    let certs = CertFiles::new("publish");
    let (_running, addr) = start(&certs.config(""), Vec::new()).await;

    let mut alice = wss(&certs, addr, "/v1").await;
    let welcome = expect_json(&mut alice, "alice's welcome").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let alice_id = welcome["peerId"].as_str().expect("a peer id").to_owned();
    send(
        &mut alice,
        r#"{"type":"subscribe","channel":"room","requestId":"s"}"#,
    )
    .await;
    assert_eq!(expect_json(&mut alice, "alice's ack").await["type"], "ack");
    expect_json(&mut alice, "alice's snapshot").await;

    let mut bob = wss(&certs, addr, "/v1").await;
    assert_eq!(
        expect_json(&mut bob, "bob's welcome").await["type"],
        "welcome"
    );
    send(
        &mut bob,
        r#"{"type":"subscribe","channel":"room","requestId":"s"}"#,
    )
    .await;
    assert_eq!(expect_json(&mut bob, "bob's ack").await["type"], "ack");
    expect_json(&mut bob, "bob's snapshot").await;
    let joined = expect_json(&mut alice, "bob joined").await;
    assert_eq!(joined["type"], "presence", "{joined}");

    send(
        &mut alice,
        r#"{"type":"publish","channel":"room","data":{"n":1}}"#,
    )
    .await;
    let message = expect_json(&mut bob, "alice's message").await;
    assert_eq!(message["type"], "message", "{message}");
    assert_eq!(message["from"], alice_id.as_str());
    assert_eq!(message["data"]["n"], 1);
}

#[tokio::test]
async fn https_rest_shares_the_tls_port() {
    let certs = CertFiles::new("https");
    let (_running, addr) = start(&certs.config(""), Vec::new()).await;
    let response = https_get(&certs, addr, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = https_get(&certs, addr, "/no-such-route").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[tokio::test]
async fn the_files_can_come_from_the_environment() {
    let certs = CertFiles::new("env");
    let toml = "[listen]\nws = \"127.0.0.1:0\"\n[auth]\nanonymous = true\n";
    let env = vec![
        (
            "SWITCHYARD_TLS_CERT_FILE".to_owned(),
            certs.cert.display().to_string(),
        ),
        (
            "SWITCHYARD_TLS_KEY_FILE".to_owned(),
            certs.key.display().to_string(),
        ),
    ];
    let (_running, addr) = start(toml, env).await;
    let response = https_get(&certs, addr, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn cert_and_key_go_together_and_must_be_readable() {
    let only_cert = "[tls]\ncert_file = \"/etc/cert.pem\"\n";
    let error = Settings::from_toml(only_cert, std::iter::empty()).expect_err("refused");
    assert!(error.to_string().contains("tls"), "{error}");
    let only_key = "[tls]\nkey_file = \"/etc/key.pem\"\n";
    assert!(Settings::from_toml(only_key, std::iter::empty()).is_err());

    let missing = "[listen]\nws = \"127.0.0.1:0\"\n\
                   [tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n";
    let settings = Settings::from_toml(missing, std::iter::empty()).expect("valid settings");
    let error = server::start(&settings)
        .await
        .expect_err("no certificate to load");
    assert!(
        error.to_string().contains("/nonexistent/cert.pem"),
        "{error}"
    );
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_gets_nothing_useful_and_stalls_nobody() {
    let certs = CertFiles::new("plain");
    let (_running, addr) = start(&certs.config(""), Vec::new()).await;

    let mut plain = TcpStream::connect(addr).await.expect("tcp connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    // A plain client that says nothing at all, holding its socket open meanwhile.
    let _silent = TcpStream::connect(addr).await.expect("tcp connect");

    let (response, closed) = read_until_closed(&mut plain).await;
    assert!(
        closed,
        "a plain HTTP request on the TLS port should be dropped"
    );
    assert!(
        !response.starts_with(b"HTTP/"),
        "no plain HTTP on the TLS port: {:?}",
        String::from_utf8_lossy(&response)
    );

    // The next TLS clients are served as usual.
    let response = https_get(&certs, addr, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let mut peer = wss(&certs, addr, "/v1").await;
    assert_eq!(expect_json(&mut peer, "welcome").await["type"], "welcome");
}

#[tokio::test]
async fn clients_that_stall_in_the_handshake_are_dropped_after_the_handshake_timeout() {
    let certs = CertFiles::new("slow");
    let (_running, addr) = start(
        &certs.config("[ws]\nhandshake_timeout_ms = 200\n"),
        Vec::new(),
    )
    .await;

    // Silent from the start; half a ClientHello (a record header promising 512
    // bytes); a finished TLS handshake but no request head.
    let started = Instant::now();
    let silent = TcpStream::connect(addr).await.expect("tcp connect");
    let mut half = TcpStream::connect(addr).await.expect("tcp connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    let headless = tls_connect(&certs, addr).await;

    let mut stalled: [Box<dyn AsyncRead + Unpin + Send>; 3] =
        [Box::new(silent), Box::new(half), Box::new(headless)];
    for (i, stream) in stalled.iter_mut().enumerate() {
        let (_, closed) = read_until_closed(stream).await;
        assert!(closed, "stalled client {i} should be dropped");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(3),
        "dropped after {elapsed:?}"
    );

    // A prompt client still gets through.
    let mut peer = wss(&certs, addr, "/v1").await;
    assert_eq!(expect_json(&mut peer, "welcome").await["type"], "welcome");
}
