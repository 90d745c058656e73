//! What a node counts about itself for `/metrics`: plain numbers kept by the runtime's tasks
//! and handed out as a snapshot ([`super::NodeHandle::metrics`]); the exposition format is the
//! embedder's business (the reference node renders it with `prometheus-client`).
//!
//! Counters only grow while the node runs; a reload keeps them. Series are keyed by name
//! (service, entry point, switch kind), so a service removed by a reload keeps its last values
//! until the node restarts, as a Prometheus counter should.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::model::SwitchKind;

/// Upper bounds (seconds) of the check-duration buckets: a check answers in milliseconds, or
/// hangs until its timeout (seconds).
pub const CHECK_DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Upper bounds (seconds) of the switch-duration buckets: a DCS round trip plus a provider API
/// call (or a script), up to retries cut by the lease.
pub const SWITCH_DURATION_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Counters since the node started, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Metrics {
    /// Health checks run.
    pub checks: u64,
    /// Health checks that found an entry point unhealthy.
    pub checks_failed: u64,
    /// Switches this node carried out.
    pub switches: u64,
    /// Switches that failed at the provider.
    pub switch_failures: u64,
    /// Times this node became leader.
    pub leader_changes: u64,
    /// Decisions this node made as leader: one run of the decision engine for one service. A
    /// leader decides a service when something it reads changed (or a timer it asked for came),
    /// so at steady state this stands still.
    pub decisions: u64,
    /// DCS calls that failed for want of the DCS.
    pub dcs_errors: u64,
    /// The same, and more, per service, by service name.
    pub services: BTreeMap<String, ServiceMetrics>,
}

/// What a node counted about one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceMetrics {
    /// Switches this node carried out as leader, by kind.
    pub switches: BTreeMap<SwitchKind, u64>,
    /// Switch attempts that failed at the provider (or ran out of lease), by kind.
    pub switch_failures: BTreeMap<SwitchKind, u64>,
    /// From the decision to switch to the provider's acknowledgement, for switches that went through.
    pub switch_duration: Histogram,
    /// Per entry point, by name.
    pub entry_points: BTreeMap<String, EntryPointMetrics>,
}

/// What a node counted about one entry point.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EntryPointMetrics {
    /// Checks that found it healthy.
    pub healthy: u64,
    /// Checks that found it unhealthy (timeouts included).
    pub unhealthy: u64,
    /// Checks this node could not run for its own trouble (it abstained).
    pub abstained: u64,
    /// How long its checks took (timeouts included, at the timeout).
    pub check_duration: Histogram,
}

/// A histogram's snapshot: observations counted per bucket, Prometheus style.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// The buckets' upper bounds, seconds, ascending (`+Inf` is implied).
    pub bounds: &'static [f64],
    /// Observations at most each bound, cumulative, one per bound.
    pub cumulative: Vec<u64>,
    /// The sum of all observations, seconds.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(CHECK_DURATION_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, cumulative: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    /// Count one observation.
    pub fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, n) in self.bounds.iter().zip(self.cumulative.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

impl Metrics {
    /// The counters of service `service`, made on first use.
    pub(crate) fn service(&mut self, service: &str) -> &mut ServiceMetrics {
        self.services
            .entry(service.to_string())
            .or_insert_with(|| ServiceMetrics { switch_duration: Histogram::new(SWITCH_DURATION_BUCKETS), ..ServiceMetrics::default() })
    }

    /// The counters of entry point `entry_point` of `service`, made on first use.
    pub(crate) fn entry_point(&mut self, service: &str, entry_point: &str) -> &mut EntryPointMetrics {
        self.service(service).entry_points.entry(entry_point.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_cumulatively() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        assert_eq!(h.cumulative, vec![1, 2]);
        assert_eq!(h.count, 3);
        assert!((h.sum - 5.55).abs() < 1e-9);
    }
}
