//! Building a service's switcher from YAML through the real registry, as the node does.
#![allow(dead_code)]

use std::sync::Arc;

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::provider::Switcher;
use dhaf_core::testing::ScriptedChecker;

/// The switcher of the first service of `yaml` (whose health checker is `type: scripted`), or every
/// problem the registry finds in its section.
pub fn build(yaml: &str) -> Result<Arc<dyn Switcher>, ConfigError> {
    let config = Config::parse_with_env(yaml, &|_| None).expect("the test config parses");
    let mut registry = dhaf_providers::registry();
    registry.checker("scripted", |s, _| s.fields().into_result(Arc::new(ScriptedChecker::new())));
    let providers = registry.build(&config, Arc::new(MemoryDcs::new("c1")))?;
    Ok(providers.services[0].switcher.clone())
}

/// The config of cluster `c1`, node `n1`, with one service `web` for `domain` whose entry points
/// are `entry_points` (name, ip), checked by `type: scripted` and switched by `kind`. The
/// switcher's settings follow, each line indented by 6.
pub fn config(domain: &str, entry_points: &[(&str, &str)], kind: &str) -> String {
    let eps: String = entry_points.iter().map(|(name, ip)| format!("      - name: {name}\n        ip: \"{ip}\"\n")).collect();
    format!(
        "dhaf:\n  cluster-name: c1\n  node-name: n1\nservices:\n  - name: web\n    domain: {domain}\n    entry-points:\n{eps}    \
         health-checker:\n      type: scripted\n    switcher:\n      type: {kind}\n"
    )
}

/// ep-1, ep-2 (IPv4 from 192.0.2.0/24) and ep-6 (IPv6), as most switcher tests use them.
pub const THREE: [(&str, &str); 3] = [("ep-1", "192.0.2.1"), ("ep-2", "192.0.2.2"), ("ep-6", "2001:db8::6")];

/// A node of a config running with the real registry on the in-memory DCS, its checks answered
/// by `checker` (`type: scripted`).
pub struct RunningNode {
    /// What the node's checks see.
    pub checker: ScriptedChecker,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), dhaf_core::runtime::NodeError>>,
}

impl RunningNode {
    /// Start the node of `yaml`.
    pub fn start(yaml: &str) -> RunningNode {
        let config = Config::parse_with_env(yaml, &|_| None).expect("the test config parses");
        let checker = ScriptedChecker::new();
        let mut registry = dhaf_providers::registry();
        let shared = checker.clone();
        registry.checker("scripted", move |s, _| s.fields().into_result(Arc::new(shared.clone())));
        let dcs = Arc::new(MemoryDcs::new("c1"));
        let providers = registry.build(&config, dcs.clone()).expect("the providers build");
        let node = dhaf_core::runtime::Node::new(config, dcs, providers);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(node.run(async move {
            let _ = stopped.await;
        }));
        RunningNode { checker, stop, task }
    }

    /// Stop it, and check that it stopped cleanly within 30 s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(std::time::Duration::from_secs(30), self.task).await.expect("the node stops").unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}
