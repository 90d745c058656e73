//! [`NodeHandle`]: status and operator commands, as the REST API and embedders see a node.
//!
//! Status is read fresh from the DCS, so every node answers alike, leader or not. Commands are
//! validated against the cluster's current view before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::leader::{service_view, Agreement, FAILBACK_NS, HISTORY_NS, LIVE_NS, SWITCHING_NS};
use super::{Inner, Metrics, ReloadError, ReloadReport, ReloadRequest};
use crate::config::{Config, ServiceConfig};
use crate::dcs::{DcsError, Leader, Purge, Snapshot, SwitchoverRequest};
use crate::engine::{self, Verdict};
use crate::model::{SwitchProgress, SwitchRecord};

/// A command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No such service in the config.
    #[error("unknown service '{0}'")]
    UnknownService(String),
    /// No such entry point in the service.
    #[error("service '{service}' has no entry point '{entry_point}'")]
    UnknownEntryPoint {
        /// The service.
        service: String,
        /// The entry point asked for.
        entry_point: String,
    },
    /// The switchover target is not healthy by majority.
    #[error("entry point '{entry_point}' of '{service}' is not healthy by majority ({verdict:?}); pick one of switchover-candidates")]
    Unhealthy {
        /// The service.
        service: String,
        /// The entry point asked for.
        entry_point: String,
        /// Its verdict.
        verdict: Verdict,
    },
    /// The switchover target is in maintenance.
    #[error("entry point '{entry_point}' of '{service}' is in maintenance")]
    InMaintenance {
        /// The service.
        service: String,
        /// The entry point asked for.
        entry_point: String,
    },
    /// Maintenance would take the last healthy entry point out of rotation.
    #[error(
        "entry point '{entry_point}' is the last healthy entry point of '{service}' in rotation; taking it out would leave \
         no entry point to fail over to (force it to do so anyway)"
    )]
    LastHealthy {
        /// The service.
        service: String,
        /// The entry point asked for.
        entry_point: String,
    },
    /// Only a dead node can be decommissioned.
    #[error("node '{0}' is alive; stop it first, only a dead node can be decommissioned")]
    NodeAlive(String),
    /// No such node.
    #[error("node '{0}' is not a member of the cluster")]
    UnknownNode(String),
    /// A scheduled switchover's time is not in the future.
    #[error("the time {0} (Unix seconds) is not in the future; leave the time out to switch over now")]
    TimeInThePast(u64),
    /// The DCS failed.
    #[error("{0}")]
    Dcs(DcsError),
}

impl CommandError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::UnknownService(_) => "unknown_service",
            CommandError::UnknownEntryPoint { .. } => "unknown_entry_point",
            CommandError::Unhealthy { .. } => "unhealthy_target",
            CommandError::InMaintenance { .. } => "target_in_maintenance",
            CommandError::LastHealthy { .. } => "last_healthy_entry_point",
            CommandError::NodeAlive(_) => "node_alive",
            CommandError::UnknownNode(_) => "unknown_node",
            CommandError::TimeInThePast(_) => "time_in_the_past",
            CommandError::Dcs(_) => "dcs_unavailable",
        }
    }
}

impl From<DcsError> for CommandError {
    fn from(e: DcsError) -> Self {
        match e {
            DcsError::NodeAlive(n) => CommandError::NodeAlive(n),
            DcsError::UnknownNode(n) => CommandError::UnknownNode(n),
            e => CommandError::Dcs(e),
        }
    }
}

/// One node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Whether its presence lease is alive.
    pub alive: bool,
    /// Whether it leads.
    pub leader: bool,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// `dhaf.cluster-name`.
    pub cluster: String,
    /// This node's name.
    pub node: String,
    /// The leader.
    pub leader: Option<Leader>,
    /// Every member node.
    pub nodes: Vec<NodeInfo>,
    /// This node's last DCS error, while the DCS is unreachable.
    pub dcs_error: Option<String>,
    /// Values in the DCS this node cannot read and leaves out, by key: why.
    pub dcs_skipped: BTreeMap<String, String>,
    /// When the DCS became unreachable (Unix seconds), while it is.
    pub dcs_error_since: Option<f64>,
    /// The DCS could not be read: leader, nodes and services are the last known ones.
    pub stale: bool,
    /// How old the stale state is, in seconds (none if nothing was ever read).
    pub snapshot_age_secs: Option<u64>,
    /// The cluster is paused: nodes check and report, nobody switches anything.
    pub paused: Option<PauseStatus>,
    /// Every service.
    pub services: Vec<ServiceStatus>,
}

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PauseStatus {
    /// When it was paused (Unix seconds).
    pub since: f64,
    /// Who paused it (the API token's name and the client's address).
    pub by: String,
}

/// One node's opinion of an entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VoteStatus {
    /// The node.
    pub node: String,
    /// Its opinion.
    pub healthy: bool,
    /// Why unhealthy.
    pub reason: Option<String>,
}

/// One entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EntryPointStatus {
    /// Name.
    pub name: String,
    /// Address.
    pub ip: IpAddr,
    /// 1 is the highest priority.
    pub priority: usize,
    /// The majority's verdict.
    pub verdict: Verdict,
    /// Out of rotation.
    pub maintenance: bool,
    /// Whether this is the desired entry point (the leader's record).
    pub current: bool,
    /// Whether the provider was last read back pointing here (`false` when not read yet).
    pub live: bool,
    /// Each alive node's opinion.
    pub votes: Vec<VoteStatus>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// The desired entry point: where the leader last recorded the service should point.
    pub current: Option<String>,
    /// Where the provider was last read back pointing (`""`: at no configured entry point);
    /// `None` when not read yet. It differs from `current` while a switch is failing.
    pub live: Option<String>,
    /// Whether the switcher can read the live state back at all (an `exec` switcher without a
    /// `current` script cannot): when it cannot, `live` stays `None` and nobody repairs drift.
    pub reads_back: bool,
    /// A switch that keeps failing: its target, attempts, since when and the last error.
    pub switching: Option<SwitchProgress>,
    /// The last switch recorded.
    pub last_switch: Option<SwitchRecord>,
    /// The pending switchover request's target.
    pub switchover: Option<String>,
    /// When a scheduled switchover request is due (Unix seconds); `None` for one asked for now.
    pub switchover_at: Option<u64>,
    /// A failback waiting out `failback-delay`: where to, and when.
    pub failback: Option<FailbackStatus>,
    /// No healthy entry point: dhaf holds still.
    pub panic: bool,
    /// The DCS could not be read: this is the last known state of the service.
    pub stale: bool,
    /// How old the stale state is, in seconds (none if nothing was ever read).
    pub snapshot_age_secs: Option<u64>,
    /// Served only by entry points in maintenance: no healthy entry point is left in rotation,
    /// so there is nothing to fail over to.
    pub degraded: bool,
    /// Alive nodes that define the service differently from the node answering, with what
    /// differs (its value first); empty while all agree.
    pub disagreement: Vec<NodeDisagreement>,
    /// Fewer than a majority of the alive nodes share the answering node's definition: the
    /// leader (if it shares it) holds the service still.
    pub held: bool,
    /// Entry points, by priority.
    pub entry_points: Vec<EntryPointStatus>,
}

/// A failback waiting out `failback-delay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailbackStatus {
    /// The entry point the service switches back to.
    pub to: String,
    /// When it is due (whole Unix seconds).
    pub at: u64,
    /// In how many seconds, by the answering node's clock (0 when due).
    pub in_secs: u64,
}

/// One node that defines a service differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeDisagreement {
    /// The node.
    pub node: String,
    /// What differs, `key: this node's ≠ that node's`.
    pub differences: Vec<String>,
}

/// What status reads beside the snapshot.
#[derive(Default)]
struct Extras {
    live: std::collections::BTreeMap<String, String>,
    switching: std::collections::BTreeMap<String, SwitchProgress>,
    failback: std::collections::BTreeMap<String, crate::model::PendingFailback>,
}

/// One past switch.
pub type HistoryEntry = SwitchRecord;

/// Why a status is not fresh, and how old it is.
struct Stale {
    age: Option<u64>,
    error: String,
}

fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Status and commands of a running [`super::Node`].
#[derive(Clone)]
pub struct NodeHandle {
    current: Arc<std::sync::Mutex<Arc<Inner>>>,
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
}

impl NodeHandle {
    pub(super) fn new(current: Arc<std::sync::Mutex<Arc<Inner>>>, reloads: tokio::sync::mpsc::Sender<ReloadRequest>) -> Self {
        NodeHandle { current, reloads }
    }

    /// The node's generation now (a reload replaces it).
    fn inner(&self) -> Arc<Inner> {
        self.current.lock().unwrap().clone()
    }

    /// The node's config (the one in force: a reload replaces it).
    pub fn config(&self) -> Arc<Config> {
        self.inner().config.clone()
    }

    /// This node's definition of each service, as it publishes them for agreement.
    pub fn definitions(&self) -> BTreeMap<String, crate::model::ServiceDefinition> {
        self.inner().definitions.clone()
    }

    /// Apply a new config in place, with the providers built from it: services, entry points,
    /// checkers, switchers and notifiers added, removed or changed, keeping the lease, the
    /// leadership and everything in the DCS. Refused, with the node going on as before, when a
    /// setting only a restart can change differs ([`ReloadError::RestartOnly`]) or a new
    /// provider fails to start.
    pub async fn reload(&self, config: Config, providers: crate::registry::Providers) -> Result<ReloadReport, ReloadError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.reloads.send(ReloadRequest { config, providers, reply }).await.map_err(|_| ReloadError::NotRunning)?;
        answer.await.unwrap_or(Err(ReloadError::NotRunning))
    }

    /// Counters since start.
    pub fn metrics(&self) -> Metrics {
        self.inner().observed.lock().unwrap().metrics.clone()
    }

    /// Whether this node leads now.
    pub fn is_leader(&self) -> bool {
        self.inner().local.lock().unwrap().leader_token.is_some()
    }

    /// Whether this node holds a live lease.
    pub fn is_registered(&self) -> bool {
        self.inner().local.lock().unwrap().lease.is_some()
    }

    /// Whether this node holds a lease it knows to be live now: registered, and the last
    /// acknowledged keep-alive is recent enough that the lease cannot have expired yet. Unlike
    /// [`NodeHandle::is_registered`], this turns false while the DCS is unreachable, before the
    /// node learns that its lease is gone.
    pub fn holds_lease(&self) -> bool {
        self.inner().live_lease().is_some()
    }

    fn service(&self, name: &str) -> Result<ServiceConfig, CommandError> {
        self.inner().config.service(name).cloned().ok_or_else(|| CommandError::UnknownService(name.into()))
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, CommandError> {
        Ok(self.inner().snapshot().await?)
    }

    /// A fresh snapshot, or while the DCS cannot be read the last one with its age (in
    /// seconds; none if nothing was ever read) and why.
    async fn snapshot_for_status(&self) -> (Arc<Snapshot>, Option<Stale>) {
        match self.snapshot().await {
            Ok(s) => (s, None),
            Err(e) => {
                let last = self.inner().observed.lock().unwrap().last_snapshot.clone();
                let age = last.as_ref().map(|(_, at)| at.elapsed().map_or(0, |d| d.as_secs()));
                (last.map(|(s, _)| s).unwrap_or_default(), Some(Stale { age, error: e.to_string() }))
            }
        }
    }

    /// The whole cluster's status. When the DCS cannot be read, the status says so in
    /// `dcs_error` (since `dcs_error_since`) and shows the last known state, marked `stale`.
    pub async fn status(&self) -> Result<NodeStatus, CommandError> {
        let (snap, stale) = self.snapshot_for_status().await;
        let (error, since) = {
            let inner = self.inner();
            let l = inner.observed.lock().unwrap();
            (l.dcs_error.clone(), l.dcs_error_since.map(unix_secs))
        };
        let config = &self.inner().config;
        let extras = self.extras().await;
        let leader_name = snap.leader.as_ref().map(|l| l.node.clone());
        let names: BTreeSet<&String> = snap.members.iter().chain(&snap.alive).collect();
        Ok(NodeStatus {
            cluster: config.dhaf.cluster_name.clone(),
            node: config.dhaf.node_name.clone(),
            leader: snap.leader.clone(),
            nodes: names
                .into_iter()
                .map(|n| NodeInfo { name: n.clone(), alive: snap.alive.contains(n), leader: leader_name.as_ref() == Some(n) })
                .collect(),
            dcs_error: stale.as_ref().map(|s| s.error.clone()).or(error),
            dcs_error_since: since,
            stale: stale.is_some(),
            snapshot_age_secs: stale.as_ref().and_then(|s| s.age),
            dcs_skipped: snap.skipped.clone(),
            paused: snap.paused.as_ref().map(|p| PauseStatus { since: unix_secs(p.since), by: p.by.clone() }),
            services: config.services.iter().map(|s| self.service_from(&snap, &extras, s, stale.as_ref())).collect(),
        })
    }

    /// What the leader keeps beside the snapshot for status: each service's live state and its
    /// failing switch. Unreadable values are left out (status never fails for them).
    async fn extras(&self) -> Extras {
        let list = |ns| async move { self.inner().dcs_call(self.inner().dcs.kv_list(ns)).await.unwrap_or_default() };
        Extras {
            live: list(LIVE_NS).await.into_iter().collect(),
            switching: list(SWITCHING_NS).await.into_iter().filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?))).collect(),
            failback: list(FAILBACK_NS).await.into_iter().filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?))).collect(),
        }
    }

    fn service_from(&self, snap: &Snapshot, extras: &Extras, svc: &ServiceConfig, stale: Option<&Stale>) -> ServiceStatus {
        let inner = self.inner();
        let agreement = match inner.definitions.get(&svc.name) {
            Some(own) => Agreement::of(snap, &svc.name, own, &inner.config.dhaf.node_name),
            None => Agreement::default(),
        };
        let view = service_view(snap, svc, &agreement);
        // The engine's own judgement: the verdicts and panic mode exactly as the leader sees them.
        let assessment = engine::assess(svc, inner.config.dhaf.min_votes, &view);
        let record = snap.records.get(&svc.name).cloned();
        let current = record.as_ref().map(|r| r.entry_point.clone());
        let reads_back = (inner.config.services.iter().position(|s| s.name == svc.name))
            .and_then(|i| inner.providers.services.get(i))
            .is_none_or(|p| p.switcher.reads_back());
        let live = extras.live.get(&svc.name).cloned().filter(|_| reads_back);
        // A failing switch is shown only while it is still the desired one.
        let switching = extras.switching.get(&svc.name).filter(|p| current.as_deref() == Some(p.to.as_str())).cloned();
        ServiceStatus {
            name: svc.name.clone(),
            domain: svc.domain.clone(),
            current: current.clone(),
            live: live.clone(),
            reads_back,
            switching,
            last_switch: record,
            switchover: view.switchover.clone(),
            switchover_at: view.switchover_at,
            // Only while it still makes sense: not yet where it would switch back to, and no
            // switchover pinning the service elsewhere (one scheduled for later pins nothing yet).
            failback: extras
                .failback
                .get(&svc.name)
                .filter(|f| current.as_deref() != Some(f.to.as_str()))
                .filter(|_| view.switchover.is_none() || view.switchover_at.is_some_and(|at| at > view.wall_secs))
                .map(|f| FailbackStatus {
                    to: f.to.clone(),
                    at: unix_secs(f.at).ceil() as u64,
                    in_secs: f.at.duration_since(super::wall_now()).map_or(0, |d| d.as_secs_f64().ceil() as u64),
                }),
            panic: assessment.panic,
            stale: stale.is_some(),
            snapshot_age_secs: stale.and_then(|s| s.age),
            degraded: assessment.degraded,
            disagreement: agreement
                .differing
                .iter()
                .map(|(node, differences)| NodeDisagreement { node: node.clone(), differences: differences.clone() })
                .collect(),
            held: view.out_of_agreement && !snap.alive.is_empty(),
            entry_points: svc
                .entry_points
                .iter()
                .zip(&view.entry_points)
                .enumerate()
                .map(|(i, (ep, v))| EntryPointStatus {
                    name: ep.name.clone(),
                    ip: ep.ip,
                    priority: i + 1,
                    verdict: assessment.verdicts[i],
                    maintenance: v.maintenance,
                    current: current.as_deref() == Some(ep.name.as_str()),
                    live: live.as_deref() == Some(ep.name.as_str()),
                    votes: v
                        .votes
                        .iter()
                        .map(|vote| VoteStatus {
                            node: vote.node.clone(),
                            healthy: vote.opinion.healthy,
                            reason: vote.opinion.reason.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// One service's status; while the DCS cannot be read, the last known one, marked `stale`.
    pub async fn service_status(&self, service: &str) -> Result<ServiceStatus, CommandError> {
        let svc = self.service(service)?;
        let (snap, stale) = self.snapshot_for_status().await;
        let extras = self.extras().await;
        Ok(self.service_from(&snap, &extras, &svc, stale.as_ref()))
    }

    /// One service's status read fresh from the DCS, for commands that act on it.
    async fn service_status_fresh(&self, service: &str) -> Result<ServiceStatus, CommandError> {
        let svc = self.service(service)?;
        let snap = self.snapshot().await?;
        let extras = self.extras().await;
        Ok(self.service_from(&snap, &extras, &svc, None))
    }

    /// Entry points a switchover may target: healthy by majority, not in maintenance.
    pub async fn switchover_candidates(&self, service: &str) -> Result<Vec<EntryPointStatus>, CommandError> {
        let status = self.service_status_fresh(service).await?;
        Ok(status.entry_points.into_iter().filter(|e| e.verdict == Verdict::Healthy && !e.maintenance).collect())
    }

    /// Ask the leader to switch `service` over to `entry_point` and keep it there while healthy.
    pub async fn switchover_to(&self, service: &str, entry_point: &str) -> Result<(), CommandError> {
        self.request_switchover(service, SwitchoverRequest::to(entry_point)).await
    }

    /// [`NodeHandle::switchover_to`], saying who asked (`by`: the API token's name and the
    /// client's address), which the switch's history entry then carries.
    pub async fn switchover_to_by(&self, service: &str, entry_point: &str, by: &str) -> Result<(), CommandError> {
        self.request_switchover(service, SwitchoverRequest { by: Some(by.to_string()), ..SwitchoverRequest::to(entry_point) }).await
    }

    /// Schedule a switchover of `service` to `entry_point` for wall-clock time `at` (replacing any
    /// pending request): whichever node leads then carries it out if the target is healthy and in
    /// rotation then, or refuses it ([`crate::model::Event::ScheduledSwitchoverRefused`]). `by`
    /// says who asked. Cancel it with [`NodeHandle::switchover_purge`].
    pub async fn switchover_at(
        &self,
        service: &str,
        entry_point: &str,
        at: std::time::SystemTime,
        by: Option<&str>,
    ) -> Result<(), CommandError> {
        let svc = self.service(service)?;
        if svc.entry_point_index(entry_point).is_none() {
            return Err(CommandError::UnknownEntryPoint { service: service.into(), entry_point: entry_point.into() });
        }
        let at = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if at <= super::model_wall_secs() {
            return Err(CommandError::TimeInThePast(at));
        }
        let request = SwitchoverRequest { by: by.map(String::from), at: Some(at), ..SwitchoverRequest::to(entry_point) };
        Ok(self.inner().dcs_call(self.inner().dcs.put_switchover(service, &request)).await?)
    }

    async fn request_switchover(&self, service: &str, request: SwitchoverRequest) -> Result<(), CommandError> {
        let entry_point = request.entry_point.as_str();
        let status = self.service_status_fresh(service).await?;
        let ep = status
            .entry_points
            .iter()
            .find(|e| e.name == entry_point)
            .ok_or_else(|| CommandError::UnknownEntryPoint { service: service.into(), entry_point: entry_point.into() })?;
        if ep.maintenance {
            return Err(CommandError::InMaintenance { service: service.into(), entry_point: entry_point.into() });
        }
        if ep.verdict != Verdict::Healthy {
            return Err(CommandError::Unhealthy { service: service.into(), entry_point: entry_point.into(), verdict: ep.verdict });
        }
        Ok(self.inner().dcs_call(self.inner().dcs.put_switchover(service, &request)).await?)
    }

    /// Drop `service`'s pending switchover; automatic rules (failback) apply again.
    pub async fn switchover_purge(&self, service: &str) -> Result<(), CommandError> {
        self.service(service)?;
        Ok(self.inner().dcs_call(self.inner().dcs.purge_switchover(service, Purge::Any)).await?)
    }

    /// Take an entry point out of rotation (`on`), or put it back.
    ///
    /// Taking out the last entry point that is healthy and in rotation is refused unless
    /// `force`d: the service would keep running on it with nothing to fail over to.
    pub async fn set_maintenance(&self, service: &str, entry_point: &str, on: bool, force: bool) -> Result<(), CommandError> {
        let svc = self.service(service)?;
        if svc.entry_point_index(entry_point).is_none() {
            return Err(CommandError::UnknownEntryPoint { service: service.into(), entry_point: entry_point.into() });
        }
        if on && !force {
            let status = self.service_status_fresh(service).await?;
            let in_rotation = |e: &&EntryPointStatus| e.verdict == Verdict::Healthy && !e.maintenance;
            let mut left = status.entry_points.iter().filter(in_rotation);
            if left.next().is_some_and(|e| e.name == entry_point) && left.next().is_none() {
                return Err(CommandError::LastHealthy { service: service.into(), entry_point: entry_point.into() });
            }
        }
        Ok(self.inner().dcs_call(self.inner().dcs.set_maintenance(service, entry_point, on)).await?)
    }

    /// Pause the whole cluster: every node goes on checking and reporting, and no leader switches
    /// anything (not even a failover) until [`NodeHandle::resume`]. `by` says who asked, for
    /// status and the notifiers. Pausing a paused cluster keeps the first pause.
    pub async fn pause(&self, by: &str) -> Result<(), CommandError> {
        if self.snapshot().await?.paused.is_some() {
            return Ok(());
        }
        let pause = crate::model::Pause { since: super::wall_now(), by: by.to_string() };
        Ok(self.inner().dcs_call(self.inner().dcs.set_pause(Some(&pause))).await?)
    }

    /// Resume a paused cluster: the leader decides and switches again at once. Resuming a
    /// cluster that is not paused does nothing.
    pub async fn resume(&self) -> Result<(), CommandError> {
        Ok(self.inner().dcs_call(self.inner().dcs.set_pause(None)).await?)
    }

    /// Forget a dead node.
    pub async fn decommission(&self, node: &str) -> Result<(), CommandError> {
        Ok(self.inner().dcs_call(self.inner().dcs.decommission(node)).await?)
    }

    /// The last switches of `service`, oldest first.
    pub async fn history(&self, service: &str) -> Result<Vec<HistoryEntry>, CommandError> {
        self.service(service)?;
        let raw = self.inner().dcs_call(self.inner().dcs.kv_get(HISTORY_NS, service)).await?;
        match raw {
            None => Ok(Vec::new()),
            Some(s) => serde_json::from_str(&s)
                .map_err(|e| CommandError::Dcs(DcsError::Corrupt { key: format!("{HISTORY_NS}/{service}"), message: e.to_string() })),
        }
    }

    /// This node's own latest opinions, by service and entry point.
    pub fn own_opinions(&self) -> Vec<super::OwnOpinion> {
        let inner = self.inner();
        let l = inner.observed.lock().unwrap();
        let mut out: Vec<_> = l
            .opinions
            .iter()
            .map(|((s, e), o)| super::OwnOpinion {
                service: s.clone(),
                entry_point: e.clone(),
                healthy: o.healthy,
                reason: o.reason.clone(),
            })
            .collect();
        out.sort();
        out
    }

    /// Every event from now on: what the notifiers are told, and this node gaining and losing
    /// the lead. A receiver that falls more than [`super::EVENT_BUFFER`] events behind misses
    /// the oldest ([`tokio::sync::broadcast::error::RecvError::Lagged`]); the stream ends when
    /// the node is dropped.
    ///
    /// ```no_run
    /// # async fn demo(handle: dhaf_core::runtime::NodeHandle) {
    /// use dhaf_core::model::Event;
    /// use dhaf_core::runtime::NodeEvent;
    ///
    /// let mut events = handle.subscribe();
    /// while let Ok(event) = events.recv().await {
    ///     match event {
    ///         NodeEvent::Event(Event::Switched { service, to, .. }) => println!("{service} now on {to}"),
    ///         NodeEvent::LeadershipLost { term } => println!("no longer leading ({term})"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<super::NodeEvent> {
        self.inner().observers.subscribe()
    }

    /// This node's leadership: `Some(term)` while it leads, `None` otherwise; wait for a change
    /// with [`tokio::sync::watch::Receiver::changed`].
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<Option<crate::model::FencingToken>> {
        self.inner().observers.leadership()
    }
}
