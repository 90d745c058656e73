//! The key layout every DCS implementation shares, under `/<cluster-name>/`:
//!
//! | key | value | bound to a lease |
//! |---|---|---|
//! | `alive/<node>` | `""` | the node's |
//! | `members/<node>` | `""` | no |
//! | `leader` | node name; its revision is the fencing token | the leader's |
//! | `opinions/<node>/<service>/<entry-point>` | JSON [`Opinion`] | the node's |
//! | `switchovers/<service>` | JSON [`SwitchoverRequest`] | no |
//! | `maintenance/<service>/<entry-point>` | `""` | no |
//! | `records/<service>` | JSON [`SwitchRecord`] | no |
//! | `kv/<namespace>/<key>` | the provider's string | no |
//!
//! Names are restricted to `a-z A-Z 0-9 - _` by config validation, so `/` separates safely.

use serde::de::DeserializeOwned;

use super::{DcsError, Leader, Snapshot, SwitchoverRequest};
use crate::model::{FencingToken, Opinion, SwitchRecord};

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

    /// A provider's key.
    pub fn kv(&self, namespace: &str, key: &str) -> String {
        format!("{}kv/{namespace}/{key}", self.root)
    }

    /// The prefix of a provider's keys.
    pub fn kv_prefix(&self, namespace: &str) -> String {
        format!("{}kv/{namespace}/", self.root)
    }

    /// Decode a snapshot from every `(key, value)` under [`Keys::prefix`], and the leader key's
    /// revision (its fencing token) if there is a leader.
    pub fn decode<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
        leader_revision: Option<i64>,
    ) -> Result<Snapshot, DcsError> {
        let mut s = Snapshot::default();
        let mut opinions = Vec::new();
        for (key, value) in entries {
            let Some(rel) = key.strip_prefix(&self.root) else { continue };
            let parts: Vec<&str> = rel.split('/').collect();
            match parts.as_slice() {
                ["alive", node] => {
                    s.alive.insert(node.to_string());
                }
                ["members", node] => {
                    s.members.insert(node.to_string());
                }
                ["leader"] => {
                    if let Some(rev) = leader_revision {
                        s.leader = Some(Leader { node: value.to_string(), token: FencingToken(rev) });
                    }
                }
                ["opinions", node, service, ep] => {
                    opinions.push((node.to_string(), service.to_string(), ep.to_string(), parse::<Opinion>(key, value)?))
                }
                ["switchovers", service] => {
                    s.switchovers.insert(service.to_string(), parse::<SwitchoverRequest>(key, value)?);
                }
                ["maintenance", service, ep] => {
                    s.maintenance.entry(service.to_string()).or_default().insert(ep.to_string());
                }
                ["records", service] => {
                    s.records.insert(service.to_string(), parse::<SwitchRecord>(key, value)?);
                }
                _ => {}
            }
        }
        for (node, service, ep, opinion) in opinions {
            if s.alive.contains(&node) {
                s.opinions.entry(node).or_default().entry(service).or_default().insert(ep, opinion);
            }
        }
        s.members.extend(s.alive.iter().cloned());
        Ok(s)
    }
}

/// Encode a value stored as JSON.
pub fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn parse<T: DeserializeOwned>(key: &str, value: &str) -> Result<T, DcsError> {
    serde_json::from_str(value).map_err(|e| DcsError::Corrupt { key: key.to_string(), message: e.to_string() })
}
