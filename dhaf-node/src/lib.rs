//! The reference dhaf node as a library, so the `dhaf-node` binary stays a thin shell and an
//! embedder can start the same node (or only mount its REST API) inside its own service.
//!
//! [`start`] turns a config file into a running node: parse and validate everything first
//! (config and every provider section, all problems at once), pick the DCS (etcd when configured,
//! else the embedded one), build the providers from the registry, then run the node until the
//! shutdown future completes.

use std::path::Path;
use std::sync::Arc;

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::dcs::Dcs;
use dhaf_core::registry::Registry;
use dhaf_core::runtime::{Node, NodeError};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config (or a provider section of it) is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The DCS could not be set up.
    #[error("dcs: {0}")]
    Dcs(String),
    /// The node failed to start (a provider's init).
    #[error("{0}")]
    Node(#[from] NodeError),
}

/// Everything validated and built, ready to run.
pub struct Prepared {
    /// The node.
    pub node: Node,
    /// Its config.
    pub config: Config,
}

/// The DCS a config asks for: the embedded one unless `etcd` is configured.
pub fn dcs_for(config: &Config) -> Result<Arc<dyn Dcs>, StartError> {
    if config.etcd.is_some() {
        return Err(StartError::Dcs("etcd is not available in this build".into()));
    }
    let dcs = match &config.dhaf.state_file {
        Some(path) => MemoryDcs::with_state_file(&config.dhaf.cluster_name, path).map_err(|e| StartError::Dcs(e.to_string()))?,
        None => MemoryDcs::new(&config.dhaf.cluster_name),
    };
    Ok(Arc::new(dcs))
}

/// Parse `config_path` and build the node with the providers of `registry`, reporting every
/// problem of the file at once. Does no network I/O.
pub fn prepare(config_path: &Path, registry: &Registry) -> Result<Prepared, StartError> {
    let config = Config::load(config_path)?;
    let dcs = dcs_for(&config)?;
    let providers = registry.build(&config, dcs.clone())?;
    Ok(Prepared { node: Node::new(config.clone(), dcs, providers), config })
}
