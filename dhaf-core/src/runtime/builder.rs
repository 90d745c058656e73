//! [`NodeBuilder`]: a node from its config, a DCS and a registry, checked before it runs.

use std::sync::Arc;

use super::{Node, NodeError};
use crate::config::{Config, ConfigError};
use crate::dcs::Dcs;
use crate::registry::{Providers, Registry};

/// Builds a [`Node`]: the config is validated and the providers are built from it by the
/// registry, so a node never starts with a config and providers that disagree. Made by
/// [`Node::builder`].
///
/// ```
/// use dhaf_core::config::{Config, ProviderConfig, ServiceConfig};
/// use dhaf_core::registry::Registry;
/// use dhaf_core::runtime::{Node, NodeError};
///
/// let config = Config::new("shop", "node-1").with_service(
///     ServiceConfig::new("web", "shop.example.com", ProviderConfig::new("my-checker"), ProviderConfig::new("my-switcher"))
///         .with_entry_point("primary", "10.0.0.1".parse().unwrap()),
/// );
/// // Nothing registered under those names: refused at build, naming the key.
/// let err = Node::builder(config).registry(&Registry::new()).build().err().unwrap();
/// assert!(matches!(&err, NodeError::Config(e) if e.problems[0].path == "services[0].health-checker.type"), "{err}");
/// ```
pub struct NodeBuilder {
    config: Config,
    dcs: Option<Arc<dyn Dcs>>,
    registry: Option<Registry>,
    providers: Option<Providers>,
}

impl Node {
    /// A builder for a node with `config`; see [`NodeBuilder`].
    pub fn builder(config: Config) -> NodeBuilder {
        NodeBuilder { config, dcs: None, registry: None, providers: None }
    }
}

impl NodeBuilder {
    /// The DCS the node registers, votes and leads in (one [`MemoryDcs::client`](crate::dcs::memory::MemoryDcs::client) per node
    /// for several nodes in one process). Without it the node runs on an embedded
    /// [`MemoryDcs`](crate::dcs::memory::MemoryDcs) of its own, kept in `dhaf.state-file` when the config names one; a config
    /// with a DCS section (`etcd:`) needs a DCS given, or the [`NodeBuilder::registry`] that
    /// builds it ([`Registry::dcs`]).
    pub fn dcs(mut self, dcs: Arc<dyn Dcs>) -> Self {
        self.dcs = Some(dcs);
        self
    }

    /// Build the providers the config names from `registry` (an empty registry when neither
    /// this nor [`NodeBuilder::providers`] is given).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Providers built already, one per service in config order; a count that does not match
    /// the config is refused at [`NodeBuilder::build`].
    pub fn providers(mut self, providers: Providers) -> Self {
        self.providers = Some(providers);
        self
    }

    /// The node, or every problem: the config's ([`Config::validate`]), then the providers'
    /// (unknown types, bad settings).
    pub fn build(self) -> Result<Node, NodeError> {
        let NodeBuilder { config, dcs, registry, providers } = self;
        config.validate()?;
        let dcs = match (dcs, &registry, &config.dcs) {
            (Some(dcs), ..) => dcs,
            (None, Some(registry), _) => registry.dcs(&config)?,
            (None, None, Some(section)) => {
                let why =
                    format!("the config names a {} DCS but the node was given neither a DCS nor a registry to build it", section.kind);
                return Err(ConfigError::at(&section.path, why).into());
            }
            (None, None, None) => Registry::new().dcs(&config)?,
        };
        let providers = match (providers, registry) {
            (Some(_), Some(_)) => return Err(NodeError::Mismatch("give a registry or built providers, not both".into())),
            (Some(p), None) => p,
            (None, r) => r.unwrap_or_default().build(&config, dcs.clone())?,
        };
        if providers.services.len() != config.services.len() {
            let (configured, built) = (config.services.len(), providers.services.len());
            return Err(NodeError::Mismatch(format!("{configured} services configured, {built} built")));
        }
        Ok(Node::new(config, dcs, providers))
    }
}
