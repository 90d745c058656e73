//! The node runtime: the async [`Node`] that drives the pure engine with real I/O.
//!
//! One task per concern, all driven by the same config:
//!
//! ```text
//!  presence ── register under a lease, keep it alive every heartbeat-interval; keep the
//!     │        lease deadline (send time of the last acknowledged keep-alive + TTL − margin)
//!     ▼
//!  checks ──── every tact: check every entry point (bounded concurrency), rise/fall
//!     │        hysteresis, publish an opinion only when it changes (bound to the lease)
//!     ▼
//!  election ── take the vacant leader key (CAS, bound to the lease); its revision is the term
//!     │
//!     ▼
//!  leading ─── on every DCS change (and a timer): snapshot → engine::decide → actions;
//!              record each switch fenced by the term, then call the switcher before the
//!              lease deadline; read the provider back and repair drift
//!  notifying ─ a queue per notifier, retried with backoff, never in the way of a switch
//! ```
//!
//! Every DCS call is bounded by a timeout. A node that cannot reach the DCS keeps the last switch
//! in force and never switches; a leader that cannot renew its lease steps down on its own before
//! the lease can expire.

mod builder;
mod handle;
mod leader;
mod metrics;
mod notify;
mod observe;
mod reload;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::dcs::{Dcs, DcsError, DcsErrorKind, LeaseId, Snapshot};
use crate::engine::hysteresis::Hysteresis;
use crate::model::{Event, FencingToken, Health, Opinion, ServiceDefinition};
use crate::provider::ProviderError;
use crate::registry::Providers;

pub use builder::NodeBuilder;
pub use handle::{
    CommandError, EntryPointStatus, FailbackStatus, HistoryEntry, NodeDisagreement, NodeHandle, NodeStatus, PauseStatus, ServiceStatus,
    VoteStatus,
};
pub use metrics::{EntryPointMetrics, Histogram, Metrics, ServiceMetrics, CHECK_DURATION_BUCKETS, SWITCH_DURATION_BUCKETS};
use notify::Notifications;
use observe::Observers;
pub use observe::{NodeEvent, OwnOpinion, EVENT_BUFFER};
pub use reload::{restart_only_settings, DefinitionsDiff, ReloadError, ReloadReport};

/// The runtime failed to start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A provider's `init` failed.
    #[error("{what} failed to start: {error}")]
    ProviderInit {
        /// Which provider (`service main: switcher`).
        what: String,
        /// Why.
        error: ProviderError,
    },
    /// The config names more than one provider list than were built.
    #[error("providers do not match the config: {0}")]
    Mismatch(String),
    /// The config breaks a rule ([`Config::validate`]); the node does not start.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// What this node's safety rests on: its lease, the deadline past which it may not act, and its
/// term. Shared by every generation (a reload keeps them). Nothing else lives here, so the
/// lock that guards them is never held for bookkeeping.
#[derive(Default)]
pub(crate) struct Local {
    pub lease: Option<LeaseId>,
    /// After this instant the lease may have expired: the node must not act as leader.
    pub lease_deadline: Option<Instant>,
    pub leader_token: Option<FencingToken>,
    /// The lease under which this node's service definitions are published.
    pub definitions_published: Option<LeaseId>,
    /// The last term this node announced winning: winning it back (after a reload, or a local
    /// step-down while the lease survived) is no new leadership.
    pub announced_term: Option<FencingToken>,
}

/// What this node has seen and told, for status, metrics and notifications: never consulted to
/// decide whether the node may act. Shared by every generation.
#[derive(Default)]
pub(crate) struct Observed {
    /// The DCS trouble told to the operators, until its recovery is told.
    pub dcs_error: Option<String>,
    /// When a DCS call last failed for want of the DCS.
    pub dcs_failed_at: Option<Instant>,
    /// When the current DCS trouble began (wall clock, for people).
    pub dcs_error_since: Option<SystemTime>,
    /// The last snapshot read from the DCS and when, shown (marked stale) while the DCS is away.
    pub last_snapshot: Option<(Arc<Snapshot>, SystemTime)>,
    /// This node's own opinions: (service, entry point) → opinion.
    pub opinions: HashMap<(String, String), Opinion>,
    pub last_check: HashMap<(String, String), Health>,
    pub metrics: Metrics,
    /// The unreadable DCS values already logged, by key: why.
    pub skipped: BTreeMap<String, String>,
}

/// One generation of a node: its config with the providers built from it. A reload starts a new
/// generation that shares the lease, the leadership ([`Local`]) and what the node has seen and told
/// ([`Observed`]) with the one it replaces.
pub(crate) struct Inner {
    pub config: Arc<Config>,
    pub dcs: Arc<dyn Dcs>,
    pub providers: Providers,
    pub local: Arc<Mutex<Local>>,
    pub observed: Arc<Mutex<Observed>>,
    /// This node's definition of each service, by service name, as published for agreement.
    pub definitions: BTreeMap<String, ServiceDefinition>,
    /// Bumped whenever the lease changes (new registration or loss).
    pub lease_epoch: Arc<crate::signal::Epoch>,
    pub notifications: Arc<Notifications>,
    /// Set when a reload replaces this generation: its tasks end (the leader after its switches
    /// under way) so the next generation's take over.
    pub retire: crate::signal::Latch,
    /// The node's subscribers (events, leadership), the same for every generation.
    pub observers: Arc<Observers>,
}

impl Inner {
    /// A generation over `config` and `providers`; the rest from `like` (the one it replaces),
    /// or new.
    fn generation(
        config: Arc<Config>,
        providers: Providers,
        dcs: Arc<dyn Dcs>,
        like: Option<&Inner>,
        notifications: Arc<Notifications>,
    ) -> Inner {
        let definitions = config.services.iter().map(|s| (s.name.clone(), s.definition(config.dhaf.min_votes))).collect();
        let (local, observed, lease_epoch, observers) = match like {
            Some(old) => (old.local.clone(), old.observed.clone(), old.lease_epoch.clone(), old.observers.clone()),
            None => (Arc::default(), Arc::default(), Arc::default(), notifications.observers()),
        };
        Inner { config, dcs, providers, local, observed, definitions, lease_epoch, notifications, retire: Default::default(), observers }
    }

    /// Whether a reload replaced this generation.
    pub fn retired(&self) -> bool {
        self.retire.is_set()
    }

    /// Wait until a reload replaces this generation.
    pub async fn retiring(&self) {
        self.retire.wait().await;
    }

    /// The timeout of one DCS call: long enough to ride out an etcd leader election (about a
    /// second), short enough that a dead DCS is noticed well within the lease.
    pub fn dcs_timeout(&self) -> Duration {
        (self.config.dhaf.healthy_node_status_ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(5))
    }

    pub async fn dcs_call<T>(&self, fut: impl Future<Output = Result<T, DcsError>>) -> Result<T, DcsError> {
        let res = match tokio::time::timeout(self.dcs_timeout(), fut).await {
            Ok(r) => r,
            Err(_) => Err(DcsError::Unavailable(format!("no answer within {:?}", self.dcs_timeout()))),
        };
        match &res {
            Ok(_) => self.dcs_ok(),
            Err(e) => {
                if let Some(why) = e.unavailable() {
                    self.dcs_trouble(why);
                }
            }
        }
        res
    }

    /// Read a snapshot; a value it had to leave out is logged once, not on every read. The
    /// snapshot is kept (shared, not copied) as the last known state that
    /// status shows, marked stale, while the DCS is away.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, DcsError> {
        let snap = Arc::new(self.dcs_call(self.dcs.snapshot()).await?);
        let mut l = self.observed.lock().unwrap();
        l.last_snapshot = Some((snap.clone(), wall_now()));
        if l.skipped != snap.skipped {
            for (key, why) in &snap.skipped {
                if l.skipped.get(key) != Some(why) {
                    tracing::warn!(key, why, "ignoring a dcs value this node cannot read: it counts for nothing");
                }
            }
            for key in l.skipped.keys().filter(|k| !snap.skipped.contains_key(*k)) {
                tracing::info!(key, "a dcs value left out before is readable again or gone");
            }
            l.skipped = snap.skipped.clone();
        }
        drop(l);
        Ok(snap)
    }

    /// How long no DCS call may fail before the DCS counts as recovered.
    ///
    /// A DCS may refuse only some calls: under etcd's NOSPACE alarm writes fail while keep-alives
    /// and reads pass. Telling on every change of the last call's outcome flooded operators (59
    /// "unavailable" and 58 "recovered" in a minute). A failing write is retried every tact
    /// (an opinion not yet published) or every round (a switch not yet recorded), so a few tacts
    /// without any failure mean the writes pass again.
    fn dcs_quiet(&self) -> Duration {
        let dhaf = &self.config.dhaf;
        3 * dhaf.tact_interval.max(dhaf.heartbeat_interval).max(self.dcs_timeout())
    }

    /// A call failed for want of the DCS: told once, with what failed, until recovery is told.
    fn dcs_trouble(&self, error: &str) {
        let first = {
            let mut l = self.observed.lock().unwrap();
            l.metrics.dcs_errors += 1;
            l.dcs_failed_at = Some(Instant::now());
            l.dcs_error_since.get_or_insert_with(wall_now);
            l.dcs_error.replace(error.to_string()).is_none()
        };
        if first {
            self.notifications
                .send(&self.config, Event::DcsUnavailable { node: self.config.dhaf.node_name.clone(), reason: error.to_string() });
        }
    }

    /// A call succeeded: recovery is told once no call has failed for a while, not on the first
    /// success, which may be a read passing while writes still fail.
    fn dcs_ok(&self) {
        let recovered = {
            let mut l = self.observed.lock().unwrap();
            let quiet = l.dcs_failed_at.is_none_or(|at| at.elapsed() >= self.dcs_quiet());
            let recovered = quiet && l.dcs_error.take().is_some();
            if recovered {
                l.dcs_error_since = None;
            }
            recovered
        };
        if recovered {
            self.notifications.send(&self.config, Event::DcsRecovered { node: self.config.dhaf.node_name.clone() });
        }
    }

    /// Give up this node's presence (revoke its lease): it abstains on everything and leads
    /// nothing until it registers again.
    async fn withdraw(&self, why: &str) -> Result<(), DcsError> {
        let Some(lease) = self.lease() else { return Ok(()) };
        self.dcs_call(self.dcs.revoke(lease)).await?;
        tracing::warn!(lease, why, "withdrew from the cluster: revoked the lease");
        {
            let mut l = self.local.lock().unwrap();
            if l.lease == Some(lease) {
                l.lease = None;
                l.lease_deadline = None;
            }
        }
        self.step_down(why);
        self.lease_epoch.bump();
        Ok(())
    }

    pub fn lease(&self) -> Option<LeaseId> {
        self.local.lock().unwrap().lease
    }

    /// This node's lease while it is known to be live: its deadline has not passed.
    pub fn live_lease(&self) -> Option<LeaseId> {
        let l = self.local.lock().unwrap();
        l.lease.filter(|_| l.lease_deadline.is_some_and(|d| Instant::now() < d))
    }

    /// Whether this node may still act under `token` at `now`.
    pub fn may_lead(&self, token: FencingToken, now: Instant) -> bool {
        let l = self.local.lock().unwrap();
        l.leader_token == Some(token) && l.lease_deadline.is_some_and(|d| now < d)
    }

    /// Resolves once this node may no longer act under `token`: leadership ended, or the lease
    /// deadline passed. Every acknowledged renewal moves the deadline, so a long provider call
    /// under a lease that keeps being renewed is not cut short.
    pub async fn term_ends(&self, token: FencingToken) {
        loop {
            let deadline = {
                let l = self.local.lock().unwrap();
                match l.lease_deadline {
                    Some(d) if l.leader_token == Some(token) && Instant::now() < d => d,
                    _ => return,
                }
            };
            tokio::time::sleep_until(deadline).await;
        }
    }

    pub fn step_down(&self, why: &str) {
        let mut l = self.local.lock().unwrap();
        if let Some(token) = l.leader_token.take() {
            tracing::warn!(%token, why, "stepping down");
            self.observers.lost(token);
        }
    }
}

/// A dhaf node: checks, votes, and when it leads, switches.
///
/// ```no_run
/// # async fn demo(config: dhaf_core::config::Config, registry: dhaf_core::registry::Registry) {
/// use std::sync::Arc;
/// use dhaf_core::dcs::memory::MemoryDcs;
/// use dhaf_core::runtime::Node;
///
/// let dcs = Arc::new(MemoryDcs::new(&config.dhaf.cluster_name));
/// let providers = registry.build(&config, dcs.clone()).expect("valid config");
/// let node = Node::new(config, dcs, providers);
/// let handle = node.handle(); // status and commands, e.g. for the REST API
/// node.run(async { tokio::signal::ctrl_c().await.ok(); }).await.expect("providers start");
/// # }
/// ```
pub struct Node {
    current: Arc<Mutex<Arc<Inner>>>,
    reloads: mpsc::Receiver<ReloadRequest>,
    reload_tx: mpsc::Sender<ReloadRequest>,
}

/// A new config for a running node, with the providers built from it.
pub(crate) struct ReloadRequest {
    pub config: Config,
    pub providers: Providers,
    pub reply: oneshot::Sender<Result<ReloadReport, ReloadError>>,
}

impl Node {
    /// A node with its config, DCS and providers (built by the registry from the same config).
    ///
    /// [`Node::builder`] builds the providers from the config itself, so the two cannot disagree.
    pub fn new(config: Config, dcs: Arc<dyn Dcs>, providers: Providers) -> Node {
        let notifications = Arc::new(Notifications::start(&providers.notifiers).observed_by(Arc::new(Observers::new())));
        let inner = Inner::generation(Arc::new(config), providers, dcs, None, notifications);
        let (reload_tx, reloads) = mpsc::channel(4);
        Node { current: Arc::new(Mutex::new(Arc::new(inner))), reloads, reload_tx }
    }

    /// A handle for status and commands (the REST API's view of the node).
    pub fn handle(&self) -> NodeHandle {
        NodeHandle::new(self.current.clone(), self.reload_tx.clone())
    }

    /// Validate the config and initialize the providers (each `init` bounded by 60 s), then run
    /// until `shutdown` completes.
    ///
    /// On shutdown the node's tasks end at once (a switch under way is cut short; its record in
    /// the DCS lets the next leader finish it), then it resigns the lead and revokes its lease so
    /// the other nodes take over at once rather than after the lease's TTL (each DCS call bounded
    /// by a third of `healthy-node-status-ttl`, 1–5 s), and gives queued notifications 5 s more:
    /// about 15 s at most. A node dropped without shutdown (its task aborted) is like a crash: the
    /// others take over when its lease expires.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let Node { current, mut reloads, reload_tx } = self;
        // Requests that arrive after the node stops are answered "not running".
        drop(reload_tx);
        let mut inner = current.lock().unwrap().clone();
        inner.config.validate()?;
        inner.notifications.start_parked();
        if inner.providers.services.len() != inner.config.services.len() {
            return Err(NodeError::Mismatch(format!(
                "{} services configured, {} built",
                inner.config.services.len(),
                inner.providers.services.len()
            )));
        }
        // Each provider's start is bounded: one that hangs cannot keep the node from starting
        // silently; it fails naming the provider.
        for (svc, p) in inner.config.services.iter().zip(&inner.providers.services) {
            bounded_init(format!("service {}: health checker", svc.name), p.checker.init()).await?;
            bounded_init(format!("service {}: switcher", svc.name), p.switcher.init()).await?;
        }
        tracing::info!(node = %inner.config.dhaf.node_name, cluster = %inner.config.dhaf.cluster_name, services = inner.config.services.len(), "node started");

        let mut tasks = JoinSet::new();
        let mut running = HashMap::new();
        for task in [Task::Presence, Task::Checks, Task::Election] {
            spawn_task(&mut tasks, &mut running, &inner, task, Duration::ZERO);
        }
        // A task that dies (a panic) would leave the node half-alive: e.g. registered and voting
        // but never leading again, or leading while holding the leader key from everyone else.
        tokio::pin!(shutdown);
        loop {
            // In a fixed order (`biased`), so a simulated run replays: the stop first, then a
            // reload (which starts every task afresh, a dead one too), then a task that died;
            // what waits is taken at the next turn, nothing is lost.
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(req) = reloads.recv() => {
                    let ReloadRequest { config, providers, reply } = req;
                    match next_generation(&inner, config, providers).await {
                        Err(e) => {
                            tracing::error!(error = %e, "config reload refused; going on with the running config");
                            let _ = reply.send(Err(e));
                        }
                        Ok((next, report)) => {
                            retire(&inner, &mut tasks, &mut running).await;
                            withdraw_removed(&inner, &next).await;
                            // The new definitions are published before the new leader looks.
                            next.local.lock().unwrap().definitions_published = None;
                            publish_definitions(&next).await;
                            if !Arc::ptr_eq(&inner.notifications, &next.notifications) {
                                let old = inner.notifications.clone();
                                tokio::spawn(async move { old.flush(Duration::from_secs(30)).await });
                            }
                            inner = Arc::new(next);
                            *current.lock().unwrap() = inner.clone();
                            for task in [Task::Presence, Task::Checks, Task::Election] {
                                spawn_task(&mut tasks, &mut running, &inner, task, Duration::ZERO);
                            }
                            tracing::info!(%report, "config reloaded");
                            let _ = reply.send(Ok(report));
                        }
                    }
                }
                Some(done) = tasks.join_next_with_id() => {
                    let (id, why) = match done {
                        Ok((id, ())) => (id, "ended".to_string()),
                        Err(e) => (e.id(), e.to_string()),
                    };
                    let Some((task, _)) = running.remove(&id) else { continue };
                    tracing::error!(?task, error = %why, "a node task died; restarting it");
                    if task == Task::Election {
                        inner.step_down("the election task died");
                    }
                    spawn_task(&mut tasks, &mut running, &inner, task, Duration::from_secs(1));
                }
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}

        tracing::info!("shutting down: resigning and revoking the lease");
        let (token, lease) = {
            let mut l = inner.local.lock().unwrap();
            (l.leader_token.take(), l.lease.take())
        };
        if let Some(token) = token {
            inner.observers.lost(token);
            let _ = inner.dcs_call(inner.dcs.resign(token)).await;
        }
        if let Some(lease) = lease {
            let _ = inner.dcs_call(inner.dcs.revoke(lease)).await;
        }
        inner.notifications.flush(Duration::from_secs(5)).await;
        Ok(())
    }
}

/// The longest a provider's `init` may take.
const PROVIDER_INIT_TIMEOUT: Duration = Duration::from_secs(60);

async fn bounded_init(what: String, init: impl Future<Output = Result<(), ProviderError>>) -> Result<(), NodeError> {
    match tokio::time::timeout(PROVIDER_INIT_TIMEOUT, init).await {
        Ok(res) => res.map_err(|error| NodeError::ProviderInit { what, error }),
        Err(_) => Err(NodeError::ProviderInit {
            what,
            error: ProviderError::transient(format!("no answer within {} s", PROVIDER_INIT_TIMEOUT.as_secs())),
        }),
    }
}

/// The node's long-running tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Presence,
    Checks,
    Election,
}

/// Build the generation `config` asks for, from `old`: refused, with the old one going on, when a
/// setting that only a restart can change differs or a new or changed provider fails to start.
/// Unchanged services keep their providers (and whatever those hold) without a new start.
async fn next_generation(old: &Inner, config: Config, mut providers: Providers) -> Result<(Inner, ReloadReport), ReloadError> {
    config.validate()?;
    let restart = reload::restart_only(&old.config, &config);
    if !restart.is_empty() {
        return Err(ReloadError::RestartOnly(restart));
    }
    if providers.services.len() != config.services.len() {
        return Err(ReloadError::Providers(format!("{} services configured, {} built", config.services.len(), providers.services.len())));
    }
    let report = reload::report(&old.config, &config);
    for (svc, p) in config.services.iter().zip(providers.services.iter_mut()) {
        let kept = old.config.services.iter().position(|o| o == svc).and_then(|i| old.providers.services.get(i));
        match kept {
            Some(same) => *p = same.clone(),
            None => {
                let start = async {
                    bounded_init(format!("service {}: health checker", svc.name), p.checker.init()).await?;
                    bounded_init(format!("service {}: switcher", svc.name), p.switcher.init()).await
                };
                start.await.map_err(|e| ReloadError::Providers(e.to_string()))?;
            }
        }
    }
    let notifications = if report.notifiers_changed {
        let n = Arc::new(Notifications::start(&providers.notifiers).observed_by(old.observers.clone()));
        n.start_parked();
        n
    } else {
        providers.notifiers = old.providers.notifiers.clone();
        old.notifications.clone()
    };
    let next = Inner::generation(Arc::new(config), providers, old.dcs.clone(), Some(old), notifications);
    Ok((next, report))
}

/// End the tasks of generation `inner`: checks and presence at once (the next generation goes on
/// with the same lease), the leader after the switches it has under way, within the lease.
async fn retire(inner: &Inner, tasks: &mut JoinSet<()>, running: &mut Running) {
    inner.retire.set();
    // Their ends are no deaths to restart from. Presence and checks stop at once (the next
    // generation goes on with the same lease and opinions); the election ends by itself.
    // Sorted by task id (the order they were spawned), not the map's, so a simulated run replays.
    let mut all: Vec<_> = running.drain().collect();
    all.sort_by_key(|(id, _)| *id);
    for (_, (task, handle)) in all {
        if task != Task::Election {
            handle.abort();
        }
    }
    let limit = inner.config.dhaf.healthy_node_status_ttl + Duration::from_secs(1);
    let drained = tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("the leader's work did not end within the lease; cutting it short for the reload");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Take back this node's opinions of entry points the new config drops or changes (their
/// checks start anew), so no vote outlives what it was about. Done before the new checks start
/// (so no fresh opinion is taken back), within one DCS timeout in all: a DCS that does not
/// answer must not hold up the reload, and what it missed vanishes with the lease.
async fn withdraw_removed(old: &Inner, new: &Inner) {
    let unchanged = |svc: &str| {
        let (o, n) = (old.config.service(svc), new.config.service(svc));
        o.is_some() && o == n
    };
    let stale: Vec<(String, String)> = {
        let mut l = old.observed.lock().unwrap();
        let stale: Vec<_> = l.opinions.keys().filter(|(svc, _)| !unchanged(svc)).cloned().collect();
        for key in &stale {
            l.opinions.remove(key);
            l.last_check.remove(key);
        }
        stale
    };
    let node = &old.config.dhaf.node_name;
    let all = async {
        for (svc, ep) in &stale {
            if let Err(e) = old.dcs.withdraw_opinion(node, svc, ep).await {
                tracing::warn!(service = %svc, entry_point = %ep, error = %e, "cannot withdraw an opinion the new config drops; it vanishes with the lease");
            }
        }
    };
    if tokio::time::timeout(old.dcs_timeout(), all).await.is_err() {
        tracing::warn!("the DCS did not take back the dropped opinions in time; they vanish with the lease");
    }
}

/// Start `task` after `delay` (a restarted task must not spin if it dies at once again).
/// The tasks running, by id: what each is, and how to stop it.
type Running = HashMap<tokio::task::Id, (Task, tokio::task::AbortHandle)>;

fn spawn_task(tasks: &mut JoinSet<()>, running: &mut Running, inner: &Arc<Inner>, task: Task, delay: Duration) {
    let inner = inner.clone();
    let handle = tasks.spawn(async move {
        tokio::time::sleep(delay).await;
        match task {
            Task::Presence => presence(inner).await,
            Task::Checks => checks(inner).await,
            Task::Election => leader::elect(inner).await,
        }
    });
    running.insert(handle.id(), (task, handle));
}

/// Keep this node registered under a live lease, and its lease deadline current.
async fn presence(inner: Arc<Inner>) {
    let dhaf = &inner.config.dhaf;
    let ttl = dhaf.healthy_node_status_ttl;
    // Renewal happens every heartbeat; the margin covers a renewal in flight and timer slack.
    let margin = (ttl / 5).max(dhaf.heartbeat_interval.min(ttl / 2));
    loop {
        let lease = inner.lease();
        let sent = Instant::now();
        let res = match lease {
            None => inner.dcs_call(inner.dcs.register(&dhaf.node_name, ttl)).await.map(Some),
            Some(id) => inner.dcs_call(inner.dcs.keep_alive(id)).await.map(|_| None),
        };
        match res {
            Ok(new) => {
                let mut l = inner.local.lock().unwrap();
                l.lease_deadline = Some(sent + ttl.saturating_sub(margin));
                if let Some(id) = new {
                    tracing::info!(lease = id, "registered in the dcs");
                    l.lease = Some(id);
                    drop(l);
                    inner.lease_epoch.bump();
                }
            }
            Err(e) if e.kind() == DcsErrorKind::LeaseLost => {
                tracing::warn!(error = %e, "lease expired: registering again");
                {
                    let mut l = inner.local.lock().unwrap();
                    l.lease = None;
                    l.lease_deadline = None;
                }
                inner.step_down("lease expired");
                inner.lease_epoch.bump();
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                let expired = inner.local.lock().unwrap().lease_deadline.is_some_and(|d| Instant::now() >= d);
                if expired {
                    inner.step_down("cannot renew the lease before it expires");
                }
                tokio::time::sleep(dhaf.heartbeat_interval.min(Duration::from_secs(1))).await;
                continue;
            }
        }
        publish_definitions(&inner).await;
        tokio::time::sleep(dhaf.heartbeat_interval).await;
    }
}

/// Publish this node's service definitions once per lease (they vanish with it), so the leader
/// counts this node's votes only on services both define alike.
async fn publish_definitions(inner: &Inner) {
    let Some(lease) = inner.lease() else { return };
    if inner.local.lock().unwrap().definitions_published == Some(lease) {
        return;
    }
    let node = &inner.config.dhaf.node_name;
    match inner.dcs_call(inner.dcs.publish_definitions(node, lease, &inner.definitions)).await {
        Ok(()) => inner.local.lock().unwrap().definitions_published = Some(lease),
        Err(e) => tracing::warn!(error = %e, "cannot publish this node's service definitions; retrying at the next heartbeat"),
    }
}

/// Check every entry point every tact; publish opinions that changed.
///
/// Each entry point has its own loop, so a check that hangs until its timeout (a blackholed
/// server) delays only its own entry point, never another service's failover.
async fn checks(inner: Arc<Inner>) {
    let limit = Arc::new(Semaphore::new(inner.config.dhaf.check_concurrency));
    let publishing = Arc::new(Semaphore::new(PUBLISH_CONCURRENCY));
    let mut loops = JoinSet::new();
    for (si, svc) in inner.config.services.iter().enumerate() {
        for ei in 0..svc.entry_points.len() {
            loops.spawn(check_loop(inner.clone(), limit.clone(), publishing.clone(), si, ei));
        }
    }
    while loops.join_next().await.is_some() {}
}

/// How many opinion writes (or withdrawals) one node has in flight at most. A node with
/// thousands of entry points publishes thousands of first opinions at once, and again for every
/// new lease: sent all together to a DCS that serves a few hundred writes a second, they time out
/// waiting behind each other while the DCS still serves them, are sent again next tact, and
/// nothing is ever published (the node's keep-alives wait in the same queue). Paced, the same
/// writes all land, a DCS round trip each, and a changed opinion waits behind at most this many.
const PUBLISH_CONCURRENCY: usize = 16;

async fn check_loop(inner: Arc<Inner>, limit: Arc<Semaphore>, publishing: Arc<Semaphore>, si: usize, ei: usize) {
    let config = inner.config.clone();
    let svc = &config.services[si];
    let ep = &svc.entry_points[ei];
    let key = (svc.name.clone(), ep.name.clone());
    let checker = inner.providers.services[si].checker.clone();
    let mut hysteresis = Hysteresis::default();
    let mut abstaining = false;
    // What is published, and under which lease; anything else is (re)published.
    let mut published: Option<(LeaseId, Opinion)> = None;
    let mut epoch = inner.lease_epoch.get();
    let mut next_check = Instant::now();
    loop {
        if Instant::now() >= next_check {
            let (health, took) = {
                let _permit = limit.acquire().await.expect("never closed");
                let timeout = checker.timeout();
                // Its own task, so a checker that panics is caught: it cannot vouch for its
                // entry point, and keeping the last opinion would keep a dead one healthy.
                let (checker, target) = (checker.clone(), ep.clone());
                let started = Instant::now();
                let mut check = tokio::spawn(async move { checker.check(&target).await });
                let health = match tokio::time::timeout(timeout, &mut check).await {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => {
                        tracing::error!(service = %key.0, entry_point = %key.1, error = %e, "the health checker panicked");
                        Health::unhealthy("the health checker panicked")
                    }
                    Err(_) => {
                        check.abort();
                        Health::unhealthy(format!("timed out after {} s", timeout.as_secs_f64()))
                    }
                };
                (health, started.elapsed())
            };
            // A check that could not run here is no evidence about the entry point: the node
            // abstains (its published opinion is withdrawn) until it can check again.
            let local_trouble = matches!(health, Health::Abstain { .. });
            if local_trouble != abstaining {
                abstaining = local_trouble;
                match health.reason() {
                    Some(reason) if abstaining => {
                        tracing::warn!(service = %key.0, entry_point = %key.1, reason, "cannot check from this node: abstaining")
                    }
                    _ => tracing::info!(service = %key.0, entry_point = %key.1, "can check again: voting again"),
                }
            }
            if !abstaining && hysteresis.observe(&health, svc.rise, svc.fall).is_some() {
                tracing::info!(service = %key.0, entry_point = %key.1, healthy = health.is_healthy(), reason = health.reason().unwrap_or(""), "opinion changed");
            }
            {
                let mut l = inner.observed.lock().unwrap();
                l.metrics.checks += 1;
                if !health.is_healthy() {
                    l.metrics.checks_failed += 1;
                }
                let counted = l.metrics.entry_point(&key.0, &key.1);
                match &health {
                    Health::Abstain { .. } => counted.abstained += 1,
                    h if h.is_healthy() => counted.healthy += 1,
                    _ => counted.unhealthy += 1,
                }
                counted.check_duration.observe(took);
                match hysteresis.current() {
                    Some(op) if !abstaining => l.opinions.insert(key.clone(), op),
                    _ => l.opinions.remove(&key),
                };
                l.last_check.insert(key.clone(), health);
            }
            // The tact counts from the end of the check, as in the original.
            next_check = Instant::now() + config.dhaf.tact_interval;
        }
        if abstaining && published.is_some() {
            let _permit = publishing.acquire().await.expect("never closed");
            if withdraw_stale(&inner, &key).await {
                published = None;
            }
        } else if let (Some(lease), Some(op), false) = (inner.lease(), hysteresis.current(), abstaining) {
            if published.as_ref() != Some(&(lease, op.clone())) {
                let _permit = publishing.acquire().await.expect("never closed");
                match inner.dcs_call(inner.dcs.publish_opinion(&config.dhaf.node_name, lease, &key.0, &key.1, &op)).await {
                    Ok(()) => published = Some((lease, op)),
                    Err(e) => {
                        tracing::debug!(error = %e, service = %key.0, entry_point = %key.1, "cannot publish opinion; retrying next tact");
                        if published.as_ref().is_some_and(|(l, _)| *l == lease) && withdraw_stale(&inner, &key).await {
                            published = None;
                        }
                    }
                }
            }
        }
        // A new lease republishes at once, without waiting for the next check. In a fixed
        // order, so a simulated run replays: both lead to the next round of checks, and a new
        // lease taken first is not taken again for a second round at the same instant.
        tokio::select! {
            biased;
            now = inner.lease_epoch.after(epoch) => epoch = now,
            _ = tokio::time::sleep_until(next_check) => {}
        }
    }
}

/// This node's published opinion of `key` is stale (it could not publish a changed one, or it
/// cannot check at all) and must not go on counting as its vote: a node's own trouble is no
/// evidence about an entry point. Returns whether it no longer counts.
///
/// The opinion is deleted first: a delete passes where writes are refused (etcd's NOSPACE alarm),
/// and costs only this one vote. If even that fails while the DCS answers, the node withdraws
/// altogether by revoking its lease, so it abstains everywhere instead of voting stale; it
/// registers again once it can write. If the DCS does not answer at all, the revoke fails too,
/// and the lease expires on its own, the opinions with it.
async fn withdraw_stale(inner: &Inner, key: &(String, String)) -> bool {
    let node = &inner.config.dhaf.node_name;
    match inner.dcs_call(inner.dcs.withdraw_opinion(node, &key.0, &key.1)).await {
        Ok(()) => {
            tracing::warn!(service = %key.0, entry_point = %key.1, "withdrew this node's stale opinion");
            true
        }
        Err(e) => {
            let why = format!("cannot update or withdraw the opinion of {} {}: {e}", key.0, key.1);
            match inner.withdraw(&why).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(service = %key.0, entry_point = %key.1, error = %e, "cannot withdraw a stale opinion; it vanishes with the lease");
                    false
                }
            }
        }
    }
}

/// The wall clock, for records people read.
pub(crate) fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// The wall clock the engine is given, for what is due at a wall-clock time (a scheduled
/// switchover): the system's, plus however far tokio's clock runs ahead of the real one. In a
/// running node the two run together and this is the system's clock (NTP steps included); under
/// tokio's paused test clock, time moved forward there is moved forward here too, so a test can
/// wait for a scheduled time without waiting for real.
pub fn model_wall_now() -> SystemTime {
    SystemTime::now() + tokio::time::Instant::now().into_std().saturating_duration_since(std::time::Instant::now())
}

/// [`model_wall_now`] in whole Unix seconds, as the engine takes it.
pub(crate) fn model_wall_secs() -> u64 {
    model_wall_now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
