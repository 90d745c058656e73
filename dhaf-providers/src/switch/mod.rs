//! Switchers: point a service's public entry at one of its entry points.
//!
//! - [`exec`]: the operator's own scripts (`init` tells the live state, `switch` changes it).
//!
//! Every switcher answers [`dhaf_core::provider::Switcher::current`] from the far end itself, never
//! from memory, so the leader's periodic read-back sees drift made behind dhaf's back and repairs it.

use dhaf_core::registry::Registry;

pub mod exec;

/// Register the built-in switchers (`exec`).
pub fn register(registry: &mut Registry) {
    registry.switcher("exec", |section, ctx| exec::ExecSwitcher::from_config(section, ctx).map(|s| std::sync::Arc::new(s) as _));
}
