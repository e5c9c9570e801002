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
use switchyard::transports::quic::{self, quinn};
use switchyard_core::Dialect;
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
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let der = Self::write_new(&cert, &key);
        Self {
            dir,
            cert,
            key,
            der,
        }
    }

    /// A renewed certificate (new key too) in the same files, as certbot leaves them.
    fn renew(&mut self) {
        self.der = Self::write_new(&self.cert, &self.key);
    }

    fn write_new(cert: &std::path::Path, key: &std::path::Path) -> CertificateDer<'static> {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("a certificate");
        let der = generated.cert.der().clone();
        let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
        let key_pem = pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            generated.signing_key.serialize_der(),
        ));
        std::fs::write(cert, cert_pem).expect("write the certificate");
        std::fs::write(key, key_pem).expect("write the key");
        der
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
}

/// A client that trusts only `root` and offers `http/1.1`.
fn connector_trusting(root: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).expect("a usable root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
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
    tls_connect_trusting(&certs.der, addr).await
}

async fn tls_connect_trusting(
    root: &CertificateDer<'static>,
    addr: SocketAddr,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let name = ServerName::try_from("localhost").expect("a server name");
    let tls = tokio::time::timeout(WAIT, connector_trusting(root).connect(name, tcp))
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

/// The certificate the server presented on `tls`.
fn presented(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0]
        .clone()
}

/// A QUIC handshake with a client that trusts only `root`; the server's certificate.
async fn quic_handshake(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let client = quic::client_config(std::slice::from_ref(root), Dialect::Json).expect("client");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("an address"))
        .expect("a client endpoint");
    endpoint.set_default_client_config(client);
    let connecting = endpoint.connect(addr, "localhost").expect("connect");
    match tokio::time::timeout(WAIT, connecting).await {
        Ok(Ok(connection)) => Ok((endpoint, connection)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => panic!("the QUIC handshake neither finished nor failed in {WAIT:?}"),
    }
}

#[tokio::test]
async fn a_reload_rotates_the_certificates_for_new_connections_and_keeps_established_ones() {
    let mut certs = CertFiles::new("rotate");
    let toml = certs
        .config(&format!(
            "[quic]\ncert_file = {:?}\nkey_file = {:?}\n",
            certs.cert.display().to_string(),
            certs.key.display().to_string(),
        ))
        .replacen("[listen]\n", "[listen]\nquic = \"127.0.0.1:0\"\n", 1);
    let settings = Settings::from_toml(&toml, std::iter::empty()).expect("test settings");
    let (running, addr) = start(&toml, Vec::new()).await;
    let quic_addr = running.quic_addr.expect("a QUIC listener");
    let first = certs.der.clone();
    assert_eq!(presented(&tls_connect(&certs, addr).await), first);
    let (_endpoint, early_quic) = quic_handshake(quic_addr, &first).await.expect("first cert");

    let mut early = wss(&certs, addr, "/v1").await;
    assert_eq!(expect_json(&mut early, "welcome").await["type"], "welcome");

    certs.renew();
    assert_ne!(certs.der, first);
    running.reload(&settings).await.expect("the reload");

    // New connections get the renewed certificate on both listeners (these clients
    // trust only the new one); a client that trusts only the old one is refused.
    assert_eq!(presented(&tls_connect(&certs, addr).await), certs.der);
    quic_handshake(quic_addr, &certs.der)
        .await
        .expect("the renewed certificate over QUIC");
    let refused = quic_handshake(quic_addr, &first).await;
    assert!(
        refused.is_err(),
        "the old certificate is no longer presented"
    );

    // Established connections carry on with the certificate they started with.
    send(
        &mut early,
        r#"{"type":"subscribe","channel":"room","requestId":"s"}"#,
    )
    .await;
    assert_eq!(
        expect_json(&mut early, "ack after the reload").await["type"],
        "ack"
    );
    assert!(
        early_quic.close_reason().is_none(),
        "the QUIC connection is still up"
    );

    // A key that does not belong to the certificate: the reload fails and nothing
    // changes.
    let renewed = certs.der.clone();
    let stale_key = std::fs::read(&certs.key).expect("read the key");
    certs.renew();
    std::fs::write(&certs.key, stale_key).expect("write the old key");
    let error = running
        .reload(&settings)
        .await
        .expect_err("a mismatched pair");
    assert!(!error.to_string().is_empty());
    assert_eq!(
        presented(&tls_connect_trusting(&renewed, addr).await),
        renewed
    );
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
