//! `[engine]`: what carries cluster traffic between nodes (`memory`: one node, the
//! default; `redis`: Redis pub/sub), its checks and the engine it builds.

use std::time::Duration;

use serde::Deserialize;
use switchyard_cluster::{Engine, MemoryEngine, RedisEngine, RedisSettings, redis_url_problem};

use super::{Settings, SettingsError};

/// The cluster engine. Read once, at start: a reload keeps the engine it started with.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// `memory` (one node) or `redis`.
    pub kind: String,
    /// Redis: `redis://[user:password@]host[:port][/db]` (`SWITCHYARD_ENGINE_URL` keeps
    /// the password out of the file). `rediss://` is not supported yet.
    pub url: String,
    /// This node's name in the cluster; empty: 16 random hex digits at every start.
    pub node_id: String,
    /// A node silent this long is gone and its peers leave everywhere; heartbeats go
    /// out every third of it. Milliseconds.
    pub presence_ttl_ms: u64,
    /// Prefix of the Redis channel and keys (`<prefix>:bus`, `<prefix>:node:<id>`):
    /// clusters sharing one Redis need distinct prefixes.
    pub prefix: String,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            kind: "memory".into(),
            url: "redis://127.0.0.1:6379".into(),
            node_id: String::new(),
            presence_ttl_ms: 3_000,
            prefix: "switchyard".into(),
        }
    }
}

impl std::fmt::Debug for EngineSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSettings")
            .field("kind", &self.kind)
            .field("url", &redacted(&self.url))
            .field("node_id", &self.node_id)
            .field("presence_ttl_ms", &self.presence_ttl_ms)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `url` without the password (`redis://user:<redacted>@host`).
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    format!("{scheme}://{user}:<redacted>@{host}")
}

impl EngineSettings {
    /// Whether this node is one of a cluster (the hub's `cluster` setting).
    pub fn clustered(&self) -> bool {
        self.kind == "redis"
    }

    /// `kind` and, for Redis, where: for `checkconfig` and the start log (no password).
    pub fn describe(&self) -> String {
        if self.clustered() {
            format!("{} {}", self.kind, redacted(&self.url))
        } else {
            self.kind.clone()
        }
    }

    /// How long a silent node lives on.
    pub fn presence_ttl(&self) -> Duration {
        Duration::from_millis(self.presence_ttl_ms)
    }

    /// The engine these settings describe, ready to run.
    pub fn engine(&self) -> Result<Box<dyn Engine>, SettingsError> {
        match self.kind.as_str() {
            "memory" => Ok(Box::new(MemoryEngine)),
            "redis" => RedisEngine::new(&RedisSettings {
                url: self.url.clone(),
                prefix: self.prefix.clone(),
                presence_ttl: self.presence_ttl(),
            })
            .map(|e| Box::new(e) as Box<dyn Engine>)
            .map_err(SettingsError::Invalid),
            other => Err(SettingsError::Invalid(format!(
                "engine: unknown kind {other:?} (memory or redis)"
            ))),
        }
    }
}

impl Settings {
    /// The `[engine]` checks: a known kind, a usable URL, a sane TTL, names that fit
    /// in a Redis key.
    pub(super) fn validate_engine(&self) -> Result<(), SettingsError> {
        let e = &self.engine;
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        match e.kind.as_str() {
            "memory" => return Ok(()),
            "redis" => {}
            other => return invalid(format!("engine: unknown kind {other:?} (memory or redis)")),
        }
        if let Some(problem) = redis_url_problem(&e.url) {
            return invalid(problem);
        }
        if e.presence_ttl_ms < 100 {
            return invalid("engine: presence_ttl_ms must be at least 100".into());
        }
        let fits = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !e.node_id.is_empty() && !fits(&e.node_id) {
            return invalid(format!(
                "engine: node_id {:?}: 1 to 128 of A-Z a-z 0-9 - _ .",
                e.node_id
            ));
        }
        if !fits(&e.prefix) {
            return invalid(format!(
                "engine: prefix {:?}: 1 to 128 of A-Z a-z 0-9 - _ .",
                e.prefix
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(engine: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_toml(
            &format!("[engine]\n{engine}"),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn memory_is_the_default_and_needs_nothing() {
        let s = Settings::from_toml("", []).unwrap();
        assert_eq!(s.engine.kind, "memory");
        assert!(!s.engine.clustered());
    }

    #[test]
    fn the_url_comes_from_the_environment_and_its_password_is_never_shown() {
        let s = settings(
            "kind = \"redis\"",
            &[(
                "SWITCHYARD_ENGINE_URL",
                "redis://app:hunter2@10.0.0.5:6379/1",
            )],
        )
        .unwrap();
        assert_eq!(s.engine.url, "redis://app:hunter2@10.0.0.5:6379/1");
        let shown = format!("{:?} {}", s.engine, s.engine.describe());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("redis://app:<redacted>@10.0.0.5:6379/1"),
            "{shown}"
        );
    }

    #[test]
    fn tls_urls_unknown_kinds_and_bad_names_are_refused() {
        let err = |toml: &str| settings(toml, &[]).unwrap_err().to_string();
        assert!(err("kind = \"redis\"\nurl = \"rediss://h\"").contains("TLS"));
        assert!(err("kind = \"nats\"").contains("unknown kind"));
        assert!(err("kind = \"redis\"\nnode_id = \"a b\"").contains("node_id"));
        assert!(err("kind = \"redis\"\npresence_ttl_ms = 5").contains("presence_ttl_ms"));
    }
}
