//! What a client is built from, checked once at construction: the credentials, the
//! server's URL, the reconnect policy and the timers.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::http::Uri;

use crate::clock::{Clock, Jitter, TokioClock, random_jitter};
use crate::error::{BoxError, OptionsError};
use crate::link::Wire;

/// A DER certificate, for [`SignallingClientOptions::trusted_certs`] (`wss://`) and
/// [`Transport::Quic`]'s trusted roots (rustls' type).
pub use quinn::rustls::pki_types::CertificateDer;

/// The wire under the session. Sessions, reconnects, re-subscribes and events are the
/// same on each; the URL's scheme must match (`wss://` or `ws://`, `quic://`, `tcp://`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A WebSocket to `wss://host:port/path` or `ws://host:port/path` (the default);
    /// credentials in the URL. `wss://` trusts the web PKI roots and
    /// [`SignallingClientOptions::trusted_certs`].
    #[default]
    WebSocket,
    /// QUIC to `quic://host:port` (ALPN `switchyard-json`, one bidirectional stream
    /// of newline-delimited frames). The token goes in band, as the first frame
    /// (`{"type":"auth","token":..}`); API keys are refused (the server takes them in
    /// the WebSocket URL only). The server's close code arrives as the QUIC
    /// application error code, and goes through the same policy as on WebSocket.
    Quic {
        /// The name checked against the server's certificate; `None`: the URL's host.
        server_name: Option<String>,
        /// The certificates (or CAs) to trust, such as the server's dev certificate.
        trusted_certs: Vec<CertificateDer<'static>>,
    },
    /// Plain TCP lines to `tcp://host:port` (loopback only, no TLS), token in band as
    /// on QUIC.
    TcpLines {
        /// Send `hello json` first, as a listener with `tcp_dialect = "auto"` (the
        /// default) expects; `false` for a listener fixed to `json`.
        hello: bool,
    },
}

/// The future a token provider returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;

pub(crate) type TokenProvider = Arc<dyn Fn() -> TokenFuture + Send + Sync>;

/// The default server: a `switchyard` started with its dev defaults.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8080/v1";

/// The backoff between reconnect attempts:
/// `min(initial_delay * multiplier^(attempt - 1), max_delay) ± jitter_ratio`.
/// Each successful `welcome` resets the attempt counter.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectOptions {
    /// The first wait. Default 0.5 s; must be above zero.
    pub initial_delay: Duration,
    /// Growth per attempt. Default 2.0; must be at least 1.
    pub multiplier: f64,
    /// The longest wait before jitter. Default 30 s; must be at least `initial_delay`.
    pub max_delay: Duration,
    /// Spread as a fraction of the wait: 0.2 is ±20 %. Default 0.2; must be in `[0, 1]`.
    pub jitter_ratio: f64,
    /// Consecutive failed attempts before giving up (`Disconnected` with
    /// `will_reconnect: false`). Default `Some(100)`; `None` retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(500),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            jitter_ratio: 0.2,
            max_attempts: Some(100),
        }
    }
}

impl ReconnectOptions {
    /// Refuses knobs that would make a zero-delay reconnect loop. (A negative
    /// `max_attempts` cannot be written: it is unsigned.)
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.initial_delay.is_zero() {
            return Err(OptionsError::Reconnect("initial_delay must be above zero"));
        }
        if self.multiplier.is_nan() || self.multiplier < 1.0 {
            return Err(OptionsError::Reconnect("multiplier must be at least 1"));
        }
        if self.max_delay < self.initial_delay {
            return Err(OptionsError::Reconnect(
                "max_delay must be at least initial_delay",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter_ratio) {
            return Err(OptionsError::Reconnect("jitter_ratio must be in [0, 1]"));
        }
        Ok(())
    }

    /// The wait before attempt `attempt` (1-based), given a jitter sample in `[-1, 1]`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = (self.initial_delay.as_secs_f64() * self.multiplier.powi(exponent))
            .min(self.max_delay.as_secs_f64());
        let jitter = if jitter.is_finite() {
            jitter.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        Duration::from_secs_f64((base * self.jitter_ratio.mul_add(jitter, 1.0)).max(0.0))
    }
}

/// Per-subscription options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Messages on this subscription carry the sender's token-asserted metadata in
    /// `sender_metadata`. Off by default: metadata can be large.
    pub include_sender_metadata: bool,
}

/// How a client is built. Exactly one of [`api_key`](Self::api_key) or
/// [`token_provider`](Self::token_provider) is required; everything else has the seed
/// SDK's default.
#[derive(Clone)]
pub struct SignallingClientOptions {
    pub(crate) api_key: Option<String>,
    pub(crate) token_provider: Option<TokenProvider>,
    pub(crate) url: String,
    pub(crate) transport: Option<Transport>,
    pub(crate) trusted_certs: Vec<CertificateDer<'static>>,
    pub(crate) web_pki_roots: bool,
    pub(crate) token_provider_timeout: Duration,
    pub(crate) refresh_margin: Duration,
    pub(crate) reconnect: Option<ReconnectOptions>,
    pub(crate) inactivity_timeout: Duration,
    pub(crate) auto_resubscribe: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) jitter: Jitter,
}

impl Default for SignallingClientOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            token_provider: None,
            url: DEFAULT_URL.to_owned(),
            transport: None,
            trusted_certs: Vec::new(),
            web_pki_roots: true,
            token_provider_timeout: Duration::from_secs(10),
            refresh_margin: Duration::from_secs(30),
            reconnect: Some(ReconnectOptions::default()),
            inactivity_timeout: Duration::from_secs(60),
            auto_resubscribe: true,
            clock: Arc::new(TokioClock),
            jitter: Arc::new(random_jitter),
        }
    }
}

impl fmt::Debug for SignallingClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignallingClientOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("token_provider", &self.token_provider.is_some())
            .field("url", &self.url)
            .field("transport", &self.transport)
            .field("trusted_certs", &self.trusted_certs.len())
            .field("web_pki_roots", &self.web_pki_roots)
            .field("token_provider_timeout", &self.token_provider_timeout)
            .field("refresh_margin", &self.refresh_margin)
            .field("reconnect", &self.reconnect)
            .field("inactivity_timeout", &self.inactivity_timeout)
            .field("auto_resubscribe", &self.auto_resubscribe)
            .finish_non_exhaustive()
    }
}

impl SignallingClientOptions {
    /// Options with every default and no credentials yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publishable key (`pk_…`), sent as `?key=`.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// An async function returning a JWT, sent as `?token=`. It is called on the first
    /// connect and on every reconnect, each call bounded by
    /// [`token_provider_timeout`](Self::token_provider_timeout).
    #[must_use]
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.token_provider = Some(Arc::new(move || {
            let call = provider();
            Box::pin(async move { call.await.map_err(Into::into) })
        }));
        self
    }

    /// The server: `wss://…`, or `ws://…` to a loopback host. An empty path (or `/`)
    /// means the JSON endpoint `/v1`. Default [`DEFAULT_URL`].
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The wire: [`Transport::WebSocket`] unless told otherwise, or
    /// [`Transport::TcpLines`] with `hello` for a `tcp://` URL. `quic://` URLs need
    /// [`Transport::Quic`] here, for the certificates to trust.
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Certificates (or CAs) to trust for `wss://`, on top of the web PKI roots: a
    /// private CA, or a server's self-signed certificate. Each call replaces the list.
    /// Ignored by `ws://`, `quic://` and `tcp://` ([`Transport::Quic`] has its own).
    #[must_use]
    pub fn trusted_certs(mut self, certs: Vec<CertificateDer<'static>>) -> Self {
        self.trusted_certs = certs;
        self
    }

    /// Whether `wss://` trusts the web PKI (Mozilla's root CAs, built in). Default
    /// `true`; `false` trusts only [`trusted_certs`](Self::trusted_certs), which must
    /// then not be empty.
    #[must_use]
    pub fn web_pki_roots(mut self, on: bool) -> Self {
        self.web_pki_roots = on;
        self
    }

    /// Cap on one token provider call. Default 10 s.
    #[must_use]
    pub fn token_provider_timeout(mut self, timeout: Duration) -> Self {
        self.token_provider_timeout = timeout;
        self
    }

    /// How long before the token's expiry a connected client with a
    /// [`token_provider`](Self::token_provider) asks it for a new token and sends it
    /// as `refresh`, keeping the connection (never earlier than half the token's
    /// remaining life, so short-lived tokens refresh too). A `token_expiring` warning
    /// from the server also starts a refresh. If the provider or the server refuses,
    /// the server closes with 4002 at expiry and the client reconnects with a fresh
    /// token, as it always has. Default 30 s; zero turns in-place refresh off.
    #[must_use]
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The reconnect policy. On by default with [`ReconnectOptions::default`].
    #[must_use]
    pub fn reconnect(mut self, reconnect: ReconnectOptions) -> Self {
        self.reconnect = Some(reconnect);
        self
    }

    /// Never reconnect: every drop ends in `closed`.
    #[must_use]
    pub fn no_reconnect(mut self) -> Self {
        self.reconnect = None;
        self
    }

    /// No frame (pings included) for this long closes the socket with 4000 and
    /// reconnects. Default 60 s; the server pings every 25 s by default.
    #[must_use]
    pub fn inactivity_timeout(mut self, timeout: Duration) -> Self {
        self.inactivity_timeout = timeout;
        self
    }

    /// Re-subscribe every active channel after a reconnect. Default `true`.
    #[must_use]
    pub fn auto_resubscribe(mut self, on: bool) -> Self {
        self.auto_resubscribe = on;
        self
    }

    /// The clock for the backoff, inactivity and token provider timers. Default tokio's.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The jitter source: samples in `[-1, 1]`. Default uniform random.
    #[must_use]
    pub fn jitter(mut self, jitter: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.jitter = Arc::new(jitter);
        self
    }

    /// Checks everything once; the client never re-checks.
    pub(crate) fn validate(&self) -> Result<Endpoint, OptionsError> {
        match (&self.api_key, &self.token_provider) {
            (Some(key), None) if key.is_empty() => {
                return Err(OptionsError::Invalid("api_key is empty"));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err(OptionsError::Credentials),
        }
        if let Some(reconnect) = &self.reconnect {
            reconnect.validate()?;
        }
        if self.inactivity_timeout.is_zero() {
            return Err(OptionsError::Invalid(
                "inactivity_timeout must be above zero",
            ));
        }
        if self.token_provider_timeout.is_zero() {
            return Err(OptionsError::Invalid(
                "token_provider_timeout must be above zero",
            ));
        }
        let mut endpoint = Endpoint::parse(&self.url)?;
        let bad = |why| OptionsError::Url {
            url: self.url.clone(),
            why,
        };
        let transport = match (endpoint.scheme, &self.transport) {
            (_, Some(transport)) => transport.clone(),
            (Scheme::Ws | Scheme::Wss, None) => Transport::WebSocket,
            (Scheme::Tcp, None) => Transport::TcpLines { hello: true },
            (Scheme::Quic, None) => {
                return Err(bad(
                    "quic:// needs .transport(Transport::Quic { .. }) with the certificates to trust",
                ));
            }
        };
        match (endpoint.scheme, &transport) {
            (Scheme::Ws | Scheme::Wss, Transport::WebSocket)
            | (Scheme::Quic, Transport::Quic { .. })
            | (Scheme::Tcp, Transport::TcpLines { .. }) => {}
            _ => return Err(bad("the scheme does not match the transport")),
        }
        if self.api_key.is_some() && transport != Transport::WebSocket {
            return Err(OptionsError::Invalid(
                "api_key needs the WebSocket transport; use a token_provider over QUIC or TCP",
            ));
        }
        endpoint.wire = if endpoint.scheme == Scheme::Wss {
            Wire::secure_websocket(&endpoint.host, &self.trusted_certs, self.web_pki_roots)?
        } else {
            Wire::new(&transport, &endpoint.host, self.inactivity_timeout)?
        };
        Ok(endpoint)
    }
}

/// A checked URL to connect to, without credentials.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `ws://host:port/path` or `wss://…`, with the caller's query if any (WebSocket
    /// only).
    base: String,
    pub(crate) scheme: Scheme,
    pub(crate) wire: Wire,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Ws,
    Wss,
    Quic,
    Tcp,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, OptionsError> {
        let bad = |why| OptionsError::Url {
            url: url.to_owned(),
            why,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let scheme = match uri.scheme_str() {
            Some("wss") => Scheme::Wss,
            Some("ws") if is_loopback(host) => Scheme::Ws,
            Some("ws") => return Err(bad("ws:// is for loopback hosts only; use wss://")),
            Some("tcp") if is_loopback(host) => Scheme::Tcp,
            Some("tcp") => return Err(bad("tcp:// is for loopback hosts only")),
            Some("quic") => Scheme::Quic,
            _ => {
                return Err(bad(
                    "the scheme must be wss://, quic:// (or ws://, tcp:// for loopback)",
                ));
            }
        };
        let port = match (scheme, uri.port_u16()) {
            (_, Some(port)) => port,
            (Scheme::Ws, None) => 80,
            (Scheme::Wss, None) => 443,
            (_, None) => return Err(bad("quic:// and tcp:// URLs need a port")),
        };
        let path = match uri.path() {
            "" | "/" => "/v1",
            path => path,
        };
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let ws = if scheme == Scheme::Wss { "wss" } else { "ws" };
        let mut base = format!("{ws}://{authority}{path}");
        if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
            base.push('?');
            base.push_str(query);
        }
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            base,
            scheme,
            wire: Wire::WebSocket { tls: None },
        })
    }

    /// The URL with one credential in the query (`key` or `token`).
    pub(crate) fn with_credential(&self, name: &str, value: &str) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        format!("{}{sep}{name}={value}", self.base)
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(url: &str) -> SignallingClientOptions {
        SignallingClientOptions::new().api_key("pk_test").url(url)
    }

    #[test]
    fn exactly_one_credential() {
        assert_eq!(
            SignallingClientOptions::new().validate().unwrap_err(),
            OptionsError::Credentials
        );
        let both = SignallingClientOptions::new()
            .api_key("pk")
            .token_provider(|| async { Ok::<_, BoxError>("t".to_owned()) });
        assert_eq!(both.validate().unwrap_err(), OptionsError::Credentials);
        assert!(keyed(DEFAULT_URL).validate().is_ok());
        let provider = SignallingClientOptions::new()
            .token_provider(|| async { Ok::<_, BoxError>("t".to_owned()) });
        assert!(provider.validate().is_ok());
    }

    #[test]
    fn urls_are_wss_or_loopback_ws() {
        for ok in [
            "ws://127.0.0.1:8080",
            "ws://localhost/v1",
            "ws://[::1]:9000/",
            "ws://127.0.0.2:1/custom?tenant=a",
        ] {
            assert!(keyed(ok).validate().is_ok(), "{ok}");
        }
        for bad in [
            "ws://example.com/v1",
            "http://127.0.0.1",
            "127.0.0.1:80",
            "",
        ] {
            assert!(
                matches!(keyed(bad).validate(), Err(OptionsError::Url { .. })),
                "{bad}"
            );
        }
        for ok in [
            "wss://example.com",
            "wss://example.com:8443/custom?tenant=a",
            "wss://127.0.0.1:9000/v1",
            "wss://[::1]/",
        ] {
            assert!(keyed(ok).validate().is_ok(), "{ok}");
        }
        let only_mine = keyed("wss://example.com").web_pki_roots(false);
        assert!(matches!(
            only_mine.validate(),
            Err(OptionsError::Invalid(_))
        ));
    }

    #[test]
    fn the_endpoint_defaults_to_v1_and_appends_the_credential() {
        let e = Endpoint::parse("ws://127.0.0.1:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 9000));
        assert_eq!(
            e.with_credential("key", "pk test"),
            "ws://127.0.0.1:9000/v1?key=pk+test"
        );
        let e = Endpoint::parse("ws://localhost/x/y?a=b").unwrap();
        assert_eq!(e.port, 80);
        assert_eq!(
            e.with_credential("token", "a.b.c"),
            "ws://localhost/x/y?a=b&token=a.b.c"
        );
        assert_eq!(Endpoint::parse("ws://[::1]:1/").unwrap().host, "::1");
        let e = Endpoint::parse("wss://example.com").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("example.com", 443));
        assert_eq!(
            e.with_credential("key", "pk"),
            "wss://example.com/v1?key=pk"
        );
    }

    #[test]
    fn reconnect_options_are_validated_as_the_seed_says() {
        let ok = ReconnectOptions::default();
        assert!(ok.validate().is_ok());
        let bad = [
            ReconnectOptions {
                initial_delay: Duration::ZERO,
                ..ok.clone()
            },
            ReconnectOptions {
                multiplier: 0.9,
                ..ok.clone()
            },
            ReconnectOptions {
                multiplier: f64::NAN,
                ..ok.clone()
            },
            ReconnectOptions {
                max_delay: Duration::from_millis(100),
                ..ok.clone()
            },
            ReconnectOptions {
                jitter_ratio: 1.5,
                ..ok.clone()
            },
            ReconnectOptions {
                jitter_ratio: -0.1,
                ..ok
            },
        ];
        for options in bad {
            assert!(options.validate().is_err(), "{options:?}");
        }
        let forever = ReconnectOptions {
            max_attempts: None,
            ..ReconnectOptions::default()
        };
        assert!(forever.validate().is_ok());
        assert!(matches!(
            keyed(DEFAULT_URL)
                .inactivity_timeout(Duration::ZERO)
                .validate(),
            Err(OptionsError::Invalid(_))
        ));
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let r = ReconnectOptions::default();
        let ms = |attempt, jitter| r.delay(attempt, jitter).as_millis();
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 7, 8].map(|a| ms(a, 0.0)),
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        assert_eq!(ms(u32::MAX, 0.0), 30000);
        assert_eq!(ms(1, 1.0), 600);
        assert_eq!(ms(1, -1.0), 400);
        assert_eq!(ms(7, -1.0), 24000);
        assert_eq!(ms(1, 7.0), 600, "samples are clamped to [-1, 1]");
        assert_eq!(ms(1, f64::NAN), 500);
    }
}
