//! JWT verification and minting with caller-supplied time.
//!
//! `jsonwebtoken` is used only for the HMAC signature check
//! (`jsonwebtoken::crypto::verify`) and for signing. Its `decode`/`Validation`
//! path is not used at all: that path reads the system clock and runs its own
//! claim parser. Header, payload, `exp`, `nbf` and `aud` are handled here
//! against the `unix_now` the caller passes in, which keeps the server core
//! deterministic and testable.
//!
//! The accepted algorithm comes from the key's configuration, never from the
//! token header, so `alg: none` and algorithm-confusion tokens are refused
//! before any cryptography runs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::pattern::Pattern;

/// Why a token was refused.
///
/// Exists so the connection layer can answer with a stable, specific reason
/// and count refusals per reason (see [`TokenError::reason`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS (three base64url parts, JSON header and
    /// payload), or too long, or uses an unsupported header feature (`crit`).
    #[error("malformed token")]
    Malformed,
    /// The header has no `kid` and the verifier holds more than one key.
    #[error("token has no key id")]
    MissingKid,
    /// The header's `kid` names no configured key.
    #[error("unknown key id")]
    UnknownKid,
    /// The header says `alg: none` (unsigned token).
    #[error("unsigned tokens (alg none) are not accepted")]
    AlgNone,
    /// The header's `alg` differs from the algorithm configured for the key.
    #[error("token algorithm does not match the key")]
    WrongAlgorithm,
    /// The signature does not verify with the selected key.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token has no `exp` and the verifier requires one.
    #[error("token has no expiry")]
    MissingExp,
    /// The key requires an audience the token does not name.
    #[error("token audience mismatch")]
    WrongAudience,
    /// A claim is missing, of the wrong type or has an invalid value.
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
}

impl TokenError {
    /// A stable snake_case label for metrics and logs.
    ///
    /// Exists so dashboards don't depend on the human-readable messages.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::AlgNone => "alg_none",
            Self::WrongAlgorithm => "wrong_algorithm",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingExp => "missing_exp",
            Self::WrongAudience => "wrong_audience",
            Self::InvalidClaims(_) => "invalid_claims",
        }
    }

    /// True for [`TokenError::Expired`].
    ///
    /// Exists so clients can be told to refresh their token rather than treat
    /// the refusal as final.
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired)
    }
}

/// Why a set of signing keys could not be built.
///
/// Exists to catch configuration mistakes at startup instead of at the first
/// token.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// No keys were given.
    #[error("no signing keys configured")]
    NoKeys,
    /// A key has an empty `kid`.
    #[error("signing key with empty kid")]
    EmptyKid,
    /// Two keys share a `kid`.
    #[error("duplicate signing key id {0:?}")]
    DuplicateKid(String),
    /// A key has an empty secret.
    #[error("signing key {0:?} has an empty secret")]
    EmptySecret(String),
}

/// The HMAC algorithms a key may be configured with.
///
/// Exists so the algorithm is fixed per key by configuration; serialized as
/// `"HS256"` etc., parsed case-insensitively (`"hs256"` is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl Algorithm {
    /// The JOSE name (`"HS256"` …), as it appears in a token header.
    ///
    /// Exists for header comparison and serialization.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
            Self::HS384 => jsonwebtoken::Algorithm::HS384,
            Self::HS512 => jsonwebtoken::Algorithm::HS512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::HS256, Self::HS384, Self::HS512]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unsupported algorithm {s:?} (expected HS256, HS384 or HS512)"))
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One shared-secret key that may sign and verify tokens.
///
/// Exists so several keys can be live at once (rotation) and so each key
/// carries its own algorithm, expected audience and forced tenant. `Debug`
/// does not print the secret.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id, matched against the token header's `kid`.
    pub kid: String,
    /// The HMAC secret.
    pub secret: Vec<u8>,
    /// The only algorithm accepted for tokens under this key.
    pub algorithm: Algorithm,
    /// If set, tokens must list this audience in `aud`.
    pub audience: Option<String>,
    /// If set, every token signed by this key belongs to this tenant.
    pub tenant: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("audience", &self.audience)
            .field("tenant", &self.tenant)
            .finish()
    }
}

struct KeyEntry {
    key: SigningKey,
    decoding: DecodingKey,
}

/// The set of keys a [`Verifier`] accepts, indexed by `kid`.
///
/// Exists to hold several live keys during rotation and to precompute the
/// per-key verification state once.
pub struct KeySet {
    entries: Vec<KeyEntry>,
    by_kid: BTreeMap<String, usize>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.key))
            .finish()
    }
}

impl KeySet {
    /// Builds a key set; rejects an empty list, empty kids or secrets, and
    /// duplicate kids.
    ///
    /// Exists so misconfiguration fails at startup.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeySetError> {
        if keys.is_empty() {
            return Err(KeySetError::NoKeys);
        }
        let mut entries = Vec::with_capacity(keys.len());
        let mut by_kid = BTreeMap::new();
        for key in keys {
            if key.kid.is_empty() {
                return Err(KeySetError::EmptyKid);
            }
            if key.secret.is_empty() {
                return Err(KeySetError::EmptySecret(key.kid));
            }
            if by_kid.insert(key.kid.clone(), entries.len()).is_some() {
                return Err(KeySetError::DuplicateKid(key.kid));
            }
            entries.push(KeyEntry {
                decoding: DecodingKey::from_secret(&key.secret),
                key,
            });
        }
        Ok(Self { entries, by_kid })
    }

    /// The key with this `kid`, if configured.
    ///
    /// Exists for the mint endpoint and the `gentoken` tool to pick a key.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.by_kid.get(kid).map(|&i| &self.entries[i].key)
    }

    /// All configured keys, in configuration order.
    ///
    /// Exists for diagnostics and for choosing a default minting key.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        self.entries.iter().map(|e| &e.key)
    }

    /// Number of configured keys (never zero).
    ///
    /// Exists for diagnostics.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false (a `KeySet` has at least one key); provided for API
    /// completeness next to [`KeySet::len`].
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn select(&self, kid: Option<&str>) -> Result<&KeyEntry, TokenError> {
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .map(|&i| &self.entries[i])
                .ok_or(TokenError::UnknownKid),
            None if self.entries.len() == 1 => Ok(&self.entries[0]),
            None => Err(TokenError::MissingKid),
        }
    }
}

/// The capabilities a token grants, as a small bitset.
///
/// Exists so permission checks on the hot path are a single AND.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// May publish to granted channels.
    pub const PUBLISH: Self = Self(1);
    /// May subscribe to granted channels.
    pub const SUBSCRIBE: Self = Self(2);
    /// May see and announce presence on granted channels.
    pub const PRESENCE: Self = Self(4);
    /// May send direct (signalling) messages to peers.
    pub const SEND: Self = Self(8);
    /// No permissions.
    pub const NONE: Self = Self(0);
    /// Every permission.
    pub const ALL: Self = Self(15);

    const NAMED: [(Self, &'static str); 4] = [
        (Self::PUBLISH, "publish"),
        (Self::SUBSCRIBE, "subscribe"),
        (Self::PRESENCE, "presence"),
        (Self::SEND, "send"),
    ];

    /// True if every permission in `other` is present in `self`.
    ///
    /// Exists for authorization checks.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no permission is set.
    ///
    /// Exists to spot tokens that grant nothing.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of two permission sets.
    ///
    /// Exists to build sets without exposing the bits.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The permission with this lowercase name (`"publish"` …), if any.
    ///
    /// Exists for parsing claims and configuration.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(p, _)| *p)
    }

    /// The names of the permissions in this set, in a fixed order.
    ///
    /// Exists for logs and for echoing grants back to clients.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(p, _)| self.contains(*p))
            .map(|(_, n)| n)
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permissions(")?;
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            f.write_str(name)?;
        }
        f.write_str(")")
    }
}

/// The validated grants carried by a token.
///
/// Exists as the single, already-checked description of what a connection
/// may do; nothing downstream needs to look at the raw JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// Subject (peer identity): non-empty, at most 128 chars, no `|`, no
    /// control characters.
    pub sub: String,
    /// Granted channel patterns (claim `channels` or `authorizedChannels`);
    /// empty if absent.
    pub channels: Vec<Pattern>,
    /// Patterns granted for publishing only (claim `publishChannels`), on top of
    /// `channels`.
    pub publish_channels: Vec<Pattern>,
    /// Patterns granted for subscribing only (claim `subscribeChannels`), on top of
    /// `channels`.
    pub subscribe_channels: Vec<Pattern>,
    /// Further tenants the peer may name per request (claim `tenants`), besides its
    /// own; with a key bound to a tenant, only that one.
    pub tenants: Vec<String>,
    /// Granted capabilities (claim `permissions` or `scope`); empty if absent.
    pub permissions: Permissions,
    /// Peer metadata (claim `metadata` or `peerMetadata`) without `iceServers`.
    pub metadata: Option<Map<String, Value>>,
    /// The `iceServers` entry taken out of the metadata, if there was one.
    pub ice_servers: Option<Value>,
    /// Expiry (seconds since the Unix epoch).
    pub exp: Option<u64>,
    /// Issued-at (seconds since the Unix epoch); informational only.
    pub iat: Option<u64>,
    /// Not-before (seconds since the Unix epoch).
    pub nbf: Option<u64>,
    /// Tenant: the key's tenant if it has one, else the `tenant` claim.
    pub tenant: Option<String>,
    /// The `kid` of the key that verified the token.
    pub kid: Option<String>,
}

impl Claims {
    /// True if some granted pattern matches this exact channel.
    ///
    /// Exists for publish / exact-subscribe authorization.
    pub fn allows_channel(&self, channel: &str) -> bool {
        self.channels.iter().any(|p| p.matches(channel))
    }

    /// True if a single granted pattern covers every channel `pattern`
    /// matches (see [`Pattern::covers`]).
    ///
    /// Exists for wildcard-subscribe authorization. Conservative: a pattern
    /// covered only by the union of several grants is refused.
    pub fn allows_pattern(&self, pattern: &Pattern) -> bool {
        self.channels.iter().any(|p| p.covers(pattern))
    }
}

/// Checks tokens against a [`KeySet`] at a caller-supplied time.
///
/// Exists as the one place where token policy (leeway, mandatory `exp`,
/// size limits) is applied.
#[derive(Debug)]
pub struct Verifier {
    keys: KeySet,
    leeway_secs: u64,
    require_exp: bool,
    max_channel_len: usize,
    max_token_len: usize,
}

/// Default clock-skew allowance for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;
/// Default maximum length in bytes of a granted channel pattern.
pub const DEFAULT_MAX_CHANNEL_LEN: usize = 255;
/// Default maximum length in bytes of a whole token.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8192;
/// Maximum length of `sub` and `tenant`, in characters.
pub const MAX_ID_CHARS: usize = 128;

impl Verifier {
    /// A verifier with the defaults: 5 s leeway, `exp` required, patterns up
    /// to 255 bytes, tokens up to 8 KiB.
    ///
    /// Exists as the normal constructor; adjust with the `with_*` methods.
    pub fn new(keys: KeySet) -> Self {
        Self {
            keys,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            require_exp: true,
            max_channel_len: DEFAULT_MAX_CHANNEL_LEN,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// Sets the clock-skew allowance applied to `exp` and `nbf`.
    ///
    /// Exists because client and server clocks drift.
    #[must_use]
    pub fn with_leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Sets whether tokens without `exp` are refused.
    ///
    /// Exists for development setups with long-lived tokens.
    #[must_use]
    pub fn with_require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    /// Sets the maximum length of each granted channel pattern.
    ///
    /// Exists to keep token grants consistent with the server's channel
    /// length limit.
    #[must_use]
    pub fn with_max_channel_len(mut self, len: usize) -> Self {
        self.max_channel_len = len;
        self
    }

    /// Sets the maximum accepted token length in bytes.
    ///
    /// Exists to bound the work done on untrusted input.
    #[must_use]
    pub fn with_max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// The configured keys.
    ///
    /// Exists so the mint endpoint can reuse the verifier's configuration.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Verifies `token` at time `unix_now` (seconds since the Unix epoch)
    /// and returns its validated claims.
    ///
    /// Exists as the only way to turn an untrusted token into [`Claims`].
    /// Order of checks: shape and header, `alg: none`, key by `kid`,
    /// algorithm against the key's, signature, `exp`/`nbf`, `aud`, then the
    /// remaining claims.
    pub fn verify(&self, token: &str, unix_now: u64) -> Result<Claims, TokenError> {
        if token.len() > self.max_token_len {
            return Err(TokenError::Malformed);
        }
        // Compact JWS: header.payload.signature, exactly three parts.
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = RawHeader::parse(h64)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        let entry = self.keys.select(header.kid.as_deref())?;
        if header.alg != entry.key.algorithm.as_str() {
            return Err(TokenError::WrongAlgorithm);
        }
        // The signed message is the first two parts with their dot.
        let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        match jsonwebtoken::crypto::verify(
            s64,
            message,
            &entry.decoding,
            entry.key.algorithm.to_jwt(),
        ) {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::BadSignature),
            // Signature part is not base64url.
            Err(_) => return Err(TokenError::Malformed),
        }
        let payload = b64url_decode(p64).ok_or(TokenError::Malformed)?;
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&payload) else {
            return Err(TokenError::Malformed);
        };
        self.check_claims(map, &entry.key, unix_now)
    }

    /// Checks that an already verified `token` lists `audience` in `aud`, whatever
    /// its signing key requires.
    ///
    /// Exists for dialects whose clients hold tokens minted for a fixed audience
    /// (The Broadcaster's `aud: "broadcaster"`). Call it after
    /// [`Verifier::verify`], which checks the signature this relies on.
    pub fn require_audience(&self, token: &str, audience: &str) -> Result<(), TokenError> {
        let payload = token
            .split('.')
            .nth(1)
            .and_then(b64url_decode)
            .ok_or(TokenError::Malformed)?;
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&payload) else {
            return Err(TokenError::Malformed);
        };
        check_audience(map.get("aud"), Some(audience))
    }

    fn check_claims(
        &self,
        mut map: Map<String, Value>,
        key: &SigningKey,
        unix_now: u64,
    ) -> Result<Claims, TokenError> {
        let exp = numeric_date(&map, "exp")?;
        let nbf = numeric_date(&map, "nbf")?;
        let iat = numeric_date(&map, "iat")?;
        match exp {
            None if self.require_exp => return Err(TokenError::MissingExp),
            Some(exp) if unix_now > exp.saturating_add(self.leeway_secs) => {
                return Err(TokenError::Expired);
            }
            _ => {}
        }
        if let Some(nbf) = nbf
            && unix_now.saturating_add(self.leeway_secs) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        check_audience(map.get("aud"), key.audience.as_deref())?;

        let sub = match map.get("sub") {
            Some(Value::String(s)) => check_id("sub", s)?.to_owned(),
            Some(_) => return Err(invalid("sub must be a string")),
            None => return Err(invalid("sub is required")),
        };

        let channels = self.patterns(take_aliased(&mut map, "channels", "authorizedChannels")?)?;
        let publish_channels = self.patterns(map.remove("publishChannels"))?;
        let subscribe_channels = self.patterns(map.remove("subscribeChannels"))?;

        let permissions = match take_aliased(&mut map, "permissions", "scope")? {
            None => Permissions::NONE,
            Some(Value::String(s)) => parse_permissions(s.split_whitespace()),
            Some(Value::Array(items)) => {
                let names = items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .ok_or_else(|| invalid("permissions must be strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                parse_permissions(names.into_iter())
            }
            Some(_) => return Err(invalid("permissions must be an array or a string")),
        };

        let (metadata, ice_servers) = match take_aliased(&mut map, "metadata", "peerMetadata")? {
            None => (None, None),
            Some(Value::Object(mut m)) => {
                let ice = m.remove("iceServers");
                (Some(m), ice)
            }
            Some(_) => return Err(invalid("metadata must be an object")),
        };

        let claimed_tenant = match map.get("tenant") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(check_id("tenant", s)?.to_owned()),
            Some(_) => return Err(invalid("tenant must be a string")),
        };
        let tenant = match (&key.tenant, claimed_tenant) {
            (Some(forced), Some(claimed)) if *forced != claimed => {
                return Err(invalid("tenant does not match the signing key's tenant"));
            }
            (Some(forced), _) => Some(forced.clone()),
            (None, claimed) => claimed,
        };

        let tenants = match map.get("tenants") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => check_id("tenants", s).map(str::to_owned),
                    _ => Err(invalid("tenants must be strings")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(invalid("tenants must be an array")),
        };
        if let Some(forced) = &key.tenant
            && tenants.iter().any(|t| t != forced)
        {
            return Err(invalid("tenants go beyond the signing key's tenant"));
        }

        Ok(Claims {
            sub,
            channels,
            publish_channels,
            subscribe_channels,
            tenants,
            permissions,
            metadata,
            ice_servers,
            exp,
            iat,
            nbf,
            tenant,
            kid: Some(key.kid.clone()),
        })
    }
}

impl Verifier {
    /// A list of channel patterns from a claim (absent: none).
    fn patterns(&self, claim: Option<Value>) -> Result<Vec<Pattern>, TokenError> {
        match claim {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Pattern::parse(s, self.max_channel_len)
                        .map_err(|e| invalid(&format!("channel {s:?}: {e}"))),
                    _ => Err(invalid("channels must be strings")),
                })
                .collect(),
            Some(_) => Err(invalid("channels must be an array")),
        }
    }
}

/// Signs `claims` (a JSON object) with `key`'s algorithm and secret, putting
/// the key's `kid` in the header.
///
/// Exists for tests, the `gentoken` CLI and the REST mint endpoint. It does
/// not validate the claims: minting a token that [`Verifier::verify`] would
/// refuse is possible on purpose.
pub fn mint(key: &SigningKey, claims: &Value) -> Result<String, TokenError> {
    if !claims.is_object() {
        return Err(invalid("claims must be a JSON object"));
    }
    let mut header = Header::new(key.algorithm.to_jwt());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&key.secret))
        .map_err(|e| TokenError::InvalidClaims(format!("signing failed: {e}")))
}

fn invalid(msg: &str) -> TokenError {
    TokenError::InvalidClaims(msg.to_owned())
}

/// The parts of the JOSE header we decide on before any cryptography.
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl RawHeader {
    fn parse(h64: &str) -> Result<Self, TokenError> {
        let bytes = b64url_decode(h64).ok_or(TokenError::Malformed)?;
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(TokenError::Malformed);
        };
        // We implement no JWS extensions, so a critical one can't be honoured.
        if map.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let alg = match map.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(TokenError::Malformed),
        };
        let kid = match map.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(TokenError::Malformed),
        };
        Ok(Self { alg, kid })
    }
}

/// Decodes unpadded base64url (RFC 4648 §5), rejecting padding, foreign
/// characters, impossible lengths and non-zero trailing bits.
fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | val(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => {
                if acc & 0b11 != 0 {
                    return None;
                }
                out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
            }
            2 => {
                if acc & 0b1111 != 0 {
                    return None;
                }
                out.push((acc >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Reads a NumericDate claim: a non-negative JSON number of seconds.
/// Fractions are truncated; `null` counts as absent.
fn numeric_date(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return Ok(Some(v));
            }
            match n.as_f64() {
                // `as` saturates for values beyond u64::MAX.
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
                _ => Err(invalid(&format!("{name} must be a non-negative number"))),
            }
        }
        Some(_) => Err(invalid(&format!("{name} must be a number"))),
    }
}

fn check_audience(aud: Option<&Value>, required: Option<&str>) -> Result<(), TokenError> {
    let listed: Vec<&str> = match aud {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid("aud must contain strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("aud must be a string or an array")),
    };
    match required {
        Some(req) if !listed.contains(&req) => Err(TokenError::WrongAudience),
        _ => Ok(()),
    }
}

fn check_id<'a>(name: &str, s: &'a str) -> Result<&'a str, TokenError> {
    if s.is_empty() {
        return Err(invalid(&format!("{name} is empty")));
    }
    if s.chars().count() > MAX_ID_CHARS {
        return Err(invalid(&format!(
            "{name} is longer than {MAX_ID_CHARS} chars"
        )));
    }
    if s.chars().any(|c| c == '|' || c.is_control()) {
        return Err(invalid(&format!(
            "{name} contains '|' or a control character"
        )));
    }
    Ok(s)
}

/// Removes and returns the claim under `name` or its `alias`; both present
/// is ambiguous and refused. `null` counts as absent.
fn take_aliased(
    map: &mut Map<String, Value>,
    name: &str,
    alias: &str,
) -> Result<Option<Value>, TokenError> {
    let a = map.remove(name).filter(|v| !v.is_null());
    let b = map.remove(alias).filter(|v| !v.is_null());
    match (a, b) {
        (Some(_), Some(_)) => Err(invalid(&format!("both {name} and {alias} given"))),
        (a, b) => Ok(a.or(b)),
    }
}

fn parse_permissions<'a>(names: impl Iterator<Item = &'a str>) -> Permissions {
    names
        .filter_map(Permissions::from_name)
        .fold(Permissions::NONE, Permissions::union)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn key(kid: &str, secret: &str, algorithm: Algorithm) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            secret: secret.as_bytes().to_vec(),
            algorithm,
            audience: None,
            tenant: None,
        }
    }

    fn k1() -> SigningKey {
        key("k1", "first-secret-0123456789abcdef", Algorithm::HS256)
    }

    fn k2() -> SigningKey {
        key("k2", "second-secret-0123456789abcdef", Algorithm::HS512)
    }

    fn verifier(keys: Vec<SigningKey>) -> Verifier {
        Verifier::new(KeySet::new(keys).unwrap())
    }

    fn base_claims() -> Value {
        json!({
            "sub": "alice",
            "exp": NOW + 600,
            "iat": NOW - 10,
            "channels": ["rooms/*", "app/**"],
            "permissions": ["publish", "subscribe"],
        })
    }

    fn with(mut v: Value, k: &str, val: Value) -> Value {
        v[k] = val;
        v
    }

    fn without(mut v: Value, k: &str) -> Value {
        v.as_object_mut().unwrap().remove(k);
        v
    }

    fn b64url_encode(data: &[u8]) -> String {
        const ALPHA: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let mut acc = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                acc |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..=chunk.len() {
                out.push(ALPHA[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    /// A token with an arbitrary header/payload and a junk signature.
    fn raw_token(header: &Value, payload: &Value) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header.to_string().as_bytes()),
            b64url_encode(payload.to_string().as_bytes()),
            b64url_encode(b"not-a-real-signature")
        )
    }

    #[test]
    fn base64url_round_trip_and_strictness() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(250))
                .collect();
            assert_eq!(b64url_decode(&b64url_encode(&data)).unwrap(), data);
        }
        assert_eq!(
            b64url_decode("eyJhbGciOiJub25lIn0").unwrap(),
            br#"{"alg":"none"}"#
        );
        assert!(b64url_decode("QQ==").is_none());
        assert!(b64url_decode("QR").is_none()); // non-zero trailing bits
        assert!(b64url_decode("Q").is_none());
        assert!(b64url_decode("a+b/").is_none());
    }

    #[test]
    fn mint_then_verify_round_trip() {
        let token = mint(&k1(), &base_claims()).unwrap();
        let c = verifier(vec![k1()]).verify(&token, NOW).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.exp, Some(NOW + 600));
        assert_eq!(c.iat, Some(NOW - 10));
        assert_eq!(c.nbf, None);
        assert_eq!(c.kid.as_deref(), Some("k1"));
        assert_eq!(c.tenant, None);
        assert_eq!(c.metadata, None);
        assert_eq!(c.ice_servers, None);
        let pats: Vec<&str> = c.channels.iter().map(Pattern::as_str).collect();
        assert_eq!(pats, ["rooms/*", "app/**"]);
        assert_eq!(c.permissions, Permissions::PUBLISH | Permissions::SUBSCRIBE);
        assert!(c.allows_channel("rooms/lobby"));
        assert!(!c.allows_channel("other"));
        assert!(c.allows_pattern(&Pattern::parse("app/x/*", 255).unwrap()));
        assert!(!c.allows_pattern(&Pattern::parse("rooms/**", 255).unwrap()));
    }

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let k = key("k", "s3cret", alg);
            let token = mint(&k, &base_claims()).unwrap();
            assert!(token.starts_with("eyJ"));
            assert_eq!(verifier(vec![k]).verify(&token, NOW).unwrap().sub, "alice");
        }
    }

    #[test]
    fn no_kid_uses_the_only_key() {
        let k = k1();
        let token = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &base_claims(),
            &EncodingKey::from_secret(&k.secret),
        )
        .unwrap();
        assert_eq!(
            verifier(vec![k1()])
                .verify(&token, NOW)
                .unwrap()
                .kid
                .as_deref(),
            Some("k1")
        );
        assert_eq!(
            verifier(vec![k1(), k2()]).verify(&token, NOW),
            Err(TokenError::MissingKid)
        );
    }

    #[test]
    fn unknown_kid() {
        let token = mint(&key("k9", "whatever", Algorithm::HS256), &base_claims()).unwrap();
        assert_eq!(
            verifier(vec![k1()]).verify(&token, NOW),
            Err(TokenError::UnknownKid)
        );
        assert_eq!(
            verifier(vec![k1(), k2()]).verify(&token, NOW),
            Err(TokenError::UnknownKid)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        // Header {"alg":"none"} is eyJhbGciOiJub25lIn0; add a kid too.
        let v = verifier(vec![k1()]);
        let hdr = b64url_encode(br#"{"alg":"none","kid":"k1"}"#);
        let body = b64url_encode(base_claims().to_string().as_bytes());
        assert_eq!(
            v.verify(&format!("{hdr}.{body}."), NOW),
            Err(TokenError::AlgNone)
        );
        assert_eq!(
            v.verify(&format!("eyJhbGciOiJub25lIn0.{body}."), NOW),
            Err(TokenError::AlgNone)
        );
        let tok = raw_token(&json!({"alg": "NoNe", "kid": "k1"}), &base_claims());
        assert_eq!(v.verify(&tok, NOW), Err(TokenError::AlgNone));
    }

    #[test]
    fn hs512_token_against_hs256_key() {
        // Same kid and secret as k1, but signed with HS512.
        let evil = key("k1", "first-secret-0123456789abcdef", Algorithm::HS512);
        let token = mint(&evil, &base_claims()).unwrap();
        assert_eq!(
            verifier(vec![k1()]).verify(&token, NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn rs256_header_is_refused() {
        let tok = raw_token(&json!({"alg": "RS256", "kid": "k1"}), &base_claims());
        assert_eq!(
            verifier(vec![k1()]).verify(&tok, NOW),
            Err(TokenError::WrongAlgorithm)
        );
        let tok = raw_token(&json!({"alg": "hs256", "kid": "k1"}), &base_claims());
        assert_eq!(
            verifier(vec![k1()]).verify(&tok, NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn tampered_payload() {
        let token = mint(&k1(), &base_claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let evil = with(base_claims(), "sub", json!("mallory"));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url_encode(evil.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            verifier(vec![k1()]).verify(&forged, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn signature_part_problems() {
        let v = verifier(vec![k1()]);
        let token = mint(&k1(), &base_claims()).unwrap();
        let (msg, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            v.verify(&format!("{msg}."), NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            v.verify(&format!("{msg}.*bad*"), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn wrong_secret() {
        let other = key("k1", "some-other-secret", Algorithm::HS256);
        let token = mint(&other, &base_claims()).unwrap();
        assert_eq!(
            verifier(vec![k1()]).verify(&token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens() {
        let v = verifier(vec![k1()]);
        let good = mint(&k1(), &base_claims()).unwrap();
        for bad in [
            String::new(),
            "abc".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{good}.x"),
            format!("!!{good}"),
            raw_token(&json!(["alg", "HS256"]), &base_claims()),
            raw_token(&json!({"kid": "k1"}), &base_claims()),
            raw_token(&json!({"alg": "HS256", "kid": 7}), &base_claims()),
            raw_token(
                &json!({"alg": "HS256", "kid": "k1", "crit": ["b64"]}),
                &base_claims(),
            ),
            "x".repeat(DEFAULT_MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(v.verify(&bad, NOW), Err(TokenError::Malformed), "{bad:?}");
        }
        // A validly signed payload that is not a JSON object.
        let k = k1();
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("k1".into());
        let arr =
            jsonwebtoken::encode(&h, &json!([1, 2]), &EncodingKey::from_secret(&k.secret)).unwrap();
        assert_eq!(v.verify(&arr, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn expiry_with_leeway() {
        let v = verifier(vec![k1()]);
        let exp = NOW - 3;
        let tok = mint(&k1(), &with(base_claims(), "exp", json!(exp))).unwrap();
        // Within the 5 s leeway: accepted.
        assert!(v.verify(&tok, NOW).is_ok());
        assert!(v.verify(&tok, exp + 5).is_ok());
        // Beyond it: expired.
        let err = v.verify(&tok, exp + 6).unwrap_err();
        assert_eq!(err, TokenError::Expired);
        assert!(err.is_expired());
        // With zero leeway, one second past exp is expired; exp itself is ok.
        let strict = verifier(vec![k1()]).with_leeway_secs(0);
        assert!(strict.verify(&tok, exp).is_ok());
        assert_eq!(strict.verify(&tok, exp + 1), Err(TokenError::Expired));
        // Fractional NumericDate is truncated.
        let tok = mint(&k1(), &with(base_claims(), "exp", json!(NOW as f64 + 0.5))).unwrap();
        assert_eq!(strict.verify(&tok, NOW).unwrap().exp, Some(NOW));
        // Huge exp does not overflow.
        let tok = mint(&k1(), &with(base_claims(), "exp", json!(u64::MAX))).unwrap();
        assert!(v.verify(&tok, u64::MAX).is_ok());
    }

    #[test]
    fn not_before_with_leeway() {
        let v = verifier(vec![k1()]);
        let tok = mint(&k1(), &with(base_claims(), "nbf", json!(NOW + 5))).unwrap();
        assert_eq!(v.verify(&tok, NOW).unwrap().nbf, Some(NOW + 5));
        let tok = mint(&k1(), &with(base_claims(), "nbf", json!(NOW + 6))).unwrap();
        assert_eq!(v.verify(&tok, NOW), Err(TokenError::NotYetValid));
        assert!(v.verify(&tok, NOW + 1).is_ok());
    }

    #[test]
    fn missing_exp() {
        let tok = mint(&k1(), &without(base_claims(), "exp")).unwrap();
        assert_eq!(
            verifier(vec![k1()]).verify(&tok, NOW),
            Err(TokenError::MissingExp)
        );
        let lax = verifier(vec![k1()]).with_require_exp(false);
        assert_eq!(lax.verify(&tok, NOW).unwrap().exp, None);
    }

    #[test]
    fn bad_time_claims() {
        let v = verifier(vec![k1()]);
        for (name, val) in [
            ("exp", json!("soon")),
            ("exp", json!(-1)),
            ("nbf", json!([1])),
            ("iat", json!(true)),
        ] {
            let tok = mint(&k1(), &with(base_claims(), name, val)).unwrap();
            assert!(
                matches!(v.verify(&tok, NOW), Err(TokenError::InvalidClaims(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn audience() {
        let mut k = k1();
        k.audience = Some("switchyard".into());
        let v = verifier(vec![k.clone()]);
        let ok = |aud: Value| mint(&k, &with(base_claims(), "aud", aud)).unwrap();
        assert!(v.verify(&ok(json!("switchyard")), NOW).is_ok());
        assert!(v.verify(&ok(json!(["other", "switchyard"])), NOW).is_ok());
        assert_eq!(
            v.verify(&ok(json!("other")), NOW),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            v.verify(&ok(json!([])), NOW),
            Err(TokenError::WrongAudience)
        );
        let none = mint(&k, &base_claims()).unwrap();
        assert_eq!(v.verify(&none, NOW), Err(TokenError::WrongAudience));
        // A key without audience accepts any or none.
        let open = verifier(vec![k1()]);
        assert!(
            open.verify(
                &mint(&k1(), &with(base_claims(), "aud", json!("x"))).unwrap(),
                NOW
            )
            .is_ok()
        );
        assert!(
            open.verify(
                &mint(&k1(), &with(base_claims(), "aud", json!(["x", "y"]))).unwrap(),
                NOW
            )
            .is_ok()
        );
        assert!(
            open.verify(&mint(&k1(), &base_claims()).unwrap(), NOW)
                .is_ok()
        );
    }

    #[test]
    fn two_live_keys_both_verify() {
        let v = verifier(vec![k1(), k2()]);
        let c1 = v
            .verify(&mint(&k1(), &base_claims()).unwrap(), NOW)
            .unwrap();
        let c2 = v
            .verify(&mint(&k2(), &base_claims()).unwrap(), NOW)
            .unwrap();
        assert_eq!(c1.kid.as_deref(), Some("k1"));
        assert_eq!(c2.kid.as_deref(), Some("k2"));
        // A k2-signed token relabelled as k1 fails (different alg and secret).
        let k2_as_k1 = key("k1", "second-secret-0123456789abcdef", Algorithm::HS256);
        assert_eq!(
            v.verify(&mint(&k2_as_k1, &base_claims()).unwrap(), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn claim_aliases() {
        let v = verifier(vec![k1()]);
        let claims = json!({
            "sub": "bob",
            "exp": NOW + 60,
            "authorizedChannels": ["a/*"],
            "scope": ["presence", "send", "bogus"],
            "peerMetadata": {"name": "Bob", "iceServers": [{"urls": "stun:x"}]},
        });
        let c = v.verify(&mint(&k1(), &claims).unwrap(), NOW).unwrap();
        assert_eq!(c.channels, vec![Pattern::parse("a/*", 255).unwrap()]);
        assert_eq!(c.permissions, Permissions::PRESENCE | Permissions::SEND);
        assert_eq!(
            c.metadata.unwrap(),
            *json!({"name": "Bob"}).as_object().unwrap()
        );
        assert_eq!(c.ice_servers, Some(json!([{"urls": "stun:x"}])));

        let claims = with(base_claims(), "scope", json!("publish  subscribe unknown"));
        let c = v
            .verify(&mint(&k1(), &without(claims, "permissions")).unwrap(), NOW)
            .unwrap();
        assert_eq!(c.permissions, Permissions::PUBLISH | Permissions::SUBSCRIBE);

        // Both a claim and its alias: ambiguous.
        let both = with(base_claims(), "authorizedChannels", json!(["x"]));
        assert!(matches!(
            v.verify(&mint(&k1(), &both).unwrap(), NOW),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    #[test]
    fn ice_servers_moved_out_of_metadata() {
        let v = verifier(vec![k1()]);
        let claims = with(
            base_claims(),
            "metadata",
            json!({"color": "red", "iceServers": [{"urls": ["turn:t"], "username": "u"}]}),
        );
        let c = v.verify(&mint(&k1(), &claims).unwrap(), NOW).unwrap();
        let md = c.metadata.unwrap();
        assert!(!md.contains_key("iceServers"));
        assert_eq!(md["color"], json!("red"));
        assert_eq!(c.ice_servers.unwrap()[0]["username"], json!("u"));
    }

    #[test]
    fn absent_grants_mean_nothing_granted() {
        let v = verifier(vec![k1()]);
        let claims = json!({"sub": "x", "exp": NOW + 1});
        let c = v.verify(&mint(&k1(), &claims).unwrap(), NOW).unwrap();
        assert!(c.channels.is_empty());
        assert!(c.permissions.is_empty());
        assert!(!c.allows_channel("a"));
    }

    #[test]
    fn bad_sub() {
        let v = verifier(vec![k1()]);
        for sub in [
            json!(""),
            json!("a|b"),
            json!("a\nb"),
            json!("x".repeat(129)),
            json!(5),
            Value::Null,
        ] {
            let tok = mint(&k1(), &with(base_claims(), "sub", sub.clone())).unwrap();
            assert!(
                matches!(v.verify(&tok, NOW), Err(TokenError::InvalidClaims(_))),
                "{sub}"
            );
        }
        let tok = mint(&k1(), &without(base_claims(), "sub")).unwrap();
        assert!(matches!(
            v.verify(&tok, NOW),
            Err(TokenError::InvalidClaims(_))
        ));
        // 128 chars (multi-byte) is fine.
        let tok = mint(&k1(), &with(base_claims(), "sub", json!("é".repeat(128)))).unwrap();
        assert!(v.verify(&tok, NOW).is_ok());
    }

    #[test]
    fn bad_channel_grants() {
        let v = verifier(vec![k1()]);
        for ch in [
            json!(["a/**/b"]),
            json!(["a b"]),
            json!("a/*"),
            json!([1]),
            json!([""]),
        ] {
            let tok = mint(&k1(), &with(base_claims(), "channels", ch.clone())).unwrap();
            assert!(
                matches!(v.verify(&tok, NOW), Err(TokenError::InvalidClaims(_))),
                "{ch}"
            );
        }
        let short = verifier(vec![k1()]).with_max_channel_len(3);
        let tok = mint(&k1(), &with(base_claims(), "channels", json!(["abcd"]))).unwrap();
        assert!(matches!(
            short.verify(&tok, NOW),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    #[test]
    fn tenant_rules() {
        let v = verifier(vec![k1()]);
        let tok = mint(&k1(), &with(base_claims(), "tenant", json!("acme"))).unwrap();
        assert_eq!(v.verify(&tok, NOW).unwrap().tenant.as_deref(), Some("acme"));

        let mut forced = k1();
        forced.tenant = Some("acme".into());
        let v = verifier(vec![forced.clone()]);
        let tok = mint(&forced, &base_claims()).unwrap();
        assert_eq!(v.verify(&tok, NOW).unwrap().tenant.as_deref(), Some("acme"));
        let tok = mint(&forced, &with(base_claims(), "tenant", json!("acme"))).unwrap();
        assert_eq!(v.verify(&tok, NOW).unwrap().tenant.as_deref(), Some("acme"));
        let tok = mint(&forced, &with(base_claims(), "tenant", json!("evil"))).unwrap();
        assert!(matches!(
            v.verify(&tok, NOW),
            Err(TokenError::InvalidClaims(_))
        ));
        let tok = mint(&forced, &with(base_claims(), "tenant", json!("a|b"))).unwrap();
        assert!(matches!(
            v.verify(&tok, NOW),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    #[test]
    fn split_channel_lists_and_tenants_claims() {
        let v = verifier(vec![k1()]);
        let claims = with(
            with(
                with(base_claims(), "publishChannels", json!(["out/*"])),
                "subscribeChannels",
                json!(["in/**"]),
            ),
            "tenants",
            json!(["acme", "globex"]),
        );
        let c = v.verify(&mint(&k1(), &claims).unwrap(), NOW).unwrap();
        assert_eq!(
            c.publish_channels,
            vec![Pattern::parse("out/*", 255).unwrap()]
        );
        assert_eq!(
            c.subscribe_channels,
            vec![Pattern::parse("in/**", 255).unwrap()]
        );
        assert_eq!(c.tenants, ["acme", "globex"]);
        for (name, bad) in [
            ("publishChannels", json!("x")),
            ("subscribeChannels", json!(["a b"])),
            ("tenants", json!("acme")),
            ("tenants", json!([""])),
            ("tenants", json!([3])),
        ] {
            let tok = mint(&k1(), &with(base_claims(), name, bad.clone())).unwrap();
            assert!(
                matches!(v.verify(&tok, NOW), Err(TokenError::InvalidClaims(_))),
                "{name}: {bad}"
            );
        }
        // A key bound to a tenant cannot grant others.
        let mut forced = k1();
        forced.tenant = Some("acme".into());
        let v = verifier(vec![forced.clone()]);
        let tok = mint(&forced, &with(base_claims(), "tenants", json!(["acme"]))).unwrap();
        assert!(v.verify(&tok, NOW).is_ok());
        let tok = mint(&forced, &with(base_claims(), "tenants", json!(["evil"]))).unwrap();
        assert!(matches!(
            v.verify(&tok, NOW),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    #[test]
    fn key_set_rejects_misconfiguration() {
        assert_eq!(KeySet::new(vec![]).unwrap_err(), KeySetError::NoKeys);
        assert_eq!(
            KeySet::new(vec![key("", "s", Algorithm::HS256)]).unwrap_err(),
            KeySetError::EmptyKid
        );
        assert_eq!(
            KeySet::new(vec![key("a", "", Algorithm::HS256)]).unwrap_err(),
            KeySetError::EmptySecret("a".into())
        );
        assert_eq!(
            KeySet::new(vec![k1(), k1()]).unwrap_err(),
            KeySetError::DuplicateKid("k1".into())
        );
        let ks = KeySet::new(vec![k1(), k2()]).unwrap();
        assert_eq!(ks.len(), 2);
        assert!(!ks.is_empty());
        assert_eq!(ks.get("k2").unwrap().algorithm, Algorithm::HS512);
        assert!(ks.get("k3").is_none());
        assert_eq!(
            ks.keys().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["k1", "k2"]
        );
        assert!(!format!("{ks:?}").contains("first-secret"));
    }

    #[test]
    fn mint_requires_an_object() {
        assert!(matches!(
            mint(&k1(), &json!([1])),
            Err(TokenError::InvalidClaims(_))
        ));
        let tok = mint(&k1(), &base_claims()).unwrap();
        let hdr = b64url_decode(tok.split('.').next().unwrap()).unwrap();
        let hdr: Value = serde_json::from_slice(&hdr).unwrap();
        assert_eq!(hdr["kid"], json!("k1"));
        assert_eq!(hdr["alg"], json!("HS256"));
    }

    #[test]
    fn algorithm_serde() {
        let a: Algorithm = serde_json::from_value(json!("HS256")).unwrap();
        assert_eq!(a, Algorithm::HS256);
        let a: Algorithm = serde_json::from_value(json!("hs512")).unwrap();
        assert_eq!(a, Algorithm::HS512);
        assert!(serde_json::from_value::<Algorithm>(json!("RS256")).is_err());
        assert!(serde_json::from_value::<Algorithm>(json!("none")).is_err());
        assert_eq!(
            serde_json::to_value(Algorithm::HS384).unwrap(),
            json!("HS384")
        );
    }

    #[test]
    fn permissions_bitset() {
        assert!(Permissions::ALL.contains(Permissions::SEND | Permissions::PUBLISH));
        assert!(!Permissions::PUBLISH.contains(Permissions::SUBSCRIBE));
        assert!(Permissions::NONE.is_empty());
        assert!(Permissions::PUBLISH.contains(Permissions::NONE));
        assert_eq!(
            format!("{:?}", Permissions::PUBLISH | Permissions::PRESENCE),
            "Permissions(publish | presence)"
        );
        assert_eq!(format!("{:?}", Permissions::NONE), "Permissions()");
        assert_eq!(Permissions::ALL.names().count(), 4);
        assert_eq!(Permissions::from_name("send"), Some(Permissions::SEND));
        assert_eq!(Permissions::from_name("SEND"), None);
    }

    #[test]
    fn error_reasons() {
        let all = [
            TokenError::Malformed,
            TokenError::MissingKid,
            TokenError::UnknownKid,
            TokenError::AlgNone,
            TokenError::WrongAlgorithm,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::MissingExp,
            TokenError::WrongAudience,
            TokenError::InvalidClaims("x".into()),
        ];
        let reasons: std::collections::BTreeSet<_> = all.iter().map(TokenError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(TokenError::UnknownKid.reason(), "unknown_kid");
        assert!(all.iter().all(|e| !e.to_string().is_empty()));
        assert_eq!(all.iter().filter(|e| e.is_expired()).count(), 1);
    }
}
