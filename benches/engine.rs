//! How long the leader's decision takes for a large cluster: 10,000 services of 3 entry points,
//! each judged by 5 voters. The engine runs on every DCS change, so this bounds the leader's
//! reaction time; the goal is well under 10 ms for all services together.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use dhaf::core::config::{Failback, ProviderConfig, ServiceConfig};
use dhaf::core::engine::{decide, EntryPointView, ServiceState, ServiceView, Vote};
use dhaf::core::model::Opinion;

const SERVICES: usize = 10_000;
const ENTRY_POINTS: usize = 3;
const VOTERS: usize = 5;

fn provider(kind: &str) -> ProviderConfig {
    ProviderConfig::new(kind)
}

fn service(s: usize) -> ServiceConfig {
    let mut service = ServiceConfig::new(format!("svc-{s}"), format!("svc-{s}.example.com"), provider("web"), provider("exec"));
    for e in 0..ENTRY_POINTS {
        service = service.with_entry_point(format!("ep{e}"), IpAddr::V4(Ipv4Addr::new(10, (s >> 8) as u8, s as u8, e as u8)));
    }
    service.failback = if s.is_multiple_of(2) { Failback::Auto } else { Failback::Manual };
    service.failback_delay = Duration::from_secs(if s.is_multiple_of(3) { 0 } else { 30 });
    service
}

/// A spread of situations: all healthy, primary down (failover pending, since the bench never
/// reports the switch back), split votes, partial reports, maintenance, drift, switchover.
fn view(s: usize) -> ServiceView {
    let entry_points = (0..ENTRY_POINTS)
        .map(|e| {
            let votes = (0..VOTERS)
                .filter(|&n| !(s + n + e).is_multiple_of(11)) // now and then a node has not reported
                .map(|n| {
                    let healthy = !(s * 7 + n * 3 + e * 5).is_multiple_of(4);
                    let opinion = if healthy { Opinion::healthy() } else { Opinion::unhealthy("connection refused") };
                    Vote { node: format!("node-{n}"), opinion }
                })
                .collect();
            EntryPointView { votes, maintenance: s.is_multiple_of(17) && e == 0 }
        })
        .collect();
    ServiceView {
        alive_nodes: VOTERS,
        entry_points,
        current: (!s.is_multiple_of(13)).then(|| format!("ep{}", s % ENTRY_POINTS)),
        live: s.is_multiple_of(5).then(|| format!("ep{}", (s + 1) % ENTRY_POINTS)),
        awaiting_read_back: false,
        switchover: s.is_multiple_of(19).then(|| format!("ep{}", (s + 2) % ENTRY_POINTS)),
        switchover_at: None,
        wall_secs: 0,
        out_of_agreement: false,
        paused: false,
        first_opinions_within: Duration::ZERO,
    }
}

fn decide_all(services: &[ServiceConfig], views: &[ServiceView], states: &mut [ServiceState], now: Instant) -> usize {
    let mut actions = 0;
    for ((svc, view), state) in services.iter().zip(views).zip(states.iter_mut()) {
        actions += decide(svc, 1, state, view, now).actions.len();
    }
    actions
}

fn bench(c: &mut Criterion) {
    let services: Vec<ServiceConfig> = (0..SERVICES).map(service).collect();
    let views: Vec<ServiceView> = (0..SERVICES).map(view).collect();
    let mut states = vec![ServiceState::default(); SERVICES];
    let now = Instant::now();
    // Prime the states so the loop measures the steady state a leader lives in.
    decide_all(&services, &views, &mut states, now);

    // A plain figure, independent of criterion's report format: the median of a few runs.
    let mut runs: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            black_box(decide_all(&services, &views, &mut states, now));
            t.elapsed()
        })
        .collect();
    runs.sort();
    let median = runs[runs.len() / 2];
    println!(
        "decide {SERVICES} services x {ENTRY_POINTS} eps x {VOTERS} voters: {:.3} ms (median of {} runs)",
        median.as_secs_f64() * 1e3,
        runs.len()
    );

    c.bench_function("decide 10000 services x 3 eps x 5 voters", |b| {
        b.iter(|| black_box(decide_all(&services, &views, &mut states, black_box(now))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
