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
//!
//! ## Embedding
//!
//! An embedder depends on this crate alone: its providers are plain trait impls registered
//! under `type` names, its config is built in code (or read from YAML with
//! [`config::Config::parse`]), and [`runtime::Node::builder`] checks both before the node runs
//! inside the program's own tokio runtime. [`runtime::NodeHandle::subscribe`] tells what happens;
//! [`runtime::NodeHandle::leadership`] watches the lead. The traits are async through
//! [`macro@async_trait`], re-exported here so the attribute needs no dependency of its own: write
//! `#[async_trait]` on every `impl` of a provider trait (without it, rustc reports E0195,
//! "lifetime parameters … do not match the trait declaration").
//!
//! One node on the embedded in-memory DCS, failing over:
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use dhaf_core::async_trait;
//! use dhaf_core::config::{Config, ProviderConfig, ServiceConfig};
//! use dhaf_core::model::{EntryPoint, Event, FencingToken, Health, SwitchKind};
//! use dhaf_core::provider::{HealthChecker, ProviderError, Switcher};
//! use dhaf_core::registry::Registry;
//! use dhaf_core::runtime::{Node, NodeEvent};
//!
//! /// Healthy unless it is the primary and the program says the primary is down.
//! struct Flag(Arc<AtomicBool>);
//!
//! #[async_trait]
//! impl HealthChecker for Flag {
//!     async fn check(&self, ep: &EntryPoint) -> Health {
//!         if ep.name == "primary" && self.0.load(Ordering::SeqCst) {
//!             Health::unhealthy("flagged down")
//!         } else {
//!             Health::Healthy
//!         }
//!     }
//! }
//!
//! /// Where the traffic goes.
//! #[derive(Clone, Default)]
//! struct Router(Arc<Mutex<Option<String>>>);
//!
//! #[async_trait]
//! impl Switcher for Router {
//!     async fn current(&self) -> Result<Option<String>, ProviderError> {
//!         Ok(self.0.lock().unwrap().clone())
//!     }
//!     async fn switch(&self, to: &EntryPoint, _term: FencingToken) -> Result<(), ProviderError> {
//!         *self.0.lock().unwrap() = Some(to.name.clone());
//!         Ok(())
//!     }
//! }
//!
//! # fn main() {
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let (down, router) = (Arc::new(AtomicBool::new(false)), Router::default());
//! let mut registry = Registry::new();
//! let flag = down.clone();
//! registry.checker("flag", move |section, _| section.fields().into_result(Flag(flag.clone())));
//! let r = router.clone();
//! registry.switcher("router", move |section, _| section.fields().into_result(r.clone()));
//!
//! let mut config = Config::new("shop", "node-1").with_service(
//!     ServiceConfig::new("web", "shop.example.com", ProviderConfig::new("flag"), ProviderConfig::new("router"))
//!         .with_entry_point("primary", "10.0.0.1".parse().unwrap())
//!         .with_entry_point("secondary", "10.0.0.2".parse().unwrap()),
//! );
//! config.dhaf.tact_interval = Duration::from_millis(100);
//! config.dhaf.heartbeat_interval = Duration::from_millis(500);
//! config.dhaf.healthy_node_status_ttl = Duration::from_secs(2);
//!
//! // Checked before it runs: the config's rules, and a provider for every `type` it names.
//! // Without `.dcs(…)` the node runs on an embedded in-memory DCS of its own.
//! let node = Node::builder(config).registry(&registry).build().expect("a valid config");
//! let handle = node.handle();
//! let mut events = handle.subscribe();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(node.run(async { stopped.await.ok(); }));
//!
//! let mut failed_over = false;
//! while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
//!     match event {
//!         NodeEvent::Event(Event::Switched { to, kind: SwitchKind::Initial, .. }) if to == "primary" => {
//!             down.store(true, Ordering::SeqCst); // the primary fails
//!         }
//!         NodeEvent::Event(Event::Switched { to, kind: SwitchKind::Failover, .. }) if to == "secondary" => {
//!             failed_over = true;
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! assert!(failed_over && router.0.lock().unwrap().as_deref() == Some("secondary"));
//! stop.send(()).unwrap();
//! running.await.unwrap().unwrap(); // resigns and revokes its lease: another node would take over at once
//! # });
//! # }
//! ```
//!
//! `examples/embedder/` is the same as a crate of its own with three nodes on one
//! [`dcs::memory::MemoryDcs`], a notifier and a change of leader.

pub mod config;
pub mod dcs;
pub mod engine;
pub mod model;
pub mod provider;
pub mod registry;
pub mod runtime;
mod signal;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use async_trait::async_trait;
