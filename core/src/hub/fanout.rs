//! Fan-out: encode once per (dialect, flavour), share the bytes among all recipients.

use bytes::{Bytes, BytesMut};

use super::{Hub, Output};
use crate::ids::{ChannelId, ConnId, TenantId};
use crate::wire::Dialect;
use crate::wire::broadcaster::Push;

const SLOTS: usize = 2 * Dialect::ALL.len();

/// One message as encoded for one dialect.
#[derive(Clone, Debug)]
pub(super) enum Frame {
    /// The same bytes for every recipient.
    Shared(Bytes),
    /// A Broadcaster push: shared bytes around each subscription's own `seq`.
    Sequenced(Push),
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self::Shared(bytes)
    }
}

/// One lazily encoded frame per dialect and flavour (with or without the sender's
/// metadata). `None` inside means "nothing for that flavour".
pub(super) struct Frames<F> {
    slots: [Option<Option<Frame>>; SLOTS],
    encode: F,
    /// Where sequenced frames are written, so their recipients share allocations.
    arena: BytesMut,
}

impl<F: FnMut(Dialect, bool) -> Option<Frame>> Frames<F> {
    pub(super) fn new(encode: F) -> Self {
        Self {
            slots: Default::default(),
            encode,
            arena: BytesMut::new(),
        }
    }

    /// The frame for `dialect` (`with_meta`: the sender's metadata included),
    /// encoding it on first use only.
    fn get(&mut self, dialect: Dialect, with_meta: bool) -> Option<&Frame> {
        let slot = &mut self.slots[dialect.index() * 2 + usize::from(with_meta)];
        slot.get_or_insert_with(|| (self.encode)(dialect, with_meta))
            .as_ref()
    }

    /// One member's bytes: the shared frame, or for a sequenced one the next number
    /// of the member's subscription (`seq`, counted here) spliced in.
    fn for_member(&mut self, dialect: Dialect, with_meta: bool, seq: &mut u64) -> Option<Bytes> {
        let slot = &mut self.slots[dialect.index() * 2 + usize::from(with_meta)];
        match slot.get_or_insert_with(|| (self.encode)(dialect, with_meta)) {
            None => None,
            Some(Frame::Shared(frame)) => Some(frame.clone()),
            Some(Frame::Sequenced(push)) => {
                *seq += 1;
                Some(push.write_seq(&mut self.arena, *seq))
            }
        }
    }
}

impl Hub {
    /// Sends to every member connection of `channel` except `except`. Returns how
    /// many sends were queued. A Broadcaster member's subscription counts the push.
    pub(super) fn fan_out<F>(
        &mut self,
        channel: ChannelId,
        except: Option<ConnId>,
        frames: &mut Frames<F>,
    ) -> usize
    where
        F: FnMut(Dialect, bool) -> Option<Frame>,
    {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return 0;
        };
        let before = self.out.len();
        for (&conn, member) in &mut ch.members {
            if Some(conn) == except {
                continue;
            }
            if let Some(frame) =
                frames.for_member(member.dialect, member.include_meta, &mut member.seq)
            {
                self.out.push_back(Output::Send { conn, frame });
            }
        }
        self.out.len() - before
    }

    /// Delivers a message published to `name` in `tenant`: to the channel's members
    /// and to every wildcard subscription that matches it, once per connection,
    /// never to `except`. Returns how many sends were queued.
    pub(super) fn deliver<F>(
        &mut self,
        tenant: &TenantId,
        name: &str,
        except: Option<ConnId>,
        frames: &mut Frames<F>,
    ) -> usize
    where
        F: FnMut(Dialect, bool) -> Option<Frame>,
    {
        let channel = self.channel_id(tenant, name);
        let mut sent = channel.map_or(0, |ch| self.fan_out(ch, except, frames));
        let Some(by_pattern) = self.patterns.get(tenant) else {
            return sent;
        };
        let members = channel
            .and_then(|ch| self.channels.get(&ch))
            .map(|c| &c.members);
        // A connection with several matching patterns still gets one copy.
        let mut recipients: std::collections::BTreeMap<ConnId, bool> = Default::default();
        for (pattern, subs) in by_pattern {
            if !pattern.matches(name) {
                continue;
            }
            for (&conn, opts) in subs {
                if Some(conn) == except || members.is_some_and(|m| m.contains_key(&conn)) {
                    continue;
                }
                *recipients.entry(conn).or_default() |= opts.include_meta;
            }
        }
        for (conn, with_meta) in recipients {
            let dialect = self.conns[&conn].dialect;
            // Broadcaster connections hold no wildcard subscriptions (refused at
            // subscribe), so a sequenced frame never goes to a pattern.
            if let Some(Frame::Shared(frame)) = frames.get(dialect, with_meta) {
                self.out.push_back(Output::Send {
                    conn,
                    frame: frame.clone(),
                });
                sent += 1;
            }
        }
        sent
    }
}
