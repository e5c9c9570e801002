//! The seeded plan both soaks share: the seed, how long the chaos lasts and how many
//! clients it drives (`SWITCHYARD_SOAK_SEED|SECS|CLIENTS`), and the generator that
//! makes every choice from the seed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SplitMix64: small, seedable, and the same on every machine.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) chaos: Duration,
    pub(crate) clients: usize,
}

/// The plan from the environment, with these defaults (seconds of chaos, clients).
pub(crate) fn plan(default_secs: f64, default_clients: usize) -> Plan {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let seed = env("SWITCHYARD_SOAK_SEED").map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        },
        |s| s.parse().expect("SWITCHYARD_SOAK_SEED is a u64"),
    );
    let secs: f64 = env("SWITCHYARD_SOAK_SECS").map_or(default_secs, |s| {
        s.parse().expect("SWITCHYARD_SOAK_SECS is a number")
    });
    let clients = env("SWITCHYARD_SOAK_CLIENTS").map_or(default_clients, |s| {
        s.parse().expect("SWITCHYARD_SOAK_CLIENTS is a count")
    });
    Plan {
        seed,
        chaos: Duration::from_secs_f64(secs),
        clients,
    }
}
