//! The provider traits: how dhaf checks entry points, switches services and tells people.
//!
//! Providers are plain trait objects. One checker and one switcher are built per service from its
//! config section (so they know the service's domain and entry points); notifiers are built once
//! per cluster. Built-in providers live in `dhaf-providers`; an embedder implements these traits
//! and registers a factory in the [`crate::registry::Registry`] under a `type` name.

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
    /// unhealthy.
    async fn check(&self, entry_point: &EntryPoint) -> Health;

    /// The longest one check (with its retries) may take.
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
    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError>;
}

/// Tells people what happened.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Deliver one notification. The runtime retries failures with backoff; it never waits on a
    /// notifier before switching.
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
