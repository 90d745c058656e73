//! Several `Node`s sharing one in-memory DCS in one process, in paused time: the runtime's
//! behaviour as an operator would see it (who switches, when, and what they are told).

use std::sync::Arc;
use std::time::Duration;

use dhaf_core::config::Config;
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::{Event, SwitchKind};
use dhaf_core::provider::Notifier;
use dhaf_core::registry::{Providers, ServiceProviders};
use dhaf_core::runtime::{Node, NodeHandle};
use dhaf_core::testing::{FakeProvider, RecordingNotifier, ScriptedChecker};
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
}

impl Cluster {
    fn new(n: usize, current: Option<&str>, extra: &str) -> Cluster {
        let mut c = Cluster {
            dcs: MemoryDcs::new("test"),
            provider: FakeProvider::new(current),
            notifier: RecordingNotifier::new(),
            nodes: Vec::new(),
        };
        for i in 1..=n {
            c.start(&format!("n{i}"), extra);
        }
        c
    }

    fn start(&mut self, name: &str, extra: &str) {
        let checker = ScriptedChecker::new();
        let providers = Providers {
            services: vec![ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(self.provider.switcher(name)) }],
            notifiers: vec![("rec".into(), Arc::new(self.notifier.clone()) as Arc<dyn Notifier>)],
        };
        let node = Node::new(config(name, extra), Arc::new(self.dcs.client(name)), providers);
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

#[tokio::test(start_paused = true)]
async fn a_lone_node_points_a_new_service_at_the_first_entry_point() {
    let c = Cluster::new(1, None, "");
    wait_for("the initial switch", Duration::from_secs(30), || async { c.provider.current() }).await;
    assert_eq!(c.switches(), [("n1".to_string(), "ep-1".to_string())]);
    let status = c.node("n1").handle.service_status("main").await.unwrap();
    assert_eq!(status.current.as_deref(), Some("ep-1"));
    assert_eq!(status.last_switch.unwrap().kind, SwitchKind::Initial);
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
    sleep(Duration::from_secs(20)).await;
    assert_eq!(c.provider.current().as_deref(), Some("ep-2"), "not before the failback delay");
    wait_for("switching back", Duration::from_secs(40), || async { (c.provider.current().as_deref() == Some("ep-1")).then_some(()) }).await;
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
async fn memory_dcs_passes_the_conformance_suite() {
    dhaf_core::dcs::conformance::run_all(|cluster| async move { MemoryDcs::new(&cluster) }).await;
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

/// One node leading two services, each with its own provider and checker; returns once the node
/// leads and has settled for a few seconds.
async fn two_services() -> [(FakeProvider, ScriptedChecker); 2] {
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
