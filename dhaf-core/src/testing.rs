//! Fakes next to the traits, for tests of dhaf and of embedders' code (feature `testing`).
//!
//! - [`ScriptedChecker`]: one node's vantage point; a test sets what each entry point looks like.
//! - [`FakeProvider`] / [`RecordingSwitcher`]: one shared far end (a DNS record, say) and each
//!   node's switcher to it; records every switch with the node and term that made it.
//! - [`RecordingNotifier`]: keeps every notification.
//! - [`InterceptingDcs`]: any DCS with an [`Interceptor`] around each call (count, delay, pause,
//!   refuse, lose the answer).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::dcs::{Dcs, DcsError, Leader, LeaseId, Purge, Snapshot, SwitchoverRequest, Watch};
use crate::model::{EntryPoint, Event, FencingToken, Health, Notification, Opinion, Pause, ServiceDefinition, SwitchRecord};
use crate::provider::{HealthChecker, Notifier, ProviderError, Switcher};

/// A checker whose answers the test sets; unknown entry points are healthy.
#[derive(Clone, Default)]
pub struct ScriptedChecker {
    health: Arc<Mutex<HashMap<String, Health>>>,
    delay: Arc<Mutex<Duration>>,
    delay_of: Arc<Mutex<HashMap<String, Duration>>>,
}

impl ScriptedChecker {
    /// A checker that finds everything healthy.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, entry point `ep` looks like `health`.
    pub fn set(&self, ep: &str, health: Health) {
        self.health.lock().unwrap().insert(ep.into(), health);
    }

    /// Entry point `ep` is down with `reason`.
    pub fn down(&self, ep: &str, reason: &str) {
        self.set(ep, Health::unhealthy(reason));
    }

    /// Entry point `ep` is up.
    pub fn up(&self, ep: &str) {
        self.set(ep, Health::Healthy);
    }

    /// Every check takes `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Every check of entry point `ep` takes `delay` (instead of the delay for all).
    pub fn set_delay_of(&self, ep: &str, delay: Duration) {
        self.delay_of.lock().unwrap().insert(ep.into(), delay);
    }
}

#[async_trait]
impl HealthChecker for ScriptedChecker {
    async fn check(&self, ep: &EntryPoint) -> Health {
        let delay = self.delay_of.lock().unwrap().get(&ep.name).copied().unwrap_or(*self.delay.lock().unwrap());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.health.lock().unwrap().get(&ep.name).cloned().unwrap_or(Health::Healthy)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// One switch the fake provider took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchCall {
    /// The node whose switcher called.
    pub node: String,
    /// The target.
    pub to: String,
    /// The term it named.
    pub token: FencingToken,
    /// When it landed, on tokio's clock.
    pub at: tokio::time::Instant,
    /// When the node's switcher was called (before a pause or a slow provider held it).
    pub started: tokio::time::Instant,
    /// Whether the caller got the answer ([`FakeProvider::lose_next_answers`] loses it).
    pub answered: bool,
}

#[derive(Default)]
struct FakeState {
    current: Option<String>,
    calls: Vec<SwitchCall>,
    failures_left: u32,
    /// What the failures return; a 502 (transient) when `None`.
    failure: Option<ProviderError>,
    /// When each switch call reached the far end, failed or not.
    attempts: Vec<tokio::time::Instant>,
    answers_to_lose: u32,
    delay: Duration,
    read_delay: Duration,
    /// Nodes whose calls wait, unsent, until they are no longer paused.
    paused: std::collections::BTreeSet<String>,
}

/// The far end every node's [`RecordingSwitcher`] talks to.
#[derive(Clone, Default)]
pub struct FakeProvider {
    state: Arc<Mutex<FakeState>>,
    /// Told when a pause changes, so held calls look again (in the order they were held).
    pauses: Arc<crate::signal::Signal>,
}

impl FakeProvider {
    /// A provider that points at `current`.
    pub fn new(current: Option<&str>) -> Self {
        let p = FakeProvider::default();
        p.state.lock().unwrap().current = current.map(str::to_string);
        p
    }

    /// Node `node`'s switcher.
    pub fn switcher(&self, node: &str) -> RecordingSwitcher {
        RecordingSwitcher { provider: self.clone(), node: node.into() }
    }

    /// Where it points now.
    pub fn current(&self) -> Option<String> {
        self.state.lock().unwrap().current.clone()
    }

    /// Change it behind dhaf's back (a hand edit).
    pub fn edit(&self, to: &str) {
        self.state.lock().unwrap().current = Some(to.into());
    }

    /// Every switch so far.
    pub fn calls(&self) -> Vec<SwitchCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The next `n` switches fail (a 5xx).
    pub fn fail_next(&self, n: u32) {
        let mut s = self.state.lock().unwrap();
        s.failures_left = n;
        s.failure = None;
    }

    /// The next `n` switches fail with `error` (a 429 with `retry_after`, a refused token).
    pub fn fail_next_with(&self, n: u32, error: ProviderError) {
        let mut s = self.state.lock().unwrap();
        s.failures_left = n;
        s.failure = Some(error);
    }

    /// When each switch call reached the far end, failed or not.
    pub fn attempts(&self) -> Vec<tokio::time::Instant> {
        self.state.lock().unwrap().attempts.clone()
    }

    /// The next `n` switches are carried out but their answer is lost: the caller gets an error
    /// (a connection reset after the request went out), while the provider points at the target.
    pub fn lose_next_answers(&self, n: u32) {
        self.state.lock().unwrap().answers_to_lose = n;
    }

    /// Every switch takes `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Pause node `node`: its switcher's calls wait, unsent, until it is let go again (a stopped
    /// process whose request goes out when it runs again).
    pub fn pause(&self, node: &str, on: bool) {
        let mut s = self.state.lock().unwrap();
        if on {
            s.paused.insert(node.into());
        } else {
            s.paused.remove(node);
        }
        drop(s);
        self.pauses.changed();
    }

    async fn wait_while_paused(&self, node: &str) {
        self.pauses.wait_until(|| !self.state.lock().unwrap().paused.contains(node)).await;
    }

    /// Every read-back (`current`) takes `delay`.
    pub fn set_read_delay(&self, delay: Duration) {
        self.state.lock().unwrap().read_delay = delay;
    }
}

/// One node's switcher to a [`FakeProvider`].
pub struct RecordingSwitcher {
    provider: FakeProvider,
    node: String,
}

#[async_trait]
impl Switcher for RecordingSwitcher {
    async fn current(&self) -> Result<Option<String>, ProviderError> {
        self.provider.wait_while_paused(&self.node).await;
        let delay = self.provider.state.lock().unwrap().read_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(self.provider.current())
    }

    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        let started = tokio::time::Instant::now();
        self.provider.wait_while_paused(&self.node).await;
        let delay = self.provider.state.lock().unwrap().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut s = self.provider.state.lock().unwrap();
        s.attempts.push(tokio::time::Instant::now());
        if s.failures_left > 0 {
            s.failures_left -= 1;
            return Err(s.failure.clone().unwrap_or_else(|| ProviderError::transient("HTTP 502 from the fake provider")));
        }
        s.current = Some(to.name.clone());
        let lost = s.answers_to_lose > 0;
        s.calls.push(SwitchCall {
            node: self.node.clone(),
            to: to.name.clone(),
            token,
            at: tokio::time::Instant::now(),
            started,
            answered: !lost,
        });
        if lost {
            s.answers_to_lose -= 1;
            return Err(ProviderError::transient("connection reset by peer after the request was sent"));
        }
        Ok(())
    }
}

/// A notifier that keeps every notification, and can be made to hang.
#[derive(Clone, Default)]
pub struct RecordingNotifier {
    got: Arc<Mutex<Vec<Notification>>>,
    hanging: Arc<(Mutex<bool>, crate::signal::Signal)>,
}

impl RecordingNotifier {
    /// A new, empty one.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.got.lock().unwrap().iter().map(|n| n.event.clone()).collect()
    }

    /// The notifications received so far.
    pub fn notifications(&self) -> Vec<Notification> {
        self.got.lock().unwrap().clone()
    }

    /// While `on`, every `notify` waits without answering (a mail server that accepts the
    /// connection and says nothing); what was sent arrives once it stops, if the caller waited.
    pub fn set_hanging(&self, on: bool) {
        *self.hanging.0.lock().unwrap() = on;
        self.hanging.1.changed();
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), ProviderError> {
        self.hanging.1.wait_until(|| !*self.hanging.0.lock().unwrap()).await;
        self.got.lock().unwrap().push(n.clone());
        Ok(())
    }
}

/// What an [`InterceptingDcs`] does around each call it passes on. Calls are named by their
/// [`Dcs`] method (`"record_switch"`, `"keep_alive"`, …); [`is_write`] tells writes from reads.
#[async_trait]
pub trait Interceptor: Send + Sync + 'static {
    /// Before the call: an error answers it without reaching the DCS.
    async fn before(&self, _method: &'static str) -> Result<(), DcsError> {
        Ok(())
    }

    /// After the call, whatever its answer: an error replaces the answer (as if it was lost on the
    /// way back, after the DCS carried the call out).
    async fn after(&self, _method: &'static str) -> Result<(), DcsError> {
        Ok(())
    }
}

/// Whether a [`Dcs`] method writes (everything but `snapshot`, `watch`, `kv_get` and `kv_list`).
pub fn is_write(method: &str) -> bool {
    !matches!(method, "snapshot" | "leader" | "watch" | "kv_get" | "kv_list")
}

/// How many calls of each [`Dcs`] method were made: an [`Interceptor`] that only counts.
#[derive(Clone, Default)]
pub struct CallCounts(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl CallCounts {
    /// Count one call of `method`.
    pub fn add(&self, method: &'static str) {
        *self.0.lock().unwrap().entry(method).or_default() += 1;
    }

    /// The calls of each method so far.
    pub fn get(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap().clone()
    }

    /// The writes so far (see [`is_write`]).
    pub fn writes(&self) -> u64 {
        self.0.lock().unwrap().iter().filter(|(m, _)| is_write(m)).map(|(_, n)| n).sum()
    }
}

#[async_trait]
impl Interceptor for CallCounts {
    async fn before(&self, method: &'static str) -> Result<(), DcsError> {
        self.add(method);
        Ok(())
    }
}

/// A [`Dcs`] that passes every call on to `inner`, with `hooks` around it.
#[derive(Clone)]
pub struct InterceptingDcs<I> {
    inner: Arc<dyn Dcs>,
    /// What happens around each call.
    pub hooks: I,
}

impl<I: Interceptor> InterceptingDcs<I> {
    /// `inner` with `hooks` around its calls.
    pub fn new(inner: Arc<dyn Dcs>, hooks: I) -> Self {
        InterceptingDcs { inner, hooks }
    }

    async fn around<T>(&self, method: &'static str, call: impl Future<Output = Result<T, DcsError>> + Send) -> Result<T, DcsError> {
        self.hooks.before(method).await?;
        let answer = call.await;
        self.hooks.after(method).await.and(answer)
    }
}

#[async_trait]
impl<I: Interceptor> Dcs for InterceptingDcs<I> {
    async fn register(&self, node: &str, ttl: Duration) -> Result<LeaseId, DcsError> {
        self.around("register", self.inner.register(node, ttl)).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.around("keep_alive", self.inner.keep_alive(lease)).await
    }
    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.around("revoke", self.inner.revoke(lease)).await
    }
    async fn campaign(&self, node: &str, lease: LeaseId) -> Result<Option<FencingToken>, DcsError> {
        self.around("campaign", self.inner.campaign(node, lease)).await
    }
    async fn resign(&self, token: FencingToken) -> Result<(), DcsError> {
        self.around("resign", self.inner.resign(token)).await
    }
    async fn publish_opinion(&self, node: &str, lease: LeaseId, service: &str, ep: &str, opinion: &Opinion) -> Result<(), DcsError> {
        self.around("publish_opinion", self.inner.publish_opinion(node, lease, service, ep, opinion)).await
    }
    async fn publish_definitions(
        &self,
        node: &str,
        lease: LeaseId,
        definitions: &BTreeMap<String, ServiceDefinition>,
    ) -> Result<(), DcsError> {
        self.around("publish_definitions", self.inner.publish_definitions(node, lease, definitions)).await
    }
    async fn withdraw_opinion(&self, node: &str, service: &str, ep: &str) -> Result<(), DcsError> {
        self.around("withdraw_opinion", self.inner.withdraw_opinion(node, service, ep)).await
    }
    async fn snapshot(&self) -> Result<Snapshot, DcsError> {
        self.around("snapshot", self.inner.snapshot()).await
    }
    async fn leader(&self) -> Result<Option<Leader>, DcsError> {
        self.around("leader", self.inner.leader()).await
    }
    async fn watch(&self) -> Result<Watch, DcsError> {
        self.around("watch", self.inner.watch()).await
    }
    async fn put_switchover(&self, service: &str, request: &SwitchoverRequest) -> Result<(), DcsError> {
        self.around("put_switchover", self.inner.put_switchover(service, request)).await
    }
    async fn purge_switchover(&self, service: &str, purge: Purge) -> Result<(), DcsError> {
        self.around("purge_switchover", self.inner.purge_switchover(service, purge)).await
    }
    async fn set_maintenance(&self, service: &str, ep: &str, on: bool) -> Result<(), DcsError> {
        self.around("set_maintenance", self.inner.set_maintenance(service, ep, on)).await
    }
    async fn set_pause(&self, pause: Option<&Pause>) -> Result<(), DcsError> {
        self.around("set_pause", self.inner.set_pause(pause)).await
    }
    async fn record_switch(&self, service: &str, record: &SwitchRecord) -> Result<(), DcsError> {
        self.around("record_switch", self.inner.record_switch(service, record)).await
    }
    async fn decommission(&self, node: &str) -> Result<(), DcsError> {
        self.around("decommission", self.inner.decommission(node)).await
    }
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<String>, DcsError> {
        self.around("kv_get", self.inner.kv_get(ns, key)).await
    }
    async fn kv_put(&self, ns: &str, key: &str, value: &str) -> Result<(), DcsError> {
        self.around("kv_put", self.inner.kv_put(ns, key, value)).await
    }
    async fn kv_put_if(&self, ns: &str, key: &str, value: &str, previous: Option<&str>, token: FencingToken) -> Result<bool, DcsError> {
        self.around("kv_put_if", self.inner.kv_put_if(ns, key, value, previous, token)).await
    }
    async fn kv_delete(&self, ns: &str, key: &str) -> Result<(), DcsError> {
        self.around("kv_delete", self.inner.kv_delete(ns, key)).await
    }
    async fn kv_list(&self, ns: &str) -> Result<Vec<(String, String)>, DcsError> {
        self.around("kv_list", self.inner.kv_list(ns)).await
    }
}
