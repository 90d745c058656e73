//! What a failover costs in time, and what checking costs in CPU and memory, measured with real
//! parts in one process: real HTTP backends on 127.0.0.1 / 127.0.0.2, the built-in `web` checker,
//! the embedded DCS and the real `Node` runtime. Only the switcher is an in-process one that
//! timestamps the call, so the figure is "backend fails → switcher called".
//!
//! ```text
//! cargo bench --bench failover              # scale, then latency (about two minutes)
//! cargo bench --bench failover -- latency   # failover latency only
//! cargo bench --bench failover -- scale     # 100 x 3 entry points every 250 ms, 1,000 x 3 every second
//! cargo bench --bench failover -- probe     # what single web checks cost, outside a node
//! DHAF_BENCH_RUNS=5 cargo bench --bench failover -- latency
//! cargo bench --bench failover -- fast      # three nodes over a real etcd (needs $DHAF_ETCD)
//! ```
//!
//! The scale part runs each of its runs, and the backends, in child processes (this binary
//! again), so the CPU time and memory read from /proc/self are the node's own, and one run's.
//!
//! Failure modes:
//!
//! - **crash**: the backend's listener is closed, so a connection is refused at once.
//! - **blackhole**: the backend stops accepting and its accept queue is filled, after which
//!   Linux drops every new SYN without an answer. From the checker's side that is exactly a
//!   blackholed host (a firewall dropping packets, a dead machine, a cut link): `connect` gets no
//!   answer and only the timeout ends the attempt, which is also the case the checker retries.
//!   (A server that accepts and never answers looks the same to the checker, whose timeout runs
//!   from connecting to the last byte; dropped SYNs are the closer model of lost packets.)
//! - **crash+bh**: a crash of one service's primary while another service of the same node has a
//!   blackholed primary: a node's check round ends with its slowest check, so the neighbour's
//!   timeouts delay this service's verdict.
//!
//! The runs of a scenario (and the scenarios) run concurrently, each with its own node, DCS and
//! backends: a node mostly sleeps, so this keeps the wall time short without bending the
//! figures beyond the milliseconds the shared cores add anyway. Each run waits a random part of
//! the tact before failing the backend, so the failure lands anywhere in the check cycle.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhaf::core::async_trait;
use dhaf::core::config::Config;
use dhaf::core::dcs::Dcs;
use dhaf::core::engine::Verdict;
use dhaf::core::model::{EntryPoint, FencingToken};
use dhaf::core::provider::{ProviderError, Switcher};
use dhaf::core::runtime::{Node, NodeHandle};
use dhaf::core::testing::{is_write, CallCounts, InterceptingDcs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

#[path = "../dhaf-providers/tests/support/etcd.rs"]
mod etcd_support;
#[path = "failover/fast.rs"]
mod fast;
#[path = "support/proc.rs"]
mod proc;

/// Set in the child process that serves the backends of the scale part.
const BACKENDS_CHILD: &str = "DHAF_BENCH_BACKENDS_CHILD";

/// Set in the child process of one run of the scale part: `services:tact`.
const SCALE_CHILD: &str = "DHAF_BENCH_SCALE_CHILD";

fn main() {
    if std::env::var_os(BACKENDS_CHILD).is_some() {
        backends_child();
        return;
    }
    if let Ok(run) = std::env::var(SCALE_CHILD) {
        scale_child(&run);
        return;
    }
    // `cargo bench` passes `--bench`; anything else selects the parts.
    let parts: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |p: &str| parts.is_empty() || parts.iter().any(|a| a == p);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    // `cargo test --all-targets` runs this without `--bench`: a short smoke run (the fast profile,
    // two runs per failure) shows the benchmark still works without taking minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("smoke run (cargo bench runs the full measurement)");
        rt.block_on(latency(true));
        return;
    }
    // Scale first: the latency part's hundred-odd nodes would leave their memory in the process.
    if want("scale") {
        scale();
    }
    if want("latency") {
        rt.block_on(latency(false));
    }
    if parts.iter().any(|a| a == "probe") {
        rt.block_on(probe());
    }
    // Only when named: it needs a real etcd.
    if parts.iter().any(|a| a == "fast") {
        let runs = std::env::var("DHAF_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
        rt.block_on(fast::fast(runs));
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

/// Answers each request with 200 "ok", keeping the connection until the client closes it (a
/// check without `keep-alive` resets it after one answer).
async fn respond(mut sock: TcpStream) {
    let mut buf = [0u8; 2048];
    let mut pending = 0usize;
    loop {
        match sock.read(&mut buf[pending..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending += n,
        }
        while let Some(end) = buf[..pending].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.copy_within(end + 4..pending, 0);
            pending -= end + 4;
            if sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await.is_err() {
                return;
            }
        }
        if pending == buf.len() {
            return;
        }
    }
}

/// Serve until `stop`, then hand the listener back (still bound, no longer accepting).
async fn serve(listener: TcpListener, mut stop: oneshot::Receiver<()>) -> TcpListener {
    loop {
        tokio::select! {
            _ = &mut stop => return listener,
            r = listener.accept() => if let Ok((sock, _)) = r { tokio::spawn(respond(sock)); },
        }
    }
}

/// The accept queue of a backend that may be blackholed: a node checks an entry point over one
/// connection at a time, and a short queue fills with a couple of connections nobody accepts.
const SHORT_QUEUE: u32 = 1;

/// The accept queue of the scale part's backends, which take many checks at once: a full queue
/// drops SYNs, and the client's retransmission after 1 s would be measured instead of dhaf.
const LONG_QUEUE: u32 = 4096;

fn listen(ip: Ipv4Addr, port: u16, backlog: u32) -> std::io::Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(SocketAddr::new(IpAddr::V4(ip), port))?;
    s.listen(backlog)
}

/// Bind the same free port on each of `ips`.
fn bind_same_port(ips: &[Ipv4Addr], backlog: u32) -> (Vec<TcpListener>, u16) {
    'retry: for _ in 0..100 {
        let first = listen(ips[0], 0, backlog).expect("bind loopback");
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match listen(*ip, port, backlog) {
                Ok(l) => all.push(l),
                Err(_) => continue 'retry,
            }
        }
        return (all, port);
    }
    panic!("no port free on all of {ips:?}");
}

/// One backend that can be failed in either mode.
struct Backend {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<TcpListener>,
    /// Connections that fill the accept queue of a blackholed backend; kept open while it lasts.
    fillers: Vec<TcpStream>,
    /// A blackholed backend's listener: it must stay bound, or connections would be refused.
    held: Option<TcpListener>,
}

impl Backend {
    fn start(listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        Backend { addr, stop: Some(tx), serving: tokio::spawn(serve(listener, rx)), fillers: Vec::new(), held: None }
    }

    async fn stop_accepting(&mut self) -> TcpListener {
        let _ = self.stop.take().expect("fails once").send(());
        (&mut self.serving).await.expect("backend task")
    }

    /// Close the listener: connections are refused. Returns when the failure is in force.
    async fn crash(&mut self) -> Instant {
        drop(self.stop_accepting().await);
        let t = Instant::now();
        match TcpStream::connect(self.addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => t,
            other => panic!("a crashed backend should refuse connections, got {other:?}"),
        }
    }

    /// Keep the listener but stop accepting and fill its accept queue: from then on the kernel
    /// drops every SYN. Returns when the failure is in force (the queue is full).
    async fn blackhole(&mut self) -> Instant {
        let listener = self.stop_accepting().await;
        let mut full_since = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => {
                    self.fillers.push(s);
                    full_since = Instant::now();
                    assert!(self.fillers.len() < 64, "the accept queue of {} never filled", self.addr);
                }
                Ok(Err(e)) => panic!("connecting to the blackholed backend failed instead of hanging: {e}"),
                // The SYN went unanswered: the queue is full.
                Err(_) => break,
            }
        }
        self.held = Some(listener);
        full_since
    }
}

// ---------------------------------------------------------------------------------------------
// The switcher that timestamps

/// A switch as the switcher saw it: service, entry point, when.
type Switched = (String, String, Instant);

/// Points "the public entry" at an entry point in memory and reports every switch with its time.
struct Stamp {
    service: String,
    current: Mutex<String>,
    switched: mpsc::UnboundedSender<Switched>,
}

#[async_trait]
impl Switcher for Stamp {
    async fn current(&self) -> Result<Option<String>, ProviderError> {
        Ok(Some(self.current.lock().unwrap().clone()))
    }

    async fn switch(&self, to: &EntryPoint, _token: FencingToken) -> Result<(), ProviderError> {
        let now = Instant::now();
        *self.current.lock().unwrap() = to.name.clone();
        let _ = self.switched.send((self.service.clone(), to.name.clone(), now));
        Ok(())
    }
}

/// The built-in providers plus `stamp`, whose switches arrive on the returned channel.
fn registry_with_stamp() -> (dhaf::core::registry::Registry, mpsc::UnboundedReceiver<Switched>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut registry = dhaf::providers::registry();
    registry.switcher("stamp", move |section, ctx| {
        let svc = ctx.service();
        let stamp = Stamp { service: svc.name.clone(), current: Mutex::new(svc.entry_points[0].name.clone()), switched: tx.clone() };
        section.fields().into_result(Arc::new(stamp) as Arc<dyn Switcher>)
    });
    (registry, rx)
}

// ---------------------------------------------------------------------------------------------
// Failover latency

#[derive(Clone, Copy)]
struct Profile {
    name: &'static str,
    label: &'static str,
    tact: u64,
    rise: u32,
    fall: u32,
    timeout: u64,
    retries: u32,
    runs: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Failure {
    /// The primary's listener closed.
    Crash,
    /// The primary's SYNs dropped.
    Blackhole,
    /// The primary crashes while another service of the same node has a blackholed primary.
    CrashBesideBlackhole,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Failure::Crash => "crash",
            Failure::Blackhole => "blackhole",
            Failure::CrashBesideBlackhole => "crash+bh",
        }
    }
}

fn profiles(runs: Option<usize>) -> [Profile; 3] {
    [
        Profile {
            name: "default",
            label: "tact 10 s, rise/fall 2, timeout 5 s, retries 2",
            tact: 10,
            rise: 2,
            fall: 2,
            timeout: 5,
            retries: 2,
            runs: runs.unwrap_or(20),
        },
        Profile {
            name: "fast",
            label: "tact 1 s, rise/fall 2, timeout 1 s, retries 0",
            tact: 1,
            rise: 2,
            fall: 2,
            timeout: 1,
            retries: 0,
            runs: runs.unwrap_or(20),
        },
        Profile {
            name: "original",
            label: "tact 10 s, rise/fall 1 (none), timeout 5 s, retries 2",
            tact: 10,
            rise: 1,
            fall: 1,
            timeout: 5,
            retries: 2,
            runs: runs.unwrap_or(20),
        },
    ]
}

/// A small xorshift generator: only to spread the failure moments, no dependency needed.
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Rng {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng((nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn service_yaml(name: &str, port: u16, eps: &[Ipv4Addr], p: &Profile) -> String {
    let mut s = format!(
        "  - name: {name}\n    domain: {name}.bench.local\n    rise: {rise}\n    fall: {fall}\n    entry-points:\n",
        rise = p.rise,
        fall = p.fall
    );
    for (i, ip) in eps.iter().enumerate() {
        s.push_str(&format!("      - {{ name: ep-{}, ip: {ip} }}\n", i + 1));
    }
    s.push_str(&format!(
        "    health-checker: {{ type: web, schema: http, port: {port}, path: /health, timeout: {}, retries: {} }}\n    switcher: {{ type: stamp }}\n",
        p.timeout, p.retries
    ));
    s
}

fn node_yaml(name: &str, tact: u64, extra: &str, services: &str) -> String {
    format!("dhaf:\n  cluster-name: bench\n  node-name: {name}\n  tact-interval: {tact}\n{extra}services:\n{services}")
}

/// Until `handle` leads, `service` points at ep-1 and every entry point is healthy by majority.
async fn settled(handle: &NodeHandle, service: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        if handle.is_leader() {
            if let Ok(st) = handle.service_status(service).await {
                if st.current.as_deref() == Some("ep-1") && st.entry_points.iter().all(|e| e.verdict == Verdict::Healthy) {
                    return;
                }
            }
        }
        assert!(start.elapsed() < limit, "the node did not settle within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One failover: settle, wait a random part of the tact, fail the primary, time the switch.
async fn one_failover(p: Profile, failure: Failure, seed: u64) -> Duration {
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let (listeners, port) = bind_same_port(&ips, SHORT_QUEUE);
    let mut backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let mut services = service_yaml("site", port, &ips, &p);
    // The neighbour: another service of the same node, with backends of its own.
    let (listeners, other_port) = bind_same_port(&ips, SHORT_QUEUE);
    let mut neighbour: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    if failure == Failure::CrashBesideBlackhole {
        services.push_str(&service_yaml("other", other_port, &ips, &p));
    }
    let config = Config::parse(&node_yaml("node-1", p.tact, "", &services)).expect("the bench config is valid");
    let (registry, mut switched) = registry_with_stamp();
    let dcs = dhaf::providers::dcs_from_config(&config).expect("embedded dcs");
    let providers = registry.build(&config, dcs.clone()).expect("providers build");
    let node = Node::new(config, dcs, providers);
    let handle = node.handle();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(node.run(async {
        let _ = stop_rx.await;
    }));

    settled(&handle, "site", Duration::from_secs(120)).await;
    let mut rng = Rng::seeded(seed);
    // A blackholed check stretches the check round to timeout x attempts, then the tact follows.
    let mut cycle = p.tact as f64;
    if failure == Failure::CrashBesideBlackhole {
        settled(&handle, "other", Duration::from_secs(120)).await;
        neighbour[0].blackhole().await;
        cycle += (p.timeout * (p.retries as u64 + 1)) as f64;
    }
    tokio::time::sleep(Duration::from_secs_f64(rng.unit() * cycle)).await;
    while let Ok((svc, to, _)) = switched.try_recv() {
        assert!(svc != "site" || to == "ep-1", "switched away from a healthy primary");
    }
    let failed_at = match failure {
        Failure::Crash | Failure::CrashBesideBlackhole => backends[0].crash().await,
        Failure::Blackhole => backends[0].blackhole().await,
    };
    let limit = Duration::from_secs(p.tact * 4 + (p.timeout * (p.retries as u64 + 1) + p.tact) * p.fall as u64 * 2 + 30);
    let latency = loop {
        match tokio::time::timeout(limit, switched.recv()).await {
            Ok(Some((svc, to, at))) if svc == "site" && to == "ep-2" => break at.saturating_duration_since(failed_at),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the switcher is gone"),
            Err(_) => panic!("{} / {failure:?}: no failover within {limit:?}", p.name),
        }
    };
    let _ = stop_tx.send(());
    running.await.expect("node task").expect("node ran");
    drop((backends, neighbour));
    latency
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn latency(smoke: bool) {
    let runs = if smoke { Some(2) } else { std::env::var("DHAF_BENCH_RUNS").ok().and_then(|v| v.parse().ok()) };
    let mut profiles = profiles(runs).to_vec();
    if smoke {
        profiles.retain(|p| p.name == "fast");
    }
    println!("failover latency: backend fails -> switcher called (one node, embedded DCS, real web checker)");
    println!("all runs concurrent, each with its own node and backends; failure at a random point of the tact\n");
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut seed = 0u64;
    for failure in [Failure::Crash, Failure::Blackhole, Failure::CrashBesideBlackhole] {
        for (pi, p) in profiles.iter().enumerate() {
            // The neighbour's effect shows with the default and the fast profile; skip the original's.
            if failure == Failure::CrashBesideBlackhole && p.name == "original" {
                continue;
            }
            for _ in 0..p.runs {
                seed += 1;
                let p = *p;
                set.spawn(async move { (failure, pi, one_failover(p, failure, seed).await) });
            }
        }
    }
    let mut results: BTreeMap<(Failure, usize), Vec<Duration>> = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        let (failure, pi, d) = r.expect("a failover run failed");
        results.entry((failure, pi)).or_default().push(d);
    }
    println!("{:<10} {:<9} {:<52} {:>8} {:>8} {:>8} {:>8} {:>5}", "failure", "config", "", "min", "p50", "p99", "max", "runs");
    for ((failure, pi), mut v) in results {
        v.sort();
        let p = &profiles[pi];
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        println!(
            "{:<10} {:<9} {:<52} {:>8} {:>8} {:>8} {:>8} {:>5}",
            failure.label(),
            p.name,
            p.label,
            s(v[0]),
            s(percentile(&v, 50.0)),
            s(percentile(&v, 99.0)),
            s(v[v.len() - 1]),
            v.len()
        );
    }
    println!("crash+bh: the crash of one service while another service of the same node is blackholed");
    println!("p99 is nearest-rank: with 20 runs or fewer it is the slowest run");
    println!("\n(latency part took {:.0} s)\n", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Scale: 1,000 services x 3 entry points every second

const WARM_UP: Duration = Duration::from_secs(15);
/// The warm-up ends once the node's DCS writes have been only keep-alives for this long.
const SETTLED: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(30);

/// The scale part's backends, in a child process so their CPU is not the node's.
fn backends_child() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
        let (listeners, port) = bind_same_port(&ips, LONG_QUEUE);
        for l in listeners {
            // Keep the stop sender alive forever: these backends never fail.
            let (tx, rx) = oneshot::channel();
            std::mem::forget(tx);
            tokio::spawn(serve(l, rx));
        }
        println!("port {port}");
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        })
        .await
        .unwrap();
    });
}

/// A `VmRSS`-style line of /proc/self/status, in MiB.
fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with(key)).expect("status key");
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

/// The writes a node made to its DCS, by kind (the `Dcs` method's name).
fn writes_by_kind(counts: &CallCounts) -> BTreeMap<&'static str, u64> {
    counts.get().into_iter().filter(|(method, _)| is_write(method)).collect()
}

/// The scale part's runs: services (each with 3 entry points), the tact and the web checker's
/// `keep-alive` (`0`: a connection per check, the default).
const SCALE_RUNS: [(usize, &str, &str); 3] = [(100, "250ms", "0"), (1000, "1s", "0"), (1000, "1s", "30s")];

/// Each run of the scale part in a process of its own (this binary again), so that its memory
/// figures are not the previous run's leftovers.
fn scale() {
    for (services, tact, keep_alive) in SCALE_RUNS {
        let status = Command::new(std::env::current_exe().expect("own path"))
            .env(SCALE_CHILD, format!("{services}:{tact}:{keep_alive}"))
            // As the packaged unit runs a node.
            .env("MALLOC_ARENA_MAX", "2")
            .status()
            .expect("start a scale run");
        assert!(status.success(), "the scale run of {services} services at {tact} failed");
    }
}

/// One run of the scale part, `services:tact:keep-alive` (as in [`SCALE_RUNS`]), in a child
/// process.
fn scale_child(run: &str) {
    let [services, tact, keep_alive] = run.split(':').collect::<Vec<_>>()[..] else { panic!("services:tact:keep-alive, not {run}") };
    let services: usize = services.parse().expect("a number of services");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(scale_run(services, tact, keep_alive));
}

fn scale_service_yaml(name: &str, port: u16, ips: &[Ipv4Addr], keep_alive: &str) -> String {
    let mut s = format!("  - name: {name}\n    domain: {name}.bench.local\n    entry-points:\n");
    for (i, ip) in ips.iter().enumerate() {
        s.push_str(&format!("      - {{ name: ep-{}, ip: {ip} }}\n", i + 1));
    }
    s.push_str(&format!(
        "    health-checker: {{ type: web, schema: http, port: {port}, path: /health, keep-alive: {keep_alive} }}\n    switcher: {{ type: stamp }}\n"
    ));
    s
}

async fn scale_run(service_count: usize, tact: &str, keep_alive: &str) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env(BACKENDS_CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the backends process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the backends' port");
    let port: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("a port line");
    let child_pid = child.id().to_string();

    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let floor = fresh_connection_floor(port, &ips);
    // Defaults for everything but the tact: rise/fall 2, web timeout 5 s, retries 2, check-concurrency 32.
    let services: String = (0..service_count).map(|i| scale_service_yaml(&format!("svc-{i}"), port, &ips, keep_alive)).collect();
    let config =
        Config::parse(&format!("dhaf:\n  cluster-name: bench\n  node-name: node-1\n  tact-interval: {tact}\nservices:\n{services}"))
            .expect("the scale config is valid");
    let concurrency = config.dhaf.check_concurrency;
    let (registry, _switched) = registry_with_stamp();
    let counts = CallCounts::default();
    let dcs: Arc<dyn Dcs> =
        Arc::new(InterceptingDcs::new(dhaf::providers::dcs_from_config(&config).expect("embedded dcs"), counts.clone()));

    let rss_before = status_mib("VmRSS:");
    let providers = registry.build(&config, dcs.clone()).expect("providers build");
    // The web checkers are built up front (their HTTP clients shared between them).
    let rss_built = status_mib("VmRSS:");
    let node = Node::new(config, dcs, providers);
    let handle = node.handle();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(node.run(async {
        let _ = stop_rx.await;
    }));
    println!();
    println!(
        "scale: one node, {service_count} services x 3 entry points, tact {tact}, web checker (timeout 5 s, retries 2, keep-alive {keep_alive}), check-concurrency {concurrency}"
    );
    println!("backends: 127.0.0.1-3:{port} in a child process (pid {child_pid}), so the node's figures are its own");
    println!("MALLOC_ARENA_MAX={} (as the packaged unit sets it)", std::env::var("MALLOC_ARENA_MAX").unwrap_or_default());
    // Warm-up: at least WARM_UP, and until the leader has taken in every service (each one
    // adopted and its live state written), so that only the steady state is measured.
    let started = Instant::now();
    let settled = |k: &BTreeMap<&'static str, u64>| k.iter().filter(|(kind, _)| **kind != "keep_alive").map(|(_, n)| n).sum::<u64>();
    let mut last = (settled(&writes_by_kind(&counts)), Instant::now());
    while started.elapsed() < WARM_UP || last.1.elapsed() < SETTLED {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = settled(&writes_by_kind(&counts));
        if now != last.0 {
            last = (now, Instant::now());
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the leader never settled");
    }
    println!(
        "warm-up: {:.1} s; the leader had taken in every service after {:.1} s ({} DCS writes besides keep-alives)",
        started.elapsed().as_secs_f64(),
        (last.1 - started).as_secs_f64(),
        last.0
    );

    let (cpu0, child0, m0, w0, k0, t0) =
        (proc::cpu_time("self"), proc::cpu_time(&child_pid), handle.metrics(), counts.writes(), writes_by_kind(&counts), Instant::now());
    let mut rss_max = 0f64;
    while t0.elapsed() < MEASURE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(status_mib("VmRSS:"));
    }
    let (cpu1, child1, m1, w1, k1, wall) =
        (proc::cpu_time("self"), proc::cpu_time(&child_pid), handle.metrics(), counts.writes(), writes_by_kind(&counts), t0.elapsed());
    let rss_end = status_mib("VmRSS:");
    let hwm = status_mib("VmHWM:");

    let secs = wall.as_secs_f64();
    let checks = m1.checks - m0.checks;
    let failed = m1.checks_failed - m0.checks_failed;
    let cpu = (cpu1 - cpu0).as_secs_f64();
    println!("steady state over {secs:.1} s:");
    println!("  node CPU:     {:.1} % of one core ({cpu:.2} s user+system)", 100.0 * cpu / secs);
    println!("  node memory:  RSS {rss_end:.1} MiB at the end, {rss_max:.1} MiB at most while measuring, peak (VmHWM) {hwm:.1} MiB");
    println!(
        "                {rss_before:.1} MiB before the providers were built, {rss_built:.1} MiB once they were (before the node ran)"
    );
    println!(
        "  checks:       {:.0} per second ({checks} in all, {failed} failed); the tact counts from the end of a check",
        checks as f64 / secs
    );
    println!("  CPU per check: {:.0} µs", 1e6 * cpu / checks.max(1) as f64);
    println!(
        "  floor:        {:.0} µs of CPU for a bare fresh connection (connect, one request, its answer, reset; no HTTP library, no node): \
         {:.1} % of one core at this rate",
        1e6 * floor.as_secs_f64(),
        100.0 * floor.as_secs_f64() * checks as f64 / secs
    );
    let kinds: Vec<String> =
        k1.iter().map(|(k, n)| (k, n - k0.get(k).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    println!("  DCS writes:   {:.2} per second ({} in all: {})", (w1 - w0) as f64 / secs, w1 - w0, kinds.join(", "));
    println!("  backends (child process, not counted above): {:.1} % of one core", 100.0 * (child1 - child0).as_secs_f64() / secs);

    let _ = stop_tx.send(());
    running.await.expect("node task").expect("node ran");
    drop(child.stdin.take());
    let _ = child.wait();
}

/// The CPU one fresh connection costs at the least, measured on a thread of its own: connect,
/// send one request, read the answer, close with a reset (as a check does), with the same
/// runtime but no HTTP library and no node. What the kernel charges for a connection on this
/// machine, under any check that opens one.
fn fresh_connection_floor(port: u16, ips: &[Ipv4Addr]) -> Duration {
    const CONNECTIONS: u32 = 6_000;
    let ips = ips.to_vec();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        rt.block_on(async {
            let request = b"GET /health HTTP/1.1\r\nhost: floor.test\r\naccept: */*\r\n\r\n";
            let once = |ip: Ipv4Addr| async move {
                let mut stream = TcpStream::connect((ip, port)).await.expect("connect to a backend");
                stream.set_nodelay(true).unwrap();
                stream.set_zero_linger().unwrap();
                stream.write_all(request).await.unwrap();
                let mut answer = Vec::with_capacity(128);
                while !answer.ends_with(b"ok\n") {
                    let mut buf = [0u8; 512];
                    let n = stream.read(&mut buf).await.expect("the backend's answer");
                    assert!(n > 0, "the backend closed before answering");
                    answer.extend_from_slice(&buf[..n]);
                }
            };
            for i in 0..500 {
                once(ips[i % ips.len()]).await;
            }
            let cpu0 = proc::cpu_time("thread-self");
            for i in 0..CONNECTIONS as usize {
                once(ips[i % ips.len()]).await;
            }
            (proc::cpu_time("thread-self") - cpu0) / CONNECTIONS
        })
    })
    .join()
    .expect("the floor's thread")
}

/// How long single web checks take against a local backend, outside any node: the floor under
/// the scale part's round length.
async fn probe() {
    let ips = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let (listeners, port) = bind_same_port(&ips, LONG_QUEUE);
    let _backends: Vec<Backend> = listeners.into_iter().map(Backend::start).collect();
    let p = Profile { name: "probe", label: "", tact: 1, rise: 2, fall: 2, timeout: 5, retries: 2, runs: 1 };
    let config = Config::parse(&node_yaml("node-1", 1, "", &service_yaml("site", port, &ips, &p))).unwrap();
    let (registry, _rx) = registry_with_stamp();
    let dcs = dhaf::providers::dcs_from_config(&config).unwrap();
    let providers = registry.build(&config, dcs).unwrap();
    let checker = providers.services[0].checker.clone();
    let ep = config.services[0].entry_points[0].clone();
    for _ in 0..5 {
        let t = Instant::now();
        let h = checker.check(&ep).await;
        println!("sequential check: {:?} {:?}", t.elapsed(), h.is_healthy());
    }
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    for _ in 0..3000 {
        let (c, e, s) = (checker.clone(), ep.clone(), sem.clone());
        set.spawn(async move {
            let _p = s.acquire_owned().await.unwrap();
            c.check(&e).await.is_healthy()
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        ok += r.unwrap() as usize;
    }
    println!("3000 checks at concurrency 32: {:?}, {ok} healthy", t.elapsed());
}
