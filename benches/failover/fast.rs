//! The fast path over a real three-member etcd: three nodes, the real `web` checker against
//! real backends, an in-process switcher that timestamps each write it acknowledges.
//!
//! - **crash**: the primary's listener closes; backend failed → the switch acknowledged.
//! - **blackhole**: the primary drops SYNs; only the check's timeout ends each attempt.
//! - **leader killed**: the leader dies (its task aborted, no resign, no revoke) at the moment
//!   the primary crashes; the time until the new leader's switch.
//! - **leader cost**: 10, 100, 1,000 services of three entry points, all healthy: the decisions
//!   the leader makes per second at steady state, and from one opinion changing to its switch.
//!
//! Each beside today's 1-second profile. The bound printed beside the crash figures is
//! `fall × tact + 3 DCS round trips (publish, watch, fenced record) + the provider's answer`,
//! with the round trip measured on the same etcd just before.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhaf::core::config::Config;
use dhaf::core::provider::Switcher;
use dhaf::core::runtime::{Node, NodeHandle};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::etcd_support::EtcdCluster;
use super::{bind_same_port, percentile, Backend, Rng, Stamp, Switched, SHORT_QUEUE};

/// One timing profile.
#[derive(Clone, Copy)]
struct Timing {
    name: &'static str,
    /// `tact-interval`, `heartbeat-interval`, the check's `timeout`, as written in YAML.
    tact: &'static str,
    tact_secs: f64,
    heartbeat: &'static str,
    timeout: &'static str,
    timeout_secs: f64,
    fall: u32,
    /// `healthy-node-status-ttl`, s.
    ttl: u64,
}

const FAST: Timing =
    Timing { name: "250ms", tact: "250ms", tact_secs: 0.25, heartbeat: "500ms", timeout: "200ms", timeout_secs: 0.2, fall: 2, ttl: 2 };
const TODAY: Timing = Timing { name: "1s", tact: "1", tact_secs: 1.0, heartbeat: "1", timeout: "1", timeout_secs: 1.0, fall: 2, ttl: 3 };

fn node_yaml(cluster: &str, node: &str, hosts: &str, t: &Timing, services: &str) -> String {
    format!(
        "dhaf:\n  cluster-name: {cluster}\n  node-name: {node}\n  tact-interval: {}\n  heartbeat-interval: {}\n  \
         healthy-node-status-ttl: {}\n  reconcile-interval: 60\netcd:\n  hosts: {hosts}\nservices:\n{services}",
        t.tact, t.heartbeat, t.ttl
    )
}

fn service_yaml(name: &str, port: u16, eps: &[Ipv4Addr], t: &Timing) -> String {
    let mut s = format!("  - name: {name}\n    domain: {name}.bench.local\n    rise: 2\n    fall: {}\n    entry-points:\n", t.fall);
    for (i, ip) in eps.iter().enumerate() {
        s.push_str(&format!("      - {{ name: ep-{}, ip: {ip} }}\n", i + 1));
    }
    s.push_str(&format!(
        "    health-checker: {{ type: web, schema: http, port: {port}, path: /health, timeout: {}, retries: 0 }}\n    switcher: {{ type: stamp }}\n",
        t.timeout
    ));
    s
}

/// One node of a bench cluster: its handle, its task (gone once killed), its stop switch.
struct Running {
    handle: NodeHandle,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

/// Three nodes sharing one stamping switcher channel.
struct Cluster {
    nodes: Vec<Running>,
    switched: mpsc::UnboundedReceiver<Switched>,
}

impl Cluster {
    fn start(cluster: &str, hosts: &str, t: &Timing, services: &str) -> Cluster {
        let (tx, switched) = mpsc::unbounded_channel();
        let mut nodes = Vec::new();
        for n in ["n1", "n2", "n3"] {
            let config = Config::parse(&node_yaml(cluster, n, hosts, t, services)).expect("the bench config is valid");
            let mut registry = dhaf::providers::registry();
            let tx = tx.clone();
            registry.switcher("stamp", move |section, ctx| {
                let svc = ctx.service();
                let stamp =
                    Stamp { service: svc.name.clone(), current: Mutex::new(svc.entry_points[0].name.clone()), switched: tx.clone() };
                section.fields().into_result(Arc::new(stamp) as Arc<dyn Switcher>)
            });
            let dcs = dhaf::providers::dcs_from_config(&config).expect("etcd dcs");
            let providers = registry.build(&config, dcs.clone()).expect("providers build");
            let node = Node::new(config, dcs, providers);
            let handle = node.handle();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let _ = node
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
            nodes.push(Running { handle, task: Some(task), stop: Some(stop_tx) });
        }
        Cluster { nodes, switched }
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.task.is_some() && n.handle.is_leader())
    }

    /// Until a node leads and `service` points at ep-1 with every entry point healthy.
    async fn settled(&self, service: &str, limit: Duration) {
        assert!(self.settled_within(service, limit).await, "the cluster did not settle within {limit:?}");
    }

    /// Whether a node leads and `service` points at ep-1 with every entry point healthy within `limit`.
    async fn settled_within(&self, service: &str, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if let Some(i) = self.leader() {
                if let Ok(st) = self.nodes[i].handle.service_status(service).await {
                    if st.current.as_deref() == Some("ep-1")
                        && st.entry_points.iter().all(|e| e.verdict == dhaf::core::engine::Verdict::Healthy)
                    {
                        return true;
                    }
                }
            }
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next switch of `service` to `to`, by when it was acknowledged.
    async fn switch_to(&mut self, service: &str, to: &str, limit: Duration) -> Instant {
        loop {
            match tokio::time::timeout(limit, self.switched.recv()).await {
                Ok(Some((svc, ep, at))) if svc == service && ep == to => return at,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the switchers are gone"),
                Err(_) => panic!("no switch of {service} to {to} within {limit:?}"),
            }
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(task) = self.nodes[i].task.take() {
            task.abort();
        }
    }

    async fn stop(mut self) {
        for n in &mut self.nodes {
            if let Some(stop) = n.stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = n.task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Scenario {
    Crash,
    Blackhole,
    LeaderKilled,
}

/// One run: a fresh cluster of three nodes, settle, fail at a random point of the tact, time.
async fn one_run(hosts: String, t: Timing, scenario: Scenario, seed: u64) -> Duration {
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let (listeners, port) = bind_same_port(&ips, SHORT_QUEUE);
    let mut backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let name = format!("fast-{}-{seed}-{}", t.name.replace('.', "_"), std::process::id());
    let mut c = Cluster::start(&name, &hosts, &t, &service_yaml("site", port, &ips, &t));
    c.settled("site", Duration::from_secs(60)).await;
    let mut rng = Rng::seeded(seed);
    tokio::time::sleep(Duration::from_secs_f64(rng.unit() * t.tact_secs)).await;
    while c.switched.try_recv().is_ok() {}
    let failed_at = match scenario {
        Scenario::Crash => backends[0].crash().await,
        Scenario::Blackhole => backends[0].blackhole().await,
        Scenario::LeaderKilled => {
            let leader = c.leader().expect("a leader");
            c.kill(leader);
            backends[0].crash().await
        }
    };
    let at = c.switch_to("site", "ep-2", Duration::from_secs(30)).await;
    c.stop().await;
    drop(backends);
    at.saturating_duration_since(failed_at)
}

/// The median time of a small etcd write (a put and its answer), over 50 tries.
async fn dcs_round_trip(hosts: &str) -> Duration {
    let services = service_yaml("probe", 80, &[Ipv4Addr::LOCALHOST], &FAST);
    let config = Config::parse(&node_yaml("fast-rtt", "probe", hosts, &FAST, &services)).expect("config");
    let dcs = dhaf::providers::dcs_from_config(&config).expect("etcd dcs");
    let mut v = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        dcs.kv_put("bench", "rtt", &i.to_string()).await.expect("etcd put");
        v.push(t.elapsed());
    }
    v.sort();
    v[v.len() / 2]
}

pub async fn fast(runs: usize) {
    let etcd = EtcdCluster::start().await;
    let hosts = etcd.hosts();
    let rtt = dcs_round_trip(&hosts).await;
    println!("fast path over a real three-member etcd, three nodes, real web checks, timestamped switcher");
    println!("etcd write round trip (median of 50): {:.1} ms\n", rtt.as_secs_f64() * 1000.0);
    let mut results: BTreeMap<(Scenario, &str), Vec<Duration>> = BTreeMap::new();
    for scenario in [Scenario::Crash, Scenario::Blackhole, Scenario::LeaderKilled] {
        for t in [FAST, TODAY] {
            // A few runs at a time: three nodes each, on two shared cores.
            let mut set = tokio::task::JoinSet::new();
            for r in 0..runs {
                let hosts = hosts.clone();
                let seed = (scenario as u64) * 1000 + r as u64 + if t.name == "1s" { 500 } else { 0 };
                set.spawn(one_run(hosts, t, scenario, seed));
                if set.len() >= 4 {
                    let d = set.join_next().await.unwrap().expect("a run failed");
                    results.entry((scenario, t.name)).or_default().push(d);
                }
            }
            while let Some(d) = set.join_next().await {
                results.entry((scenario, t.name)).or_default().push(d.expect("a run failed"));
            }
        }
    }
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!("{:<14} {:<7} {:>8} {:>8} {:>8} {:>8} {:>5}   bound", "scenario", "tact", "min", "p50", "p99", "max", "runs");
    for ((scenario, tname), mut v) in results {
        v.sort();
        let t = if tname == FAST.name { FAST } else { TODAY };
        // Detection: `fall` failed checks, each up to a tact apart (a blackholed check also
        // waits out its timeout); then publish, watch, fenced record; the provider answers at once.
        let per_check = match scenario {
            Scenario::Blackhole => t.tact_secs + t.timeout_secs,
            _ => t.tact_secs,
        };
        let bound = Duration::from_secs_f64(f64::from(t.fall) * per_check) + rtt * 3;
        let bound = match scenario {
            Scenario::LeaderKilled => format!("ttl {} s + {}", t.ttl, ms(bound)),
            _ => ms(bound),
        };
        println!(
            "{:<14} {:<7} {:>8} {:>8} {:>8} {:>8} {:>5}   {bound}",
            format!("{scenario:?}").to_lowercase(),
            tname,
            ms(v[0]),
            ms(percentile(&v, 50.0)),
            ms(percentile(&v, 99.0)),
            ms(v[v.len() - 1]),
            v.len()
        );
    }
    println!("p99 is nearest-rank: with 100 runs or fewer it is the slowest run or close to it\n");
    leader_cost(&hosts).await;
    drop(etcd);
}

/// The leader's steady-state work and one change's decision time with `n` services.
async fn leader_cost(hosts: &str) {
    println!("leader cost, three nodes over etcd, real web checks of 3 entry points per service (all services share");
    println!("three backends); then the primary backend crashes, so every service fails over, and s0's switch is timed");
    println!("{:<9} {:<6} {:>16} {:>22}", "services", "tact", "decisions/s idle", "crash -> s0 switched");
    let sizes: Vec<usize> = std::env::var("DHAF_BENCH_COST_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000]);
    for n in sizes {
        for t in [FAST, TODAY] {
            // 1,000 services x 3 entry points x 3 nodes at 250 ms is 36,000 checks a second on
            // two shared cores: the 1-second profile only.
            if n == 1000 && t.name == FAST.name {
                continue;
            }
            let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
            let (listeners, port) = bind_same_port(&ips, super::LONG_QUEUE);
            let mut backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
            // Every service checks the same three backends; service s0's switch is timed.
            let services: String = (0..n).map(|s| service_yaml(&format!("s{s}"), port, &ips, &t)).collect();
            let name = format!("fast-cost-{n}-{}-{}", t.name, std::process::id());
            let mut c = Cluster::start(&name, hosts, &t, &services);
            let limit = Duration::from_secs(120);
            if !(c.settled_within("s0", limit).await && c.settled_within(&format!("s{}", n - 1), limit).await) {
                // Three nodes in one process check 3 x 3 x n entry points every tact.
                println!("{:<9} {:<6} did not settle within {limit:?}: more checks than the cores here give", n, t.name);
                c.stop().await;
                continue;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            let leader = c.leader().expect("a leader");
            let d0 = c.nodes[leader].handle.metrics().decisions;
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_secs(10)).await;
            let idle = (c.nodes[leader].handle.metrics().decisions - d0) as f64 / t0.elapsed().as_secs_f64();
            while c.switched.try_recv().is_ok() {}
            // The primary of every service fails: each service's opinion change is decided
            // alone; s0's switch is timed from the crash.
            let failed_at = backends[0].crash().await;
            let at = c.switch_to("s0", "ep-2", Duration::from_secs(60)).await;
            println!(
                "{:<9} {:<6} {:>16.2} {:>22}",
                n,
                t.name,
                idle,
                format!("{:.0} ms", at.saturating_duration_since(failed_at).as_secs_f64() * 1000.0)
            );
            c.stop().await;
            drop(backends);
        }
    }
    println!();
}
