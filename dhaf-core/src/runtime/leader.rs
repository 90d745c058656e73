//! Election and leading: the only place a node switches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{wall_now, Inner};
use crate::config::ServiceConfig;
use crate::dcs::{Changes, DcsErrorKind, Purge, Snapshot, Touched};
use crate::engine::{self, Action, Announced, ClusterState, EntryPointView, ServiceState, ServiceView, Vote};
use crate::model::{Event, FencingToken, PendingFailback, ServiceDefinition, SwitchKind, SwitchProgress, SwitchRecord};
use crate::provider::ProviderError;

/// The namespace of the switch history in the providers' store.
pub(crate) const HISTORY_NS: &str = "dhaf.history";
/// The namespace where the leader keeps which nodes it announced alive (`up`) or dead (`down`).
pub(crate) const NODES_NS: &str = "dhaf.nodes";
/// The namespace where the leader keeps what it announced of each service's entry points.
pub(crate) const ANNOUNCED_NS: &str = "dhaf.announced";
/// The namespace where the leader keeps each service's failing switch, for status.
pub(crate) const SWITCHING_NS: &str = "dhaf.switching";
/// The namespace where the leader keeps each service's pending failback, for status.
pub(crate) const FAILBACK_NS: &str = "dhaf.failback";
/// The namespace where the leader keeps each service's live state as last read back, for status.
pub(crate) const LIVE_NS: &str = "dhaf.live";
/// The namespace where the leader keeps whether it told the cluster paused (`told`: `paused` or
/// `running`), so each pause and resume is told once across leaders.
pub(crate) const PAUSE_NS: &str = "dhaf.pause";
/// The longest a read-back of a provider's live state may take.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How many services may be switching at once.
const SWITCH_CONCURRENCY: usize = 16;

/// How often a follower under a live leader reads the whole DCS all the same: the election needs
/// only the leader key, but the node's status shows the last state it read, marked stale, when
/// the DCS goes. At 1,000 services the whole read each heartbeat cost a follower more than leading.
const FOLLOWER_FULL_READ: Duration = Duration::from_secs(10);
/// How many switches the history keeps per service.
pub(crate) const HISTORY_LEN: usize = 50;
/// How many times an entry is added to a history that changed between its read and its write
/// before the next round tries again.
const HISTORY_TRIES: usize = 3;

/// Campaign whenever this node has a lease and nobody leads; lead while it wins.
pub(crate) async fn elect(inner: Arc<Inner>) {
    let node = inner.config.dhaf.node_name.clone();
    let mut watch = None;
    let mut outvoted_on: Option<String> = None;
    let mut last_full_read: Option<Instant> = None;
    loop {
        // A reload replaced this generation: the next one's election takes over.
        if inner.retired() {
            return;
        }
        // Campaign only under a lease known to be live: past its deadline the node may not lead,
        // and winning the same term again would end at once, over and over.
        let Some(lease) = inner.live_lease() else {
            tokio::time::sleep(Duration::from_millis(200).min(inner.config.dhaf.heartbeat_interval)).await;
            continue;
        };
        if watch.is_none() {
            watch = inner.dcs_call(inner.dcs.watch()).await.ok();
        }
        // Campaign only for a vacant (or this node's own) leader key, and never while a majority
        // defines some service differently from this node. Under another node's lead the leader
        // key alone says so; the whole DCS is read when the key is vacant or this node's, or
        // after FOLLOWER_FULL_READ.
        let led_elsewhere = match last_full_read {
            Some(at) if at.elapsed() < FOLLOWER_FULL_READ => {
                matches!(inner.dcs_call(inner.dcs.leader()).await, Ok(Some(l)) if l.node != node)
            }
            _ => false,
        };
        if !led_elsewhere {
            last_full_read = Some(Instant::now());
        }
        let standing = match led_elsewhere {
            true => false,
            false => match inner.snapshot().await {
                Ok(s) if s.leader.as_ref().is_some_and(|l| l.node != node) => false,
                Ok(s) => match stand_aside(&s, &inner.definitions, &node) {
                    Some(service) => {
                        if outvoted_on.as_ref() != Some(&service) {
                            tracing::error!(%service, "a majority of the nodes define the service differently from this node: not standing for leader until the configs agree");
                        }
                        outvoted_on = Some(service);
                        false
                    }
                    None => {
                        outvoted_on = None;
                        true
                    }
                },
                Err(_) => true,
            },
        };
        let campaign = async {
            match standing {
                true => inner.dcs_call(inner.dcs.campaign(&node, lease)).await,
                false => Ok(None),
            }
        };
        match campaign.await {
            Ok(Some(token)) => {
                // Winning back the same term (after stepping down locally while the lease
                // survived) is no new leadership: it is announced and counted once.
                let fresh = {
                    let mut l = inner.local.lock().unwrap();
                    let fresh = l.announced_term != Some(token);
                    l.announced_term = Some(token);
                    l.leader_token = Some(token);
                    fresh
                };
                if fresh {
                    inner.observed.lock().unwrap().metrics.leader_changes += 1;
                }
                inner.observers.gained(token);
                if fresh {
                    inner.notifications.send(&inner.config, engine::leader_elected(&node, token));
                }
                lead(inner.clone(), token).await;
                if inner.retired() {
                    // Still the leader: the next generation wins back the same term at once.
                    return;
                }
                inner.step_down("leadership ended");
                watch = None;
                continue;
            }
            Ok(None) => {}
            // The heartbeat registers again; until then there is nothing to campaign with.
            Err(e) if e.kind() == DcsErrorKind::LeaseLost => {}
            Err(e) => tracing::debug!(error = %e, "campaign failed"),
        }
        // Wait for a change (the leader key may have been freed) or a heartbeat.
        let wait = inner.config.dhaf.heartbeat_interval;
        // In a fixed order (`biased`), so a simulated run replays: every branch leads back to
        // the top of the loop, which looks at everything afresh, so which of two ready ones
        // goes first changes nothing but the order.
        match watch.as_mut() {
            Some(w) => {
                tokio::select! {
                    biased;
                    _ = inner.retiring() => {}
                    alive = standing_changed(w) => if !alive { watch = None },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => tokio::select! {
                biased;
                _ = inner.retiring() => {}
                _ = tokio::time::sleep(wait.min(Duration::from_secs(1))) => {}
            },
        }
    }
}

/// Wait for a change that may free the leader key or change who may stand for it (presence,
/// leadership, definitions, or one the watch cannot tell): a follower reads the cluster again
/// for those, not for every opinion. `false` when the watch is closed.
async fn standing_changed(w: &mut crate::dcs::Watch) -> bool {
    use crate::dcs::keys::Update;
    loop {
        match w.next().await {
            None => return false,
            Some(Changes::Unknown) => return true,
            Some(Changes::Known(changes)) => {
                if changes.iter().any(|c| matches!(c.update, Update::Leader(_) | Update::Alive { .. } | Update::Definitions { .. })) {
                    return true;
                }
            }
        }
    }
}

/// What the leader keeps about one service during its term.
#[derive(Default)]
struct Slot {
    state: ServiceState,
    /// The provider's live state as last read back (`Some("")`: no configured entry point).
    live: Option<String>,
    /// `live` was read since the last decision.
    fresh: bool,
    /// A read-back is under way.
    reading: bool,
    /// Bumped when a switch of the service starts or ends: a read-back that began under another
    /// value may have raced the switch, and is discarded rather than taken for drift.
    epoch: u64,
    /// The term's first read-back has answered (or failed, or timed out).
    read_once: bool,
    /// The `epoch` at which `live` was learnt: equal to `epoch`, no switch began or ended since.
    live_epoch: Option<u64>,
    /// What is kept in the DCS of the announcements and the live state, so they are written
    /// only when they change.
    announced: Option<Announced>,
    shown_live: Option<String>,
    /// The pending failback's target as kept in the DCS for status (`Some("")`: none kept).
    shown_failback: Option<String>,
    /// The nodes last told to define the service differently.
    disagreeing: BTreeSet<String>,
    /// Whether the term looked for a switch an earlier leader made but did not live to tell.
    untold_checked: bool,
    /// This leading (since the term was won, or won back) began a switch of the service: a
    /// record of the term is then its own, and what became of it is known here.
    began_switch: bool,
    /// A switch made and not yet told (its history entry could not be written yet).
    untold: Option<Untold>,
    /// Where people last heard the service points (the last switch told, or where the term
    /// found the provider), once the term has read the history.
    told_at: Option<String>,
    /// Whether the DCS keeps a failing switch's progress for this service (shown by status):
    /// taken back once no switch is pending, whichever term wrote it.
    progress_shown: bool,
    /// The last attempt of this term's switch failed, and no other switch began since: the next
    /// one is told from where that attempt began (its record moved the desired state, not the
    /// provider), and a read-back finding the provider at its target means it went through.
    failed: Option<Attempt>,
    /// A failed attempt the read-back found carried out (its answer was lost): told as done
    /// at the next round.
    went_through: Option<Attempt>,
}

/// One attempt of a switch: where from, and what it recorded.
#[derive(Clone)]
struct Attempt {
    from: Option<String>,
    /// Where the provider pointed when it began, if read back since the last switch.
    live_before: Option<String>,
    record: SwitchRecord,
}

/// A switch carried out and not yet told.
#[derive(Clone)]
struct Untold {
    from: Option<String>,
    record: SwitchRecord,
    /// Failed attempts before it went through: told as recovered too.
    recovered_after: u32,
    /// The provider pointed at the target before the call: told only if people last heard it
    /// points elsewhere (an earlier call, its answer lost, moved it).
    already_there: bool,
    /// This leader sent its history entry (the answer may have been lost): found there later
    /// and naming no other term that told it, it is this leader's own write.
    put_sent: bool,
}

/// What became of a history entry.
enum Appended {
    /// Written now.
    Now,
    /// It was the history's last entry already: written by this term (`mine`), or by another
    /// one that told the switch.
    There {
        /// This term wrote it.
        mine: bool,
    },
    /// Not written: the history could not be read, the write was refused, or the history
    /// kept changing under it.
    NotWritten,
    /// Sent, and no answer came (it may have been written).
    Unanswered,
    /// Not written: this term is over.
    TermOver,
}

/// Whether two records are the same switch (the wall-clock time aside).
fn same_switch(a: &SwitchRecord, b: &SwitchRecord) -> bool {
    a.token == b.token && a.entry_point == b.entry_point && a.kind == b.kind
}

/// A switch under way: what it is, kept beside its task so that a switcher that panics is
/// still a failed switch of a known service.
struct Switching {
    service: usize,
    from: Option<String>,
    /// Where the provider pointed when the switch began, if read back since the last switch.
    live_before: Option<String>,
    record: SwitchRecord,
    /// When it was decided, for the switch-duration metric.
    decided: Instant,
}

/// A read-back under way: its service, and the slot's epoch when it began.
struct Reading {
    service: usize,
    epoch: u64,
}

/// A switch decided, not yet started.
struct PlannedSwitch {
    service: usize,
    from: Option<String>,
    to: String,
    kind: SwitchKind,
    /// Who asked for it (a switchover's requester).
    requested_by: Option<String>,
}

/// The term is over (fenced, lease lost, or another leader named): stop leading.
struct TermOver;

/// Which entry points each service may be switched to now, by the engine's latest verdicts: a
/// switch that waited for its turn checks it again before it begins.
type Eligibility = Arc<Mutex<Vec<Vec<bool>>>>;

struct Leading {
    inner: Arc<Inner>,
    token: FencingToken,
    slots: Vec<Slot>,
    cluster: ClusterState,
    /// Bounds the switches in flight at once.
    limit: Arc<tokio::sync::Semaphore>,
    /// Switches under way; the leader keeps deciding while they run.
    running: JoinSet<Outcome>,
    switching: HashMap<tokio::task::Id, Switching>,
    /// Read-backs under way, each bounded, so a slow provider delays no decision.
    reading: JoinSet<Result<Option<String>, String>>,
    reads: HashMap<tokio::task::Id, Reading>,
    eligible: Eligibility,
    /// Whether the cluster was last told paused (by this leader or an earlier one).
    told_paused: bool,
    /// Services to decide at the next round, by index: something they read changed.
    touched: BTreeSet<usize>,
    /// Something every service reads changed (presence, leadership, definitions, the pause).
    touched_cluster: bool,
    /// When each service asked to be decided again (the engine's `wake_at`, or a retry of
    /// bookkeeping the DCS refused), as (when, service); and each service's entry there.
    wakes: BTreeSet<(Instant, usize)>,
    wake_of: Vec<Option<Instant>>,
    /// Service index by name.
    index: HashMap<String, usize>,
    /// Records this leader wrote, by service, for its copy of the cluster: the next decision
    /// must see them even when the watch has not reported them yet.
    written: Vec<(String, SwitchRecord)>,
}

/// Lead under `token` until the term ends (lease lost, fenced, stepped down).
async fn lead(inner: Arc<Inner>, token: FencingToken) {
    let config = inner.config.clone();
    let n = config.services.len();
    let mut me = Leading {
        inner: inner.clone(),
        token,
        slots: (0..n).map(|_| Slot::default()).collect(),
        cluster: ClusterState::default(),
        limit: Arc::new(tokio::sync::Semaphore::new(SWITCH_CONCURRENCY)),
        running: JoinSet::new(),
        switching: HashMap::new(),
        reading: JoinSet::new(),
        reads: HashMap::new(),
        eligible: Arc::new(Mutex::new(vec![Vec::new(); n])),
        told_paused: false,
        touched: BTreeSet::new(),
        touched_cluster: false,
        wakes: BTreeSet::new(),
        wake_of: vec![None; n],
        index: config.services.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect(),
        written: Vec::new(),
    };
    if let Ok(told) = inner.dcs_call(inner.dcs.kv_get(PAUSE_NS, "told")).await {
        me.told_paused = told.as_deref() == Some("paused");
    }
    // Progress of switches an earlier term left failing: this term decides them afresh, and
    // takes the progress back unless it fails again (status must not show a switch failing
    // that nobody is making).
    if let Ok(kept) = inner.dcs_call(inner.dcs.kv_list(SWITCHING_NS)).await {
        for (service, _) in kept {
            if let Some(&i) = me.index.get(&service) {
                me.slots[i].progress_shown = true;
            }
        }
    }
    // What earlier leaders announced, so a node that died with its leader is still announced.
    if let Ok(known) = inner.dcs_call(inner.dcs.kv_list(NODES_NS)).await {
        me.cluster = ClusterState::with_known(known.into_iter().filter(|(_, v)| v == "up").map(|(k, _)| k).collect());
    }
    // The same for each service's entry points and panic mode.
    if let Ok(known) = inner.dcs_call(inner.dcs.kv_list(ANNOUNCED_NS)).await {
        for (name, value) in known {
            let Some(i) = config.services.iter().position(|s| s.name == name) else { continue };
            match serde_json::from_str::<Announced>(&value) {
                Ok(a) => {
                    me.slots[i].state = ServiceState::resume(&config.services[i], &a);
                    me.slots[i].announced = Some(a);
                }
                Err(e) => tracing::warn!(service = %name, error = %e, "cannot read what the last leader announced; learning it anew"),
            }
        }
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
    // The leader decides from its own copy of the cluster, kept up to date from the watch's
    // changes, and decides again only the services a change bears on. It reads everything at
    // the start of its term, when the watch breaks or falls behind, and every reconcile
    // interval as a safety net; without a watch, every tact.
    let mut watch = None;
    let mut copy: Option<Snapshot> = None;
    let mut next_reconcile = Instant::now();
    loop {
        if !inner.may_lead(token, Instant::now()) || inner.retired() {
            break;
        }
        if Instant::now() >= next_reconcile {
            for i in 0..n {
                me.read_back(i);
            }
            next_reconcile = Instant::now() + config.dhaf.reconcile_interval;
            copy = None;
        }
        if watch.is_none() {
            // Watching before reading: no change falls between the read and the watch.
            watch = inner.dcs_call(inner.dcs.watch()).await.ok();
            copy = None;
        }
        let snapshot = match &copy {
            Some(s) => s,
            None => match inner.snapshot().await {
                Ok(s) => {
                    me.touch_all();
                    copy.insert(Snapshot::clone(&s))
                }
                Err(_) => {
                    // Without the DCS nothing is decided: the last switch stays in force.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        if me.touched_cluster {
            if snapshot.leader.as_ref().map(|l| l.token) != Some(token) {
                tracing::warn!(%token, "the dcs names another leader");
                break;
            }
            if let Some(service) = stand_aside(snapshot, &inner.definitions, &config.dhaf.node_name) {
                tracing::error!(%token, %service, "a majority of the nodes define the service differently from this node: resigning, so that a node of the majority leads");
                // Switches under way end first (by the lease deadline at the latest): freed
                // now, the key would let a successor switch before this term's late call lands.
                while let Some(done) = me.running.join_next_with_id().await {
                    let _ = me.finish(done).await;
                }
                let _ = inner.dcs_call(inner.dcs.resign(token)).await;
                break;
            }
        }
        me.touch_due(Instant::now());
        if me.round(snapshot).await.is_err() {
            break;
        }
        let mut until = me.next_wake().unwrap_or(next_reconcile).min(next_reconcile).max(Instant::now() + Duration::from_millis(10));
        if watch.is_none() {
            until = until.min(Instant::now() + config.dhaf.tact_interval);
        }
        // A finished switch or read-back wakes the leader too: it decides that service again.
        // In a fixed order (`biased`), so a simulated run replays. The order is harmless: what a
        // branch does not take now waits for the next turn (the watch's changes and finished
        // tasks queue up, the timer is set again), and a round runs after every branch. The end
        // of the generation goes first; finished tasks before the watch, whose changes may
        // keep coming and would otherwise hold them back; the timer last, as every round looks
        // at the time anyway.
        let mut over = false;
        tokio::select! {
            biased;
            _ = inner.retiring() => over = true,
            Some(done) = me.running.join_next_with_id(), if !me.running.is_empty() => over = me.finish(done).await.is_err(),
            Some(read) = me.reading.join_next_with_id(), if !me.reading.is_empty() => me.read(read),
            changes = async {
                match watch.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            } => match changes {
                None => watch = None,
                Some(first) => {
                // What else is waiting is taken in too: a burst is decided once.
                let mut next = Some(first);
                while let Some(changes) = next {
                    match changes {
                        Changes::Known(changes) => {
                            if let Some(copy) = copy.as_mut() {
                                for change in &changes {
                                    match copy.apply(change) {
                                        Touched::Nothing => {}
                                        Touched::Service(name) => me.touch(&name),
                                        Touched::Cluster => me.touch_all(),
                                    }
                                }
                            }
                        }
                        Changes::Unknown => copy = None,
                    }
                    next = watch.as_mut().and_then(|w| w.try_next());
                }
                }
            },
            _ = tokio::time::sleep_until(until) => {
                if watch.is_none() {
                    copy = None;
                }
            }
        }
        if over {
            break;
        }
        for (service, record) in me.written.drain(..) {
            if let Some(copy) = copy.as_mut() {
                copy.records.insert(service, record);
            }
        }
    }
    // Switches under way end by the lease deadline at the latest; their outcome is still told.
    while let Some(done) = me.running.join_next_with_id().await {
        let _ = me.finish(done).await;
    }
    me.reading.abort_all();
    background.abort_all();
}

/// How the alive nodes' definitions of one service compare with this node's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The alive nodes that define it as this node does (this one among them once published).
    pub agreeing: BTreeSet<String>,
    /// The alive nodes that define it otherwise, each with what differs (this node's value
    /// first).
    pub differing: BTreeMap<String, Vec<String>>,
    /// The alive nodes that have not published their definitions yet (just registered): their
    /// votes wait, but nothing is told.
    pub unpublished: BTreeSet<String>,
}

/// At most this many differences are shown per node.
const DIFFERENCES_SHOWN: usize = 5;

impl Agreement {
    /// Compare every alive node's published definition of `service` with `own`, this node's
    /// (`me`): this node agrees with itself even while what it published is a reload behind.
    pub fn of(snapshot: &Snapshot, service: &str, own: &ServiceDefinition, me: &str) -> Agreement {
        let mut a = Agreement::default();
        for node in &snapshot.alive {
            if node == me {
                a.agreeing.insert(node.clone());
                continue;
            }
            let theirs = snapshot.definitions.get(node).map(|defs| defs.get(service));
            match theirs {
                Some(Some(d)) if d.fingerprint == own.fingerprint => {
                    a.agreeing.insert(node.clone());
                }
                Some(Some(d)) => {
                    let mut diff = own.differences(d);
                    if diff.len() > DIFFERENCES_SHOWN {
                        let more = diff.len() - DIFFERENCES_SHOWN;
                        diff.truncate(DIFFERENCES_SHOWN);
                        diff.push(format!("… and {more} more"));
                    }
                    a.differing.insert(node.clone(), diff);
                }
                Some(None) => {
                    a.differing.insert(node.clone(), vec!["the node does not define this service".into()]);
                }
                None => {
                    a.unpublished.insert(node.clone());
                }
            }
        }
        a
    }

    /// Whether a majority of the `alive` nodes agree.
    pub fn majority(&self, alive: usize) -> bool {
        self.agreeing.len() * 2 > alive
    }
}

/// The first service of which a majority of the alive nodes share a definition other than this
/// node's (`own`, by service), or one this node lacks: such a node must not lead, as it would
/// place that service against the majority's config, or not at all.
pub(crate) fn outvoted(snapshot: &Snapshot, own: &BTreeMap<String, ServiceDefinition>) -> Option<String> {
    let alive = snapshot.alive.len();
    let published = snapshot.alive.iter().filter_map(|n| snapshot.definitions.get(n));
    let services: BTreeSet<&String> = own.keys().chain(published.flat_map(|defs| defs.keys())).collect();
    services.into_iter().find_map(|service| {
        let mine = own.get(service).map(|d| d.fingerprint.as_str());
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for node in &snapshot.alive {
            if let Some(d) = snapshot.definitions.get(node).and_then(|defs| defs.get(service)) {
                *counts.entry(d.fingerprint.as_str()).or_default() += 1;
            }
        }
        counts.iter().any(|(f, n)| Some(*f) != mine && n * 2 > alive).then(|| service.clone())
    })
}

/// The service on which a majority defines things otherwise than `own`, if some other alive node
/// is outvoted on none: that node should lead instead. When every node is outvoted somewhere
/// (typos in several files), nobody stands aside, so the cluster is never left without a leader;
/// the leader then holds the services it disagrees on.
pub(crate) fn stand_aside(snapshot: &Snapshot, own: &BTreeMap<String, ServiceDefinition>, me: &str) -> Option<String> {
    let service = outvoted(snapshot, own)?;
    let fitter = snapshot
        .alive
        .iter()
        .filter(|n| n.as_str() != me)
        .filter_map(|n| snapshot.definitions.get(n))
        .any(|defs| outvoted(snapshot, defs).is_none());
    fitter.then_some(service)
}

/// Tell operators once when the set of nodes that define `svc` differently changes (a
/// notification, logged with what differs), and once more when all agree again.
fn tell_agreement(inner: &Inner, svc: &ServiceConfig, slot: &mut Slot, agreement: &Agreement, held: bool) {
    let nodes: BTreeSet<String> = agreement.differing.keys().cloned().collect();
    if nodes == slot.disagreeing {
        return;
    }
    let event = if nodes.is_empty() {
        Event::DefinitionsAgree { service: svc.name.clone() }
    } else {
        let differences: Vec<String> =
            agreement.differing.iter().flat_map(|(node, diff)| diff.iter().map(move |d| format!("{node}: {d}"))).collect();
        Event::DefinitionsDisagree { service: svc.name.clone(), nodes: nodes.iter().cloned().collect(), differences, held }
    };
    inner.notifications.send(&inner.config, event);
    slot.disagreeing = nodes;
}

/// The engine's view of one service from a snapshot: only the votes of nodes that define the
/// service as this node does count, and the service is held still without a majority of them.
pub(crate) fn service_view(snapshot: &Snapshot, svc: &ServiceConfig, agreement: &Agreement) -> ServiceView {
    let maintenance = snapshot.maintenance.get(&svc.name);
    ServiceView {
        alive_nodes: snapshot.alive.len(),
        entry_points: svc
            .entry_points
            .iter()
            .map(|ep| EntryPointView {
                votes: agreement
                    .agreeing
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
        awaiting_read_back: false,
        switchover: snapshot.switchovers.get(&svc.name).map(|r| r.entry_point.clone()),
        switchover_at: snapshot.switchovers.get(&svc.name).and_then(|r| r.at),
        wall_secs: super::model_wall_secs(),
        out_of_agreement: !agreement.majority(snapshot.alive.len()),
        paused: snapshot.paused.is_some(),
        first_opinions_within: Duration::ZERO,
    }
}

impl Leading {
    /// Read service `i`'s live state in the background, bounded by [`READ_BACK_TIMEOUT`] and by
    /// the term; one read at a time per service.
    fn read_back(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if !self.inner.providers.services[i].switcher.reads_back() {
            // Nothing to wait for: the switches this leader makes are all it knows.
            slot.read_once = true;
            return;
        }
        if slot.reading {
            return;
        }
        slot.reading = true;
        let reading = Reading { service: i, epoch: slot.epoch };
        let (inner, token) = (self.inner.clone(), self.token);
        let task = self.reading.spawn(async move {
            let switcher = inner.providers.services[i].switcher.clone();
            tokio::select! {
                // In a fixed order, so a simulated run replays; the order is harmless, as a term
                // that ends drops its read-backs whatever they answered.
                biased;
                _ = inner.term_ends(token) => Err("the term ended".to_string()),
                live = tokio::time::timeout(READ_BACK_TIMEOUT, switcher.current()) => match live {
                    Ok(Ok(live)) => Ok(live),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} s", READ_BACK_TIMEOUT.as_secs())),
                },
            }
        });
        self.reads.insert(task.id(), reading);
    }

    /// Take in a finished read-back.
    fn read(&mut self, done: Result<(tokio::task::Id, Result<Option<String>, String>), tokio::task::JoinError>) {
        let (id, read) = match done {
            Ok((id, read)) => (id, read),
            // A switcher that panics reading is a failed read.
            Err(e) => (e.id(), Err(format!("the switcher panicked: {e}"))),
        };
        let Some(Reading { service: i, epoch }) = self.reads.remove(&id) else { return };
        self.touched.insert(i);
        let slot = &mut self.slots[i];
        slot.reading = false;
        slot.read_once = true;
        if epoch != slot.epoch {
            // A switch started or ended meanwhile: what was read may predate it. Read again.
            self.read_back(i);
            return;
        }
        match read {
            Ok(live) => {
                // The provider points where the last attempt, told failed, was to point it, and
                // did not before: its answer was lost on the way back, the switch went through.
                if let Some(f) = slot.failed.as_ref() {
                    let to = f.record.entry_point.as_str();
                    if live.as_deref() == Some(to) && f.live_before.as_deref() != Some(to) {
                        slot.went_through = slot.failed.take();
                    }
                }
                slot.live = Some(live.unwrap_or_default());
                slot.live_epoch = Some(slot.epoch);
                slot.fresh = true;
            }
            Err(e) => tracing::warn!(service = %self.inner.config.services[i].name, error = %e, "cannot read the switcher's live state"),
        }
    }

    /// Decide service `name` at the next round (a service this node does not define: nothing).
    fn touch(&mut self, name: &str) {
        if let Some(&i) = self.index.get(name) {
            self.touched.insert(i);
        }
    }

    /// Decide every service at the next round, and look at the cluster as a whole.
    fn touch_all(&mut self) {
        self.touched_cluster = true;
        self.touched.extend(0..self.slots.len());
    }

    /// Decide the services whose wake time has come.
    fn touch_due(&mut self, now: Instant) {
        while let Some(&(at, i)) = self.wakes.first() {
            if at > now {
                break;
            }
            self.wakes.pop_first();
            self.wake_of[i] = None;
            self.touched.insert(i);
        }
    }

    /// Decide service `i` again at `at` (the earliest time asked stands).
    fn wake(&mut self, i: usize, at: Instant) {
        if let Some(old) = self.wake_of[i] {
            if old <= at {
                return;
            }
            self.wakes.remove(&(old, i));
        }
        self.wakes.insert((at, i));
        self.wake_of[i] = Some(at);
    }

    /// The earliest time a service asked to be decided again.
    fn next_wake(&self) -> Option<Instant> {
        self.wakes.first().map(|(at, _)| *at)
    }

    /// Decide and act on the services touched since the last round (and on the cluster as a
    /// whole when that was touched): the work per change is for what changed.
    async fn round(&mut self, snapshot: &Snapshot) -> Result<(), TermOver> {
        let inner = self.inner.clone();
        let config = inner.config.clone();
        let services = std::mem::take(&mut self.touched);
        if std::mem::take(&mut self.touched_cluster) {
            self.round_cluster(snapshot).await;
        }
        let mut switches = Vec::new();
        for i in services {
            if let Some(switch) = self.decide(i, snapshot).await? {
                switches.push(switch);
            }
            self.take_back_progress(i).await;
            // Bookkeeping the DCS did not take yet is tried again a tact later.
            if !self.settled(i) {
                self.wake(i, Instant::now() + config.dhaf.tact_interval);
            }
        }
        self.start_switches(switches);
        Ok(())
    }

    /// Take back service `i`'s failing-switch progress from the DCS once no switch of it is
    /// pending or under way (it succeeded, or is no longer needed).
    async fn take_back_progress(&mut self, i: usize) {
        if !self.progress_stale(i) {
            return;
        }
        let name = self.inner.config.services[i].name.clone();
        if self.inner.dcs_call(self.inner.dcs.kv_delete(SWITCHING_NS, &name)).await.is_ok() {
            self.slots[i].progress_shown = false;
        }
    }

    fn progress_stale(&self, i: usize) -> bool {
        let slot = &self.slots[i];
        slot.progress_shown && slot.state.pending_switch().is_none() && !self.switching.values().any(|s| s.service == i)
    }

    /// Whether everything about service `i` that is kept in the DCS has been written.
    fn settled(&self, i: usize) -> bool {
        let svc = &self.inner.config.services[i];
        let slot = &self.slots[i];
        let failback = slot.state.pending_failback(svc).map_or(String::new(), |(to, _)| to.to_string());
        slot.untold.is_none()
            && !self.progress_stale(i)
            && slot.announced.as_ref() == Some(&slot.state.announced(svc))
            && (slot.live.is_none() || slot.live == slot.shown_live)
            && slot.shown_failback.as_ref() == Some(&failback)
    }

    /// What concerns the cluster as a whole: nodes up and down, the pause.
    async fn round_cluster(&mut self, snapshot: &Snapshot) {
        let inner = self.inner.clone();
        let config = inner.config.clone();
        let alive: BTreeSet<String> = snapshot.alive.clone();
        for e in self.cluster.observe(&alive) {
            let (node, state) = match &e {
                Event::NodeWentDown { node } => (node.clone(), "down"),
                Event::NodeCameUp { node } => (node.clone(), "up"),
                _ => continue,
            };
            inner.notifications.send_in_term(&config, e, self.token);
            let _ = inner.dcs_call(inner.dcs.kv_put(NODES_NS, &node, state)).await;
        }
        if let Some(e) = engine::pause_transition(self.told_paused, snapshot.paused.as_ref()) {
            self.told_paused = !self.told_paused;
            match &e {
                Event::Paused { by } => tracing::warn!(%by, "the cluster is paused: nothing is switched until it is resumed"),
                _ => tracing::info!("the cluster is resumed: switching goes on"),
            }
            inner.notifications.send(&config, e);
            let told = if self.told_paused { "paused" } else { "running" };
            let _ = inner.dcs_call(inner.dcs.kv_put(PAUSE_NS, "told", told)).await;
        }
    }

    /// Decide service `i` and act on the decision; the switch it asks for, to start with the
    /// round's others.
    async fn decide(&mut self, i: usize, snapshot: &Snapshot) -> Result<Option<PlannedSwitch>, TermOver> {
        let inner = self.inner.clone();
        let config = inner.config.clone();
        let svc = &config.services[i];
        let mut planned = None;
        {
            if self.slots[i].read_once && !self.slots[i].untold_checked {
                self.slots[i].untold_checked = true;
                self.tell_untold_switch(i, snapshot).await?;
            }
            if let Some(Attempt { from, live_before, record }) = self.slots[i].went_through.take() {
                tracing::info!(service = %svc.name, to = %record.entry_point, "the provider points where the failed switch was to: its answer was lost, it went through");
                self.switched(i, from, live_before, &record).await?;
            }
            if self.slots[i].untold.is_some() {
                self.tell_switch(i).await?;
            }
            let agreement = Agreement::of(snapshot, &svc.name, &inner.definitions[&svc.name], &config.dhaf.node_name);
            let mut view = service_view(snapshot, svc, &agreement);
            let slot = &mut self.slots[i];
            tell_agreement(&inner, svc, slot, &agreement, view.out_of_agreement);
            view.awaiting_read_back = !slot.read_once;
            let first_check = config.dhaf.tact_interval + inner.providers.services[i].checker.timeout();
            view.first_opinions_within = first_check * svc.rise.max(svc.fall);
            // A fresh read is judged once; a service without a record keeps being offered what
            // the provider points at until it is adopted.
            if slot.fresh || view.current.is_none() {
                view.live = slot.live.clone();
            }
            slot.fresh = false;
            let now = Instant::now();
            let decision = engine::decide(svc, config.dhaf.min_votes, &mut slot.state, &view, now.into_std());
            inner.observed.lock().unwrap().metrics.decisions += 1;
            self.eligible.lock().unwrap()[i] = (0..svc.entry_points.len()).map(|e| slot.state.eligible(e)).collect();
            if let Some(w) = decision.wake_at {
                self.wake(i, Instant::from_std(w));
            }
            for action in decision.actions {
                match action {
                    Action::Notify(event) => inner.notifications.send_in_term(&config, event, self.token),
                    Action::Adopt { service, entry_point } => {
                        let record = self.record(&entry_point, SwitchKind::Initial);
                        match inner.dcs_call(inner.dcs.record_switch(&service, &record)).await {
                            Ok(()) => {
                                tracing::info!(%service, %entry_point, "adopted what the provider points at");
                                self.written.push((service, record));
                            }
                            Err(e) if e.kind() == DcsErrorKind::TermOver => return Err(TermOver),
                            // Not recorded: the next round offers it again.
                            Err(e) => tracing::warn!(%service, error = %e, "cannot record the adopted entry point"),
                        }
                    }
                    Action::PurgeSwitchover { service, entry_point, .. } => {
                        // Only the request this decision was about: a newer one stays.
                        let revision =
                            snapshot.switchovers.get(&service).filter(|r| r.entry_point == entry_point).map_or(0, |r| r.revision);
                        match inner.dcs_call(inner.dcs.purge_switchover(&service, Purge::Fenced { token: self.token, revision })).await {
                            Err(e) if e.kind() == DcsErrorKind::TermOver => return Err(TermOver),
                            Err(e) => tracing::warn!(error = %e, "cannot purge switchover"),
                            Ok(()) => {}
                        }
                    }
                    Action::Switch { to, kind, .. } => {
                        // A switchover carries who asked for it into the record and the history.
                        let asked = snapshot.switchovers.get(&svc.name).filter(|r| kind == SwitchKind::Switchover && r.entry_point == to);
                        let requested_by = asked.and_then(|r| r.by.clone());
                        planned = Some(PlannedSwitch { service: i, from: view.current.clone(), to, kind, requested_by })
                    }
                }
            }
            self.keep_announced(i).await;
            self.keep_live(i).await;
            self.keep_failback(i).await;
        }
        Ok(planned)
    }

    /// Start the switches decided: concurrently, and in the background, as one slow provider
    /// call must not delay another service's failover, even one decided while it runs.
    fn start_switches(&mut self, switches: Vec<PlannedSwitch>) {
        let inner = self.inner.clone();
        for PlannedSwitch { service: i, from, to, kind, requested_by } in switches {
            let record = SwitchRecord { requested_by, ..self.record(&to, kind) };
            let (inner, limit, eligible) = (inner.clone(), self.limit.clone(), self.eligible.clone());
            let task = self.running.spawn({
                let record = record.clone();
                async move {
                    let _permit = limit.acquire_owned().await.expect("never closed");
                    carry_out(&inner, i, &record, &eligible).await
                }
            });
            let slot = &mut self.slots[i];
            let live_before = slot.live.clone().filter(|_| slot.live_epoch == Some(slot.epoch));
            // A switch is told from where people last heard the service points: after a failed
            // attempt, or one an earlier term recorded and never carried out, the record names
            // a target the provider may never have pointed at.
            slot.went_through = None;
            let failed_from = slot.failed.take().map(|f| f.from);
            let from = slot.told_at.clone().filter(|t| !t.is_empty()).or(failed_from.flatten()).or(from);
            self.switching.insert(task.id(), Switching { service: i, from, live_before, record, decided: Instant::now() });
            self.slots[i].epoch += 1;
            self.slots[i].began_switch = true;
        }
    }

    /// Keep what was announced about service `i` in the DCS when it changed, so the next leader
    /// tells each transition exactly once.
    async fn keep_announced(&mut self, i: usize) {
        let svc = &self.inner.config.services[i];
        let now = self.slots[i].state.announced(svc);
        if self.slots[i].announced.as_ref() == Some(&now) {
            return;
        }
        let value = serde_json::to_string(&now).expect("plain data");
        if self.inner.dcs_call(self.inner.dcs.kv_put(ANNOUNCED_NS, &svc.name, &value)).await.is_ok() {
            self.slots[i].announced = Some(now);
        }
    }

    /// Take in a finished switch.
    async fn finish(&mut self, done: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) -> Result<(), TermOver> {
        let (id, outcome) = match done {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => (e.id(), Outcome::Failed(ProviderError::transient(format!("the switcher panicked: {e}")))),
        };
        let Some(Switching { service: i, from, live_before, record, decided }) = self.switching.remove(&id) else { return Ok(()) };
        self.slots[i].epoch += 1;
        self.touched.insert(i);
        if matches!(outcome, Outcome::Done | Outcome::Failed(_)) {
            self.written.push((self.inner.config.services[i].name.clone(), record.clone()));
        }
        match outcome {
            Outcome::Done => {
                let took = decided.elapsed();
                self.inner.observed.lock().unwrap().metrics.service(&self.inner.config.services[i].name).switch_duration.observe(took);
                self.switched(i, from, live_before, &record).await?;
            }
            // The next round's decision waits out the backoff.
            Outcome::Failed(error) => {
                self.slots[i].failed = Some(Attempt { from, live_before, record: record.clone() });
                self.failed(i, &record, error).await
            }
            Outcome::NotStarted(why) => {
                tracing::info!(service = %self.inner.config.services[i].name, to = %record.entry_point, why, "switch not started");
                // Its record may have been written: the next switch is from where this one began.
                self.slots[i].failed = Some(Attempt { from, live_before, record });
                self.slots[i].state.switch_not_started(Instant::now().into_std());
            }
            Outcome::TermOver => return Err(TermOver),
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
            requested_by: None,
            told_in: None,
        }
    }

    async fn switched(
        &mut self,
        i: usize,
        from: Option<String>,
        live_before: Option<String>,
        record: &SwitchRecord,
    ) -> Result<(), TermOver> {
        let inner = self.inner.clone();
        let svc = &inner.config.services[i];
        let attempts = self.slots[i].state.switch_succeeded();
        self.slots[i].live = Some(record.entry_point.clone());
        self.slots[i].live_epoch = Some(self.slots[i].epoch);
        {
            let mut l = inner.observed.lock().unwrap();
            l.metrics.switches += 1;
            *l.metrics.service(&svc.name).switches.entry(record.kind).or_default() += 1;
        }
        let from = if record.kind == SwitchKind::Repair { None } else { from };
        tracing::debug!(service = %svc.name, to = %record.entry_point, kind = ?record.kind, attempts = attempts + 1, "switch carried out; told once the history has it");
        if (attempts > 0 || self.slots[i].progress_shown) && inner.dcs_call(inner.dcs.kv_delete(SWITCHING_NS, &svc.name)).await.is_ok() {
            self.slots[i].progress_shown = false;
        }
        self.keep_live(i).await;
        // The provider pointed there already (read back since the last switch): perhaps nothing
        // moved (the record was ahead of it, after a switch that failed and was called off), or
        // an earlier call whose answer was lost moved it. `tell_switch` tells them apart by the
        // history. A repair always moved something.
        let already_there = record.kind != SwitchKind::Repair && live_before.as_deref() == Some(record.entry_point.as_str());
        self.slots[i].untold = Some(Untold { from, record: record.clone(), recovered_after: attempts, already_there, put_sent: false });
        self.tell_switch(i).await
    }

    /// Tell the switch service `i` made once it is in the history: the history is what the next
    /// leader reads to know it was told, so a leader that dies (or loses the DCS) between the
    /// switch and the telling leaves it to its successor instead of losing it, and one that told
    /// it never leaves it to be told again. Until the history takes it, each round tries again.
    /// The entry is written only in this term: once the term is over, whoever leads finds the
    /// switch untold and tells it, and this leader does not (`Err`: it stops leading).
    async fn tell_switch(&mut self, i: usize) -> Result<(), TermOver> {
        let Some(untold) = self.slots[i].untold.clone() else { return Ok(()) };
        let inner = self.inner.clone();
        let svc = &inner.config.services[i];
        let heard_there = self.slots[i].told_at.as_deref() == Some(untold.record.entry_point.as_str());
        if heard_there && (untold.already_there || untold.from.as_deref() == Some(untold.record.entry_point.as_str())) {
            // Where people last heard it points, and it was there (or no switch told says it
            // left): to them nothing moved, nothing to tell.
            tracing::info!(service = %svc.name, to = %untold.record.entry_point, "the provider already pointed there: nothing moved");
            self.slots[i].untold = None;
            return Ok(());
        }
        let to = untold.record.entry_point.clone();
        match self.append_history(&svc.name, &untold.record).await {
            Appended::Now => {}
            Appended::There { mine: true } if untold.put_sent => {}
            Appended::There { .. } => {
                // Not this leader's entry (it sent none, or the entry names the term that told
                // it): a successor found the switch untold while this leader could not reach the
                // DCS (paused, cut off, its write lost on the way), told it and wrote it. Told once.
                tracing::info!(service = %svc.name, %to, "another leader told this switch already");
                self.slots[i].untold = None;
                self.slots[i].told_at = Some(to);
                return Ok(());
            }
            Appended::NotWritten => return Ok(()),
            Appended::Unanswered => {
                if let Some(u) = self.slots[i].untold.as_mut() {
                    u.put_sent = true;
                }
                return Ok(());
            }
            Appended::TermOver => {
                // A successor may have found it untold and told it already: telling it here
                // too would tell it twice. If not, it will.
                tracing::info!(service = %svc.name, %to, "the term ended before the switch was in the history: the next leader tells it");
                self.slots[i].untold = None;
                return Err(TermOver);
            }
        }
        self.slots[i].untold = None;
        self.slots[i].told_at = Some(to.clone());
        let token = untold.record.token;
        let switched = Event::Switched { service: svc.name.clone(), from: untold.from, to: to.clone(), kind: untold.record.kind };
        inner.notifications.send_in_term(&inner.config, switched, token);
        if untold.recovered_after > 0 {
            let recovered = Event::SwitchRecovered { service: svc.name.clone(), to, attempts: untold.recovered_after };
            inner.notifications.send_in_term(&inner.config, recovered, token);
        }
        Ok(())
    }

    /// An earlier leader that recorded a switch, carried it out (the provider points there) and
    /// died before its history took it, never told it: tell it now, as the switch it was. The
    /// same for this node's own switch of the term, made before it stepped down and won the
    /// term back, that it never knew went through.
    /// Adopted records (`Initial`, no call made) are not switches to tell.
    async fn tell_untold_switch(&mut self, i: usize, snapshot: &Snapshot) -> Result<(), TermOver> {
        let inner = self.inner.clone();
        let svc = &inner.config.services[i];
        let Some(history) = self.history(&svc.name).await else { return Ok(()) };
        // Where people last heard the service points: the last switch told, else where the
        // provider was found (adopted, never a switch).
        self.slots[i].told_at = history.last().map(|h| h.entry_point.clone()).or_else(|| self.slots[i].live.clone());
        let Some(record) = snapshot.records.get(&svc.name) else { return Ok(()) };
        // A record of this very term that this leading did not make was made before the node
        // stepped down on its own (a lease deadline passed while the lease lived on) and won the
        // term back: what was known of that switch (a failed attempt whose answer was lost, a
        // read-back still to come) ended with that leading, so it is judged like an earlier
        // leader's.
        let known = record.token == self.token && self.slots[i].began_switch;
        if known || record.kind == SwitchKind::Initial || self.slots[i].live.as_deref() != Some(&record.entry_point) {
            return Ok(());
        }
        // Told already, or no change to tell: the last switch told went to the same place (a
        // record rewritten without a provider call, as a switch away from a target that never
        // took effect).
        if history.last().is_some_and(|h| h.entry_point == record.entry_point) {
            return Ok(());
        }
        let from = if record.kind == SwitchKind::Repair { None } else { history.last().map(|h| h.entry_point.clone()) };
        tracing::info!(service = %svc.name, to = %record.entry_point, by = %record.node, "telling a switch the previous leader made but did not tell");
        self.slots[i].untold = Some(Untold { from, record: record.clone(), recovered_after: 0, already_there: false, put_sent: false });
        self.tell_switch(i).await
    }

    /// A failed switch: back off, keep its progress in the DCS for status, tell people at the
    /// first failure and once more if it keeps failing, and read the provider back at once.
    async fn failed(&mut self, i: usize, record: &SwitchRecord, error: ProviderError) {
        let inner = self.inner.clone();
        let svc = &inner.config.services[i];
        let retry = self.slots[i].state.switch_failed(Instant::now().into_std(), &error);
        let reason = error.to_string();
        {
            let mut l = inner.observed.lock().unwrap();
            l.metrics.switch_failures += 1;
            *l.metrics.service(&svc.name).switch_failures.entry(record.kind).or_default() += 1;
        }
        if !retry.tell {
            // The attempts between those told: logged here, as no event tells them.
            tracing::error!(service = %svc.name, to = %record.entry_point, %reason, attempts = retry.attempts, retry_in = ?retry.backoff, term = %record.token.0, "switch failed again");
        } else {
            // The event tells the failure; when the next attempt comes depends on its kind.
            tracing::info!(service = %svc.name, to = %record.entry_point, permanent = matches!(error, ProviderError::Permanent(_)), retry_in = ?retry.backoff, "switch failed; trying again later");
            let (service, to) = (svc.name.clone(), record.entry_point.clone());
            let event = if retry.attempts == 1 {
                Event::SwitchFailed { service, to, reason: reason.clone() }
            } else {
                Event::SwitchStillFailing { service, to, attempts: retry.attempts, reason: reason.clone() }
            };
            inner.notifications.send_in_term(&inner.config, event, record.token);
        }
        if let Some(p) = self.slots[i].state.pending_switch() {
            let since = p.failing_since.map_or(wall_now(), |t| wall_now() - Instant::now().into_std().saturating_duration_since(t));
            let progress = SwitchProgress {
                to: p.to.clone(),
                kind: p.kind,
                attempts: p.attempts,
                failing_since: since,
                last_error: reason,
                next_attempt: Some(wall_now() + retry.backoff),
            };
            let value = serde_json::to_string(&progress).expect("plain data");
            if inner.dcs_call(inner.dcs.kv_put(SWITCHING_NS, &svc.name, &value)).await.is_ok() {
                self.slots[i].progress_shown = true;
            }
        }
        self.read_back(i);
    }

    /// Keep service `i`'s pending failback in the DCS for status (where to, and when by the wall
    /// clock), when its target changed; none is kept while none is pending.
    async fn keep_failback(&mut self, i: usize) {
        let svc = &self.inner.config.services[i];
        let slot = &self.slots[i];
        let pending = slot.state.pending_failback(svc);
        let target = pending.map_or(String::new(), |(to, _)| to.to_string());
        if slot.shown_failback.as_ref() == Some(&target) {
            return;
        }
        let dcs = &self.inner.dcs;
        let done = match pending {
            Some((to, due)) => {
                let at = wall_now() + due.saturating_duration_since(Instant::now().into_std());
                let value = serde_json::to_string(&PendingFailback { to: to.to_string(), at }).expect("plain data");
                self.inner.dcs_call(dcs.kv_put(FAILBACK_NS, &svc.name, &value)).await
            }
            None => self.inner.dcs_call(dcs.kv_delete(FAILBACK_NS, &svc.name)).await,
        };
        if done.is_ok() {
            self.slots[i].shown_failback = Some(target);
        }
    }

    /// Keep the provider's live state in the DCS for status, when it changed.
    async fn keep_live(&mut self, i: usize) {
        let slot = &self.slots[i];
        if slot.live.is_none() || slot.live == slot.shown_live {
            return;
        }
        let (name, live) = (&self.inner.config.services[i].name, slot.live.clone().unwrap_or_default());
        if self.inner.dcs_call(self.inner.dcs.kv_put(LIVE_NS, name, &live)).await.is_ok() {
            self.slots[i].shown_live = Some(live);
        }
    }

    /// The service's history as kept in the DCS (an unreadable one reads as empty); `None` when
    /// the DCS cannot be read.
    async fn history(&self, service: &str) -> Option<Vec<SwitchRecord>> {
        self.read_history(service).await.map(|(_, list)| list)
    }

    /// The service's history as stored (`None`: none is) and as read.
    async fn read_history(&self, service: &str) -> Option<(Option<String>, Vec<SwitchRecord>)> {
        let raw = self.inner.dcs_call(self.inner.dcs.kv_get(HISTORY_NS, service)).await.ok()?;
        let list = raw.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        Some((raw, list))
    }

    /// Append `record` to the service's history, unless it is its last entry already (a write
    /// whose answer was lost, tried again, or another leader's). Written only in this term and
    /// only over the history as read (a compare-and-swap): a deposed leader's late write cannot
    /// land after its successor's, and an entry another writer added meanwhile is read again
    /// and kept, never overwritten.
    async fn append_history(&self, service: &str, record: &SwitchRecord) -> Appended {
        let dcs = &self.inner.dcs;
        // A switch an earlier term made is told by this one: its entry says so, so that the
        // earlier leader, should it read the history again, does not take the entry for its own.
        let entry = match record.token == self.token {
            true => record.clone(),
            false => SwitchRecord { told_in: Some(self.token), ..record.clone() },
        };
        for _ in 0..HISTORY_TRIES {
            let Some((raw, mut list)) = self.read_history(service).await else { return Appended::NotWritten };
            if let Some(h) = list.last().filter(|h| same_switch(h, record)) {
                return Appended::There { mine: h.told_in.unwrap_or(h.token) == self.token };
            }
            list.push(entry.clone());
            let excess = list.len().saturating_sub(HISTORY_LEN);
            list.drain(..excess);
            let value = serde_json::to_string(&list).expect("plain data");
            match self.inner.dcs_call(dcs.kv_put_if(HISTORY_NS, service, &value, raw.as_deref(), self.token)).await {
                Ok(true) => return Appended::Now,
                Ok(false) => tracing::debug!(service, "the history changed since it was read: reading it again"),
                Err(e) if e.kind() == DcsErrorKind::Retry => return Appended::Unanswered,
                Err(e) if e.kind() == DcsErrorKind::TermOver => return Appended::TermOver,
                Err(_) => return Appended::NotWritten,
            }
        }
        Appended::NotWritten
    }
}

/// How one switch went.
enum Outcome {
    /// Recorded and carried out.
    Done,
    /// Recorded, but the provider failed (or the lease deadline came first).
    Failed(ProviderError),
    /// Nothing was switched, for a reason that is no provider failure (the DCS could not record
    /// it, or its target stopped being eligible while it waited): the engine decides again.
    NotStarted(&'static str),
    /// The term is over (fenced, or the lease may have expired): nothing was switched.
    TermOver,
}

/// Record the switch fenced by its term, then carry it out before the lease deadline.
async fn carry_out(inner: &Inner, i: usize, record: &SwitchRecord, eligible: &Eligibility) -> Outcome {
    let svc = &inner.config.services[i];
    let Some(e) = svc.entry_point_index(&record.entry_point) else { return Outcome::NotStarted("the target is not configured") };
    let ep = &svc.entry_points[e];
    let still_eligible = || eligible.lock().unwrap()[i].get(e).copied().unwrap_or(false);
    // It may have waited for a permit while the target went bad.
    if !still_eligible() {
        return Outcome::NotStarted("the target is no longer healthy and in rotation");
    }
    if !inner.may_lead(record.token, Instant::now()) {
        return Outcome::TermOver;
    }
    match inner.dcs_call(inner.dcs.record_switch(&svc.name, record)).await {
        Ok(()) => {}
        Err(e) if e.kind() == DcsErrorKind::TermOver => {
            inner.step_down("fenced: another term began");
            return Outcome::TermOver;
        }
        // No answer in time: the record may have been written or not. Read it back at once
        // rather than leave the switch to the next reconcile.
        Err(e) if e.kind() == DcsErrorKind::Retry => {
            let landed = match inner.dcs_call(inner.dcs.snapshot()).await {
                Ok(s) => s.records.get(&svc.name).is_some_and(|r| r.token == record.token && r.entry_point == record.entry_point),
                Err(_) => false,
            };
            if !landed {
                tracing::warn!(service = %svc.name, error = %e, "cannot record the switch; not switching");
                return Outcome::NotStarted("the dcs could not record it");
            }
        }
        Err(e) => {
            tracing::warn!(service = %svc.name, error = %e, "cannot record the switch; not switching");
            return Outcome::NotStarted("the dcs could not record it");
        }
    }
    // The target may have gone bad while the record was written: the record is corrected by
    // the engine's next decision, the provider is not pointed at a dead entry point meanwhile.
    if !still_eligible() {
        return Outcome::NotStarted("the target went bad while the switch was recorded");
    }
    // No provider call starts after the lease deadline, however late the record's answer came.
    if !inner.may_lead(record.token, Instant::now()) {
        return Outcome::Failed(ProviderError::transient("the lease deadline passed before the provider call could start"));
    }
    // The outcome is the event (`Switched`, `SwitchFailed`); this line only marks the call's start.
    tracing::debug!(service = %svc.name, to = %ep.name, kind = %record.kind, token = %record.token, "calling the switcher");
    let switcher = inner.providers.services[i].switcher.clone();
    tokio::select! {
        // Polled first: a deadline already past wins over starting the call.
        biased;
        _ = inner.term_ends(record.token) => Outcome::Failed(ProviderError::transient("the lease could not be renewed before the provider answered")),
        done = switcher.switch(ep, record.token) => match done {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot of alive nodes, each defining services by fingerprint: `[("n1", [("a", "x")])]`.
    fn snapshot(nodes: &[(&str, &[(&str, &str)])]) -> Snapshot {
        let mut s = Snapshot::default();
        for (node, defs) in nodes {
            s.alive.insert(node.to_string());
            let defs = defs
                .iter()
                .map(|(svc, f)| (svc.to_string(), ServiceDefinition { fingerprint: f.to_string(), settings: BTreeMap::new() }))
                .collect();
            s.definitions.insert(node.to_string(), defs);
        }
        s
    }

    fn own(s: &Snapshot, node: &str) -> BTreeMap<String, ServiceDefinition> {
        s.definitions[node].clone()
    }

    #[test]
    fn an_outvoted_node_stands_aside_only_for_a_fitter_one() {
        // n3 lists `a`'s entry points otherwise: n1 or n2 should lead.
        let s = snapshot(&[("n1", &[("a", "x"), ("b", "y")]), ("n2", &[("a", "x"), ("b", "y")]), ("n3", &[("a", "z"), ("b", "y")])]);
        assert_eq!(stand_aside(&s, &own(&s, "n3"), "n3").as_deref(), Some("a"));
        assert_eq!(stand_aside(&s, &own(&s, "n1"), "n1"), None);

        // A typo in every file, each on another service: every node is outvoted somewhere, and
        // nobody stands aside, so there still is a leader (it holds what it disagrees on).
        let s = snapshot(&[
            ("n1", &[("a", "x1"), ("b", "y"), ("c", "w")]),
            ("n2", &[("a", "x"), ("b", "y2"), ("c", "w")]),
            ("n3", &[("a", "x"), ("b", "y"), ("c", "w3")]),
        ]);
        for n in ["n1", "n2", "n3"] {
            assert!(outvoted(&s, &own(&s, n)).is_some(), "{n}");
            assert_eq!(stand_aside(&s, &own(&s, n), n), None, "{n}");
        }

        // A service the majority has and n3 lacks (a rolling add half done): n3 would not place it.
        let s = snapshot(&[("n1", &[("a", "x"), ("new", "q")]), ("n2", &[("a", "x"), ("new", "q")]), ("n3", &[("a", "x")])]);
        assert_eq!(stand_aside(&s, &own(&s, "n3"), "n3").as_deref(), Some("new"));
        assert_eq!(stand_aside(&s, &own(&s, "n1"), "n1"), None);

        // Two nodes that differ: no definition has a majority, nobody is outvoted.
        let s = snapshot(&[("n1", &[("a", "x")]), ("n2", &[("a", "z")])]);
        assert_eq!(stand_aside(&s, &own(&s, "n1"), "n1"), None);
    }
}
