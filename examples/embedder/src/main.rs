//! Three dhaf nodes inside one program, on one in-memory DCS, with the program's own health
//! checker, switcher and notifier; a failover and a change of leader, watched through
//! `NodeHandle::subscribe()`.
//!
//! ```text
//! cargo run --manifest-path examples/embedder/Cargo.toml
//! ```
//!
//! Nothing but `dhaf-core`: no YAML, no built-in providers, no etcd. The program flags the
//! primary entry point down and waits for the failover to the secondary, then stops the leader
//! and waits for another node to take over. It exits 0, or panics naming the expectation that
//! failed.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhaf_core::async_trait;
use dhaf_core::config::{Config, ProviderConfig, ServiceConfig};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::engine::quorum::Verdict;
use dhaf_core::model::{EntryPoint, Event, FencingToken, Health, Notification, SwitchKind};
use dhaf_core::provider::{HealthChecker, Notifier, ProviderError, Switcher};
use dhaf_core::registry::Registry;
use dhaf_core::runtime::{Node, NodeEvent};
use tokio::sync::{mpsc, oneshot};

/// Entry points the program has flagged down, shared by the program and every node's checker.
#[derive(Clone, Default)]
struct Flags(Arc<Mutex<HashSet<String>>>);

impl Flags {
    fn set_down(&self, entry_point: &str) {
        self.0.lock().unwrap().insert(entry_point.to_string());
    }
}

/// The `flag` health checker: healthy unless the program flagged the entry point down.
struct FlagChecker {
    flags: Flags,
}

#[async_trait]
impl HealthChecker for FlagChecker {
    async fn check(&self, entry_point: &EntryPoint) -> Health {
        if self.flags.0.lock().unwrap().contains(&entry_point.name) {
            Health::unhealthy("flagged down by the program")
        } else {
            Health::Healthy
        }
    }

    // The default is 30 s; an in-process check answers at once.
    fn timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// The `router` switcher: where the program's traffic goes. Every node builds one, but only the
/// leader of the moment calls `switch`.
#[derive(Clone, Default)]
struct Router {
    current: Arc<Mutex<Option<String>>>,
}

#[async_trait]
impl Switcher for Router {
    async fn current(&self) -> Result<Option<String>, ProviderError> {
        Ok(self.current.lock().unwrap().clone())
    }

    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        println!("router: traffic -> {} ({}), decided in {token}", to.name, to.ip);
        *self.current.lock().unwrap() = Some(to.name.clone());
        Ok(())
    }
}

/// The `log` notifier: what operators would be told, printed.
struct LogNotifier {
    prefix: String,
}

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), ProviderError> {
        println!("{} {}: {}", self.prefix, n.node, n.event.summary());
        Ok(())
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// Node `node`'s config, built in code: one service, two entry points, quick timings.
fn config(node: &str) -> Config {
    let mut service = ServiceConfig::new("shop", "shop.example.com", ProviderConfig::new("flag"), ProviderConfig::new("router"))
        .with_entry_point("primary", ip("10.0.0.1"))
        .with_entry_point("secondary", ip("10.0.0.2"));
    service.rise = 1;
    service.fall = 2;
    let mut config =
        Config::new("embedded", node).with_service(service).with_notifier(ProviderConfig::new("log").with_setting("prefix", "notify:"));
    config.dhaf.tact_interval = Duration::from_millis(200);
    config.dhaf.heartbeat_interval = Duration::from_millis(500);
    config.dhaf.healthy_node_status_ttl = Duration::from_secs(2);
    // The same rules as a config file, with the same key paths: `Node::builder` checks them too.
    config.validate().expect("the example's config is valid");
    config
}

/// The program's providers, registered under the `type` names its config uses.
fn registry(flags: &Flags, router: &Router) -> Registry {
    let mut registry = Registry::new();
    let flags = flags.clone();
    registry.checker("flag", move |section, _ctx| section.fields().into_result(FlagChecker { flags: flags.clone() }));
    let router = router.clone();
    registry.switcher("router", move |section, _ctx| section.fields().into_result(router.clone()));
    registry.notifier("log", |section, _ctx| {
        // A provider reads its own settings; one it does not read (a typo) is refused, naming
        // `notifiers[0].<key>`.
        let f = section.fields();
        let prefix = f.string("prefix").unwrap_or_default();
        f.into_result(LogNotifier { prefix })
    });
    registry
}

/// Wait (at most 30 s) for an event of any node that `want` picks out.
async fn wait_for<T>(
    events: &mut mpsc::UnboundedReceiver<(String, NodeEvent)>,
    what: &str,
    mut want: impl FnMut(&str, &NodeEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, events.recv()).await;
        let (node, event) = next.unwrap_or_else(|_| panic!("{what} did not happen within 30 s")).expect("the nodes run");
        if let Some(found) = want(&node, &event) {
            return found;
        }
    }
}

async fn run() {
    let flags = Flags::default();
    let router = Router::default();
    let registry = registry(&flags, &router);
    let dcs = MemoryDcs::new("embedded");

    // Every node's events, in one stream, named by node.
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    for name in ["node-1", "node-2", "node-3"] {
        let node =
            Node::builder(config(name)).dcs(Arc::new(dcs.client(name))).registry(&registry).build().expect("config and providers agree");
        let handle = node.handle();
        let mut subscription = handle.subscribe();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(event) = subscription.recv().await {
                let _ = tx.send((name.to_string(), event));
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(node.run(async {
            let _ = stopped.await;
        }));
        nodes.push((name, handle, stop, task));
    }

    let leader =
        wait_for(&mut events, "a leader", |node, e| matches!(e, NodeEvent::LeadershipGained { .. }).then(|| node.to_string())).await;
    println!("{leader} leads");
    wait_for(&mut events, "traffic on the primary", |_, e| match e {
        NodeEvent::Event(Event::Switched { to, kind: SwitchKind::Initial, .. }) if to == "primary" => Some(()),
        _ => None,
    })
    .await;
    // The secondary must be healthy by majority before a failover can pick it: the status says
    // when (an entry point healthy from the start is no transition, so no event tells it).
    let (_, handle, ..) = nodes.iter().find(|(name, ..)| *name == leader).expect("the leader is one of ours");
    let healthy = async {
        loop {
            let status = handle.service_status("shop").await.expect("the service's status");
            if status.entry_points.iter().all(|ep| ep.verdict == Verdict::Healthy) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), healthy).await.expect("both entry points healthy within 30 s");

    println!("flagging the primary down");
    flags.set_down("primary");
    let by = wait_for(&mut events, "the failover", |node, e| match e {
        NodeEvent::Event(Event::Switched { to, kind: SwitchKind::Failover, .. }) if to == "secondary" => Some(node.to_string()),
        _ => None,
    })
    .await;
    assert_eq!(by, leader, "only the leader switches");
    assert_eq!(router.current.lock().unwrap().as_deref(), Some("secondary"));

    println!("stopping {leader}");
    let i = nodes.iter().position(|(name, ..)| *name == leader).expect("the leader is one of ours");
    let (_, handle, stop, task) = nodes.remove(i);
    let _ = stop.send(());
    task.await.expect("the node task").expect("the node ran");
    assert!(handle.leadership().borrow().is_none(), "a stopped node leads no more");
    let next = wait_for(&mut events, "a new leader", |node, e| {
        matches!(e, NodeEvent::LeadershipGained { .. }).then(|| node.to_string()).filter(|n| *n != leader)
    })
    .await;
    println!("{next} leads; traffic stays on {}", router.current.lock().unwrap().as_deref().unwrap_or("?"));

    for (_, _, stop, task) in nodes {
        let _ = stop.send(());
        task.await.expect("the node task").expect("the node ran");
    }
    println!("done");
}

fn main() {
    // The program's own runtime: dhaf's nodes run in it like any other task.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(run());
}
