//! Rate and quota: a token bucket per connection, a message quota per tenant.

use std::time::Instant;

use super::Hub;
use crate::codes::{CloseCode, ErrorCode};
use crate::config::Limits;
use crate::ids::{ConnId, TenantId};
use crate::wire::RequestId;

/// Milli-tokens per token: integer arithmetic keeps the bucket deterministic.
const MILLI: u64 = 1_000;

/// A token bucket: `message_burst` tokens, refilled at `message_rate` per second.
#[derive(Debug)]
pub(super) struct RateBucket {
    milli_tokens: u64,
    last: Instant,
    /// Consecutive frames refused for rate.
    strikes: u32,
}

impl RateBucket {
    pub(super) fn new(limits: &Limits, now: Instant) -> Self {
        Self {
            milli_tokens: u64::from(limits.message_burst) * MILLI,
            last: now,
            strikes: 0,
        }
    }

    /// Takes one token if there is one.
    fn take(&mut self, now: Instant, limits: &Limits) -> bool {
        let elapsed_ms =
            u64::try_from(now.saturating_duration_since(self.last).as_millis()).unwrap_or(u64::MAX);
        let cap = u64::from(limits.message_burst) * MILLI;
        // message_rate tokens per 1,000 ms = message_rate milli-tokens per ms.
        let refill = elapsed_ms.saturating_mul(u64::from(limits.message_rate));
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
        self.last = now;
        if self.milli_tokens >= MILLI {
            self.milli_tokens -= MILLI;
            self.strikes = 0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }
}

/// Messages used in the current quota window of a tenant.
#[derive(Debug, Default)]
pub(super) struct QuotaWindow {
    window: u64,
    used: u64,
}

impl Hub {
    /// Charges one frame to the connection's rate. Over the rate, the frame is
    /// refused (`over_message_rate`); persistently over it, the connection is closed
    /// with 4011. Returns whether the frame may be handled.
    pub(super) fn take_rate_token(&mut self, conn: ConnId, request_id: Option<&RequestId>) -> bool {
        let now = self.now;
        let limits = &self.config.limits;
        let c = self.conns.get_mut(&conn).expect("caller checked");
        if c.rate.take(now, limits) {
            return true;
        }
        if c.rate.strikes > limits.rate_close_after {
            self.close(conn, CloseCode::OVER_MESSAGE_RATE, "over message rate");
        } else {
            self.refuse_request(
                conn,
                ErrorCode::OverMessageRate,
                "too many frames; slow down",
                request_id,
            );
        }
        false
    }

    /// Charges one message to the tenant's quota. Over it, the message is refused
    /// with `over_message_quota` and the connection stays open.
    pub(super) fn charge_quota(&mut self, conn: ConnId, request_id: Option<&RequestId>) -> bool {
        let tenant = self.dir.place(conn).tenant().clone();
        self.charge_quota_in(conn, &tenant, request_id)
    }

    /// Charges one message of `conn` to `tenant`'s quota (a publish that named it).
    pub(super) fn charge_quota_in(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        request_id: Option<&RequestId>,
    ) -> bool {
        if self.charge_tenant_quota(tenant) {
            return true;
        }
        self.refuse_request(
            conn,
            ErrorCode::OverMessageQuota,
            "message quota for this period is used up",
            request_id,
        );
        false
    }

    /// Charges one message to `tenant`'s quota; false when it is used up.
    pub(super) fn charge_tenant_quota(&mut self, tenant: &TenantId) -> bool {
        let Some(quota) = self.config.limits.quota else {
            return true;
        };
        let window = self.quota_window(quota.period);
        let q = self.quotas.entry(tenant.clone()).or_default();
        if q.window != window {
            *q = QuotaWindow { window, used: 0 };
        }
        if q.used >= quota.messages {
            return false;
        }
        q.used += 1;
        true
    }

    /// Messages used in the current quota window of `tenant`, and the quota.
    pub fn quota_usage(&self, tenant: &str) -> Option<(u64, u64)> {
        let quota = self.config.limits.quota?;
        let window = self.quota_window(quota.period);
        let used = self
            .quotas
            .get(&TenantId::new(tenant))
            .filter(|q| q.window == window)
            .map_or(0, |q| q.used);
        Some((used, quota.messages))
    }

    /// The index of the quota period `now` falls in (periods start at the hub's start).
    fn quota_window(&self, period: std::time::Duration) -> u64 {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        let elapsed = self.now.saturating_duration_since(self.epoch.0);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX) / period_ms
    }
}
