//! The engine's rules as tables, and its invariants as properties.
//!
//! A table case is a config plus a script of calls on one [`ServiceState`]: earlier calls build
//! the state the later ones are judged in, and every call's whole action list (and `wake_at`) is
//! asserted, so an extra or repeated action fails as surely as a missing one.
//!
//! Views are written compactly: entry points are `a`, `b`, `c` in priority order, and each is a
//! string with one character per alive node (`n1`, `n2`, …): `+` healthy, `-` unhealthy ("refused"),
//! `~` unhealthy ("timeout"), `!` unhealthy without a reason, `.` not reported. A leading `M`
//! puts the entry point in maintenance.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::config::{Failback, ProviderConfig, ServiceConfig};
use crate::model::{EntryPoint, Event, Opinion, SwitchKind};
use crate::provider::ProviderError;

const SVC: &str = "web";
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

fn service(n: usize, failback: Failback, delay: Duration) -> ServiceConfig {
    let provider =
        |kind: &str| ProviderConfig { kind: kind.into(), name: None, path: String::new(), settings: crate::config::Settings::new() };
    ServiceConfig {
        name: SVC.into(),
        domain: "web.example.com".into(),
        entry_points: (0..n).map(|i| EntryPoint { name: NAMES[i].into(), ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)) }).collect(),
        switcher: provider("exec"),
        health_checker: provider("web"),
        rise: 2,
        fall: 2,
        failback,
        failback_delay: delay,
    }
}

// ---------------------------------------------------------------------------------------------
// Views

/// A view with `alive` nodes and one vote string per entry point (see the module doc).
fn view(alive: usize, eps: &[&str]) -> V {
    let entry_points = eps
        .iter()
        .map(|s| {
            let (maintenance, votes) = match s.strip_prefix('M') {
                Some(rest) => (true, rest),
                None => (false, *s),
            };
            let votes = votes
                .chars()
                .enumerate()
                .filter_map(|(i, c)| {
                    let opinion = match c {
                        '+' => Opinion::healthy(),
                        '-' => Opinion::unhealthy("refused"),
                        '~' => Opinion::unhealthy("timeout"),
                        '!' => Opinion { healthy: false, reason: None },
                        '.' => return None,
                        other => panic!("bad vote {other:?}"),
                    };
                    Some(Vote { node: format!("n{}", i + 1), opinion })
                })
                .collect();
            EntryPointView { votes, maintenance }
        })
        .collect();
    V(ServiceView {
        alive_nodes: alive,
        entry_points,
        current: None,
        live: None,
        awaiting_read_back: false,
        switchover: None,
        switchover_at: None,
        wall_secs: 0,
        out_of_agreement: false,
        paused: false,
        first_opinions_within: Duration::ZERO,
    })
}

/// A [`ServiceView`] under construction.
#[derive(Clone)]
struct V(ServiceView);

impl V {
    fn cur(mut self, ep: &str) -> Self {
        self.0.current = Some(ep.into());
        self
    }
    fn live(mut self, ep: &str) -> Self {
        self.0.live = Some(ep.into());
        self
    }
    fn awaiting(mut self) -> Self {
        self.0.awaiting_read_back = true;
        self
    }
    fn so(mut self, ep: &str) -> Self {
        self.0.switchover = Some(ep.into());
        self
    }
    /// Fewer than a majority of the alive nodes share the leader's definition of the service.
    fn disagree(mut self) -> Self {
        self.0.out_of_agreement = true;
        self
    }
    /// The switchover request is scheduled for wall-clock second `at`; the wall clock shows `wall`.
    fn sched(mut self, at: u64, wall: u64) -> Self {
        self.0.switchover_at = Some(at);
        self.0.wall_secs = wall;
        self
    }
    /// The nodes' first opinions arrive within `secs` of the first decision.
    fn first_opinions(mut self, secs: u64) -> Self {
        self.0.first_opinions_within = Duration::from_secs(secs);
        self
    }
    /// The cluster is paused.
    fn paused(mut self) -> Self {
        self.0.paused = true;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Expected actions

fn sw(to: &str, kind: SwitchKind) -> Action {
    Action::Switch { service: SVC.into(), to: to.into(), kind }
}
fn adopt(ep: &str) -> Action {
    Action::Adopt { service: SVC.into(), entry_point: ep.into() }
}
fn down(ep: &str, reasons: &[&str]) -> Action {
    Action::Notify(Event::EntryPointWentDown {
        service: SVC.into(),
        entry_point: ep.into(),
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
    })
}
fn up(ep: &str) -> Action {
    Action::Notify(Event::EntryPointCameUp { service: SVC.into(), entry_point: ep.into() })
}
fn svc_down() -> Action {
    Action::Notify(Event::ServiceWentDown { service: SVC.into() })
}
fn svc_up() -> Action {
    Action::Notify(Event::ServiceCameUp { service: SVC.into() })
}
fn purge(ep: &str, why: &str) -> Action {
    Action::PurgeSwitchover { service: SVC.into(), entry_point: ep.into(), why: why.into() }
}
fn purged(ep: &str, why: &str) -> Action {
    Action::Notify(Event::SwitchoverPurged { service: SVC.into(), entry_point: ep.into(), why: why.into() })
}

use SwitchKind::{Failback as Back, Failover, Initial, Maintenance as Maint, Repair, Switchover};

// ---------------------------------------------------------------------------------------------
// The table

/// The config knobs a case varies.
#[derive(Clone, Copy)]
struct Knobs {
    eps: usize,
    failback: Failback,
    delay: u64,
    min_votes: usize,
}

const K: Knobs = Knobs { eps: 3, failback: Failback::Auto, delay: 0, min_votes: 1 };

impl Knobs {
    const fn eps(self, eps: usize) -> Self {
        Knobs { eps, ..self }
    }
    const fn manual(self) -> Self {
        Knobs { failback: Failback::Manual, ..self }
    }
    const fn delay(self, secs: u64) -> Self {
        Knobs { delay: secs, ..self }
    }
    const fn min(self, min_votes: usize) -> Self {
        Knobs { min_votes, ..self }
    }
}

/// One step of a case's script. Times are milliseconds after the case's start.
///
/// A switch asked for is taken as carried out when the next step is another `D`; `Failed`,
/// `NotStarted` and `Running` say otherwise.
enum Step {
    /// Call `decide` at `ms` with the view; expect exactly these actions and this `wake_at`.
    D(u64, V, Vec<Action>, Option<u64>),
    /// The last switch failed at `ms` (a transient error); expect the backoff and whether it is told.
    Failed(u64, u64, bool),
    /// The last switch failed at `ms` with this error; expect the backoff and whether it is told.
    FailedWith(u64, ProviderError, u64, bool),
    /// The last switch was carried out.
    Succeeded,
    /// The last switch did not begin at `ms` (not recorded, or its target went bad meanwhile).
    NotStarted(u64),
    /// The last switch is still under way.
    Running,
}
use Step::{Failed, FailedWith, NotStarted, Running, Succeeded, D};

fn run(name: &str, k: Knobs, steps: Vec<Step>) {
    let svc = service(k.eps, k.failback, Duration::from_secs(k.delay));
    let mut state = ServiceState::default();
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut unreported = false;
    for (i, step) in steps.into_iter().enumerate() {
        if unreported && matches!(step, D(..)) {
            state.switch_succeeded();
        }
        unreported = false;
        match step {
            D(ms, v, want, wake) => {
                let got = decide(&svc, k.min_votes, &mut state, &v.0, at(ms));
                unreported = got.actions.iter().any(|a| matches!(a, Action::Switch { .. }));
                let want = Decision { actions: want, wake_at: wake.map(at) };
                assert_eq!(got, want, "case {name:?}, step {i} (t = {ms} ms)");
            }
            Failed(ms, backoff, tell) => {
                let got = state.switch_failed(at(ms), &ProviderError::transient("provider error"));
                assert_eq!((got.backoff, got.tell), (Duration::from_millis(backoff), tell), "case {name:?}, step {i}: switch_failed");
            }
            FailedWith(ms, error, backoff, tell) => {
                let got = state.switch_failed(at(ms), &error);
                assert_eq!((got.backoff, got.tell), (Duration::from_millis(backoff), tell), "case {name:?}, step {i}: switch_failed");
                assert_eq!(state.pending_switch().and_then(|p| p.last_error.clone()), Some(error.to_string()), "case {name:?}, step {i}");
            }
            Succeeded => {
                state.switch_succeeded();
            }
            NotStarted(ms) => state.switch_not_started(at(ms)),
            Running => {}
        }
    }
}

const S: u64 = 1000;

#[test]
fn nodes_that_define_the_service_differently_hold_it_still() {
    let cases = [
        (
            "no initial switch and no adoption",
            K,
            vec![
                D(0, view(3, &["+..", "+..", "+.."]).live("b").disagree(), vec![], None),
                D(S, view(3, &["+..", "+..", "+.."]).disagree(), vec![], None),
            ],
        ),
        (
            "no failover, but the news is told; once they agree the service moves",
            K,
            vec![
                D(0, view(3, &["++.", "++.", "++."]).cur("a"), vec![], None),
                D(S, view(3, &["--.", "++.", "++."]).cur("a").disagree(), vec![down("a", &["n1: refused", "n2: refused"])], None),
                D(2 * S, view(3, &["--.", "++.", "++."]).cur("a").disagree(), vec![], None),
                D(3 * S, view(3, &["---", "+++", "+++"]).cur("a"), vec![sw("b", Failover)], None),
            ],
        ),
        (
            "no failback, no switchover, no purge, no repair",
            K,
            vec![
                D(0, view(3, &["++.", "++.", "++."]).cur("b").live("c").so("zz").disagree(), vec![], None),
                D(S, view(3, &["++.", "++.", "++."]).cur("b").so("c").disagree(), vec![], None),
            ],
        ),
        (
            "a failed switch is retried only once they agree again",
            K,
            vec![
                D(0, view(3, &["---", "+++", "+++"]).cur("a"), vec![sw("b", Failover)], None),
                Failed(0, 500, true),
                D(S, view(3, &["---", "++.", "++."]).cur("a").disagree(), vec![], None),
                D(2 * S, view(3, &["---", "+++", "+++"]).cur("b"), vec![sw("b", Failover)], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

fn refused(ep: &str, why: &str) -> Action {
    Action::Notify(Event::ScheduledSwitchoverRefused { service: SVC.into(), entry_point: ep.into(), why: why.into() })
}

#[test]
fn a_scheduled_switchover_waits_for_its_time_then_is_carried_out_or_refused() {
    const T: u64 = 1_800_000_000;
    let cases = [
        (
            "nothing before its time (the engine asks to be woken then); at its time, the switch",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a").so("b").sched(T + 60, T), vec![], Some(60 * S)),
                D(30 * S, view(3, &["+++", "+++", "+++"]).cur("a").so("b").sched(T + 60, T + 30), vec![], Some(60 * S)),
                D(60 * S, view(3, &["+++", "+++", "+++"]).cur("a").so("b").sched(T + 60, T + 60), vec![sw("b", Switchover)], None),
                // Carried out, it is pinned like any switchover.
                D(61 * S, view(3, &["+++", "+++", "+++"]).cur("b").so("b").sched(T + 60, T + 61), vec![], None),
            ],
        ),
        (
            "a target that is down before its time is not purged early; still down at its time, refused once",
            K,
            vec![
                D(0, view(3, &["+++", "---", "+++"]).cur("a").so("b").sched(T + 60, T), vec![], Some(60 * S)),
                D(
                    60 * S,
                    view(3, &["+++", "---", "+++"]).cur("a").so("b").sched(T + 60, T + 60),
                    vec![purge("b", "entry point b is unhealthy"), refused("b", "entry point b is unhealthy")],
                    None,
                ),
                D(
                    61 * S,
                    view(3, &["+++", "---", "+++"]).cur("a").so("b").sched(T + 60, T + 61),
                    vec![purge("b", "entry point b is unhealthy")],
                    None,
                ),
            ],
        ),
        (
            "a target in maintenance at its time is refused",
            K,
            vec![D(
                0,
                view(3, &["+++", "M+++", "+++"]).cur("a").so("b").sched(T, T + 5),
                vec![purge("b", "entry point b is in maintenance"), refused("b", "entry point b is in maintenance")],
                None,
            )],
        ),
        (
            "before its time, failback goes on as if there were no request",
            K,
            vec![
                D(0, view(3, &["---", "+++", "+++"]).cur("b").so("c").sched(T + 60, T), vec![], Some(60 * S)),
                D(S, view(3, &["+++", "+++", "+++"]).cur("b").so("c").sched(T + 60, T + 1), vec![up("a"), sw("a", Back)], Some(60 * S)),
            ],
        ),
        (
            "due while paused: carried out once resumed",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a").so("c").sched(T, T + 1).paused(), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("a").so("c").sched(T, T + 2), vec![sw("c", Switchover)], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn a_pending_failback_says_where_to_and_when() {
    let svc = service(3, Failback::Auto, Duration::from_secs(30));
    let mut state = ServiceState::default();
    let t0 = Instant::now();
    decide(&svc, 1, &mut state, &view(3, &["---", "+++", "+++"]).cur("b").0, t0);
    assert_eq!(state.pending_failback(&svc), None);
    let d = decide(&svc, 1, &mut state, &view(3, &["+++", "+++", "+++"]).cur("b").0, t0 + Duration::from_secs(1));
    assert_eq!(state.pending_failback(&svc), Some(("a", t0 + Duration::from_secs(31))));
    assert_eq!(d.wake_at, Some(t0 + Duration::from_secs(31)));
    // Still waiting later: the same deadline, not a sliding one.
    decide(&svc, 1, &mut state, &view(3, &["+++", "+++", "+++"]).cur("b").0, t0 + Duration::from_secs(10));
    assert_eq!(state.pending_failback(&svc), Some(("a", t0 + Duration::from_secs(31))));
    // The primary down again: no failback pending.
    decide(&svc, 1, &mut state, &view(3, &["---", "+++", "+++"]).cur("b").0, t0 + Duration::from_secs(11));
    assert_eq!(state.pending_failback(&svc), None);
    // Manual failback never has one.
    let manual = service(3, Failback::Manual, Duration::from_secs(30));
    let mut state = ServiceState::default();
    decide(&manual, 1, &mut state, &view(3, &["+++", "+++", "+++"]).cur("b").0, t0);
    assert_eq!(state.pending_failback(&manual), None);
}

#[test]
fn a_paused_cluster_switches_nothing_but_tells_the_news() {
    let cases = [
        (
            "no failover while paused; resumed, the service moves at once",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "+++", "+++"]).cur("a").paused(),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"])],
                    None,
                ),
                D(2 * S, view(3, &["---", "+++", "+++"]).cur("a").paused(), vec![], None),
                D(3 * S, view(3, &["---", "+++", "+++"]).cur("a"), vec![sw("b", Failover)], None),
            ],
        ),
        (
            "no initial switch, no adoption",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).live("b").paused(), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).paused(), vec![], None),
                D(2 * S, view(3, &["+++", "+++", "+++"]), vec![sw("a", Initial)], None),
            ],
        ),
        (
            "no switchover, no purge, no failback, no repair, no maintenance move",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "---"]).cur("b").live("c").so("c").paused(), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("b").so("c").paused(), vec![up("c")], None),
                D(2 * S, view(3, &["+++", "M+++", "+++"]).cur("b").paused(), vec![], None),
                D(3 * S, view(3, &["+++", "M+++", "+++"]).cur("b"), vec![sw("a", Maint)], None),
            ],
        ),
        (
            "panic mode is still told",
            K,
            vec![
                D(0, view(1, &["+", "+", "+"]).cur("a").paused(), vec![], None),
                D(
                    S,
                    view(1, &["-", "-", "-"]).cur("a").paused(),
                    vec![down("a", &["n1: refused"]), down("b", &["n1: refused"]), down("c", &["n1: refused"]), svc_down()],
                    None,
                ),
            ],
        ),
        (
            "a failed switch is retried only once resumed",
            K,
            vec![
                D(0, view(3, &["---", "+++", "+++"]).cur("a"), vec![sw("b", Failover)], None),
                Failed(0, 500, true),
                D(S, view(3, &["---", "+++", "+++"]).cur("a").paused(), vec![], None),
                D(2 * S, view(3, &["---", "+++", "+++"]).cur("b"), vec![sw("b", Failover)], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn pause_and_resume_are_told_once_each() {
    let pause = crate::model::Pause { since: std::time::UNIX_EPOCH, by: "ops from 10.0.0.9:5000".into() };
    assert_eq!(pause_transition(false, Some(&pause)), Some(Event::Paused { by: "ops from 10.0.0.9:5000".into() }));
    assert_eq!(pause_transition(true, Some(&pause)), None);
    assert_eq!(pause_transition(true, None), Some(Event::Resumed {}));
    assert_eq!(pause_transition(false, None), None);
}

#[test]
fn initial_choice() {
    let cases = [
        ("all healthy: the first", K, vec![D(0, view(3, &["+++", "+++", "+++"]), vec![sw("a", Initial)], None)]),
        ("skips an unhealthy one", K, vec![D(0, view(3, &["---", "+++", "+++"]), vec![sw("b", Initial)], None)]),
        ("skips a maintenance one", K, vec![D(0, view(3, &["M+++", "+++", "+++"]), vec![sw("b", Initial)], None)]),
        ("skips one it cannot judge", K, vec![D(0, view(3, &["+..", "+++", "+++"]), vec![sw("b", Initial)], None)]),
        ("nothing healthy: nothing", K, vec![D(0, view(3, &["---", "---", "---"]), vec![], None)]),
        ("nobody reported: nothing", K, vec![D(0, view(3, &["...", "...", "..."]), vec![], None)]),
        ("no alive node: nothing", K, vec![D(0, view(0, &["", "", ""]), vec![], None)]),
        (
            "an unconfigured current is as good as none",
            K,
            vec![D(0, view(3, &["+++", "+++", "+++"]).cur("zz"), vec![sw("a", Initial)], None)],
        ),
        (
            "waits for a higher one an alive node has not judged yet",
            K,
            vec![
                D(0, view(3, &["+..", "+++", "+++"]).first_opinions(10), vec![], Some(10 * S)),
                D(S, view(3, &["++.", "+++", "+++"]).first_opinions(10), vec![sw("a", Initial)], None),
            ],
        ),
        (
            "the wait is bounded: then the best judged one",
            K,
            vec![
                D(0, view(3, &["+..", "+++", "+++"]).first_opinions(10), vec![], Some(10 * S)),
                D(5 * S, view(3, &["+..", "+++", "+++"]).first_opinions(10), vec![], Some(10 * S)),
                D(10 * S, view(3, &["+..", "+++", "+++"]).first_opinions(10), vec![sw("b", Initial)], None),
            ],
        ),
        (
            "no wait for one every alive node judged",
            K,
            vec![D(0, view(3, &["---", "+++", "+++"]).first_opinions(10), vec![sw("b", Initial)], None)],
        ),
        (
            "no wait for one in maintenance",
            K,
            vec![D(0, view(3, &["M...", "+++", "+++"]).first_opinions(10), vec![sw("b", Initial)], None)],
        ),
        ("no wait for a lower one", K, vec![D(0, view(3, &["+++", "+..", "..."]).first_opinions(10), vec![sw("a", Initial)], None)]),
        (
            "a later decision keeps asking until the switch is recorded",
            K,
            vec![
                D(0, view(3, &["---", "+++", "+++"]), vec![sw("b", Initial)], None),
                D(S, view(3, &["---", "+++", "+++"]), vec![sw("b", Initial)], None),
                D(2 * S, view(3, &["---", "+++", "+++"]).cur("b"), vec![], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn failover() {
    let cases = [
        (
            "majority holds current down: to the next healthy",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["--+", "+++", "+++"]).cur("a"), vec![down("a", &["n1: refused", "n2: refused"]), sw("b", Failover)], None),
                // Not recorded yet: the switch is asked again, the event is not told again.
                D(2 * S, view(3, &["--+", "+++", "+++"]).cur("a"), vec![sw("b", Failover)], None),
                D(3 * S, view(3, &["--+", "+++", "+++"]).cur("b"), vec![], None),
                D(4 * S, view(3, &["---", "+++", "+++"]).cur("b"), vec![], None),
            ],
        ),
        (
            "skips an unhealthy and a maintenance entry point",
            K.eps(4),
            vec![
                D(0, view(3, &["+++", "---", "M+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["~~~", "---", "M+++", "+++"]).cur("a"),
                    vec![down("a", &["n1: timeout", "n2: timeout", "n3: timeout"]), sw("d", Failover)],
                    None,
                ),
            ],
        ),
        (
            "from the lowest priority up to the first healthy",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("c"), vec![sw("a", Back)], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    2 * S,
                    view(3, &["---", "+++", "+++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Failover)],
                    None,
                ),
            ],
        ),
        (
            "manual failback still fails over",
            K.manual(),
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "+++", "+++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Failover)],
                    None,
                ),
            ],
        ),
        (
            "the two-node cluster that lost one: the survivor decides",
            K,
            vec![
                D(0, view(2, &["++", "++", "++"]).cur("a"), vec![], None),
                D(S, view(1, &["-", "+", "+"]).cur("a"), vec![down("a", &["n1: refused"]), sw("b", Failover)], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn majority_minority_and_unknown() {
    let cases = [
        (
            "a minority seeing current down: no switch, no event",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["-++", "+++", "+++"]).cur("a"), vec![], None),
                D(2 * S, view(5, &["--+++", "+++++", "+++++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "an even split holds",
            K,
            vec![
                D(0, view(4, &["++++", "++++", "++++"]).cur("a"), vec![], None),
                D(S, view(4, &["--++", "++++", "++++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "missing reports hold: two of four down is not a majority",
            K,
            vec![
                D(0, view(4, &["++++", "++++", "++++"]).cur("a"), vec![], None),
                D(S, view(4, &["--..", "++++", "++++"]).cur("a"), vec![], None),
                D(
                    2 * S,
                    view(4, &["---.", "++++", "++++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Failover)],
                    None,
                ),
            ],
        ),
        (
            "a target the cluster cannot judge is not switched to",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["---", "+..", "-.."]).cur("a"), vec![down("a", &["n1: refused", "n2: refused", "n3: refused"])], None),
                D(2 * S, view(3, &["---", "++.", "-.."]).cur("a"), vec![sw("b", Failover)], None),
            ],
        ),
        (
            "min-votes: a lone survivor cannot decide when two votes are required",
            K.min(2),
            vec![
                D(0, view(2, &["++", "++", "++"]).cur("a"), vec![], None),
                D(S, view(1, &["-", "+", "+"]).cur("a"), vec![], None),
                D(2 * S, view(2, &["--", "++", "++"]).cur("a"), vec![down("a", &["n1: refused", "n2: refused"]), sw("b", Failover)], None),
            ],
        ),
        (
            "min-votes above the majority: 2 of 3 is not enough for 3",
            K.min(3),
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["--+", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    2 * S,
                    view(3, &["---", "+++", "+++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Failover)],
                    None,
                ),
            ],
        ),
        (
            "min-votes also guards the target",
            K.min(3),
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "++-", "+++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("c", Failover)],
                    None,
                ),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn panic_mode() {
    let cases = [
        (
            "nothing healthy: no switch, said once; back when one recovers",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "---", "---"]).cur("a"),
                    vec![
                        down("a", &["n1: refused", "n2: refused", "n3: refused"]),
                        down("b", &["n1: refused", "n2: refused", "n3: refused"]),
                        down("c", &["n1: refused", "n2: refused", "n3: refused"]),
                        svc_down(),
                    ],
                    None,
                ),
                D(2 * S, view(3, &["---", "---", "---"]).cur("a"), vec![], None),
                D(3 * S, view(3, &["---", "--~", "---"]).cur("a"), vec![], None),
                D(4 * S, view(3, &["---", "+++", "---"]).cur("a"), vec![up("b"), svc_up(), sw("b", Failover)], None),
                D(5 * S, view(3, &["---", "+++", "---"]).cur("b"), vec![], None),
            ],
        ),
        (
            "back in place: the current recovers, nothing to switch",
            K,
            vec![
                D(0, view(3, &["+++", "---", "---"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "---", "---"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), svc_down()],
                    None,
                ),
                D(2 * S, view(3, &["+++", "---", "---"]).cur("a"), vec![up("a"), svc_up()], None),
            ],
        ),
        (
            "not panic while an entry point cannot be judged",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "-+.", "---"]).cur("a"),
                    vec![
                        down("a", &["n1: refused", "n2: refused", "n3: refused"]),
                        down("c", &["n1: refused", "n2: refused", "n3: refused"]),
                    ],
                    None,
                ),
            ],
        ),
        (
            "panic holds through an unknown spell, and the recovery is told once",
            K,
            vec![
                D(0, view(3, &["---", "---", "---"]).cur("a"), vec![], None),
                D(S, view(3, &["...", "...", "..."]).cur("a"), vec![], None),
                D(2 * S, view(3, &["---", "---", "---"]).cur("a"), vec![], None),
                D(3 * S, view(3, &["...", "...", "..."]).cur("a"), vec![], None),
                D(4 * S, view(3, &["+++", "---", "---"]).cur("a"), vec![up("a"), svc_up()], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn switchover() {
    let healthy = || view(3, &["+++", "+++", "+++"]);
    let cases = [
        (
            "to a healthy target, pinned, no failback away from it",
            K,
            vec![
                D(0, healthy().cur("a"), vec![], None),
                D(S, healthy().cur("a").so("b"), vec![sw("b", Switchover)], None),
                D(2 * S, healthy().cur("b").so("b"), vec![], None),
                D(
                    3 * S,
                    view(3, &["---", "+++", "+++"]).cur("b").so("b"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"])],
                    None,
                ),
                D(4 * S, healthy().cur("b").so("b"), vec![up("a")], None),
                D(5 * S, healthy().cur("b").so("b"), vec![], None),
            ],
        ),
        (
            "pinned target goes down: purged with an event, failover",
            K,
            vec![
                D(0, healthy().cur("b").so("b"), vec![], None),
                D(
                    S,
                    view(3, &["+++", "---", "+++"]).cur("b").so("b"),
                    vec![
                        down("b", &["n1: refused", "n2: refused", "n3: refused"]),
                        purge("b", "entry point b is unhealthy"),
                        purged("b", "entry point b is unhealthy"),
                        sw("a", Failover),
                    ],
                    None,
                ),
                D(2 * S, view(3, &["+++", "---", "+++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "to a lower priority than a failed current",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "+++", "+++"]).cur("a").so("c"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("c", Switchover)],
                    None,
                ),
            ],
        ),
        (
            "an unhealthy target is purged at once",
            K,
            vec![
                D(0, healthy().cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["+++", "--+", "+++"]).cur("a").so("b"),
                    vec![
                        down("b", &["n1: refused", "n2: refused"]),
                        purge("b", "entry point b is unhealthy"),
                        purged("b", "entry point b is unhealthy"),
                    ],
                    None,
                ),
                // The purge failed (the request is still there): retried, not told again.
                D(2 * S, view(3, &["+++", "--+", "+++"]).cur("a").so("b"), vec![purge("b", "entry point b is unhealthy")], None),
                D(3 * S, view(3, &["+++", "--+", "+++"]).cur("a"), vec![], None),
                // Asked again later: a new request, told again.
                D(
                    4 * S,
                    view(3, &["+++", "--+", "+++"]).cur("a").so("b"),
                    vec![purge("b", "entry point b is unhealthy"), purged("b", "entry point b is unhealthy")],
                    None,
                ),
            ],
        ),
        (
            "a target in maintenance is purged",
            K,
            vec![
                D(0, healthy().cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["+++", "M+++", "+++"]).cur("a").so("b"),
                    vec![purge("b", "entry point b is in maintenance"), purged("b", "entry point b is in maintenance")],
                    None,
                ),
            ],
        ),
        (
            "a pinned target put into maintenance is purged and left",
            K,
            vec![
                D(0, healthy().cur("c").so("c"), vec![], None),
                D(
                    S,
                    view(3, &["+++", "+++", "M+++"]).cur("c").so("c"),
                    vec![purge("c", "entry point c is in maintenance"), purged("c", "entry point c is in maintenance"), sw("a", Maint)],
                    None,
                ),
            ],
        ),
        (
            "an unconfigured target is purged",
            K,
            vec![
                D(0, healthy().cur("a"), vec![], None),
                D(
                    S,
                    healthy().cur("a").so("zz"),
                    vec![purge("zz", "entry point zz is not configured"), purged("zz", "entry point zz is not configured")],
                    None,
                ),
            ],
        ),
        (
            "a target the cluster cannot judge waits, and holds back failback meanwhile",
            K,
            vec![
                D(0, view(3, &["---", "+++", "+++"]).cur("b"), vec![], None),
                D(S, view(3, &["+++", "+++", "+.."]).cur("b").so("c"), vec![up("a")], None),
                D(2 * S, view(3, &["+++", "+++", "++."]).cur("b").so("c"), vec![sw("c", Switchover)], None),
            ],
        ),
        (
            "the switchover already in force with drifted live state is repaired",
            K,
            vec![D(0, healthy().cur("b").so("b"), vec![], None), D(S, healthy().cur("b").so("b").live("a"), vec![sw("b", Repair)], None)],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn failback() {
    let a_down = || view(3, &["---", "+++", "+++"]).cur("b");
    let a_up = || view(3, &["+++", "+++", "+++"]).cur("b");
    let cases = [
        ("auto: at once", K, vec![D(0, a_down(), vec![], None), D(S, a_up(), vec![up("a"), sw("a", Back)], None)]),
        (
            "auto: to the highest recovered, past a lower one",
            K,
            vec![
                D(0, view(3, &["---", "---", "+++"]).cur("c"), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("c"), vec![up("a"), up("b"), sw("a", Back)], None),
            ],
        ),
        (
            "auto: after the delay",
            K.delay(30),
            vec![
                D(0, a_down(), vec![], None),
                D(S, a_up(), vec![up("a")], Some(31 * S)),
                D(10 * S, a_up(), vec![], Some(31 * S)),
                D(31 * S - 1, a_up(), vec![], Some(31 * S)),
                D(31 * S, a_up(), vec![sw("a", Back)], None),
                D(32 * S, a_up(), vec![sw("a", Back)], None),
                D(33 * S, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "auto: a flap restarts the delay",
            K.delay(30),
            vec![
                D(0, a_down(), vec![], None),
                D(S, a_up(), vec![up("a")], Some(31 * S)),
                D(10 * S, a_down(), vec![down("a", &["n1: refused", "n2: refused", "n3: refused"])], None),
                D(12 * S, a_up(), vec![up("a")], Some(42 * S)),
                D(31 * S, a_up(), vec![], Some(42 * S)),
                D(42 * S, a_up(), vec![sw("a", Back)], None),
            ],
        ),
        (
            "auto: losing the majority for a moment also restarts the delay",
            K.delay(30),
            vec![
                D(0, a_down(), vec![], None),
                D(S, a_up(), vec![up("a")], Some(31 * S)),
                D(10 * S, view(3, &["+..", "+++", "+++"]).cur("b"), vec![], None),
                D(12 * S, a_up(), vec![], Some(42 * S)),
                D(42 * S, a_up(), vec![sw("a", Back)], None),
            ],
        ),
        (
            "auto: a better candidate restarts the delay",
            K.delay(30),
            vec![
                D(0, view(3, &["---", "---", "+++"]).cur("c"), vec![], None),
                D(S, view(3, &["---", "+++", "+++"]).cur("c"), vec![up("b")], Some(31 * S)),
                D(5 * S, view(3, &["+++", "+++", "+++"]).cur("c"), vec![up("a")], Some(35 * S)),
                D(35 * S, view(3, &["+++", "+++", "+++"]).cur("c"), vec![sw("a", Back)], None),
            ],
        ),
        (
            "auto: not while the current cannot be judged",
            K,
            vec![D(0, a_down(), vec![], None), D(S, view(3, &["+++", "+..", "+++"]).cur("b"), vec![up("a")], None)],
        ),
        (
            "manual: never",
            K.manual(),
            vec![D(0, a_down(), vec![], None), D(S, a_up(), vec![up("a")], None), D(100 * S, a_up(), vec![], None)],
        ),
        (
            "manual with a delay: never",
            K.manual().delay(5),
            vec![D(0, a_down(), vec![], None), D(S, a_up(), vec![up("a")], None), D(100 * S, a_up(), vec![], None)],
        ),
        (
            "manual: a switchover is the way back",
            K.manual(),
            vec![
                D(0, a_down(), vec![], None),
                D(S, a_up(), vec![up("a")], None),
                D(2 * S, a_up().so("a"), vec![sw("a", Switchover)], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn maintenance() {
    let cases = [
        (
            "current in maintenance: to the best healthy, without an event",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["M+++", "---", "+++"]).cur("a"),
                    vec![down("b", &["n1: refused", "n2: refused", "n3: refused"]), sw("c", Maint)],
                    None,
                ),
            ],
        ),
        (
            "current in maintenance and unhealthy: still a maintenance move",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["M---", "+++", "+++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Maint)],
                    None,
                ),
            ],
        ),
        (
            "never switched back to while in maintenance",
            K,
            vec![
                D(0, view(3, &["M+++", "+++", "+++"]).cur("b"), vec![], None),
                D(S, view(3, &["M+++", "+++", "+++"]).cur("b"), vec![], None),
                D(2 * S, view(3, &["+++", "+++", "+++"]).cur("b"), vec![sw("a", Back)], None),
            ],
        ),
        (
            "never a failover target",
            K,
            vec![
                D(0, view(3, &["+++", "M+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "M+++", "+++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("c", Failover)],
                    None,
                ),
            ],
        ),
        (
            "in maintenance while the others are down: still served, no outage",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["M+++", "---", "---"]).cur("a"),
                    vec![
                        down("b", &["n1: refused", "n2: refused", "n3: refused"]),
                        down("c", &["n1: refused", "n2: refused", "n3: refused"]),
                    ],
                    None,
                ),
                D(
                    2 * S,
                    view(3, &["M---", "---", "---"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), svc_down()],
                    None,
                ),
                D(3 * S, view(3, &["M+++", "---", "---"]).cur("a"), vec![up("a"), svc_up()], None),
                D(4 * S, view(3, &["+++", "---", "---"]).cur("a"), vec![], None),
            ],
        ),
        (
            "every entry point in maintenance: left as it is, no outage",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["M+++", "M+++", "M+++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "in maintenance with nowhere to go: left as it is",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["M+++", "+..", "..."]).cur("a"), vec![], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn repair() {
    let cases = [
        (
            "live state drifted: back to the current",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("a").live("b"), vec![sw("a", Repair)], None),
                D(2 * S, view(3, &["+++", "+++", "+++"]).cur("a").live("a"), vec![], None),
                // "" is what the runtime passes when the last switch was not applied.
                D(3 * S, view(3, &["+++", "+++", "+++"]).cur("a").live(""), vec![sw("a", Repair)], None),
            ],
        ),
        (
            "not to an unhealthy current (a failover instead)",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(3, &["---", "+++", "+++"]).cur("a").live("c"),
                    vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Failover)],
                    None,
                ),
            ],
        ),
        (
            "not to an unhealthy current in panic mode",
            K,
            vec![
                D(0, view(3, &["---", "---", "---"]).cur("a"), vec![], None),
                D(S, view(3, &["---", "---", "---"]).cur("a").live("b"), vec![], None),
            ],
        ),
        (
            "not to a current the cluster cannot judge",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["+..", "+++", "+++"]).cur("a").live("b"), vec![], None),
            ],
        ),
        (
            "not to a current in maintenance (a maintenance move instead)",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["M+++", "+++", "+++"]).cur("a").live("c"), vec![sw("b", Maint)], None),
            ],
        ),
        (
            "a failback in force wins over a repair",
            K,
            vec![
                D(0, view(3, &["---", "+++", "+++"]).cur("b"), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("b").live("c"), vec![up("a"), sw("a", Back)], None),
            ],
        ),
        (
            "a repair while a failback delay runs",
            K.delay(30),
            vec![
                D(0, view(3, &["---", "+++", "+++"]).cur("b"), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("b").live("c"), vec![up("a"), sw("b", Repair)], Some(31 * S)),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn switch_retry_backoff() {
    let a_down = || view(3, &["---", "+++", "+++"]).cur("a");
    let cases = [
        (
            "a failed switch waits for its retry",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Failover)], None),
                Failed(0, 500, true),
                D(100, a_down(), vec![], Some(500)),
                D(499, a_down(), vec![], Some(500)),
                D(500, a_down(), vec![sw("b", Failover)], None),
                Failed(500, 1000, false),
                D(600, a_down(), vec![], Some(1500)),
                D(1500, a_down(), vec![sw("b", Failover)], None),
                Failed(1500, 2000, false),
                D(3500, a_down(), vec![sw("b", Failover)], None),
                Succeeded,
                // A success resets the backoff: the next failure waits the base time again.
                D(
                    4000,
                    view(3, &["---", "---", "+++"]).cur("b"),
                    vec![down("b", &["n1: refused", "n2: refused", "n3: refused"]), sw("c", Failover)],
                    None,
                ),
                Failed(4000, 500, true),
                D(4100, view(3, &["---", "---", "+++"]).cur("b"), vec![], Some(4500)),
            ],
        ),
        (
            "the earlier of a retry and a failback delay wakes",
            K.delay(1),
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![down("a", &["n1: refused", "n2: refused", "n3: refused"]), sw("b", Failover)], None),
                D(0, view(3, &["---", "+++", "+++"]).cur("b").live("a"), vec![sw("b", Repair)], None),
                Failed(0, 500, true),
                D(100, view(3, &["+++", "+++", "+++"]).cur("b").live("a"), vec![up("a")], Some(500)),
                D(500, view(3, &["+++", "+++", "+++"]).cur("b").live("a"), vec![sw("b", Repair)], Some(1100)),
                Failed(500, 1000, false),
                D(1100, view(3, &["+++", "+++", "+++"]).cur("b").live("a"), vec![], Some(1500)),
                D(1500, view(3, &["+++", "+++", "+++"]).cur("b").live("a"), vec![sw("a", Back)], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn switch_retry_honours_the_providers_error() {
    let a_down = || view(3, &["---", "+++", "+++"]).cur("a");
    let ab_down = || view(3, &["---", "---", "+++"]).cur("a");
    let went_down = |ep: &str| down(ep, &["n1: refused", "n2: refused", "n3: refused"]);
    let slow_down = |secs: u64| ProviderError::Transient { message: "HTTP 429".into(), retry_after: Some(Duration::from_secs(secs)) };
    let refused = || ProviderError::permanent("the api-token was refused (HTTP 403)");
    let permanent = SWITCH_RETRY_PERMANENT.as_millis() as u64;
    let cases = [
        (
            "a retry_after longer than the backoff is waited out",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![went_down("a"), sw("b", Failover)], None),
                FailedWith(0, slow_down(7), 7 * S, true),
                D(500, a_down(), vec![], Some(7 * S)),
                D(7 * S - 1, a_down(), vec![], Some(7 * S)),
                D(7 * S, a_down(), vec![sw("b", Failover)], None),
                // The backoff goes on doubling from where it was.
                FailedWith(7 * S, slow_down(0), 1000, false),
                D(8 * S, a_down(), vec![sw("b", Failover)], None),
            ],
        ),
        (
            "a retry_after beyond five minutes is waited out for five: a far end asking for a day does not hold the failover a day",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![went_down("a"), sw("b", Failover)], None),
                FailedWith(0, slow_down(86_400), 300 * S, true),
                D(300 * S, a_down(), vec![sw("b", Failover)], None),
            ],
        ),
        (
            "a retry_after shorter than the backoff changes nothing",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![went_down("a"), sw("b", Failover)], None),
                FailedWith(
                    0,
                    ProviderError::Transient { message: "HTTP 429".into(), retry_after: Some(Duration::from_millis(100)) },
                    500,
                    true,
                ),
                D(100, a_down(), vec![], Some(500)),
                D(500, a_down(), vec![sw("b", Failover)], None),
            ],
        ),
        (
            "a retry_after holds back a switch to another target too: the far end asked for a pause",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![went_down("a"), sw("b", Failover)], None),
                FailedWith(0, slow_down(7), 7 * S, true),
                D(S, ab_down(), vec![went_down("b")], Some(7 * S)),
                D(7 * S, ab_down(), vec![sw("c", Failover)], None),
            ],
        ),
        (
            "a permanent error is not retried in a loop: once after a long wait, told once",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![went_down("a"), sw("b", Failover)], None),
                FailedWith(0, refused(), permanent, true),
                D(500, a_down(), vec![], Some(permanent)),
                D(60 * S, a_down(), vec![], Some(permanent)),
                D(permanent - 1, a_down(), vec![], Some(permanent)),
                D(permanent, a_down(), vec![sw("b", Failover)], None),
                FailedWith(permanent, refused(), permanent, false),
                D(permanent + 1, a_down(), vec![], Some(2 * permanent)),
                // Fixed meanwhile (the token allowed more): the next attempt goes through.
                D(2 * permanent, a_down(), vec![sw("b", Failover)], None),
                Succeeded,
                D(2 * permanent + 1, a_down().cur("b"), vec![], None),
            ],
        ),
        (
            "a permanent error holds back only its own target: a switch elsewhere is a new attempt",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(0, a_down(), vec![went_down("a"), sw("b", Failover)], None),
                FailedWith(0, ProviderError::permanent("HTTP 400: content for b refused"), permanent, true),
                D(S, ab_down(), vec![went_down("b"), sw("c", Failover)], None),
                Succeeded,
                D(2 * S, ab_down().cur("c"), vec![], None),
            ],
        ),
        (
            "a new switchover request to a target held back by a permanent error tries it at once",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("a").so("b"), vec![sw("b", Switchover)], None),
                FailedWith(S, refused(), permanent, true),
                // The same request, still pending: held back.
                D(2 * S, view(3, &["+++", "+++", "+++"]).cur("a").so("b"), vec![], Some(S + permanent)),
                // Purged by the operator, then asked for again once the token was fixed.
                D(3 * S, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(4 * S, view(3, &["+++", "+++", "+++"]).cur("a").so("b"), vec![sw("b", Switchover)], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn pending_switches() {
    let all = || view(3, &["+++", "+++", "+++"]);
    let a_down = || view(3, &["---", "+++", "+++"]);
    let went_down = |ep: &str| down(ep, &["n1: refused", "n2: refused", "n3: refused"]);
    let cases = [
        (
            "a failover recorded but failed at the provider is retried as a failover, not a repair",
            K,
            vec![
                D(0, all().cur("a"), vec![], None),
                D(0, a_down().cur("a"), vec![went_down("a"), sw("b", Failover)], None),
                Failed(0, 500, true),
                // The record already names b: the retry is still the failover.
                D(100, a_down().cur("b"), vec![], Some(500)),
                D(500, a_down().cur("b"), vec![sw("b", Failover)], None),
                Succeeded,
                D(600, a_down().cur("b"), vec![], None),
            ],
        ),
        (
            "a switch under way gets no second one; the next is decided once it is over",
            K,
            vec![
                D(0, all().cur("a"), vec![], None),
                D(0, a_down().cur("a"), vec![went_down("a"), sw("b", Failover)], None),
                Running,
                D(S, view(3, &["---", "---", "+++"]).cur("b"), vec![went_down("b")], None),
                Succeeded,
                D(2 * S, view(3, &["---", "---", "+++"]).cur("b"), vec![sw("c", Failover)], None),
            ],
        ),
        (
            "a switch that did not start is decided again shortly, counting no attempt",
            K,
            vec![
                D(0, all().cur("a"), vec![], None),
                D(0, a_down().cur("a"), vec![went_down("a"), sw("b", Failover)], None),
                NotStarted(0),
                D(100, a_down().cur("a"), vec![], Some(500)),
                D(500, a_down().cur("a"), vec![sw("b", Failover)], None),
            ],
        ),
        (
            "a switch whose target went bad before it started is replaced by the right one",
            K,
            vec![
                D(0, all().cur("a"), vec![], None),
                D(0, a_down().cur("a"), vec![went_down("a"), sw("b", Failover)], None),
                NotStarted(0),
                D(500, view(3, &["---", "---", "+++"]).cur("a"), vec![went_down("b"), sw("c", Failover)], None),
            ],
        ),
        (
            "a failed switch that is no longer wanted is forgotten",
            K,
            vec![
                D(0, all().cur("a"), vec![], None),
                D(0, a_down().cur("a"), vec![went_down("a"), sw("b", Failover)], None),
                NotStarted(0),
                D(500, all().cur("a"), vec![up("a")], None),
                D(600, all().cur("a"), vec![], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn adopting_the_providers_state() {
    let cases = [
        (
            "no record: wait for the term's first read-back instead of switching blind",
            K.manual(),
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).awaiting(), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).live("b"), vec![adopt("b")], None),
                D(2 * S, view(3, &["+++", "+++", "+++"]).cur("b"), vec![], None),
            ],
        ),
        (
            "no record, the provider points at an unhealthy entry point: adopt it, then fail over",
            K,
            vec![D(0, view(3, &["---", "+++", "+++"]).live("a"), vec![adopt("a"), sw("b", Failover)], None)],
        ),
        (
            "no record, the provider points at nothing configured: the first healthy",
            K,
            vec![D(0, view(3, &["---", "+++", "+++"]).live(""), vec![sw("b", Initial)], None)],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn a_new_leader_tells_what_changed_since_the_last_announcement() {
    let svc = service(3, Failback::Auto, Duration::ZERO);
    let now = Instant::now();
    // The last leader announced a down and the service in panic mode, then died.
    let mut before = ServiceState::default();
    decide(&svc, 1, &mut before, &view(3, &["+++", "+++", "+++"]).cur("a").0, now);
    decide(&svc, 1, &mut before, &view(3, &["---", "---", "---"]).cur("a").0, now);
    let announced = before.announced(&svc);
    assert_eq!(announced.down, ["a", "b", "c"].map(String::from).into());
    assert!(announced.panic);
    let back = serde_json::from_str::<Announced>(&serde_json::to_string(&announced).unwrap()).unwrap();
    // Nothing changed: the new leader says nothing again.
    let mut same = ServiceState::resume(&svc, &back);
    assert_eq!(decide(&svc, 1, &mut same, &view(3, &["---", "---", "---"]).cur("a").0, now).actions, vec![]);
    // b recovered while nobody led: told once, by the new leader.
    let mut next = ServiceState::resume(&svc, &back);
    let d = decide(&svc, 1, &mut next, &view(3, &["---", "+++", "---"]).cur("a").0, now);
    assert_eq!(d.actions, vec![up("b"), svc_up(), sw("b", Failover)]);
    // And an entry point that went down with the old leader is told too.
    let healthy = {
        let mut s = ServiceState::default();
        decide(&svc, 1, &mut s, &view(3, &["+++", "+++", "+++"]).cur("a").0, now);
        s.announced(&svc)
    };
    let mut after_crash = ServiceState::resume(&svc, &healthy);
    let d = decide(&svc, 1, &mut after_crash, &view(3, &["+++", "---", "+++"]).cur("a").0, now);
    assert_eq!(d.actions, vec![down("b", &["n1: refused", "n2: refused", "n3: refused"])]);
}

#[test]
fn retry_backoff_is_capped() {
    let mut state = ServiceState::default();
    let now = Instant::now();
    let retries: Vec<SwitchRetry> = (0..12).map(|_| state.switch_failed(now, &ProviderError::transient("refused"))).collect();
    let waits: Vec<u64> = retries.iter().map(|r| r.backoff.as_millis() as u64).collect();
    assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000, 30000]);
    // Told at the first failure, and once more when it keeps failing.
    let told: Vec<u32> = retries.iter().filter(|r| r.tell).map(|r| r.attempts).collect();
    assert_eq!(told, [1, STILL_FAILING_AFTER]);
    assert_eq!(state.switch_succeeded(), 12);
    assert_eq!(state.switch_failed(now, &ProviderError::transient("refused")).backoff, SWITCH_RETRY_BASE);
}

#[test]
fn events_once_per_transition() {
    let cases = [
        (
            "reasons name the node; unreported and healthy nodes are left out",
            K.eps(2),
            vec![
                D(0, view(5, &["+++++", "+++++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(5, &["-~!.+", "+++++"]).cur("a"),
                    vec![down("a", &["n1: refused", "n2: timeout", "n3: unhealthy"]), sw("b", Failover)],
                    None,
                ),
                // Reasons changing while it stays down is no transition.
                D(2 * S, view(5, &["~~~~+", "+++++"]).cur("b"), vec![], None),
                D(3 * S, view(5, &["+++++", "+++++"]).cur("b"), vec![up("a"), sw("a", Back)], None),
                D(4 * S, view(5, &["+++++", "+++++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "nothing repeats while nothing changes",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["+++", "---", "+++"]).cur("a"), vec![down("b", &["n1: refused", "n2: refused", "n3: refused"])], None),
                D(2 * S, view(3, &["+++", "---", "+++"]).cur("a"), vec![], None),
                D(3 * S, view(3, &["+++", "---", "+++"]).cur("a"), vec![], None),
                D(4 * S, view(3, &["+++", "+++", "+++"]).cur("a"), vec![up("b")], None),
                D(5 * S, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "down, a split, down again: told once",
            K,
            vec![
                D(0, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["+++", "---", "+++"]).cur("a"), vec![down("b", &["n1: refused", "n2: refused", "n3: refused"])], None),
                D(2 * S, view(3, &["+++", "-+.", "+++"]).cur("a"), vec![], None),
                D(3 * S, view(3, &["+++", "---", "+++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "down, a split, up: the recovery is told",
            K,
            vec![
                D(0, view(4, &["++++", "++++", "++++"]).cur("a"), vec![], None),
                D(
                    S,
                    view(4, &["++++", "----", "++++"]).cur("a"),
                    vec![down("b", &["n1: refused", "n2: refused", "n3: refused", "n4: refused"])],
                    None,
                ),
                D(2 * S, view(4, &["++++", "++--", "++++"]).cur("a"), vec![], None),
                D(3 * S, view(4, &["++++", "+++-", "++++"]).cur("a"), vec![up("b")], None),
            ],
        ),
        (
            "up, a split, up: nothing",
            K,
            vec![
                D(0, view(4, &["++++", "++++", "++++"]).cur("a"), vec![], None),
                D(S, view(4, &["++++", "++--", "++++"]).cur("a"), vec![], None),
                D(2 * S, view(4, &["++++", "++++", "++++"]).cur("a"), vec![], None),
            ],
        ),
        (
            "first judged down after an unknown start: told",
            K,
            vec![
                D(0, view(3, &["+++", "...", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["+++", "---", "+++"]).cur("a"), vec![down("b", &["n1: refused", "n2: refused", "n3: refused"])], None),
            ],
        ),
        (
            "first judged up after an unknown start: nothing to tell",
            K,
            vec![
                D(0, view(3, &["+++", "...", "+++"]).cur("a"), vec![], None),
                D(S, view(3, &["+++", "+++", "+++"]).cur("a"), vec![], None),
            ],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn priming() {
    let cases = [
        (
            "a fresh state announces nothing but still acts",
            K,
            vec![
                D(0, view(3, &["---", "+++", "+++"]).cur("a"), vec![sw("b", Failover)], None),
                D(S, view(3, &["---", "+++", "+++"]).cur("b"), vec![], None),
                D(2 * S, view(3, &["+++", "+++", "+++"]).cur("b"), vec![up("a"), sw("a", Back)], None),
            ],
        ),
        (
            "a fresh state in panic is silent, and tells the recovery",
            K,
            vec![
                D(0, view(3, &["---", "---", "---"]).cur("a"), vec![], None),
                D(S, view(3, &["---", "---", "---"]).cur("a"), vec![], None),
                D(2 * S, view(3, &["---", "+++", "---"]).cur("a"), vec![up("b"), svc_up(), sw("b", Failover)], None),
            ],
        ),
        (
            "a switchover purge is an action, not a transition: told on the first call too",
            K,
            vec![D(
                0,
                view(3, &["+++", "---", "+++"]).cur("a").so("b"),
                vec![purge("b", "entry point b is unhealthy"), purged("b", "entry point b is unhealthy")],
                None,
            )],
        ),
    ];
    for (name, k, steps) in cases {
        run(name, k, steps);
    }
}

#[test]
fn verdicts_and_panic_are_exposed() {
    let svc = service(3, Failback::Auto, Duration::ZERO);
    let mut state = ServiceState::default();
    decide(&svc, 1, &mut state, &view(3, &["---", "+..", "---"]).cur("a").0, Instant::now());
    assert_eq!(state.verdicts(), [Verdict::Unhealthy, Verdict::Unknown, Verdict::Unhealthy]);
    assert!(!state.in_panic());
    decide(&svc, 1, &mut state, &view(3, &["---", "---", "---"]).cur("a").0, Instant::now());
    assert!(state.in_panic());
}

#[test]
fn cluster_nodes_up_and_down() {
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<String>>();
    let went = |n: &str| Event::NodeWentDown { node: n.into() };
    let came = |n: &str| Event::NodeCameUp { node: n.into() };
    let mut cluster = ClusterState::default();
    let script: Vec<(BTreeSet<String>, Vec<Event>)> = vec![
        (set(&["n1", "n2", "n3"]), vec![]), // learnt silently
        (set(&["n1", "n2", "n3"]), vec![]),
        (set(&["n1", "n3"]), vec![went("n2")]),
        (set(&["n1", "n3"]), vec![]),
        (set(&["n1", "n2", "n4"]), vec![went("n3"), came("n2"), came("n4")]),
        (set(&[]), vec![went("n1"), went("n2"), went("n4")]),
        (set(&[]), vec![]),
        (set(&["n1"]), vec![came("n1")]),
    ];
    for (i, (alive, want)) in script.into_iter().enumerate() {
        assert_eq!(cluster.observe(&alive), want, "step {i}");
    }
    let mut fresh = ClusterState::default();
    assert_eq!(fresh.observe(&set(&[])), vec![], "an empty first set is learnt silently too");
    assert_eq!(fresh.observe(&set(&["n1"])), vec![came("n1")]);
}

#[test]
fn leader_elected_event() {
    assert_eq!(leader_elected("n2", FencingToken(7)), Event::LeaderElected { node: "n2".into(), token: FencingToken(7) });
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A random view: per entry point, maintenance and one optional vote per possible node.
#[derive(Debug, Clone)]
struct ViewSpec {
    alive: usize,
    eps: Vec<(bool, Vec<Option<bool>>)>,
    current: Option<usize>,
    live: Option<usize>,
    switchover: Option<usize>,
    /// A scheduled switchover: due in this many seconds (0 or less: due).
    scheduled: Option<i8>,
    out_of_agreement: bool,
}

fn view_spec() -> impl Strategy<Value = ViewSpec> {
    let ep = (prop::bool::weighted(0.15), prop::collection::vec(prop::option::weighted(0.85, prop::bool::weighted(0.6)), 7));
    (
        0..=7usize,
        prop::collection::vec(ep, 5),
        prop::option::of(0..6usize),
        prop::option::weighted(0.3, 0..6usize),
        prop::option::weighted(0.3, 0..6usize),
        prop::option::weighted(0.3, -3..=3i8),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(alive, eps, current, live, switchover, scheduled, out_of_agreement)| ViewSpec {
            alive,
            eps,
            current,
            live,
            switchover,
            scheduled,
            out_of_agreement,
        })
}

impl ViewSpec {
    /// The view of a service with `n` entry points. An index past the last entry point stands
    /// for a name that is not configured.
    fn build(&self, n: usize) -> ServiceView {
        let name = |i: usize| if i % (n + 1) < n { NAMES[i % (n + 1)].to_string() } else { "zz".to_string() };
        ServiceView {
            alive_nodes: self.alive,
            entry_points: self.eps[..n]
                .iter()
                .map(|(maintenance, votes)| EntryPointView {
                    votes: votes[..self.alive]
                        .iter()
                        .enumerate()
                        .filter_map(|(node, vote)| {
                            vote.map(|healthy| Vote {
                                node: format!("n{}", node + 1),
                                opinion: if healthy { Opinion::healthy() } else { Opinion::unhealthy("refused") },
                            })
                        })
                        .collect(),
                    maintenance: *maintenance,
                })
                .collect(),
            current: self.current.map(name),
            live: self.live.map(name),
            awaiting_read_back: false,
            switchover: self.switchover.map(name),
            switchover_at: self.scheduled.map(|due_in| (1_000 + i64::from(due_in)) as u64),
            wall_secs: 1_000,
            out_of_agreement: self.out_of_agreement,
            paused: false,
            first_opinions_within: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    n: usize,
    failback: Failback,
    delay: u64,
    min_votes: usize,
    /// Earlier calls that built the state, each at its offset in milliseconds.
    prior: Vec<(ViewSpec, u64)>,
    /// Whether the switch asked for last failed.
    failed: bool,
    view: ViewSpec,
    now: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        1..=5usize,
        prop::bool::ANY,
        prop::sample::select(vec![0u64, 1, 30]),
        0..=4usize,
        prop::collection::vec((view_spec(), 0..40_000u64), 0..3),
        prop::bool::weighted(0.2),
        view_spec(),
        0..40_000u64,
    )
        .prop_map(|(n, manual, delay, min_votes, prior, failed, view, now)| Scenario {
            n,
            failback: if manual { Failback::Manual } else { Failback::Auto },
            delay,
            min_votes,
            prior,
            failed,
            view,
            now,
        })
}

impl Scenario {
    /// The config, the state after the prior calls, the view and `now`.
    fn setup(&self) -> (ServiceConfig, ServiceState, ServiceView, Instant) {
        let svc = service(self.n, self.failback, Duration::from_secs(self.delay));
        let t0 = Instant::now();
        let mut state = ServiceState::default();
        let mut last = 0;
        for (spec, ms) in &self.prior {
            // Time never runs backwards for one state.
            last = last.max(*ms);
            let d = decide(&svc, self.min_votes, &mut state, &spec.build(self.n), t0 + Duration::from_millis(last));
            if self.failed && !switches(&d).is_empty() {
                state.switch_failed(t0 + Duration::from_millis(last), &ProviderError::transient("refused"));
            } else {
                state.switch_succeeded();
            }
        }
        let now = t0 + Duration::from_millis(last.max(self.now));
        (svc, state, self.view.build(self.n), now)
    }
}

fn switches(d: &Decision) -> Vec<(&str, SwitchKind)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Switch { to, kind, .. } => Some((to.as_str(), *kind)),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Never switch to an entry point the majority does not hold healthy, nor to one in maintenance.
    #[test]
    fn switch_targets_are_healthy_and_in_rotation(s in scenario()) {
        let (svc, mut state, view, now) = s.setup();
        let d = decide(&svc, s.min_votes, &mut state, &view, now);
        for (to, _) in switches(&d) {
            let i = svc.entry_point_index(to).expect("a configured entry point");
            let ep = &view.entry_points[i];
            let healthy = ep.votes.iter().filter(|v| v.opinion.healthy).count();
            let unhealthy = ep.votes.len() - healthy;
            prop_assert_eq!(quorum::verdict(healthy, unhealthy, view.alive_nodes, s.min_votes), Verdict::Healthy, "switch to {}", to);
            prop_assert!(!ep.maintenance, "switch to {} in maintenance", to);
        }
    }

    /// Nodes that define the service differently: nothing but news, whatever came before.
    #[test]
    fn out_of_agreement_holds_still(s in scenario()) {
        let (svc, mut state, mut view, now) = s.setup();
        view.out_of_agreement = true;
        let d = decide(&svc, s.min_votes, &mut state, &view, now);
        prop_assert!(d.actions.iter().all(|a| matches!(a, Action::Notify(_))), "{:?}", d.actions);
        prop_assert_eq!(state.verdicts().len(), svc.entry_points.len(), "the verdicts are kept for status");
    }

    /// A paused cluster: nothing but news, whatever came before.
    #[test]
    fn paused_holds_still(s in scenario()) {
        let (svc, mut state, mut view, now) = s.setup();
        view.paused = true;
        let d = decide(&svc, s.min_votes, &mut state, &view, now);
        prop_assert!(d.actions.iter().all(|a| matches!(a, Action::Notify(_))), "{:?}", d.actions);
    }

    /// The same config, state, view and time always give the same decision.
    #[test]
    fn deterministic(s in scenario()) {
        let (svc, state, view, now) = s.setup();
        let first = decide(&svc, s.min_votes, &mut state.clone(), &view, now);
        let second = decide(&svc, s.min_votes, &mut state.clone(), &view, now);
        prop_assert_eq!(first, second);
    }

    /// Deciding again on an unchanged view tells nothing new and asks for no other switch.
    #[test]
    fn nothing_repeats_while_nothing_changes(s in scenario()) {
        let (svc, mut state, view, now) = s.setup();
        let first = decide(&svc, s.min_votes, &mut state, &view, now);
        let second = decide(&svc, s.min_votes, &mut state, &view, now);
        let told: Vec<&Action> = second.actions.iter().filter(|a| matches!(a, Action::Notify(_))).collect();
        prop_assert!(told.is_empty(), "told again: {:?}", told);
        let again = switches(&second);
        prop_assert!(again.is_empty() || again == switches(&first), "first {:?}, then {:?}", switches(&first), again);
    }

    /// One decision asks for at most one switch, and never for the current entry point unless
    /// to repair the provider's live state.
    #[test]
    fn at_most_one_switch_and_never_to_current(s in scenario()) {
        let (svc, mut state, view, now) = s.setup();
        let d = decide(&svc, s.min_votes, &mut state, &view, now);
        let sws = switches(&d);
        prop_assert!(sws.len() <= 1, "{:?}", sws);
        for (to, kind) in sws {
            if view.current.as_deref() == Some(to) {
                // A repair, or the retry of a switch recorded but not carried out.
                let retry = state.pending_switch().is_some_and(|p| p.to == to && p.attempts > 0);
                prop_assert!(kind == SwitchKind::Repair || retry, "{:?} to the current {}", kind, to);
            }
        }
    }

    /// While a switch is under way the service gets no second one, whatever the view says.
    #[test]
    fn no_second_switch_while_one_is_in_flight(s in scenario(), next in view_spec()) {
        let (svc, mut state, view, now) = s.setup();
        let first = decide(&svc, s.min_votes, &mut state, &view, now);
        if !switches(&first).is_empty() {
            let second = decide(&svc, s.min_votes, &mut state, &next.build(s.n), now + Duration::from_secs(60));
            prop_assert!(switches(&second).is_empty(), "a second switch while {:?} runs: {:?}", switches(&first), switches(&second));
        }
    }
}

#[test]
fn assess_judges_without_remembering() {
    let svc = service(3, Failback::Auto, Duration::ZERO);
    let a = assess(&svc, 1, &view(3, &["---", "+++", "..."]).0);
    assert_eq!(a.verdicts, [Verdict::Unhealthy, Verdict::Healthy, Verdict::Unknown]);
    assert_eq!((a.best, a.served, a.panic, a.degraded), (Some(1), true, false, false));
    // Healthy only in maintenance: served, degraded, nothing eligible.
    let a = assess(&svc, 1, &view(3, &["---", "M+++", "---"]).0);
    assert_eq!((a.best, a.served, a.panic, a.degraded), (None, true, false, true));
    // Nothing healthy, everything in rotation unhealthy: panic.
    let a = assess(&svc, 1, &view(3, &["---", "M...", "---"]).0);
    assert_eq!((a.best, a.served, a.panic, a.degraded), (None, false, true, false));
    // The same as decide's verdicts, for any state.
    let v = view(3, &["+-+", "++-", "---"]);
    let mut state = ServiceState::default();
    decide(&svc, 1, &mut state, &v.0, Instant::now());
    assert_eq!(state.verdicts(), assess(&svc, 1, &v.0).verdicts.as_slice());
}
