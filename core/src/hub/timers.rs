//! Armed deadlines: at most one per connection, ordered by when they fire.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::ids::ConnId;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The connection must authenticate in-band by then.
    AuthDeadline(ConnId),
    /// The connection's token expires then.
    TokenExpiry(ConnId),
    /// The connection is warned then that its token expires at the instant this
    /// carries; firing sends the warning and arms the [`Timer::TokenExpiry`].
    TokenWarning(ConnId, Instant),
}

impl Timer {
    fn conn(self) -> ConnId {
        match self {
            Self::AuthDeadline(c) | Self::TokenExpiry(c) | Self::TokenWarning(c, _) => c,
        }
    }
}

/// The hub's timers. A connection has at most one armed (it waits for credentials,
/// it is to be warned of its token's expiry, or its credentials expire); arming
/// another replaces it, so warn-then-expire is two timers in turn, the warning's
/// carrying the expiry's instant. Both indexes are private to this type, so they
/// cannot drift apart.
#[derive(Debug, Default)]
pub(super) struct Timers {
    by_time: BTreeSet<(Instant, Timer)>,
    by_conn: BTreeMap<ConnId, (Instant, Timer)>,
}

impl Timers {
    /// Arms `timer` at `at`, replacing its connection's earlier timer.
    pub(super) fn arm(&mut self, at: Instant, timer: Timer) {
        let conn = timer.conn();
        self.disarm(conn);
        self.by_time.insert((at, timer));
        self.by_conn.insert(conn, (at, timer));
    }

    /// Disarms whatever `conn` has armed.
    pub(super) fn disarm(&mut self, conn: ConnId) {
        if let Some(armed) = self.by_conn.remove(&conn) {
            self.by_time.remove(&armed);
        }
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_conn.remove(&timer.conn());
        Some(timer)
    }

    /// How many are armed.
    pub(super) fn len(&self) -> usize {
        self.by_time.len()
    }

    /// The armed timer of `conn`, for the invariant checker.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn of(&self, conn: ConnId) -> Option<Instant> {
        self.by_conn.get(&conn).map(|(at, _)| *at)
    }

    /// The armed timer of `conn` and what it is, for the invariant checker.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn armed(&self, conn: ConnId) -> Option<(Instant, Timer)> {
        self.by_conn.get(&conn).copied()
    }

    /// Panics if the two indexes disagree, a timer belongs to a connection that is
    /// not `live`, or a warning is not strictly before the expiry it announces.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn check(&self, live: impl Fn(ConnId) -> bool) {
        for conn in self.by_conn.keys() {
            assert!(live(*conn), "a timer is armed for gone {conn}");
        }
        assert_eq!(
            self.by_time.len(),
            self.by_conn.len(),
            "timer indexes differ in size"
        );
        for &(at, timer) in &self.by_time {
            if let Timer::TokenWarning(conn, expires) = timer {
                assert!(
                    at < expires,
                    "the expiry warning of {conn} is not before it"
                );
            }
            assert_eq!(
                self.by_conn.get(&timer.conn()),
                Some(&(at, timer)),
                "timer of {} is not indexed by connection",
                timer.conn()
            );
        }
    }
}
