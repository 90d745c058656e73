//! Helpers shared by the root package's tests: building a config as `dhaf-node --check` would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dhaf::core::config::{Config, ConfigError, ConfigProblem};
use dhaf::core::dcs::memory::MemoryDcs;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The environment the example configs' `${VAR}`s are taken from.
pub fn env(name: &str) -> Option<String> {
    let value = match name {
        "DHAF_API_TOKEN" => "api-token-for-tests",
        "ETCD_PASSWORD" => "etcd-password-for-tests",
        "SMTP_PASSWORD" => "smtp-password-for-tests",
        "TG_TOKEN" => "123456:tg-token-for-tests",
        "TG_JOIN_CODE" => "join-me-please",
        "CF_TOKEN" => "cf-token-for-tests",
        "GRAFANA_TOKEN" => "grafana-token-for-tests",
        "ALICE_TOKEN" => "alice-token-for-tests",
        "SLACK_WEBHOOK_URL" => "https://hooks.slack.com/services/T000/B000/webhook-secret-for-tests",
        "HOOK_TOKEN" => "hook-token-for-tests",
        "DNS_TSIG_SECRET" => "ZG5zLXRzaWctc2VjcmV0LWZvci10ZXN0cw==",
        "AWS_ACCESS_KEY_ID" => "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY" => "aws-secret-access-key-for-tests",
        "AWS_SESSION_TOKEN" => "aws-session-token-for-tests",
        _ => return None,
    };
    Some(value.to_string())
}

/// Parse `yaml` and build every provider with the built-in registry (no I/O), as the node does
/// before it starts.
pub fn build(yaml: &str) -> Result<Config, ConfigError> {
    let config = Config::parse_with_env(yaml, &env)?;
    let registry = dhaf::providers::registry();
    // The DCS section is read like any provider's (the embedded DCS would open its state file).
    if config.dcs.is_some() {
        registry.dcs(&config)?;
    }
    let dcs = Arc::new(MemoryDcs::new(&config.dhaf.cluster_name));
    registry.build(&config, dcs)?;
    Ok(config)
}

/// Build the config file at `path` as `dhaf-node --config path --check` does: relative script
/// paths are taken from the file's directory.
pub fn build_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut config = Config::parse_with_env(&text, &env)?;
    config.base_dir = std::path::absolute(path.parent().expect("a file in a directory")).unwrap();
    let registry = dhaf::providers::registry();
    // The DCS section is read like any provider's (the embedded DCS would open its state file).
    if config.dcs.is_some() {
        registry.dcs(&config)?;
    }
    let dcs = Arc::new(MemoryDcs::new(&config.dhaf.cluster_name));
    registry.build(&config, dcs)?;
    Ok(config)
}

/// The problem at `path`, if any.
pub fn problem_at<'a>(err: &'a ConfigError, path: &str) -> Option<&'a ConfigProblem> {
    err.problems.iter().find(|p| p.path == path)
}

/// The names listed in a message ending `(<prefix> a, b, c)`.
pub fn listed(message: &str, prefix: &str) -> Vec<String> {
    let start = message.find(prefix).unwrap_or_else(|| panic!("no '{prefix}' in {message:?}")) + prefix.len();
    let list = message[start..].trim_end_matches(')');
    list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// The provider types the built-in registry knows for `section` (`health-checker`, `switcher`
/// or a notifier), read from the error an unknown type gets.
pub fn registered_types(section: &str) -> Vec<String> {
    let yaml = "dhaf: { cluster-name: c, node-name: n }
services:
  - name: s
    domain: foo.com
    entry-points: [{ name: ep-1, ip: 10.0.0.1 }]
    health-checker: { type: zz-none }
    switcher: { type: zz-none }
notifiers: [{ type: zz-none }]
";
    let path = match section {
        "health-checker" => "services[0].health-checker.type",
        "switcher" => "services[0].switcher.type",
        _ => "notifiers[0].type",
    };
    let err = build(yaml).expect_err("an unknown provider type is refused");
    let p = problem_at(&err, path).unwrap_or_else(|| panic!("no problem at {path}: {err}"));
    listed(&p.message, "(known: ")
}

/// A PEM certificate for keys that name a CA or client certificate file.
pub fn pem_file(dir: &Path) -> PathBuf {
    let path = dir.join("test-ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    std::fs::write(&path, cert.cert.pem()).expect("write the pem");
    path
}
