//! Election and leading: the only place a node switches.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{wall_now, Inner};
use crate::config::ServiceConfig;
use crate::dcs::{DcsError, Snapshot};
use crate::engine::{self, Action, ClusterState, EntryPointView, ServiceState, ServiceView, Vote};
use crate::model::{Event, FencingToken, SwitchKind, SwitchRecord};

/// The namespace of the switch history in the providers' store.
pub(crate) const HISTORY_NS: &str = "dhaf.history";
/// The namespace where the leader keeps which nodes it announced alive (`up`) or dead (`down`).
pub(crate) const NODES_NS: &str = "dhaf.nodes";
/// How many services may be switching at once.
const SWITCH_CONCURRENCY: usize = 16;
/// How many switches the history keeps per service.
pub(crate) const HISTORY_LEN: usize = 50;

/// Campaign whenever this node has a lease and nobody leads; lead while it wins.
pub(crate) async fn elect(inner: Arc<Inner>) {
    let node = inner.config.dhaf.node_name.clone();
    let mut watch = None;
    let mut announced: Option<FencingToken> = None;
    loop {
        let Some(lease) = inner.lease() else {
            tokio::time::sleep(Duration::from_millis(200).min(inner.config.dhaf.heartbeat_interval)).await;
            continue;
        };
        if watch.is_none() {
            watch = inner.dcs_call(inner.dcs.watch()).await.ok();
        }
        match inner.dcs_call(inner.dcs.campaign(&node, lease)).await {
            Ok(Some(token)) => {
                // Winning back the same term (after stepping down locally while the lease
                // survived) is no new leadership: it is announced and counted once.
                let fresh = announced != Some(token);
                announced = Some(token);
                {
                    let mut l = inner.local.lock().unwrap();
                    l.leader_token = Some(token);
                    if fresh {
                        l.metrics.leader_changes += 1;
                    }
                }
                if fresh {
                    tracing::info!(%token, "elected leader");
                    inner.notifications.send(&inner.config, engine::leader_elected(&node, token));
                }
                lead(inner.clone(), token).await;
                inner.step_down("leadership ended");
                watch = None;
                continue;
            }
            Ok(None) => {}
            Err(DcsError::LeaseExpired(_)) => {}
            Err(e) => tracing::debug!(error = %e, "campaign failed"),
        }
        // Wait for a change (the leader key may have been freed) or a heartbeat.
        let wait = inner.config.dhaf.heartbeat_interval;
        match watch.as_mut() {
            Some(w) => {
                tokio::select! {
                    alive = w.changed() => if !alive { watch = None },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => tokio::time::sleep(wait.min(Duration::from_secs(1))).await,
        }
    }
}

struct Leading {
    inner: Arc<Inner>,
    token: FencingToken,
    states: Vec<ServiceState>,
    /// The provider's live state, read back and not yet fed to the engine.
    live: Vec<Option<String>>,
    /// A switch was recorded but not carried out: repair it.
    unapplied: Vec<bool>,
    cluster: ClusterState,
    /// Bounds the switches in flight at once.
    limit: Arc<tokio::sync::Semaphore>,
    /// Switches under way; the leader keeps deciding while they run.
    running: JoinSet<Switching>,
    /// What each running switch is, so a switcher that panics is still a failed switch.
    which: HashMap<tokio::task::Id, (usize, Option<String>, SwitchRecord)>,
    /// Whether a service has a switch under way (it gets no second one meanwhile).
    switching: Vec<bool>,
}

/// A finished switch: the service, where it came from, the record and how it went.
type Switching = (usize, Option<String>, SwitchRecord, Outcome);

/// Lead under `token` until the term ends (lease lost, fenced, stepped down).
async fn lead(inner: Arc<Inner>, token: FencingToken) {
    let config = inner.config.clone();
    let n = config.services.len();
    let mut me = Leading {
        inner: inner.clone(),
        token,
        states: vec![ServiceState::default(); n],
        live: vec![None; n],
        unapplied: vec![false; n],
        cluster: ClusterState::default(),
        limit: Arc::new(tokio::sync::Semaphore::new(SWITCH_CONCURRENCY)),
        running: JoinSet::new(),
        which: HashMap::new(),
        switching: vec![false; n],
    };
    // What earlier leaders announced, so a node that died with its leader is still announced.
    if let Ok(known) = inner.dcs_call(inner.dcs.kv_list(NODES_NS)).await {
        me.cluster = ClusterState::with_known(known.into_iter().filter(|(_, v)| v == "up").map(|(k, _)| k).collect());
    }
    // Background work only the leader does (a bot's long polling), dropped with the term.
    let mut background = JoinSet::new();
    for (name, notifier) in &inner.providers.notifiers {
        let (name, notifier) = (name.clone(), notifier.clone());
        background.spawn(async move {
            if let Err(e) = notifier.lead().await {
                tracing::warn!(notifier = %name, error = %e, "notifier background work stopped");
            }
        });
    }
    let mut watch = inner.dcs_call(inner.dcs.watch()).await.ok();
    let mut next_reconcile = Instant::now();
    loop {
        if !inner.may_lead(token, Instant::now()) {
            break;
        }
        if Instant::now() >= next_reconcile {
            me.read_back().await;
            next_reconcile = Instant::now() + config.dhaf.reconcile_interval;
        }
        let snapshot = match inner.dcs_call(inner.dcs.snapshot()).await {
            Ok(s) => {
                // Kept for the status API, which shows it (marked stale) if the DCS goes away.
                inner.local.lock().unwrap().last_snapshot = Some((s.clone(), super::wall_now()));
                s
            }
            Err(_) => {
                // Without the DCS nothing is decided: the last switch stays in force.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if snapshot.leader.as_ref().map(|l| l.token) != Some(token) {
            tracing::warn!(%token, "the dcs names another leader");
            break;
        }
        let wake = match me.round(&snapshot).await {
            Ok(wake) => wake,
            Err(()) => break,
        };
        let mut until = (Instant::now() + config.dhaf.tact_interval).min(next_reconcile);
        if let Some(w) = wake {
            until = until.min(w.max(Instant::now() + Duration::from_millis(10)));
        }
        // A finished switch wakes the leader too: it decides again at once (a failure backs off).
        let mut over = false;
        tokio::select! {
            alive = async {
                match watch.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            } => if !alive { watch = None },
            _ = tokio::time::sleep_until(until) => {}
            Some(done) = me.running.join_next_with_id(), if !me.running.is_empty() => over = me.finish(done).await.is_err(),
        }
        if over {
            break;
        }
        if watch.is_none() {
            watch = inner.dcs_call(inner.dcs.watch()).await.ok();
        }
    }
    // Switches under way end by the lease deadline at the latest; their outcome is still told.
    while let Some(done) = me.running.join_next_with_id().await {
        let _ = me.finish(done).await;
    }
    background.abort_all();
}

/// The engine's view of one service from a snapshot.
pub(crate) fn service_view(snapshot: &Snapshot, svc: &ServiceConfig) -> ServiceView {
    let maintenance = snapshot.maintenance.get(&svc.name);
    ServiceView {
        alive_nodes: snapshot.alive.len(),
        entry_points: svc
            .entry_points
            .iter()
            .map(|ep| EntryPointView {
                votes: snapshot
                    .alive
                    .iter()
                    .filter_map(|node| {
                        let opinion = snapshot.opinions.get(node)?.get(&svc.name)?.get(&ep.name)?;
                        Some(Vote { node: node.clone(), opinion: opinion.clone() })
                    })
                    .collect(),
                maintenance: maintenance.is_some_and(|m| m.contains(&ep.name)),
            })
            .collect(),
        current: snapshot.records.get(&svc.name).map(|r| r.entry_point.clone()),
        live: None,
        switchover: snapshot.switchovers.get(&svc.name).map(|r| r.entry_point.clone()),
    }
}

impl Leading {
    /// Read every switcher's live state (while the term lasts).
    async fn read_back(&mut self) {
        for (i, p) in self.inner.providers.services.iter().enumerate() {
            tokio::select! {
                live = p.switcher.current() => match live {
                    Ok(live) => self.live[i] = Some(live.unwrap_or_default()),
                    Err(e) => tracing::warn!(service = %self.inner.config.services[i].name, error = %e, "cannot read the switcher's live state"),
                },
                _ = self.inner.term_ends(self.token) => break,
            }
        }
    }

    /// Decide and act on every service once. `Err` when the term is over.
    async fn round(&mut self, snapshot: &Snapshot) -> Result<Option<Instant>, ()> {
        let inner = self.inner.clone();
        let config = inner.config.clone();
        let alive: BTreeSet<String> = snapshot.alive.clone();
        for e in self.cluster.observe(&alive) {
            let (node, state) = match &e {
                Event::NodeWentDown { node } => (node.clone(), "down"),
                Event::NodeCameUp { node } => (node.clone(), "up"),
                _ => continue,
            };
            inner.notifications.send(&config, e);
            let _ = inner.dcs_call(inner.dcs.kv_put(NODES_NS, &node, state)).await;
        }
        let mut wake: Option<Instant> = None;
        let mut switches = Vec::new();
        for (i, svc) in config.services.iter().enumerate() {
            let mut view = service_view(snapshot, svc);
            // First term on a service without a record: adopt what the provider points at.
            if view.current.is_none() {
                if let Some(live) = self.live[i].clone().filter(|l| svc.entry_point_index(l).is_some()) {
                    let record = self.record(&live, SwitchKind::Initial);
                    match inner.dcs_call(inner.dcs.record_switch(&svc.name, &record)).await {
                        Ok(()) => view.current = Some(live),
                        Err(DcsError::Fenced(_)) => return Err(()),
                        Err(_) => continue,
                    }
                }
            }
            view.live = self.live[i].take();
            if self.unapplied[i] {
                view.live = Some(String::new());
            }
            let now = Instant::now();
            let decision = engine::decide(svc, config.dhaf.min_votes, &mut self.states[i], &view, now.into_std());
            if let Some(w) = decision.wake_at {
                let w = Instant::from_std(w);
                wake = Some(wake.map_or(w, |x| x.min(w)));
            }
            for action in decision.actions {
                // One switch per service at a time; the engine asks again once it is over.
                if matches!(action, Action::Switch { .. }) && self.switching[i] {
                    continue;
                }
                match action {
                    Action::Notify(event) => inner.notifications.send(&config, event),
                    Action::PurgeSwitchover { service, why } => {
                        tracing::info!(%service, why, "purging switchover");
                        match inner.dcs_call(inner.dcs.purge_switchover(&service, Some(self.token))).await {
                            Err(DcsError::Fenced(_)) => return Err(()),
                            Err(e) => tracing::warn!(error = %e, "cannot purge switchover"),
                            Ok(()) => {}
                        }
                    }
                    Action::Switch { to, kind, .. } => switches.push((i, view.current.clone(), to, kind)),
                }
            }
        }
        // Services switch concurrently, and in the background: one slow provider call must not
        // delay another service's failover, even one decided while it runs.
        for (i, from, to, kind) in switches {
            let record = self.record(&to, kind);
            let (inner, limit) = (inner.clone(), self.limit.clone());
            let task = self.running.spawn({
                let (from, record) = (from.clone(), record.clone());
                async move {
                    let _permit = limit.acquire_owned().await.expect("never closed");
                    let outcome = carry_out(&inner, i, &record).await;
                    (i, from, record, outcome)
                }
            });
            self.which.insert(task.id(), (i, from, record));
            self.switching[i] = true;
        }
        Ok(wake)
    }

    /// Take in a finished switch. `Err` when the term is over.
    async fn finish(&mut self, done: Result<(tokio::task::Id, Switching), tokio::task::JoinError>) -> Result<(), ()> {
        let (i, from, record, outcome) = match done {
            Ok((id, done)) => {
                self.which.remove(&id);
                done
            }
            Err(e) => {
                let Some((i, from, record)) = self.which.remove(&e.id()) else { return Ok(()) };
                (i, from, record, Outcome::Failed(format!("the switcher panicked: {e}")))
            }
        };
        self.switching[i] = false;
        match outcome {
            Outcome::Done => self.switched(i, from, &record).await,
            // The next round's decision waits out the backoff.
            Outcome::Failed(reason) => {
                self.failed(i, &record, reason);
            }
            Outcome::NotRecorded => {}
            Outcome::TermOver => return Err(()),
        }
        Ok(())
    }

    fn record(&self, entry_point: &str, kind: SwitchKind) -> SwitchRecord {
        SwitchRecord {
            entry_point: entry_point.into(),
            kind,
            token: self.token,
            node: self.inner.config.dhaf.node_name.clone(),
            at: wall_now(),
        }
    }

    async fn switched(&mut self, i: usize, from: Option<String>, record: &SwitchRecord) {
        let inner = self.inner.clone();
        let svc = &inner.config.services[i];
        self.states[i].switch_succeeded();
        self.unapplied[i] = false;
        inner.local.lock().unwrap().metrics.switches += 1;
        let from = if record.kind == SwitchKind::Repair { None } else { from };
        let event = Event::Switched { service: svc.name.clone(), from, to: record.entry_point.clone(), kind: record.kind };
        tracing::info!(summary = %event.summary(), "switched");
        inner.notifications.send(&inner.config, event);
        self.append_history(&svc.name, record).await;
    }

    /// A failed switch: back off, tell people once per streak; returns when to retry.
    fn failed(&mut self, i: usize, record: &SwitchRecord, reason: String) -> Instant {
        let inner = &self.inner;
        let svc = &inner.config.services[i];
        let now = Instant::now();
        self.unapplied[i] = true;
        let (backoff, first) = self.states[i].switch_failed(now.into_std());
        inner.local.lock().unwrap().metrics.switch_failures += 1;
        tracing::error!(service = %svc.name, to = %record.entry_point, %reason, retry_in = ?backoff, "switch failed");
        if first {
            inner
                .notifications
                .send(&inner.config, Event::SwitchFailed { service: svc.name.clone(), to: record.entry_point.clone(), reason });
        }
        now + backoff
    }

    async fn append_history(&self, service: &str, record: &SwitchRecord) {
        let dcs = &self.inner.dcs;
        let mut list: Vec<SwitchRecord> = match self.inner.dcs_call(dcs.kv_get(HISTORY_NS, service)).await {
            Ok(v) => v.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
            Err(_) => return,
        };
        list.push(record.clone());
        let excess = list.len().saturating_sub(HISTORY_LEN);
        list.drain(..excess);
        let _ = self.inner.dcs_call(dcs.kv_put(HISTORY_NS, service, &serde_json::to_string(&list).expect("plain data"))).await;
    }
}

/// How one switch went.
enum Outcome {
    /// Recorded and carried out.
    Done,
    /// Recorded, but the provider failed (or the lease deadline came first).
    Failed(String),
    /// The DCS could not record it: nothing was switched; the next round tries again.
    NotRecorded,
    /// The term is over (fenced, or the lease may have expired): nothing was switched.
    TermOver,
}

/// Record the switch fenced by its term, then carry it out before the lease deadline.
async fn carry_out(inner: &Inner, i: usize, record: &SwitchRecord) -> Outcome {
    let svc = &inner.config.services[i];
    let Some(ep) = svc.entry_points.iter().find(|e| e.name == record.entry_point) else { return Outcome::NotRecorded };
    if !inner.may_lead(record.token, Instant::now()) {
        return Outcome::TermOver;
    }
    match inner.dcs_call(inner.dcs.record_switch(&svc.name, record)).await {
        Ok(()) => {}
        Err(DcsError::Fenced(_)) => {
            inner.step_down("fenced: another term began");
            return Outcome::TermOver;
        }
        Err(e) => {
            tracing::warn!(service = %svc.name, error = %e, "cannot record the switch; not switching");
            return Outcome::NotRecorded;
        }
    }
    tracing::info!(service = %svc.name, to = %ep.name, kind = %record.kind, token = %record.token, "switching");
    let switcher = inner.providers.services[i].switcher.clone();
    tokio::select! {
        done = switcher.switch(ep, record.token) => match done {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(e.to_string()),
        },
        _ = inner.term_ends(record.token) => Outcome::Failed("the lease could not be renewed before the provider answered".to_string()),
    }
}
