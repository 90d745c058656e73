//! dhaf's built-in providers, and [`registry`] which names them for the config's `type` keys.

use dhaf_core::registry::Registry;

pub mod check;
pub mod etcd;
mod http;
pub mod notify;
mod script;
pub mod switch;

pub use etcd::dcs_from_config;

/// A registry with every built-in provider.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    check::register(&mut registry);
    switch::register(&mut registry);
    notify::register(&mut registry);
    registry
}
