//! The pure decision engine: what the leader should do about one service, given what the cluster
//! sees.
//!
//! No I/O, no clock, no async: time comes in as `now`, results go out as [`Action`]s, and the same
//! inputs always give the same answer. The runtime ([`crate::runtime`]) carries the actions out
//! and feeds their results back ([`ServiceState::switch_succeeded`], [`ServiceState::switch_failed`]).
//!
//! ```text
//!   opinions, alive nodes, current entry point, switchover request   (ServiceView)
//!                 │
//!                 ▼
//!   decide(config, &mut ServiceState, &view, now) ──► Decision { actions, wake_at }
//!                                                        │
//!          Switch / PurgeSwitchover / Notify ◄───────────┘  (carried out by the runtime)
//! ```
//!
//! The rules, in order:
//! 1. Each entry point gets a [`Verdict`] by majority of the alive nodes ([`quorum`]).
//! 2. A switchover request whose target is unhealthy, in maintenance or unknown is purged; a
//!    healthy target is pinned (switched to, and kept while healthy). A scheduled request
//!    (`switchover_at`) is left alone until its wall-clock time (`wall_secs`), then judged the
//!    same way (refused, [`Event::ScheduledSwitchoverRefused`], if its target is not healthy).
//! 3. With no current entry point, the highest-priority healthy one is chosen — after a wait,
//!    bounded by [`ServiceView::first_opinions_within`], for a higher-priority one an alive node
//!    has not judged yet (a cold start does not go to the second best and back).
//! 4. A current entry point in maintenance, or that the majority holds unhealthy, is left for the
//!    highest-priority healthy one (failover). With no entry point healthy (in maintenance or not)
//!    the service is in panic mode: nothing is switched, and that is said once.
//! 5. A healthy current entry point is left for a higher-priority one that has been healthy for
//!    `failback-delay` (switching back), unless `failback: manual`.
//! 6. If the provider's live state (read back) differs from the desired one, it is repaired.
//! 7. A switch that failed, or whose outcome was lost, is retried (with backoff) as the kind of
//!    switch it was, while its target is still where the service should point. The backoff
//!    honours the provider's error: its `retry_after`, and a longer wait after a permanent
//!    error ([`ServiceState::switch_failed`]).
//!
//! While the nodes disagree on the service's definition, or the cluster is paused
//! ([`ServiceView::paused`]), rules 2–7 are held: only transitions are told.
//!
//! Before these, a service the cluster has no record of adopts where the provider points
//! ([`Action::Adopt`]), and waits for the first read-back of a term rather than switching blind.
//! A switch under way ([`PendingSwitch::in_flight`]) gets no second one; the runtime reports its
//! outcome with [`ServiceState::switch_succeeded`], [`ServiceState::switch_failed`] or
//! [`ServiceState::switch_not_started`].
//!
//! Every target of a switch has a [`Verdict::Healthy`] verdict; that is the engine's central
//! invariant, checked by property tests.

pub mod hysteresis;
pub mod quorum;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::config::{Failback, ServiceConfig};
use crate::model::{Event, FencingToken, Opinion, SwitchKind};
use crate::provider::ProviderError;
pub use quorum::Verdict;

/// One alive node's opinion of an entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The node.
    pub node: String,
    /// Its opinion.
    pub opinion: Opinion,
}

/// What the cluster sees of one entry point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryPointView {
    /// The opinions of alive nodes (nodes that have not reported are simply absent).
    pub votes: Vec<Vote>,
    /// Taken out of rotation by an operator.
    pub maintenance: bool,
}

/// What the cluster sees of one service, as the input of [`decide`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    /// How many nodes are alive (the electorate).
    pub alive_nodes: usize,
    /// One per configured entry point, in the config's (priority) order.
    pub entry_points: Vec<EntryPointView>,
    /// The entry point the service points at (the leader's record, or the provider's live state
    /// on first start); `None` when unknown.
    pub current: Option<String>,
    /// The provider's live state, when it was just read back (`Some("")` when it points at no
    /// configured entry point); `None` when not read this time.
    pub live: Option<String>,
    /// The provider's live state has not been read yet in this term: a service with no record
    /// waits for it (to adopt what the provider points at) instead of switching blind.
    pub awaiting_read_back: bool,
    /// The pending switchover request's target.
    pub switchover: Option<String>,
    /// A scheduled switchover request: not before this wall-clock time (Unix seconds), judged
    /// against `wall_secs`.
    pub switchover_at: Option<u64>,
    /// The wall clock now (Unix seconds), for what is due at a wall-clock time. The engine never
    /// reads a clock: this and `now` come in together.
    pub wall_secs: u64,
    /// Fewer than a majority of the alive nodes share the leader's definition of the service
    /// (their `entry_points` votes are only those that do): the engine holds the service still —
    /// no switch, adoption or purge — and only tells what it sees, until they agree again.
    pub out_of_agreement: bool,
    /// The cluster is paused by an operator: the engine holds every service still — no switch,
    /// adoption or purge, not even a failover — and only tells what it sees, until it is resumed.
    pub paused: bool,
    /// How long a node takes to form its first opinion of an entry point (`rise`/`fall` checks
    /// with their timeouts). A service's first choice waits at most this long for a
    /// higher-priority entry point that an alive node has not judged yet: at a cold start the
    /// nodes' first opinions arrive one by one, and the first entry point to reach a majority
    /// need not be the best (choosing it would mean a second switch, back, moments later).
    pub first_opinions_within: Duration,
}

/// What the engine asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Point the service at entry point `to`.
    Switch {
        /// The service.
        service: String,
        /// The target entry point's name.
        to: String,
        /// Why.
        kind: SwitchKind,
    },
    /// Record `entry_point`, where the provider already points, as the service's current entry
    /// point, without calling the provider (a service the cluster has no record of yet).
    Adopt {
        /// The service.
        service: String,
        /// The entry point the provider points at.
        entry_point: String,
    },
    /// Drop the service's pending switchover request, if it still asks for `entry_point`.
    PurgeSwitchover {
        /// The service.
        service: String,
        /// The request's target: a newer request for another target is left alone.
        entry_point: String,
        /// Why, for people.
        why: String,
    },
    /// Tell the notifiers.
    Notify(Event),
}

/// The engine's answer for one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// What to do now, in order.
    pub actions: Vec<Action>,
    /// When to call [`decide`] again even if nothing changes (a failback delay or a retry ends).
    pub wake_at: Option<Instant>,
}

/// What the engine remembers about one service between calls; owned by the leader.
///
/// A fresh state is *primed* on its first call: it learns the verdicts without announcing them, so
/// a new leader does not repeat what its predecessor already told.
#[derive(Debug, Clone, Default)]
pub struct ServiceState {
    primed: bool,
    verdicts: Vec<Verdict>,
    // The last verdict other than `Unknown`, per entry point: what the events have said. A vote
    // count passing through `Unknown` (a split, a node not yet reported) is no transition, so
    // Unhealthy → Unknown → Healthy still says "came up" and Unhealthy → Unknown → Unhealthy says
    // nothing new.
    settled: Vec<Verdict>,
    // The switchover target whose purge was announced: if the purge itself fails, the request is
    // still there next time, and the purge is retried without telling people again.
    purge_told: Option<String>,
    // The switchover request seen last time: a new one is an operator's word to try now.
    request_seen: Option<String>,
    panic: bool,
    failback_since: Option<(usize, Instant)>,
    hold: Option<RetryHold>,
    pending: Option<PendingSwitch>,
    // Per entry point: healthy by majority and in rotation, by the last call.
    eligible: Vec<bool>,
    // When a first choice could first be made while a higher-priority entry point was unjudged.
    first_choice_since: Option<Instant>,
}

/// No switch begins before `until`, after a failure: any switch after a transient one (the far
/// end, or the way to it, is what failed), only another attempt at `target` after a permanent
/// one (what failed is that switch; another target is a new attempt).
#[derive(Debug, Clone)]
struct RetryHold {
    until: Instant,
    target: Option<String>,
}

/// A switch the engine asked for that is not known to be carried out yet: under way, failed and
/// waiting for its retry, or recorded with its outcome unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSwitch {
    /// The target entry point.
    pub to: String,
    /// Why it was asked for; a retry keeps it (a failover retried is still a failover).
    pub kind: SwitchKind,
    /// The runtime is carrying it out now: the service gets no second switch meanwhile.
    pub in_flight: bool,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the first attempt failed.
    pub failing_since: Option<Instant>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// What the leader should make of a failed switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchRetry {
    /// How long until it is retried.
    pub backoff: Duration,
    /// Failed attempts so far, this one included.
    pub attempts: u32,
    /// Worth telling people: the first failure, and again once it keeps failing.
    pub tell: bool,
}

/// What was announced about one service, kept in the DCS so that a new leader tells each
/// transition exactly once: neither again, nor never (an entry point that went down together
/// with the old leader).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announced {
    /// Entry points announced down (the last verdict told was unhealthy).
    #[serde(default)]
    pub down: BTreeSet<String>,
    /// Entry points announced up or first seen healthy.
    #[serde(default)]
    pub up: BTreeSet<String>,
    /// Panic mode (no healthy entry point) was announced.
    #[serde(default)]
    pub panic: bool,
}

/// A switch still failing after this many attempts is told again (the first failure is told at
/// once).
pub const STILL_FAILING_AFTER: u32 = 10;
/// The first retry of a failed switch waits this long; each further failure doubles it.
pub const SWITCH_RETRY_BASE: Duration = Duration::from_millis(500);
/// The longest wait between retries of a failed switch, unless the far end asks for longer.
pub const SWITCH_RETRY_MAX: Duration = Duration::from_secs(30);
/// The wait before a switch that failed with a [`ProviderError::Permanent`] error is tried again
/// (a bad token, a refused request): retrying sooner would only repeat the refusal, and spend the
/// provider's rate limit, until someone fixes something. A reload of the config, a new leader or a
/// new switchover request to the same target tries it at once, and so does a switch to another
/// target.
pub const SWITCH_RETRY_PERMANENT: Duration = Duration::from_secs(300);
/// The longest a provider's `retry_after` holds a failed switch back: every second of it the
/// service may point at a dead server, and five minutes is as long as the rate limits of the
/// providers dhaf speaks to block a client (Cloudflare's blocks for five minutes).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

impl ServiceState {
    /// The verdicts of the last call, one per entry point.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// Whether the service is in panic mode (no healthy entry point).
    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// The failback waiting out `failback-delay`, if any: the entry point it switches back to and
    /// when it is due (the service stays put until then, and for good if that entry point goes
    /// down again first).
    pub fn pending_failback<'a>(&self, service: &'a ServiceConfig) -> Option<(&'a str, Instant)> {
        let (i, since) = self.failback_since?;
        Some((service.entry_points.get(i)?.name.as_str(), since + service.failback_delay))
    }

    /// The switch asked for and not yet known to be carried out, if any.
    pub fn pending_switch(&self) -> Option<&PendingSwitch> {
        self.pending.as_ref()
    }

    /// The switch asked for was carried out; returns how many attempts had failed before.
    pub fn switch_succeeded(&mut self) -> u32 {
        self.hold = None;
        self.pending.take().map_or(0, |p| p.attempts)
    }

    /// The switch asked for failed at the provider with `error`: it is retried, as the same kind
    /// of switch, while its target stays the right one.
    ///
    /// The wait before the next attempt is [`SWITCH_RETRY_BASE`], doubling with each failure up
    /// to [`SWITCH_RETRY_MAX`]; a [`ProviderError::Transient`] with a `retry_after` waits at
    /// least that long, up to [`RETRY_AFTER_MAX`] (the far end refuses earlier attempts, and may
    /// extend its limit for them), and holds back every switch of the service meanwhile. A
    /// [`ProviderError::Permanent`] waits at least [`SWITCH_RETRY_PERMANENT`], but holds back only
    /// another attempt at the same target, and not one a new switchover request asks for.
    pub fn switch_failed(&mut self, now: Instant, error: &ProviderError) -> SwitchRetry {
        let p = self.pending.get_or_insert_with(|| PendingSwitch {
            to: String::new(),
            kind: SwitchKind::Repair,
            in_flight: false,
            attempts: 0,
            failing_since: None,
            last_error: None,
        });
        let backoff = SWITCH_RETRY_BASE.saturating_mul(1 << p.attempts.min(10)).min(SWITCH_RETRY_MAX);
        let (backoff, target) = match error {
            ProviderError::Transient { retry_after, .. } => (backoff.max(retry_after.unwrap_or_default().min(RETRY_AFTER_MAX)), None),
            ProviderError::Permanent(_) => (backoff.max(SWITCH_RETRY_PERMANENT), Some(p.to.clone())),
        };
        p.in_flight = false;
        p.attempts += 1;
        p.failing_since.get_or_insert(now);
        p.last_error = Some(error.to_string());
        self.hold = Some(RetryHold { until: now + backoff, target });
        SwitchRetry { backoff, attempts: p.attempts, tell: p.attempts == 1 || p.attempts == STILL_FAILING_AFTER }
    }

    /// The switch asked for was not carried out, for a reason that is no failure of the provider
    /// (the DCS could not record it, or its target stopped being eligible before it began): it
    /// is decided again shortly, without counting an attempt.
    pub fn switch_not_started(&mut self, now: Instant) {
        if let Some(p) = &mut self.pending {
            p.in_flight = false;
        }
        self.hold = Some(RetryHold { until: now + SWITCH_RETRY_BASE, target: None });
    }

    /// Whether entry point `index` may be switched to now, by the last call's verdicts (a switch
    /// that waited for its turn checks this again before it begins).
    pub fn eligible(&self, index: usize) -> bool {
        self.eligible.get(index).copied().unwrap_or(false)
    }

    /// What has been announced, to keep in the DCS for the next leader.
    pub fn announced(&self, service: &ServiceConfig) -> Announced {
        let mut a = Announced { panic: self.panic, ..Announced::default() };
        for (ep, v) in service.entry_points.iter().zip(&self.settled) {
            match v {
                Verdict::Unhealthy => a.down.insert(ep.name.clone()),
                Verdict::Healthy => a.up.insert(ep.name.clone()),
                Verdict::Unknown => false,
            };
        }
        a
    }

    /// A state that goes on from what an earlier leader announced: the first call tells every
    /// difference instead of learning silently.
    pub fn resume(service: &ServiceConfig, announced: &Announced) -> ServiceState {
        let settled = service
            .entry_points
            .iter()
            .map(|ep| {
                if announced.down.contains(&ep.name) {
                    Verdict::Unhealthy
                } else if announced.up.contains(&ep.name) {
                    Verdict::Healthy
                } else {
                    Verdict::Unknown
                }
            })
            .collect();
        ServiceState { primed: true, settled, panic: announced.panic, ..ServiceState::default() }
    }
}

/// Count the votes of one entry point.
pub fn entry_point_verdict(ep: &EntryPointView, alive_nodes: usize, min_votes: usize) -> Verdict {
    let healthy = ep.votes.iter().filter(|v| v.opinion.healthy).count();
    quorum::verdict(healthy, ep.votes.len() - healthy, alive_nodes, min_votes)
}

/// What the votes say of a service now, remembering nothing: the verdicts and what follows from
/// them. [`decide`] starts from it; the status API shows it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Each entry point's verdict, in priority order.
    pub verdicts: Vec<Verdict>,
    /// Each entry point: healthy by majority and in rotation (not in maintenance).
    pub eligible: Vec<bool>,
    /// The highest-priority eligible entry point.
    pub best: Option<usize>,
    /// Some entry point is healthy. A healthy one in maintenance still serves the service
    /// (nothing moves it away with nowhere to go).
    pub served: bool,
    /// Panic mode: no entry point is healthy and every one in rotation is unhealthy.
    pub panic: bool,
    /// Served only by entry points in maintenance: there is nothing to fail over to.
    pub degraded: bool,
}

/// Judge `service` by the cluster's `view` of it, with `min_votes` (`dhaf.min-votes`).
pub fn assess(service: &ServiceConfig, min_votes: usize, view: &ServiceView) -> Assessment {
    let n = service.entry_points.len();
    let verdicts: Vec<Verdict> = (0..n)
        .map(|i| view.entry_points.get(i).map_or(Verdict::Unknown, |ep| entry_point_verdict(ep, view.alive_nodes, min_votes)))
        .collect();
    let eligible: Vec<bool> = (0..n).map(|i| verdicts[i] == Verdict::Healthy && !in_maintenance(view, i)).collect();
    let best = eligible.iter().position(|e| *e);
    let served = verdicts.contains(&Verdict::Healthy);
    let panic = !served && (0..n).filter(|&i| !in_maintenance(view, i)).all(|i| verdicts[i] == Verdict::Unhealthy);
    Assessment { degraded: served && best.is_none(), verdicts, eligible, best, served, panic }
}

fn in_maintenance(view: &ServiceView, i: usize) -> bool {
    view.entry_points.get(i).is_some_and(|ep| ep.maintenance)
}

/// Decide what to do about `service`, given the cluster's `view` of it at `now`.
///
/// `min_votes` is the cluster's `dhaf.min-votes`. The rules, in order, each a function of its
/// own: adopt the provider's state (0), tell transitions, hold while the nodes disagree (1), the
/// switchover request (2), placement (3–5), drift repair (6), retry of a switch not carried out
/// (7), then one switch at a time.
pub fn decide(service: &ServiceConfig, min_votes: usize, state: &mut ServiceState, view: &ServiceView, now: Instant) -> Decision {
    let a = assess(service, min_votes, view);
    let mut d = Decision::default();
    state.eligible.clone_from(&a.eligible);
    let mut current = view.current.as_deref().and_then(|c| service.entry_point_index(c));
    if view.current.is_none() {
        if let Some(l) = adopt(service, view) {
            d.actions.push(Action::Adopt { service: service.name.clone(), entry_point: service.entry_points[l].name.clone() });
            current = Some(l);
        }
    }
    announce(service, view, &a, state, &mut d);
    if view.out_of_agreement || view.paused {
        hold(state, &mut d);
    } else {
        let (pinned, pending_switchover) = switchover(service, view, &a, state, now, &mut d);
        let mut target = placement(service, view, &a, current, pinned, pending_switchover, state, now, &mut d);
        if target.is_none() {
            target = repair(service, view, &a, current);
        }
        let target = retry(service, &a, current, target, state);
        switch(service, target, state, now, &mut d);
    }
    state.verdicts = a.verdicts;
    d
}

/// Rule 0: a service the cluster has no record of adopts what the provider points at.
fn adopt(service: &ServiceConfig, view: &ServiceView) -> Option<usize> {
    view.live.as_deref().and_then(|l| service.entry_point_index(l))
}

/// Transitions, each told once; a fresh state learns them silently.
fn announce(service: &ServiceConfig, view: &ServiceView, a: &Assessment, state: &mut ServiceState, d: &mut Decision) {
    let name = &service.name;
    let ep_name = |i: usize| service.entry_points[i].name.clone();
    state.settled.resize(a.verdicts.len(), Verdict::Unknown);
    if state.primed {
        for (i, &v) in a.verdicts.iter().enumerate() {
            let prev = state.settled[i];
            if v == Verdict::Unhealthy && prev != Verdict::Unhealthy {
                let reasons = view.entry_points[i]
                    .votes
                    .iter()
                    .filter(|v| !v.opinion.healthy)
                    .map(|v| format!("{}: {}", v.node, v.opinion.reason.as_deref().unwrap_or("unhealthy")))
                    .collect();
                d.actions.push(Action::Notify(Event::EntryPointWentDown { service: name.clone(), entry_point: ep_name(i), reasons }));
            } else if v == Verdict::Healthy && prev == Verdict::Unhealthy {
                d.actions.push(Action::Notify(Event::EntryPointCameUp { service: name.clone(), entry_point: ep_name(i) }));
            }
        }
        if a.panic && !state.panic {
            d.actions.push(Action::Notify(Event::ServiceWentDown { service: name.clone() }));
        } else if !a.panic && state.panic && a.served {
            d.actions.push(Action::Notify(Event::ServiceCameUp { service: name.clone() }));
        }
    }
    state.primed = true;
    for (settled, &v) in state.settled.iter_mut().zip(&a.verdicts) {
        if v != Verdict::Unknown {
            *settled = v;
        }
    }
    if a.panic || a.served {
        state.panic = a.panic;
    }
}

/// Rule 1: nodes that define the service differently hold it still (what one leader would switch
/// to, the next might switch away from), and so does a pause: only the news is told. A failed
/// switch stays pending: once they agree (or the cluster is resumed), it is retried if still right.
fn hold(state: &mut ServiceState, d: &mut Decision) {
    d.actions.retain(|a| matches!(a, Action::Notify(_)));
    state.failback_since = None;
}

/// Rule 2: the switchover request. Returns the entry point it pins the service to, if it can be
/// honoured now, and whether a request stays pending (which holds failback back).
fn switchover(
    service: &ServiceConfig,
    view: &ServiceView,
    a: &Assessment,
    state: &mut ServiceState,
    now: Instant,
    d: &mut Decision,
) -> (Option<usize>, bool) {
    let name = &service.name;
    let mut pinned = None;
    if state.purge_told != view.switchover {
        state.purge_told = None;
    }
    if state.request_seen != view.switchover {
        // A new request to a target a permanent failure holds back: someone may have fixed it.
        if view.switchover.is_some() && state.hold.as_ref().is_some_and(|h| h.target == view.switchover) {
            state.hold = None;
        }
        state.request_seen.clone_from(&view.switchover);
    }
    let Some(target) = &view.switchover else { return (None, false) };
    // A scheduled request changes nothing before its time (not even failback), and is judged
    // only then: the target may well be down for maintenance until shortly before.
    let scheduled = match view.switchover_at {
        Some(at) if view.wall_secs < at => {
            let due = now + Duration::from_secs(at - view.wall_secs);
            d.wake_at = Some(d.wake_at.map_or(due, |w| w.min(due)));
            return (None, false);
        }
        Some(_) => view.current.as_deref() != Some(target.as_str()),
        None => false,
    };
    let why = match service.entry_point_index(target) {
        None => Some(format!("entry point {target} is not configured")),
        Some(t) if in_maintenance(view, t) => Some(format!("entry point {target} is in maintenance")),
        Some(t) if a.verdicts[t] == Verdict::Unhealthy => Some(format!("entry point {target} is unhealthy")),
        Some(t) => {
            if a.verdicts[t] == Verdict::Healthy {
                pinned = Some(t);
            }
            None
        }
    };
    let Some(why) = why else { return (pinned, true) };
    d.actions.push(Action::PurgeSwitchover { service: name.clone(), entry_point: target.clone(), why: why.clone() });
    if state.purge_told.is_none() {
        state.purge_told = Some(target.clone());
        // Due and never carried out: the scheduled switchover is refused, not merely dropped.
        let event = if scheduled {
            Event::ScheduledSwitchoverRefused { service: name.clone(), entry_point: target.clone(), why }
        } else {
            Event::SwitchoverPurged { service: name.clone(), entry_point: target.clone(), why }
        };
        d.actions.push(Action::Notify(event));
    }
    (pinned, false)
}

/// Rules 3–5: where the service should point — the pinned switchover target, away from a
/// current entry point in maintenance or unhealthy, back to a recovered higher priority after the
/// failback delay, or a first choice once the provider was read.
#[allow(clippy::too_many_arguments)]
fn placement(
    service: &ServiceConfig,
    view: &ServiceView,
    a: &Assessment,
    current: Option<usize>,
    pinned: Option<usize>,
    pending_switchover: bool,
    state: &mut ServiceState,
    now: Instant,
    d: &mut Decision,
) -> Option<(usize, SwitchKind)> {
    let mut target = None;
    let mut failback_candidate = None;
    if let Some(t) = pinned {
        if current != Some(t) {
            target = Some((t, SwitchKind::Switchover));
        }
    } else if let Some(c) = current {
        if in_maintenance(view, c) {
            target = a.best.map(|b| (b, SwitchKind::Maintenance));
        } else if a.verdicts[c] == Verdict::Unhealthy {
            target = a.best.map(|b| (b, SwitchKind::Failover));
        } else if a.verdicts[c] == Verdict::Healthy && service.failback == Failback::Auto && !pending_switchover {
            if let Some(b) = a.best.filter(|&b| b < c) {
                failback_candidate = Some(b);
                let since = match state.failback_since {
                    Some((i, t)) if i == b => t,
                    _ => now,
                };
                state.failback_since = Some((b, since));
                if now.saturating_duration_since(since) >= service.failback_delay {
                    target = Some((b, SwitchKind::Failback));
                } else {
                    d.wake_at = Some(since + service.failback_delay);
                }
            }
        }
    } else if !view.awaiting_read_back {
        target = first_choice(view, a, state, now, d);
    }
    if failback_candidate.is_none() {
        state.failback_since = None;
    }
    target
}

/// Rule 3: a service pointing nowhere known gets the best eligible entry point — once every
/// higher-priority one in rotation is judged by all alive nodes, or
/// [`ServiceView::first_opinions_within`] after the choice could first be made.
fn first_choice(
    view: &ServiceView,
    a: &Assessment,
    state: &mut ServiceState,
    now: Instant,
    d: &mut Decision,
) -> Option<(usize, SwitchKind)> {
    let best = a.best?;
    let unjudged = (0..best).any(|i| {
        a.verdicts[i] == Verdict::Unknown
            && !in_maintenance(view, i)
            && view.entry_points.get(i).map_or(0, |ep| ep.votes.len()) < view.alive_nodes
    });
    if unjudged {
        let until = *state.first_choice_since.get_or_insert(now) + view.first_opinions_within;
        if now < until {
            d.wake_at = Some(d.wake_at.map_or(until, |w| w.min(until)));
            return None;
        }
    }
    Some((best, SwitchKind::Initial))
}

/// Rule 6: repair drift of the provider's live state (just read back) from a healthy current
/// entry point in rotation.
fn repair(service: &ServiceConfig, view: &ServiceView, a: &Assessment, current: Option<usize>) -> Option<(usize, SwitchKind)> {
    let (c, live) = (current?, view.live.as_ref()?);
    (*live != service.entry_points[c].name && a.eligible[c]).then_some((c, SwitchKind::Repair))
}

/// Rule 7: a switch recorded but not carried out (it failed, or its outcome was lost) is retried
/// as what it was, while its target is still where the service should point.
fn retry(
    service: &ServiceConfig,
    a: &Assessment,
    current: Option<usize>,
    target: Option<(usize, SwitchKind)>,
    state: &mut ServiceState,
) -> Option<(usize, SwitchKind)> {
    let Some(p) = &state.pending else { return target };
    let to = service.entry_point_index(&p.to);
    match target {
        Some((t, _)) if Some(t) == to => Some((t, p.kind)),
        None => match to {
            Some(t) if Some(t) == current && a.eligible[t] => Some((t, p.kind)),
            _ => {
                if !p.in_flight {
                    state.pending = None;
                }
                None
            }
        },
        other => other,
    }
}

/// One switch per service at a time, after any retry backoff: the engine decides again once the
/// runtime reports the outcome.
fn switch(service: &ServiceConfig, target: Option<(usize, SwitchKind)>, state: &mut ServiceState, now: Instant, d: &mut Decision) {
    let in_flight = state.pending.as_ref().is_some_and(|p| p.in_flight);
    let Some((t, kind)) = target.filter(|_| !in_flight) else { return };
    let to = service.entry_points[t].name.clone();
    match &state.hold {
        Some(h) if now < h.until && h.target.as_ref().is_none_or(|held| *held == to) => {
            d.wake_at = Some(d.wake_at.map_or(h.until, |w| w.min(h.until)));
            return;
        }
        _ => {}
    }
    match &mut state.pending {
        Some(p) if p.to == to => {
            p.kind = kind;
            p.in_flight = true;
        }
        pending => {
            *pending = Some(PendingSwitch { to: to.clone(), kind, in_flight: true, attempts: 0, failing_since: None, last_error: None })
        }
    }
    d.actions.push(Action::Switch { service: service.name.clone(), to, kind });
}

/// What the leader remembers about the cluster's nodes, to tell node up/down once per transition.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    primed: bool,
    alive: BTreeSet<String>,
}

impl ClusterState {
    /// A state that already announced `alive` as the alive nodes (kept in the DCS across leaders),
    /// so the next call tells every difference, including a node that died with the old leader.
    pub fn with_known(alive: BTreeSet<String>) -> Self {
        ClusterState { primed: true, alive }
    }

    /// Feed the set of alive nodes; returns the node events since the last call.
    ///
    /// The first call learns the set silently.
    pub fn observe(&mut self, alive: &BTreeSet<String>) -> Vec<Event> {
        let mut events = Vec::new();
        if self.primed {
            for gone in self.alive.difference(alive) {
                events.push(Event::NodeWentDown { node: gone.clone() });
            }
            for new in alive.difference(&self.alive) {
                events.push(Event::NodeCameUp { node: new.clone() });
            }
        }
        self.primed = true;
        self.alive = alive.clone();
        events
    }
}

/// The event to tell when the cluster's pause changed from what was last told (`told_paused`),
/// if any: [`Event::Paused`] or [`Event::Resumed`], once per transition.
pub fn pause_transition(told_paused: bool, paused: Option<&crate::model::Pause>) -> Option<Event> {
    match (told_paused, paused) {
        (false, Some(p)) => Some(Event::Paused { by: p.by.clone() }),
        (true, None) => Some(Event::Resumed {}),
        _ => None,
    }
}

/// The event a node announces when it wins an election.
pub fn leader_elected(node: &str, token: FencingToken) -> Event {
    Event::LeaderElected { node: node.into(), token }
}

#[cfg(test)]
mod tests;
