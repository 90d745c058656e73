//! dhaf's built-in providers, and [`registry`] which names them for the config's `type` keys.

use dhaf_core::registry::Registry;

pub mod notify;

/// A registry with every built-in provider.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    notify::register(&mut registry);
    registry
}
