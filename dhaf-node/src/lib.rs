//! The reference dhaf node as a library: start-up from a config file, so the binary stays thin.
pub mod api;
