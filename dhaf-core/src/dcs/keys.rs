//! The key layout every DCS implementation shares, under `/<cluster-name>/`:
//!
//! | key | value | bound to a lease |
//! |---|---|---|
//! | `alive/<node>` | `""` | the node's |
//! | `members/<node>` | `""` | no |
//! | `leader` | node name; its revision is the fencing token | the leader's |
//! | `opinions/<node>/<service>/<entry-point>` | JSON [`Opinion`] | the node's |
//! | `definitions/<node>` | JSON map service → [`ServiceDefinition`] | the node's |
//! | `switchovers/<service>` | JSON [`SwitchoverRequest`] | no |
//! | `maintenance/<service>/<entry-point>` | `""` | no |
//! | `records/<service>` | JSON [`SwitchRecord`] | no |
//! | `paused` | JSON [`Pause`] | no |
//! | `kv/<namespace>/<key>` | the provider's string | no |
//!
//! Names are restricted to `a-z A-Z 0-9 - _` by config validation, so `/` separates safely.

use serde::de::DeserializeOwned;

use std::collections::BTreeMap;

use super::{Snapshot, SwitchoverRequest};
use crate::model::{Opinion, Pause, ServiceDefinition, SwitchRecord};

/// Builds and parses the keys of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// The keys of cluster `cluster`.
    pub fn new(cluster: &str) -> Self {
        Keys { root: format!("/{cluster}/") }
    }

    /// The prefix of every key of the cluster.
    pub fn prefix(&self) -> &str {
        &self.root
    }

    /// A node's presence key.
    pub fn alive(&self, node: &str) -> String {
        format!("{}alive/{node}", self.root)
    }

    /// A node's membership key.
    pub fn member(&self, node: &str) -> String {
        format!("{}members/{node}", self.root)
    }

    /// The leader key.
    pub fn leader(&self) -> String {
        format!("{}leader", self.root)
    }

    /// A node's opinion of an entry point.
    pub fn opinion(&self, node: &str, service: &str, entry_point: &str) -> String {
        format!("{}opinions/{node}/{service}/{entry_point}", self.root)
    }

    /// The prefix of all of a node's opinions.
    pub fn opinions_of(&self, node: &str) -> String {
        format!("{}opinions/{node}/", self.root)
    }

    /// A node's definitions of its services.
    pub fn definitions(&self, node: &str) -> String {
        format!("{}definitions/{node}", self.root)
    }

    /// A service's switchover request.
    pub fn switchover(&self, service: &str) -> String {
        format!("{}switchovers/{service}", self.root)
    }

    /// An entry point's maintenance flag.
    pub fn maintenance(&self, service: &str, entry_point: &str) -> String {
        format!("{}maintenance/{service}/{entry_point}", self.root)
    }

    /// A service's switch record.
    pub fn record(&self, service: &str) -> String {
        format!("{}records/{service}", self.root)
    }

    /// The cluster's pause flag.
    pub fn paused(&self) -> String {
        format!("{}paused", self.root)
    }

    /// A provider's key.
    pub fn kv(&self, namespace: &str, key: &str) -> String {
        format!("{}kv/{namespace}/{key}", self.root)
    }

    /// The prefix of a provider's keys.
    pub fn kv_prefix(&self, namespace: &str) -> String {
        format!("{}kv/{namespace}/", self.root)
    }

    /// Decode a snapshot from every entry under [`Keys::prefix`].
    ///
    /// A value that cannot be read is left out and named in [`Snapshot::skipped`]: it affects
    /// only what it describes (one opinion, one record, one request), never the whole snapshot.
    /// Each entry is applied as a [`Change`] (the one way a key is read, for snapshots and
    /// watches alike); presence first, since only alive nodes' opinions and definitions count.
    pub fn decode<'a>(&self, entries: impl IntoIterator<Item = RawEntry<'a>>) -> Snapshot {
        let mut s = Snapshot::default();
        let changes: Vec<Change> = entries.into_iter().map(|e| self.change(e.key, Some(e.value), e.mod_revision)).collect();
        let (presence, rest): (Vec<&Change>, Vec<&Change>) = changes.iter().partition(|c| matches!(c.update, Update::Alive { .. }));
        for c in presence.into_iter().chain(rest) {
            s.absorb(c);
        }
        s
    }

    /// Read one change of `key` (`value` `None`: deleted) at `mod_revision`, as a watch reports
    /// it. A key outside the layout reads as [`Update::Other`].
    pub fn change(&self, key: &str, value: Option<&[u8]>, mod_revision: i64) -> Change {
        let update = self.update(key, value);
        Change { key: key.to_string(), revision: mod_revision, update }
    }

    fn update(&self, key: &str, value: Option<&[u8]>) -> Update {
        let Some(rel) = key.strip_prefix(&self.root) else { return Update::Other };
        let parts: Vec<&str> = rel.split('/').collect();
        let text = value.map(|v| std::str::from_utf8(v).map_err(|e| format!("not utf-8 text: {e}")));
        let read = |f: &dyn Fn(&str) -> Result<Read, String>| -> Option<Result<Read, String>> { text.clone().map(|t| t.and_then(f)) };
        let (on, owned) = (value.is_some(), |s: &str| s.to_string());
        match parts.as_slice() {
            ["alive", node] => Update::Alive { node: owned(node), on },
            ["members", node] => Update::Member { node: owned(node), on },
            ["leader"] => Update::Leader(read(&|t| Ok(Read::Text(t.to_string())))),
            ["opinions", node, service, ep] => Update::Opinion {
                node: owned(node),
                service: owned(service),
                entry_point: owned(ep),
                value: read(&|t| parse::<Opinion>(t).map(Read::Opinion)),
            },
            ["definitions", node] => Update::Definitions {
                node: owned(node),
                value: read(&|t| parse::<BTreeMap<String, ServiceDefinition>>(t).map(Read::Definitions)),
            },
            ["switchovers", service] => {
                Update::Switchover { service: owned(service), value: read(&|t| parse::<SwitchoverRequest>(t).map(Read::Switchover)) }
            }
            ["maintenance", service, ep] => Update::Maintenance { service: owned(service), entry_point: owned(ep), on },
            ["paused"] => Update::Paused(read(&|t| parse::<Pause>(t).map(Read::Pause))),
            ["records", service] => {
                Update::Record { service: owned(service), value: read(&|t| parse::<SwitchRecord>(t).map(Read::Record)) }
            }
            _ => Update::Other,
        }
    }
}

/// One key's change, read: what a watch reports, and how a snapshot is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The full key.
    pub key: String,
    /// The revision that made the change (for the leader key, the new term).
    pub revision: i64,
    /// What changed.
    pub update: Update,
}

/// A value as read: `None` when the key was deleted, `Err` (why) when it cannot be read.
pub type Value = Option<Result<Read, String>>;

/// A stored value, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The leader key's node name.
    Text(String),
    /// An opinion.
    Opinion(Opinion),
    /// A node's definitions.
    Definitions(BTreeMap<String, ServiceDefinition>),
    /// A switchover request.
    Switchover(SwitchoverRequest),
    /// A pause.
    Pause(Pause),
    /// A switch record.
    Record(SwitchRecord),
}

/// What one key's change is about, by the layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A node's presence came (`on`) or went.
    Alive {
        /// The node.
        node: String,
        /// Present now.
        on: bool,
    },
    /// A node's membership.
    Member {
        /// The node.
        node: String,
        /// A member now.
        on: bool,
    },
    /// The leader key.
    Leader(Value),
    /// A node's opinion of an entry point.
    Opinion {
        /// The node.
        node: String,
        /// The service.
        service: String,
        /// The entry point.
        entry_point: String,
        /// The opinion.
        value: Value,
    },
    /// A node's definitions.
    Definitions {
        /// The node.
        node: String,
        /// The definitions.
        value: Value,
    },
    /// A service's switchover request.
    Switchover {
        /// The service.
        service: String,
        /// The request.
        value: Value,
    },
    /// An entry point's maintenance flag.
    Maintenance {
        /// The service.
        service: String,
        /// The entry point.
        entry_point: String,
        /// In maintenance now.
        on: bool,
    },
    /// The pause flag.
    Paused(Value),
    /// A service's switch record.
    Record {
        /// The service.
        service: String,
        /// The record.
        value: Value,
    },
    /// A key no decision reads (a provider's value, or one outside the layout).
    Other,
}

/// One stored entry as an implementation read it, for [`Keys::decode`].
#[derive(Debug, Clone, Copy)]
pub struct RawEntry<'a> {
    /// The full key.
    pub key: &'a str,
    /// The value as stored.
    pub value: &'a [u8],
    /// The revision that last wrote it (for the leader key, the fencing token).
    pub mod_revision: i64,
}

/// Encode a value stored as JSON.
pub fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn parse<T: DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_str(value).map_err(|e| format!("unreadable value: {e}"))
}
