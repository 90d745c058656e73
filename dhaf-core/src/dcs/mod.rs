//! The distributed configuration store (DCS) contract, and its in-memory implementation.
//!
//! [`Dcs`] is domain-level: presence under a lease, compare-and-swap election with a fencing
//! token, opinions bound to the publisher's lease, switchover requests, maintenance, the fenced
//! switch record, a change stream, node decommission and a namespaced store for providers (with
//! a compare-and-swap fenced like the switch record, for what a leader adds to and a successor
//! reads, such as the switch history).
//! Implementations: [`memory::MemoryDcs`] (embedded default and test fake, with fault injection)
//! and etcd (in `dhaf-providers`). Both lay their data out by [`keys`] and must pass the
//! conformance suite in `conformance` (feature `testing`).
//!
//! A DCS is chosen like any provider: the config keeps its section opaque (the seed's `etcd:`
//! is the `etcd` DCS's section; `dcs:` names any DCS by `type`), and
//! [`crate::registry::Registry::dcs`] builds it with the factory registered under that name
//! ([`crate::registry::Registry::dcs_type`], given a [`DcsContext`]). Without a section the
//! node runs on the embedded [`memory::MemoryDcs`]; an embedder may also hand a node any DCS
//! instance (`Node::builder(config).dcs(…)`).
//!
//! Adding a DCS (Consul, say) touches no file of this crate:
//! - `dhaf-providers/src/consul.rs` (new): `ConsulDcs` implementing [`Dcs`], its settings read
//!   with [`crate::config::Fields`], and `register`, which calls `registry.dcs_type("consul", …)`;
//! - `dhaf-providers/src/lib.rs`: `pub mod consul;` and `consul::register` in `registry()`;
//! - `dhaf-providers/Cargo.toml`: its client crate, behind a `consul` feature;
//! - `dhaf-providers/tests/consul_conformance.rs` (new): `conformance::run_all` against a real
//!   Consul, and its own settings tests;
//! - `docs/config-reference.md`: a `<!-- keys: dcs consul -->` table (checked against the code
//!   by `tests/t20_config_reference.rs`), and `README.md` where the DCS choices are listed.
//!
//! Operators then write `dcs: { type: consul, … }`.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod keys;
pub mod memory;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::model::{FencingToken, Opinion, Pause, ServiceDefinition, SwitchRecord};

/// What a DCS factory ([`crate::registry::Registry::dcs_type`]) is given besides its section.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DcsContext {
    /// `dhaf.cluster-name`: the cluster's data lives under it.
    pub cluster: String,
    /// `dhaf.node-name`.
    pub node: String,
    /// What relative paths in the section may be resolved against ([`crate::config::Config::base_dir`]).
    pub base_dir: std::path::PathBuf,
}

/// A DCS lease id.
pub type LeaseId = i64;

/// The current leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    /// The leading node.
    pub node: String,
    /// Its term: the leader key's revision.
    pub token: FencingToken,
}

/// A pending switchover request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverRequest {
    /// The target entry point.
    pub entry_point: String,
    /// Who asked (the API token's name and the client's address), when known; the switch it
    /// leads to carries it into the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A scheduled switchover: not before this wall-clock time (Unix seconds). Whichever node
    /// leads then carries it out, or refuses it if the target is not healthy then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// The DCS revision that wrote the request, which tells two requests for the same target
    /// apart. Filled in when read; not part of the stored value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: i64,
}

impl SwitchoverRequest {
    /// A request for `entry_point`, nothing else said.
    pub fn to(entry_point: &str) -> Self {
        SwitchoverRequest { entry_point: entry_point.into(), ..SwitchoverRequest::default() }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Which pending switchover request a purge drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// An operator's purge: whatever request is pending.
    Any,
    /// The leader's purge of the request it decided on: only that one (by its
    /// [`SwitchoverRequest::revision`]), so a newer request that landed meanwhile stays; and
    /// only while `token`'s term leads ([`DcsError::Fenced`] otherwise).
    Fenced {
        /// The leader's term.
        token: FencingToken,
        /// The revision of the request it means.
        revision: i64,
    },
}

/// Everything the cluster knows, read in one consistent look.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Nodes that ever registered and were not decommissioned.
    pub members: BTreeSet<String>,
    /// Nodes whose presence lease is alive.
    pub alive: BTreeSet<String>,
    /// The leader, if any.
    pub leader: Option<Leader>,
    /// Opinions of alive nodes: node → service → entry point → opinion.
    pub opinions: BTreeMap<String, BTreeMap<String, BTreeMap<String, Opinion>>>,
    /// Alive nodes' definitions of their services: node → service → definition.
    #[serde(default)]
    pub definitions: BTreeMap<String, BTreeMap<String, ServiceDefinition>>,
    /// Pending switchover requests by service.
    pub switchovers: BTreeMap<String, SwitchoverRequest>,
    /// Entry points in maintenance, by service.
    pub maintenance: BTreeMap<String, BTreeSet<String>>,
    /// The desired entry point of each service, as the leader recorded it.
    pub records: BTreeMap<String, SwitchRecord>,
    /// The cluster is paused: nobody switches anything.
    #[serde(default)]
    pub paused: Option<Pause>,
    /// Values that could not be read and were left out, by full key: why. Each affects only what
    /// it describes (one opinion, one service's record or request); the rest is read as usual.
    #[serde(default)]
    pub skipped: BTreeMap<String, String>,
    /// The store's revision this snapshot shows: a watch's changes at or below it are in it
    /// already (0: unknown).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: i64,
}

/// What a change bears on, for whoever keeps a [`Snapshot`] up to date from a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// Nothing a decision reads (a provider's value, membership, a change already seen).
    Nothing,
    /// One service's data: an opinion, its request, maintenance or record.
    Service(String),
    /// What every service's decision reads: presence, leadership, definitions, the pause.
    Cluster,
}

impl Snapshot {
    /// Apply one change as a watch reported it, unless the snapshot shows it already (its
    /// revision is at or below [`Snapshot::revision`]); what it bears on.
    ///
    /// A snapshot kept up to date this way from a watch that started before it was read equals
    /// a fresh read (the conformance suite checks it), so a leader decides from its copy and
    /// reads everything only at start, after a gap in the watch, and as a periodic safety net.
    pub fn apply(&mut self, change: &keys::Change) -> Touched {
        if self.revision != 0 && change.revision <= self.revision {
            return Touched::Nothing;
        }
        self.revision = self.revision.max(change.revision);
        self.absorb(change)
    }

    /// Apply one change whatever its revision.
    pub(crate) fn absorb(&mut self, change: &keys::Change) -> Touched {
        use keys::{Read, Update};
        let key = &change.key;
        // A value read (`Some`), or gone: an unreadable one is named in `skipped` and counts
        // for nothing, as if it were gone.
        let mut read = |value: &keys::Value| -> Option<Read> {
            match value {
                Some(Ok(v)) => {
                    self.skipped.remove(key);
                    Some(v.clone())
                }
                Some(Err(why)) => {
                    self.skipped.insert(key.clone(), why.clone());
                    None
                }
                None => {
                    self.skipped.remove(key);
                    None
                }
            }
        };
        match &change.update {
            Update::Alive { node, on: true } => {
                self.alive.insert(node.clone());
                self.members.insert(node.clone());
                Touched::Cluster
            }
            Update::Alive { node, on: false } => {
                self.alive.remove(node);
                self.opinions.remove(node);
                self.definitions.remove(node);
                Touched::Cluster
            }
            Update::Member { node, on } => {
                if *on {
                    self.members.insert(node.clone());
                } else if !self.alive.contains(node) {
                    self.members.remove(node);
                }
                Touched::Nothing
            }
            Update::Leader(value) => {
                self.leader = match read(value) {
                    Some(Read::Text(node)) => Some(Leader { node, token: FencingToken(change.revision) }),
                    _ => None,
                };
                Touched::Cluster
            }
            Update::Opinion { node, service, entry_point, value } => {
                let alive = self.alive.contains(node);
                match read(value) {
                    Some(Read::Opinion(o)) if alive => {
                        self.opinions.entry(node.clone()).or_default().entry(service.clone()).or_default().insert(entry_point.clone(), o);
                    }
                    _ => {
                        if let Some(services) = self.opinions.get_mut(node) {
                            if let Some(eps) = services.get_mut(service) {
                                eps.remove(entry_point);
                                if eps.is_empty() {
                                    services.remove(service);
                                }
                            }
                            if services.is_empty() {
                                self.opinions.remove(node);
                            }
                        }
                    }
                }
                Touched::Service(service.clone())
            }
            Update::Definitions { node, value } => {
                let alive = self.alive.contains(node);
                match read(value) {
                    Some(Read::Definitions(d)) if alive => self.definitions.insert(node.clone(), d),
                    _ => self.definitions.remove(node),
                };
                Touched::Cluster
            }
            Update::Switchover { service, value } => {
                match read(value) {
                    Some(Read::Switchover(r)) => {
                        self.switchovers.insert(service.clone(), SwitchoverRequest { revision: change.revision, ..r })
                    }
                    _ => self.switchovers.remove(service),
                };
                Touched::Service(service.clone())
            }
            Update::Maintenance { service, entry_point, on } => {
                if *on {
                    self.maintenance.entry(service.clone()).or_default().insert(entry_point.clone());
                } else if let Some(eps) = self.maintenance.get_mut(service) {
                    eps.remove(entry_point);
                    if eps.is_empty() {
                        self.maintenance.remove(service);
                    }
                }
                Touched::Service(service.clone())
            }
            Update::Paused(value) => {
                let unreadable = matches!(value, Some(Err(_)));
                self.paused = match read(value) {
                    Some(Read::Pause(p)) => Some(p),
                    // A pause that cannot be read still pauses: switching during a maintenance
                    // someone asked for is worse than holding still until they resume.
                    _ if unreadable => Some(Pause { since: std::time::UNIX_EPOCH, by: "unknown (the pause flag is unreadable)".into() }),
                    _ => None,
                };
                Touched::Cluster
            }
            Update::Record { service, value } => {
                match read(value) {
                    Some(Read::Record(r)) => self.records.insert(service.clone(), r),
                    _ => self.records.remove(service),
                };
                Touched::Service(service.clone())
            }
            Update::Other => Touched::Nothing,
        }
    }
}

/// A DCS call failed. What the caller does about it is its [`DcsError::kind`]: callers decide by
/// that, not by the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcsError {
    /// The DCS cannot be reached or did not answer in time.
    #[error("dcs unavailable: {0}")]
    Unavailable(String),
    /// The lease is gone (expired or revoked): presence, opinions and leadership with it.
    #[error("lease {0} has expired")]
    LeaseExpired(LeaseId),
    /// A fenced write was refused: the term it names is over.
    #[error("fenced: leadership {0} is over")]
    Fenced(FencingToken),
    /// The node is alive and cannot be decommissioned.
    #[error("node {0} is alive; only a dead node can be decommissioned")]
    NodeAlive(String),
    /// The node is not a member of the cluster.
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(String),
    /// A stored value could not be read.
    #[error("corrupt value at {key}: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// What the caller of a DCS method does with its error ([`DcsError::kind`]).
///
/// | kind | variants | the caller |
/// |---|---|---|
/// | `Retry` | `Unavailable` | keeps what is in force, reports the DCS in trouble, tries again later |
/// | `LeaseLost` | `LeaseExpired` | stops leading and registers again: presence, opinions and leadership went with the lease |
/// | `TermOver` | `Fenced` | stops acting as leader at once; the write is never retried in this term |
/// | `Refused` | `NodeAlive`, `UnknownNode` | tells the operator why the command was refused; nothing to retry |
/// | `Unreadable` | `Corrupt` | reports the value; a retry reads the same |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcsErrorKind {
    /// The DCS did not answer (unreachable, slow, refusing writes): the call may succeed later.
    Retry,
    /// The node's lease is gone, and with it its presence, opinions and any leadership.
    LeaseLost,
    /// A fenced write was refused: the leader's term is over.
    TermOver,
    /// An operator's command was refused for a reason the operator can see and fix.
    Refused,
    /// A stored value cannot be read.
    Unreadable,
}

impl DcsError {
    /// What the caller does with this error.
    pub fn kind(&self) -> DcsErrorKind {
        match self {
            DcsError::Unavailable(_) => DcsErrorKind::Retry,
            DcsError::LeaseExpired(_) => DcsErrorKind::LeaseLost,
            DcsError::Fenced(_) => DcsErrorKind::TermOver,
            DcsError::NodeAlive(_) | DcsError::UnknownNode(_) => DcsErrorKind::Refused,
            DcsError::Corrupt { .. } => DcsErrorKind::Unreadable,
        }
    }

    /// Why the DCS did not answer, for an error of kind [`DcsErrorKind::Retry`]: what status
    /// and the operators are told while the DCS is in trouble.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            DcsError::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

/// A stream of the cluster's changes, in the order the store made them.
///
/// An implementation that can say what changed sends each write's [`keys::Change`]s; one that
/// cannot (or a watcher that fell behind, whose changes were dropped) yields
/// [`Changes::Unknown`], and the watcher re-reads a [`Snapshot`]. A closed stream (`next`
/// returns `None`) means the watch broke; the caller watches again.
pub struct Watch {
    rx: mpsc::Receiver<Vec<keys::Change>>,
    lost: Arc<AtomicBool>,
}

/// What a [`Watch`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Changes {
    /// These changes, in order.
    Known(Vec<keys::Change>),
    /// Something changed that the watch cannot tell: read everything again.
    Unknown,
}

/// The sending half of a [`Watch`], for implementations.
#[derive(Clone)]
pub struct WatchSender {
    tx: mpsc::Sender<Vec<keys::Change>>,
    lost: Arc<AtomicBool>,
}

/// How many writes a watcher may fall behind before their changes are dropped (and it re-reads
/// everything).
const WATCH_BACKLOG: usize = 1024;

impl Watch {
    /// A new watch and its sender.
    pub fn channel() -> (WatchSender, Watch) {
        let (tx, rx) = mpsc::channel(WATCH_BACKLOG);
        let lost = Arc::new(AtomicBool::new(false));
        (WatchSender { tx, lost: lost.clone() }, Watch { rx, lost })
    }

    /// Wait for the next change; `false` when the watch is closed.
    pub async fn changed(&mut self) -> bool {
        self.next().await.is_some()
    }

    /// The next changes; `None` when the watch is closed.
    pub async fn next(&mut self) -> Option<Changes> {
        let changes = self.rx.recv().await?;
        if self.lost.swap(false, Ordering::AcqRel) {
            return Some(Changes::Unknown);
        }
        Some(Changes::Known(changes))
    }

    /// The changes already waiting, without waiting; `None` when none are (or it is closed).
    pub fn try_next(&mut self) -> Option<Changes> {
        let changes = self.rx.try_recv().ok()?;
        if self.lost.swap(false, Ordering::AcqRel) {
            return Some(Changes::Unknown);
        }
        Some(Changes::Known(changes))
    }
}

impl WatchSender {
    /// Signal a change without saying what it was; returns `false` if the watcher is gone.
    pub fn notify(&self) -> bool {
        self.lost.store(true, Ordering::Release);
        self.send(Vec::new())
    }

    /// Send one write's changes; returns `false` if the watcher is gone. A watcher too far
    /// behind loses them and is told to read everything again.
    pub fn send(&self, changes: Vec<keys::Change>) -> bool {
        match self.tx.try_send(changes) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lost.store(true, Ordering::Release);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The DCS contract. Every method is one short request; callers bound each by a timeout.
#[async_trait]
pub trait Dcs: Send + Sync {
    /// Grant a lease of `ttl` and register `node` under it: alive while the lease is, and a member
    /// until decommissioned.
    async fn register(&self, node: &str, ttl: Duration) -> Result<LeaseId, DcsError>;

    /// Renew the lease; [`DcsError::LeaseExpired`] if it is gone.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), DcsError>;

    /// Revoke the lease: the node's presence, opinions and leadership vanish at once.
    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError>;

    /// Take the vacant leader key for `node`, bound to `lease` (compare-and-swap). Returns the
    /// term if `node` leads (now or already under this lease), `None` if another node does.
    async fn campaign(&self, node: &str, lease: LeaseId) -> Result<Option<FencingToken>, DcsError>;

    /// Give up leadership held under `token` (no-op if it is over).
    async fn resign(&self, token: FencingToken) -> Result<(), DcsError>;

    /// Publish `node`'s opinion of an entry point, bound to `lease`, so it vanishes with the node.
    async fn publish_opinion(
        &self,
        node: &str,
        lease: LeaseId,
        service: &str,
        entry_point: &str,
        opinion: &Opinion,
    ) -> Result<(), DcsError>;

    /// Publish `node`'s definitions of its services (service → definition), bound to `lease` like
    /// its opinions, replacing the ones it published before.
    async fn publish_definitions(
        &self,
        node: &str,
        lease: LeaseId,
        definitions: &BTreeMap<String, ServiceDefinition>,
    ) -> Result<(), DcsError>;

    /// Take back `node`'s published opinion of an entry point (none is `Ok`): a node that cannot
    /// publish a changed opinion must not go on being counted with the old one. A delete, so it
    /// passes where writes are refused (etcd's NOSPACE alarm).
    async fn withdraw_opinion(&self, node: &str, service: &str, entry_point: &str) -> Result<(), DcsError>;

    /// Read everything in one consistent look.
    async fn snapshot(&self) -> Result<Snapshot, DcsError>;

    /// Who leads, if anyone: what [`Dcs::snapshot`] says of it, read alone. A follower asks this
    /// every heartbeat, where the whole snapshot would carry every node's opinion of every entry
    /// point. The default reads the snapshot; implementations read the one key.
    async fn leader(&self) -> Result<Option<Leader>, DcsError> {
        Ok(self.snapshot().await?.leader)
    }

    /// Report every change of the cluster's data from now on: a change made after this returns
    /// is never missed (the stream closes instead).
    async fn watch(&self) -> Result<Watch, DcsError>;

    /// Ask for a switchover of `service` to `entry_point` (replaces a pending one).
    async fn request_switchover(&self, service: &str, entry_point: &str) -> Result<(), DcsError> {
        self.put_switchover(service, &SwitchoverRequest::to(entry_point)).await
    }

    /// Store `request` as `service`'s pending switchover, replacing a pending one (its
    /// `revision` is ignored: the store sets it).
    async fn put_switchover(&self, service: &str, request: &SwitchoverRequest) -> Result<(), DcsError>;

    /// Drop the pending switchover of `service`, as [`Purge`] says: any (an operator's), or only
    /// the request the leader means while its term leads. A request already gone is `Ok`.
    async fn purge_switchover(&self, service: &str, purge: Purge) -> Result<(), DcsError>;

    /// Put an entry point into maintenance or take it out.
    async fn set_maintenance(&self, service: &str, entry_point: &str, on: bool) -> Result<(), DcsError>;

    /// Pause the cluster (`Some`), replacing a pause in force, or resume it (`None`; resuming a
    /// cluster that is not paused is `Ok`).
    async fn set_pause(&self, pause: Option<&Pause>) -> Result<(), DcsError>;

    /// Record the desired entry point of `service`, only while `record.token`'s term leads:
    /// [`DcsError::Fenced`] otherwise. The leader calls it before every switch.
    async fn record_switch(&self, service: &str, record: &SwitchRecord) -> Result<(), DcsError>;

    /// Forget a dead node; [`DcsError::NodeAlive`] if it is alive.
    async fn decommission(&self, node: &str) -> Result<(), DcsError>;

    /// A provider's value.
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>, DcsError>;

    /// Set a provider's value.
    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> Result<(), DcsError>;

    /// Set a provider's value in one step only while `token`'s term leads and the stored value
    /// is still `previous` (`None`: absent): a compare-and-swap fenced like
    /// [`Dcs::record_switch`].
    ///
    /// - `Ok(true)`: written.
    /// - `Ok(false)`: the term leads, but the value is no longer `previous` (another writer came
    ///   first); nothing was written. The caller reads it again and decides afresh.
    /// - [`DcsError::Fenced`]: the term is over; nothing was written, whatever the value.
    ///
    /// What the leader reads, adds to and writes back, and what a successor reads to know what
    /// was done (a service's history), is written this way: neither a deposed leader's late
    /// write nor two leaders' writes in turn can overwrite an entry the other made.
    async fn kv_put_if(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        previous: Option<&str>,
        token: FencingToken,
    ) -> Result<bool, DcsError>;

    /// Remove a provider's value.
    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<(), DcsError>;

    /// A provider's values, sorted by key.
    async fn kv_list(&self, namespace: &str) -> Result<Vec<(String, String)>, DcsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dcs_error_says_what_its_caller_does() {
        use DcsErrorKind::*;
        let table = [
            (DcsError::Unavailable("no answer within 2s".into()), Retry),
            (DcsError::LeaseExpired(7), LeaseLost),
            (DcsError::Fenced(FencingToken(3)), TermOver),
            (DcsError::NodeAlive("n1".into()), Refused),
            (DcsError::UnknownNode("ghost".into()), Refused),
            (DcsError::Corrupt { key: "/c/records/web".into(), message: "not JSON".into() }, Unreadable),
        ];
        for (error, kind) in table {
            assert_eq!(error.kind(), kind, "{error}");
            // Only an unanswered call is DCS trouble to report, with its reason as it came.
            assert_eq!(error.unavailable(), (kind == Retry).then_some("no answer within 2s"), "{error}");
        }
    }
}
