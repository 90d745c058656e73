//! Several `Node`s sharing one in-memory DCS in one process, in paused time: the runtime's
//! behaviour as an operator would see it (who switches, when, and what they are told).

use std::sync::Arc;
use std::time::Duration;

use dhaf_core::config::{Config, ProviderConfig, ServiceConfig};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::dcs::{Dcs, DcsError};
use dhaf_core::engine::{STILL_FAILING_AFTER, SWITCH_RETRY_PERMANENT};
use dhaf_core::model::{Event, FencingToken, SwitchKind, SwitchRecord};
use dhaf_core::provider::{HealthChecker, Notifier, ProviderError, Switcher};
use dhaf_core::registry::{Providers, Registry, ServiceProviders};
use dhaf_core::runtime::{Node, NodeError, NodeEvent, NodeHandle, ReloadError};
use dhaf_core::testing::{CallCounts, FakeProvider, InterceptingDcs, Interceptor, RecordingNotifier, ScriptedChecker};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

fn config(node: &str, extra: &str) -> Config {
    let yaml = format!(
        r#"
dhaf:
  cluster-name: test
  node-name: {node}
  tact-interval: 1
  heartbeat-interval: 1
  healthy-node-status-ttl: 6
  reconcile-interval: 20
services:
  - name: main
    domain: example.test
    entry-points:
      - name: ep-1
        ip: 10.0.0.1
      - name: ep-2
        ip: 10.0.0.2
      - name: ep-3
        ip: 10.0.0.3
    switcher: {{ type: fake }}
    health-checker: {{ type: scripted }}
{extra}
"#
    );
    Config::parse(&yaml).unwrap()
}

struct TestNode {
    name: String,
    checker: ScriptedChecker,
    handle: NodeHandle,
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

struct Cluster {
    dcs: MemoryDcs,
    provider: FakeProvider,
    notifier: RecordingNotifier,
    nodes: Vec<TestNode>,
    /// Each node's stalled reads, when the nodes were started with them.
    stalls: Option<Vec<(String, StalledRead)>>,
}

impl Cluster {
    fn new(n: usize, current: Option<&str>, extra: &str) -> Cluster {
        let mut c = Cluster {
            dcs: MemoryDcs::new("test"),
            provider: FakeProvider::new(current),
            notifier: RecordingNotifier::new(),
            nodes: Vec::new(),
            stalls: None,
        };
        for i in 1..=n {
            c.start(&format!("n{i}"), extra);
        }
        c
    }

    /// Like [`Cluster::new`], each node's DCS calls passing a [`StalledRead`] of its own.
    fn with_stalls(n: usize, current: Option<&str>, extra: &str) -> Cluster {
        let mut c = Cluster {
            dcs: MemoryDcs::new("test"),
            provider: FakeProvider::new(current),
            notifier: RecordingNotifier::new(),
            nodes: Vec::new(),
            stalls: Some(Vec::new()),
        };
        for i in 1..=n {
            c.start(&format!("n{i}"), extra);
        }
        c
    }

    fn stall(&self, node: &str) -> &StalledRead {
        self.stalls.iter().flatten().find(|(n, _)| n == node).map(|(_, s)| s).unwrap()
    }

    fn start(&mut self, name: &str, extra: &str) {
        self.start_with(name, config(name, extra));
    }

    fn start_with(&mut self, name: &str, config: Config) {
        let checker = ScriptedChecker::new();
        let providers = Providers {
            services: vec![ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(self.provider.switcher(name)) }],
            notifiers: vec![("rec".into(), Arc::new(self.notifier.clone()) as Arc<dyn Notifier>)],
        };
        let client: Arc<dyn Dcs> = Arc::new(self.dcs.client(name));
        let dcs: Arc<dyn Dcs> = match self.stalls.as_mut() {
            Some(stalls) => {
                let stall = StalledRead::default();
                stalls.push((name.to_string(), stall.clone()));
                Arc::new(InterceptingDcs::new(client, stall))
            }
            None => client,
        };
        let node = Node::new(config, dcs, providers);
        let handle = node.handle();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            node.run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        self.nodes.push(TestNode { name: name.into(), checker, handle, task: Some(task), stop: Some(tx) });
    }

    fn node(&self, name: &str) -> &TestNode {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// Every node's checker sees `ep` down.
    fn down_everywhere(&self, ep: &str) {
        for n in &self.nodes {
            n.checker.down(ep, "connection refused");
        }
    }

    fn up_everywhere(&self, ep: &str) {
        for n in &self.nodes {
            n.checker.up(ep);
        }
    }

    async fn leader(&self) -> Option<String> {
        let snap = dhaf_core::dcs::Dcs::snapshot(&self.dcs).await.ok()?;
        snap.leader.map(|l| l.node)
    }

    async fn wait_leader(&self) -> String {
        wait_for("a leader", Duration::from_secs(30), || async { self.leader().await }).await
    }

    /// Kill a node like `kill -9`: no resign, no revoke.
    fn crash(&mut self, name: &str) {
        let n = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
        n.task.take().unwrap().abort();
    }

    async fn stop(&mut self, name: &str) {
        let n = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
        n.stop.take().unwrap().send(()).unwrap();
        n.task.take().unwrap().await.unwrap();
    }

    fn switches(&self) -> Vec<(String, String)> {
        self.provider.calls().into_iter().map(|c| (c.node, c.to)).collect()
    }

    fn events(&self) -> Vec<Event> {
        self.notifier.events()
    }
}

async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        sleep(Duration::from_millis(100)).await;
    }
}

/// `node`'s config with the entry points in the opposite order: a typo in one node's file.
fn reordered(node: &str) -> Config {
    let yaml = config(node, "").services[0]
        .entry_points
        .iter()
        .rev()
        .map(|ep| format!("      - {{ name: {}, ip: {} }}\n", ep.name, ep.ip))
        .collect::<String>();
    let text = format!(
        "dhaf: {{ cluster-name: test, node-name: {node}, tact-interval: 1, heartbeat-interval: 1, healthy-node-status-ttl: 6, reconcile-interval: 20 }}
services:
  - name: main
    domain: example.test
    entry-points:
{yaml}    switcher: {{ type: fake }}
    health-checker: {{ type: scripted }}
"
    );
    Config::parse(&text).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_node_that_defines_the_service_differently_never_places_it() {
    // n3's file lists the entry points in the opposite order. It starts alone and leads, seeing
    // nothing healthy, so it has placed nothing.
    let mut c = Cluster {
        dcs: MemoryDcs::new("test"),
        provider: FakeProvider::new(None),
        notifier: RecordingNotifier::new(),
        nodes: Vec::new(),
        stalls: None,
    };
    c.start_with("n3", reordered("n3"));
    for ep in ["ep-1", "ep-2", "ep-3"] {
        c.node("n3").checker.down(ep, "not yet");
    }
    assert_eq!(c.wait_leader().await, "n3");
    sleep(Duration::from_secs(5)).await;

    // n1 and n2 agree with each other: n3 is outvoted, steps down and does not stand again.
    c.start("n1", "");
    c.start("n2", "");
    for ep in ["ep-1", "ep-2", "ep-3"] {
        c.node("n3").checker.up(ep);
    }
    let leader = wait_for("a leader of the majority", Duration::from_secs(30), || async { c.leader().await.filter(|l| l != "n3") }).await;
    wait_for("the initial switch", Duration::from_secs(30), || async { c.provider.current() }).await;
    sleep(Duration::from_secs(20)).await;
    assert_eq!(c.switches(), [(leader.clone(), "ep-1".to_string())], "placed by the majority's order, once");
    assert_ne!(c.leader().await.as_deref(), Some("n3"));

    let status = c.node("n1").handle.service_status("main").await.unwrap();
    assert!(!status.held, "a majority agrees");
    assert_eq!(status.disagreement.len(), 1, "{:?}", status.disagreement);
    assert_eq!(status.disagreement[0].node, "n3");
    let diff = status.disagreement[0].differences.join("; ");
    assert!(diff.contains("entry-points[0]: ep-1 10.0.0.1 \u{2260} ep-3 10.0.0.3"), "{diff}");
    // n3's votes do not count: only n1's and n2's.
    assert!(status.entry_points[0].votes.iter().all(|v| v.node != "n3"), "{:?}", status.entry_points[0].votes);
    let told: Vec<Event> = c.events().into_iter().filter(|e| matches!(e, Event::DefinitionsDisagree { .. })).collect();
    assert!(
        told.iter().any(|e| matches!(e, Event::DefinitionsDisagree { nodes, held: false, .. } if nodes == &["n3".to_string()])),
        "{told:?}"
    );
    assert_eq!(told.len(), 1, "told once: {told:?}");

    // Without the leader, the two left disagree: nobody has a majority, and the service is held
    // where it is even though its entry point goes down.
    c.crash(&leader);
    c.down_everywhere("ep-1");
    sleep(Duration::from_secs(30)).await;
    assert_eq!(c.switches().len(), 1, "no switch while the nodes disagree: {:?}", c.switches());
    let other = if leader == "n1" { "n2" } else { "n1" };
    assert!(c.node(other).handle.service_status("main").await.unwrap().held);

    // The crashed node comes back: the majority agrees again and fails over by its order.
    c.nodes.retain(|n| n.name != leader);
    c.start(&leader, "");
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    assert!(c.switches().iter().all(|(_, to)| to != "ep-3"), "{:?}", c.switches());
}

/// A leader outvoted on a service's definition while its slow provider call is under way lets
/// the call end before it frees the leader key: the majority's leader switches after it, and the
/// provider is left where the majority's leader put it. Before, the key was freed at once, the
/// successor's quick switch landed first and the outvoted leader's late call overwrote it with
/// the other order's pick until the next reconcile (simulation seed 4763).
#[tokio::test(start_paused = true)]
async fn an_outvoted_leader_lets_its_call_under_way_end_before_a_successor_switches() {
    let mut c = Cluster {
        dcs: MemoryDcs::new("test"),
        provider: FakeProvider::new(None),
        notifier: RecordingNotifier::new(),
        nodes: Vec::new(),
        stalls: None,
    };
    // n3 lists the entry points in the opposite order and leads alone; its first switch (to
    // ep-3, its first) takes 10 s at the provider.
    c.provider.set_delay(Duration::from_secs(10));
    c.start_with("n3", reordered("n3"));
    assert_eq!(c.wait_leader().await, "n3");
    wait_for("n3's switch recorded", Duration::from_secs(30), || async {
        dhaf_core::dcs::Dcs::snapshot(&c.dcs).await.ok()?.records.get("main").map(|_| ())
    })
    .await;
    // While the call is under way, the provider gets quick again and n1 and n2, agreeing with
    // each other, outvote n3.
    c.provider.set_delay(Duration::ZERO);
    c.start("n1", "");
    c.start("n2", "");
    let leader = wait_for("a leader of the majority", Duration::from_secs(30), || async { c.leader().await.filter(|l| l != "n3") }).await;
    wait_for("the majority's switch", Duration::from_secs(30), || async {
        c.switches().iter().any(|(by, to)| *by == leader && to == "ep-1").then_some(())
    })
    .await;
    // Less than the reconcile interval (20 s): a late write would not have been repaired yet.
    sleep(Duration::from_secs(12)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-1"), "left where the majority's leader put it: {:?}", c.switches());
    let calls = c.provider.calls();
    assert!(calls.windows(2).all(|w| w[0].token <= w[1].token), "a call of an older term landed after a newer one's: {:?}", c.switches());
}

#[tokio::test(start_paused = true)]
async fn a_lone_node_points_a_new_service_at_the_first_entry_point() {
    let c = Cluster::new(1, None, "");
    wait_for("the initial switch", Duration::from_secs(30), || async { c.provider.current() }).await;
    assert_eq!(c.switches(), [("n1".to_string(), "ep-1".to_string())]);
    let status = c.node("n1").handle.service_status("main").await.unwrap();
    assert_eq!(status.current.as_deref(), Some("ep-1"));
    assert_eq!(status.last_switch.unwrap().kind, SwitchKind::Initial);
}

/// At a cold start the nodes' first opinions arrive one by one: the secondary, quicker to check,
/// is healthy by majority before anyone has judged the primary. The first choice waits for the
/// primary's verdict instead of pointing at the secondary and switching back moments later.
#[tokio::test(start_paused = true)]
async fn a_cold_start_points_at_the_primary_once_even_if_the_secondary_is_judged_first() {
    let c = Cluster::new(3, None, "");
    for n in &c.nodes {
        n.checker.set_delay_of("ep-1", Duration::from_secs(3));
    }
    wait_for("the initial switch", Duration::from_secs(60), || async { c.provider.current() }).await;
    sleep(Duration::from_secs(30)).await;
    let to: Vec<String> = c.switches().into_iter().map(|(_, to)| to).collect();
    assert_eq!(to, ["ep-1"], "one switch, to the primary");
    let switched: Vec<Event> = c.events().into_iter().filter(|e| matches!(e, Event::Switched { .. })).collect();
    assert!(matches!(switched.as_slice(), [Event::Switched { kind: SwitchKind::Initial, .. }]), "{switched:?}");
}

#[tokio::test(start_paused = true)]
async fn a_node_adopts_what_the_provider_points_at_without_switching() {
    let c = Cluster::new(1, Some("ep-2"), "    failback: manual");
    c.wait_leader().await;
    sleep(Duration::from_secs(10)).await;
    assert!(c.switches().is_empty(), "the provider already points at a healthy entry point: {:?}", c.switches());
    let status = c.node("n1").handle.service_status("main").await.unwrap();
    assert_eq!(status.current.as_deref(), Some("ep-2"));
}

#[tokio::test(start_paused = true)]
async fn a_provider_pointing_at_a_lower_priority_is_switched_back() {
    let c = Cluster::new(1, Some("ep-2"), "");
    wait_for("switching back", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
    assert!(c.events().iter().any(|e| matches!(e, Event::Switched { kind: SwitchKind::Failback, .. })));
}

#[tokio::test(start_paused = true)]
async fn a_majority_seeing_the_primary_down_fails_over_exactly_once() {
    let c = Cluster::new(3, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(5)).await;
    c.node("n1").checker.down("ep-1", "connection refused");
    c.node("n2").checker.down("ep-1", "connection refused");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    sleep(Duration::from_secs(10)).await;
    assert_eq!(c.switches(), [(leader, "ep-2".to_string())], "exactly one switch, by the leader");
    let events = c.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::EntryPointWentDown { entry_point, reasons, .. } if entry_point == "ep-1" && reasons.len() == 2)),
        "{events:?}"
    );
    let failovers = events.iter().filter(|e| matches!(e, Event::Switched { kind: SwitchKind::Failover, .. })).count();
    assert_eq!(failovers, 1, "{events:?}");
}

/// How long (in the test's paused time) three nodes with `timing` in place of the default
/// `tact-interval: 1` and `heartbeat-interval: 1` take from a majority seeing the primary down to
/// the provider's switch.
async fn failover_time(timing: &str) -> Duration {
    let mut c = Cluster::new(0, Some("ep-1"), "");
    for name in ["n1", "n2", "n3"] {
        let yaml = format!(
            "dhaf: {{ cluster-name: test, node-name: {name}, {timing}, healthy-node-status-ttl: 6, reconcile-interval: 20 }}
services:
  - name: main
    domain: example.test
    entry-points: [{{ name: ep-1, ip: 10.0.0.1 }}, {{ name: ep-2, ip: 10.0.0.2 }}]
    switcher: {{ type: fake }}
    health-checker: {{ type: scripted }}
"
        );
        c.start_with(name, Config::parse(&yaml).unwrap());
    }
    c.wait_leader().await;
    sleep(Duration::from_secs(5)).await;
    assert!(c.switches().is_empty());
    let start = Instant::now();
    c.down_everywhere("ep-1");
    while c.provider.current().as_deref() != Some("ep-2") {
        assert!(start.elapsed() < Duration::from_secs(30), "no failover");
        sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_sub_second_tact_fails_over_in_step_with_it() {
    // fall: 2 takes two failed checks a tact apart, then the leader's next look: a few tacts.
    let fast = failover_time("tact-interval: 200ms, heartbeat-interval: 500ms").await;
    let slow = failover_time("tact-interval: 1, heartbeat-interval: 1").await;
    assert!(fast >= Duration::from_millis(200) && fast < Duration::from_secs(1), "tact 200ms failed over in {fast:?}");
    assert!(slow >= Duration::from_secs(1), "tact 1s failed over in {slow:?}");
    assert!(fast * 3 < slow, "tact 200ms took {fast:?}, tact 1 s {slow:?}");
}

#[tokio::test(start_paused = true)]
async fn a_minority_seeing_the_primary_down_changes_nothing() {
    let c = Cluster::new(3, Some("ep-1"), "");
    c.wait_leader().await;
    c.node("n3").checker.down("ep-1", "timed out after 5 s");
    sleep(Duration::from_secs(30)).await;
    assert!(c.switches().is_empty(), "{:?}", c.switches());
    let status = c.node("n1").handle.service_status("main").await.unwrap();
    let ep1 = &status.entry_points[0];
    assert_eq!(ep1.verdict, dhaf_core::engine::Verdict::Healthy);
    assert!(ep1.votes.iter().any(|v| v.node == "n3" && !v.healthy && v.reason.as_deref() == Some("timed out after 5 s")));
}

#[tokio::test(start_paused = true)]
async fn a_flapping_primary_below_fall_does_not_switch() {
    let c = Cluster::new(3, Some("ep-1"), "");
    c.wait_leader().await;
    for i in 0..20 {
        if i % 2 == 0 {
            c.down_everywhere("ep-1");
        } else {
            c.up_everywhere("ep-1");
        }
        sleep(Duration::from_secs(1)).await;
    }
    assert!(c.switches().is_empty(), "flapping one tact at a time must not switch with fall: 2: {:?}", c.switches());
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_and_the_new_leader_acts_once() {
    let mut c = Cluster::new(3, Some("ep-1"), "");
    let first = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.crash(&first);
    let second = wait_for("a new leader", Duration::from_secs(30), || {
        let first = first.clone();
        let c = &c;
        async move { c.leader().await.filter(|l| *l != first) }
    })
    .await;
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    sleep(Duration::from_secs(10)).await;
    assert_eq!(c.switches(), [(second.clone(), "ep-2".to_string())]);
    let elected: Vec<_> = c.events().into_iter().filter(|e| matches!(e, Event::LeaderElected { .. })).collect();
    assert_eq!(elected.len(), 2, "{elected:?}");
    assert!(c.events().iter().any(|e| matches!(e, Event::NodeWentDown { node } if *node == first)));
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_from_the_dcs_never_switches_again() {
    let c = Cluster::new(3, Some("ep-1"), "");
    let first = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.dcs.cut_off(&first, true);
    // Everyone, the cut-off leader included, now sees the primary down.
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    sleep(Duration::from_secs(20)).await;
    let calls = c.provider.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_ne!(calls[0].node, first, "the cut-off leader must not switch");
    assert!(!c.node(&first).handle.is_leader(), "the cut-off leader steps down on its own");
    // Back on the network it stays a follower and does not undo anything.
    c.dcs.cut_off(&first, false);
    sleep(Duration::from_secs(20)).await;
    assert_eq!(c.provider.calls().len(), 1);
}

/// A stopped process (SIGSTOP, a VM paused) past its lease: its DCS and provider calls wait,
/// unsent, until it runs again, while the others take over. Once it runs, nothing it sends
/// begins in its old term, and the traffic stays where the new leader put it.
#[tokio::test(start_paused = true)]
async fn a_leader_paused_past_its_lease_never_writes_in_its_old_term() {
    let c = Cluster::new(3, Some("ep-1"), "");
    let first = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    let old = term(&c).await;
    c.dcs.pause(&first, true);
    c.provider.pause(&first, true);
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    let ended = c.dcs.term_ended(old).expect("the paused leader's term ended with its lease");
    sleep(Duration::from_secs(10)).await;
    c.dcs.pause(&first, false);
    c.provider.pause(&first, false);
    sleep(Duration::from_secs(30)).await;
    let calls = c.provider.calls();
    assert!(calls.iter().all(|call| call.token != old || call.started < ended), "a write began in the old term after it ended: {calls:?}");
    assert!(calls.iter().all(|call| call.node != first), "the paused leader wrote nothing: {calls:?}");
    assert_eq!(c.provider.current().as_deref(), Some("ep-2"), "the traffic stays where the new leader put it");
    assert!(!c.node(&first).handle.is_leader() || term(&c).await != old, "it does not lead in its old term");
}

/// Once armed, holds the answer to the node's next `kv_get` until released: a node stalled (a
/// pause, a slow link) between reading a value and writing it back. The release must come
/// within the DCS call's timeout, or the node gives up on the read. Armed for writes, it holds
/// the node's next `kv_put_if` on its way instead: a request lost in flight once the node
/// gives up on it.
#[derive(Clone, Default)]
struct StalledRead {
    armed: Arc<std::sync::atomic::AtomicBool>,
    armed_write: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<std::sync::atomic::AtomicBool>,
    released: Arc<tokio::sync::Notify>,
}

impl StalledRead {
    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn arm_write(&self) {
        self.armed_write.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn holding(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn release(&self) {
        self.released.notify_one();
    }
}

#[async_trait::async_trait]
impl Interceptor for StalledRead {
    async fn before(&self, method: &'static str) -> Result<(), DcsError> {
        if method == "kv_put_if" && self.armed_write.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.held.store(true, std::sync::atomic::Ordering::SeqCst);
            self.released.notified().await;
            self.held.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
    async fn after(&self, method: &'static str) -> Result<(), DcsError> {
        if method == "kv_get" && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.held.store(true, std::sync::atomic::Ordering::SeqCst);
            self.released.notified().await;
            self.held.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A leader stalled between reading the service's history and writing its switch there, while
/// its term ends (its leader key gone, as when its lease lapses during a pause): a successor
/// finds the switch untold and tells it. Once the old leader runs again, its write must not
/// land in a term that is over, and it must not tell the switch a second time.
#[tokio::test(start_paused = true)]
async fn a_leader_deposed_before_its_history_entry_lands_does_not_tell_the_switch_again() {
    let c = Cluster::with_stalls(3, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    let old = term(&c).await;
    c.provider.set_delay(Duration::from_secs(3));
    c.down_everywhere("ep-1");
    let handle = c.node(&leader).handle.clone();
    wait_for("the switch recorded", Duration::from_secs(30), || async {
        (handle.service_status("main").await.ok()?.current.as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    // The call is under way: the leader's next read (the history, once the call is done) is held.
    c.stall(&leader).arm();
    wait_for("the history read held", Duration::from_secs(30), || async { c.stall(&leader).holding().then_some(()) }).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-2"), "the switch went through before its history was read");
    assert_eq!(told_switches_to(&c, "ep-2"), 0, "told before its history entry was written: {:?}", c.events());
    // Its term ends; a successor takes over, finds the switch untold, tells it.
    dhaf_core::dcs::Dcs::resign(&c.dcs, old).await.unwrap();
    wait_for("the successor to tell the switch", Duration::from_millis(1500), || async {
        (told_switches_to(&c, "ep-2") > 0).then_some(())
    })
    .await;
    assert!(c.stall(&leader).holding(), "the scenario did not arise: the old leader gave up its read");
    c.stall(&leader).release();
    sleep(Duration::from_secs(30)).await;
    assert_eq!(told_switches_to(&c, "ep-2"), 1, "told once across the change of leader: {:?}", c.events());
    let other = c.nodes.iter().find(|n| n.name != leader).unwrap().handle.clone();
    let history = other.history("main").await.unwrap();
    assert_eq!(history.iter().filter(|r| r.entry_point == "ep-2").count(), 1, "one history entry: {history:?}");
    assert!(c.provider.calls().iter().all(|call| call.to != "ep-1"), "nothing moved back: {:?}", c.provider.calls());
}

/// A leader whose history write is lost on its way (no answer) while its term ends and a
/// successor finds the switch untold, tells it and writes it: the old leader, reading the history
/// again before it learns its term is over, finds the entry and must not take it for its own.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_history_write_was_lost_does_not_take_its_successors_entry_for_its_own() {
    let c = Cluster::with_stalls(3, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    let old = term(&c).await;
    c.provider.set_delay(Duration::from_secs(3));
    c.down_everywhere("ep-1");
    let handle = c.node(&leader).handle.clone();
    wait_for("the switch recorded", Duration::from_secs(30), || async {
        (handle.service_status("main").await.ok()?.current.as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    c.stall(&leader).arm_write();
    wait_for("the history write held", Duration::from_secs(30), || async { c.stall(&leader).holding().then_some(()) }).await;
    dhaf_core::dcs::Dcs::resign(&c.dcs, old).await.unwrap();
    wait_for("the successor to tell the switch", Duration::from_millis(1500), || async {
        (told_switches_to(&c, "ep-2") > 0).then_some(())
    })
    .await;
    assert!(c.stall(&leader).holding(), "the scenario did not arise: the old leader gave up its write");
    sleep(Duration::from_secs(30)).await;
    assert_eq!(told_switches_to(&c, "ep-2"), 1, "told once across the change of leader: {:?}", c.events());
    let other = c.nodes.iter().find(|n| n.name != leader).unwrap().handle.clone();
    let history = other.history("main").await.unwrap();
    assert_eq!(history.iter().filter(|r| r.entry_point == "ep-2").count(), 1, "one history entry: {history:?}");
}

/// Another writer adds to the history between the leader's read and its write (a node of an
/// older version writing late, a hand edit): the leader reads it again and adds its switch after
/// that entry instead of writing over it, and tells its switch once.
#[tokio::test(start_paused = true)]
async fn a_history_entry_written_while_the_leader_adds_its_own_is_kept() {
    let c = Cluster::with_stalls(3, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.provider.set_delay(Duration::from_secs(3));
    c.down_everywhere("ep-1");
    let handle = c.node(&leader).handle.clone();
    wait_for("the switch recorded", Duration::from_secs(30), || async {
        (handle.service_status("main").await.ok()?.current.as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    c.stall(&leader).arm();
    wait_for("the history read held", Duration::from_secs(30), || async { c.stall(&leader).holding().then_some(()) }).await;
    let mut history: Vec<SwitchRecord> = match c.dcs.kv_get("dhaf.history", "main").await.unwrap() {
        Some(text) => serde_json::from_str(&text).unwrap(),
        None => Vec::new(),
    };
    let meanwhile = SwitchRecord {
        entry_point: "ep-3".into(),
        kind: SwitchKind::Switchover,
        token: FencingToken(1),
        node: "n9".into(),
        at: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        requested_by: Some("ops".into()),
        told_in: None,
    };
    history.push(meanwhile.clone());
    c.dcs.kv_put("dhaf.history", "main", &serde_json::to_string(&history).unwrap()).await.unwrap();
    c.stall(&leader).release();
    wait_for("the switch told", Duration::from_secs(30), || async { (told_switches_to(&c, "ep-2") > 0).then_some(()) }).await;
    sleep(Duration::from_secs(10)).await;
    assert_eq!(told_switches_to(&c, "ep-2"), 1, "told once: {:?}", c.events());
    let history = handle.history("main").await.unwrap();
    let tail: Vec<&str> = history.iter().rev().take(2).rev().map(|r| r.entry_point.as_str()).collect();
    assert_eq!(tail, ["ep-3", "ep-2"], "the entry written meanwhile is kept, and the switch follows it: {history:?}");
    assert!(history.contains(&meanwhile), "{history:?}");
}

fn told_switches_to(c: &Cluster, to: &str) -> usize {
    c.events().iter().filter(|e| matches!(e, Event::Switched { to: t, .. } if t == to)).count()
}

/// A switch whose history entry cannot be written yet (the leader's writes are refused after
/// it recorded the switch) is told once that entry is written, by whoever writes it, and once.
#[tokio::test(start_paused = true)]
async fn a_switch_is_told_once_its_history_entry_is_written_and_only_once() {
    let c = Cluster::new(3, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.provider.set_delay(Duration::from_secs(3));
    c.down_everywhere("ep-1");
    let handle = c.node(&leader).handle.clone();
    wait_for("the switch recorded", Duration::from_secs(30), || async {
        (handle.service_status("main").await.ok()?.current.as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    // The call is under way (3 s): the leader's writes are refused before it lands.
    c.dcs.refuse_writes(&leader, true);
    wait_for("the provider moved", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) })
        .await;
    sleep(Duration::from_secs(5)).await;
    let other = c.nodes.iter().find(|n| n.name != leader).unwrap().handle.clone();
    let in_history = |h: Vec<SwitchRecord>| h.iter().filter(|r| r.entry_point == "ep-2").count();
    if told_switches_to(&c, "ep-2") > 0 {
        assert_eq!(in_history(other.history("main").await.unwrap()), 1, "told before its history entry was written: {:?}", c.events());
    }
    c.dcs.refuse_writes(&leader, false);
    wait_for("the switch told", Duration::from_secs(60), || async { (told_switches_to(&c, "ep-2") > 0).then_some(()) }).await;
    sleep(Duration::from_secs(30)).await;
    assert_eq!(told_switches_to(&c, "ep-2"), 1, "told once: {:?}", c.events());
    assert_eq!(in_history(other.history("main").await.unwrap()), 1, "one history entry");
}

/// At steady state a follower learns that another node leads from the leader key alone: the
/// whole DCS (every node's opinion of every entry point) is read by a follower only now and then,
/// not once a heartbeat.
#[tokio::test(start_paused = true)]
async fn followers_do_not_read_the_whole_dcs_every_heartbeat() {
    let mut c = Cluster::new(3, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(15)).await;
    let before = c.dcs.snapshots_read();
    sleep(Duration::from_secs(60)).await;
    let read = c.dcs.snapshots_read() - before;
    // Two followers at a 1 s heartbeat used to read 120 in a minute.
    assert!(read <= 20, "{read} whole reads of the DCS in a minute of steady state");
    // And a follower still takes over when the leader dies.
    let leader = c.wait_leader().await;
    c.crash(&leader);
    wait_for("another leader", Duration::from_secs(30), || async { c.leader().await.filter(|l| *l != leader) }).await;
}

/// A switch that failed and was called off leaves the record ahead of the provider; the next
/// switch back to where the provider still points moves nothing and is not told as a switch.
#[tokio::test(start_paused = true)]
async fn a_switch_to_where_the_provider_already_points_is_not_told() {
    let c = Cluster::new(3, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.provider.fail_next(1000);
    c.down_everywhere("ep-1");
    let handle = c.node(&leader).handle.clone();
    wait_for("the failing switch shown", Duration::from_secs(30), || async {
        handle.service_status("main").await.ok()?.switching.is_some().then_some(())
    })
    .await;
    c.up_everywhere("ep-1");
    sleep(Duration::from_secs(5)).await;
    c.provider.fail_next(0);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-1"), "the traffic never left ep-1");
    let switched: Vec<Event> = c.events().into_iter().filter(|e| matches!(e, Event::Switched { .. })).collect();
    assert!(switched.is_empty(), "nothing moved, nothing is told as a switch: {switched:?}");
    let status = handle.service_status("main").await.unwrap();
    assert_eq!(status.current.as_deref(), Some("ep-1"), "the record follows the provider: {status:?}");
    assert!(status.switching.is_none(), "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn losing_the_dcs_never_switches_and_is_told_once() {
    let c = Cluster::new(2, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.dcs.set_unavailable(true);
    c.down_everywhere("ep-1");
    sleep(Duration::from_secs(60)).await;
    assert!(c.switches().is_empty(), "no switch without the dcs: {:?}", c.switches());
    let lost = c.events().iter().filter(|e| matches!(e, Event::DcsUnavailable { .. })).count();
    assert_eq!(lost, 2, "each node says so once: {:?}", c.events());
    let status = c.node("n1").handle.status().await.unwrap();
    assert!(status.dcs_error.is_some(), "the status says the dcs is lost");
    // The leader shown is the last known one, marked stale rather than emptied.
    assert!(status.stale && status.dcs_error_since.is_some(), "{status:?}");
    // Recovery: the primary came back meanwhile, so nothing is switched.
    c.up_everywhere("ep-1");
    sleep(Duration::from_secs(10)).await;
    c.dcs.set_unavailable(false);
    sleep(Duration::from_secs(30)).await;
    assert!(c.switches().is_empty(), "no spurious switch on recovery: {:?}", c.switches());
    assert!(c.events().iter().any(|e| matches!(e, Event::DcsRecovered { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_node_whose_writes_are_refused_stops_voting_its_stale_opinion_and_says_so_once() {
    let c = Cluster::new(3, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(5)).await;
    let others: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).filter(|n| *n != leader).collect();
    let (stuck, third) = (others[0].as_str(), others[1].as_str());
    // The DCS refuses this node's writes; its keep-alives and reads still pass.
    c.dcs.refuse_writes(stuck, true);
    // ep-2 dies for the leader and the stuck node; the third node still reaches it. The stuck
    // node cannot publish what it sees, so its old "healthy" must not count.
    c.node(&leader).checker.down("ep-2", "connection refused");
    c.node(stuck).checker.down("ep-2", "connection refused");
    sleep(Duration::from_secs(10)).await;
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { c.provider.current().filter(|ep| ep != "ep-1") }).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-3"), "ep-2 is down for two of three nodes: {:?}", c.switches());
    let status = c.node(third).handle.service_status("main").await.unwrap();
    let ep2 = &status.entry_points[1];
    assert_ne!(ep2.verdict, dhaf_core::engine::Verdict::Healthy, "a stale opinion decided the verdict: {:?}", ep2.votes);
    assert!(ep2.votes.iter().all(|v| v.node != stuck), "the stuck node's stale vote still counts: {:?}", ep2.votes);
    let told = |c: &Cluster| {
        let events = c.events();
        let lost = events.iter().filter(|e| matches!(e, Event::DcsUnavailable { node, .. } if node == stuck)).count();
        let back = events.iter().filter(|e| matches!(e, Event::DcsRecovered { node } if node == stuck)).count();
        (lost, back)
    };
    assert_eq!(told(&c), (1, 0), "{:?}", c.events());
    let reason = c.events().into_iter().find_map(|e| match e {
        Event::DcsUnavailable { reason, .. } => Some(reason),
        _ => None,
    });
    assert!(reason.is_some_and(|r| r.contains("writes refused")), "the notification names what fails");
    // Writes pass again: recovery is told once, and the node's opinion counts again.
    c.dcs.refuse_writes(stuck, false);
    sleep(Duration::from_secs(30)).await;
    assert_eq!(told(&c), (1, 1), "{:?}", c.events());
    let status = c.node(third).handle.service_status("main").await.unwrap();
    assert!(status.entry_points[1].votes.iter().any(|v| v.node == stuck && !v.healthy), "{:?}", status.entry_points[1].votes);
}

#[tokio::test(start_paused = true)]
async fn a_paused_cluster_does_not_fail_over_until_resumed_and_says_so_once() {
    let mut c = Cluster::new(3, Some("ep-1"), "");
    let first = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    let asker = c.nodes.iter().find(|n| n.name != first).unwrap().name.clone();
    c.node(&asker).handle.pause("ops from 10.0.0.9:5000").await.unwrap();
    let paused = c.node(&first).handle.status().await.unwrap().paused.expect("status says the cluster is paused");
    assert_eq!(paused.by, "ops from 10.0.0.9:5000");
    // Pausing twice keeps the first pause.
    c.node(&first).handle.pause("someone else").await.unwrap();
    assert_eq!(c.node(&asker).handle.status().await.unwrap().paused.unwrap().by, "ops from 10.0.0.9:5000");

    // The primary fails while paused: the nodes see it and tell it, nobody switches.
    c.down_everywhere("ep-1");
    wait_for("ep-1 told down", Duration::from_secs(30), || async {
        c.events().iter().any(|e| matches!(e, Event::EntryPointWentDown { entry_point, .. } if entry_point == "ep-1")).then_some(())
    })
    .await;
    sleep(Duration::from_secs(20)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-1"));
    assert!(c.switches().is_empty(), "{:?}", c.switches());
    // A new leader during the pause holds still too, and does not tell the pause again.
    c.crash(&first);
    let second = wait_for("a new leader", Duration::from_secs(30), || {
        let first = first.clone();
        let c = &c;
        async move { c.leader().await.filter(|l| *l != first) }
    })
    .await;
    sleep(Duration::from_secs(10)).await;
    assert!(c.switches().is_empty(), "{:?}", c.switches());

    // Resumed: the failover happens at once, by the leader.
    c.node(&second).handle.resume().await.unwrap();
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    assert_eq!(c.switches(), [(second.clone(), "ep-2".to_string())]);
    assert!(c.node(&second).handle.status().await.unwrap().paused.is_none());
    sleep(Duration::from_secs(5)).await;
    let told: Vec<Event> = c.events().into_iter().filter(|e| matches!(e, Event::Paused { .. } | Event::Resumed {})).collect();
    assert_eq!(told, [Event::Paused { by: "ops from 10.0.0.9:5000".into() }, Event::Resumed {}], "each told once, across leaders");
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_switchover_is_carried_out_at_its_time_by_whoever_leads_then() {
    let mut c = Cluster::new(3, Some("ep-1"), "");
    let first = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    // The wall clock the nodes judge a schedule by moves with the test's paused clock.
    let at = dhaf_core::runtime::model_wall_now() + Duration::from_secs(120);
    let h = &c.node(&first).handle;
    assert_eq!(h.switchover_at("main", "ep-9", at, None).await.unwrap_err().code(), "unknown_entry_point");
    let past = dhaf_core::runtime::model_wall_now() - Duration::from_secs(1);
    assert_eq!(h.switchover_at("main", "ep-3", past, None).await.unwrap_err().code(), "time_in_the_past");
    h.switchover_at("main", "ep-3", at, Some("ops from 10.0.0.9:5000")).await.unwrap();
    let status = h.service_status("main").await.unwrap();
    assert_eq!((status.switchover.as_deref(), status.switchover_at.is_some()), (Some("ep-3"), true));

    // The leader that took the request dies; one elected after it carries it out, at the time.
    c.crash(&first);
    let second = wait_for("a new leader", Duration::from_secs(30), || {
        let first = first.clone();
        let c = &c;
        async move { c.leader().await.filter(|l| *l != first) }
    })
    .await;
    sleep(Duration::from_secs(60)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-1"), "not before its time");
    assert!(c.switches().is_empty(), "{:?}", c.switches());
    wait_for("the scheduled switchover", Duration::from_secs(120), || async {
        (c.provider.current().as_deref() == Some("ep-3")).then_some(())
    })
    .await;
    assert_eq!(c.switches(), [(second.clone(), "ep-3".to_string())]);
    let history = c.node(&second).handle.history("main").await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.kind, last.requested_by.as_deref()), (SwitchKind::Switchover, Some("ops from 10.0.0.9:5000")));
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_switchover_to_a_target_down_at_its_time_is_refused_once_and_can_be_cancelled() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    let h = &c.node("n1").handle;
    // Cancelled before its time: nothing happens.
    h.switchover_at("main", "ep-2", dhaf_core::runtime::model_wall_now() + Duration::from_secs(30), None).await.unwrap();
    h.switchover_purge("main").await.unwrap();
    sleep(Duration::from_secs(60)).await;
    assert!(c.switches().is_empty(), "{:?}", c.switches());

    h.switchover_at("main", "ep-2", dhaf_core::runtime::model_wall_now() + Duration::from_secs(30), None).await.unwrap();
    c.down_everywhere("ep-2");
    sleep(Duration::from_secs(60)).await;
    assert!(c.switches().is_empty(), "{:?}", c.switches());
    assert_eq!(h.service_status("main").await.unwrap().switchover, None, "the refused request is dropped");
    let refused: Vec<Event> = c.events().into_iter().filter(|e| matches!(e, Event::ScheduledSwitchoverRefused { .. })).collect();
    assert_eq!(
        refused,
        [Event::ScheduledSwitchoverRefused {
            service: "main".into(),
            entry_point: "ep-2".into(),
            why: "entry point ep-2 is unhealthy".into()
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn switchover_pins_the_target_and_purge_switches_back() {
    let c = Cluster::new(2, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    let h = &c.node("n2").handle;
    let err = h.switchover_to("main", "ep-9").await.unwrap_err();
    assert_eq!(err.code(), "unknown_entry_point");
    h.switchover_to("main", "ep-3").await.unwrap();
    wait_for("the switchover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-3")).then_some(()) }).await;
    sleep(Duration::from_secs(20)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-3"), "pinned: no switching back while the request stands");
    h.switchover_purge("main").await.unwrap();
    wait_for("switching back", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
    let kinds: Vec<SwitchKind> =
        c.events().iter().filter_map(|e| if let Event::Switched { kind, .. } = e { Some(*kind) } else { None }).collect();
    assert_eq!(kinds, [SwitchKind::Switchover, SwitchKind::Failback]);
}

#[tokio::test(start_paused = true)]
async fn a_switchover_whose_target_goes_down_is_purged_and_fails_over() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.node("n1").handle.switchover_to("main", "ep-2").await.unwrap();
    wait_for("the switchover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    c.down_everywhere("ep-2");
    wait_for("failing over", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
    assert!(c.events().iter().any(|e| matches!(e, Event::SwitchoverPurged { entry_point, .. } if entry_point == "ep-2")));
    assert!(c.node("n1").handle.service_status("main").await.unwrap().switchover.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_target_is_refused_for_switchover() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    c.down_everywhere("ep-3");
    sleep(Duration::from_secs(5)).await;
    let err = c.node("n1").handle.switchover_to("main", "ep-3").await.unwrap_err();
    assert_eq!(err.code(), "unhealthy_target");
    let cands: Vec<String> = c.node("n1").handle.switchover_candidates("main").await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(cands, ["ep-1", "ep-2"]);
}

#[tokio::test(start_paused = true)]
async fn the_primary_recovering_is_switched_back_to_after_the_delay() {
    let c = Cluster::new(1, Some("ep-1"), "    failback-delay: 30");
    c.wait_leader().await;
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    c.up_everywhere("ep-1");
    // Status shows the failback coming: where to, and in how long.
    let failback = wait_for("the pending failback in status", Duration::from_secs(10), || async {
        c.node("n1").handle.service_status("main").await.unwrap().failback
    })
    .await;
    assert_eq!(failback.to, "ep-1");
    assert!(failback.in_secs > 0 && failback.in_secs <= 30, "{failback:?}");
    sleep(Duration::from_secs(20)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-2"), "not before the failback delay");
    wait_for("switching back", Duration::from_secs(40), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
    wait_for("no failback pending", Duration::from_secs(10), || async {
        c.node("n1").handle.service_status("main").await.unwrap().failback.is_none().then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn manual_failback_stays_on_the_secondary() {
    let c = Cluster::new(1, Some("ep-1"), "    failback: manual");
    c.wait_leader().await;
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    c.up_everywhere("ep-1");
    sleep(Duration::from_secs(60)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-2"));
}

#[tokio::test(start_paused = true)]
async fn maintenance_moves_traffic_away_and_back() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    let h = &c.node("n1").handle;
    h.set_maintenance("main", "ep-1", true, false).await.unwrap();
    wait_for("moving off maintenance", Duration::from_secs(30), || async {
        (c.provider.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    h.set_maintenance("main", "ep-1", false, false).await.unwrap();
    wait_for("moving back", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
}

#[tokio::test(start_paused = true)]
async fn panic_mode_switches_nothing_and_says_so_once() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    for ep in ["ep-1", "ep-2", "ep-3"] {
        c.down_everywhere(ep);
    }
    sleep(Duration::from_secs(60)).await;
    assert!(c.switches().is_empty());
    let down = c.events().iter().filter(|e| matches!(e, Event::ServiceWentDown { .. })).count();
    assert_eq!(down, 1, "{:?}", c.events());
    assert!(c.node("n1").handle.service_status("main").await.unwrap().panic);
    c.up_everywhere("ep-2");
    wait_for("leaving panic", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    assert!(c.events().iter().any(|e| matches!(e, Event::ServiceCameUp { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_failed_switch_is_retried_and_reported_once() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    c.provider.fail_next(3);
    c.down_everywhere("ep-1");
    wait_for("the failover despite failures", Duration::from_secs(60), || async {
        (c.provider.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    let failed = c.events().iter().filter(|e| matches!(e, Event::SwitchFailed { .. })).count();
    assert_eq!(failed, 1, "{:?}", c.events());
    assert_eq!(c.node("n1").handle.metrics().switch_failures, 3);
}

/// The switches told for the service, as (from, to).
fn told_moves(c: &Cluster) -> Vec<(Option<String>, String)> {
    told_moves_of(&c.notifier)
}

/// The switches `notifier` was told, as (from, to).
fn told_moves_of(notifier: &RecordingNotifier) -> Vec<(Option<String>, String)> {
    notifier
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Switched { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect()
}

fn moved(from: &str, to: &str) -> (Option<String>, String) {
    (Some(from.to_string()), to.to_string())
}

/// A switch that goes through at its third attempt is told from where the service pointed
/// before the first, not from its own target (the failed attempts wrote the record already).
#[tokio::test(start_paused = true)]
async fn a_switch_that_goes_through_after_failed_attempts_is_told_from_where_it_was() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.provider.fail_next(2);
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(told_moves(&c), [moved("ep-1", "ep-2")], "{:?}", c.events());
}

/// A switch carried out whose answer was lost is, to the leader, a failed one; the read-back
/// that follows finds the provider at its target: the move is told then, once, and the next
/// switch is told from there. Before, the move was never told and the leader called the
/// provider again for it, and the next switch was told from a place nobody had heard of.
#[tokio::test(start_paused = true)]
async fn a_switch_whose_answer_was_lost_is_told_once_the_read_back_finds_it_done() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.provider.lose_next_answers(2);
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(told_moves(&c), [moved("ep-1", "ep-2")], "{:?}", c.events());
    assert_eq!(c.provider.calls().len(), 1, "the read-back showed the switch done: no call again");
    c.up_everywhere("ep-1");
    wait_for("the switch back", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) })
        .await;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(told_moves(&c), [moved("ep-1", "ep-2"), moved("ep-2", "ep-1")], "{:?}", c.events());
    let status = c.node("n1").handle.service_status("main").await.unwrap();
    assert!(status.switching.is_none(), "no switch shown failing: {status:?}");
}

#[tokio::test(start_paused = true)]
async fn drift_at_the_provider_is_repaired() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    c.provider.edit("ep-3");
    wait_for("the repair", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
    let calls = c.provider.calls();
    assert_eq!(calls.len(), 1);
    assert!(c.events().iter().any(|e| matches!(e, Event::Switched { kind: SwitchKind::Repair, .. })));
}

#[tokio::test(start_paused = true)]
async fn a_stopped_leader_hands_over_at_once() {
    let mut c = Cluster::new(2, Some("ep-1"), "");
    let first = c.wait_leader().await;
    let stopped_at = Instant::now();
    c.stop(&first).await;
    let second = c.wait_leader().await;
    assert_ne!(first, second);
    assert!(stopped_at.elapsed() < Duration::from_secs(6), "a graceful stop must not wait out the lease");
    let status = c.nodes.iter().find(|n| n.name == second).unwrap().handle.status().await.unwrap();
    let stopped = status.nodes.iter().find(|n| n.name == first).unwrap();
    assert!(!stopped.alive);
    c.node(&second).handle.decommission(&first).await.unwrap();
    let status = c.node(&second).handle.status().await.unwrap();
    assert!(status.nodes.iter().all(|n| n.name != first));
    assert_eq!(c.node(&second).handle.decommission(&second).await.unwrap_err().code(), "node_alive");
}

#[tokio::test(start_paused = true)]
async fn history_keeps_the_switches() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    let h = c.node("n1").handle.history("main").await.unwrap();
    assert_eq!(h.last().map(|r| (r.entry_point.as_str(), r.kind)), Some(("ep-2", SwitchKind::Failover)));
}

#[tokio::test(start_paused = true)]
async fn unreadable_values_in_the_dcs_do_not_stop_a_failover() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    // A record of a service no longer configured with a time out of range, a request a newer
    // version wrote, an opinion edited by hand.
    c.dcs.raw_put("records/retired", r#"{"entry_point":"ep-1","kind":"failover","token":1,"node":"n1","at":1e300}"#);
    c.dcs.raw_put("switchovers/main", r#"{"target":{"name":"ep-3"}}"#);
    c.dcs.raw_put("opinions/n1/retired/ep-1", "{healthy");
    sleep(Duration::from_secs(3)).await;
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    let status = c.node("n1").handle.status().await.unwrap();
    let skipped: Vec<&str> = status.dcs_skipped.keys().map(|k| k.as_str()).collect();
    assert_eq!(skipped, ["/test/opinions/n1/retired/ep-1", "/test/records/retired", "/test/switchovers/main"]);
    assert!(status.dcs_error.is_none(), "an unreadable value is not an unreachable dcs: {:?}", status.dcs_error);
}

#[tokio::test(start_paused = true)]
async fn memory_dcs_passes_the_conformance_suite() {
    dhaf_core::dcs::conformance::run_all(|cluster| async move {
        let dcs = MemoryDcs::new(&cluster);
        (dcs.clone(), dcs)
    })
    .await;
}

#[tokio::test]
async fn the_embedded_dcs_keeps_requests_across_restarts() {
    let dir = std::env::temp_dir().join(format!("dhaf-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    let _ = std::fs::remove_file(&file);
    {
        let dcs = MemoryDcs::with_state_file("c", &file).unwrap();
        use dhaf_core::dcs::Dcs;
        dcs.register("n1", Duration::from_secs(10)).await.unwrap();
        dcs.request_switchover("main", "ep-2").await.unwrap();
        dcs.kv_put("notifier.tg", "chat-1", "{}").await.unwrap();
    }
    let dcs = MemoryDcs::with_state_file("c", &file).unwrap();
    use dhaf_core::dcs::Dcs;
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.switchovers["main"].entry_point, "ep-2");
    assert!(snap.alive.is_empty(), "presence is not kept across restarts");
    assert_eq!(dcs.kv_get("notifier.tg", "chat-1").await.unwrap().as_deref(), Some("{}"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh directory for a state file.
fn state_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dhaf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_embedded_dcs_refuses_a_change_it_cannot_save() {
    use dhaf_core::dcs::{Dcs, DcsError};
    let dir = state_dir("unsaved");
    let file = dir.join("state.json");
    let dcs = MemoryDcs::with_state_file("c", &file).unwrap();
    dcs.request_switchover("main", "ep-2").await.unwrap();
    // The directory is replaced by a plain file: nobody, root included, can save there now.
    let moved = dir.with_extension("moved");
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, "").unwrap();
    let err = dcs.request_switchover("main", "ep-3").await.unwrap_err();
    assert!(matches!(&err, DcsError::Unavailable(m) if m.contains(&file.display().to_string())), "the error names the file: {err}");
    assert!(dcs.set_maintenance("main", "ep-1", true).await.is_err(), "an unsaved maintenance flag must be refused");
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.switchovers["main"].entry_point, "ep-2", "a refused change is not kept");
    assert!(snap.maintenance.is_empty(), "a refused change is not kept");
    // Once the file can be written again, a change is saved and survives a restart.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    dcs.request_switchover("main", "ep-3").await.unwrap();
    drop(dcs);
    let dcs = MemoryDcs::with_state_file("c", &file).unwrap();
    assert_eq!(dcs.snapshot().await.unwrap().switchovers["main"].entry_point, "ep-3");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_embedded_dcs_does_not_start_on_a_state_file_it_cannot_write_or_read() {
    let dir = state_dir("unwritable");
    std::fs::write(dir.join("plain"), "").unwrap();
    let under_a_file = dir.join("plain").join("state.json");
    let err = MemoryDcs::with_state_file("c", &under_a_file).err().expect("a state file that cannot be written is refused at start");
    assert!(err.to_string().contains(&under_a_file.display().to_string()), "the error names the file: {err}");
    // A file cut short (a crash mid-write on an earlier version) is named as such.
    let empty = dir.join("state.json");
    std::fs::write(&empty, "").unwrap();
    let err = MemoryDcs::with_state_file("c", &empty).err().expect("an empty state file is refused");
    let msg = err.to_string();
    assert!(msg.contains(&empty.display().to_string()) && msg.contains("empty"), "{msg}");
    std::fs::write(&empty, r#"{"/c/switchovers/main":{"value":"{\"entry_point\":"#).unwrap();
    let msg = MemoryDcs::with_state_file("c", &empty).err().expect("a truncated state file is refused").to_string();
    assert!(msg.contains(&empty.display().to_string()) && msg.contains("cut short"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One node leading two services, each with its own provider and checker; returns once the node
/// leads and has settled for a few seconds.
async fn two_services() -> [(FakeProvider, ScriptedChecker); 2] {
    two_services_reading_first_in(Duration::ZERO).await
}

/// [`two_services`] where reading the first service's provider back takes `read_delay`, from the
/// node's start (so from the start of its first term).
async fn two_services_reading_first_in(read_delay: Duration) -> [(FakeProvider, ScriptedChecker); 2] {
    let svc = |name: &str| {
        format!(
            "  - name: {name}\n    domain: {name}.test\n    entry-points: [ {{ name: ep-1, ip: 10.0.0.1 }}, {{ name: ep-2, ip: 10.0.0.2 }} ]\n    switcher: {{ type: fake }}\n    health-checker: {{ type: scripted }}\n"
        )
    };
    let yaml = format!(
        "dhaf: {{ cluster-name: t, node-name: n1, tact-interval: 1, heartbeat-interval: 1, healthy-node-status-ttl: 60 }}\nservices:\n{}{}",
        svc("first"),
        svc("second")
    );
    let pair = || (FakeProvider::new(Some("ep-1")), ScriptedChecker::new());
    let services = [pair(), pair()];
    services[0].0.set_read_delay(read_delay);
    let providers = Providers {
        services: services
            .iter()
            .map(|(p, c)| ServiceProviders { checker: Arc::new(c.clone()), switcher: Arc::new(p.switcher("n1")) })
            .collect(),
        notifiers: vec![],
    };
    let node = Node::new(Config::parse(&yaml).unwrap(), Arc::new(MemoryDcs::new("t")), providers);
    let handle = node.handle();
    tokio::spawn(node.run(std::future::pending()));
    wait_for("a leader", Duration::from_secs(10), || async { handle.is_leader().then_some(()) }).await;
    sleep(Duration::from_secs(3)).await;
    services
}

#[tokio::test(start_paused = true)]
async fn a_slow_provider_does_not_delay_another_services_failover() {
    let [(slow, slow_checker), (fast, fast_checker)] = two_services().await;
    slow.set_delay(Duration::from_secs(20));
    slow_checker.down("ep-1", "connection refused");
    fast_checker.down("ep-1", "connection refused");
    let down = Instant::now();
    wait_for("the fast service's failover", Duration::from_secs(30), || async {
        (fast.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    assert!(down.elapsed() < Duration::from_secs(15), "the fast service waited for the slow provider: {:?}", down.elapsed());
    wait_for("the slow service's failover", Duration::from_secs(60), || async {
        (slow.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_does_not_slow_another_services_detection() {
    let [(_stuck, stuck_checker), (fast, fast_checker)] = two_services().await;
    // Every check of the other service now hangs until the 5 s timeout (a blackholed server).
    stuck_checker.set_delay(Duration::from_secs(60));
    sleep(Duration::from_secs(1)).await;
    fast_checker.down("ep-1", "connection refused");
    let down = Instant::now();
    wait_for("the fast service's failover", Duration::from_secs(60), || async {
        (fast.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    // fall 2 x tact 1 s, plus the leader's reaction: well under one hanging check's timeout.
    assert!(down.elapsed() < Duration::from_secs(5), "detection waited for another service's hanging checks: {:?}", down.elapsed());
}

/// A one-node cluster over `checker` and `switcher`, with a recording notifier.
fn lone_node(
    checker: Arc<dyn dhaf_core::provider::HealthChecker>,
    switcher: Arc<dyn dhaf_core::provider::Switcher>,
) -> (NodeHandle, RecordingNotifier) {
    let notifier = RecordingNotifier::new();
    let providers = Providers {
        services: vec![ServiceProviders { checker, switcher }],
        notifiers: vec![("rec".into(), Arc::new(notifier.clone()) as Arc<dyn Notifier>)],
    };
    let node = Node::new(config("n1", ""), Arc::new(MemoryDcs::new("test")), providers);
    let handle = node.handle();
    tokio::spawn(node.run(std::future::pending()));
    (handle, notifier)
}

/// A checker that panics on the entry points named in `panics`, a provider bug the node must survive.
#[derive(Clone, Default)]
struct PanickyChecker {
    panics: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl dhaf_core::provider::HealthChecker for PanickyChecker {
    async fn check(&self, ep: &dhaf_core::model::EntryPoint) -> dhaf_core::model::Health {
        if self.panics.lock().unwrap().contains(&ep.name) {
            panic!("checker bug");
        }
        dhaf_core::model::Health::Healthy
    }
}

#[tokio::test(start_paused = true)]
async fn a_checker_that_panics_counts_as_unhealthy_not_as_the_last_opinion() {
    let provider = FakeProvider::new(Some("ep-1"));
    let checker = PanickyChecker::default();
    let (handle, notifier) = lone_node(Arc::new(checker.clone()), Arc::new(provider.switcher("n1")));
    wait_for("a leader", Duration::from_secs(10), || async { handle.is_leader().then_some(()) }).await;
    sleep(Duration::from_secs(5)).await;
    checker.panics.lock().unwrap().push("ep-1".into());
    wait_for("the failover away from the entry point whose check panics", Duration::from_secs(30), || async {
        (provider.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    let events = notifier.events();
    assert!(
        events.iter().any(|e| matches!(e, Event::EntryPointWentDown { entry_point, reasons, .. }
            if entry_point == "ep-1" && reasons.iter().any(|r| r.contains("panicked")))),
        "{events:?}"
    );
}

/// A switcher whose first switches (`panics_left`) or reads (`current_panics_left`) panic, then work.
struct PanickySwitcher {
    inner: dhaf_core::testing::RecordingSwitcher,
    panics_left: std::sync::Mutex<u32>,
    current_panics_left: std::sync::Mutex<u32>,
}

#[async_trait::async_trait]
impl dhaf_core::provider::Switcher for PanickySwitcher {
    async fn current(&self) -> Result<Option<String>, dhaf_core::provider::ProviderError> {
        let panic = {
            let mut left = self.current_panics_left.lock().unwrap();
            let panic = *left > 0;
            *left = left.saturating_sub(1);
            panic
        };
        if panic {
            panic!("switcher bug while reading the live state");
        }
        self.inner.current().await
    }

    async fn switch(
        &self,
        to: &dhaf_core::model::EntryPoint,
        token: dhaf_core::model::FencingToken,
    ) -> Result<(), dhaf_core::provider::ProviderError> {
        let panic = {
            let mut left = self.panics_left.lock().unwrap();
            let panic = *left > 0;
            *left = left.saturating_sub(1);
            panic
        };
        if panic {
            panic!("switcher bug");
        }
        self.inner.switch(to, token).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_switcher_that_panics_is_reported_and_retried_not_dropped() {
    let provider = FakeProvider::new(Some("ep-1"));
    let checker = ScriptedChecker::new();
    let switcher = PanickySwitcher {
        inner: provider.switcher("n1"),
        panics_left: std::sync::Mutex::new(1),
        current_panics_left: std::sync::Mutex::new(0),
    };
    let (handle, notifier) = lone_node(Arc::new(checker.clone()), Arc::new(switcher));
    wait_for("a leader", Duration::from_secs(10), || async { handle.is_leader().then_some(()) }).await;
    sleep(Duration::from_secs(3)).await;
    checker.down("ep-1", "connection refused");
    // Well before the reconcile interval (20 s), which would otherwise be the only repair.
    wait_for("the failover after the switcher panicked", Duration::from_secs(12), || async {
        (provider.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    let events = notifier.events();
    assert!(
        events.iter().any(|e| matches!(e, Event::SwitchFailed { to, reason, .. } if to == "ep-2" && reason.contains("panicked"))),
        "{events:?}"
    );
    assert_eq!(handle.metrics().switch_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_node_task_that_dies_is_restarted_so_the_node_still_fails_over() {
    let provider = FakeProvider::new(Some("ep-1"));
    let checker = ScriptedChecker::new();
    // The leader reads the live state as it takes office: that read panics once.
    let switcher = PanickySwitcher {
        inner: provider.switcher("n1"),
        panics_left: std::sync::Mutex::new(0),
        current_panics_left: std::sync::Mutex::new(1),
    };
    let (handle, _notifier) = lone_node(Arc::new(checker.clone()), Arc::new(switcher));
    sleep(Duration::from_secs(5)).await;
    checker.down("ep-1", "connection refused");
    wait_for("the failover after a node task died", Duration::from_secs(30), || async {
        (provider.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    assert!(handle.is_leader());
}

#[test]
fn a_node_built_outside_the_runtime_still_delivers_notifications() {
    // An embedder may build the node first and start its runtime afterwards.
    let provider = FakeProvider::new(None);
    let notifier = RecordingNotifier::new();
    let providers = Providers {
        services: vec![ServiceProviders { checker: Arc::new(ScriptedChecker::new()), switcher: Arc::new(provider.switcher("n1")) }],
        notifiers: vec![("rec".into(), Arc::new(notifier.clone()) as Arc<dyn Notifier>)],
    };
    let node = Node::new(config("n1", ""), Arc::new(MemoryDcs::new("test")), providers);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async {
        tokio::spawn(node.run(std::future::pending()));
        wait_for("the initial switch", Duration::from_secs(30), || async { provider.current() }).await;
        wait_for("the switch to be told", Duration::from_secs(30), || async {
            notifier.events().iter().any(|e| matches!(e, Event::Switched { kind: SwitchKind::Initial, .. })).then_some(())
        })
        .await;
    });
}

#[tokio::test(start_paused = true)]
async fn a_switch_in_progress_does_not_hold_up_a_later_failover_of_another_service() {
    let [(slow, slow_checker), (fast, fast_checker)] = two_services().await;
    slow.set_delay(Duration::from_secs(30));
    slow_checker.down("ep-1", "connection refused");
    // The slow service's switch is under way (it takes 30 s) when the fast service's primary dies.
    sleep(Duration::from_secs(8)).await;
    fast_checker.down("ep-1", "connection refused");
    let down = Instant::now();
    wait_for("the fast service's failover", Duration::from_secs(40), || async {
        (fast.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    assert!(down.elapsed() < Duration::from_secs(10), "the fast service waited for the slow switch: {:?}", down.elapsed());
    assert_ne!(slow.current().as_deref(), Some("ep-2"), "the slow switch should still be under way");
    wait_for("the slow service's failover", Duration::from_secs(60), || async {
        (slow.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    assert_eq!(slow.calls().len(), 1, "the slow switch was started once: {:?}", slow.calls());
}

#[tokio::test(start_paused = true)]
async fn a_switch_slower_than_the_lease_succeeds_while_the_lease_is_renewed() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    // ttl 6 s: longer than what is left of the lease when the switch starts.
    c.provider.set_delay(Duration::from_secs(8));
    c.down_everywhere("ep-1");
    wait_for("the slow failover", Duration::from_secs(60), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) })
        .await;
    sleep(Duration::from_secs(20)).await;
    assert_eq!(c.provider.calls().len(), 1, "one switch, not repeated: {:?}", c.provider.calls());
    assert!(!c.events().iter().any(|e| matches!(e, Event::SwitchFailed { .. })), "{:?}", c.events());
}

#[tokio::test(start_paused = true)]
async fn a_switch_in_flight_is_abandoned_when_the_lease_cannot_be_renewed() {
    let c = Cluster::new(1, Some("ep-1"), "");
    c.wait_leader().await;
    c.provider.set_delay(Duration::from_secs(30));
    c.down_everywhere("ep-1");
    // The switch starts, then the node loses the DCS: it may not keep a provider call running
    // past its lease.
    wait_for("the switch to start", Duration::from_secs(30), || async {
        c.node("n1").handle.service_status("main").await.ok().and_then(|s| (s.current.as_deref() == Some("ep-2")).then_some(()))
    })
    .await;
    c.dcs.set_unavailable(true);
    sleep(Duration::from_secs(40)).await;
    assert!(c.provider.calls().is_empty(), "the provider call must be cut at the lease deadline: {:?}", c.provider.calls());
    assert!(c.events().iter().any(|e| matches!(e, Event::SwitchFailed { reason, .. } if reason.contains("lease"))), "{:?}", c.events());
}

/// Hangs on its first delivery, then records.
#[derive(Clone, Default)]
struct HangsOnce {
    calls: Arc<std::sync::Mutex<Vec<Event>>>,
}

#[dhaf_core::async_trait]
impl Notifier for HangsOnce {
    async fn notify(&self, n: &dhaf_core::model::Notification) -> Result<(), dhaf_core::provider::ProviderError> {
        let first = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(n.event.clone());
            calls.len() == 1
        };
        if first {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_notifier_delays_only_itself_and_not_forever() {
    let notifier = HangsOnce::default();
    let provider = FakeProvider::new(Some("ep-1"));
    let checker = ScriptedChecker::new();
    let providers = Providers {
        services: vec![ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(provider.switcher("n1")) }],
        notifiers: vec![("hangs".into(), Arc::new(notifier.clone()) as Arc<dyn Notifier>)],
    };
    let node = Node::new(config("n1", ""), Arc::new(MemoryDcs::new("test")), providers);
    tokio::spawn(node.run(std::future::pending()));
    checker.down("ep-1", "connection refused");
    wait_for("the failover", Duration::from_secs(30), || async { (provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    // The first delivery hangs; the queue moves on after the delivery timeout and retries it.
    wait_for("the failover to be told", Duration::from_secs(300), || async {
        notifier.calls.lock().unwrap().iter().any(|e| matches!(e, Event::Switched { kind: SwitchKind::Failover, .. })).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Never mislead, never stall: a DCS whose answers can be delayed, lost or refused per call.

/// Faults of one [`FaultyDcs`], switched on and off by the test.
#[derive(Default)]
struct DcsFaults {
    /// Keep-alives fail (the DCS unreachable for renewals) while the lease itself lives on.
    keep_alive_fails: bool,
    /// The next `record_switch` is written, but its answer is lost (a timeout).
    lose_next_record_answer: bool,
    /// `record_switch` answers only after this long (written at the end).
    record_delay: Duration,
    /// Called when `record_switch` begins (e.g. to break something meanwhile).
    on_record: Option<Box<dyn FnMut() + Send>>,
    /// `record_switch` answers only once this node's lease deadline has passed (at most 1.9 s).
    hold_record_past_deadline: Option<NodeHandle>,
    /// How many records were answered after the deadline that way.
    answered_past_deadline: usize,
    campaigns: usize,
}

/// One node's handle to a [`MemoryDcs`] with per-call faults.
#[derive(Clone)]
struct FaultyDcs {
    inner: MemoryDcs,
    faults: Faults,
}

impl FaultyDcs {
    fn new(inner: MemoryDcs) -> Self {
        FaultyDcs { inner, faults: Faults::default() }
    }
    fn set(&self, f: impl FnOnce(&mut DcsFaults)) {
        f(&mut self.faults.0.lock().unwrap());
    }
    fn campaigns(&self) -> usize {
        self.faults.0.lock().unwrap().campaigns
    }
    /// The DCS for the node: the in-memory one with the faults around its calls.
    fn dcs(&self) -> Arc<dyn Dcs> {
        Arc::new(InterceptingDcs::new(Arc::new(self.inner.clone()), self.faults.clone()))
    }
}

#[derive(Clone, Default)]
struct Faults(Arc<std::sync::Mutex<DcsFaults>>);

#[async_trait::async_trait]
impl Interceptor for Faults {
    async fn before(&self, method: &'static str) -> Result<(), DcsError> {
        match method {
            "keep_alive" if self.0.lock().unwrap().keep_alive_fails => Err(DcsError::Unavailable("keep-alive refused".into())),
            "campaign" => {
                self.0.lock().unwrap().campaigns += 1;
                Ok(())
            }
            "record_switch" => {
                let (delay, hold) = {
                    let mut f = self.0.lock().unwrap();
                    if let Some(hook) = f.on_record.as_mut() {
                        hook();
                    }
                    (f.record_delay, f.hold_record_past_deadline.clone())
                };
                sleep(delay).await;
                if let Some(node) = hold {
                    let start = Instant::now();
                    while node.holds_lease() && start.elapsed() < Duration::from_millis(1900) {
                        sleep(Duration::from_millis(10)).await;
                    }
                    if !node.holds_lease() {
                        self.0.lock().unwrap().answered_past_deadline += 1;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    async fn after(&self, method: &'static str) -> Result<(), DcsError> {
        if method == "record_switch" && std::mem::take(&mut self.0.lock().unwrap().lose_next_record_answer) {
            return Err(DcsError::Unavailable("no answer within 2 s".into()));
        }
        Ok(())
    }
}

/// A lone node `n1` over `dcs`, with the fake provider pointing at `current`; waits until it leads.
async fn lone_over(dcs: FaultyDcs, current: Option<&str>, extra: &str) -> (FakeProvider, ScriptedChecker, NodeHandle, RecordingNotifier) {
    lone_over_with(dcs, current, config("n1", extra)).await
}

/// [`lone_over`] with the node's whole config.
async fn lone_over_with(
    dcs: FaultyDcs,
    current: Option<&str>,
    config: Config,
) -> (FakeProvider, ScriptedChecker, NodeHandle, RecordingNotifier) {
    let (provider, checker, notifier) = (FakeProvider::new(current), ScriptedChecker::new(), RecordingNotifier::new());
    let providers = Providers {
        services: vec![ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(provider.switcher("n1")) }],
        notifiers: vec![("rec".into(), Arc::new(notifier.clone()) as Arc<dyn Notifier>)],
    };
    let node = Node::new(config, dcs.dcs(), providers);
    let handle = node.handle();
    tokio::spawn(node.run(std::future::pending()));
    wait_for("a leader", Duration::from_secs(30), || async { handle.is_leader().then_some(()) }).await;
    sleep(Duration::from_secs(3)).await;
    (provider, checker, handle, notifier)
}

fn switched(events: &[Event]) -> Vec<(String, SwitchKind)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Switched { to, kind, .. } => Some((to.clone(), *kind)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_to_the_switch_record_is_resolved_at_once_and_told_as_a_failover() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (provider, checker, _handle, notifier) = lone_over(dcs.clone(), Some("ep-1"), "").await;
    dcs.set(|f| f.lose_next_record_answer = true);
    checker.down("ep-1", "connection refused");
    let down = Instant::now();
    wait_for("the failover", Duration::from_secs(60), || async { (provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    // fall 2 x tact 1 s and a DCS round trip, not the next reconcile (20 s here).
    assert!(down.elapsed() < Duration::from_secs(6), "the failover waited {:?}", down.elapsed());
    sleep(Duration::from_secs(30)).await;
    assert_eq!(switched(&notifier.events()), [("ep-2".to_string(), SwitchKind::Failover)], "{:?}", notifier.events());
    assert_eq!(provider.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_record_answered_after_the_lease_deadline_starts_no_provider_call() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (provider, checker, handle, _notifier) = lone_over(dcs.clone(), Some("ep-1"), "    fall: 1\n").await;
    // Renewals fail from now on; the primary goes down so that the switch is recorded shortly
    // before the lease deadline (ttl 6 s less the margin), and the record's answer is held
    // until the deadline has passed (within the DCS call's 2 s timeout).
    dcs.set(|f| {
        f.keep_alive_fails = true;
        f.hold_record_past_deadline = Some(handle.clone());
    });
    sleep(Duration::from_millis(2900)).await;
    checker.down("ep-1", "connection refused");
    sleep(Duration::from_secs(20)).await;
    assert_eq!(dcs.faults.0.lock().unwrap().answered_past_deadline, 1, "the scenario did not arise");
    assert!(provider.calls().is_empty(), "a provider call started after the lease deadline: {:?}", provider.calls());
}

/// A leader whose lease deadline passes while it records a switch keeps that switch's progress
/// in the DCS, for status, as failing. Its next term (the same node's here, once its lease is
/// back) finds the provider already at the switch's target (the call landed after all; an edit
/// here) and has nothing to switch: status must then stop showing a switch failing that nobody
/// makes, whichever term wrote it (simulation seed 882).
#[tokio::test(start_paused = true)]
async fn a_failing_switch_left_by_an_ended_term_is_not_shown_once_the_provider_is_found_there() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (provider, checker, handle, _notifier) = lone_over(dcs.clone(), Some("ep-1"), "    fall: 1\n").await;
    dcs.set(|f| {
        f.keep_alive_fails = true;
        f.hold_record_past_deadline = Some(handle.clone());
    });
    sleep(Duration::from_millis(2900)).await;
    checker.down("ep-1", "connection refused");
    let failing =
        wait_for("the failing switch shown", Duration::from_secs(20), || async { handle.service_status("main").await.ok()?.switching })
            .await;
    assert_eq!(failing.to, "ep-2", "{failing:?}");
    assert!(failing.last_error.contains("lease deadline"), "{failing:?}");
    provider.edit("ep-2");
    dcs.set(|f| {
        f.keep_alive_fails = false;
        f.hold_record_past_deadline = None;
    });
    wait_for("a leader again", Duration::from_secs(60), || async { handle.is_leader().then_some(()) }).await;
    sleep(Duration::from_secs(10)).await;
    let status = handle.service_status("main").await.unwrap();
    assert_eq!((status.current.as_deref(), status.live.as_deref()), (Some("ep-2"), Some("ep-2")), "{status:?}");
    assert!(status.switching.is_none(), "a switch shown failing that nobody makes: {status:?}");
    assert!(provider.calls().is_empty(), "nothing to switch: {:?}", provider.calls());
}

/// A leader that cannot renew its lease in time steps down on its own, and wins its term back
/// once renewals pass again, the lease having lived on. A switch it made in the first stretch
/// of the term, carried out but its answer lost, and not yet found done by a read-back, is
/// told when it leads again and finds the provider there; the move back to ep-1 is told too,
/// from ep-2. Before, the term won back took the switch for one it knew of and told neither:
/// people heard the service fail over nowhere and never come back (simulation seeds 2474, 4316).
#[tokio::test(start_paused = true)]
async fn a_switch_whose_answer_was_lost_before_the_leader_won_its_term_back_is_told_and_so_is_the_move_back() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let mut config = config("n1", "    fall: 1\n    failback-delay: 0\n");
    // Renewals twice a second, so that one passes between the local step-down (the lease
    // deadline) and the lease's expiry, 1.2 s later.
    config.dhaf.heartbeat_interval = Duration::from_millis(500);
    let (provider, checker, handle, notifier) = lone_over_with(dcs.clone(), None, config).await;
    wait_for("the first switch", Duration::from_secs(10), || async { (provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
    // Every call's answer is lost (retries included) and a read-back takes longer than what is
    // left of the term: the leader knows only that its switch failed.
    provider.lose_next_answers(100);
    provider.set_read_delay(Duration::from_secs(8));
    dcs.set(|f| f.keep_alive_fails = true);
    checker.down("ep-1", "connection refused");
    wait_for("the failover", Duration::from_secs(10), || async { (provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    wait_for("the step-down", Duration::from_secs(10), || async { (!handle.is_leader()).then_some(()) }).await;
    dcs.set(|f| f.keep_alive_fails = false);
    provider.set_read_delay(Duration::ZERO);
    wait_for("the term won back", Duration::from_secs(10), || async { handle.is_leader().then_some(()) }).await;
    let elected = notifier.events().iter().filter(|e| matches!(e, Event::LeaderElected { .. })).count();
    assert_eq!(elected, 1, "the same term, won back: {:?}", notifier.events());
    provider.lose_next_answers(0);
    sleep(Duration::from_secs(5)).await;
    let first = (None, "ep-1".to_string());
    assert_eq!(told_moves_of(&notifier), [first.clone(), moved("ep-1", "ep-2")], "the failover is told: {:?}", notifier.events());
    checker.up("ep-1");
    wait_for("the move back", Duration::from_secs(30), || async { (provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(
        told_moves_of(&notifier),
        [first, moved("ep-1", "ep-2"), moved("ep-2", "ep-1")],
        "the move back to ep-1 is told: {:?}",
        notifier.events()
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_past_its_deadline_does_not_spin_the_election() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (_provider, _checker, handle, notifier) = lone_over(dcs.clone(), Some("ep-1"), "").await;
    let before = dcs.campaigns();
    // Renewals fail, but the lease lives on until its TTL: between the local deadline and the
    // expiry the node may not lead, and must not campaign in a loop meanwhile.
    dcs.set(|f| f.keep_alive_fails = true);
    sleep(Duration::from_secs(10)).await;
    assert!(!handle.is_leader());
    let campaigns = dcs.campaigns() - before;
    assert!(campaigns <= 12, "{campaigns} campaigns in 10 s");
    let elected = notifier.events().iter().filter(|e| matches!(e, Event::LeaderElected { .. })).count();
    assert_eq!(elected, 1, "{:?}", notifier.events());
}

#[tokio::test(start_paused = true)]
async fn a_target_that_goes_down_while_its_switch_is_recorded_is_not_switched_to() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (provider, checker, _handle, _notifier) = lone_over(dcs.clone(), Some("ep-1"), "    fall: 1\n").await;
    let c2 = checker.clone();
    let mut first = true;
    dcs.set(move |f| {
        f.record_delay = Duration::from_millis(1500);
        f.on_record = Some(Box::new(move || {
            if std::mem::take(&mut first) {
                c2.down("ep-2", "connection refused");
            }
        }))
    });
    checker.down("ep-1", "connection refused");
    wait_for("the failover to ep-3", Duration::from_secs(60), || async { (provider.current().as_deref() == Some("ep-3")).then_some(()) })
        .await;
    let to: Vec<String> = provider.calls().into_iter().map(|c| c.to).collect();
    assert_eq!(to, ["ep-3"], "switched to an entry point that had gone down");
}

#[tokio::test(start_paused = true)]
async fn a_slow_read_back_delays_no_failover_even_at_the_start_of_a_term() {
    // The first service's provider answers reads only after an hour, from the term's start on.
    let [_slow, (fast, fast_checker)] = two_services_reading_first_in(Duration::from_secs(3600)).await;
    fast_checker.down("ep-1", "connection refused");
    let down = Instant::now();
    wait_for("the fast service's failover", Duration::from_secs(60), || async {
        (fast.current().as_deref() == Some("ep-2")).then_some(())
    })
    .await;
    assert!(down.elapsed() < Duration::from_secs(5), "a read-back of another service delayed the failover: {:?}", down.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_service_that_went_down_with_the_old_leader_is_told_by_the_new_one() {
    let mut c = Cluster::new(3, Some("ep-1"), "");
    let first = c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    // The leader dies, and meanwhile every entry point goes down.
    c.crash(&first);
    for ep in ["ep-1", "ep-2", "ep-3"] {
        c.down_everywhere(ep);
    }
    wait_for("a new leader", Duration::from_secs(30), || async { c.leader().await.filter(|l| *l != first) }).await;
    sleep(Duration::from_secs(10)).await;
    let panics = c.events().iter().filter(|e| matches!(e, Event::ServiceWentDown { .. })).count();
    assert_eq!(panics, 1, "{:?}", c.events());
    let downs = c.events().iter().filter(|e| matches!(e, Event::EntryPointWentDown { .. })).count();
    assert_eq!(downs, 3, "{:?}", c.events());
}

#[tokio::test(start_paused = true)]
async fn one_failed_first_check_after_a_restart_does_not_drop_a_pinned_switchover() {
    let dcs = MemoryDcs::new("test");
    dcs.request_switchover("main", "ep-2").await.unwrap();
    let (provider, checker, handle) = {
        let (provider, checker) = (FakeProvider::new(Some("ep-2")), ScriptedChecker::new());
        // The node's very first check of ep-2 fails (a blip), every later one passes.
        checker.down("ep-2", "connection reset");
        let providers = Providers {
            services: vec![ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(provider.switcher("n1")) }],
            notifiers: vec![],
        };
        let node = Node::new(config("n1", ""), Arc::new(dcs.client("n1")), providers);
        let handle = node.handle();
        tokio::spawn(node.run(std::future::pending()));
        (provider, checker, handle)
    };
    sleep(Duration::from_millis(500)).await;
    checker.up("ep-2");
    sleep(Duration::from_secs(10)).await;
    assert!(handle.is_leader());
    let status = handle.service_status("main").await.unwrap();
    assert_eq!(status.switchover.as_deref(), Some("ep-2"), "the pinned switchover was purged: {status:?}");
    assert_eq!(provider.current().as_deref(), Some("ep-2"));
}

#[tokio::test(start_paused = true)]
async fn a_switch_that_keeps_failing_is_shown_and_told_as_failing_never_as_done() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (provider, checker, handle, notifier) = lone_over(dcs.clone(), Some("ep-1"), "").await;
    provider.fail_next(1000);
    checker.down("ep-1", "connection refused");
    sleep(Duration::from_secs(200)).await;
    let status = handle.service_status("main").await.unwrap();
    assert_eq!(status.current.as_deref(), Some("ep-2"), "the desired entry point");
    assert_eq!(status.live.as_deref(), Some("ep-1"), "the provider still points at ep-1");
    let switching = status.switching.expect("a failing switch is shown");
    assert_eq!((switching.to.as_str(), switching.kind), ("ep-2", SwitchKind::Failover));
    assert!(switching.attempts >= STILL_FAILING_AFTER, "{switching:?}");
    assert!(switching.last_error.contains("502"), "{switching:?}");
    let events = notifier.events();
    assert!(switched(&events).is_empty(), "a failing switch was told as done: {events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::SwitchFailed { .. })).count(), 1, "{events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::SwitchStillFailing { .. })).count(), 1, "{events:?}");
    // It recovers: told once, as the failover it was, and status is clean again.
    provider.fail_next(0);
    wait_for("the failover", Duration::from_secs(60), || async { (provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    sleep(Duration::from_secs(2)).await;
    let events = notifier.events();
    assert_eq!(switched(&events), [("ep-2".to_string(), SwitchKind::Failover)]);
    assert!(events.iter().any(|e| matches!(e, Event::SwitchRecovered { attempts, .. } if *attempts >= STILL_FAILING_AFTER)), "{events:?}");
    let status = handle.service_status("main").await.unwrap();
    assert_eq!((status.live.as_deref(), status.switching), (Some("ep-2"), None));
    let history = handle.history("main").await.unwrap();
    assert_eq!(history.last().map(|r| r.kind), Some(SwitchKind::Failover));
}

#[tokio::test(start_paused = true)]
async fn a_switcher_that_asks_to_retry_after_a_while_is_not_called_again_before() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (provider, checker, handle, notifier) = lone_over(dcs.clone(), Some("ep-1"), "").await;
    let wait = Duration::from_secs(40);
    provider.fail_next_with(1, ProviderError::Transient { message: "HTTP 429: rate limited".into(), retry_after: Some(wait) });
    checker.down("ep-1", "connection refused");
    let failing =
        wait_for("the failing switch shown", Duration::from_secs(20), || async { handle.service_status("main").await.ok()?.switching })
            .await;
    let asked = failing.next_attempt.and_then(|next| next.duration_since(failing.failing_since).ok());
    assert_eq!(asked.map(|d| d.as_secs()), Some(wait.as_secs()), "status says the next attempt waits as asked: {failing:?}");
    wait_for("the failover", Duration::from_secs(120), || async { (provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    let attempts = provider.attempts();
    assert_eq!(attempts.len(), 2, "one refused attempt, then the one that went through: {attempts:?}");
    assert!(attempts[1] - attempts[0] >= wait, "retried {:?} after a 429 asking for {wait:?}", attempts[1] - attempts[0]);
    assert!(attempts[1] - attempts[0] < wait + Duration::from_secs(10), "not retried soon after the wait: {:?}", attempts[1] - attempts[0]);
    let events = notifier.events();
    assert_eq!(
        events.iter().filter(|e| matches!(e, Event::SwitchFailed { reason, .. } if reason.contains("429"))).count(),
        1,
        "{events:?}"
    );
    assert_eq!(switched(&events), [("ep-2".to_string(), SwitchKind::Failover)]);
    assert_eq!(handle.service_status("main").await.unwrap().switching, None);
}

#[tokio::test(start_paused = true)]
async fn a_switch_refused_for_good_is_not_retried_in_a_loop_but_shown_failing_and_told_once() {
    let dcs = FaultyDcs::new(MemoryDcs::new("test"));
    let (provider, checker, handle, notifier) = lone_over(dcs.clone(), Some("ep-1"), "").await;
    provider.fail_next_with(1000, ProviderError::permanent("the api-token was refused (HTTP 403)"));
    checker.down("ep-1", "connection refused");
    sleep(SWITCH_RETRY_PERMANENT - Duration::from_secs(30)).await;
    assert_eq!(provider.attempts().len(), 1, "a permanent refusal was retried before {SWITCH_RETRY_PERMANENT:?}");
    let status = handle.service_status("main").await.unwrap();
    let switching = status.switching.expect("a failing switch is shown");
    assert!(switching.last_error.contains("403"), "{switching:?}");
    let next = switching.next_attempt.expect("status says when the next attempt comes");
    assert_eq!(
        next.duration_since(switching.failing_since).ok().map(|d| d.as_secs()),
        Some(SWITCH_RETRY_PERMANENT.as_secs()),
        "{switching:?}"
    );
    assert_eq!(status.live.as_deref(), Some("ep-1"));
    let events = notifier.events();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::SwitchFailed { .. })).count(), 1, "{events:?}");
    // Fixed by someone meanwhile: the next attempt, after the long wait, goes through.
    provider.fail_next(0);
    wait_for("the failover", Duration::from_secs(120), || async { (provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    assert_eq!(provider.attempts().len(), 2);
    let events = notifier.events();
    assert_eq!(switched(&events), [("ep-2".to_string(), SwitchKind::Failover)]);
    assert!(events.iter().any(|e| matches!(e, Event::SwitchRecovered { attempts: 1, .. })), "{events:?}");
}

/// A switcher whose `init` never answers (a provider API that hangs).
struct HangingInit;

#[async_trait::async_trait]
impl dhaf_core::provider::Switcher for HangingInit {
    async fn init(&self) -> Result<(), dhaf_core::provider::ProviderError> {
        std::future::pending().await
    }
    async fn current(&self) -> Result<Option<String>, dhaf_core::provider::ProviderError> {
        Ok(None)
    }
    async fn switch(&self, _: &dhaf_core::model::EntryPoint, _: FencingToken) -> Result<(), dhaf_core::provider::ProviderError> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_provider_init_that_hangs_fails_the_start_naming_it() {
    let providers = Providers {
        services: vec![ServiceProviders { checker: Arc::new(ScriptedChecker::new()), switcher: Arc::new(HangingInit) }],
        notifiers: vec![],
    };
    let node = Node::new(config("n1", ""), Arc::new(MemoryDcs::new("test")), providers);
    let err =
        tokio::time::timeout(Duration::from_secs(600), node.run(std::future::pending())).await.expect("the start is bounded").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("service main: switcher") && text.contains("no answer within"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_node_that_cannot_check_abstains_instead_of_voting_the_entry_points_down() {
    let c = Cluster::new(3, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(3)).await;
    // n1 runs out of file descriptors: none of its checks can run.
    for ep in ["ep-1", "ep-2", "ep-3"] {
        c.node("n1").checker.set(ep, dhaf_core::model::Health::abstain("cannot open a socket on this node: too many open files"));
    }
    sleep(Duration::from_secs(10)).await;
    let status = c.node("n2").handle.service_status("main").await.unwrap();
    for ep in &status.entry_points {
        assert!(ep.votes.iter().all(|v| v.node != "n1"), "n1's stale or local-trouble vote still counts: {ep:?}");
        assert_eq!(ep.verdict, dhaf_core::engine::Verdict::Healthy, "{ep:?}");
    }
    // Meanwhile the primary really goes down: the two nodes that can see decide.
    for n in ["n2", "n3"] {
        c.node(n).checker.down("ep-1", "connection refused");
    }
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    assert!(
        !c.events().iter().any(|e| matches!(e, Event::EntryPointWentDown { entry_point, .. } if entry_point != "ep-1")),
        "{:?}",
        c.events()
    );
}

// ---------------------------------------------------------------------------------------------
// Reload in place

/// `config(node, "")` with a second service `api` switched by `api`'s provider.
fn with_api(node: &str, api_ip: &str) -> Config {
    let mut c = config(node, "");
    let extra = Config::parse(&format!(
        "dhaf: {{ cluster-name: test, node-name: {node} }}
services:
  - name: api
    domain: api.test
    entry-points: [{{ name: a-1, ip: {api_ip} }}, {{ name: a-2, ip: 10.0.1.2 }}]
    switcher: {{ type: fake }}
    health-checker: {{ type: scripted }}
"
    ))
    .unwrap();
    c.services.extend(extra.services);
    c
}

/// Providers for `config`'s services: `main` through the cluster's provider, `api` through `api`.
fn providers_for(c: &Cluster, node: &str, config: &Config, api: &FakeProvider) -> Providers {
    let checker = c.node(node).checker.clone();
    Providers {
        services: config
            .services
            .iter()
            .map(|s| {
                let provider = if s.name == "api" { api } else { &c.provider };
                ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(provider.switcher(node)) }
            })
            .collect(),
        notifiers: vec![("rec".into(), Arc::new(c.notifier.clone()) as Arc<dyn Notifier>)],
    }
}

async fn term(c: &Cluster) -> FencingToken {
    let snap = dhaf_core::dcs::Dcs::snapshot(&c.dcs).await.unwrap();
    snap.leader.unwrap().token
}

#[tokio::test(start_paused = true)]
async fn a_reload_adds_changes_and_removes_services_without_losing_the_lead_or_telling_anything_new() {
    let c = Cluster::new(1, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    sleep(Duration::from_secs(5)).await;
    let first_term = term(&c).await;
    let told_before = c.events().len();
    let handle = c.node(&leader).handle.clone();

    // Add a service: its provider starts, it is placed, and nothing else moves.
    let api = FakeProvider::new(None);
    let added = with_api(&leader, "10.0.1.1");
    let report = handle.reload(added.clone(), providers_for(&c, &leader, &added, &api)).await.expect("a valid reload");
    assert_eq!(report.added, ["api"]);
    assert!(report.changed.is_empty() && report.removed.is_empty(), "{report:?}");
    wait_for("the new service placed", Duration::from_secs(30), || async { api.current() }).await;
    assert_eq!(api.current().as_deref(), Some("a-1"));
    assert!(c.switches().is_empty(), "the unchanged service is not switched: {:?}", c.switches());
    assert_eq!(term(&c).await, first_term, "the leader keeps its term");
    assert_eq!(handle.config().services.len(), 2);

    // Change the new service's address: a changed service, still no switch of `main`.
    let changed = with_api(&leader, "10.0.1.9");
    let report = handle.reload(changed.clone(), providers_for(&c, &leader, &changed, &api)).await.unwrap();
    assert_eq!(report.changed, ["api"]);
    let status = handle.service_status("api").await.unwrap();
    assert_eq!(status.entry_points[0].ip.to_string(), "10.0.1.9");

    // Remove it again: its opinions leave the DCS with it.
    let removed = config(&leader, "");
    let report = handle.reload(removed.clone(), providers_for(&c, &leader, &removed, &api)).await.unwrap();
    assert_eq!(report.removed, ["api"]);
    sleep(Duration::from_secs(5)).await;
    let snap = dhaf_core::dcs::Dcs::snapshot(&c.dcs).await.unwrap();
    assert!(!snap.opinions[&leader].contains_key("api"), "{:?}", snap.opinions);
    assert!(handle.service_status("api").await.is_err());

    assert_eq!(term(&c).await, first_term, "the leader kept its term through three reloads");
    let told: Vec<Event> = c.events().into_iter().skip(told_before).collect();
    assert!(
        told.iter().all(|e| !matches!(
            e,
            Event::LeaderElected { .. }
                | Event::NodeCameUp { .. }
                | Event::NodeWentDown { .. }
                | Event::DefinitionsDisagree { .. }
                | Event::DefinitionsAgree { .. }
        )),
        "no spurious event: {told:?}"
    );
    assert!(c.switches().is_empty(), "{:?}", c.switches());

    // Right after a reload, `main` fails over as fast as ever: a reload does not pause the leader
    // (nor checks) for a lease's time.
    let again = with_api(&leader, "10.0.1.1");
    let start = Instant::now();
    c.down_everywhere("ep-1");
    handle.reload(again.clone(), providers_for(&c, &leader, &again, &api)).await.unwrap();
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    assert!(start.elapsed() < Duration::from_secs(4), "failover took {:?} after a reload (tact 1 s, fall 2)", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_changes_what_needs_a_restart_is_refused_by_name_and_the_node_goes_on() {
    let c = Cluster::new(1, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    let handle = c.node(&leader).handle.clone();
    let api = FakeProvider::new(None);
    let mut renamed = with_api("someone-else", "10.0.1.1");
    renamed.dhaf.cluster_name = "other".into();
    let err = handle.reload(renamed.clone(), providers_for(&c, &leader, &renamed, &api)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("dhaf.node-name") && text.contains("dhaf.cluster-name") && text.contains("restart"), "{text}");
    assert_eq!(handle.config().services.len(), 1, "the old config goes on");
    assert!(api.calls().is_empty());
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
}

#[tokio::test(start_paused = true)]
async fn a_rolling_reorder_passes_through_disagreement_without_a_wrong_switch() {
    let c = Cluster::new(3, Some("ep-1"), "");
    c.wait_leader().await;
    sleep(Duration::from_secs(5)).await;
    let api = FakeProvider::new(None);
    // Every node in turn gets the entry points in the opposite order; ep-1 stays healthy, so the
    // end state (by the new order ep-3 first) is a failback to ep-3 — and only that, once.
    for node in ["n1", "n2", "n3"] {
        let cfg = reordered(node);
        let p = providers_for(&c, node, &cfg, &api);
        c.node(node).handle.reload(cfg, p).await.expect("a valid reload");
        sleep(Duration::from_secs(10)).await;
        if node == "n1" {
            assert!(c.switches().is_empty(), "one node of three reordered changes nothing: {:?}", c.switches());
        }
    }
    wait_for("the new order in force", Duration::from_secs(30), || async {
        (c.provider.current().as_deref() == Some("ep-3")).then_some(())
    })
    .await;
    sleep(Duration::from_secs(10)).await;
    let targets: Vec<String> = c.switches().into_iter().map(|(_, to)| to).collect();
    assert_eq!(targets, ["ep-3"], "exactly one switch, to the agreed first choice");
    let status = c.node("n1").handle.service_status("main").await.unwrap();
    assert!(status.disagreement.is_empty() && !status.held, "{status:?}");
}

/// Everything `events` holds now, without waiting.
fn drain(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>) -> Vec<NodeEvent> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_the_failover_and_the_leadership_change_hands() {
    let mut c = Cluster::new(3, Some("ep-1"), "");
    let mut subscriptions: Vec<_> = c.nodes.iter().map(|n| (n.name.clone(), n.handle.subscribe())).collect();
    let first = c.wait_leader().await;
    let mut leadership = c.node(&first).handle.leadership();
    let term = tokio::time::timeout(Duration::from_secs(30), leadership.wait_for(Option::is_some))
        .await
        .expect("the leadership watch")
        .unwrap()
        .unwrap();
    sleep(Duration::from_secs(5)).await;
    c.down_everywhere("ep-1");
    wait_for("the failover", Duration::from_secs(30), || async { (c.provider.current().as_deref() == Some("ep-2")).then_some(()) }).await;
    c.stop(&first).await;
    assert_eq!(*leadership.borrow(), None, "a stopped node leads no more");
    let second = c.wait_leader().await;
    wait_for("the new leader's watch", Duration::from_secs(30), || async { *c.node(&second).handle.leadership().borrow() }).await;

    for (name, events) in &mut subscriptions {
        let events = drain(events);
        let gained: Vec<_> = events.iter().filter(|e| matches!(e, NodeEvent::LeadershipGained { .. })).collect();
        let failovers =
            events.iter().filter(|e| matches!(e, NodeEvent::Event(Event::Switched { to, kind: SwitchKind::Failover, .. }) if to == "ep-2"));
        if *name == first {
            assert_eq!(gained, [&NodeEvent::LeadershipGained { term }], "{events:?}");
            assert_eq!(failovers.count(), 1, "the leader tells its subscribers the failover once: {events:?}");
            assert_eq!(events.last(), Some(&NodeEvent::LeadershipLost { term }), "{events:?}");
        } else if *name == second {
            assert_eq!(gained.len(), 1, "{events:?}");
            assert_eq!(failovers.count(), 0, "{events:?}");
        } else {
            assert!(gained.is_empty() && events.iter().all(|e| !matches!(e, NodeEvent::Event(Event::Switched { .. }))), "{events:?}");
        }
    }
}

/// A config built in code, on three entry points of the test's providers.
fn code_built(node: &str) -> Config {
    let mut config = Config::new("test", node).with_service(
        ServiceConfig::new("main", "example.test", ProviderConfig::new("scripted"), ProviderConfig::new("fake"))
            .with_entry_point("ep-1", "10.0.0.1".parse().unwrap())
            .with_entry_point("ep-2", "10.0.0.2".parse().unwrap()),
    );
    config.dhaf.tact_interval = Duration::from_secs(1);
    config.dhaf.heartbeat_interval = Duration::from_secs(1);
    config.dhaf.healthy_node_status_ttl = Duration::from_secs(6);
    config
}

#[tokio::test(start_paused = true)]
async fn a_node_refuses_to_start_on_an_invalid_config_built_in_code() {
    let provider = FakeProvider::new(Some("ep-1"));
    let mut registry = Registry::new();
    registry.checker("scripted", |s, _| s.fields().into_result(Arc::new(ScriptedChecker::new()) as Arc<dyn HealthChecker>));
    let fake = provider.clone();
    registry.switcher("fake", move |s, ctx| s.fields().into_result(Arc::new(fake.switcher(&ctx.node)) as Arc<dyn Switcher>));

    let mut config = code_built("n1");
    config.dhaf.check_concurrency = 0;
    let expect = "dhaf.check-concurrency: must be a whole number from 1 to 4096";
    let err = Node::builder(config.clone()).registry(&registry).build().err().expect("refused at build");
    assert!(matches!(&err, NodeError::Config(e) if e.problems.len() == 1 && e.problems[0].to_string() == expect), "{err}");

    // Built without the builder, it is refused at start, before it registers or checks anything.
    let dcs = MemoryDcs::new("test");
    let providers = registry.build(&config, Arc::new(dcs.client("n1"))).unwrap();
    let node = Node::new(config, Arc::new(dcs.client("n1")), providers);
    let err = tokio::time::timeout(Duration::from_secs(60), node.run(std::future::pending())).await.expect("no hang").unwrap_err();
    assert!(err.to_string().contains(expect), "{err}");
    assert!(Dcs::snapshot(&dcs).await.unwrap().alive.is_empty(), "a refused node never registers");

    // A valid one builds, registers and leads.
    let node = Node::builder(code_built("n1")).dcs(Arc::new(dcs.client("n1"))).registry(&registry).build().unwrap();
    let handle = node.handle();
    let task = tokio::spawn(node.run(std::future::pending()));
    wait_for("the lead", Duration::from_secs(30), || async { handle.is_leader().then_some(()) }).await;
    task.abort();

    // The registry and the config cannot disagree: a type nobody registered is refused at build.
    let mut config = code_built("n2");
    config.services[0].switcher = ProviderConfig::new("nonesuch");
    let err = Node::builder(config).registry(&registry).build().err().unwrap();
    assert!(err.to_string().contains("unknown provider type 'nonesuch'"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_node_built_without_a_dcs_keeps_its_state_in_the_state_file() {
    let provider = FakeProvider::new(None);
    let mut registry = Registry::new();
    registry.checker("scripted", |s, _| s.fields().into_result(ScriptedChecker::new()));
    let fake = provider.clone();
    registry.switcher("fake", move |s, ctx| s.fields().into_result(fake.switcher(&ctx.node)));
    let dir = std::env::temp_dir().join(format!("dhaf-t10-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    let _ = std::fs::remove_file(&file);

    let mut config = code_built("n1");
    config.dhaf.state_file = Some(file.clone());
    let node = Node::builder(config).registry(&registry).build().unwrap();
    let handle = node.handle();
    let task = tokio::spawn(node.run(std::future::pending()));
    wait_for("the lead", Duration::from_secs(30), || async { handle.is_leader().then_some(()) }).await;
    handle.set_maintenance("main", "ep-2", true, false).await.unwrap();
    task.abort();
    let kept = std::fs::read_to_string(&file).expect("the state file is written");
    assert!(kept.contains("ep-2"), "{kept}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_node_builds_the_dcs_its_config_names_from_the_registry() {
    let provider = FakeProvider::new(None);
    let store = MemoryDcs::new("test");
    let mut registry = Registry::new();
    registry.checker("scripted", |s, _| s.fields().into_result(ScriptedChecker::new()));
    let fake = provider.clone();
    registry.switcher("fake", move |s, ctx| s.fields().into_result(fake.switcher(&ctx.node)));
    let shared = store.clone();
    registry.dcs_type("shared", move |s, ctx| s.fields().into_result(shared.client(&ctx.node)));

    let mut config = code_built("n1");
    let mut section = ProviderConfig::new("shared");
    section.path = "dcs".into();
    config.dcs = Some(section);
    let node = Node::builder(config.clone()).registry(&registry).build().unwrap();
    let handle = node.handle();
    let task = tokio::spawn(node.run(std::future::pending()));
    wait_for("the lead", Duration::from_secs(30), || async { handle.is_leader().then_some(()) }).await;
    assert!(Dcs::snapshot(&store).await.unwrap().alive.contains("n1"), "the node runs in the dcs its config names");
    task.abort();

    // Without a registry to build it (or a DCS given), the node is refused, naming the section.
    let err = Node::builder(config).build().err().expect("refused at build");
    assert!(err.to_string().contains("dcs: the config names a shared DCS"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_reload_with_an_invalid_config_is_refused_by_key_path_and_the_node_goes_on() {
    let c = Cluster::new(1, Some("ep-1"), "");
    let leader = c.wait_leader().await;
    let handle = c.node(&leader).handle.clone();
    let api = FakeProvider::new(None);
    let mut bad = with_api(&leader, "10.0.1.1");
    bad.services[1].fall = 0;
    let err = handle.reload(bad.clone(), providers_for(&c, &leader, &bad, &api)).await.unwrap_err();
    assert!(matches!(err, ReloadError::Config(_)), "{err}");
    assert!(err.to_string().contains("services[1].fall: must be a whole number from 1 to 100"), "{err}");
    assert_eq!(handle.config().services.len(), 1, "the old config goes on");
    assert!(api.calls().is_empty(), "no provider of the refused config acts");
}

/// One node leading `n` services of two entry points each (one provider and checker per
/// service), started and settled.
async fn many_services(n: usize, tact: &str) -> (MemoryDcs, NodeHandle, Vec<(FakeProvider, ScriptedChecker)>) {
    let mut yaml = format!(
        "dhaf: {{ cluster-name: t, node-name: n1, tact-interval: {tact}, heartbeat-interval: 1, healthy-node-status-ttl: 60, reconcile-interval: 120 }}\nservices:\n"
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - name: s{i}\n    domain: s{i}.test\n    entry-points: [ {{ name: ep-1, ip: 10.0.0.1 }}, {{ name: ep-2, ip: 10.0.0.2 }} ]\n    switcher: {{ type: fake }}\n    health-checker: {{ type: scripted }}\n"
        ));
    }
    let services: Vec<_> = (0..n).map(|_| (FakeProvider::new(Some("ep-1")), ScriptedChecker::new())).collect();
    let providers = Providers {
        services: services
            .iter()
            .map(|(p, c)| ServiceProviders { checker: Arc::new(c.clone()), switcher: Arc::new(p.switcher("n1")) })
            .collect(),
        notifiers: vec![],
    };
    let dcs = MemoryDcs::new("t");
    let node = Node::new(Config::parse(&yaml).unwrap(), Arc::new(dcs.clone()), providers);
    let handle = node.handle();
    tokio::spawn(node.run(std::future::pending()));
    wait_for("a leader", Duration::from_secs(10), || async { handle.is_leader().then_some(()) }).await;
    sleep(Duration::from_secs(5)).await;
    (dcs, handle, services)
}

#[tokio::test(start_paused = true)]
async fn a_changed_opinion_reaches_the_switcher_without_a_full_read_of_the_dcs() {
    let (dcs, _handle, services) = many_services(3, "1").await;
    let reads = dcs.snapshots_read();
    services[1].1.down("ep-1", "connection refused");
    wait_for("the failover", Duration::from_secs(10), || async { (services[1].0.current().as_deref() == Some("ep-2")).then_some(()) })
        .await;
    sleep(Duration::from_secs(5)).await;
    // The leader keeps its copy of the cluster up to date from the watch: between its start and
    // the reconcile interval it reads everything only if the watch breaks.
    assert_eq!(dcs.snapshots_read() - reads, 0, "the leader read the whole dcs on the way to the switch");
    assert_eq!(services[0].0.current().as_deref(), Some("ep-1"));
}

#[tokio::test(start_paused = true)]
async fn with_many_services_a_change_to_one_decides_only_that_one() {
    let (_dcs, handle, services) = many_services(200, "1").await;
    let decided = handle.metrics().decisions;
    services[7].1.down("ep-1", "connection refused");
    wait_for("the failover", Duration::from_secs(10), || async { (services[7].0.current().as_deref() == Some("ep-2")).then_some(()) })
        .await;
    sleep(Duration::from_secs(10)).await;
    let more = handle.metrics().decisions - decided;
    // The changed opinions, the record of the switch, its outcome: a handful of decisions of
    // service 7, none of the 199 others, and no decision of every service every tact.
    assert!(more > 0 && more < 20, "{more} decisions for one service's failover among 200");
    assert!(services.iter().enumerate().all(|(i, (p, _))| i == 7 || p.current().as_deref() == Some("ep-1")));
}

/// A DCS that serves one call at a time, each in 3 ms (about 330 writes a second: an etcd whose
/// disk syncs slowly, or on a busy machine). A call is served once sent, even if its caller has
/// stopped waiting: the DCS's time is spent all the same.
#[derive(Default)]
struct OneAtATime(std::sync::Mutex<Option<Instant>>);

#[async_trait::async_trait]
impl Interceptor for OneAtATime {
    async fn before(&self, _method: &'static str) -> Result<(), DcsError> {
        let done = {
            let mut busy_until = self.0.lock().unwrap();
            let done = busy_until.map_or(Instant::now(), |b| b.max(Instant::now())) + Duration::from_millis(3);
            *busy_until = Some(done);
            done
        };
        tokio::time::sleep_until(done).await;
        Ok(())
    }
}

/// A node with 1,000 services × 3 entry points on a DCS that serves one call at a time: its
/// first opinions (3,000 writes) must not starve its lease's keep-alives, or the lease expires,
/// the node registers again, every opinion is published again at once, and so on for ever.
#[tokio::test(start_paused = true)]
async fn thousands_of_first_opinions_do_not_starve_the_lease_of_a_slow_dcs() {
    let services: String = (0..1000)
        .map(|s| {
            format!(
                "  - name: s{s}\n    domain: s{s}.example.test\n    entry-points:\n      - {{ name: a, ip: 10.0.{}.{} }}\n      \
                 - {{ name: b, ip: 10.1.{}.{} }}\n      - {{ name: c, ip: 10.2.{}.{} }}\n    switcher: {{ type: fake }}\n    \
                 health-checker: {{ type: scripted }}\n",
                s / 250,
                s % 250 + 1,
                s / 250,
                s % 250 + 1,
                s / 250,
                s % 250 + 1
            )
        })
        .collect();
    let yaml = format!(
        "dhaf:\n  cluster-name: test\n  node-name: n1\n  tact-interval: 1\n  heartbeat-interval: 1\n  healthy-node-status-ttl: 6\nservices:\n{services}"
    );
    let config = Config::parse(&yaml).unwrap();
    let memory = MemoryDcs::new("test");
    let counts = CallCounts::default();
    let slow = Arc::new(InterceptingDcs::new(Arc::new(memory.client("n1")), OneAtATime::default()));
    let dcs = Arc::new(InterceptingDcs::new(slow, counts.clone()));
    let provider = FakeProvider::new(None);
    let checker = ScriptedChecker::new();
    let providers = Providers {
        services: (0..1000)
            .map(|_| ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(provider.switcher("n1")) })
            .collect(),
        notifiers: vec![],
    };
    let node = Node::new(config, dcs, providers);
    tokio::spawn(node.run(std::future::pending()));
    sleep(Duration::from_secs(60)).await;
    let snap = memory.snapshot().await.unwrap();
    let opinions: usize = snap.opinions.values().map(|by_service| by_service.values().map(|eps| eps.len()).sum::<usize>()).sum();
    assert_eq!(counts.get().get("register").copied(), Some(1), "the node lost its lease and registered again: {:?}", counts.get());
    assert_eq!(opinions, 3000, "every opinion is published");
    assert!(snap.alive.contains("n1"), "the node is alive");
}
