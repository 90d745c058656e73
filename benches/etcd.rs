//! dhaf over a real etcd cluster of three members: what it costs at steady state, and how fast
//! it fails over.
//!
//! 1. Steady state: 3 nodes, 100 services x 3 entry points, all healthy. After warm-up, count
//!    etcd revisions (every write is one) over ~10 s, and each node's DCS calls by method. Only
//!    lease keep-alives are expected, and they are not revisions.
//! 2. Failover latency: 3 nodes, `tact-interval: 1`, `fall` 1 and 2. The primary is marked down
//!    on every node's checker at a random moment; the latency is the time until the switcher is
//!    called. p50 and p99 over 10 runs each (2 in the smoke run `cargo test --all-targets` makes).
//!
//! 3. The leader's cost as the services grow: 3 nodes, 10, 100 and 1,000 services x 3 entry
//!    points, `tact-interval: 1`, each node on a thread and runtime of its own. At steady state,
//!    each node's CPU over the window (the leader's beside the followers'); then, `runs` times,
//!    one service's primary goes down on every node, and the time from the majority's opinion
//!    reaching etcd (seen by a watch of its own, as the leader's sees it) to the leader's
//!    switcher call. The smoke run takes 10 services only.
//!
//! Needs etcd: `$DHAF_ETCD` or `etcd` in `PATH` (`cargo xtask test` provides it).
//! Run: `cargo bench -p dhaf --bench etcd` (`--profile dev` builds faster; the figures are
//! dominated by intervals and round trips, not by CPU).

#[path = "../dhaf-providers/tests/support/etcd.rs"]
mod etcd_support;
#[path = "../dhaf-providers/tests/support/nodes.rs"]
mod nodes_support;
#[path = "support/proc.rs"]
mod proc;

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_support::EtcdCluster;
use nodes_support::{ep, Spec, TestCluster};
use tokio::time::Instant;

/// How long and how often to measure.
#[derive(Clone, Copy)]
struct Effort {
    steady_window: Duration,
    runs: usize,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and gets a short
    // smoke run that shows the benchmark still works.
    let effort = if std::env::args().any(|a| a == "--bench") {
        Effort { steady_window: Duration::from_secs(10), runs: 10 }
    } else {
        println!("smoke run (cargo bench runs the full measurement)");
        Effort { steady_window: Duration::from_secs(2), runs: 2 }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let etcd = EtcdCluster::start().await;
        // `cargo bench --bench etcd -- leader` runs only the third part.
        if !std::env::args().any(|a| a == "leader") {
            steady_state(&etcd, effort).await;
            for fall in [1, 2] {
                failover_latency(&etcd, fall, effort).await;
            }
        }
        let sizes: &[usize] = if effort.runs > 2 { &[1000, 100, 10] } else { &[10] };
        for &services in sizes {
            leader_cost(&etcd, services, effort).await;
        }
    });
}

async fn steady_state(etcd: &EtcdCluster, effort: Effort) {
    let spec = Spec { services: 100, entry_points: 3, reconcile: 60, ..Spec::default() };
    let nodes = spec.nodes as f64;
    let mut cluster = TestCluster::start(spec, "bench-steady", &etcd.hosts());
    cluster.wait_settled(Duration::from_secs(60)).await;
    // Warm-up: every node's opinion of every entry point is published.
    cluster
        .wait_for("every opinion is published", Duration::from_secs(60), |s| {
            s.opinions.values().map(|by_service| by_service.values().map(|eps| eps.len()).sum::<usize>()).sum::<usize>() == 3 * 100 * 3
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let rev0 = cluster.observer.revision().await.expect("etcd revision");
    let calls0: Vec<BTreeMap<&str, u64>> = cluster.nodes.iter().map(|n| n.dcs_calls.get()).collect();
    let t0 = Instant::now();
    tokio::time::sleep(effort.steady_window).await;
    let rev1 = cluster.observer.revision().await.expect("etcd revision");
    let secs = t0.elapsed().as_secs_f64();
    let calls1: Vec<BTreeMap<&str, u64>> = cluster.nodes.iter().map(|n| n.dcs_calls.get()).collect();

    let writes = (rev1 - rev0) as f64;
    println!("steady state: 3 nodes, 100 services x 3 entry points, tact 1 s, heartbeat 1 s, {secs:.1} s window");
    println!("  etcd revisions (writes): {} in all = {:.3}/s = {:.3}/s per node", rev1 - rev0, writes / secs, writes / secs / nodes);
    for (i, n) in cluster.nodes.iter().enumerate() {
        let rates: Vec<String> = calls1[i]
            .iter()
            .map(|(m, c)| (m, c - calls0[i].get(m).copied().unwrap_or(0)))
            .filter(|(_, d)| *d > 0)
            .map(|(m, d)| format!("{m} {:.2}/s", d as f64 / secs))
            .collect();
        let leads = if n.handle.is_leader() { " (leader)" } else { "" };
        println!("  {}{leads}: dcs calls {}", n.name, rates.join(", "));
    }
    cluster.stop_all().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A pseudo-random delay in [0, 1 s), so runs start at every phase of the tact.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    Duration::from_millis(u64::from(nanos.wrapping_mul(2_654_435_761) % 1000))
}

async fn failover_latency(etcd: &EtcdCluster, fall: u32, effort: Effort) {
    let spec = Spec { services: 1, entry_points: 3, fall, rise: 1, reconcile: 60, ..Spec::default() };
    let mut cluster = TestCluster::start(spec, &format!("bench-failover-fall{fall}"), &etcd.hosts());
    cluster.wait_settled(Duration::from_secs(30)).await;
    let (primary, backup) = (ep(0, 0), ep(0, 1));
    let mut latencies = Vec::new();
    for _ in 0..effort.runs {
        tokio::time::sleep(Duration::from_secs(2) + jitter()).await;
        let before = cluster.calls(0).len();
        let down_at = Instant::now();
        for n in &cluster.nodes {
            n.checker.down(&primary, "connection refused");
        }
        let call = wait_call(&cluster, before, &backup).await;
        latencies.push(call.at.duration_since(down_at));
        // Back to the primary (failback), and steady again before the next run.
        for n in &cluster.nodes {
            n.checker.up(&primary);
        }
        wait_call(&cluster, before + 1, &primary).await;
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "failover latency over etcd (primary down -> switcher called), tact 1 s, fall {fall}, {} runs: \
         p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        effort.runs,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1]),
    );
    cluster.assert_fenced();
    cluster.stop_all().await;
}

async fn wait_call(cluster: &TestCluster, after: usize, to: &str) -> dhaf_core::testing::SwitchCall {
    let start = Instant::now();
    loop {
        if let Some(c) = cluster.calls(0).get(after) {
            assert_eq!(c.to, to, "unexpected switch: {:?}", cluster.calls(0));
            return c.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no switch to {to} within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn leader_cost(etcd: &EtcdCluster, services: usize, effort: Effort) {
    use dhaf_core::dcs::keys::{Read, Update};
    use dhaf_core::dcs::{Changes, Dcs};

    let spec = Spec { services, entry_points: 3, rise: 1, fall: 1, reconcile: 60, ..Spec::default() };
    let mut cluster = TestCluster::start_threaded(spec, &format!("bench-leader-{services}"), &etcd.hosts());
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(900), "not settled within 900 s");
        tokio::time::sleep(Duration::from_secs(5)).await;
        match cluster.observer.snapshot().await {
            Ok(s) if s.alive.len() == 3 && s.leader.is_some() && s.records.len() == services => break,
            Ok(s) => println!(
                "  settling ({:.0} s): {} alive, leader {:?}, {} of {services} services recorded",
                started.elapsed().as_secs_f64(),
                s.alive.len(),
                s.leader.map(|l| l.node),
                s.records.len()
            ),
            Err(e) => println!("  settling ({:.0} s): the observer's read failed: {e}", started.elapsed().as_secs_f64()),
        }
    }
    println!("  settled after {:.0} s", started.elapsed().as_secs_f64());
    cluster
        .wait_for("every opinion is published", Duration::from_secs(900), |s| {
            s.opinions.values().map(|by_service| by_service.values().map(|eps| eps.len()).sum::<usize>()).sum::<usize>() == 3 * services * 3
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let cpu = |c: &TestCluster| -> Vec<Duration> {
        c.nodes.iter().map(|n| proc::cpu_time(&format!("self/task/{}", n.thread.expect("a thread of its own")))).collect()
    };
    let (cpu0, t0) = (cpu(&cluster), Instant::now());
    tokio::time::sleep(effort.steady_window).await;
    let (cpu1, secs) = (cpu(&cluster), t0.elapsed().as_secs_f64());
    let share = |i: usize| 100.0 * (cpu1[i] - cpu0[i]).as_secs_f64() / secs;
    let leader = cluster.nodes.iter().position(|n| n.handle.is_leader()).expect("a leader");
    let followers: Vec<String> = (0..cluster.nodes.len()).filter(|&i| i != leader).map(|i| format!("{:.1} %", share(i))).collect();

    // The moment etcd holds a majority (2 of 3) of unhealthy opinions of s0's primary, as a
    // watch of its own sees it.
    let (primary, backup) = (ep(0, 0), ep(0, 1));
    let mut watch = cluster.observer.watch().await.expect("a watch");
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let watched = primary.clone();
    let watcher = tokio::spawn(async move {
        let mut down = std::collections::BTreeSet::new();
        while let Some(changes) = watch.next().await {
            let Changes::Known(changes) = changes else { continue };
            for c in changes {
                if let Update::Opinion { node, service, entry_point, value } = c.update {
                    if service != "s0" || entry_point != watched {
                        continue;
                    }
                    let was = down.len();
                    match value {
                        Some(Ok(Read::Opinion(op))) if !op.healthy => down.insert(node),
                        _ => down.remove(&node),
                    };
                    if was < 2 && down.len() >= 2 {
                        let _ = seen_tx.send(Instant::now());
                    }
                }
            }
        }
    });
    let mut latencies = Vec::new();
    for _ in 0..effort.runs {
        tokio::time::sleep(Duration::from_secs(2) + jitter()).await;
        while seen.try_recv().is_ok() {}
        let before = cluster.calls(0).len();
        for n in &cluster.nodes {
            n.checker.down(&primary, "connection refused");
        }
        let call = wait_call(&cluster, before, &backup).await;
        let majority = seen.recv().await.expect("the watch saw the majority");
        latencies.push(call.started.saturating_duration_since(majority));
        for n in &cluster.nodes {
            n.checker.up(&primary);
        }
        wait_call(&cluster, before + 1, &primary).await;
    }
    watcher.abort();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "leader cost, {services} services x 3 entry points, 3 nodes over etcd, tact 1 s: leader CPU {:.1} % of one core \
         (followers {}) over {secs:.1} s; opinion change -> decision ({} runs): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        share(leader),
        followers.join(", "),
        effort.runs,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );
    cluster.assert_fenced();
    cluster.stop_all().await;
}
