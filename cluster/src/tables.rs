//! Tables every node of a cluster shares, beside the hub's traffic: keyed records the
//! server writes (the REST-issued access tokens) and the engine keeps where every node
//! reads them, with a notice to the others on every write.
//!
//! The engine stores and carries strings; it never reads them. What a record means,
//! and how two copies of one merge, is the server's business: it merges every
//! [`TableNews`] into its own copy, and after each [`TableNews::Snapshot`] writes back
//! what the shared copy lacks (so a table outlives a restart of its store).

use std::collections::BTreeMap;

use tokio::sync::mpsc;

/// How a [`TableWrite`] treats a key that is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteMode {
    /// Only when the key is new (Redis `HSETNX`): a stale copy never overwrites.
    Insert,
    /// Always (Redis `HSET`): for a change that must win, such as a revocation.
    Replace,
}

/// One record the server writes to a shared table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableWrite {
    /// The table (one of [`Tables::names`]).
    pub table: String,
    /// The record's key.
    pub key: String,
    /// The record.
    pub value: String,
    /// Whether it may replace what is there.
    pub mode: WriteMode,
}

/// What the engine tells the server about its shared tables.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableNews {
    /// The whole shared table, read after every (re)connect: writes may have been
    /// missed while the engine was away.
    Snapshot {
        /// The table.
        table: String,
        /// Key → record.
        entries: BTreeMap<String, String>,
    },
    /// Another node wrote a record.
    Written {
        /// The table.
        table: String,
        /// The record's key.
        key: String,
        /// The record as that node wrote it.
        value: String,
    },
}

/// The engine's end of the shared tables: which to snapshot, the server's writes,
/// and where the news goes.
#[derive(Debug)]
pub struct Tables {
    /// The tables the server shares (empty: none, as on one node).
    pub names: Vec<String>,
    /// Writes from the server, in order.
    pub writes: mpsc::Receiver<TableWrite>,
    /// News for the server. Unbounded, so that the engine never waits on the server
    /// (which may be waiting on [`Tables::writes`]).
    pub news: mpsc::UnboundedSender<TableNews>,
}

impl Tables {
    /// No shared tables: the server writes none and hears none.
    pub fn none() -> Self {
        let (_, writes) = mpsc::channel(1);
        let (news, _) = mpsc::unbounded_channel();
        Self {
            names: Vec::new(),
            writes,
            news,
        }
    }
}
