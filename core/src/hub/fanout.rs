//! Fan-out: encode once per (dialect, flavour), share the bytes among all recipients.

use bytes::Bytes;

use super::{Hub, Output};
use crate::ids::{ChannelId, ConnId, TenantId};
use crate::wire::{Dialect, json};

const SLOTS: usize = 2 * Dialect::ALL.len();

/// One lazily encoded frame per dialect and flavour (with or without the sender's
/// metadata). `None` inside means "nothing for that flavour".
pub(super) struct Frames<F> {
    slots: [Option<Option<Bytes>>; SLOTS],
    /// The same frames naming their tenant, for recipients from other tenants.
    foreign: [Option<Option<Bytes>>; SLOTS],
    encode: F,
}

impl<F: FnMut(Dialect, bool) -> Option<Bytes>> Frames<F> {
    pub(super) fn new(encode: F) -> Self {
        Self {
            slots: Default::default(),
            foreign: Default::default(),
            encode,
        }
    }

    /// The frame for a recipient in `tenant`'s channel whose own tenant is another
    /// (`foreign`): JSON `message` frames then name the tenant, spliced into the
    /// shared encoding once per flavour.
    pub(super) fn get_in(
        &mut self,
        dialect: Dialect,
        with_meta: bool,
        foreign: bool,
        tenant: &TenantId,
    ) -> Option<Bytes> {
        if !foreign || dialect != Dialect::Json {
            return self.get(dialect, with_meta);
        }
        let i = dialect.index() * 2 + usize::from(with_meta);
        if let Some(frame) = &self.foreign[i] {
            return frame.clone();
        }
        let frame = self
            .get(dialect, with_meta)
            .map(|f| json::with_tenant(&f, tenant.as_str()));
        self.foreign[i] = Some(frame.clone());
        frame
    }

    /// The frame for `dialect` (`with_meta`: the sender's metadata included),
    /// encoding it on first use only.
    pub(super) fn get(&mut self, dialect: Dialect, with_meta: bool) -> Option<Bytes> {
        let slot = &mut self.slots[dialect.index() * 2 + usize::from(with_meta)];
        slot.get_or_insert_with(|| (self.encode)(dialect, with_meta))
            .clone()
    }
}

impl Hub {
    /// Sends to every member connection of `channel` except `except`. Returns how
    /// many sends were queued.
    pub(super) fn fan_out<F>(
        &mut self,
        channel: ChannelId,
        except: Option<ConnId>,
        frames: &mut Frames<F>,
    ) -> usize
    where
        F: FnMut(Dialect, bool) -> Option<Bytes>,
    {
        let Some(ch) = self.channels.get(&channel) else {
            return 0;
        };
        let before = self.out.len();
        for (&conn, member) in &ch.members {
            if Some(conn) == except {
                continue;
            }
            let frame = frames.get_in(
                member.dialect,
                member.include_meta,
                member.foreign,
                &ch.tenant,
            );
            if let Some(frame) = frame {
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
        F: FnMut(Dialect, bool) -> Option<Bytes>,
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
        let mut recipients: std::collections::BTreeMap<ConnId, (bool, bool)> = Default::default();
        for (pattern, subs) in by_pattern {
            if !pattern.matches(name) {
                continue;
            }
            for (&conn, opts) in subs {
                if Some(conn) == except || members.is_some_and(|m| m.contains_key(&conn)) {
                    continue;
                }
                let entry = recipients.entry(conn).or_default();
                entry.0 |= opts.include_meta;
                entry.1 = opts.foreign;
            }
        }
        for (conn, (with_meta, foreign)) in recipients {
            let dialect = self.conns[&conn].dialect;
            if let Some(frame) = frames.get_in(dialect, with_meta, foreign, tenant) {
                self.out.push_back(Output::Send { conn, frame });
                sent += 1;
            }
        }
        sent
    }
}
