//! What a WebSocket upgrade request says: the dialect, the credentials, and the
//! subprotocol to echo. Pure functions of the request, so every rule is unit-tested
//! and other HTTP-based wires can reuse them.
//!
//! # Dialect
//!
//! The request path picks the dialect through [`Routes`] (default `/` →
//! `rtc-signaller`, `/v1` → `json`, `/broadcaster` → `broadcaster`; one trailing `/`
//! is ignored, since rtc.io clients append their endpoint). A `Sec-WebSocket-Protocol`
//! entry equal to a dialect name overrides the path's dialect and is echoed. An unknown
//! path, or a route naming a dialect this build does not know, is a 404.
//!
//! # Credentials, by priority
//!
//! 1. `Authorization: Bearer <token>`.
//! 2. A `Sec-WebSocket-Protocol` entry `bearer.<token>`, or an entry that is not a
//!    dialect name and looks like a token: a JWT (three base64url parts) or `AT_…`.
//! 3. The query string: `?token=` (one trailing `/` stripped: rtc.io clients append
//!    their endpoint after it), else `?key=` (same rule).
//!
//! When a token rode in the subprotocol header, the response must echo one offered
//! entry or browsers fail the handshake: the dialect entry if one was offered, else
//! the token entry itself.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use switchyard_core::{Credentials, Dialect};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::{StatusCode, header};

/// Request paths and the dialect names they serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<(String, String)>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new([
            ("/", "rtc-signaller"),
            ("/v1", "json"),
            ("/broadcaster", "broadcaster"),
        ])
    }
}

impl Routes {
    /// A table from `(path, dialect name)` pairs. Names are resolved per request with
    /// [`Dialect::from_name`], so a table may name dialects a build lacks (a 404 then).
    pub fn new<P: Into<String>, D: Into<String>>(routes: impl IntoIterator<Item = (P, D)>) -> Self {
        Self {
            routes: routes
                .into_iter()
                .map(|(p, d)| (p.into(), d.into()))
                .collect(),
        }
    }

    /// The dialect served at `path`, if any and if this build knows it.
    pub fn dialect(&self, path: &str) -> Option<Dialect> {
        let trimmed = match path.strip_suffix('/') {
            Some(rest) if !rest.is_empty() => rest,
            _ => path,
        };
        let name = self
            .routes
            .iter()
            .find(|(p, _)| p == path)
            .or_else(|| self.routes.iter().find(|(p, _)| p == trimmed))
            .map(|(_, d)| d)?;
        Dialect::from_name(name)
    }
}

/// The outcome of a successful negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The connection's dialect.
    pub dialect: Dialect,
    /// What the client offered, for the hub to check.
    pub credentials: Credentials,
    /// The `Sec-WebSocket-Protocol` value to answer with.
    pub protocol: Option<String>,
    /// The `X-Forwarded-For` header, if any (trusted only from trusted proxies: see
    /// [`client_addr`]).
    pub forwarded_for: Option<String>,
    /// The browser's `Origin` header, if any: access tokens may be limited to some.
    pub origin: Option<String>,
}

/// Reads an upgrade request. `Err` is the HTTP status to refuse it with.
pub fn negotiate(routes: &Routes, request: &Request) -> Result<Negotiated, StatusCode> {
    let uri = request.uri();
    let path_dialect = routes.dialect(uri.path()).ok_or(StatusCode::NOT_FOUND)?;
    let headers = request.headers();
    let offered = Offered::parse(
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(Negotiated {
        dialect: offered.dialect.as_ref().map_or(path_dialect, |(d, _)| *d),
        credentials: credentials(authorization, &offered, uri.query()),
        protocol: offered.echo(),
        forwarded_for: request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        origin: headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    })
}

/// Whether a browser `Origin` may open a WebSocket: any when `allowed` is empty or
/// holds `*`, else an exact (case-insensitive) match. No `Origin` header means not a
/// browser, which cross-site WebSocket hijacking cannot use: allowed.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    allowed.is_empty()
        || allowed.iter().any(|a| {
            a == "*"
                || a.trim_end_matches('/')
                    .eq_ignore_ascii_case(origin.trim_end_matches('/'))
        })
}

/// The client's address: the socket's peer, or, when that peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy (walking
/// from the right, since each proxy appends what it saw). Per-IP limits and logs use
/// it, so only proxies you run may speak for clients. A malformed header is ignored.
/// Forwarded addresses carry port 0: the proxy does not say the client's port.
pub fn client_addr(
    remote: SocketAddr,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> SocketAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(header) = forwarded_for.filter(|_| is_trusted(&remote.ip())) else {
        return remote;
    };
    let Ok(chain) = header
        .split(',')
        .map(|hop| hop.trim().parse::<IpAddr>())
        .collect::<Result<Vec<_>, _>>()
    else {
        return remote;
    };
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(chain.first())
        .map_or(remote, |ip| SocketAddr::new(*ip, 0))
}

/// The `Sec-WebSocket-Protocol` entries that mean something to us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offered {
    /// The first entry naming a dialect, with the entry itself.
    pub dialect: Option<(Dialect, String)>,
    /// The first token entry: the token, and the entry to echo.
    pub token: Option<(String, String)>,
}

impl Offered {
    /// Parses the header's values (the header may be repeated; entries are
    /// comma-separated).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut offered = Self::default();
        let entries = values.into_iter().flat_map(|v| v.split(',')).map(str::trim);
        for entry in entries.filter(|e| !e.is_empty()) {
            if let Some(dialect) = Dialect::from_name(entry) {
                offered.dialect.get_or_insert((dialect, entry.to_owned()));
            } else if let Some(token) = token_entry(entry) {
                offered
                    .token
                    .get_or_insert((token.to_owned(), entry.to_owned()));
            }
        }
        offered
    }

    /// The entry the response must echo: the dialect if offered, else the token entry.
    pub fn echo(&self) -> Option<String> {
        self.dialect
            .as_ref()
            .map(|(_, e)| e)
            .or(self.token.as_ref().map(|(_, e)| e))
            .cloned()
    }
}

/// The token in a subprotocol entry: `bearer.<t>`, a bare JWT, or an `AT_` token.
fn token_entry(entry: &str) -> Option<&str> {
    if let Some(token) = entry.strip_prefix("bearer.") {
        return (!token.is_empty()).then_some(token);
    }
    (looks_like_jwt(entry) || entry.starts_with("AT_")).then_some(entry)
}

fn looks_like_jwt(s: &str) -> bool {
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| base64url(p))
}

/// Credentials by priority: `Authorization` header, subprotocol token, query string.
pub fn credentials(
    authorization: Option<&str>,
    offered: &Offered,
    query: Option<&str>,
) -> Credentials {
    if let Some(token) = authorization.and_then(bearer) {
        return Credentials::Token(token.to_owned());
    }
    if let Some((token, _)) = &offered.token {
        return Credentials::Token(token.clone());
    }
    query.map_or(Credentials::None, query_credentials)
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `?token=` (preferred) or `?key=` from a query string, percent-decoded, with one
/// trailing `/` stripped (`ws://host/?token=J` reaches us as `/?token=J/` from rtc.io).
pub fn query_credentials(query: &str) -> Credentials {
    let mut key = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.strip_suffix('/').unwrap_or(&value);
        if value.is_empty() {
            continue;
        }
        match &*name {
            "token" => return Credentials::Token(value.to_owned()),
            "key" if key.is_none() => key = Some(value.to_owned()),
            _ => {}
        }
    }
    key.map_or(Credentials::None, Credentials::Key)
}

/// A path and query fit for logs: `token` and `key` values are replaced.
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((path, query)) = self.0.split_once('?') else {
            return f.write_str(self.0);
        };
        write!(f, "{path}?")?;
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            match pair.split_once('=') {
                Some((name, _)) if is_secret(name) => write!(f, "{name}=<redacted>")?,
                _ => f.write_str(pair)?,
            }
        }
        Ok(())
    }
}

fn is_secret(name: &str) -> bool {
    ["token", "key", "access_token"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests;
