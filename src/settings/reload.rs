//! What a reload (SIGHUP) cannot apply: the parts of a config read once, at start.

use super::Settings;

impl Settings {
    /// What in `next` differs from `self` (the config a server started with) that a
    /// reload cannot apply: the listeners, their `[ws]` and `[quic]` details, the
    /// driver's bounds and the token file are read once, at start, and the listeners
    /// size their frame reads by `max_frame_bytes` at start. Empty when a reload
    /// applies all of `next`.
    pub fn restart_only_changes(&self, next: &Self) -> Vec<&'static str> {
        let (q, nq) = (&self.quic, &next.quic);
        [
            ("[listen]", self.listen != next.listen),
            ("[ws]", self.ws != next.ws),
            (
                "[quic] idle_timeout_ms, handshake_timeout_ms or dev_cert_file",
                (q.idle_timeout_ms, q.handshake_timeout_ms, &q.dev_cert_file)
                    != (
                        nq.idle_timeout_ms,
                        nq.handshake_timeout_ms,
                        &nq.dev_cert_file,
                    ),
            ),
            (
                "[quic] cert_file on or off",
                q.cert_file.is_empty() != nq.cert_file.is_empty(),
            ),
            ("[tls] on or off", self.tls.enabled() != next.tls.enabled()),
            ("[driver]", self.driver != next.driver),
            ("[engine]", self.engine != next.engine),
            (
                "[auth] access_token_file",
                self.auth.access_token_file != next.auth.access_token_file,
            ),
            (
                "[limits] max_frame_bytes above its value at start",
                next.limits.max_frame_bytes > self.limits.max_frame_bytes,
            ),
        ]
        .into_iter()
        .filter_map(|(what, changed)| changed.then_some(what))
        .collect()
    }
}
