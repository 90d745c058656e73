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

use super::{Leader, Snapshot, SwitchoverRequest};
use crate::model::{FencingToken, Opinion, Pause, ServiceDefinition, SwitchRecord};

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
    pub fn decode<'a>(&self, entries: impl IntoIterator<Item = RawEntry<'a>>) -> Snapshot {
        let mut s = Snapshot::default();
        let mut opinions = Vec::new();
        let mut definitions = Vec::new();
        for RawEntry { key, value, mod_revision } in entries {
            let Some(rel) = key.strip_prefix(&self.root) else { continue };
            let parts: Vec<&str> = rel.split('/').collect();
            let value = match std::str::from_utf8(value) {
                Ok(v) => v,
                Err(e) => {
                    s.skipped.insert(key.to_string(), format!("not utf-8 text: {e}"));
                    continue;
                }
            };
            let mut skip = |why: String| {
                s.skipped.insert(key.to_string(), why);
            };
            match parts.as_slice() {
                ["alive", node] => {
                    s.alive.insert(node.to_string());
                }
                ["members", node] => {
                    s.members.insert(node.to_string());
                }
                ["leader"] => s.leader = Some(Leader { node: value.to_string(), token: FencingToken(mod_revision) }),
                ["opinions", node, service, ep] => match parse::<Opinion>(value) {
                    Ok(opinion) => opinions.push((node.to_string(), service.to_string(), ep.to_string(), opinion)),
                    Err(why) => skip(why),
                },
                ["definitions", node] => match parse::<std::collections::BTreeMap<String, ServiceDefinition>>(value) {
                    Ok(defs) => definitions.push((node.to_string(), defs)),
                    Err(why) => skip(why),
                },
                ["switchovers", service] => match parse::<SwitchoverRequest>(value) {
                    Ok(request) => {
                        s.switchovers.insert(service.to_string(), SwitchoverRequest { revision: mod_revision, ..request });
                    }
                    Err(why) => skip(why),
                },
                ["maintenance", service, ep] => {
                    s.maintenance.entry(service.to_string()).or_default().insert(ep.to_string());
                }
                // A pause that cannot be read still pauses: switching during a maintenance
                // someone asked for is worse than holding still until they resume.
                ["paused"] => match parse::<Pause>(value) {
                    Ok(pause) => s.paused = Some(pause),
                    Err(why) => {
                        skip(why);
                        s.paused = Some(Pause { since: std::time::UNIX_EPOCH, by: "unknown (the pause flag is unreadable)".into() });
                    }
                },
                ["records", service] => match parse::<SwitchRecord>(value) {
                    Ok(record) => {
                        s.records.insert(service.to_string(), record);
                    }
                    Err(why) => skip(why),
                },
                _ => {}
            }
        }
        for (node, service, ep, opinion) in opinions {
            if s.alive.contains(&node) {
                s.opinions.entry(node).or_default().entry(service).or_default().insert(ep, opinion);
            }
        }
        for (node, defs) in definitions {
            if s.alive.contains(&node) {
                s.definitions.insert(node, defs);
            }
        }
        s.members.extend(s.alive.iter().cloned());
        s
    }
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
