//! Small pieces the provider tests share: entry points, one of every event, error texts checked
//! for a secret, and logs captured at any level.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use dhaf_core::config::ConfigError;
use dhaf_core::model::{EntryPoint, Event, FencingToken, SwitchKind};
use dhaf_core::provider::ProviderError;

/// Entry point `name` at `ip`.
pub fn ep(name: &str, ip: &str) -> EntryPoint {
    EntryPoint { name: name.into(), ip: ip.parse().unwrap() }
}

/// One of every kind of event a notifier is told (service `main`, nodes n1–n3), the first three in
/// this order: ep-1 went down, came up, failover to ep-2.
pub fn every_event() -> Vec<Event> {
    vec![
        Event::EntryPointWentDown { service: "main".into(), entry_point: "ep-1".into(), reasons: vec!["n1: timeout".into()] },
        Event::EntryPointCameUp { service: "main".into(), entry_point: "ep-1".into() },
        Event::Switched { service: "main".into(), from: Some("ep-1".into()), to: "ep-2".into(), kind: SwitchKind::Failover },
        Event::Switched { service: "main".into(), from: None, to: "ep-1".into(), kind: SwitchKind::Initial },
        Event::Switched { service: "main".into(), from: Some("ep-2".into()), to: "ep-1".into(), kind: SwitchKind::Failback },
        Event::SwitchFailed { service: "main".into(), to: "ep-2".into(), reason: "cloudflare: HTTP 503".into() },
        Event::SwitchoverPurged { service: "main".into(), entry_point: "ep-2".into(), why: "ep-2 is unhealthy".into() },
        Event::ServiceWentDown { service: "main".into() },
        Event::ServiceCameUp { service: "main".into() },
        Event::NodeWentDown { node: "n2".into() },
        Event::NodeCameUp { node: "n2".into() },
        Event::LeaderElected { node: "n3".into(), token: FencingToken(42) },
        Event::DcsUnavailable { node: "n1".into(), reason: "etcd: connection refused".into() },
        Event::DcsRecovered { node: "n1".into() },
    ]
}

/// The text of a provider's error, checked to hold `secret` neither in it nor in its `Debug`.
pub fn checked_text(e: &ProviderError, secret: &str) -> String {
    let t = e.to_string();
    assert!(!t.contains(secret), "the secret leaked into an error: {t}");
    assert!(!format!("{e:?}").contains(secret), "the secret leaked into Debug");
    t
}

/// `err` names each problem of `want` (by the start of its text) and never echoes `secret`.
pub fn assert_problems(err: &ConfigError, want: &[&str], secret: &str) {
    let text: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    for want in want {
        assert!(text.iter().any(|t| t.starts_with(want)), "missing {want:?} in {text:#?}");
    }
    assert!(text.iter().all(|t| !t.contains(secret)), "{secret:?} was echoed: {text:#?}");
}

/// Everything logged through `tracing` while its guard lives.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Capture this thread's logs up to `level` until the guard is dropped.
    pub fn start(level: tracing::Level) -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_max_level(level).with_writer(move || sink.clone()).finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
