//! `[[history]]`: which channels keep their last messages, so that a client coming
//! back recovers what it missed (the core's `Config::history`). One table per rule;
//! the first rule whose pattern matches a channel applies. None: no channel keeps a
//! history (the default). A reload applies new rules to the messages that follow.

use std::time::Duration;

use serde::Deserialize;
use switchyard_core::HistoryRule;
use switchyard_core::pattern::Pattern;

use super::{Settings, SettingsError};

/// One `[[history]]` rule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// A channel name or pattern (`chat/**`).
    pub channels: String,
    /// Messages kept per channel.
    pub size: usize,
    /// How long a message is kept, milliseconds.
    pub ttl_ms: u64,
}

impl Settings {
    /// Each rule keeps something and names channels with a valid pattern.
    pub(super) fn validate_history(&self) -> Result<(), SettingsError> {
        let max_len = switchyard_core::Config::default().limits.max_channel_len;
        for (i, rule) in self.history.iter().enumerate() {
            let invalid = |what: String| {
                Err(SettingsError::Invalid(format!(
                    "[[history]] #{} ({:?}): {what}",
                    i + 1,
                    rule.channels
                )))
            };
            if let Err(e) = Pattern::parse(&rule.channels, max_len) {
                return invalid(format!("channels is not a valid pattern: {e}"));
            }
            if rule.size == 0 {
                return invalid("size must be above 0".into());
            }
            if rule.ttl_ms == 0 {
                return invalid("ttl_ms must be above 0".into());
            }
        }
        Ok(())
    }

    /// The core's history rules, in the file's order.
    pub(super) fn history_rules(&self) -> Vec<HistoryRule> {
        self.history
            .iter()
            .map(|r| HistoryRule {
                channels: r.channels.clone(),
                size: r.size,
                ttl: Duration::from_millis(r.ttl_ms),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        Settings::from_toml(toml, []).unwrap_err().to_string()
    }

    #[test]
    fn rules_map_to_the_core_in_order() {
        let s = Settings::from_toml(
            "[[history]]\nchannels = \"chat/**\"\nsize = 100\nttl_ms = 300000\n\
             [[history]]\nchannels = \"**\"\nsize = 5\nttl_ms = 1000\n",
            [],
        )
        .unwrap();
        let rules = s.core_config().unwrap().history;
        assert_eq!(
            rules,
            [
                HistoryRule {
                    channels: "chat/**".into(),
                    size: 100,
                    ttl: Duration::from_secs(300),
                },
                HistoryRule {
                    channels: "**".into(),
                    size: 5,
                    ttl: Duration::from_secs(1),
                },
            ]
        );
        assert!(
            Settings::from_toml("", [])
                .unwrap()
                .core_config()
                .unwrap()
                .history
                .is_empty(),
            "no rule, no history"
        );
    }

    #[test]
    fn a_rule_that_keeps_nothing_or_names_no_channel_is_refused_by_its_number() {
        let rule = |channels: &str, size: u64, ttl: u64| {
            format!(
                "[[history]]\nchannels = \"a\"\nsize = 1\nttl_ms = 1\n\
                 [[history]]\nchannels = \"{channels}\"\nsize = {size}\nttl_ms = {ttl}\n"
            )
        };
        let e = err(&rule("chat/**", 0, 1000));
        assert!(e.contains("[[history]] #2 (\"chat/**\"): size"), "{e}");
        let e = err(&rule("chat/**", 10, 0));
        assert!(e.contains("#2") && e.contains("ttl_ms"), "{e}");
        let e = err(&rule("chat//x", 10, 1000));
        assert!(e.contains("#2") && e.contains("not a valid pattern"), "{e}");
        let e = err("[[history]]\nchannels = \"a\"\nsize = 1\n");
        assert!(e.contains("ttl_ms"), "a missing key is named: {e}");
        let e = err("[[history]]\nchannels = \"a\"\nsize = 1\nttl_ms = 1\nttl = 2\n");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn the_environment_replaces_the_whole_list() {
        let s = Settings::from_toml(
            "[[history]]\nchannels = \"a\"\nsize = 1\nttl_ms = 1\n",
            [(
                "SWITCHYARD_HISTORY".to_owned(),
                r#"[{channels = "chat/**", size = 50, ttl_ms = 60000}]"#.to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(
            s.history,
            [HistorySettings {
                channels: "chat/**".into(),
                size: 50,
                ttl_ms: 60_000,
            }]
        );
        let e = Settings::from_toml("", [("SWITCHYARD_HISTORY".into(), "on".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SWITCHYARD_HISTORY: not a TOML array"), "{e}");
    }
}
