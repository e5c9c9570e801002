//! The commented example config that `switchyard genconfig` prints: `example.toml`
//! (every section, its defaults and what each key does) with a fresh signing key.

/// The template. `{kid}` and then `{secret}`, once each, mark where the key goes; it is
/// kept as a `.toml` file so that it reads, and can be checked, as the config it is.
const TEMPLATE: &str = include_str!("example.toml");

/// A commented example config with a fresh key, for `switchyard genconfig`.
pub fn example(kid: &str, secret: &str) -> String {
    // Invariant: example.toml holds `{kid}` once and `{secret}` once after it (the
    // genconfig test in tests/binary.rs prints it). One pass, as `format!` did: a key
    // that itself contains a placeholder is written as it is.
    let (head, rest) = TEMPLATE
        .split_once("{kid}")
        .expect("example.toml has a {kid} placeholder");
    let (middle, tail) = rest
        .split_once("{secret}")
        .expect("example.toml has a {secret} placeholder after {kid}");
    format!("{head}{kid}{middle}{secret}{tail}")
}
