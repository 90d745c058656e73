//! The provider traits: how dhaf checks entry points, switches services and tells people.
//!
//! Providers are plain trait objects. One checker and one switcher are built per service from its
//! config section (so they know the service's domain and entry points); notifiers are built once
//! per cluster. Built-in providers live in `dhaf-providers`; an embedder implements these traits
//! and registers a factory in the [`crate::registry::Registry`] under a `type` name.
//!
//! The traits are async through [`macro@crate::async_trait`] (re-exported by this crate): put
//! `#[async_trait]` on every `impl` of them, or rustc reports E0195 ("lifetime parameters or
//! bounds on method … do not match the trait declaration") pointing at the trait.
//!
//! What the runtime does with each call, so a provider need not guess:
//!
//! | call | bounded by | on error |
//! |---|---|---|
//! | `init` (all three) | 60 s | the node does not start ([`crate::runtime::NodeError::ProviderInit`]) |
//! | [`HealthChecker::check`] | [`HealthChecker::timeout`] (default 30 s) | it returns [`Health`], not an error; overrunning counts as unhealthy |
//! | [`Switcher::current`] | 10 s | the live state is unknown this round; read again next round |
//! | [`Switcher::switch`] | the leader's lease deadline | retried, after the error's `retry_after` (5 minutes at most), or 5 minutes when permanent; see [`Switcher::switch`] |
//! | [`Notifier::notify`] | 60 s per attempt | retried, see [`Notifier::notify`] |
//!
//! A provider that panics is caught: a check's panic counts as an unhealthy result, a switch's as
//! a failed switch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::ServiceConfig;
use crate::dcs::{Dcs, DcsError};
use crate::model::{EntryPoint, FencingToken, Health, Notification};

/// Checks the health of the entry points of one service.
#[async_trait]
pub trait HealthChecker: Send + Sync {
    /// Prepare (e.g. run an `init` script); called once at start. An error stops the node.
    async fn init(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Check one entry point. A failed check is an observation: return
    /// [`Health::Unhealthy`] with a reason a person understands, never panic.
    ///
    /// The runtime bounds the call by [`HealthChecker::timeout`] and counts overrunning it as
    /// unhealthy. It runs in a task of its own (a panic counts as unhealthy), at most
    /// `dhaf.check-concurrency` at once on a node, once per entry point every
    /// `dhaf.tact-interval`; the runtime never retries a check (`rise`/`fall` smooth them out).
    /// Return [`Health::Abstain`] when this node cannot check at all (out of descriptors): it is
    /// no evidence about the entry point, and the node's vote is withdrawn.
    async fn check(&self, entry_point: &EntryPoint) -> Health;

    /// The longest one check (with any retries of its own) may take; the default, 30 s, suits a
    /// network check over the internet. Keep it below `dhaf.tact-interval` × `fall` or slow
    /// checks delay the failover.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// Points one service's public entry at one of its entry points.
#[async_trait]
pub trait Switcher: Send + Sync {
    /// Prepare and verify (credentials, the record exists, …); called on every node at start.
    /// An error stops the node with its message.
    async fn init(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The entry point the provider points at now (its live state), by name; `None` if it points
    /// at none of the configured entry points.
    ///
    /// The leader reads it back after every switch and periodically, and repairs drift.
    async fn current(&self) -> Result<Option<String>, ProviderError>;

    /// Whether [`current`](Self::current) can read the live state at all. A switcher that cannot
    /// (an `exec` switcher without a `current` script) is never read back: the leader trusts its
    /// own switches, repairs no drift, and status says the live state is unknown.
    fn reads_back(&self) -> bool {
        true
    }

    /// Point the service at `to`. `token` is the leader term that decided it; providers that can
    /// carry it (a DNS record's comment) write it, so every write traces to a term.
    ///
    /// Only the leader calls it, after recording the switch in the DCS under its term, and never
    /// past its lease deadline: a call still running then is cut short and counts as failed.
    /// A failed switch is retried, as the same kind of switch, until it goes through or the engine
    /// decides otherwise ([`crate::engine::ServiceState::switch_failed`]); the error's kind says
    /// when:
    ///
    /// - [`ProviderError::Transient`] (a timeout, a 5xx, a 429): after
    ///   [`crate::engine::SWITCH_RETRY_BASE`], doubling up to [`crate::engine::SWITCH_RETRY_MAX`].
    ///   Its `retry_after`, when set, is waited out (up to [`crate::engine::RETRY_AFTER_MAX`])
    ///   before any switch of the service is tried again: return the far end's `Retry-After` there
    ///   rather than sleep in `switch`.
    /// - [`ProviderError::Permanent`] (a refused token, a request the far end will never
    ///   accept): after [`crate::engine::SWITCH_RETRY_PERMANENT`] (5 minutes), not in a loop that
    ///   would only repeat the refusal and spend the provider's rate limit. It is tried at once
    ///   when the fix can be seen — the config is reloaded (a new token), another node leads, an
    ///   operator requests a switchover to that target — and a switch to another target is not
    ///   held back by it.
    ///
    /// The first failure is told ([`crate::model::Event::SwitchFailed`], with the error), then
    /// again after [`crate::engine::STILL_FAILING_AFTER`] attempts, and the recovery; status shows
    /// the switch as failing meanwhile. Make it idempotent: a switch whose outcome was lost (a
    /// leader change mid-call) is made again.
    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError>;
}

/// Tells people what happened.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Deliver one notification. The runtime never waits on a notifier before switching: each
    /// notifier has its own ordered queue. An attempt is bounded by 60 s (overrunning is a
    /// transient failure); a [`ProviderError::Transient`] is tried again after its `retry_after`,
    /// or after 1 s doubling up to 60 s, at most 5 attempts in all; a
    /// [`ProviderError::Permanent`] drops the notification at once. A dropped notification is
    /// logged. When the node stops, queued notifications get 5 s more.
    async fn notify(&self, notification: &Notification) -> Result<(), ProviderError>;

    /// Background work only the leader does (a Telegram bot's long polling), run while this node
    /// leads and dropped when it stops leading. The default does nothing.
    async fn lead(&self) -> Result<(), ProviderError> {
        std::future::pending().await
    }
}

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: a timeout, a 5xx, a 429, a script that exited non-zero.
    #[error("{message}")]
    Transient {
        /// What failed, for people.
        message: String,
        /// How long the far end asked us to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// Retrying will not help until someone fixes something (bad token, missing record).
    #[error("{0}")]
    Permanent(String),
}

impl ProviderError {
    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError::Transient { message: message.into(), retry_after: None }
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        ProviderError::Permanent(message.into())
    }
}

/// What a provider factory gets besides its config section.
#[derive(Clone)]
pub struct BuildContext {
    /// `dhaf.cluster-name`.
    pub cluster: String,
    /// `dhaf.node-name`.
    pub node: String,
    /// The service, for checkers and switchers; `None` for notifiers.
    pub service: Option<ServiceConfig>,
    /// The provider's own namespace in the DCS (e.g. a Telegram bot's subscribers).
    pub store: ProviderStore,
    /// What relative paths in the section are resolved against ([`crate::config::Config::base_dir`]).
    pub base_dir: PathBuf,
}

impl BuildContext {
    /// The service of a checker or switcher factory.
    ///
    /// # Panics
    /// When called for a notifier, which has no service.
    pub fn service(&self) -> &ServiceConfig {
        self.service.as_ref().expect("checkers and switchers are built for a service")
    }
}

/// A namespaced key-value store in the DCS for one provider instance.
///
/// Every node sees the same data, so state a provider keeps here survives a change of leader.
#[derive(Clone)]
pub struct ProviderStore {
    dcs: Arc<dyn Dcs>,
    namespace: String,
}

impl ProviderStore {
    /// The store of `namespace` in `dcs`.
    pub fn new(dcs: Arc<dyn Dcs>, namespace: impl Into<String>) -> Self {
        ProviderStore { dcs, namespace: namespace.into() }
    }

    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<String>, DcsError> {
        self.dcs.kv_get(&self.namespace, key).await
    }

    /// Set `key`.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), DcsError> {
        self.dcs.kv_put(&self.namespace, key, value).await
    }

    /// Remove `key`.
    pub async fn delete(&self, key: &str) -> Result<(), DcsError> {
        self.dcs.kv_delete(&self.namespace, key).await
    }

    /// Every key and value, sorted by key.
    pub async fn list(&self) -> Result<Vec<(String, String)>, DcsError> {
        self.dcs.kv_list(&self.namespace).await
    }
}
