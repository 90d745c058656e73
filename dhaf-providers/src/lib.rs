//! dhaf's built-in providers, and [`registry`] which names them for the config's `type` keys.

pub mod etcd;
use dhaf_core::registry::Registry;

/// A registry with every built-in provider.
pub fn registry() -> Registry {
    Registry::new()
}
