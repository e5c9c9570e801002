//! The gRPC listener under `[tls]`: a tonic client over tokio-rustls (the server's one
//! crypto backend) gets its welcome and its messages; a plaintext HTTP/2 client on the
//! same port gets nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tonic::codegen::Service;
use tonic::codegen::http::Uri;
use tonic::transport::Endpoint;

use super::*;

/// A certificate for `localhost` in PEM files in a fresh directory, removed on drop.
struct CertFiles {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

impl CertFiles {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("switchyard-grpc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a certificate");
        let der = generated.cert.der().clone();
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
        let key = pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            generated.signing_key.serialize_der(),
        ));
        std::fs::write(dir.join("cert.pem"), cert).expect("write the certificate");
        std::fs::write(dir.join("key.pem"), key).expect("write the key");
        Self { dir, der }
    }

    fn section(&self) -> String {
        let (cert, key) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}",
            cert.display().to_string(),
            key.display().to_string()
        )
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Tonic's connector: TCP to `addr`, then TLS for `localhost` trusting one root and
/// offering `h2` (tonic's own TLS features are off in this tree).
#[derive(Clone)]
struct TlsConnect {
    addr: SocketAddr,
    tls: TlsConnector,
}

impl TlsConnect {
    fn trusting(addr: SocketAddr, root: &CertificateDer<'static>) -> Self {
        let mut roots = RootCertStore::empty();
        roots.add(root.clone()).expect("a usable root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tls = TlsConnector::from(Arc::new(config));
        Self { addr, tls }
    }
}

impl Service<Uri> for TlsConnect {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let Self { addr, tls } = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").expect("a server name");
            Ok(TokioIo::new(tls.connect(name, tcp).await?))
        })
    }
}

#[tokio::test]
async fn grpc_over_tls_carries_the_stream_and_refuses_plaintext() {
    let certs = CertFiles::new();
    let server = start_with(&config("", "", &certs.section())).await;
    let addr = server.grpc_addr.expect("gRPC");
    let endpoint =
        Endpoint::from_shared(format!("http://localhost:{}", addr.port())).expect("endpoint");
    let tls_channel = || async {
        let connect = endpoint.connect_with_connector(TlsConnect::trusting(addr, &certs.der));
        tokio::time::timeout(WAIT, connect)
            .await
            .expect("TLS connect in time")
            .expect("TLS connect")
    };

    let mut sub = GrpcPeer::open(tls_channel().await, &live_token("tls-sub"))
        .await
        .expect("Connect over TLS");
    assert_eq!(sub.welcome().await, "tls-sub");
    sub.subscribe("room-tls", "s").await;
    let server_frame::Kind::Ack(_) = sub.next_not_presence("subscribe ack").await else {
        panic!("an ack");
    };
    let mut publisher = GrpcPeer::open(tls_channel().await, &live_token("tls-pub"))
        .await
        .expect("Connect over TLS");
    publisher.welcome().await;
    publisher.publish("room-tls", br#""sealed""#, "p").await;
    let m = sub.message_from("tls-pub", "the publish over TLS").await;
    assert_eq!(&m.payload[..], br#""sealed""#);

    // Plaintext HTTP/2 to the TLS port: the connection fails, or the call does.
    let plaintext = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        GrpcPeer::open(channel, &live_token("plain"))
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    };
    let refused = tokio::time::timeout(WAIT, plaintext)
        .await
        .expect("the plaintext attempt ends in time");
    assert!(refused.is_err(), "a plaintext client got a stream");
}
