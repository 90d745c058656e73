//! dhaf-core: the heart of dhaf, distributed high-availability failover.
//!
//! A small cluster of dhaf nodes health-checks every entry point (server) of each service from
//! several vantage points, decides by majority which are healthy, and the elected leader points
//! the service's public entry at the highest-priority healthy one.
//!
//! The crate is laid out sans-IO first:
//!
//! - [`engine`]: the **pure** decision engine. `decide(config, &mut state, &view, now)` returns
//!   actions as data; no I/O, no clock, no async. Quorum and rise/fall hysteresis live beside it.
//! - [`config`]: the YAML model and its validation, which reports every problem with its key path.
//! - [`model`]: domain types shared by every layer (opinions, switch records, events).
//! - [`provider`]: the traits [`provider::HealthChecker`], [`provider::Switcher`],
//!   [`provider::Notifier`]; [`registry`] builds them from config by `type` name.
//! - [`dcs`]: the [`dcs::Dcs`] contract, its key layout, the in-memory implementation (the embedded
//!   default) and the conformance suite every implementation passes.
//! - [`runtime`]: the async [`runtime::Node`] that drives the engine: presence, checks, election,
//!   fenced switching, reconciliation, notifications. The only module that spawns tasks.
//!
//! ```text
//!            ┌──────────── runtime::Node ─────────────┐
//!  checkers ─┤ checks ──► opinions ──► Dcs ◄── leader │── Switcher
//!            │                          │       ▲     │
//!            │                     snapshot     │     │── Notifier
//!            │                          ▼       │     │
//!            │            engine::decide(view) ─┘     │
//!            └────────────────────────────────────────┘
//! ```

pub mod config;
pub mod dcs;
pub mod engine;
pub mod model;
pub mod provider;
pub mod registry;
pub mod runtime;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use async_trait::async_trait;
