//! Tokens: minting the ones a run uses (valid, expiring, expired, tampered, for an
//! invalid subject), the verdict the hub must reach on each, and binding a
//! connection to what an accepted token grants.

use std::time::Duration;

use serde_json::json;

use super::Run;
use super::state::{Auth, Grants};
use crate::testing::ops::{Expiry, GRANTS, PEERS, TENANTS, TokenSpec};
use crate::testing::{TEST_UNIX_MS, test_key};
use crate::token::{Permissions, mint};

/// What the model knows of a token it minted.
#[derive(Clone, Debug)]
pub(super) struct TokenInfo {
    pub(super) sub: String,
    pub(super) sub_valid: bool,
    pub(super) grants: Grants,
    pub(super) tenant: String,
    pub(super) exp: Option<u64>,
    pub(super) tampered: bool,
}

impl Run {
    pub(super) fn mint(&mut self, spec: &TokenSpec) -> String {
        let sub = PEERS[usize::from(spec.sub) % PEERS.len()];
        let grants: Vec<&str> = GRANTS[usize::from(spec.grants) % GRANTS.len()].to_vec();
        let perms = permissions(spec.perms);
        let names: Vec<&str> = perms.names().collect();
        let tenant = TENANTS[usize::from(spec.tenant) % TENANTS.len()];
        let now = self.unix_secs();
        let exp = match spec.exp {
            Expiry::Hour | Expiry::Tampered => Some(now + 3600),
            Expiry::Soon => Some(now + 20),
            Expiry::Past => Some(now - 60),
            Expiry::InLeeway => Some(now - 3),
            Expiry::Missing => None,
        };
        // Every token names the Broadcaster audience (the other dialects ignore it).
        let mut claims = json!({
            "sub": sub, "aud": "broadcaster", "channels": grants, "permissions": names,
        });
        if let Some(exp) = exp {
            claims["exp"] = json!(exp);
        }
        if let Some(t) = tenant {
            claims["tenant"] = json!(t);
        }
        match spec.metadata {
            1 => claims["metadata"] = json!({ "name": sub }),
            2 => claims["metadata"] = json!({ "name": "p|q", "iceServers": [{"urls": "turn:x"}] }),
            _ => {}
        }
        let mut token = mint(&test_key(), &claims).expect("test key signs");
        let tampered = spec.exp == Expiry::Tampered;
        if tampered {
            // Change the signature's first character: different bytes, bad signature.
            let at = token.rfind('.').expect("three parts") + 1;
            let c = if token.as_bytes()[at] == b'A' {
                "B"
            } else {
                "A"
            };
            token.replace_range(at..=at, c);
        }
        self.tokens.insert(
            token.clone(),
            TokenInfo {
                sub: sub.to_owned(),
                sub_valid: crate::ids::validate_peer_id(sub, 128).is_ok(),
                grants: Grants {
                    channels: grants.iter().map(|g| (*g).to_owned()).collect(),
                    perms,
                },
                tenant: tenant.unwrap_or("default").to_owned(),
                exp,
                tampered,
            },
        );
        token
    }

    /// The close code a token must get now, or its info when it must be accepted.
    pub(super) fn verdict(&self, token: &str) -> Result<TokenInfo, u16> {
        let Some(info) = self.tokens.get(token) else {
            return Err(4001);
        };
        if info.tampered {
            return Err(4001);
        }
        match info.exp {
            None => return Err(4001),
            Some(exp) if self.unix_secs() > exp + self.leeway() => return Err(4002),
            Some(_) => {}
        }
        if !info.sub_valid {
            return Err(4001);
        }
        Ok(info.clone())
    }

    pub(super) fn authenticate(
        &mut self,
        idx: usize,
        grants: Grants,
        tenant: &str,
        peer: Option<String>,
    ) {
        let c = &mut self.conns[idx];
        c.auth = Auth::Ready {
            grants,
            expiry: None,
            warn: None,
        };
        c.tenant = tenant.to_owned();
        c.peer = peer;
    }

    pub(super) fn authenticate_token(&mut self, idx: usize, info: &TokenInfo) {
        let exp = info.exp.expect("valid tokens have exp") + self.leeway();
        let at_ms = (exp * 1000).saturating_sub(TEST_UNIX_MS);
        let expiry = (self.start + Duration::from_millis(at_ms)).max(self.now);
        self.authenticate(
            idx,
            info.grants.clone(),
            &info.tenant,
            Some(info.sub.clone()),
        );
        // The hub warns JSON connections that refreshed (or all of them, when so
        // configured) `refresh_warning` before `exp`, at once if that has passed.
        let auth = &self.config.auth;
        let c = &self.conns[idx];
        let warned = !auth.refresh_warning.is_zero()
            && c.dialect == crate::Dialect::Json
            && (auth.refresh_warning_all || c.refreshes);
        let exp_ms = (info.exp.expect("checked") * 1000).saturating_sub(TEST_UNIX_MS);
        let warn_at = (self.start + Duration::from_millis(exp_ms))
            .checked_sub(auth.refresh_warning)
            .unwrap_or(self.now)
            .max(self.now);
        let warn = (warned && warn_at < expiry).then_some(warn_at);
        if let Auth::Ready {
            expiry: e, warn: w, ..
        } = &mut self.conns[idx].auth
        {
            *e = Some(expiry);
            *w = warn;
        }
    }
}

/// Permission bits as the token vocabulary numbers them.
fn permissions(bits: u8) -> Permissions {
    [
        Permissions::PUBLISH,
        Permissions::SUBSCRIBE,
        Permissions::PRESENCE,
        Permissions::SEND,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| bits & (1 << i) != 0)
    .fold(Permissions::NONE, |acc, (_, p)| acc | p)
}
