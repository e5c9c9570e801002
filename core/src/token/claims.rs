//! The validated [`Claims`] of a token and the parser that builds them from a
//! verified payload: NumericDate times, audience, ids, grants and the claim
//! aliases (`authorizedChannels`, `scope`, `peerMetadata`).

use serde_json::{Map, Value};

use super::{Permissions, SigningKey, TokenError, Verifier, invalid};
use crate::pattern::Pattern;

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

/// Maximum length of `sub` and `tenant`, in characters.
pub const MAX_ID_CHARS: usize = 128;

impl Verifier {
    /// Turns a payload whose signature has been checked into [`Claims`]: time
    /// claims against `unix_now`, audience against the key, then the grants.
    pub(super) fn check_claims(
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

pub(super) fn check_audience(
    aud: Option<&Value>,
    required: Option<&str>,
) -> Result<(), TokenError> {
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
    use serde_json::json;

    use super::*;
    use crate::token::mint;
    use crate::token::test_support::*;

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
}
