//! dhaf: distributed high-availability failover.
//!
//! This umbrella crate only re-exports the workspace's crates so the examples, benchmarks and
//! end-to-end tests beside it can name them in one place. Embedders depend on `dhaf-core`
//! (and `dhaf-providers` for the built-in providers) directly.

pub use dhaf_core as core;
pub use dhaf_node as node;
pub use dhaf_providers as providers;
