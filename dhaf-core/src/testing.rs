//! Fakes next to the traits, for tests of dhaf and of embedders' code (feature `testing`).
//!
//! - [`ScriptedChecker`]: one node's vantage point; a test sets what each entry point looks like.
//! - [`FakeProvider`] / [`RecordingSwitcher`]: one shared far end (a DNS record, say) and each
//!   node's switcher to it; records every switch with the node and term that made it.
//! - [`RecordingNotifier`]: keeps every notification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{EntryPoint, Event, FencingToken, Health, Notification};
use crate::provider::{HealthChecker, Notifier, ProviderError, Switcher};

/// A checker whose answers the test sets; unknown entry points are healthy.
#[derive(Clone, Default)]
pub struct ScriptedChecker {
    health: Arc<Mutex<HashMap<String, Health>>>,
    delay: Arc<Mutex<Duration>>,
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
}

#[async_trait]
impl HealthChecker for ScriptedChecker {
    async fn check(&self, ep: &EntryPoint) -> Health {
        let delay = *self.delay.lock().unwrap();
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
        self.state.lock().unwrap().failures_left = n;
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
        if s.failures_left > 0 {
            s.failures_left -= 1;
            return Err(ProviderError::transient("HTTP 502 from the fake provider"));
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
