//! Structural invariants, checked after every step by tests and fuzz targets.

use std::collections::BTreeMap;

use super::Hub;
use super::auth::AuthState;
use super::timers::Timer;

impl Hub {
    /// Panics with a description if the hub's state is inconsistent. Cheap enough to
    /// call after every input in tests; never called in production paths.
    pub fn check_invariants(&self) {
        self.dir.check();
        let places: Vec<_> = self.dir.places().map(|(c, _)| c).collect();
        let conns: Vec<_> = self.conns.keys().copied().collect();
        assert_eq!(
            places, conns,
            "the directory and the connection table hold different connections"
        );
        self.timers.check(|conn| self.conns.contains_key(&conn));
        self.history.check(self.now);
        self.waiting.check(|conn| self.conns.contains_key(&conn));
        for (&conn, c) in &self.conns {
            if matches!(c.auth, AuthState::Pending) {
                assert!(
                    !c.counted_tenant,
                    "{conn} counts against a tenant unauthenticated"
                );
                assert!(
                    self.timers.of(conn).is_some(),
                    "{conn} waits for credentials without an auth deadline"
                );
            }
            if let AuthState::Ready(g) = &c.auth
                && g.expires_at.is_some()
            {
                assert!(
                    matches!(
                        self.timers.armed(conn),
                        Some((_, Timer::TokenExpiry(_) | Timer::TokenWarning(..)))
                    ),
                    "{conn}'s token expires but neither its warning nor its close is armed"
                );
            }
        }
        // The caps' counters are caches of what the connections hold: recompute them.
        let mut per_ip: BTreeMap<_, usize> = BTreeMap::new();
        let mut per_tenant: BTreeMap<_, usize> = BTreeMap::new();
        for (&conn, c) in &self.conns {
            if let Some(ip) = c.ip {
                *per_ip.entry(ip).or_default() += 1;
            }
            if c.counted_tenant {
                *per_tenant
                    .entry(self.dir.place(conn).tenant().clone())
                    .or_default() += 1;
            }
        }
        assert_eq!(per_ip, self.per_ip, "per-IP connection counts are stale");
        assert_eq!(
            per_tenant, self.per_tenant,
            "per-tenant connection counts are stale"
        );
        assert!(
            self.pending_presence.is_empty(),
            "presence deltas left unflushed"
        );
    }

    /// True when the hub holds nothing: every connection, room and subscription is gone.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
            && self.dir.is_empty()
            && self.timers.len() == 0
            && self.per_ip.is_empty()
            && self.per_tenant.is_empty()
    }
}
