//! The provider registry: builds checkers, switchers and notifiers from config by their `type`.
//!
//! An embedder's provider is registered here under a name and then written in YAML exactly like
//! a built-in:
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use dhaf_core::model::{EntryPoint, Health};
//! use dhaf_core::provider::HealthChecker;
//! use dhaf_core::registry::Registry;
//!
//! struct AlwaysUp;
//! #[async_trait]
//! impl HealthChecker for AlwaysUp {
//!     async fn check(&self, _: &EntryPoint) -> Health { Health::Healthy }
//! }
//!
//! let mut registry = Registry::new();
//! registry.checker("always-up", |section, _ctx| {
//!     section.fields().into_result(Arc::new(AlwaysUp) as Arc<dyn HealthChecker>)
//! });
//! assert!(registry.checker_types().contains(&"always-up".to_string()));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, ConfigError, ConfigProblem, ProviderConfig};
use crate::dcs::Dcs;
use crate::provider::{BuildContext, HealthChecker, Notifier, ProviderStore, Switcher};

type Factory<T> = Arc<dyn Fn(&ProviderConfig, &BuildContext) -> Result<Arc<T>, ConfigError> + Send + Sync>;

/// Factories by `type` name.
#[derive(Clone, Default)]
pub struct Registry {
    checkers: BTreeMap<String, Factory<dyn HealthChecker>>,
    switchers: BTreeMap<String, Factory<dyn Switcher>>,
    notifiers: BTreeMap<String, Factory<dyn Notifier>>,
}

/// The providers of one service.
#[derive(Clone)]
pub struct ServiceProviders {
    /// Its health checker.
    pub checker: Arc<dyn HealthChecker>,
    /// Its switcher.
    pub switcher: Arc<dyn Switcher>,
}

/// Every provider a node runs, built from its config.
#[derive(Clone, Default)]
pub struct Providers {
    /// Per service, in config order.
    pub services: Vec<ServiceProviders>,
    /// Notifiers with their names.
    pub notifiers: Vec<(String, Arc<dyn Notifier>)>,
}

impl Registry {
    /// An empty registry (`dhaf_providers::registry()` has the built-ins).
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a health checker factory under `kind`.
    pub fn checker<F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        F: Fn(&ProviderConfig, &BuildContext) -> Result<Arc<dyn HealthChecker>, ConfigError> + Send + Sync + 'static,
    {
        self.checkers.insert(kind.into(), Arc::new(factory));
        self
    }

    /// Register a switcher factory under `kind`.
    pub fn switcher<F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        F: Fn(&ProviderConfig, &BuildContext) -> Result<Arc<dyn Switcher>, ConfigError> + Send + Sync + 'static,
    {
        self.switchers.insert(kind.into(), Arc::new(factory));
        self
    }

    /// Register a notifier factory under `kind`.
    pub fn notifier<F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        F: Fn(&ProviderConfig, &BuildContext) -> Result<Arc<dyn Notifier>, ConfigError> + Send + Sync + 'static,
    {
        self.notifiers.insert(kind.into(), Arc::new(factory));
        self
    }

    /// The registered checker types.
    pub fn checker_types(&self) -> Vec<String> {
        self.checkers.keys().cloned().collect()
    }

    /// Build every provider of `config`, collecting every problem (unknown types, bad settings).
    ///
    /// Building does no I/O; `init` does, at start.
    pub fn build(&self, config: &Config, dcs: Arc<dyn Dcs>) -> Result<Providers, ConfigError> {
        let mut problems: Vec<ConfigProblem> = Vec::new();
        let mut providers = Providers::default();
        let ctx = |service: Option<&crate::config::ServiceConfig>, ns: String| BuildContext {
            cluster: config.dhaf.cluster_name.clone(),
            node: config.dhaf.node_name.clone(),
            service: service.cloned(),
            store: ProviderStore::new(dcs.clone(), ns),
            base_dir: config.base_dir.clone(),
        };
        for s in &config.services {
            let checker = build_one(&self.checkers, &s.health_checker, &ctx(Some(s), format!("checker.{}", s.name)), &mut problems);
            let switcher = build_one(&self.switchers, &s.switcher, &ctx(Some(s), format!("switcher.{}", s.name)), &mut problems);
            if let (Some(checker), Some(switcher)) = (checker, switcher) {
                providers.services.push(ServiceProviders { checker, switcher });
            }
        }
        for n in &config.notifiers {
            let name = n.name.clone().unwrap_or_else(|| n.kind.clone());
            if let Some(notifier) = build_one(&self.notifiers, n, &ctx(None, format!("notifier.{name}")), &mut problems) {
                providers.notifiers.push((name, notifier));
            }
        }
        if problems.is_empty() {
            Ok(providers)
        } else {
            Err(ConfigError { problems })
        }
    }
}

fn build_one<T: ?Sized>(
    factories: &BTreeMap<String, Factory<T>>,
    section: &ProviderConfig,
    ctx: &BuildContext,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Arc<T>> {
    let Some(factory) = factories.get(&section.kind) else {
        let known: Vec<&str> = factories.keys().map(String::as_str).collect();
        problems.push(ConfigProblem {
            path: format!("{}.type", section.path),
            message: format!("unknown provider type '{}' (known: {})", section.kind, known.join(", ")),
        });
        return None;
    };
    match factory(section, ctx) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.extend(e.problems);
            None
        }
    }
}
