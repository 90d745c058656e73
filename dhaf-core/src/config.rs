//! The configuration model: the original dhaf's YAML, key for key, plus dhaf's own optional knobs.
//!
//! Parsing never stops at the first problem: every problem is collected with its key path
//! (`services[1].entry-points[0].name: …`) so an operator fixes the file in one go. Provider
//! sections (`switcher`, `health-checker`, `notifiers[]`, and the DCS's: the seed's `etcd:` or
//! `dcs:`) are kept as raw [`ProviderConfig`]s (their [`Settings`], in this crate's own types):
//! each provider, built-in or an embedder's, parses its own settings with the same [`Fields`]
//! reader.
//!
//! Secrets need not live in the file: any string value may be written `${VAR}` and is taken from
//! the environment variable `VAR` (a missing variable is a config error naming the key).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::model::{EntryPoint, ServiceDefinition};

mod settings;
pub use settings::{Number, SettingValue, Settings};

/// The shortest `tact-interval`.
pub const MIN_TACT: Duration = Duration::from_millis(100);

/// The shortest `heartbeat-interval`.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// The bounds of each numeric setting, as (least, most). The YAML reader and
/// [`Config::validate`] check against the same ones, with the same messages.
pub mod limits {
    use std::time::Duration;

    /// `dhaf.healthy-node-status-ttl`, in whole seconds.
    pub const TTL_SECS: (u64, u64) = (2, 3600);
    /// `dhaf.heartbeat-interval`.
    pub const HEARTBEAT: (Duration, Duration) = (super::MIN_HEARTBEAT, Duration::from_secs(3600));
    /// `dhaf.tact-interval`.
    pub const TACT: (Duration, Duration) = (super::MIN_TACT, Duration::from_secs(3600));
    /// `dhaf.min-votes`.
    pub const MIN_VOTES: (u64, u64) = (1, 100);
    /// `dhaf.check-concurrency`.
    pub const CHECK_CONCURRENCY: (u64, u64) = (1, 4096);
    /// `dhaf.reconcile-interval`.
    pub const RECONCILE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86400));
    /// `services[].rise` and `services[].fall`.
    pub const RISE_FALL: (u64, u64) = (1, 100);
    /// `services[].failback-delay`.
    pub const FAILBACK_DELAY: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(86400));
}

/// Why the TTL is whole seconds, said whenever it is not.
const TTL_WHOLE_WHY: &str = "the presence lease's TTL is counted in whole seconds (etcd's unit)";

fn int_problem(n: u64, (min, max): (u64, u64)) -> Option<String> {
    (!(min..=max).contains(&n)).then(|| format!("must be a whole number from {min} to {max}"))
}

fn duration_problem(d: Duration, (min, max): (Duration, Duration)) -> Option<String> {
    (d < min || d > max).then(|| {
        format!(
            "must be a duration from {} to {} (a bare number is seconds), not {}",
            format_duration(min),
            format_duration(max),
            format_duration(d)
        )
    })
}

fn name_problem(v: &str) -> Option<String> {
    let ok = !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (!ok).then(|| "only a-z A-Z 0-9 - _ allowed, at most 64 characters".to_string())
}

fn domain_problem(d: &str) -> Option<String> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    (!ok).then(|| format!("'{d}' is not a domain name"))
}

fn heartbeat_problem(heartbeat: Duration, ttl: Duration) -> Option<String> {
    (heartbeat * 2 > ttl).then(|| {
        format!(
            "must be at most half of healthy-node-status-ttl ({}), or a single late heartbeat marks the node dead",
            format_duration(ttl)
        )
    })
}

fn host_problem(host: &str) -> Option<String> {
    // The CLI builds its URL from the host: anything beyond a name or an address would send its
    // requests (and tokens) elsewhere.
    let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c));
    (!ok).then(|| format!("'{}' is not a host name or an IP address", host.escape_debug()))
}

fn token_problem(t: &str) -> Option<&'static str> {
    if t.len() < 8 {
        Some("must be at least 8 characters")
    } else if t.trim() != t {
        // A header value loses its surrounding spaces on the way, so this token could never match.
        Some("must not start or end with spaces")
    } else if !t.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        Some("must be printable ASCII (it travels in an HTTP header)")
    } else {
        None
    }
}

/// The units a duration may be written in, with their length in nanoseconds.
const DURATION_UNITS: [(&str, u64); 4] = [("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)];

/// Parse a duration as configured: a number with a unit (`250ms`, `1.5s`, `2m`, `1h`) or a bare
/// number, which is seconds (`30`, `0.5`), so every config written in seconds reads as before.
///
/// The number is decimal (digits with an optional fraction), at most nanosecond precision.
///
/// ```
/// use std::time::Duration;
/// use dhaf_core::config::parse_duration;
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
/// assert!(parse_duration("-1s").is_err() && parse_duration("5 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("'{}' is not a duration: write 250ms, 1.5s, 2m or 1h (a bare number is seconds)", t.escape_debug());
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim_start());
    let scale = match unit {
        "" => 1_000_000_000,
        u => DURATION_UNITS.iter().find(|(name, _)| *name == u).ok_or_else(bad)?.1,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (number.contains('.') && fraction.is_empty()) {
        return Err(bad());
    }
    let too_long = || format!("'{}' is too long a duration", t.escape_debug());
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let mut nanos = whole.checked_mul(u128::from(scale)).ok_or_else(too_long)?;
    // The fraction, digit by digit: exact, and anything below a nanosecond is dropped.
    let mut place = u128::from(scale);
    for d in fraction.bytes() {
        place /= 10;
        nanos += u128::from(d - b'0') * place;
    }
    if nanos == 0 && fraction.bytes().any(|d| d != b'0') {
        return Err(format!("'{}' is shorter than a nanosecond", t.escape_debug()));
    }
    let nanos = u64::try_from(nanos).map_err(|_| too_long())?;
    Ok(Duration::from_nanos(nanos))
}

/// A duration the way [`parse_duration`] reads it, in the largest unit that writes it exactly:
/// `1h`, `90s`, `250ms`; `1.5ms`, `0.000001s` below a millisecond.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    for (name, len) in DURATION_UNITS.iter().rev() {
        let len = u128::from(*len);
        if nanos.is_multiple_of(len) {
            return format!("{}{name}", nanos / len);
        }
    }
    // Below a millisecond: seconds with the fraction's digits, trailing zeros dropped.
    let text = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
    format!("{}s", text.trim_end_matches('0'))
}

/// One problem in a config file, with the key path it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    /// Where: `services[1].entry-points[0].name`.
    pub path: String,
    /// What is wrong, and what is allowed.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// One problem at `path`.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { problems: vec![ConfigProblem { path: path.into(), message: message.into() }] }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "invalid configuration ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// The whole configuration of one node.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Config {
    /// `dhaf.*`.
    pub dhaf: DhafConfig,
    /// The DCS section: the seed's `etcd:` (the `etcd` DCS provider's settings) or `dcs:` (any
    /// registered DCS, by its `type`); `None` means the embedded in-memory DCS (a single node).
    /// The section is the provider's to read: [`crate::registry::Registry::dcs`] builds it.
    pub dcs: Option<ProviderConfig>,
    /// `services[]`.
    pub services: Vec<ServiceConfig>,
    /// `notifiers[]`.
    pub notifiers: Vec<ProviderConfig>,
    /// The directory relative paths in the config (operators' scripts) are resolved against: the
    /// config file's own directory when loaded from a file, else the working directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `dhaf.*`: the node and its cluster.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DhafConfig {
    /// `dhaf.cluster-name`.
    pub cluster_name: String,
    /// `dhaf.node-name`.
    pub node_name: String,
    /// `dhaf.healthy-node-status-ttl`: the presence lease's TTL (default 30 s).
    pub healthy_node_status_ttl: Duration,
    /// `dhaf.heartbeat-interval`: how often the lease is renewed (default 5 s).
    pub heartbeat_interval: Duration,
    /// `dhaf.tact-interval`: how often every entry point is checked (default 10 s, 100 ms–1 h).
    pub tact_interval: Duration,
    /// `dhaf.web-api`: served by `dhaf-node` (or wherever an embedder mounts its router); the
    /// [`crate::runtime::Node`] itself serves nothing.
    pub web_api: WebApiConfig,
    /// `dhaf.min-votes`: the fewest alive nodes' votes a verdict needs (default 1, as the original).
    pub min_votes: usize,
    /// `dhaf.check-concurrency`: at most this many checks run at once on a node (default 32).
    pub check_concurrency: usize,
    /// `dhaf.reconcile-interval`: how often the leader reads the provider's live state back and
    /// repairs drift (default 60 s).
    pub reconcile_interval: Duration,
    /// `dhaf.state-file`: where the embedded DCS keeps switchover requests, maintenance and provider
    /// data across restarts (default: not kept). Used by [`crate::runtime::Node::builder`] when
    /// it is given no DCS.
    pub state_file: Option<PathBuf>,
}

/// `dhaf.web-api.*`.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WebApiConfig {
    /// Host to listen on and for the CLI to reach (default `localhost`).
    pub host: String,
    /// Port (default 8128; 0 picks a free one, for tests).
    pub port: u16,
    /// `dhaf.web-api.token`: the single shared bearer token of old; it acts as an `admin` token.
    #[serde(skip)]
    pub token: Option<String>,
    /// `dhaf.web-api.tokens[]`: named bearer tokens, each with a role.
    pub tokens: Vec<ApiToken>,
    /// `dhaf.web-api.public-read`: reads need no token even when tokens are configured (default false).
    pub public_read: bool,
    /// `dhaf.web-api.tls`: serve the API over TLS only.
    pub tls: Option<WebApiTls>,
}

impl WebApiConfig {
    /// Whether any token (the single `token` or a named one) is configured.
    pub fn has_tokens(&self) -> bool {
        self.token.is_some() || !self.tokens.is_empty()
    }
}

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Status, services, history, audit, metrics.
    Read,
    /// `read`, plus switchover, maintenance.
    Operate,
    /// `operate`, plus decommission and reload.
    Admin,
}

impl Role {
    /// The role's name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `dhaf.web-api.tokens[]`: one named bearer token.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// `name`: who holds it; shown in the audit trail, never the secret.
    pub name: String,
    /// `role`.
    pub role: Role,
    /// `token` or `token-sha256`.
    #[serde(skip)]
    pub secret: TokenSecret,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken").field("name", &self.name).field("role", &self.role).field("secret", &"<redacted>").finish()
    }
}

/// How a token's secret is configured.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSecret {
    /// `token`: the secret itself.
    Plain(String),
    /// `token-sha256`: the SHA-256 of the secret, so the config need not hold it.
    Sha256([u8; 32]),
}

/// `dhaf.web-api.tls.*`: the API's certificate, and the CA of its clients for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebApiTls {
    /// `cert`: PEM certificate chain, the node's own certificate first.
    pub cert: PathBuf,
    /// `key`: PEM private key of that certificate.
    pub key: PathBuf,
    /// `client-ca`: PEM CA certificates; when set, clients must present a certificate they signed.
    pub client_ca: Option<PathBuf>,
}

// Secrets are shown as set or not, never as themselves.
fn redacted(secret: &Option<String>) -> &'static str {
    if secret.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

impl fmt::Debug for WebApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebApiConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &redacted(&self.token))
            .field("tokens", &self.tokens)
            .field("public_read", &self.public_read)
            .field("tls", &self.tls)
            .finish()
    }
}

/// When to switch back to a higher-priority entry point that recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failback {
    /// Switch back automatically (after `failback-delay`), as the original does.
    Auto,
    /// Never switch back on its own; an operator uses switchover.
    Manual,
}

/// `services[]`: one service and its entry points, in priority order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// `name`.
    pub name: String,
    /// `domain`.
    pub domain: String,
    /// `entry-points`, highest priority first.
    pub entry_points: Vec<EntryPoint>,
    /// `switcher`.
    pub switcher: ProviderConfig,
    /// `health-checker`.
    pub health_checker: ProviderConfig,
    /// `rise`: consecutive healthy checks before a node holds an entry point healthy again (default 2).
    pub rise: u32,
    /// `fall`: consecutive failed checks before a node holds an entry point unhealthy (default 2).
    pub fall: u32,
    /// `failback`: `auto` (default) or `manual`.
    pub failback: Failback,
    /// `failback-delay`: how long a higher-priority entry point must stay healthy before switching
    /// back to it (default 0 s).
    pub failback_delay: Duration,
}

impl ServiceConfig {
    /// The index of the entry point called `name`.
    pub fn entry_point_index(&self, name: &str) -> Option<usize> {
        self.entry_points.iter().position(|ep| ep.name == name)
    }

    /// What this node publishes of the service so the nodes can tell they agree on it: every
    /// setting that changes a decision (`min_votes` is the cluster's `dhaf.min-votes`), by key
    /// path. Provider settings whose key names a secret (token, password, secret, key,
    /// authorization, cookie, credentials) show only `(secret)`; node-local ones (the `exec`
    /// scripts' paths and `env`) are left out, as each node may keep its scripts elsewhere.
    pub fn definition(&self, min_votes: usize) -> ServiceDefinition {
        use sha2::Digest as _;
        let mut s = std::collections::BTreeMap::new();
        s.insert("name".to_string(), self.name.clone());
        s.insert("domain".to_string(), self.domain.clone());
        for (i, ep) in self.entry_points.iter().enumerate() {
            s.insert(format!("entry-points[{i}]"), format!("{} {}", ep.name, ep.ip));
        }
        s.insert("rise".to_string(), self.rise.to_string());
        s.insert("fall".to_string(), self.fall.to_string());
        s.insert("failback".to_string(), format!("{:?}", self.failback).to_lowercase());
        s.insert("failback-delay".to_string(), format!("{:?}", self.failback_delay));
        s.insert("dhaf.min-votes".to_string(), min_votes.to_string());
        for (key, section) in [("health-checker", &self.health_checker), ("switcher", &self.switcher)] {
            s.insert(format!("{key}.type"), section.kind.clone());
            for (k, v) in section.settings.mapping() {
                let k = yaml_text(k);
                if !NODE_LOCAL_KEYS.contains(&k.as_str()) {
                    flatten(&mut s, format!("{key}.{k}"), v, is_secret(&k));
                }
            }
        }
        let mut digest = sha2::Sha256::new();
        for (k, v) in &s {
            digest.update(format!("{}\0{k}\0{}\0{v}\0", k.len(), v.len()));
        }
        let fingerprint = digest.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        ServiceDefinition { fingerprint, settings: s }
    }
}

/// Provider settings that may differ from node to node without changing a decision.
const NODE_LOCAL_KEYS: &[&str] = &["init", "switch", "check", "current", "env"];

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["token", "password", "secret", "key", "authorization", "cookie", "credential"].iter().any(|w| k.contains(w))
}

fn yaml_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other).map(|t| t.trim().to_string()).unwrap_or_default(),
    }
}

/// Settings of a provider section by key path; a secret's value (and anything under it) is shown
/// only as set.
fn flatten(out: &mut std::collections::BTreeMap<String, String>, path: String, v: &Value, secret: bool) {
    match v {
        _ if secret => {
            out.insert(path, "(secret)".into());
        }
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = yaml_text(k);
                flatten(out, format!("{path}.{k}"), v, is_secret(&k));
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(out, format!("{path}[{i}]"), v, false);
            }
        }
        Value::Tagged(t) => flatten(out, path, &t.value, false),
        scalar => {
            out.insert(path, yaml_text(scalar));
        }
    }
}

/// A provider section: its `type`, optional `name` (notifiers) and its own settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// `type`: the registry name of the provider.
    pub kind: String,
    /// `name` (notifiers): the instance's name.
    pub name: Option<String>,
    /// The key path of the section, for errors.
    pub path: String,
    /// Every other key of the section, with `${VAR}` already expanded.
    pub settings: Settings,
}

impl PartialEq for ProviderConfig {
    // Where the section sits in the file (its key path) is no part of what it configures.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.settings == other.settings
    }
}

impl Serialize for ProviderConfig {
    // Provider settings may hold secrets: only the type and name are shown.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ProviderConfig", 2)?;
        st.serialize_field("type", &self.kind)?;
        st.serialize_field("name", &self.name)?;
        st.end()
    }
}

impl fmt::Debug for ProviderConfig {
    // Settings may hold secrets: only their keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("path", &self.path)
            .field("settings", &self.settings)
            .finish()
    }
}

impl ProviderConfig {
    /// A reader over the settings that collects problems under this section's path.
    pub fn fields(&self) -> Fields {
        Fields::new(&self.settings, &self.path)
    }

    /// The settings by key path as they may be shown: a secret's value (a key naming a token,
    /// password, key, …) and anything under it only as `(secret)`.
    pub fn shown_settings(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        for (k, v) in self.settings.mapping() {
            let k = yaml_text(k);
            flatten(&mut out, k.clone(), v, is_secret(&k));
        }
        out
    }
}

impl Config {
    /// Read and parse a config file; relative paths in it are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::at("", format!("cannot read {}: {e}", path.display())))?;
        let mut config = Config::parse(&text)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        config.base_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Ok(config)
    }

    /// Parse a config from YAML text, reporting every problem with its key path.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::parse`], with `${VAR}` taken from `env` instead of the process environment.
    pub fn parse_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut root: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::at("", format!("not valid YAML: {e}")))?;
        let mut problems = Vec::new();
        expand_env(&mut root, "", env, &mut problems);
        let Value::Mapping(map) = root else {
            return Err(ConfigError::at("", "the config must be a mapping with `dhaf` and `services`"));
        };
        let top = Fields::over(map, "");
        top.problems.borrow_mut().extend(problems);
        let dhaf = parse_dhaf(&top);
        let dcs = parse_dcs(&top);
        let services = top.list("services", true).iter().map(parse_service).collect::<Vec<_>>();
        let notifiers = top.list("notifiers", false).iter().map(|f| parse_provider(f, true)).collect::<Vec<_>>();
        top.finish();

        let mut seen = HashSet::new();
        for (i, s) in services.iter().enumerate() {
            if let Some(s) = s {
                if !seen.insert(s.name.clone()) {
                    top.problem(format!("services[{i}].name"), format!("duplicate service name '{}'", s.name));
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, n) in notifiers.iter().enumerate() {
            if let Some(n) = n {
                let name = n.name.clone().unwrap_or_default();
                if !seen.insert(name.clone()) {
                    top.problem(format!("notifiers[{i}].name"), format!("duplicate notifier name '{name}'"));
                }
            }
        }
        let problems = top.take_problems();
        match (dhaf, problems.is_empty()) {
            (Some(dhaf), true) => {
                let config = Config {
                    dhaf,
                    dcs,
                    services: services.into_iter().flatten().collect(),
                    notifiers: notifiers.into_iter().flatten().collect(),
                    base_dir: std::env::current_dir().unwrap_or_default(),
                };
                // The reader above already said everything wrong in the file's own terms; this
                // is the same gate a config built in code passes.
                config.validate()?;
                Ok(config)
            }
            _ => Err(ConfigError { problems }),
        }
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// A config for node `node_name` of cluster `cluster_name` with every default, no service
    /// and no notifier, on the embedded DCS; add services with [`Config::with_service`].
    ///
    /// ```
    /// use dhaf_core::config::{Config, ProviderConfig, ServiceConfig};
    ///
    /// let mut config = Config::new("shop", "node-1").with_service(
    ///     ServiceConfig::new("web", "shop.example.com", ProviderConfig::new("my-checker"), ProviderConfig::new("my-switcher"))
    ///         .with_entry_point("primary", "10.0.0.1".parse().unwrap())
    ///         .with_entry_point("secondary", "10.0.0.2".parse().unwrap()),
    /// );
    /// assert!(config.validate().is_ok());
    ///
    /// // The same rules as the YAML file, with the same key paths.
    /// config.dhaf.check_concurrency = 0;
    /// config.services[0].fall = 0;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.problems[0].to_string(), "dhaf.check-concurrency: must be a whole number from 1 to 4096");
    /// assert_eq!(err.problems[1].to_string(), "services[0].fall: must be a whole number from 1 to 100");
    /// ```
    pub fn new(cluster_name: impl Into<String>, node_name: impl Into<String>) -> Config {
        Config {
            dhaf: DhafConfig::new(cluster_name, node_name),
            dcs: None,
            services: Vec::new(),
            notifiers: Vec::new(),
            base_dir: std::env::current_dir().unwrap_or_default(),
        }
    }

    /// This config with `service` added after the others; its provider sections get their key
    /// paths (`services[N].switcher`) so a provider's problems name them.
    pub fn with_service(mut self, mut service: ServiceConfig) -> Config {
        let i = self.services.len();
        service.health_checker.path = format!("services[{i}].health-checker");
        service.switcher.path = format!("services[{i}].switcher");
        self.services.push(service);
        self
    }

    /// This config with notifier `notifier` added after the others (named `<type>-anon` when it
    /// has no name, as in YAML).
    pub fn with_notifier(mut self, mut notifier: ProviderConfig) -> Config {
        notifier.path = format!("notifiers[{}]", self.notifiers.len());
        notifier.name.get_or_insert_with(|| format!("{}-anon", notifier.kind));
        self.notifiers.push(notifier);
        self
    }

    /// Check every setting against the rules the YAML reader applies, with the same key paths
    /// and messages; every problem at once. [`Config::parse`] and
    /// [`crate::runtime::Node`] (which refuses to start) call it; call it on a config built in code
    /// to learn early.
    ///
    /// Provider settings are checked by the providers themselves when the registry builds them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(ConfigProblem { path, message });
        let d = &self.dhaf;
        for (key, v) in [("cluster-name", &d.cluster_name), ("node-name", &d.node_name)] {
            if let Some(p) = name_problem(v) {
                problem(format!("dhaf.{key}"), p);
            }
        }
        let ttl = d.healthy_node_status_ttl;
        if ttl.subsec_nanos() != 0 {
            let p = format!("'{}' is not a whole number of seconds: {TTL_WHOLE_WHY}", format_duration(ttl));
            problem("dhaf.healthy-node-status-ttl".into(), p);
        } else if let Some(p) = duration_problem(ttl, (Duration::from_secs(limits::TTL_SECS.0), Duration::from_secs(limits::TTL_SECS.1))) {
            problem("dhaf.healthy-node-status-ttl".into(), p);
        }
        let durations = [
            ("heartbeat-interval", d.heartbeat_interval, limits::HEARTBEAT),
            ("tact-interval", d.tact_interval, limits::TACT),
            ("reconcile-interval", d.reconcile_interval, limits::RECONCILE),
        ];
        for (key, v, range) in durations {
            if let Some(p) = duration_problem(v, range) {
                problem(format!("dhaf.{key}"), p);
            }
        }
        if let Some(p) = heartbeat_problem(d.heartbeat_interval, ttl) {
            problem("dhaf.heartbeat-interval".into(), p);
        }
        for (key, v, range) in
            [("min-votes", d.min_votes, limits::MIN_VOTES), ("check-concurrency", d.check_concurrency, limits::CHECK_CONCURRENCY)]
        {
            if let Some(p) = int_problem(v as u64, range) {
                problem(format!("dhaf.{key}"), p);
            }
        }
        if let Some(p) = host_problem(&d.web_api.host) {
            problem("dhaf.web-api.host".into(), p);
        }
        if let Some(p) = d.web_api.token.as_deref().and_then(token_problem) {
            problem("dhaf.web-api.token".into(), p.into());
        }
        for (i, t) in d.web_api.tokens.iter().enumerate() {
            if let Some(p) = name_problem(&t.name) {
                problem(format!("dhaf.web-api.tokens[{i}].name"), p);
            }
            if let Some(p) = match &t.secret {
                TokenSecret::Plain(s) => token_problem(s),
                TokenSecret::Sha256(_) => None,
            } {
                problem(format!("dhaf.web-api.tokens[{i}].token"), p.into());
            }
        }
        if let Some(dcs) = &self.dcs {
            if dcs.kind.is_empty() {
                problem(format!("{}.type", dcs.path), "is required".into());
            }
        }
        let mut names = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = |key: &str| format!("services[{i}].{key}");
            if let Some(p) = name_problem(&s.name) {
                problem(at("name"), p);
            } else if !names.insert(&s.name) {
                problem(at("name"), format!("duplicate service name '{}'", s.name));
            }
            if let Some(p) = domain_problem(&s.domain) {
                problem(at("domain"), p);
            }
            if s.entry_points.is_empty() {
                problem(at("entry-points"), "must list at least one entry point".into());
            }
            let (mut ep_names, mut ips) = (HashSet::new(), HashSet::new());
            for (j, ep) in s.entry_points.iter().enumerate() {
                if let Some(p) = name_problem(&ep.name) {
                    problem(at(&format!("entry-points[{j}].name")), p);
                } else if !ep_names.insert(&ep.name) {
                    problem(at(&format!("entry-points[{j}].name")), format!("duplicate entry point name '{}'", ep.name));
                }
                if !ips.insert(ep.ip) {
                    problem(at(&format!("entry-points[{j}].ip")), format!("duplicate entry point address {}", ep.ip));
                }
            }
            for (key, section) in [("switcher", &s.switcher), ("health-checker", &s.health_checker)] {
                if section.kind.is_empty() {
                    problem(at(&format!("{key}.type")), "is required".into());
                }
            }
            for (key, v) in [("rise", s.rise), ("fall", s.fall)] {
                if let Some(p) = int_problem(u64::from(v), limits::RISE_FALL) {
                    problem(at(key), p);
                }
            }
            if let Some(p) = duration_problem(s.failback_delay, limits::FAILBACK_DELAY) {
                problem(at("failback-delay"), p);
            }
        }
        let mut names = HashSet::new();
        for (i, n) in self.notifiers.iter().enumerate() {
            if n.kind.is_empty() {
                problem(format!("notifiers[{i}].type"), "is required".into());
            }
            let name = n.name.clone().unwrap_or_default();
            if let Some(p) = name_problem(&name) {
                problem(format!("notifiers[{i}].name"), p);
            } else if !names.insert(name.clone()) {
                problem(format!("notifiers[{i}].name"), format!("duplicate notifier name '{name}'"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

impl DhafConfig {
    /// Node `node_name` of cluster `cluster_name`, every other setting at its default.
    pub fn new(cluster_name: impl Into<String>, node_name: impl Into<String>) -> DhafConfig {
        DhafConfig {
            cluster_name: cluster_name.into(),
            node_name: node_name.into(),
            healthy_node_status_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            tact_interval: Duration::from_secs(10),
            web_api: WebApiConfig::default(),
            min_votes: 1,
            check_concurrency: 32,
            reconcile_interval: Duration::from_secs(60),
            state_file: None,
        }
    }
}

impl Default for WebApiConfig {
    /// `localhost:8128`, no token, no TLS.
    fn default() -> Self {
        WebApiConfig { host: "localhost".into(), port: 8128, token: None, tokens: Vec::new(), public_read: false, tls: None }
    }
}

impl ServiceConfig {
    /// Service `name` at `domain`, checked by `health_checker` and switched by `switcher`, with
    /// no entry point yet (add them with [`ServiceConfig::with_entry_point`], highest priority
    /// first) and every other setting at its default.
    pub fn new(
        name: impl Into<String>,
        domain: impl Into<String>,
        health_checker: ProviderConfig,
        switcher: ProviderConfig,
    ) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            domain: domain.into(),
            entry_points: Vec::new(),
            switcher,
            health_checker,
            rise: 2,
            fall: 2,
            failback: Failback::Auto,
            failback_delay: Duration::ZERO,
        }
    }

    /// This service with entry point `name` at `ip` added, at a lower priority than the others.
    pub fn with_entry_point(mut self, name: impl Into<String>, ip: IpAddr) -> ServiceConfig {
        self.entry_points.push(EntryPoint { name: name.into(), ip });
        self
    }
}

impl ProviderConfig {
    /// A section for provider type `kind` with no settings.
    pub fn new(kind: impl Into<String>) -> ProviderConfig {
        ProviderConfig { kind: kind.into(), name: None, path: String::new(), settings: Settings::new() }
    }

    /// This section with the instance name `name` (notifiers).
    pub fn with_name(mut self, name: impl Into<String>) -> ProviderConfig {
        self.name = Some(name.into());
        self
    }

    /// This section with setting `key` set to `value`, as if written in YAML.
    pub fn with_setting(mut self, key: &str, value: impl Into<SettingValue>) -> ProviderConfig {
        self.settings.set(key, value);
        self
    }

    /// This section with `settings` (every key but `type` and `name`).
    pub fn with_settings(mut self, settings: Settings) -> ProviderConfig {
        self.settings = settings;
        self
    }
}

fn parse_dhaf(top: &Fields) -> Option<DhafConfig> {
    let f = top.section_required("dhaf")?;
    let cluster_name = f.name("cluster-name");
    let node_name = f.name("node-name");
    let d = DhafConfig::new("", "");
    let (ttl_min, ttl_max) = limits::TTL_SECS;
    let ttl = f.whole_seconds("healthy-node-status-ttl", d.healthy_node_status_ttl.as_secs(), ttl_min, ttl_max, TTL_WHOLE_WHY);
    let heartbeat = f.duration("heartbeat-interval", d.heartbeat_interval, limits::HEARTBEAT.0, limits::HEARTBEAT.1);
    let tact = f.duration("tact-interval", d.tact_interval, limits::TACT.0, limits::TACT.1);
    if let Some(p) = heartbeat_problem(heartbeat, ttl) {
        f.problem(f.key("heartbeat-interval"), p);
    }
    let web_api = match f.section("web-api") {
        Some(w) => parse_web_api(&w),
        None => WebApiConfig::default(),
    };
    let min_votes = f.int("min-votes", d.min_votes as u64, limits::MIN_VOTES.0, limits::MIN_VOTES.1) as usize;
    let check_concurrency =
        f.int("check-concurrency", d.check_concurrency as u64, limits::CHECK_CONCURRENCY.0, limits::CHECK_CONCURRENCY.1) as usize;
    let reconcile_interval = f.duration("reconcile-interval", d.reconcile_interval, limits::RECONCILE.0, limits::RECONCILE.1);
    let state_file = f.string("state-file").map(PathBuf::from);
    f.finish();
    Some(DhafConfig {
        cluster_name: cluster_name?,
        node_name: node_name?,
        healthy_node_status_ttl: ttl,
        heartbeat_interval: heartbeat,
        tact_interval: tact,
        web_api,
        min_votes,
        check_concurrency,
        reconcile_interval,
        state_file,
    })
}

fn parse_web_api(w: &Fields) -> WebApiConfig {
    let host = w.string("host").unwrap_or_else(|| "localhost".into());
    if let Some(p) = host_problem(&host) {
        w.problem(w.key("host"), p);
    }
    let port = w.int("port", 8128, 0, 65535) as u16;
    let token = w.string("token");
    if let Some(t) = &token {
        check_token_secret(w, "token", t);
    }
    let public_read = w.boolean("public-read", false);
    let mut tokens: Vec<ApiToken> = Vec::new();
    for t in w.list("tokens", false) {
        let name = t.name("name");
        let role = match t.required_string("role").as_deref() {
            None => None,
            Some("read") => Some(Role::Read),
            Some("operate") => Some(Role::Operate),
            Some("admin") => Some(Role::Admin),
            Some(other) => {
                t.problem(t.key("role"), format!("'{}' is not one of: read, operate, admin", other.escape_debug()));
                None
            }
        };
        let secret = match (t.string("token"), t.string("token-sha256")) {
            (Some(_), Some(_)) => {
                t.problem(t.key("token-sha256"), "give either token or token-sha256, not both");
                None
            }
            (None, None) => {
                t.problem(t.key("token"), "is required (or token-sha256, the secret's SHA-256 in hex)");
                None
            }
            (Some(plain), None) => check_token_secret(&t, "token", &plain).then_some(TokenSecret::Plain(plain)),
            (None, Some(hex)) => match parse_sha256_hex(&hex) {
                Some(h) => Some(TokenSecret::Sha256(h)),
                None => {
                    t.problem(t.key("token-sha256"), "must be 64 hexadecimal digits (the output of `sha256sum`)");
                    None
                }
            },
        };
        t.finish();
        if let (Some(name), Some(role), Some(secret)) = (name, role, secret) {
            if tokens.iter().any(|o| o.name == name) {
                t.problem(t.key("name"), format!("duplicate token name '{name}'"));
            } else if tokens.iter().any(|o| o.secret == secret) || matches!((&secret, &token), (TokenSecret::Plain(p), Some(l)) if p == l) {
                // Said without the secret: the error is printed and logged.
                t.problem(t.key("token"), "the same secret as another token; give every holder their own");
            } else {
                tokens.push(ApiToken { name, role, secret });
            }
        }
    }
    let tls = w.section("tls").and_then(|t| {
        let cert = t.required_string("cert").map(PathBuf::from);
        let key = t.required_string("key").map(PathBuf::from);
        let client_ca = t.string("client-ca").map(PathBuf::from);
        t.finish();
        Some(WebApiTls { cert: cert?, key: key?, client_ca })
    });
    w.finish();
    WebApiConfig { host, port, token, tokens, public_read, tls }
}

/// A token must be guessable by nobody and sendable as it is written.
fn check_token_secret(f: &Fields, key: &str, t: &str) -> bool {
    match token_problem(t) {
        None => true,
        Some(problem) => {
            f.problem(f.key(key), problem);
            false
        }
    }
}

fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod web_api_tests {
    use super::*;

    fn web_api(section: &str) -> Result<WebApiConfig, Vec<String>> {
        let yaml = format!(
            "dhaf:\n  cluster-name: c\n  node-name: n1\n  web-api:\n{section}\nservices:\n  - name: s\n    domain: s.test\n    \
             entry-points: [{{ name: a, ip: 10.0.0.1 }}]\n    switcher: {{ type: exec }}\n    health-checker: {{ type: tcp }}\n"
        );
        Config::parse_with_env(&yaml, &|v| (v == "ALICE").then(|| "alice-secret-1".to_string()))
            .map(|c| c.dhaf.web_api)
            .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn named_tokens_with_roles_plain_or_hashed() {
        let hash = "d1f0e8e8ab4ce6b6c49f7d2ce1c0a6f9e2f8a2b1d3c4e5f60718293a4b5c6d7e";
        let w = web_api(&format!(
            "    public-read: true\n    tokens:\n      - {{ name: alice, role: operate, token: \"${{ALICE}}\" }}\n      \
             - {{ name: grafana, role: read, token-sha256: {hash} }}"
        ))
        .unwrap();
        assert!(w.public_read && w.has_tokens() && w.token.is_none());
        assert_eq!((w.tokens[0].name.as_str(), w.tokens[0].role), ("alice", Role::Operate));
        assert!(w.tokens[0].secret == TokenSecret::Plain("alice-secret-1".into()));
        assert!(matches!(w.tokens[1].secret, TokenSecret::Sha256(h) if h[0] == 0xd1 && h[31] == 0x7e));
        let shown = format!("{w:?}{}", serde_json::to_string(&w).unwrap());
        assert!(!shown.contains("alice-secret-1") && !shown.contains(hash), "{shown}");
        assert!(Role::Read < Role::Operate && Role::Operate < Role::Admin);
    }

    #[test]
    fn bad_tokens_are_named_by_their_key_path_without_the_secret() {
        let errs = web_api(
            "    token: \" padded-token \"\n    tokens:\n      - { name: a, role: root, token: long-enough-1 }\n      \
             - { name: b, role: read }\n      - { name: c, role: read, token-sha256: abc }\n      \
             - { name: d, role: read, token: same-secret-1 }\n      - { name: e, role: read, token: same-secret-1 }\n      \
             - { name: d, role: read, token: other-secret-1 }\n      - { name: f, role: read, token: x, token-sha256: y }",
        )
        .unwrap_err();
        let want = [
            "dhaf.web-api.token: must not start or end with spaces",
            "dhaf.web-api.tokens[0].role: 'root' is not one of: read, operate, admin",
            "dhaf.web-api.tokens[1].token: is required (or token-sha256, the secret's SHA-256 in hex)",
            "dhaf.web-api.tokens[2].token-sha256: must be 64 hexadecimal digits (the output of `sha256sum`)",
            "dhaf.web-api.tokens[4].token: the same secret as another token; give every holder their own",
            "dhaf.web-api.tokens[5].name: duplicate token name 'd'",
            "dhaf.web-api.tokens[6].token-sha256: give either token or token-sha256, not both",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
        }
        assert!(errs.iter().all(|e| !e.contains("same-secret-1") && !e.contains("padded-token")), "{errs:#?}");
    }

    #[test]
    fn tls_needs_cert_and_key_and_hosts_must_be_hosts() {
        let w = web_api("    tls: { cert: /etc/dhaf/api.pem, key: /etc/dhaf/api.key, client-ca: /etc/dhaf/ca.pem }").unwrap();
        let tls = w.tls.unwrap();
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/etc/dhaf/ca.pem")));
        let errs = web_api("    host: 127.0.0.1/evil?x=\n    tls: { cert: a.pem }").unwrap_err();
        assert_eq!(
            errs,
            ["dhaf.web-api.host: '127.0.0.1/evil?x=' is not a host name or an IP address", "dhaf.web-api.tls.key: is required"]
        );
    }
}

/// The DCS section: the seed's `etcd:` is the `etcd` DCS provider's section; `dcs:` names a DCS by
/// its `type`, like a switcher.
fn parse_dcs(top: &Fields) -> Option<ProviderConfig> {
    let etcd = top.section("etcd").map(|f| ProviderConfig {
        kind: "etcd".into(),
        name: None,
        path: f.path.clone(),
        settings: Settings::from_mapping(f.map.clone()),
    });
    let dcs = top.section("dcs").and_then(|f| parse_provider(&f, false));
    if etcd.is_some() && top.has("dcs") {
        top.problem("dcs", "give either etcd or dcs, not both");
    }
    etcd.or(dcs)
}

fn parse_service(f: &Fields) -> Option<ServiceConfig> {
    let name = f.name("name");
    let domain = f.required_string("domain");
    if let Some(p) = domain.as_deref().and_then(domain_problem) {
        f.problem(f.key("domain"), p);
    }
    let eps = f.list("entry-points", true);
    if f.has("entry-points") && eps.is_empty() {
        f.problem(f.key("entry-points"), "must list at least one entry point");
    }
    let mut entry_points = Vec::new();
    let mut names = HashSet::new();
    let mut ips = HashSet::new();
    for ep in &eps {
        let name = ep.name("name");
        let ip = ep.required_string("ip").and_then(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                ep.problem(ep.key("ip"), format!("'{s}' is not an IPv4 or IPv6 address"));
                None
            }
        });
        if let Some(n) = &name {
            if !names.insert(n.clone()) {
                ep.problem(ep.key("name"), format!("duplicate entry point name '{n}'"));
            }
        }
        if let Some(ip) = ip {
            if !ips.insert(ip) {
                ep.problem(ep.key("ip"), format!("duplicate entry point address {ip}"));
            }
        }
        ep.finish();
        if let (Some(name), Some(ip)) = (name, ip) {
            entry_points.push(EntryPoint { name, ip });
        }
    }
    let switcher = f.section_required("switcher").and_then(|s| parse_provider(&s, false));
    let health_checker = f.section_required("health-checker").and_then(|s| parse_provider(&s, false));
    let (least, most) = limits::RISE_FALL;
    let rise = f.int("rise", 2, least, most) as u32;
    let fall = f.int("fall", 2, least, most) as u32;
    let failback = match f.string("failback").as_deref() {
        None | Some("auto") => Failback::Auto,
        Some("manual") => Failback::Manual,
        Some(other) => {
            f.problem(f.key("failback"), format!("'{other}' is not one of: auto, manual"));
            Failback::Auto
        }
    };
    let failback_delay = f.duration("failback-delay", Duration::ZERO, limits::FAILBACK_DELAY.0, limits::FAILBACK_DELAY.1);
    f.finish();
    Some(ServiceConfig {
        name: name?,
        domain: domain?,
        entry_points,
        switcher: switcher?,
        health_checker: health_checker?,
        rise,
        fall,
        failback,
        failback_delay,
    })
}

fn parse_provider(f: &Fields, named: bool) -> Option<ProviderConfig> {
    let kind = f.required_string("type");
    let name = if named {
        let anon = kind.as_deref().map(|k| format!("{k}-anon")).unwrap_or_default();
        Some(f.name_opt("name").unwrap_or(anon))
    } else {
        None
    };
    let mut settings = f.map.clone();
    settings.remove("type");
    if named {
        settings.remove("name");
    }
    Some(ProviderConfig { kind: kind?, name, path: f.path.clone(), settings: Settings::from_mapping(settings) })
}

fn expand_env(v: &mut Value, path: &str, env: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<ConfigProblem>) {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let Some(end) = rest[start..].find('}') else {
                    problems.push(ConfigProblem { path: path.into(), message: "unclosed `${` in value".into() });
                    return;
                };
                let var = &rest[start + 2..start + end];
                match env(var) {
                    Some(val) => out.push_str(&val),
                    None => problems.push(ConfigProblem { path: path.into(), message: format!("environment variable {var} is not set") }),
                }
                rest = &rest[start + end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let p = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
                expand_env(v, &p, env, problems);
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_env(v, &format!("{path}[{i}]"), env, problems);
            }
        }
        _ => {}
    }
}

/// A reader over one mapping of the config that collects problems with their key paths.
///
/// Every getter records what is wrong and returns a usable value (a default, or `None`), so
/// parsing goes on and every problem of the file is reported at once. [`Fields::finish`] reports
/// keys nobody asked for (typos). Providers use it to parse their own sections:
///
/// ```
/// use dhaf_core::config::Fields;
/// use dhaf_core::config::Settings;
/// let settings = Settings::from_yaml("port: 99999\nextra: 1").unwrap();
/// let f = Fields::new(&settings, "services[0].health-checker");
/// let port = f.int("port", 80, 1, 65535);
/// f.finish();
/// assert_eq!(port, 80);
/// let err = f.into_result(()).unwrap_err();
/// assert_eq!(err.problems.len(), 2);
/// assert_eq!(err.problems[0].path, "services[0].health-checker.port");
/// ```
pub struct Fields {
    map: Mapping,
    path: String,
    used: RefCell<BTreeSet<String>>,
    problems: Rc<RefCell<Vec<ConfigProblem>>>,
    finished: std::cell::Cell<bool>,
}

impl Fields {
    /// A reader over `settings`, found at key path `path`.
    pub fn new(settings: &Settings, path: &str) -> Fields {
        Fields::over(settings.mapping().clone(), path)
    }

    fn over(map: Mapping, path: &str) -> Fields {
        Fields { map, path: path.into(), used: RefCell::default(), problems: Rc::default(), finished: Default::default() }
    }

    fn child(&self, map: Mapping, path: String) -> Fields {
        Fields { map, path, used: RefCell::default(), problems: self.problems.clone(), finished: Default::default() }
    }

    /// The full key path of `key` in this mapping.
    pub fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.into()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// This mapping's key path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Record a problem at `path`.
    pub fn problem(&self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.borrow_mut().push(ConfigProblem { path: path.into(), message: message.into() });
    }

    /// Whether `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.used.borrow_mut().insert(key.into());
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The raw value at `key`, for settings with a shape of their own (`null` counts as unset).
    pub fn value(&self, key: &str) -> Option<SettingValue> {
        self.get(key).cloned().map(SettingValue::from_yaml)
    }

    /// An optional string (numbers and booleans are taken as written).
    pub fn string(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.problem(self.key(key), "must be a string");
                None
            }
        }
    }

    /// A required string.
    pub fn required_string(&self, key: &str) -> Option<String> {
        let v = self.string(key);
        if v.is_none() && !self.has(key) {
            self.problem(self.key(key), "is required");
        }
        v
    }

    fn check_name(&self, key: &str, v: String) -> Option<String> {
        match name_problem(&v) {
            None => Some(v),
            Some(p) => {
                self.problem(self.key(key), p);
                None
            }
        }
    }

    /// A required name: `a-z A-Z 0-9 - _`, at most 64 characters.
    pub fn name(&self, key: &str) -> Option<String> {
        self.required_string(key).and_then(|v| self.check_name(key, v))
    }

    /// An optional name.
    pub fn name_opt(&self, key: &str) -> Option<String> {
        self.string(key).and_then(|v| self.check_name(key, v))
    }

    /// An integer in `min..=max` (written as a number or a numeric string), or `default`.
    pub fn int(&self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(v) = self.get(key) else { return default };
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n.map(|n| (n, int_problem(n, (min, max)))) {
            Some((n, None)) => n,
            _ => {
                self.problem(self.key(key), format!("must be a whole number from {min} to {max}"));
                default
            }
        }
    }

    /// A duration in `min..=max`, or `default`: `250ms`, `1.5s`, `2m`, `1h`, or a bare number of
    /// seconds (see [`parse_duration`]). A problem names the accepted range.
    pub fn duration(&self, key: &str, default: Duration, min: Duration, max: Duration) -> Duration {
        self.duration_checked(key, default, min, max, None)
    }

    /// A duration as [`Fields::duration`] with whole-second bounds, or `default` seconds.
    pub fn seconds(&self, key: &str, default: u64, min: u64, max: u64) -> Duration {
        self.duration(key, Duration::from_secs(default), Duration::from_secs(min), Duration::from_secs(max))
    }

    /// A duration of whole seconds (`30`, `30s`, `2m`) in `min..=max` seconds, or `default`; a
    /// fraction is refused with `why` (what counts in whole seconds).
    pub fn whole_seconds(&self, key: &str, default: u64, min: u64, max: u64, why: &str) -> Duration {
        let (default, min, max) = (Duration::from_secs(default), Duration::from_secs(min), Duration::from_secs(max));
        self.duration_checked(key, default, min, max, Some(why))
    }

    fn duration_checked(&self, key: &str, default: Duration, min: Duration, max: Duration, whole: Option<&str>) -> Duration {
        let Some(v) = self.get(key) else { return default };
        let range = format!("from {} to {}", format_duration(min), format_duration(max));
        let text = match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => {
                self.problem(self.key(key), format!("must be a duration {range}, like 250ms, 1.5s, 2m or a number of seconds"));
                return default;
            }
        };
        let d = match parse_duration(&text) {
            Ok(d) => d,
            Err(e) => {
                self.problem(self.key(key), format!("{e}; must be {range}"));
                return default;
            }
        };
        if let Some(why) = whole {
            if d.subsec_nanos() != 0 {
                self.problem(self.key(key), format!("'{}' is not a whole number of seconds: {why}", text.trim()));
                return default;
            }
        }
        if let Some(p) = duration_problem(d, (min, max)) {
            self.problem(self.key(key), p);
            return default;
        }
        d
    }

    /// A boolean, or `default`.
    pub fn boolean(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(_) => {
                self.problem(self.key(key), "must be true or false");
                default
            }
        }
    }

    /// A string-to-string mapping (e.g. HTTP headers).
    pub fn string_map(&self, key: &str) -> Vec<(String, String)> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| {
                    let k = k.as_str().map(str::to_string);
                    let v = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    };
                    match (k, v) {
                        (Some(k), Some(v)) => Some((k, v)),
                        _ => {
                            self.problem(self.key(key), "must map names to string values");
                            None
                        }
                    }
                })
                .collect(),
            Some(_) => {
                self.problem(self.key(key), "must be a mapping of names to values");
                Vec::new()
            }
        }
    }

    /// An optional nested mapping.
    pub fn section(&self, key: &str) -> Option<Fields> {
        match self.get(key)? {
            Value::Mapping(m) => Some(self.child(m.clone(), self.key(key))),
            _ => {
                self.problem(self.key(key), "must be a mapping");
                None
            }
        }
    }

    /// A required nested mapping.
    pub fn section_required(&self, key: &str) -> Option<Fields> {
        let s = self.section(key);
        if s.is_none() && !self.has(key) {
            self.problem(self.key(key), "is required");
        }
        s
    }

    /// A list of mappings; `required` makes a missing list a problem.
    pub fn list(&self, key: &str, required: bool) -> Vec<Fields> {
        match self.get(key) {
            None => {
                if required {
                    self.problem(self.key(key), "is required");
                }
                Vec::new()
            }
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let path = format!("{}[{i}]", self.key(key));
                    match v {
                        Value::Mapping(m) => Some(self.child(m.clone(), path)),
                        _ => {
                            self.problem(path, "must be a mapping");
                            None
                        }
                    }
                })
                .collect(),
            Some(_) => {
                self.problem(self.key(key), "must be a list");
                Vec::new()
            }
        }
    }

    /// Report every key of this mapping that no getter asked for (once: calling it again, or
    /// [`Fields::into_result`] after it, adds nothing).
    pub fn finish(&self) {
        if self.finished.replace(true) {
            return;
        }
        let used = self.used.borrow();
        for k in self.map.keys() {
            let name = k.as_str().unwrap_or("?");
            if !used.contains(name) {
                let known: Vec<&str> = used.iter().map(String::as_str).collect();
                self.problem(self.key(name), format!("unknown key (known here: {})", known.join(", ")));
            }
        }
    }

    /// Take the problems collected so far (from this reader and every child).
    pub fn take_problems(&self) -> Vec<ConfigProblem> {
        std::mem::take(&mut *self.problems.borrow_mut())
    }

    /// `Ok(value)` if no problem was recorded, else every problem. Keys of this mapping no
    /// getter asked for are problems ([`Fields::finish`]), so a typo in a provider's section is
    /// refused even by a factory that never calls `finish`.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        self.finish();
        let problems = self.take_problems();
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
dhaf:
  cluster-name: c1
  node-name: n1
etcd:
  hosts: 127.0.0.1:2379,http://127.0.0.2:2379
services:
  - name: main
    domain: foo.com
    entry-points:
      - name: ep-1
        ip: 111.111.111.11
      - name: ep-2
        ip: "2001:db8::2"
    switcher:
      type: cloudflare
      api-token: ${CF_TOKEN}
      zone: foo.com
    health-checker:
      type: web
      schema: http
notifiers:
  - type: email
    from: a@b.c
"#;

    fn env(name: &str) -> Option<String> {
        (name == "CF_TOKEN").then(|| "secret-token".to_string())
    }

    #[test]
    fn parses_the_seed_example_with_defaults() {
        let c = Config::parse_with_env(GOOD, &env).unwrap();
        assert_eq!(c.dhaf.cluster_name, "c1");
        assert_eq!(c.dhaf.tact_interval, Duration::from_secs(10));
        assert_eq!(c.dhaf.healthy_node_status_ttl, Duration::from_secs(30));
        assert_eq!(c.dhaf.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.dhaf.web_api.port, 8128);
        assert_eq!(c.dhaf.web_api.host, "localhost");
        let dcs = c.dcs.unwrap();
        assert_eq!((dcs.kind.as_str(), dcs.path.as_str()), ("etcd", "etcd"));
        assert_eq!(dcs.fields().string("hosts").as_deref(), Some("127.0.0.1:2379,http://127.0.0.2:2379"));
        let s = &c.services[0];
        assert_eq!(s.entry_points.len(), 2);
        assert!(s.entry_points[1].ip.is_ipv6());
        assert_eq!(s.switcher.kind, "cloudflare");
        assert_eq!(s.switcher.settings.get("api-token").unwrap().as_str(), Some("secret-token"));
        assert!(s.switcher.settings.get("type").is_none());
        assert_eq!(c.notifiers[0].name.as_deref(), Some("email-anon"));
        assert_eq!((s.rise, s.fall, s.failback), (2, 2, Failback::Auto));
    }

    #[test]
    fn a_definition_holds_what_decides_and_no_secret_or_node_local_path() {
        let c = Config::parse_with_env(GOOD, &env).unwrap();
        let d = c.services[0].definition(1);
        assert_eq!(d.settings["entry-points[0]"], "ep-1 111.111.111.11");
        assert_eq!(d.settings["switcher.type"], "cloudflare");
        assert_eq!(d.settings["switcher.zone"], "foo.com");
        assert_eq!(d.settings["switcher.api-token"], "(secret)");
        assert!(!format!("{d:?}").contains("secret-token"), "{d:?}");

        // Another token, other script paths: the same definition. Another order: another one.
        let other = GOOD.replace("${CF_TOKEN}", "another-token");
        assert_eq!(Config::parse_with_env(&other, &env).unwrap().services[0].definition(1), d);
        let swapped = GOOD.replace("ep-1", "ep-x").replace("ep-2", "ep-1").replace("ep-x", "ep-2");
        let e = Config::parse_with_env(&swapped, &env).unwrap().services[0].definition(1);
        assert_ne!(e.fingerprint, d.fingerprint);
        assert_eq!(d.differences(&e)[0], "entry-points[0]: ep-1 111.111.111.11 \u{2260} ep-2 111.111.111.11");
        assert_ne!(c.services[0].definition(2).fingerprint, d.fingerprint, "min-votes changes decisions");

        let exec = |dir: &str| {
            let yaml = format!(
                "dhaf: {{ cluster-name: c1, node-name: n1 }}\nservices:\n  - name: s\n    domain: foo.com\n    entry-points: [{{ name: a, ip: 10.0.0.1 }}]\n    switcher: {{ type: exec, init: {dir}/i, switch: {dir}/s, env: {{ X: {dir} }} }}\n    health-checker: {{ type: web, headers: {{ Authorization: Bearer {dir}, Host: foo.com }} }}\n"
            );
            Config::parse(&yaml).unwrap().services[0].definition(1)
        };
        assert_eq!(exec("/srv/a"), exec("/opt/b"), "script paths, env and a secret header are node-local or hidden");
        assert_eq!(exec("/srv/a").settings["health-checker.headers.Authorization"], "(secret)");
        assert_eq!(exec("/srv/a").settings["health-checker.headers.Host"], "foo.com");
    }

    #[test]
    fn secrets_are_not_serialized_or_debug_printed() {
        let yaml = GOOD
            .replace("  node-name: n1\n", "  node-name: n1\n  web-api: { token: api-secret-1 }\n")
            .replace("hosts: 127.0.0.1:2379,", "password: etcd-secret\n  username: u\n  hosts: 127.0.0.1:2379,");
        let c = Config::parse_with_env(&yaml, &env).unwrap();
        assert_eq!(c.dhaf.web_api.token.as_deref(), Some("api-secret-1"));
        for shown in [serde_json::to_string(&c).unwrap(), format!("{c:?}")] {
            for secret in ["secret-token", "api-secret-1", "etcd-secret"] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let bad = r#"
dhaf:
  cluster-name: "bad name!"
  tact-interval: 0
  heartbeat-interval: 20
services:
  - name: main
    domain: foo.com
    entry-points:
      - name: ep/1
        ip: 300.1.1.1
      - name: ep-2
        ip: 10.0.0.2
      - name: ep-2
        ip: 10.0.0.3
    switcher:
      type: exec
    health-checker:
      type: web
    fal: 3
  - name: main
    domain: foo.com
    entry-points: []
    switcher: { type: exec }
    health-checker: { type: web }
"#;
        let err = Config::parse_with_env(bad, &env).unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        let expect = [
            "dhaf.cluster-name: only a-z A-Z 0-9 - _ allowed, at most 64 characters",
            "dhaf.node-name: is required",
            "dhaf.tact-interval: must be a duration from 100ms to 1h (a bare number is seconds), not 0s",
            "dhaf.heartbeat-interval: must be at most half of healthy-node-status-ttl",
            "services[0].entry-points[0].name: only a-z A-Z 0-9 - _ allowed",
            "services[0].entry-points[0].ip: '300.1.1.1' is not an IPv4 or IPv6 address",
            "services[0].entry-points[2].name: duplicate entry point name 'ep-2'",
            "services[0].fal: unknown key",
            "services[1].entry-points: must list at least one entry point",
            "services[1].name: duplicate service name 'main'",
        ];
        for e in expect {
            assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in {text:#?}");
        }
    }

    #[test]
    fn a_config_built_in_code_is_refused_with_the_message_the_yaml_gets() {
        let yaml = |lines: &str| {
            format!(
                "dhaf:\n  cluster-name: c1\n  node-name: n1\n{lines}services:\n  - name: main\n    domain: foo.com\n    \
                 entry-points: [{{ name: a, ip: 10.0.0.1 }}, {{ name: b, ip: 10.0.0.2 }}]\n    switcher: {{ type: exec }}\n    \
                 health-checker: {{ type: tcp }}\n    fall: 0\n"
            )
        };
        let code = || {
            Config::new("c1", "n1").with_service(
                ServiceConfig::new("main", "foo.com", ProviderConfig::new("tcp"), ProviderConfig::new("exec"))
                    .with_entry_point("a", "10.0.0.1".parse().unwrap())
                    .with_entry_point("b", "10.0.0.2".parse().unwrap()),
            )
        };
        let text = |e: ConfigError| e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>();

        let mut c = code();
        c.dhaf.check_concurrency = 0;
        c.services[0].fall = 0;
        let from_yaml = text(Config::parse(&yaml("  check-concurrency: 0\n")).unwrap_err());
        assert_eq!(
            from_yaml,
            ["dhaf.check-concurrency: must be a whole number from 1 to 4096", "services[0].fall: must be a whole number from 1 to 100"]
        );
        assert_eq!(text(c.validate().unwrap_err()), from_yaml);

        let mut c = code();
        c.dhaf.tact_interval = Duration::from_millis(99);
        c.services[0].fall = 0;
        assert_eq!(text(c.validate().unwrap_err()), text(Config::parse(&yaml("  tact-interval: 99ms\n")).unwrap_err()));

        // A config built in code with every default is as good as the same file.
        let good = yaml("").replace("    fall: 0\n", "");
        let parsed = Config::parse(&good).unwrap();
        assert!(code().validate().is_ok());
        assert_eq!(code().services, parsed.services);
        assert_eq!(format!("{:?}", code().dhaf), format!("{:?}", parsed.dhaf));
    }

    #[test]
    fn missing_env_var_is_named() {
        let err = Config::parse_with_env(GOOD, &|_| None).unwrap_err();
        assert_eq!(err.problems[0].to_string(), "services[0].switcher.api-token: environment variable CF_TOKEN is not set");
    }

    #[test]
    fn no_etcd_section_means_embedded() {
        let c = Config::parse_with_env(&GOOD.replace("etcd:\n  hosts: 127.0.0.1:2379,http://127.0.0.2:2379\n", ""), &env).unwrap();
        assert!(c.dcs.is_none());
    }

    #[test]
    fn the_dcs_is_a_provider_section_named_by_etcd_or_by_dcs_type() {
        // `dcs:` names any registered DCS by its type, like a switcher; its settings are the
        // provider's to read, at build.
        let etcd = "etcd:\n  hosts: 127.0.0.1:2379,http://127.0.0.2:2379\n";
        let other = Config::parse_with_env(&GOOD.replace(etcd, "dcs:\n  type: consul\n  address: 10.0.0.1:8500\n"), &env).unwrap();
        let dcs = other.dcs.unwrap();
        assert_eq!((dcs.kind.as_str(), dcs.path.as_str()), ("consul", "dcs"));
        assert_eq!(dcs.fields().string("address").as_deref(), Some("10.0.0.1:8500"));
        assert!(dcs.settings.get("type").is_none());

        let both = GOOD.replace(etcd, &format!("{etcd}dcs: {{ type: consul }}\n"));
        let err = Config::parse_with_env(&both, &env).unwrap_err();
        assert_eq!(err.problems.iter().map(ToString::to_string).collect::<Vec<_>>(), ["dcs: give either etcd or dcs, not both"]);
        let untyped = Config::parse_with_env(&GOOD.replace(etcd, "dcs: { address: x }\n"), &env).unwrap_err();
        assert_eq!(untyped.problems[0].to_string(), "dcs.type: is required");
        let not_a_mapping = Config::parse_with_env(&GOOD.replace(etcd, "etcd: 127.0.0.1:2379\n"), &env).unwrap_err();
        assert_eq!(not_a_mapping.problems[0].to_string(), "etcd: must be a mapping");
    }

    fn dhaf_with(lines: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(&GOOD.replace("  node-name: n1\n", &format!("  node-name: n1\n{lines}")), &env)
    }

    #[test]
    fn durations_take_units_and_bare_numbers_stay_seconds() {
        let ok = [
            ("10", Duration::from_secs(10)),
            ("0", Duration::ZERO),
            ("0.5", Duration::from_millis(500)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            (" 2m ", Duration::from_secs(120)),
            ("2 m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0.25h", Duration::from_secs(900)),
            ("1.0005s", Duration::from_micros(1_000_500)),
            ("0.5ms", Duration::from_micros(500)),
            ("007s", Duration::from_secs(7)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "s",
            "ms",
            "-1",
            "-1s",
            "1.",
            ".5s",
            "1..5s",
            "1,5s",
            "5 parsecs",
            "1S",
            "1sec",
            "1m30s",
            "1e3",
            "0x10",
            "1.5.s",
            "0.0000000001s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("duration") || e.contains("nanosecond"), "{bad:?}: {e}");
        }
        assert!(parse_duration("99999999999999999999h").unwrap_err().contains("too long"));
        assert!(parse_duration("9999999999h").unwrap_err().contains("too long"));
    }

    #[test]
    fn durations_are_written_in_their_largest_exact_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(50), "50ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(86400), "24h"),
            (Duration::from_micros(1500), "0.0015s"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn sub_second_settings_are_read_and_their_bounds_named() {
        let c = dhaf_with("  tact-interval: 200ms\n  heartbeat-interval: 0.5s\n  healthy-node-status-ttl: 2\n").unwrap();
        assert_eq!(c.dhaf.tact_interval, Duration::from_millis(200));
        assert_eq!(c.dhaf.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(c.dhaf.healthy_node_status_ttl, Duration::from_secs(2));
        let c = dhaf_with("  tact-interval: 100ms\n  healthy-node-status-ttl: 1m\n  reconcile-interval: 2m\n").unwrap();
        assert_eq!(c.dhaf.tact_interval, Duration::from_millis(100));
        assert_eq!(c.dhaf.healthy_node_status_ttl, Duration::from_secs(60));
        assert_eq!(c.dhaf.reconcile_interval, Duration::from_secs(120));

        let problems = |lines: &str| -> Vec<String> { dhaf_with(lines).unwrap_err().problems.iter().map(|p| p.to_string()).collect() };
        assert_eq!(
            problems("  tact-interval: 99ms\n"),
            ["dhaf.tact-interval: must be a duration from 100ms to 1h (a bare number is seconds), not 99ms"]
        );
        assert_eq!(
            problems("  heartbeat-interval: 50ms\n"),
            ["dhaf.heartbeat-interval: must be a duration from 100ms to 1h (a bare number is seconds), not 50ms"]
        );
        assert_eq!(
            problems("  healthy-node-status-ttl: 2.5s\n"),
            ["dhaf.healthy-node-status-ttl: '2.5s' is not a whole number of seconds: the presence lease's TTL is counted in whole seconds (etcd's unit)"]
        );
        assert_eq!(
            problems("  healthy-node-status-ttl: 2\n  heartbeat-interval: 1.5s\n"),
            ["dhaf.heartbeat-interval: must be at most half of healthy-node-status-ttl (2s), or a single late heartbeat marks the node dead"]
        );
        assert_eq!(
            problems("  tact-interval: 1 fortnight\n"),
            ["dhaf.tact-interval: '1 fortnight' is not a duration: write 250ms, 1.5s, 2m or 1h (a bare number is seconds); must be from 100ms to 1h"]
        );
        assert_eq!(
            problems("  tact-interval: [1]\n"),
            ["dhaf.tact-interval: must be a duration from 100ms to 1h, like 250ms, 1.5s, 2m or a number of seconds"]
        );
    }

    proptest::proptest! {
        #[test]
        fn written_durations_read_back(nanos in 0u64..=86_400_000_000_000_000, millis in 0u64..=100_000_000, secs in 0u64..=1_000_000) {
            let d = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            proptest::prop_assert_eq!(parse_duration(&format!("{millis}ms")), Ok(Duration::from_millis(millis)));
            proptest::prop_assert_eq!(parse_duration(&secs.to_string()), Ok(Duration::from_secs(secs)));
            proptest::prop_assert_eq!(parse_duration(&format!("{}.{:03}s", millis / 1000, millis % 1000)), Ok(Duration::from_millis(millis)));
        }

        #[test]
        fn any_text_is_read_or_refused_without_panicking(text in "\\PC{0,24}") {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            }
        }
    }
}
