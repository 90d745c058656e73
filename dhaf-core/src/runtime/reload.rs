//! Reloading a node's config in place: which settings may change while the node runs, and what
//! a new config changes.

use serde::Serialize;

use crate::config::Config;

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Services added.
    pub added: Vec<String>,
    /// Services removed.
    pub removed: Vec<String>,
    /// Services whose section changed (entry points, checker, switcher, rise/fall, failback…).
    pub changed: Vec<String>,
    /// Whether the notifiers changed.
    pub notifiers_changed: bool,
    /// `dhaf.*` settings that changed, by key.
    pub settings_changed: Vec<String>,
}

impl ReloadReport {
    /// Whether the new config changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.notifiers_changed
            && self.settings_changed.is_empty()
    }
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing changed");
        }
        let mut parts = Vec::new();
        for (what, list) in [("added", &self.added), ("removed", &self.removed), ("changed", &self.changed)] {
            if !list.is_empty() {
                parts.push(format!("services {what}: {}", list.join(", ")));
            }
        }
        if self.notifiers_changed {
            parts.push("notifiers changed".into());
        }
        if !self.settings_changed.is_empty() {
            parts.push(format!("settings changed: {}", self.settings_changed.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Why a reload was refused. The node goes on with the config it had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// Settings that only a restart can change.
    #[error("these settings cannot change while the node runs; restart the node to change them: {}", .0.join(", "))]
    RestartOnly(Vec<String>),
    /// A new or changed provider failed to start.
    #[error("{0}")]
    Providers(String),
    /// The node is not running (it has stopped, or not started yet).
    #[error("the node is not running")]
    NotRunning,
    /// The new config breaks a rule ([`Config::validate`]).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// The settings that differ between `old` and `new` and cannot change at run time: the node's and
/// the cluster's names, the DCS and its state file, the lease TTL, and the REST API (its address,
/// tokens and TLS), by key.
pub(crate) fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.dhaf, &new.dhaf);
    let mut keys = Vec::new();
    let mut check = |key: &str, same: bool| {
        if !same {
            keys.push(key.to_string());
        }
    };
    check("dhaf.cluster-name", o.cluster_name == n.cluster_name);
    check("dhaf.node-name", o.node_name == n.node_name);
    check("dhaf.healthy-node-status-ttl", o.healthy_node_status_ttl == n.healthy_node_status_ttl);
    check("dhaf.state-file", o.state_file == n.state_file);
    check("dhaf.web-api.host", o.web_api.host == n.web_api.host);
    check("dhaf.web-api.port", o.web_api.port == n.web_api.port);
    check(
        "dhaf.web-api (tokens, public-read, tls)",
        o.web_api.token == n.web_api.token
            && o.web_api.tokens == n.web_api.tokens
            && o.web_api.public_read == n.web_api.public_read
            && o.web_api.tls == n.web_api.tls,
    );
    check(new.dcs.as_ref().or(old.dcs.as_ref()).map_or("dcs", |d| d.path.as_str()), old.dcs == new.dcs);
    keys
}

/// What `new` changes against `old` (the restart-only settings aside).
pub(crate) fn report(old: &Config, new: &Config) -> ReloadReport {
    let mut r = ReloadReport::default();
    for s in &new.services {
        match old.service(&s.name) {
            None => r.added.push(s.name.clone()),
            Some(o) if o != s => r.changed.push(s.name.clone()),
            Some(_) => {}
        }
    }
    r.removed = old.services.iter().filter(|s| new.service(&s.name).is_none()).map(|s| s.name.clone()).collect();
    r.notifiers_changed = old.notifiers != new.notifiers;
    let (o, n) = (&old.dhaf, &new.dhaf);
    for (key, same) in [
        ("dhaf.tact-interval", o.tact_interval == n.tact_interval),
        ("dhaf.heartbeat-interval", o.heartbeat_interval == n.heartbeat_interval),
        ("dhaf.min-votes", o.min_votes == n.min_votes),
        ("dhaf.check-concurrency", o.check_concurrency == n.check_concurrency),
        ("dhaf.reconcile-interval", o.reconcile_interval == n.reconcile_interval),
    ] {
        if !same {
            r.settings_changed.push(key.into());
        }
    }
    r
}

/// How one set of service definitions differs from another (the running node's against a file's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DefinitionsDiff {
    /// Services only the new set has.
    pub added: Vec<String>,
    /// Services only the running set has.
    pub removed: Vec<String>,
    /// Services both have, defined differently: what differs, `key: running ≠ new`.
    pub changed: Vec<(String, Vec<String>)>,
}

impl DefinitionsDiff {
    /// Compare `running` with `new`, by service name.
    pub fn of(
        running: &std::collections::BTreeMap<String, crate::model::ServiceDefinition>,
        new: &std::collections::BTreeMap<String, crate::model::ServiceDefinition>,
    ) -> DefinitionsDiff {
        DefinitionsDiff {
            added: new.keys().filter(|k| !running.contains_key(*k)).cloned().collect(),
            removed: running.keys().filter(|k| !new.contains_key(*k)).cloned().collect(),
            changed: running
                .iter()
                .filter_map(|(name, r)| {
                    let n = new.get(name)?;
                    (r.fingerprint != n.fingerprint).then(|| (name.clone(), r.differences(n)))
                })
                .collect(),
        }
    }

    /// Whether the sets define the same services alike.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The settings a reload may not change, by key, as text (no secrets), to tell a file's from a
/// running node's.
pub fn restart_only_settings(config: &Config) -> std::collections::BTreeMap<String, String> {
    let d = &config.dhaf;
    let mut m = std::collections::BTreeMap::new();
    m.insert("dhaf.cluster-name".into(), d.cluster_name.clone());
    m.insert("dhaf.node-name".into(), d.node_name.clone());
    m.insert("dhaf.healthy-node-status-ttl".into(), format!("{:?}", d.healthy_node_status_ttl));
    m.insert("dhaf.state-file".into(), d.state_file.as_ref().map_or(String::new(), |p| p.display().to_string()));
    m.insert("dhaf.web-api.host".into(), d.web_api.host.clone());
    m.insert("dhaf.web-api.port".into(), d.web_api.port.to_string());
    // The DCS section's settings as the service definitions show a provider's: a secret only as set.
    m.insert("dcs".into(), config.dcs.as_ref().map_or("embedded".into(), |d| d.kind.clone()));
    if let Some(d) = &config.dcs {
        m.extend(d.shown_settings().into_iter().map(|(k, v)| (format!("{}.{k}", d.path), v)));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dcs: &str) -> Config {
        let yaml = format!(
            "dhaf: {{ cluster-name: c, node-name: n1 }}\n{dcs}\nservices:\n  - name: web\n    domain: example.com\n    \
             entry-points: [{{ name: a, ip: 10.0.0.1 }}]\n    health-checker: {{ type: x }}\n    switcher: {{ type: y }}\n"
        );
        Config::parse(&yaml).expect("a valid config")
    }

    #[test]
    fn the_dcs_section_needs_a_restart_and_is_shown_without_its_secrets() {
        let etcd = config("etcd: { hosts: '10.0.0.1:2379', username: u, password: etcd-secret-1 }");
        let shown = restart_only_settings(&etcd);
        assert_eq!(shown["dcs"], "etcd");
        assert_eq!(shown["etcd.hosts"], "10.0.0.1:2379");
        assert_eq!(shown["etcd.password"], "(secret)");
        assert!(!format!("{shown:?}").contains("etcd-secret-1"), "{shown:?}");

        let moved = config("etcd: { hosts: '10.0.0.2:2379', username: u, password: etcd-secret-1 }");
        assert_eq!(restart_only(&etcd, &moved), ["etcd"]);
        let embedded = config("");
        assert_eq!(restart_only_settings(&embedded)["dcs"], "embedded");
        assert_eq!(restart_only(&embedded, &etcd), ["etcd"]);
        assert!(restart_only(&etcd, &etcd.clone()).is_empty());
    }
}
