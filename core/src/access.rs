//! Opaque access tokens, fastpubsub style: `AT_<id>_<secret>`, issued by an operator.
//!
//! The hub holds a table of tokens keyed by id, each with the SHA-256 of its secret
//! (never the secret) and the grants it carries: allowed tenants, publish and
//! subscribe channel patterns, permissions, optional client-IP networks and browser
//! origins, and an expiry. Checking a presented token is pure: parse, look the id up,
//! hash the secret and compare in constant time, then the checks that need the hub's
//! clock and what the transport saw (`unix_secs`, the client IP, the `Origin`).
//!
//! Implementation note: a plain SHA-256 (no salt, no slow KDF) is the right tool here
//! because the secrets are 256-bit random strings made by the server, not passwords:
//! nothing is gained by slowing a guess that cannot succeed, and the check stays cheap
//! at connect time. Minting (the randomness) is the binary's job, never the core's.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::token::Permissions;

/// Every access token starts with this.
pub const PREFIX: &str = "AT_";

/// Longest token id, in bytes (`[A-Za-z0-9-]`).
pub const MAX_ID_LEN: usize = 64;

/// Shortest and longest secret, in bytes (`[A-Za-z0-9]`): at least 32 characters, so
/// a secret is never guessable.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 32..=128;

/// Splits `AT_<id>_<secret>` strictly: `None` unless the prefix is there, the id is 1
/// to 64 of `[A-Za-z0-9-]` and the secret 32 to 128 of `[A-Za-z0-9]`.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let secret_ok =
        SECRET_LEN.contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    (id_ok && secret_ok).then_some((id, secret))
}

/// Whether `id` is a valid token id (what [`parse`] accepts).
pub fn valid_id(id: &str) -> bool {
    parse(&format!("{PREFIX}{id}_{}", "0".repeat(*SECRET_LEN.start()))).is_some()
}

/// The SHA-256 of a secret: what tables and files hold instead of the secret.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lowercase hex of a hash, for files and config.
pub fn to_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The inverse of [`to_hex`] (either case); `None` unless exactly 64 hex digits.
pub fn from_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// One access token as the hub knows it. Build with [`AccessToken::new`] and set the
/// grants you need; `Debug` shows the id, never the hash.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessToken {
    /// The public id (`AT_<id>_…`).
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_sha256: [u8; 32],
    /// Tenants the token may act in; the first is the connection's own. Empty: the
    /// hub's default tenant only.
    pub tenants: Vec<String>,
    /// Channel patterns the token may publish to.
    pub publish: Vec<String>,
    /// Channel patterns the token may subscribe to.
    pub subscribe: Vec<String>,
    /// What the token may do (default: publish, subscribe, presence).
    pub permissions: Permissions,
    /// Client networks allowed to use it; empty: any.
    pub allowed_ips: Vec<Cidr>,
    /// Browser origins allowed to use it (exact match); empty: any. When set, a
    /// connection without an `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// Expiry, unix seconds; `None`: never.
    pub expires_at: Option<u64>,
    /// Revoked tokens stay in the table so that refusals can say so; they never pass.
    pub revoked: bool,
}

impl AccessToken {
    /// A token with this id and secret hash, in the default tenant, granting nothing
    /// until channel patterns are added.
    pub fn new(id: &str, secret_sha256: [u8; 32]) -> Self {
        Self {
            id: id.to_owned(),
            secret_sha256,
            tenants: Vec::new(),
            publish: Vec::new(),
            subscribe: Vec::new(),
            permissions: Permissions::PUBLISH | Permissions::SUBSCRIBE | Permissions::PRESENCE,
            allowed_ips: Vec::new(),
            allowed_origins: Vec::new(),
            expires_at: None,
            revoked: false,
        }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("id", &self.id)
            .field("tenants", &self.tenants)
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .field("expires_at", &self.expires_at)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// Why a presented access token was refused. The connection is closed with 4001
/// (4002 for [`AccessError::Expired`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// Not `AT_<id>_<secret>` with the allowed characters and lengths.
    #[error("malformed access token")]
    Malformed,
    /// No token with that id.
    #[error("unknown access token")]
    UnknownId,
    /// The secret does not match the id's.
    #[error("bad access token secret")]
    BadSecret,
    /// An operator revoked it.
    #[error("access token revoked")]
    Revoked,
    /// Its expiry passed.
    #[error("access token expired")]
    Expired,
    /// The client's address is outside the token's networks (or unknown).
    #[error("client address not allowed for this access token")]
    IpNotAllowed,
    /// The browser origin is not one of the token's (or there is none).
    #[error("origin not allowed for this access token")]
    OriginNotAllowed,
}

impl AccessError {
    /// A stable label for the `AuthFailed` event and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_access_token",
            Self::UnknownId => "unknown_access_token",
            Self::BadSecret => "bad_secret",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::OriginNotAllowed => "origin_not_allowed",
        }
    }
}

/// What the check needs besides the token: the hub's wall clock and what the
/// transport saw of the client.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    /// Unix seconds now (the hub's clock).
    pub unix_secs: u64,
    /// The client's IP, if the transport knows it.
    pub ip: Option<IpAddr>,
    /// The WebSocket `Origin` header, if any.
    pub origin: Option<&'a str>,
}

/// The tokens the hub accepts, by id.
#[derive(Clone, Debug, Default)]
pub struct AccessTable {
    by_id: BTreeMap<String, AccessToken>,
}

/// Why a token table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTableError {
    /// An id is not `[A-Za-z0-9-]{1,64}`.
    #[error("access token id {0:?} is invalid (1 to 64 of A-Z a-z 0-9 -)")]
    BadId(String),
    /// Two tokens share an id.
    #[error("duplicate access token id {0:?}")]
    DuplicateId(String),
}

impl AccessTable {
    /// Builds the table; ids must be valid and unique.
    pub fn new(tokens: impl IntoIterator<Item = AccessToken>) -> Result<Self, AccessTableError> {
        let mut by_id = BTreeMap::new();
        for token in tokens {
            if !valid_id(&token.id) {
                return Err(AccessTableError::BadId(token.id));
            }
            let id = token.id.clone();
            if by_id.insert(id.clone(), token).is_some() {
                return Err(AccessTableError::DuplicateId(id));
            }
        }
        Ok(Self { by_id })
    }

    /// The token with this id, revoked or not.
    pub fn get(&self, id: &str) -> Option<&AccessToken> {
        self.by_id.get(id)
    }

    /// Checks a presented token. Order: shape, id, secret (so that nobody without the
    /// secret learns anything more than whether an id exists), revocation, expiry,
    /// client IP, origin.
    pub fn verify(&self, token: &str, at: &Presented<'_>) -> Result<&AccessToken, AccessError> {
        let (id, secret) = parse(token).ok_or(AccessError::Malformed)?;
        let entry = self.by_id.get(id).ok_or(AccessError::UnknownId)?;
        let hash = hash_secret(secret);
        aws_lc_rs::constant_time::verify_slices_are_equal(&hash, &entry.secret_sha256)
            .map_err(|_| AccessError::BadSecret)?;
        if entry.revoked {
            return Err(AccessError::Revoked);
        }
        if entry.expires_at.is_some_and(|exp| at.unix_secs >= exp) {
            return Err(AccessError::Expired);
        }
        if !entry.allowed_ips.is_empty()
            && !at
                .ip
                .is_some_and(|ip| entry.allowed_ips.iter().any(|n| n.contains(ip)))
        {
            return Err(AccessError::IpNotAllowed);
        }
        if !entry.allowed_origins.is_empty()
            && !at.origin.is_some_and(|o| {
                entry
                    .allowed_origins
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(o))
            })
        {
            return Err(AccessError::OriginNotAllowed);
        }
        Ok(entry)
    }
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// counts as its IPv4 address, as dual-stack sockets report IPv4 clients that way.
    pub fn contains(self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789ABCDEF";
    const NOW: u64 = 1_700_000_000;

    fn table(edit: impl FnOnce(&mut AccessToken)) -> AccessTable {
        let mut t = AccessToken::new("tok1", hash_secret(SECRET));
        edit(&mut t);
        AccessTable::new([t]).unwrap()
    }

    fn at(ip: Option<&str>, origin: Option<&str>) -> Presented<'static> {
        Presented {
            unix_secs: NOW,
            ip: ip.map(|i| i.parse().unwrap()),
            origin: origin.map(|o| Box::leak(o.to_owned().into_boxed_str()) as &str),
        }
    }

    fn token(secret: &str) -> String {
        format!("AT_tok1_{secret}")
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(parse(&token(SECRET)), Some(("tok1", SECRET)));
        assert_eq!(
            parse(&format!("AT_a-b-9_{SECRET}")),
            Some(("a-b-9", SECRET))
        );
        let long_id = "i".repeat(MAX_ID_LEN + 1);
        for bad in [
            String::new(),
            "AT_".into(),
            format!("AT__{SECRET}"),
            format!("at_tok1_{SECRET}"),
            format!("AT_tok1{SECRET}"),
            format!("AT_tok1_{SECRET}_x"),
            format!("AT_tok1_{SECRET}-"),
            format!("AT_tok1_{}", &SECRET[1..]),
            format!("AT_tok1_{}", "a".repeat(129)),
            format!("AT_to.k_{SECRET}"),
            format!("AT_{long_id}_{SECRET}"),
            format!(" AT_tok1_{SECRET}"),
            format!("AT_tok1_{SECRET} "),
            format!("AT_tök_{SECRET}"),
        ] {
            assert_eq!(parse(&bad), None, "{bad:?}");
            assert_eq!(
                table(|_| {}).verify(&bad, &at(None, None)).unwrap_err(),
                AccessError::Malformed,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_secret_is_compared_by_hash() {
        let t = table(|_| {});
        assert_eq!(
            t.verify(&token(SECRET), &at(None, None)).unwrap().id,
            "tok1"
        );
        let wrong = SECRET.replace('0', "1");
        assert_eq!(
            t.verify(&token(&wrong), &at(None, None)),
            Err(AccessError::BadSecret)
        );
        assert_eq!(
            t.verify(&format!("AT_tok2_{SECRET}"), &at(None, None)),
            Err(AccessError::UnknownId)
        );
        // The table holds the hash, and its Debug shows neither.
        let debug = format!("{t:?}");
        assert!(!debug.contains(SECRET) && !debug.contains(&to_hex(&hash_secret(SECRET))));
        assert_eq!(
            to_hex(&hash_secret("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(from_hex(&to_hex(&hash_secret("x"))), Some(hash_secret("x")));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn revoked_comes_after_the_secret_check() {
        let t = table(|t| t.revoked = true);
        assert_eq!(
            t.verify(&token(SECRET), &at(None, None)),
            Err(AccessError::Revoked)
        );
        let wrong = SECRET.replace('a', "b");
        assert_eq!(
            t.verify(&token(&wrong), &at(None, None)),
            Err(AccessError::BadSecret)
        );
    }

    #[test]
    fn expiry_follows_the_given_clock() {
        let t = table(|t| t.expires_at = Some(NOW + 10));
        let mut when = at(None, None);
        assert!(t.verify(&token(SECRET), &when).is_ok());
        when.unix_secs = NOW + 9;
        assert!(t.verify(&token(SECRET), &when).is_ok());
        when.unix_secs = NOW + 10;
        assert_eq!(t.verify(&token(SECRET), &when), Err(AccessError::Expired));
        assert_eq!(AccessError::Expired.reason(), "expired");
    }

    #[test]
    fn client_networks_v4_and_v6() {
        let t = table(|t| {
            t.allowed_ips = vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ];
        });
        let ok = |ip: &str| t.verify(&token(SECRET), &at(Some(ip), None)).is_ok();
        assert!(ok("10.1.2.3"));
        assert!(ok("::ffff:10.9.9.9"));
        assert!(ok("2001:db8:1::5"));
        assert!(!ok("127.0.0.1"));
        assert!(!ok("11.0.0.1"));
        assert!(!ok("2001:db9::1"));
        assert!(!ok("::1"));
        assert_eq!(
            t.verify(&token(SECRET), &at(None, None)),
            Err(AccessError::IpNotAllowed)
        );
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.1".parse().unwrap()));
        let any6: Cidr = "::/0".parse().unwrap();
        assert!(any6.contains("::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_match_exactly() {
        let t = table(|t| t.allowed_origins = vec!["https://app.example.com".into()]);
        let ok = |o: Option<&str>| t.verify(&token(SECRET), &at(None, o)).is_ok();
        assert!(ok(Some("https://app.example.com")));
        assert!(ok(Some("HTTPS://APP.EXAMPLE.COM")));
        assert!(!ok(Some("https://app.example.com.evil.test")));
        assert!(!ok(Some("http://app.example.com")));
        assert!(!ok(Some("https://app.example.com:8443")));
        assert!(!ok(Some("https://example.com")));
        assert!(!ok(None));
        assert_eq!(
            t.verify(&token(SECRET), &at(None, Some("https://evil.test"))),
            Err(AccessError::OriginNotAllowed)
        );
    }

    #[test]
    fn table_ids_are_valid_and_unique() {
        let t = |id: &str| AccessToken::new(id, hash_secret(SECRET));
        assert_eq!(
            AccessTable::new([t("a"), t("a")]).unwrap_err(),
            AccessTableError::DuplicateId("a".into())
        );
        for bad in ["", "a_b", "a b", &"x".repeat(65)] {
            assert!(matches!(
                AccessTable::new([t(bad)]),
                Err(AccessTableError::BadId(_))
            ));
        }
    }

    #[test]
    fn reasons_are_distinct() {
        let all = [
            AccessError::Malformed,
            AccessError::UnknownId,
            AccessError::BadSecret,
            AccessError::Revoked,
            AccessError::Expired,
            AccessError::IpNotAllowed,
            AccessError::OriginNotAllowed,
        ];
        let reasons: std::collections::BTreeSet<_> = all.iter().map(|e| e.reason()).collect();
        assert_eq!(reasons.len(), all.len());
    }
}
