//! Fan-out: encode once per (dialect, flavour), share the bytes among all recipients.

use bytes::{Bytes, BytesMut};

use super::{Hub, Output};
use crate::ids::{ChannelId, ConnId, TenantId};
use crate::wire::Dialect;
use crate::wire::codec::Frame;

const SLOTS: usize = 2 * Dialect::ALL.len();

/// One lazily encoded frame per dialect and flavour (with or without the sender's
/// metadata). `None` inside means "nothing for that flavour".
pub(super) struct Frames<F> {
    slots: [Option<Option<Frame>>; SLOTS],
    /// JSON frames naming their tenant, for recipients from other tenants.
    foreign: [Option<Option<Bytes>>; SLOTS],
    encode: F,
    /// Where sequenced frames are written, so their recipients share allocations.
    arena: BytesMut,
}

impl<F: FnMut(Dialect, bool) -> Option<Frame>> Frames<F> {
    pub(super) fn new(encode: F) -> Self {
        Self {
            slots: Default::default(),
            foreign: Default::default(),
            encode,
            arena: BytesMut::new(),
        }
    }

    /// The shared bytes for a recipient in `tenant`'s channel, `foreign` when its own
    /// tenant is another: frames then name the tenant (where the dialect can), spliced
    /// into the shared encoding once per flavour. `None` for nothing to send, or a sequenced frame.
    pub(super) fn shared(
        &mut self,
        dialect: Dialect,
        with_meta: bool,
        foreign: bool,
        tenant: &TenantId,
    ) -> Option<Bytes> {
        if !foreign {
            return match self.get(dialect, with_meta) {
                Some(Frame::Shared(frame)) => Some(frame.clone()),
                Some(Frame::Sequenced(_)) | None => None,
            };
        }
        let i = dialect.index() * 2 + usize::from(with_meta);
        if let Some(frame) = &self.foreign[i] {
            return frame.clone();
        }
        let frame = match self.get(dialect, with_meta) {
            Some(Frame::Shared(frame)) => Some(dialect.codec().with_tenant(frame, tenant.as_str())),
            Some(Frame::Sequenced(_)) | None => None,
        };
        self.foreign[i] = Some(frame.clone());
        frame
    }

    /// The frame for `dialect` (`with_meta`: the sender's metadata included),
    /// encoding it on first use only.
    fn get(&mut self, dialect: Dialect, with_meta: bool) -> Option<&Frame> {
        let slot = &mut self.slots[dialect.index() * 2 + usize::from(with_meta)];
        slot.get_or_insert_with(|| (self.encode)(dialect, with_meta))
            .as_ref()
    }

    /// One member's bytes: the shared frame (see [`Frames::shared`]), or for a
    /// sequenced one the next number of the member's subscription (`seq`, counted
    /// here) spliced in.
    fn for_member(
        &mut self,
        dialect: Dialect,
        with_meta: bool,
        foreign: bool,
        tenant: &TenantId,
        seq: &mut u64,
    ) -> Option<Bytes> {
        let slot = &mut self.slots[dialect.index() * 2 + usize::from(with_meta)];
        if let Some(Frame::Sequenced(push)) =
            slot.get_or_insert_with(|| (self.encode)(dialect, with_meta))
        {
            *seq += 1;
            return Some(push.write_seq(&mut self.arena, *seq));
        }
        self.shared(dialect, with_meta, foreign, tenant)
    }
}

impl Hub {
    /// Sends to every member connection of `channel` except `except`. Returns how
    /// many sends were queued. A sequenced frame advances the member's `seq`.
    pub(super) fn fan_out<F>(
        &mut self,
        channel: ChannelId,
        except: Option<ConnId>,
        frames: &mut Frames<F>,
    ) -> usize
    where
        F: FnMut(Dialect, bool) -> Option<Frame>,
    {
        let before = self.out.len();
        let out = &mut self.out;
        self.dir
            .for_each_member(channel, except, |conn, member, tenant, seq| {
                let frame = frames.for_member(
                    member.dialect(),
                    member.include_meta(),
                    member.foreign(),
                    tenant,
                    seq,
                );
                if let Some(frame) = frame {
                    out.push_back(Output::Send { conn, frame });
                }
            });
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
        let channel = self.dir.channel_id(tenant, name);
        let mut sent = channel.map_or(0, |ch| self.fan_out(ch, except, frames));
        for r in self.dir.pattern_recipients(tenant, name, except) {
            // A sequenced frame never goes to a pattern: dialects with sequenced
            // frames have no wildcard subscriptions (refused at subscribe).
            if let Some(frame) = frames.shared(r.dialect, r.include_meta, r.foreign, tenant) {
                self.out.push_back(Output::Send {
                    conn: r.conn,
                    frame,
                });
                sent += 1;
            }
        }
        sent
    }
}
