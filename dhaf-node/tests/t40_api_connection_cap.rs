//! A node whose REST API is flooded with idle connections keeps checking its entry points and
//! keeps answering: the API holds at most its cap of connections (the rest wait in the kernel's
//! queue, costing the node no descriptor) and closes connections that send no request in time.
//!
//! The test process is the node, with its descriptor limit lowered as on a small server; the
//! idle connections come from another process, as they would from another host.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dhaf_node::ApiLimits;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

mod support;

const IDLE_CONNECTIONS: usize = 300;
const DESCRIPTOR_LIMIT: u64 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_starve_neither_the_checks_nor_the_api() {
    let limit = Rlimit { current: Some(DESCRIPTOR_LIMIT), maximum: getrlimit(Resource::Nofile).maximum };
    setrlimit(Resource::Nofile, limit).expect("lower the descriptor limit");

    let dir = std::env::temp_dir().join(format!("dhaf-api-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A real backend: the tcp checker's entry points accept connections on it.
    let backend_port = support::tcp_backend("127.0.0.1:0").await;
    let config = support::tcp_site(&dir, "cap", backend_port, "    rise: 1\n    fall: 1\n");

    let prepared = dhaf_node::prepare(&config, &dhaf_providers::registry()).expect("valid config");
    let handle = prepared.node.handle();
    let limits = ApiLimits { max_connections: 32, header_read_timeout: Duration::from_secs(1), ..ApiLimits::default() };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(dhaf_node::run_with_limits(prepared, limits, std::future::pending(), move |a| {
        let _ = addr_tx.send(a);
    }));
    let addr = addr_rx.await.unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let healthz = format!("http://{addr}/healthz");
    let start = Instant::now();
    while !http.get(&healthz).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(start.elapsed() < Duration::from_secs(30), "the node did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Another process opens many connections and sends nothing on them.
    let mut idle = Command::new("python3")
        .args([
            "-c",
            "import resource, socket, sys, time\n\
             hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n\
             resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))\n\
             held = [socket.create_connection(('127.0.0.1', int(sys.argv[1]))) for _ in range(int(sys.argv[2]))]\n\
             print('open', flush=True)\n\
             time.sleep(600)\n",
            &addr.port().to_string(),
            &IDLE_CONNECTIONS.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(idle.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open", "the idle connections were opened");

    // While they are held, the node's checks keep passing...
    let before = handle.metrics();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = handle.metrics();
    let passed = |m: &dhaf_core::runtime::Metrics| m.checks - m.checks_failed;
    assert!(passed(&after) >= passed(&before) + 2, "checks stalled: {before:?} -> {after:?}");
    assert_eq!(after.checks_failed, before.checks_failed, "checks failed while the API was flooded");
    // ...and a new request is served once the idle connections ahead of it time out.
    let answered = http.get(&healthz).send().await.expect("the API answers despite the flood");
    assert!(answered.status().is_success(), "{}", answered.status());
    assert_eq!(handle.metrics().checks_failed, before.checks_failed);

    let _ = idle.kill();
    let _ = idle.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
