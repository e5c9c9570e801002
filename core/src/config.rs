//! What the hub is told at construction: limits and policy, no IO.

/// Hub-wide policy. Build it with `Config::default()` and change the fields you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Per-connection and per-frame limits.
    pub limits: Limits,
    /// Channel prefixes no client may use (`channel_reserved`).
    pub reserved_prefixes: Vec<String>,
    /// The tenant of connections whose credentials name none.
    pub default_tenant: String,
    /// Seed for the ids the server invents, so runs are reproducible.
    pub id_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            reserved_prefixes: vec!["_system/".into(), "_internal/".into(), "_metered/".into()],
            default_tenant: "default".into(),
            id_seed: 0x5157_1C4A_11D5_EED5,
        }
    }
}

/// Limits, advertised to clients where they can use them (`welcome.maxMessageSize`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame accepted, counted on the whole frame; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Longest peer id.
    pub max_peer_id_len: usize,
    /// Longest channel (room) name.
    pub max_channel_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_peer_id_len: 128,
            max_channel_len: 255,
        }
    }
}
