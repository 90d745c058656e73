//! The provider registry: builds checkers, switchers, notifiers and the DCS from config by their
//! `type`.
//!
//! An embedder's provider is registered here under a name and then written in YAML exactly like
//! a built-in:
//!
//! A factory reads its section's settings with [`crate::config::Fields`] and returns the provider
//! itself, an `Arc` of it, or an `Arc<dyn …>`; [`crate::config::Fields::into_result`] refuses
//! keys the factory never read, so a typo in the section is an error naming its key path.
//!
//! ```
//! use dhaf_core::async_trait;
//! use dhaf_core::config::{Config, ProviderConfig, ServiceConfig};
//! use dhaf_core::dcs::memory::MemoryDcs;
//! use dhaf_core::model::{EntryPoint, Health};
//! use dhaf_core::provider::HealthChecker;
//! use dhaf_core::registry::Registry;
//! # use dhaf_core::{model::FencingToken, provider::{ProviderError, Switcher}};
//! # struct Noop;
//! # #[async_trait]
//! # impl Switcher for Noop {
//! #     async fn current(&self) -> Result<Option<String>, ProviderError> { Ok(None) }
//! #     async fn switch(&self, _: &EntryPoint, _: FencingToken) -> Result<(), ProviderError> { Ok(()) }
//! # }
//!
//! struct AlwaysUp {
//!     reason: String,
//! }
//! #[async_trait]
//! impl HealthChecker for AlwaysUp {
//!     async fn check(&self, _: &EntryPoint) -> Health { Health::Healthy }
//! }
//!
//! let mut registry = Registry::new();
//! registry.checker("always-up", |section, _ctx| {
//!     let f = section.fields();
//!     let reason = f.string("reason").unwrap_or_default();
//!     f.into_result(AlwaysUp { reason })
//! });
//! registry.switcher("noop", |section, _ctx| section.fields().into_result(Noop));
//!
//! let config = |checker: ProviderConfig| {
//!     Config::new("c", "n1").with_service(
//!         ServiceConfig::new("web", "example.com", checker, ProviderConfig::new("noop"))
//!             .with_entry_point("a", "10.0.0.1".parse().unwrap()),
//!     )
//! };
//! let dcs = std::sync::Arc::new(MemoryDcs::new("c"));
//! let good = config(ProviderConfig::new("always-up").with_setting("reason", "fine"));
//! assert!(registry.build(&good, dcs.clone()).is_ok());
//! let typo = config(ProviderConfig::new("always-up").with_setting("reson", "fine"));
//! let err = registry.build(&typo, dcs).err().unwrap();
//! assert!(err.problems[0].to_string().starts_with("services[0].health-checker.reson: unknown key"), "{err}");
//! ```
//!
//! Registering a type name twice is a mistake the registry reports at [`Registry::build`]
//! (the first registration stays).
//!
//! The DCS is chosen the same way ([`Registry::dcs_type`], built by [`Registry::dcs`]): the
//! config's DCS section (the seed's `etcd:`, or `dcs:` with a `type`) names a registered DCS; a
//! config without one runs on the embedded [`MemoryDcs`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, ConfigError, ConfigProblem, ProviderConfig};
use crate::dcs::memory::MemoryDcs;
use crate::dcs::{Dcs, DcsContext};
use crate::provider::{BuildContext, HealthChecker, Notifier, ProviderStore, Switcher};

type Factory<T, C = BuildContext> = Arc<dyn Fn(&ProviderConfig, &C) -> Result<Arc<T>, ConfigError> + Send + Sync>;

/// What a factory may return for a provider of trait `T` (`dyn HealthChecker`, …): the provider
/// itself, an `Arc` of it, or an `Arc<T>` already.
pub trait IntoProvider<T: ?Sized> {
    /// The shared provider.
    fn into_provider(self) -> Arc<T>;
}

macro_rules! into_provider {
    ($trait:ident) => {
        impl<P: $trait + 'static> IntoProvider<dyn $trait> for P {
            fn into_provider(self) -> Arc<dyn $trait> {
                Arc::new(self)
            }
        }
        impl<P: $trait + 'static> IntoProvider<dyn $trait> for Arc<P> {
            fn into_provider(self) -> Arc<dyn $trait> {
                self
            }
        }
        impl IntoProvider<dyn $trait> for Arc<dyn $trait> {
            fn into_provider(self) -> Arc<dyn $trait> {
                self
            }
        }
    };
}
into_provider!(HealthChecker);
into_provider!(Switcher);
into_provider!(Notifier);
into_provider!(Dcs);

/// Factories by `type` name.
#[derive(Clone, Default)]
pub struct Registry {
    checkers: BTreeMap<String, Factory<dyn HealthChecker>>,
    switchers: BTreeMap<String, Factory<dyn Switcher>>,
    notifiers: BTreeMap<String, Factory<dyn Notifier>>,
    dcs: BTreeMap<String, Factory<dyn Dcs, DcsContext>>,
    /// Type names registered more than once, said at build: `checker 'web'`.
    duplicates: Vec<String>,
}

fn register<T: ?Sized + 'static, C: 'static, P, F>(
    factories: &mut BTreeMap<String, Factory<T, C>>,
    duplicates: &mut Vec<String>,
    what: &str,
    kind: &str,
    factory: F,
) where
    P: IntoProvider<T>,
    F: Fn(&ProviderConfig, &C) -> Result<P, ConfigError> + Send + Sync + 'static,
{
    if factories.contains_key(kind) {
        duplicates.push(format!("{what} type '{kind}'"));
        return;
    }
    factories.insert(kind.into(), Arc::new(move |section, ctx| factory(section, ctx).map(IntoProvider::into_provider)));
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

    /// Register a health checker factory under `kind` (a name registered already is reported
    /// by [`Registry::build`]).
    pub fn checker<P, F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        P: IntoProvider<dyn HealthChecker>,
        F: Fn(&ProviderConfig, &BuildContext) -> Result<P, ConfigError> + Send + Sync + 'static,
    {
        register(&mut self.checkers, &mut self.duplicates, "checker", kind, factory);
        self
    }

    /// Register a switcher factory under `kind` (a name registered already is reported by
    /// [`Registry::build`]).
    pub fn switcher<P, F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        P: IntoProvider<dyn Switcher>,
        F: Fn(&ProviderConfig, &BuildContext) -> Result<P, ConfigError> + Send + Sync + 'static,
    {
        register(&mut self.switchers, &mut self.duplicates, "switcher", kind, factory);
        self
    }

    /// Register a notifier factory under `kind` (a name registered already is reported by
    /// [`Registry::build`]).
    pub fn notifier<P, F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        P: IntoProvider<dyn Notifier>,
        F: Fn(&ProviderConfig, &BuildContext) -> Result<P, ConfigError> + Send + Sync + 'static,
    {
        register(&mut self.notifiers, &mut self.duplicates, "notifier", kind, factory);
        self
    }

    /// Register a DCS factory under `kind`: a config's `etcd:` section is built by the one
    /// registered as `etcd`, a `dcs:` section by the one its `type` names (a name registered
    /// already is reported by [`Registry::build`] and [`Registry::dcs`]).
    pub fn dcs_type<P, F>(&mut self, kind: &str, factory: F) -> &mut Self
    where
        P: IntoProvider<dyn Dcs>,
        F: Fn(&ProviderConfig, &DcsContext) -> Result<P, ConfigError> + Send + Sync + 'static,
    {
        register(&mut self.dcs, &mut self.duplicates, "dcs", kind, factory);
        self
    }

    /// The DCS `config` names: its DCS section built by the registered factory, or without one
    /// the embedded [`MemoryDcs`], kept in `dhaf.state-file` when set. Every problem is named by
    /// its key path; nothing connects yet (a DCS connects on first use), only the state file is
    /// read.
    pub fn dcs(&self, config: &Config) -> Result<Arc<dyn Dcs>, ConfigError> {
        let cluster = &config.dhaf.cluster_name;
        let Some(section) = &config.dcs else {
            return Ok(match &config.dhaf.state_file {
                None => Arc::new(MemoryDcs::new(cluster)),
                Some(path) => {
                    Arc::new(MemoryDcs::with_state_file(cluster, path).map_err(|e| ConfigError::at("dhaf.state-file", e.to_string()))?)
                }
            });
        };
        let mut problems = self.duplicate_problems();
        let ctx = DcsContext { cluster: cluster.clone(), node: config.dhaf.node_name.clone(), base_dir: config.base_dir.clone() };
        match build_one(&self.dcs, section, &ctx, &mut problems) {
            Some(dcs) if problems.is_empty() => Ok(dcs),
            _ => Err(ConfigError { problems }),
        }
    }

    fn duplicate_problems(&self) -> Vec<ConfigProblem> {
        self.duplicates
            .iter()
            .map(|d| ConfigProblem { path: String::new(), message: format!("{d} is registered twice; rename one") })
            .collect()
    }

    /// The registered checker types.
    pub fn checker_types(&self) -> Vec<String> {
        self.checkers.keys().cloned().collect()
    }

    /// Build every provider of `config`, collecting every problem (a type name registered twice,
    /// unknown types, bad settings).
    ///
    /// Building does no I/O; `init` does, at start.
    pub fn build(&self, config: &Config, dcs: Arc<dyn Dcs>) -> Result<Providers, ConfigError> {
        let mut problems = self.duplicate_problems();
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

fn build_one<T: ?Sized, C>(
    factories: &BTreeMap<String, Factory<T, C>>,
    section: &ProviderConfig,
    ctx: &C,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Arc<T>> {
    let Some(factory) = factories.get(&section.kind) else {
        let known: Vec<&str> = factories.keys().map(String::as_str).collect();
        // A section keyed by its type (the seed's `etcd:`) has no `type` key to name.
        let at = if section.path == section.kind { section.path.clone() } else { format!("{}.type", section.path) };
        problems
            .push(ConfigProblem { path: at, message: format!("unknown provider type '{}' (known: {})", section.kind, known.join(", ")) });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceConfig;
    use crate::dcs::memory::MemoryDcs;
    use crate::testing::{FakeProvider, ScriptedChecker};

    #[test]
    fn a_type_registered_twice_is_refused_at_build() {
        let mut registry = Registry::new();
        let fake = FakeProvider::new(None);
        registry
            .checker("scripted", |s, _| s.fields().into_result(ScriptedChecker::new()))
            .checker("scripted", |s, _| s.fields().into_result(Arc::new(ScriptedChecker::new())))
            .switcher("fake", move |s, ctx| s.fields().into_result(fake.switcher(&ctx.node)));
        let config = Config::new("c", "n1").with_service(
            ServiceConfig::new("web", "example.com", ProviderConfig::new("scripted"), ProviderConfig::new("fake"))
                .with_entry_point("a", "10.0.0.1".parse().unwrap()),
        );
        let err = registry.build(&config, Arc::new(MemoryDcs::new("c"))).err().unwrap();
        assert_eq!(err.problems[0].to_string(), "checker type 'scripted' is registered twice; rename one");
        assert_eq!(err.problems.len(), 1, "{err}");
    }

    const SEED: &str = "dhaf: { cluster-name: c, node-name: n1 }
services:
  - name: web
    domain: example.com
    entry-points: [{ name: a, ip: 10.0.0.1 }]
    health-checker: { type: scripted }
    switcher: { type: fake }
";

    fn with_dcs(section: &str) -> Config {
        Config::parse(&SEED.replace("services:", &format!("{section}\nservices:"))).expect("a valid config")
    }

    /// A DCS registered by an embedder: it keeps the cluster's data in a `MemoryDcs` and reads
    /// one setting of its own.
    fn registry_with_a_dcs() -> (Registry, Arc<std::sync::Mutex<Vec<String>>>) {
        let built = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = built.clone();
        let mut registry = Registry::new();
        registry.dcs_type("etcd", move |section, ctx| {
            let f = section.fields();
            let hosts = f.required_string("hosts").unwrap_or_default();
            seen.lock().unwrap().push(format!("cluster {}, hosts {hosts}", ctx.cluster));
            f.into_result(MemoryDcs::new(&ctx.cluster))
        });
        (registry, built)
    }

    #[tokio::test]
    async fn the_dcs_section_is_built_by_the_factory_its_type_names() {
        let (registry, built) = registry_with_a_dcs();
        let dcs = registry.dcs(&with_dcs("etcd: { hosts: '10.0.0.1:2379' }")).expect("the etcd section builds");
        assert_eq!(*built.lock().unwrap(), ["cluster c, hosts 10.0.0.1:2379"]);
        dcs.register("n1", std::time::Duration::from_secs(5)).await.expect("the built dcs is the one in use");
        registry.dcs(&with_dcs("dcs: { type: etcd, hosts: '10.0.0.2:2379' }")).expect("`dcs:` with its type builds");
        assert_eq!(built.lock().unwrap()[1], "cluster c, hosts 10.0.0.2:2379");

        // Its settings are read like any provider's: a typo is named by its key path.
        let err = registry.dcs(&with_dcs("etcd: { hosts: '10.0.0.1:2379', hots: x }")).err().unwrap();
        assert_eq!(err.problems[0].to_string(), "etcd.hots: unknown key (known here: hosts)");
        let err = registry.dcs(&with_dcs("dcs: { type: consul }")).err().unwrap();
        assert_eq!(err.problems[0].to_string(), "dcs.type: unknown provider type 'consul' (known: etcd)");
        let err = Registry::new().dcs(&with_dcs("etcd: { hosts: '10.0.0.1:2379' }")).err().unwrap();
        assert_eq!(err.problems[0].to_string(), "etcd: unknown provider type 'etcd' (known: )");
    }

    #[test]
    fn without_a_dcs_section_the_node_runs_on_the_embedded_dcs() {
        let (registry, built) = registry_with_a_dcs();
        assert!(registry.dcs(&with_dcs("")).is_ok());
        assert!(built.lock().unwrap().is_empty(), "no factory is asked");
        let mut config = with_dcs("");
        let dir = std::env::temp_dir().join(format!("dhaf-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), "").unwrap();
        config.dhaf.state_file = Some(dir.join("state.json"));
        let err = registry.dcs(&config).err().expect("an empty state file is refused");
        assert!(err.problems[0].to_string().starts_with("dhaf.state-file: "), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
