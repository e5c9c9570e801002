//! Fan-out: encode once per dialect, share the bytes among all recipients.

use bytes::Bytes;

use super::{Hub, Output};
use crate::ids::{ChannelId, ConnId};
use crate::wire::Dialect;

/// One lazily encoded frame per dialect. `None` inside means "nothing for that
/// dialect" (a frame only some dialects carry).
pub(super) struct PerDialect<F> {
    frames: [Option<Option<Bytes>>; Dialect::ALL.len()],
    encode: F,
}

impl<F: FnMut(Dialect) -> Option<Bytes>> PerDialect<F> {
    pub(super) fn new(encode: F) -> Self {
        Self {
            frames: Default::default(),
            encode,
        }
    }

    /// The frame for `dialect`, encoding it on first use only.
    pub(super) fn get(&mut self, dialect: Dialect) -> Option<Bytes> {
        let slot = &mut self.frames[dialect.index()];
        slot.get_or_insert_with(|| (self.encode)(dialect)).clone()
    }
}

impl Hub {
    /// Sends to every member connection of `channel` except `except`, encoding the
    /// frame once per dialect present. Returns how many sends were queued.
    pub(super) fn fan_out<F>(
        &mut self,
        channel: ChannelId,
        except: Option<ConnId>,
        frames: &mut PerDialect<F>,
    ) -> usize
    where
        F: FnMut(Dialect) -> Option<Bytes>,
    {
        let Some(ch) = self.channels.get(&channel) else {
            return 0;
        };
        let before = self.out.len();
        for (&conn, member) in &ch.members {
            if Some(conn) == except {
                continue;
            }
            if let Some(frame) = frames.get(member.dialect) {
                self.out.push_back(Output::Send { conn, frame });
            }
        }
        self.out.len() - before
    }
}
