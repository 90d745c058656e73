//! `GET /metrics`: the node's counters ([`NodeHandle::metrics`]) and the cluster's state as this
//! node reads it ([`NodeHandle::status`]), in the Prometheus text format, written by
//! `prometheus-client` from a registry built afresh for each scrape.
//!
//! Every series the node exports is listed in [`render`], in one place; `docs/config-reference.md`
//! names each, and a test checks that the alert rules and the dashboard under `deploy/` use no
//! other.

use std::sync::atomic::AtomicU64;
use std::time::UNIX_EPOCH;

use dhaf_core::engine::Verdict;
use dhaf_core::model::SwitchKind;
use dhaf_core::runtime::{Histogram, NodeHandle};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::reload::Reloader;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A series' labels, in order.
type Labels = Vec<(&'static str, String)>;

/// Leadership counts only while the node may act on it: a leader whose lease deadline passed
/// (the DCS is away) may already have been replaced.
pub fn leads(h: &NodeHandle) -> bool {
    h.is_leader() && h.holds_lease()
}

/// The metrics of the node behind `h` (and of its config reloads, given `reloader`), as
/// Prometheus text.
pub async fn render(h: &NodeHandle, reloader: Option<&Reloader>) -> String {
    let m = h.metrics();
    let mut out = Exposition::default();
    let version = vec![("version", env!("CARGO_PKG_VERSION").to_string())];
    out.gauge("dhaf_build_info", "1, labelled with the version of dhaf this node runs", vec![(version, 1.0)]);

    // Counted by this node.
    let mut checks = Vec::new();
    let mut check_duration = Vec::new();
    let mut switches = Vec::new();
    let mut switch_failures = Vec::new();
    let mut switch_duration = Vec::new();
    for (service, s) in &m.services {
        for kind in SwitchKind::ALL {
            let l = vec![("service", service.clone()), ("kind", kind_label(kind))];
            switches.push((l.clone(), s.switches.get(&kind).copied().unwrap_or(0)));
            switch_failures.push((l, s.switch_failures.get(&kind).copied().unwrap_or(0)));
        }
        switch_duration.push((vec![("service", service.clone())], s.switch_duration.clone()));
        for (ep, e) in &s.entry_points {
            let l = |result: &str| vec![("service", service.clone()), ("entry_point", ep.clone()), ("result", result.to_string())];
            checks.push((l("healthy"), e.healthy));
            checks.push((l("unhealthy"), e.unhealthy));
            checks.push((l("abstained"), e.abstained));
            check_duration.push((vec![("service", service.clone()), ("entry_point", ep.clone())], e.check_duration.clone()));
        }
    }
    out.counter("dhaf_checks", "Health checks this node ran, by result (abstained: it could not check for its own trouble)", checks);
    out.counter1("dhaf_checks_failed", "Health checks that found an entry point unhealthy", m.checks_failed);
    out.histogram(
        "dhaf_check_duration_seconds",
        "How long this node's health checks took (a timeout counts at the timeout)",
        check_duration,
    );
    out.counter("dhaf_switches", "Switches this node carried out as leader, by kind", switches);
    out.counter("dhaf_switch_failures", "Switch attempts that failed at the provider, by kind", switch_failures);
    out.histogram(
        "dhaf_switch_duration_seconds",
        "From the leader's decision to the provider's acknowledgement, for switches that went through",
        switch_duration,
    );
    out.counter1("dhaf_leader_changes", "Times this node became the leader", m.leader_changes);
    out.counter1("dhaf_decisions", "Services this node decided as leader, one decision each: only what changed is decided", m.decisions);
    out.counter1("dhaf_dcs_errors", "DCS calls that failed for want of the DCS", m.dcs_errors);
    out.gauge1("dhaf_is_leader", "1 while this node is the cluster leader", f64::from(u8::from(leads(h))));
    out.gauge1("dhaf_registered", "1 while this node holds a live lease in the DCS", f64::from(u8::from(h.holds_lease())));
    if let Some(r) = reloader {
        let state = r.state();
        out.gauge1(
            "dhaf_config_last_reload_successful",
            "1 if the last config reload was applied (or none was tried), 0 if it was refused",
            f64::from(u8::from(state.last_successful)),
        );
        out.gauge1(
            "dhaf_config_last_reload_success_timestamp_seconds",
            "When the config in force was loaded, Unix seconds",
            state.last_success_at,
        );
    }

    // The cluster as this node reads it from the DCS; without it, the last known state, and
    // dhaf_dcs_reachable says so.
    let status = h.status().await.ok();
    let dcs_up = status.as_ref().is_some_and(|s| !s.stale && s.dcs_error.is_none());
    out.gauge1("dhaf_dcs_up", "1 while this node reaches the DCS", f64::from(u8::from(dcs_up)));
    let Some(status) = status else { return out.finish() };
    out.gauge1(
        "dhaf_dcs_reachable",
        "0 while this node cannot read the DCS (the other values are then the last known)",
        f64::from(u8::from(!status.stale)),
    );
    out.gauge1(
        "dhaf_paused",
        "1 while the cluster is paused: nodes check and report, nobody switches",
        f64::from(u8::from(status.paused.is_some())),
    );
    let nodes = status.nodes.iter().map(|n| (vec![("node", n.name.clone())], f64::from(u8::from(n.alive)))).collect();
    out.gauge("dhaf_node_alive", "Each member node as this node sees it: 1 while its presence lease is alive", nodes);
    let mut verdicts = Vec::new();
    let mut current = Vec::new();
    let mut desired = Vec::new();
    let mut failing = Vec::new();
    let mut maintenance = Vec::new();
    let mut panic = Vec::new();
    let mut disagreeing = Vec::new();
    let mut held = Vec::new();
    let mut last_switch = Vec::new();
    let flag = |b: bool| f64::from(u8::from(b));
    for s in &status.services {
        let l = vec![("service", s.name.clone())];
        panic.push((l.clone(), flag(s.panic)));
        disagreeing.push((l.clone(), s.disagreement.len() as f64));
        held.push((l.clone(), flag(s.held)));
        failing.push((l.clone(), s.switching.as_ref().map_or(0.0, |p| f64::from(p.attempts))));
        if let Some(r) = &s.last_switch {
            last_switch.push((l, r.at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())));
        }
        for ep in &s.entry_points {
            for (v, name) in [(Verdict::Healthy, "healthy"), (Verdict::Unhealthy, "unhealthy"), (Verdict::Unknown, "unknown")] {
                let l = vec![("service", s.name.clone()), ("entry_point", ep.name.clone()), ("verdict", name.to_string())];
                verdicts.push((l, flag(ep.verdict == v)));
            }
            let l = vec![("service", s.name.clone()), ("entry_point", ep.name.clone())];
            // Where the provider points, as read back; the desired one until it is read.
            let live = if s.live.is_some() { ep.live } else { ep.current };
            current.push((l.clone(), flag(live)));
            desired.push((l.clone(), flag(ep.current)));
            maintenance.push((l, flag(ep.maintenance)));
        }
    }
    out.gauge("dhaf_entry_point_verdict", "The majority's verdict of each entry point (1 for the verdict it has)", verdicts);
    out.gauge("dhaf_entry_point_current", "1 for the entry point each service's provider points at (as read back)", current);
    out.gauge("dhaf_entry_point_desired", "1 for the entry point each service should point at (the leader's record)", desired);
    out.gauge("dhaf_switch_failing_attempts", "Failed attempts of a switch that keeps failing; 0 when none is failing", failing);
    out.gauge("dhaf_entry_point_maintenance", "1 while an entry point is in maintenance", maintenance);
    out.gauge("dhaf_service_panic", "1 while a service has no healthy entry point", panic);
    out.gauge(
        "dhaf_config_disagreeing_nodes",
        "Alive nodes that define a service differently from this node (their votes on it do not count)",
        disagreeing,
    );
    out.gauge("dhaf_service_held", "1 while fewer than a majority of the nodes share a service's definition: it is not switched", held);
    out.gauge(
        "dhaf_last_switch_timestamp_seconds",
        "When the last switch of each service was recorded (by whichever leader), Unix seconds",
        last_switch,
    );
    out.finish()
}

/// A switch kind as the API and the logs name it (`failback`, not the prose `switching back`).
fn kind_label(kind: SwitchKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| kind.to_string())
}

/// A registry filled from snapshots; counters are set by counting up to the snapshot's value.
#[derive(Default)]
struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// `name` without `_total`: the encoder adds it.
    fn counter(&mut self, name: &str, help: &str, samples: Vec<(Labels, u64)>) {
        let family = Family::<Labels, Counter>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).inc_by(v);
        }
        self.registry.register(name, help, family);
    }

    fn counter1(&mut self, name: &str, help: &str, v: u64) {
        let counter = Counter::<u64>::default();
        counter.inc_by(v);
        self.registry.register(name, help, counter);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: Vec<(Labels, f64)>) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).set(v);
        }
        self.registry.register(name, help, family);
    }

    fn gauge1(&mut self, name: &str, help: &str, v: f64) {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(v);
        self.registry.register(name, help, gauge);
    }

    fn histogram(&mut self, name: &'static str, help: &str, samples: Vec<(Labels, Histogram)>) {
        self.registry.register_collector(Box::new(Histograms { name, help: format!("{help}."), samples }));
    }

    fn finish(self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Histograms whose buckets were counted elsewhere (by the runtime), written as they are.
#[derive(Debug)]
struct Histograms {
    name: &'static str,
    help: String,
    samples: Vec<(Labels, Histogram)>,
}

impl Collector for Histograms {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(self.name, &self.help, None, MetricType::Histogram)?;
        for (labels, h) in &self.samples {
            // The encoder sums the buckets up itself: give it each bucket's own count.
            let mut below = 0;
            let buckets: Vec<(f64, u64)> = h
                .bounds
                .iter()
                .zip(&h.cumulative)
                .map(|(bound, n)| {
                    let own = n - below;
                    below = *n;
                    (*bound, own)
                })
                .collect();
            family.encode_family(labels)?.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_kinds_are_labelled_by_their_api_names() {
        let labels: Vec<String> = SwitchKind::ALL.into_iter().map(kind_label).collect();
        assert_eq!(labels, ["initial", "failover", "switchover", "failback", "maintenance", "repair"]);
    }
}
