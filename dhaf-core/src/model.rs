//! Domain types shared by every layer: opinions, health, switch records, events.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The result of one health check of one entry point, as a checker reports it.
///
/// A failed check is an observation, not an error: it carries the reason a person reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    /// The entry point answered as expected.
    Healthy,
    /// The entry point did not answer as expected.
    Unhealthy {
        /// What went wrong, for people ("connection refused", "HTTP 503, expected 2XX").
        reason: String,
    },
    /// The check could not run for a reason of this node's own (out of file descriptors or
    /// memory, cannot spawn the script): no evidence about the entry point, so the node abstains
    /// instead of voting it down.
    Abstain {
        /// What is wrong on this node, for people.
        reason: String,
    },
}

impl Health {
    /// An unhealthy result with the given reason.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Health::Unhealthy { reason: reason.into() }
    }

    /// A check that could not run for a local reason.
    pub fn abstain(reason: impl Into<String>) -> Self {
        Health::Abstain { reason: reason.into() }
    }

    /// Whether this is [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }

    /// The reason of an unhealthy result.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Healthy => None,
            Health::Unhealthy { reason } | Health::Abstain { reason } => Some(reason),
        }
    }
}

/// One node's (hysteresis-filtered) opinion of one entry point, as published to the DCS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opinion {
    /// Whether the node holds the entry point healthy.
    pub healthy: bool,
    /// Why the node holds it unhealthy (the last failed check's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Opinion {
    /// A healthy opinion.
    pub fn healthy() -> Self {
        Opinion { healthy: true, reason: None }
    }

    /// An unhealthy opinion with its reason.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Opinion { healthy: false, reason: Some(reason.into()) }
    }
}

/// An entry point of a service: a server that can take the service's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    /// The entry point's name, unique within its service.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
}

/// The leader term that made a cluster write: the leader key's revision in the DCS.
///
/// Every write a leader makes is guarded by it, so a deposed leader's late write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub i64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "term-{}", self.0)
    }
}

/// Why the cluster points a service where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchKind {
    /// The service had no current entry point yet (first start).
    Initial,
    /// Automatic: the current entry point went unhealthy.
    Failover,
    /// Manual: an operator asked for this entry point.
    Switchover,
    /// Automatic: back to a healthier-priority entry point that recovered ("switching").
    Failback,
    /// Automatic: the current entry point was put into maintenance.
    Maintenance,
    /// The provider's live state drifted from the desired one and was repaired.
    Repair,
}

impl SwitchKind {
    /// Every kind, for series that should exist (at zero) before the first switch of a kind.
    pub const ALL: [SwitchKind; 6] = [
        SwitchKind::Initial,
        SwitchKind::Failover,
        SwitchKind::Switchover,
        SwitchKind::Failback,
        SwitchKind::Maintenance,
        SwitchKind::Repair,
    ];
}

impl fmt::Display for SwitchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchKind::Initial => "initial",
            SwitchKind::Failover => "failover",
            SwitchKind::Switchover => "switchover",
            SwitchKind::Failback => "switching back",
            SwitchKind::Maintenance => "maintenance",
            SwitchKind::Repair => "repair",
        })
    }
}

/// The desired entry point of a service, recorded in the DCS by the leader before it switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRecord {
    /// The entry point the service points at.
    pub entry_point: String,
    /// Why.
    pub kind: SwitchKind,
    /// The leader term that wrote it.
    pub token: FencingToken,
    /// The leader node that wrote it.
    pub node: String,
    /// When (wall clock, for people; never compared across nodes).
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
    /// Who asked for it (the API token's name and the client's address), for a switchover
    /// requested through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// In the history only: the later term that wrote this entry and told the switch, as the
    /// leader that made it did not (`None`: the leader that made it told it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told_in: Option<FencingToken>,
}

/// The cluster is paused: every node goes on checking and reporting, and nobody switches
/// anything until it is resumed (for maintenance of the DCS or of a provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// When it was paused (wall clock, for people).
    #[serde(with = "unix_seconds")]
    pub since: SystemTime,
    /// Who paused it: the API token's name and the client's address, as the API knew them.
    pub by: String,
}

/// A failback waiting out `failback-delay`, as the leader keeps it in the DCS for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFailback {
    /// The entry point the service switches back to.
    pub to: String,
    /// When it is due (wall clock, for people).
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
}

/// A switch that is failing, as the leader keeps it in the DCS for status: what it tries, since
/// when, how often, and why it fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchProgress {
    /// The target entry point (already the desired one in the switch record).
    pub to: String,
    /// Why it is switched (a failover retried is still a failover).
    pub kind: SwitchKind,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the first attempt failed (wall clock, for people).
    #[serde(with = "unix_seconds")]
    pub failing_since: SystemTime,
    /// The provider's last error.
    pub last_error: String,
    /// When the leader tries again (wall clock): after its backoff, after the pause the provider
    /// asked for, or after the long wait that follows an error retrying cannot fix. `None` in
    /// progress kept by a node that did not say.
    #[serde(default, with = "unix_seconds_opt")]
    pub next_attempt: Option<SystemTime>,
}

/// Serialize [`SystemTime`] as fractional seconds since the Unix epoch (how times travel in the
/// DCS and the API; a detail of their serde, not part of the library).
pub(crate) mod unix_seconds {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        s.serialize_f64(secs)
    }

    /// Deserialize. A time the clock cannot hold (`1e300`) is an error, never a panic: it is
    /// read from the DCS, where anyone may have written anything.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs.max(0.0))
            .ok()
            .and_then(|since| UNIX_EPOCH.checked_add(since))
            .ok_or_else(|| serde::de::Error::custom(format!("time {secs} s since 1970 is out of range")))
    }
}

/// [`unix_seconds`] for a time that may be missing (`null` or absent).
pub(crate) mod unix_seconds_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::unix_seconds::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        #[derive(Deserialize)]
        struct Time(#[serde(with = "super::unix_seconds")] SystemTime);
        Ok(Option::<Time>::deserialize(d)?.map(|t| t.0))
    }
}

/// What a node publishes of one service's definition, so that the nodes can tell whether they
/// agree on it (see [`crate::config::ServiceConfig::definition`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDefinition {
    /// A digest of `settings`: nodes with equal fingerprints decide the service alike.
    pub fingerprint: String,
    /// Every setting that changes a decision, by key path, as text. Secrets appear only as
    /// `(secret)`; node-local settings (script paths, `env`) not at all.
    pub settings: std::collections::BTreeMap<String, String>,
}

impl ServiceDefinition {
    /// How `other` differs from this definition, one line per setting: `key: ours ≠ theirs`.
    pub fn differences(&self, other: &ServiceDefinition) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> = self.settings.keys().chain(other.settings.keys()).collect();
        let shown = |v: Option<&String>| v.map_or("(not set)".to_string(), Clone::clone);
        keys.into_iter()
            .filter(|k| self.settings.get(*k) != other.settings.get(*k))
            .map(|k| format!("{k}: {} \u{2260} {}", shown(self.settings.get(k)), shown(other.settings.get(k))))
            .collect()
    }
}

/// Something that happened, told to the notifiers once per transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The majority now holds an entry point unhealthy.
    EntryPointWentDown {
        /// Service.
        service: String,
        /// Entry point.
        entry_point: String,
        /// The unhealthy nodes' reasons, `node: reason`.
        reasons: Vec<String>,
    },
    /// The majority holds an entry point healthy again.
    EntryPointCameUp {
        /// Service.
        service: String,
        /// Entry point.
        entry_point: String,
    },
    /// The service now points at another entry point.
    Switched {
        /// Service.
        service: String,
        /// The previous entry point, if any.
        from: Option<String>,
        /// The new entry point.
        to: String,
        /// Failover, switchover, switching back, …
        kind: SwitchKind,
    },
    /// A switch failed at the provider; it is retried with backoff.
    SwitchFailed {
        /// Service.
        service: String,
        /// The entry point dhaf tried to switch to.
        to: String,
        /// The provider's error.
        reason: String,
    },
    /// A switch keeps failing at the provider (told once, after
    /// [`crate::engine::STILL_FAILING_AFTER`] attempts); the previous entry point stays in force.
    SwitchStillFailing {
        /// Service.
        service: String,
        /// The entry point dhaf keeps trying to switch to.
        to: String,
        /// Failed attempts so far.
        attempts: u32,
        /// The provider's last error.
        reason: String,
    },
    /// A switch that had failed went through in the end.
    SwitchRecovered {
        /// Service.
        service: String,
        /// The entry point the service now points at.
        to: String,
        /// How many attempts had failed before.
        attempts: u32,
    },
    /// A pending switchover request was dropped.
    SwitchoverPurged {
        /// Service.
        service: String,
        /// The switchover's target.
        entry_point: String,
        /// Why it was dropped.
        why: String,
    },
    /// No entry point of the service is healthy (panic mode): dhaf leaves it as it is.
    ServiceWentDown {
        /// Service.
        service: String,
    },
    /// An entry point of the service is healthy again.
    ServiceCameUp {
        /// Service.
        service: String,
    },
    /// A dhaf node stopped renewing its presence.
    NodeWentDown {
        /// Node.
        node: String,
    },
    /// A dhaf node (re)joined the cluster.
    NodeCameUp {
        /// Node.
        node: String,
    },
    /// A node became the cluster leader.
    LeaderElected {
        /// Node.
        node: String,
        /// Its term.
        token: FencingToken,
    },
    /// Alive nodes define the service differently from the leader: the leader holds the service
    /// still while fewer than a majority share its definition, and the others' votes do not count.
    DefinitionsDisagree {
        /// Service.
        service: String,
        /// The nodes whose definition differs (or who published none).
        nodes: Vec<String>,
        /// What differs, `node: key: leader's ≠ node's`, at most a few lines.
        differences: Vec<String>,
        /// Whether a majority still shares the leader's definition (the service is still placed).
        held: bool,
    },
    /// Every alive node defines the service as the leader does again.
    DefinitionsAgree {
        /// Service.
        service: String,
    },
    /// This node lost the DCS: it keeps the last switch in force and does not switch.
    DcsUnavailable {
        /// Node.
        node: String,
        /// The DCS error.
        reason: String,
    },
    /// This node reaches the DCS again.
    DcsRecovered {
        /// Node.
        node: String,
    },
    /// A scheduled switchover came due and was refused: its target was not healthy (or not in
    /// rotation) then.
    ScheduledSwitchoverRefused {
        /// Service.
        service: String,
        /// The switchover's target.
        entry_point: String,
        /// Why it was refused.
        why: String,
    },
    /// The cluster was paused: nodes go on checking and reporting, nobody switches anything.
    Paused {
        /// Who paused it.
        by: String,
    },
    /// The cluster was resumed: switching goes on as usual.
    Resumed {},
}

impl Event {
    /// The service this event is about, if any.
    pub fn service(&self) -> Option<&str> {
        match self {
            Event::EntryPointWentDown { service, .. }
            | Event::EntryPointCameUp { service, .. }
            | Event::Switched { service, .. }
            | Event::SwitchFailed { service, .. }
            | Event::SwitchStillFailing { service, .. }
            | Event::SwitchRecovered { service, .. }
            | Event::SwitchoverPurged { service, .. }
            | Event::ScheduledSwitchoverRefused { service, .. }
            | Event::ServiceWentDown { service }
            | Event::ServiceCameUp { service }
            | Event::DefinitionsDisagree { service, .. }
            | Event::DefinitionsAgree { service } => Some(service),
            _ => None,
        }
    }

    /// A one-line summary for people (subjects, logs).
    pub fn summary(&self) -> String {
        match self {
            Event::EntryPointWentDown { service, entry_point, .. } => {
                format!("{service}: entry point {entry_point} is down")
            }
            Event::EntryPointCameUp { service, entry_point } => {
                format!("{service}: entry point {entry_point} is up")
            }
            Event::Switched { service, from, to, kind } => match from {
                Some(from) => format!("{service}: {kind} from {from} to {to}"),
                None => format!("{service}: {kind} to {to}"),
            },
            Event::SwitchFailed { service, to, reason } => {
                format!("{service}: switch to {to} failed: {reason}")
            }
            Event::SwitchStillFailing { service, to, attempts, reason } => {
                format!("{service}: switch to {to} still failing after {attempts} attempts: {reason}")
            }
            Event::SwitchRecovered { service, to, attempts } => {
                format!("{service}: switch to {to} went through after {attempts} failed attempts")
            }
            Event::SwitchoverPurged { service, entry_point, why } => {
                format!("{service}: switchover to {entry_point} purged: {why}")
            }
            Event::ScheduledSwitchoverRefused { service, entry_point, why } => {
                format!("{service}: scheduled switchover to {entry_point} refused: {why}")
            }
            Event::ServiceWentDown { service } => {
                format!("{service}: no healthy entry point (panic mode), nothing switched")
            }
            Event::ServiceCameUp { service } => format!("{service}: a healthy entry point is back"),
            Event::NodeWentDown { node } => format!("node {node} is down"),
            Event::NodeCameUp { node } => format!("node {node} is up"),
            Event::LeaderElected { node, token } => format!("node {node} is the new leader ({token})"),
            Event::DcsUnavailable { node, reason } => {
                format!("node {node} lost the DCS ({reason}); last switch stays in force")
            }
            Event::DcsRecovered { node } => format!("node {node} reaches the DCS again"),
            Event::Paused { by } => format!("the cluster is paused by {by}: nothing is switched until it is resumed"),
            Event::Resumed {} => "the cluster is resumed: switching goes on as usual".to_string(),
            Event::DefinitionsDisagree { service, nodes, held, .. } => format!(
                "{service}: node{} {} define{} the service differently{}",
                if nodes.len() == 1 { "" } else { "s" },
                nodes.join(", "),
                if nodes.len() == 1 { "s" } else { "" },
                if *held { "; the service is held still" } else { "" }
            ),
            Event::DefinitionsAgree { service } => format!("{service}: every node defines the service alike again"),
        }
    }
}

/// An event with its context, as handed to notifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The cluster's name.
    pub cluster: String,
    /// The node that sends it (the leader, or the node itself for its own DCS trouble).
    pub node: String,
    /// What happened.
    pub event: Event,
    /// The entry points of the event's service with their addresses (empty for cluster events),
    /// so a person reads where `ep-1` is.
    #[serde(default)]
    pub entry_points: Vec<EntryPoint>,
    /// When (UTC).
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
}
