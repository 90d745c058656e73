//! dhaf's built-in providers, and [`registry`] which names them for the config's `type` keys.
//!
//! Each provider is a cargo feature, all on by default: `web`, `tcp` and `exec` (checkers; `exec`
//! is also a switcher), `cloudflare`, `rfc2136`, `route53` (switchers), `email`, `telegram` (the
//! `tg` notifier), `webhook` (notifiers) and `etcd` (the DCS). An embedder that wants a few turns
//! the default off and names them; [`registry`] registers what is compiled in.
//!
//! Every provider is built the same way: `Type::from_config(section, ctx) -> Result<Type,
//! ConfigError>` reads its own section with the section's `Fields` (so a bad or unknown key is
//! named by its path) and does no I/O; the registry shares what it returns (`Arc<dyn …>`). A
//! provider of an embedder's is registered with a function of the same shape.
// With providers left out, some shared helpers have no user.
#![cfg_attr(
    not(all(
        feature = "web",
        feature = "tcp",
        feature = "exec",
        feature = "cloudflare",
        feature = "rfc2136",
        feature = "route53",
        feature = "email",
        feature = "telegram",
        feature = "webhook"
    )),
    allow(dead_code, unused_imports)
)]

use dhaf_core::registry::Registry;

use std::sync::Arc;

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::Dcs;

pub mod check;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(any(feature = "cloudflare", feature = "route53", feature = "webhook"))]
mod http;
pub mod notify;
#[cfg(feature = "exec")]
mod script;
pub mod switch;

/// Build the DCS a config asks for with the built-in registry ([`Registry::dcs`]): etcd for an
/// `etcd` section, else the embedded in-memory DCS (kept in `dhaf.state-file` when set). Does no
/// network I/O.
pub fn dcs_from_config(config: &Config) -> Result<Arc<dyn Dcs>, ConfigError> {
    registry().dcs(config)
}

/// A registry with every built-in provider compiled in (see the crate's features), the etcd DCS
/// among them.
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
