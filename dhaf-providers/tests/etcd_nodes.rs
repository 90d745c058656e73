//! Three dhaf nodes over one real etcd cluster of three members, with the failures that matter:
//! a primary seen down by a majority, the leader killed, the leader paused past its lease, an
//! etcd member killed, etcd's quorum lost, a node decommissioned.
//!
//! Every scenario ends by checking the fencing invariant: each switch was made under a term its
//! node was elected to, and no term had two writers.
//!
//! Scenarios run one at a time: each starts its own etcd cluster and three nodes, and their
//! timing (leases of 3 s) should not compete for the CPU.

mod support;

use std::time::Duration;

use dhaf_core::dcs::Dcs;
use dhaf_core::model::{Event, FencingToken};
use dhaf_core::runtime::CommandError;
use support::etcd::EtcdCluster;
use support::nodes::{ep, Spec, TestCluster};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const SETTLE: Duration = Duration::from_secs(30);
const ACT: Duration = Duration::from_secs(30);

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

async fn start(name: &str) -> (EtcdCluster, TestCluster) {
    init_logs();
    let etcd = EtcdCluster::start().await;
    let cluster = TestCluster::start(Spec::default(), name, &etcd.hosts());
    let snap = cluster.wait_settled(SETTLE).await;
    assert_eq!(snap.records["s0"].entry_point, ep(0, 0), "the first term adopts what the provider points at");
    assert!(cluster.calls(0).is_empty(), "adopting the live state is not a switch");
    (etcd, cluster)
}

fn leader(snap: &dhaf_core::dcs::Snapshot) -> (String, FencingToken) {
    let l = snap.leader.as_ref().expect("a leader");
    (l.node.clone(), l.token)
}

/// Watch the cluster for `time`; fail at once if the provider is called.
async fn no_switch_for(cluster: &TestCluster, time: Duration, why: &str) {
    let start = tokio::time::Instant::now();
    while start.elapsed() < time {
        assert!(cluster.calls(0).is_empty(), "{why}: switched anyway: {:?}", cluster.calls(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_primary_down_by_majority_switches_exactly_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_etcd, mut cluster) = start("t10").await;

    // One vantage point out of three is not a majority.
    cluster.nodes[0].checker.down(&ep(0, 0), "connection refused");
    no_switch_for(&cluster, Duration::from_secs(5), "one node of three saw the primary down").await;

    cluster.nodes[1].checker.down(&ep(0, 0), "connection refused");
    let snap = cluster.wait_for("the leader fails over", ACT, |s| s.records["s0"].entry_point == ep(0, 1)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = cluster.calls(0);
    assert_eq!(calls.len(), 1, "exactly one switch: {calls:?}");
    assert_eq!(calls[0].to, ep(0, 1));
    assert_eq!(calls[0].token, snap.records["s0"].token);
    assert_eq!(cluster.providers[0].current().as_deref(), Some(ep(0, 1).as_str()));
    cluster.assert_fenced();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_leader_killed_new_leader_acts_exactly_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_etcd, mut cluster) = start("t20").await;
    let (old, t1) = leader(&cluster.snapshot().await);

    // The leader crashes as the primary goes down: it cannot act; its successor must, once.
    cluster.node_mut(&old).kill().await;
    for n in &cluster.nodes {
        n.checker.down(&ep(0, 0), "connection refused");
    }
    let snap = cluster
        .wait_for("another node leads and fails over", ACT, |s| {
            s.leader.as_ref().is_some_and(|l| l.node != old) && s.records["s0"].entry_point == ep(0, 1)
        })
        .await;
    let (new, t2) = leader(&snap);
    assert!(t2 > t1, "the new term {t2} follows {t1}");
    assert!(!snap.alive.contains(&old), "the killed node's lease expired");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = cluster.calls(0);
    assert_eq!(calls.len(), 1, "the new leader acts exactly once: {calls:?}");
    assert_eq!((calls[0].node.as_str(), calls[0].token), (new.as_str(), t2));
    cluster.assert_fenced();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_leader_paused_past_its_lease_never_writes_again() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_etcd, mut cluster) = start("t30").await;
    let (old, t1) = leader(&cluster.snapshot().await);

    // The leader decides to fail over and records it, then stops before its provider call
    // returns: the worst moment.
    cluster.node(&old).pause_switcher.set(true);
    for n in &cluster.nodes {
        n.checker.down(&ep(0, 0), "connection refused");
    }
    cluster
        .wait_for("the leader records the failover", ACT, |s| s.records["s0"].entry_point == ep(0, 1) && s.records["s0"].token == t1)
        .await;
    cluster.node(&old).pause.set(true);

    // Its lease runs out; a new leader finds the provider still on the old primary and repairs.
    let snap = cluster
        .wait_for("a new leader repairs the provider", ACT, |s| {
            s.leader.as_ref().is_some_and(|l| l.node != old) && !cluster.calls(0).is_empty()
        })
        .await;
    let (new, t2) = leader(&snap);
    assert!(t2 > t1);
    assert!(!snap.alive.contains(&old), "the paused node's lease expired");

    // It wakes up after more than a lease's worth of time.
    cluster.node(&old).pause_switcher.set(false);
    cluster.node(&old).pause.set(false);
    cluster.wait_for("the paused node registers again", SETTLE, |s| s.alive.contains(&old)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let calls = cluster.calls(0);
    assert_eq!(calls.len(), 1, "only the new leader switched: {calls:?}");
    assert_eq!((calls[0].node.as_str(), calls[0].token, calls[0].to.as_str()), (new.as_str(), t2, ep(0, 1).as_str()));
    assert_eq!(cluster.node(&old).handle.metrics().switches, 0, "the paused leader never switched");
    let snap = cluster.snapshot().await;
    assert_eq!(snap.leader.as_ref().map(|l| l.token), Some(t2), "the paused node did not take leadership back");
    assert_eq!(snap.records["s0"].token, t2, "the paused node wrote no record after resuming");
    assert!(!cluster.node(&old).handle.is_leader());
    cluster.assert_fenced();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_one_etcd_member_killed_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut etcd, mut cluster) = start("t40").await;
    let (lead, t1) = leader(&cluster.snapshot().await);

    // The raft leader is the member whose loss matters most: etcd elects another.
    let member = etcd.leader().await.expect("etcd has a leader");
    etcd.kill(member);
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        if let Ok(s) = cluster.observer.snapshot().await {
            assert_eq!(s.leader.as_ref().map(|l| (l.node.as_str(), l.token)), Some((lead.as_str(), t1)), "leadership changed");
            assert_eq!(s.alive.len(), 3, "a node lost its lease: {:?}", s.alive);
        }
        assert!(cluster.calls(0).is_empty(), "switched: {:?}", cluster.calls(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Two members still make a quorum: the cluster still fails over, under the same term.
    for n in &cluster.nodes {
        n.checker.down(&ep(0, 0), "connection refused");
    }
    cluster.wait_for("the leader fails over", ACT, |s| s.records["s0"].entry_point == ep(0, 1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = cluster.calls(0);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0].node.as_str(), calls[0].token), (lead.as_str(), t1));
    cluster.assert_fenced();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_etcd_quorum_lost_no_switch_and_clean_recovery() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut etcd, mut cluster) = start("t50").await;
    let (_, t1) = leader(&cluster.snapshot().await);

    etcd.kill(0);
    etcd.kill(1);
    for n in &cluster.nodes {
        n.checker.down(&ep(0, 0), "connection refused");
    }
    // Well past the lease TTL and the detection time: nobody may switch without the DCS.
    no_switch_for(&cluster, Duration::from_secs(8), "etcd has no quorum").await;
    for n in &cluster.nodes {
        let lost = n.count(|e| matches!(e, Event::DcsUnavailable { .. }));
        assert_eq!(lost, 1, "{} tells once that it lost the dcs: {:?}", n.name, n.events());
        assert!(!n.handle.is_leader(), "{} still acts as leader without the dcs", n.name);
        assert!(n.handle.metrics().dcs_errors > 0);
    }

    // The primary recovers before etcd does; then etcd comes back.
    for n in &cluster.nodes {
        n.checker.up(&ep(0, 0));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    etcd.restart(0);
    etcd.restart(1);
    etcd.wait_healthy().await;
    for n in &cluster.nodes {
        let node = n.name.clone();
        let start = tokio::time::Instant::now();
        while n.count(|e| matches!(e, Event::DcsRecovered { .. })) == 0 {
            assert!(start.elapsed() < SETTLE, "{node} never told that the dcs is back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(n.count(|e| matches!(e, Event::DcsUnavailable { .. })), 1, "{node}: {:?}", n.events());
    }
    let snap = cluster.wait_settled(SETTLE).await;
    assert!(leader(&snap).1 >= t1);
    no_switch_for(&cluster, Duration::from_secs(5), "after recovery, with the primary healthy").await;
    assert_eq!(cluster.snapshot().await.records["s0"].entry_point, ep(0, 0));
    assert_eq!(cluster.providers[0].current().as_deref(), Some(ep(0, 0).as_str()));

    // And it works again.
    for n in &cluster.nodes {
        n.checker.down(&ep(0, 0), "connection refused");
    }
    cluster.wait_for("the leader fails over", ACT, |s| s.records["s0"].entry_point == ep(0, 1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.calls(0).len(), 1, "{:?}", cluster.calls(0));
    cluster.assert_fenced();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_stopped_node_decommissioned_leaves_the_members() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_etcd, mut cluster) = start("t60").await;
    let n1 = cluster.nodes[0].handle.clone();

    assert!(matches!(n1.decommission("n3").await, Err(CommandError::NodeAlive(n)) if n == "n3"), "an alive node stays");
    cluster.node_mut("n3").stop().await;
    let snap = cluster.wait_for("n3 is gone", SETTLE, |s| !s.alive.contains("n3")).await;
    assert!(snap.members.contains("n3"), "a stopped node stays a member until decommissioned");
    n1.decommission("n3").await.expect("a stopped node can be decommissioned");

    let snap = cluster.snapshot().await;
    assert_eq!(snap.members.iter().collect::<Vec<_>>(), ["n1", "n2"]);
    let status = n1.status().await.expect("status");
    assert_eq!(status.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
    assert!(matches!(n1.decommission("n3").await, Err(CommandError::UnknownNode(_))));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_etcd_quorum_lost_is_told_in_words_with_the_last_known_state() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut etcd, mut cluster) = start("t55").await;
    // A monitoring scrape reads every node's status (the leader keeps its own snapshots anyway).
    for n in &cluster.nodes {
        assert!(!n.handle.status().await.unwrap().stale);
    }
    etcd.kill(0);
    etcd.kill(1);
    // Past the lease TTL: every node has met the lost quorum on several calls.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for n in &cluster.nodes {
        let status = n.handle.status().await.expect("status answers without the dcs");
        let error = status.dcs_error.clone().unwrap_or_else(|| panic!("{} does not say the dcs is lost", n.name));
        for debug in ["Status {", "code:", "tonic", "transport::Error", "(Unhealthy)", "Error(", "source:"] {
            assert!(!error.contains(debug), "{}: Rust debug text in a message for people: {error}", n.name);
        }
        assert!(error.contains("quorum") || error.contains("no etcd member"), "{}: {error}", n.name);
        assert!(status.dcs_error_since.is_some() && status.stale, "{}: {status:?}", n.name);
        assert_eq!(status.services[0].current.as_deref(), Some(ep(0, 0).as_str()), "{}: the last known state: {status:?}", n.name);
        assert!(!n.handle.is_leader() || !n.handle.holds_lease(), "{} claims to lead without the dcs", n.name);
    }
    cluster.stop_all().await;
}
