//! dhaf's built-in providers, and [`registry`] which names them for the config's `type` keys.

use dhaf_core::registry::Registry;

use std::sync::Arc;

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::Dcs;

pub mod check;
#[cfg(feature = "etcd")]
pub mod etcd;
mod http;
pub mod notify;
mod script;
pub mod switch;

/// Build the DCS a config asks for with the built-in registry ([`Registry::dcs`]): etcd for an
/// `etcd` section, else the embedded in-memory DCS (kept in `dhaf.state-file` when set). Does no
/// network I/O.
pub fn dcs_from_config(config: &Config) -> Result<Arc<dyn Dcs>, ConfigError> {
    registry().dcs(config)
}

/// A registry with every built-in provider, the etcd DCS among them.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    check::register(&mut registry);
    switch::register(&mut registry);
    notify::register(&mut registry);
    #[cfg(feature = "etcd")]
    etcd::register(&mut registry);
    // Built without etcd, a config that names it is told why rather than that the type is unknown.
    #[cfg(not(feature = "etcd"))]
    registry.dcs_type("etcd", |section, _| -> Result<Arc<dyn Dcs>, ConfigError> {
        Err(ConfigError::at(&section.path, "dhaf-providers was built without its `etcd` feature"))
    });
    registry
}
