//! Building a service's switcher from YAML through the real registry, as the node does.

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
