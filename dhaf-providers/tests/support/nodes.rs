//! In-process dhaf nodes over a real etcd cluster, with the testing fakes: a scripted checker
//! per node (its vantage point), one fake provider per service shared by every node's
//! switcher, a recording notifier per node, and a pause switch per node that blocks every DCS
//! and switcher call the node makes, as a stopped process would.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use dhaf_core::async_trait;
use dhaf_core::config::Config;
use dhaf_core::dcs::{Dcs, DcsError, LeaseId, Purge, Snapshot, Watch};
use dhaf_core::model::{EntryPoint, Event, FencingToken, Opinion, SwitchRecord};
use dhaf_core::provider::{ProviderError, Switcher};
use dhaf_core::registry::{Providers, ServiceProviders};
use dhaf_core::runtime::{Node, NodeHandle};
use dhaf_core::testing::{FakeProvider, RecordingNotifier, RecordingSwitcher, ScriptedChecker, SwitchCall};
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

/// A [`Dcs`] whose every call waits while its node is paused, before and after the call (an
/// answer that arrives during a pause is seen only after it).
pub struct PausableDcs {
    inner: Arc<dyn Dcs>,
    pause: Pause,
    counts: CallCounts,
}

/// How many calls of each DCS method a node made.
#[derive(Clone, Default)]
pub struct CallCounts(Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>);

impl CallCounts {
    fn add(&self, method: &'static str) {
        *self.0.lock().unwrap().entry(method).or_default() += 1;
    }

    /// Calls of each method so far.
    pub fn get(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.0.lock().unwrap().clone()
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

#[async_trait]
impl Dcs for PausableDcs {
    async fn register(&self, node: &str, ttl: Duration) -> Result<LeaseId, DcsError> {
        self.counts.add("register");
        gated!(self, self.inner.register(node, ttl))
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.counts.add("keep_alive");
        gated!(self, self.inner.keep_alive(lease))
    }
    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.counts.add("revoke");
        gated!(self, self.inner.revoke(lease))
    }
    async fn campaign(&self, node: &str, lease: LeaseId) -> Result<Option<FencingToken>, DcsError> {
        self.counts.add("campaign");
        gated!(self, self.inner.campaign(node, lease))
    }
    async fn resign(&self, token: FencingToken) -> Result<(), DcsError> {
        self.counts.add("resign");
        gated!(self, self.inner.resign(token))
    }
    async fn publish_opinion(&self, node: &str, lease: LeaseId, service: &str, ep: &str, opinion: &Opinion) -> Result<(), DcsError> {
        self.counts.add("publish_opinion");
        gated!(self, self.inner.publish_opinion(node, lease, service, ep, opinion))
    }
    async fn publish_definitions(
        &self,
        node: &str,
        lease: LeaseId,
        definitions: &std::collections::BTreeMap<String, dhaf_core::model::ServiceDefinition>,
    ) -> Result<(), DcsError> {
        self.counts.add("publish_definitions");
        gated!(self, self.inner.publish_definitions(node, lease, definitions))
    }
    async fn withdraw_opinion(&self, node: &str, service: &str, ep: &str) -> Result<(), DcsError> {
        self.counts.add("withdraw_opinion");
        gated!(self, self.inner.withdraw_opinion(node, service, ep))
    }
    async fn snapshot(&self) -> Result<Snapshot, DcsError> {
        self.counts.add("snapshot");
        gated!(self, self.inner.snapshot())
    }
    async fn watch(&self) -> Result<Watch, DcsError> {
        self.counts.add("watch");
        gated!(self, self.inner.watch())
    }
    async fn put_switchover(&self, service: &str, request: &dhaf_core::dcs::SwitchoverRequest) -> Result<(), DcsError> {
        self.counts.add("request_switchover");
        gated!(self, self.inner.put_switchover(service, request))
    }
    async fn purge_switchover(&self, service: &str, purge: Purge) -> Result<(), DcsError> {
        self.counts.add("purge_switchover");
        gated!(self, self.inner.purge_switchover(service, purge))
    }
    async fn set_maintenance(&self, service: &str, ep: &str, on: bool) -> Result<(), DcsError> {
        self.counts.add("set_maintenance");
        gated!(self, self.inner.set_maintenance(service, ep, on))
    }
    async fn set_pause(&self, pause: Option<&dhaf_core::model::Pause>) -> Result<(), DcsError> {
        self.counts.add("set_pause");
        gated!(self, self.inner.set_pause(pause))
    }
    async fn record_switch(&self, service: &str, record: &SwitchRecord) -> Result<(), DcsError> {
        self.counts.add("record_switch");
        gated!(self, self.inner.record_switch(service, record))
    }
    async fn decommission(&self, node: &str) -> Result<(), DcsError> {
        self.counts.add("decommission");
        gated!(self, self.inner.decommission(node))
    }
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<String>, DcsError> {
        self.counts.add("kv_get");
        gated!(self, self.inner.kv_get(ns, key))
    }
    async fn kv_put(&self, ns: &str, key: &str, value: &str) -> Result<(), DcsError> {
        self.counts.add("kv_put");
        gated!(self, self.inner.kv_put(ns, key, value))
    }
    async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), DcsError> {
        self.counts.add("kv_delete");
        gated!(self, self.inner.kv_delete(ns, key))
    }
    async fn kv_list(&self, ns: &str) -> Result<Vec<(String, String)>, DcsError> {
        self.counts.add("kv_list");
        gated!(self, self.inner.kv_list(ns))
    }
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
        let providers: Vec<FakeProvider> = (0..spec.services).map(|s| FakeProvider::new(Some(&ep(s, 0)))).collect();
        let probe = Config::parse(&config_yaml(&spec, name, "observer", hosts)).expect("valid test config");
        let observer = etcd_of(&probe);
        let mut cluster = TestCluster { spec, name: name.into(), nodes: Vec::new(), providers, observer };
        for i in 0..cluster.spec.nodes {
            let node = cluster.make_node(&format!("n{}", i + 1), hosts);
            cluster.nodes.push(node);
        }
        cluster
    }

    fn make_node(&self, node: &str, hosts: &str) -> TestNode {
        let config = Config::parse(&config_yaml(&self.spec, &self.name, node, hosts)).expect("valid test config");
        let etcd = Arc::new(etcd_of(&config));
        let pause = Pause::new();
        let pause_switcher = Pause::new();
        let dcs_calls = CallCounts::default();
        let dcs: Arc<dyn Dcs> = Arc::new(PausableDcs { inner: etcd.clone(), pause: pause.clone(), counts: dcs_calls.clone() });
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
        let task = tokio::spawn(async move {
            n.run(async move {
                let _ = stop_rx.await;
            })
            .await
            .expect("node runs");
        });
        TestNode {
            name: node.into(),
            checker,
            notifier,
            handle,
            pause,
            pause_switcher,
            dcs_calls,
            dcs: etcd,
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
