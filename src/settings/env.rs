//! Reading a config: the TOML text, then `SWITCHYARD_<SECTION>_<KEY>` overrides on
//! top, then the checks.

use super::sections::default_algorithm;
use super::{ENV_PREFIX, KeySettings, Settings, SettingsError};

impl Settings {
    /// Parses a TOML document, then applies `env` overrides (`SWITCHYARD_*`).
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e| SettingsError::Parse(format!("{e}")))?;
        let mut extra_key: (Option<String>, Option<String>) = (None, None);
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            match rest.as_str() {
                // Not config keys: read by the binary itself.
                "log" => {}
                "key_id" => extra_key.0 = Some(value),
                "key_secret" => extra_key.1 = Some(value),
                "history" => set_history(&mut doc, &value)?,
                _ => apply_env(&mut doc, &rest, &value)?,
            }
        }
        let mut settings: Self = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| SettingsError::Parse(e.to_string()))?;
        match extra_key {
            (Some(kid), Some(secret)) => settings.auth.keys.push(KeySettings {
                kid,
                secret,
                algorithm: default_algorithm(),
                audience: None,
                tenant: None,
            }),
            (None, None) => {}
            _ => {
                return Err(SettingsError::Invalid(
                    "SWITCHYARD_KEY_ID and SWITCHYARD_KEY_SECRET go together".into(),
                ));
            }
        }
        settings.validate()?;
        Ok(settings)
    }
}

/// Sets `section.key` in `doc` from an environment value (`ws_listen`-style names
/// resolve against the known sections).
fn apply_env(doc: &mut toml::Table, name: &str, value: &str) -> Result<(), SettingsError> {
    const SECTIONS: [&str; 12] = [
        "listen",
        "ws",
        "quic",
        "tls",
        "driver",
        "auth",
        "limits",
        "api",
        "shutdown",
        "engine",
        "demo",
        "dashboard",
    ];
    let Some((section, key)) = SECTIONS.iter().find_map(|s| {
        name.strip_prefix(s)
            .and_then(|r| r.strip_prefix('_'))
            .map(|k| (*s, k))
    }) else {
        return Err(SettingsError::Invalid(format!(
            "{ENV_PREFIX}{}: no such config section",
            name.to_ascii_uppercase()
        )));
    };
    // Numbers, booleans and arrays parse as TOML; anything else is a string.
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let table = doc
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(table) = table else {
        return Err(SettingsError::Invalid(format!(
            "[{section}] is not a table"
        )));
    };
    table.insert(key.to_owned(), parsed);
    Ok(())
}

/// `SWITCHYARD_HISTORY`: the whole `[[history]]` list, as a TOML array of inline
/// tables (a list of rules has no single key to override).
fn set_history(doc: &mut toml::Table, value: &str) -> Result<(), SettingsError> {
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(toml::Value::is_array)
        .ok_or_else(|| {
            SettingsError::Invalid(format!(
                "{ENV_PREFIX}HISTORY: not a TOML array of rules, e.g. \
                 [{{channels = \"chat/**\", size = 100, ttl_ms = 300000}}]"
            ))
        })?;
    doc.insert("history".into(), parsed);
    Ok(())
}
