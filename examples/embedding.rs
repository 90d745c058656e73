//! Embedding dhaf in your own service: a custom health checker and a custom switcher as plain
//! trait impls, registered under `type` names and written in the YAML like the built-ins, a
//! [`Node`] on the embedded DCS inside this program's own tokio runtime, and the node's REST API
//! mounted on a listener this program owns.
//!
//! Everything but the REST API is `dhaf-core` alone (no built-in provider is registered); the
//! router comes from `dhaf-node`. `examples/embedder/` is a crate of its own on `dhaf-core` only,
//! with its config built in code.
//!
//! ```text
//! cargo run --example embedding
//! ```
//!
//! The checker (`flag`) reads in-process flags: an entry point is healthy unless the program has
//! flagged it down. The switcher (`memory-router`) is an in-memory "router" that logs every change.
//! The example flags the primary down, watches the node fail over to the secondary, reads the
//! result through the REST API, shuts the node down and exits 0 (a failed expectation panics).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhaf_core::async_trait;
use dhaf_core::config::Config;
use dhaf_core::engine::quorum::Verdict;
use dhaf_core::model::{EntryPoint, FencingToken, Health};
use dhaf_core::provider::{HealthChecker, ProviderError, Switcher};
use dhaf_core::registry::Registry;
use dhaf_core::runtime::Node;
use tokio::time::Instant;

/// Entry points the program has flagged down, shared by the program and its checkers.
#[derive(Clone, Default)]
struct Flags(Arc<Mutex<HashSet<String>>>);

impl Flags {
    fn set_down(&self, entry_point: &str, down: bool) {
        let mut flags = self.0.lock().unwrap();
        if down {
            flags.insert(entry_point.to_string());
        } else {
            flags.remove(entry_point);
        }
    }

    fn is_down(&self, entry_point: &str) -> bool {
        self.0.lock().unwrap().contains(entry_point)
    }
}

/// The `flag` health checker: healthy unless flagged down.
struct FlagChecker {
    flags: Flags,
    reason: String,
}

#[async_trait]
impl HealthChecker for FlagChecker {
    async fn check(&self, entry_point: &EntryPoint) -> Health {
        if self.flags.is_down(&entry_point.name) {
            Health::unhealthy(self.reason.clone())
        } else {
            Health::Healthy
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// The `memory-router` switcher: remembers where the service points and logs every change.
#[derive(Clone, Default)]
struct MemoryRouter {
    current: Arc<Mutex<Option<String>>>,
}

impl MemoryRouter {
    fn current_name(&self) -> Option<String> {
        self.current.lock().unwrap().clone()
    }
}

#[async_trait]
impl Switcher for MemoryRouter {
    async fn current(&self) -> Result<Option<String>, ProviderError> {
        Ok(self.current_name())
    }

    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        println!("router: traffic -> {} ({}), decided in {token}", to.name, to.ip);
        *self.current.lock().unwrap() = Some(to.name.clone());
        Ok(())
    }
}

const CONFIG: &str = r#"
dhaf:
  cluster-name: embedded
  node-name: node-1
  tact-interval: 1
  heartbeat-interval: 1
  healthy-node-status-ttl: 3
services:
  - name: shop
    domain: shop.example.com
    rise: 1
    fall: 2
    entry-points:
      - { name: primary, ip: 10.0.0.1 }
      - { name: secondary, ip: 10.0.0.2 }
    health-checker:
      type: flag                    # registered below, written like a built-in
      reason: flagged down by the program
    switcher:
      type: memory-router
      initial: primary
"#;

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET through a plain TCP connection, enough for one request to the API mounted below.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect to the api");
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    sock.write_all(request.as_bytes()).await.expect("send the request");
    let mut response = String::new();
    sock.read_to_string(&mut response).await.expect("read the response");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

async fn run() {
    let flags = Flags::default();
    let router = MemoryRouter::default();

    // Only this program's providers: `dhaf_providers::registry()` would add the built-ins.
    let mut registry = Registry::new();
    let checker_flags = flags.clone();
    registry.checker("flag", move |section, _ctx| {
        // A provider parses its own settings with the same reader as the built-ins, so a typo in
        // the YAML is reported with its key path.
        let f = section.fields();
        let reason = f.string("reason").unwrap_or_else(|| "flagged down".into());
        f.finish();
        f.into_result(FlagChecker { flags: checker_flags.clone(), reason })
    });
    let shared_router = router.clone();
    registry.switcher("memory-router", move |section, ctx| {
        let f = section.fields();
        if let Some(initial) = f.name_opt("initial") {
            if ctx.service().entry_point_index(&initial).is_none() {
                f.problem(f.key("initial"), format!("'{initial}' is not an entry point of this service"));
            }
            *shared_router.current.lock().unwrap() = Some(initial);
        }
        f.finish();
        f.into_result(shared_router.clone())
    });

    let config = Config::parse(CONFIG).expect("the example config is valid");
    // The embedded in-memory DCS: one node, nothing else to run (`.dcs(…)` gives another; a
    // config's `etcd:` section is built by a registry that has the etcd DCS, as
    // `dhaf_providers::registry()` has). The registry builds the providers the config names; a
    // type it lacks or a bad setting is refused here, by its key path.
    let node = Node::builder(config).registry(&registry).build().expect("config and providers agree");
    let handle = node.handle();
    let (stop_node, node_stop) = tokio::sync::oneshot::channel::<()>();
    let node_task = tokio::spawn(node.run(async {
        let _ = node_stop.await;
    }));

    // The REST API is a plain axum router: mount it (or nest it) wherever the program serves HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the api");
    let api_addr = listener.local_addr().expect("the api address");
    let app = axum::Router::new().merge(dhaf_node::api::router(handle.clone()));
    let (stop_api, api_stop) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = api_stop.await;
            })
            .await
    });
    println!("rest api on http://{api_addr}/api/v1/services/shop");

    wait_for("leadership", Duration::from_secs(10), || handle.is_leader()).await;
    println!("node-1 leads; traffic on {}", router.current_name().unwrap_or_default());
    // Both entry points must be healthy by majority before a failover can pick the secondary.
    let start = Instant::now();
    loop {
        let status = handle.service_status("shop").await.expect("service status");
        if status.entry_points.iter().all(|ep| ep.verdict == Verdict::Healthy) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the entry points were not judged healthy: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    println!("flagging primary down");
    flags.set_down("primary", true);
    let flagged = Instant::now();
    wait_for("failover to secondary", Duration::from_secs(10), || router.current_name().as_deref() == Some("secondary")).await;
    println!("failover took {:.1} s (tact 1 s, fall 2)", flagged.elapsed().as_secs_f64());

    let (code, body) = http_get(api_addr, "/api/v1/services/shop").await;
    assert_eq!(code, 200, "GET /api/v1/services/shop answered {code}: {body}");
    assert!(body.contains("\"current\":\"secondary\""), "the api does not show the failover: {body}");
    println!("GET /api/v1/services/shop -> {code}, current: secondary");

    let _ = stop_api.send(());
    api_task.await.expect("api task").expect("api served");
    let _ = stop_node.send(());
    node_task.await.expect("node task").expect("node ran");
    println!("node stopped");
}

/// Runs the example in a tokio runtime of its own (also called by `tests/t20_examples.rs`).
pub fn main() {
    // The program's own runtime: dhaf runs inside it like any other task.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(run());
}
