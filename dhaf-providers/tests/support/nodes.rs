//! In-process dhaf nodes over a real etcd cluster, with the testing fakes: a scripted checker
//! per node (its vantage point), one fake provider per service shared by every node's
//! switcher, a recording notifier per node, and a pause switch per node that blocks every DCS
//! and switcher call the node makes, as a stopped process would.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use dhaf_core::async_trait;
use dhaf_core::config::Config;
use dhaf_core::dcs::{Dcs, DcsError, Snapshot};
use dhaf_core::model::{EntryPoint, Event, FencingToken};
use dhaf_core::provider::{ProviderError, Switcher};
use dhaf_core::registry::{Providers, ServiceProviders};
use dhaf_core::runtime::{Node, NodeHandle};
use dhaf_core::testing::{
    CallCounts, FakeProvider, InterceptingDcs, Interceptor, RecordingNotifier, RecordingSwitcher, ScriptedChecker, SwitchCall,
};
use dhaf_providers::etcd::{EtcdConfig, EtcdDcs};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The shape of a test cluster.
#[derive(Debug, Clone)]
pub struct Spec {
    /// dhaf nodes.
    pub nodes: usize,
    /// Services, named `s0`, `s1`, …
    pub services: usize,
    /// Entry points per service, named `<service>-ep1`, `<service>-ep2`, … (priority order).
    pub entry_points: usize,
    /// `healthy-node-status-ttl`, s.
    pub ttl: u64,
    /// `heartbeat-interval`, s.
    pub heartbeat: u64,
    /// `tact-interval`, s.
    pub tact: u64,
    /// `rise` and `fall`.
    pub rise: u32,
    /// `fall`.
    pub fall: u32,
    /// `reconcile-interval`, s.
    pub reconcile: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec { nodes: 3, services: 1, entry_points: 2, ttl: 3, heartbeat: 1, tact: 1, rise: 2, fall: 2, reconcile: 2 }
    }
}

/// Entry point `i` (0-based) of service `s`.
pub fn ep(s: usize, i: usize) -> String {
    format!("s{s}-ep{}", i + 1)
}

/// The YAML config of node `node` in cluster `cluster` on etcd `hosts`.
pub fn config_yaml(spec: &Spec, cluster: &str, node: &str, hosts: &str) -> String {
    let mut y = format!(
        "dhaf:\n  cluster-name: {cluster}\n  node-name: {node}\n  healthy-node-status-ttl: {}\n  heartbeat-interval: {}\n  \
         tact-interval: {}\n  reconcile-interval: {}\netcd:\n  hosts: {hosts}\nservices:\n",
        spec.ttl, spec.heartbeat, spec.tact, spec.reconcile
    );
    for s in 0..spec.services {
        y += &format!(
            "  - name: s{s}\n    domain: s{s}.example.com\n    rise: {}\n    fall: {}\n    switcher:\n      type: fake\n    \
             health-checker:\n      type: scripted\n    entry-points:\n",
            spec.rise, spec.fall
        );
        for i in 0..spec.entry_points {
            y += &format!("      - name: {}\n        ip: 10.{}.{}.{}\n", ep(s, i), s / 250, s % 250, i + 1);
        }
    }
    y
}

/// A switch that stops every call while on, as a stopped process would.
#[derive(Clone)]
pub struct Pause(Arc<watch::Sender<bool>>);

impl Pause {
    fn new() -> Self {
        Pause(Arc::new(watch::channel(false).0))
    }

    /// Stop (`true`) or resume (`false`).
    pub fn set(&self, on: bool) {
        self.0.send_replace(on);
    }

    async fn gate(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|paused| !*paused).await;
    }
}

/// Around every DCS call of a node: counted, and held while the node is paused, before and
/// after the call (an answer that arrives during a pause is seen only after it).
pub struct PausedCalls {
    pause: Pause,
    counts: CallCounts,
}

#[async_trait]
impl Interceptor for PausedCalls {
    async fn before(&self, method: &'static str) -> Result<(), DcsError> {
        self.counts.add(method);
        self.pause.gate().await;
        Ok(())
    }
    async fn after(&self, _method: &'static str) -> Result<(), DcsError> {
        self.pause.gate().await;
        Ok(())
    }
}

macro_rules! gated {
    ($self:ident, $call:expr) => {{
        $self.pause.gate().await;
        let out = $call.await;
        $self.pause.gate().await;
        out
    }};
}

/// A node's switcher that waits while its node is paused.
pub struct PausableSwitcher {
    inner: RecordingSwitcher,
    pause: Pause,
}

#[async_trait]
impl Switcher for PausableSwitcher {
    async fn current(&self) -> Result<Option<String>, ProviderError> {
        gated!(self, self.inner.current())
    }
    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        gated!(self, self.inner.switch(to, token))
    }
}

/// One running dhaf node.
pub struct TestNode {
    /// `dhaf.node-name`.
    pub name: String,
    /// What this node's checks see.
    pub checker: ScriptedChecker,
    /// What this node told.
    pub notifier: RecordingNotifier,
    /// Its status and commands.
    pub handle: NodeHandle,
    /// Stops every DCS call it makes.
    pub pause: Pause,
    /// Stops every switcher call it makes.
    pub pause_switcher: Pause,
    /// Its DCS calls by method.
    pub dcs_calls: CallCounts,
    /// The real etcd DCS under its pausable one.
    pub dcs: Arc<EtcdDcs>,
    /// The id of the thread it runs on, when it has one of its own ([`TestCluster::start_threaded`]).
    pub thread: Option<u32>,
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestNode {
    /// Whether its task still runs.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Kill it: abort its tasks without resigning or revoking, as a crash would.
    pub async fn kill(&mut self) {
        assert!(self.thread.is_none(), "a node on a thread of its own can only be stopped");
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.stop = None;
    }

    /// Stop it cleanly: resign and revoke its lease.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    /// The events it notified.
    pub fn events(&self) -> Vec<Event> {
        self.notifier.events()
    }

    /// How many events `pred` matched.
    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }
}

/// The etcd DCS of `config`'s `etcd` section.
fn etcd_of(config: &Config) -> EtcdDcs {
    let section = config.dcs.as_ref().expect("an etcd section");
    let f = section.fields();
    let etcd = EtcdConfig::parse(&f).expect("etcd hosts");
    f.into_result(()).expect("a valid etcd section");
    EtcdDcs::new(&etcd, &config.dhaf.cluster_name)
}

/// dhaf nodes over one etcd cluster.
pub struct TestCluster {
    /// The shape.
    pub spec: Spec,
    /// `dhaf.cluster-name`.
    pub name: String,
    /// The nodes, `n1`, `n2`, …
    pub nodes: Vec<TestNode>,
    /// One fake far end per service, each pointing at its first entry point at start.
    pub providers: Vec<FakeProvider>,
    /// A DCS handle of its own, for looking at the cluster's data.
    pub observer: EtcdDcs,
}

impl TestCluster {
    /// Start `spec.nodes` nodes on etcd `hosts`.
    pub fn start(spec: Spec, name: &str, hosts: &str) -> TestCluster {
        Self::start_with(spec, name, hosts, false)
    }

    /// Start `spec.nodes` nodes on etcd `hosts`, each on a thread and tokio runtime of its own,
    /// so that each one's CPU time can be read apart ([`TestNode::thread`]). They can be
    /// stopped, not killed.
    pub fn start_threaded(spec: Spec, name: &str, hosts: &str) -> TestCluster {
        Self::start_with(spec, name, hosts, true)
    }

    fn start_with(spec: Spec, name: &str, hosts: &str, threaded: bool) -> TestCluster {
        let providers: Vec<FakeProvider> = (0..spec.services).map(|s| FakeProvider::new(Some(&ep(s, 0)))).collect();
        let probe = Config::parse(&config_yaml(&spec, name, "observer", hosts)).expect("valid test config");
        let observer = etcd_of(&probe);
        let mut cluster = TestCluster { spec, name: name.into(), nodes: Vec::new(), providers, observer };
        for i in 0..cluster.spec.nodes {
            let node = cluster.make_node(&format!("n{}", i + 1), hosts, threaded);
            cluster.nodes.push(node);
        }
        cluster
    }

    fn make_node(&self, node: &str, hosts: &str, threaded: bool) -> TestNode {
        let config = Config::parse(&config_yaml(&self.spec, &self.name, node, hosts)).expect("valid test config");
        let etcd = Arc::new(etcd_of(&config));
        let pause = Pause::new();
        let pause_switcher = Pause::new();
        let dcs_calls = CallCounts::default();
        let dcs: Arc<dyn Dcs> =
            Arc::new(InterceptingDcs::new(etcd.clone(), PausedCalls { pause: pause.clone(), counts: dcs_calls.clone() }));
        let checker = ScriptedChecker::new();
        let notifier = RecordingNotifier::new();
        let providers = Providers {
            services: self
                .providers
                .iter()
                .map(|p| ServiceProviders {
                    checker: Arc::new(checker.clone()),
                    switcher: Arc::new(PausableSwitcher { inner: p.switcher(node), pause: pause_switcher.clone() }),
                })
                .collect(),
            notifiers: vec![("recorder".into(), Arc::new(notifier.clone()))],
        };
        let n = Node::new(config, dcs, providers);
        let handle = n.handle();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let run = async move {
            n.run(async move {
                let _ = stop_rx.await;
            })
            .await
            .expect("node runs");
        };
        let (task, thread) = if threaded {
            let (started, thread) = std::sync::mpsc::channel();
            let (done, finished) = oneshot::channel::<()>();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
                // `/proc/thread-self` links to `<pid>/task/<tid>`.
                let tid = std::fs::read_link("/proc/thread-self").ok().and_then(|p| p.file_name()?.to_str()?.parse().ok());
                let _ = started.send(tid);
                runtime.block_on(run);
                let _ = done.send(());
            });
            let thread = thread.recv().expect("the node's thread starts");
            (
                tokio::spawn(async move {
                    let _ = finished.await;
                }),
                thread,
            )
        } else {
            (tokio::spawn(run), None)
        };
        TestNode {
            name: node.into(),
            checker,
            notifier,
            handle,
            pause,
            pause_switcher,
            dcs_calls,
            dcs: etcd,
            thread,
            task: Some(task),
            stop: Some(stop_tx),
        }
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &TestNode {
        self.nodes.iter().find(|n| n.name == name).expect("known node")
    }

    /// Mutable access to the node called `name`.
    pub fn node_mut(&mut self, name: &str) -> &mut TestNode {
        self.nodes.iter_mut().find(|n| n.name == name).expect("known node")
    }

    /// The cluster's data as etcd holds it now.
    pub async fn snapshot(&self) -> Snapshot {
        self.observer.snapshot().await.expect("etcd answers the observer")
    }

    /// Wait until `f` holds on the cluster's data, or fail after `limit`.
    pub async fn wait_for(&self, what: &str, limit: Duration, f: impl Fn(&Snapshot) -> bool) -> Snapshot {
        let start = tokio::time::Instant::now();
        loop {
            if let Ok(s) = self.observer.snapshot().await {
                if f(&s) {
                    return s;
                }
            }
            assert!(start.elapsed() < limit, "timed out after {limit:?} waiting until {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until every running node is alive, one leads, and service `s` has a record.
    pub async fn wait_settled(&self, limit: Duration) -> Snapshot {
        let running: Vec<String> = self.nodes.iter().filter(|n| n.is_running()).map(|n| n.name.clone()).collect();
        let services = self.spec.services;
        self.wait_for("the cluster settles", limit, |s| {
            running.iter().all(|n| s.alive.contains(n)) && s.leader.is_some() && s.records.len() == services
        })
        .await
    }

    /// Every switch call on service `s`'s provider.
    pub fn calls(&self, s: usize) -> Vec<SwitchCall> {
        self.providers[s].calls()
    }

    /// Every node's `LeaderElected` events: (node, term).
    pub fn terms(&self) -> Vec<(String, FencingToken)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            for e in n.events() {
                if let Event::LeaderElected { node, token } = e {
                    out.push((node, token));
                }
            }
        }
        out
    }

    /// Every switch was made under a term its node was elected to, one node per term, and
    /// terms only grow: at most one writer per term.
    pub fn assert_fenced(&self) {
        let terms = self.terms();
        for s in 0..self.spec.services {
            let calls = self.calls(s);
            for c in &calls {
                assert!(
                    terms.iter().any(|(n, t)| *n == c.node && *t == c.token),
                    "switch {c:?} names a term its node was never elected to (terms: {terms:?})"
                );
                let writers: Vec<&String> = calls.iter().filter(|o| o.token == c.token).map(|o| &o.node).collect();
                assert!(writers.iter().all(|w| **w == c.node), "term {} has several writers: {writers:?}", c.token);
            }
            for w in calls.windows(2) {
                assert!(w[0].token <= w[1].token, "a switch under an older term came later: {calls:?}");
            }
        }
        for (n, t) in &terms {
            assert!(terms.iter().all(|(m, u)| u != t || m == n), "term {t} was given to two nodes: {terms:?}");
        }
    }

    /// Stop every node cleanly.
    pub async fn stop_all(&mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
    }
}
