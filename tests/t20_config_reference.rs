//! docs/config-reference.md stays true to the code.
//!
//! Each table of the reference is marked `<!-- keys: <section> -->`. For every section the test
//! builds a config that sets every documented key to its documented example, which must parse and
//! build with the built-in registry; one past each documented `min–max` range (for a duration, just
//! past either end, while both ends build) must be refused
//! with exactly that range in the message; then it adds an undocumented key and reads the `unknown key
//! (known here: …)` error, whose list is exactly the keys the code reads in that section: it must
//! equal the documented keys, both ways. The provider types the registry knows must each have
//! their own section.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use dhaf::core::config::{format_duration, parse_duration};

use serde_yaml::{Mapping, Value};
use support::{build, listed, pem_file, problem_at, registered_types, root};

/// One documented key and its example value (YAML).
struct Row {
    key: String,
    /// The "default" cell.
    default: String,
    /// The "values" cell: allowed values, with a numeric range written `min–max`.
    values: String,
    example: String,
    /// The "type" cell.
    kind: String,
}

impl Row {
    /// Whether the key is a duration (`250ms`, `2m`, a bare number of seconds).
    fn is_duration(&self) -> bool {
        self.kind == "duration" || self.kind == "whole seconds"
    }

    /// The documented `min–max` range of a duration key, as written (`100ms–1h`).
    fn duration_range(&self) -> Option<(Duration, Duration, String)> {
        if !self.is_duration() {
            return None;
        }
        let range = self.values.split(',').next()?.trim();
        let (min, max) = range.split_once('–')?;
        let min = parse_duration(min).unwrap_or_else(|e| panic!("{}: {e}", self.key));
        let max = parse_duration(max).unwrap_or_else(|e| panic!("{}: {e}", self.key));
        Some((min, max, format!("from {} to {}", format_duration(min), format_duration(max))))
    }

    /// The documented `min–max` range of a numeric key.
    fn range(&self) -> Option<(u64, u64)> {
        if self.is_duration() {
            return None;
        }
        let (before, after) = self.values.split_once('–')?;
        let min = before.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
        let max = after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
        Some((min, max))
    }
}

/// The documented sections, in file order.
fn reference() -> Vec<(String, Vec<Row>)> {
    let text = std::fs::read_to_string(root().join("docs/config-reference.md")).expect("docs/config-reference.md");
    let mut sections: Vec<(String, Vec<Row>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("<!-- keys: ").and_then(|l| l.strip_suffix(" -->")) {
            assert!(sections.iter().all(|(s, _)| s != id), "section {id} is documented twice");
            sections.push((id.to_string(), Vec::new()));
            current = Some(sections.len() - 1);
            continue;
        }
        let Some(i) = current else { continue };
        if !line.starts_with('|') {
            if !sections[i].1.is_empty() {
                current = None;
            }
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells[0] == "key" || cells[0].starts_with("---") {
            continue;
        }
        assert_eq!(cells.len(), 6, "section {}: a row needs key, type, default, values, description, example: {line}", sections[i].0);
        let unquote = |c: &str| c.strip_prefix('`').and_then(|c| c.strip_suffix('`')).map(str::to_string);
        let key = unquote(cells[0]).unwrap_or_else(|| panic!("the key cell must be `key`: {line}"));
        let example = unquote(cells[5]).unwrap_or_else(|| panic!("the example cell must be `yaml`: {line}"));
        assert!(sections[i].1.iter().all(|r| r.key != key), "{key} is documented twice in {}", sections[i].0);
        sections[i].1.push(Row { key, default: cells[2].to_string(), values: cells[3].to_string(), example, kind: cells[1].to_string() });
    }
    sections
}

#[derive(Clone, Copy)]
enum Seg {
    Key(&'static str),
    First,
}

/// Where a section sits: the section it lives in (filled with its own examples first), the steps
/// from there, and the keys it needs besides the documented ones.
fn shape(id: &str) -> (Option<String>, Vec<Seg>, Vec<(&'static str, String)>) {
    use Seg::*;
    let words: Vec<&str> = id.split(' ').collect();
    match words.as_slice() {
        ["top"] => (None, vec![], vec![]),
        ["dhaf"] => (None, vec![Key("dhaf")], vec![]),
        ["dhaf.web-api"] => (Some("dhaf".into()), vec![Key("web-api")], vec![]),
        ["dhaf.web-api.tls"] => (Some("dhaf.web-api".into()), vec![Key("tls")], vec![]),
        ["dhaf.web-api.tokens[]"] => (Some("dhaf.web-api".into()), vec![Key("tokens"), First], vec![]),
        ["etcd"] => (None, vec![Key("etcd")], vec![]),
        ["etcd.tls"] => (Some("etcd".into()), vec![Key("tls")], vec![]),
        ["services[]"] => (None, vec![Key("services"), First], vec![]),
        ["services[].entry-points[]"] => (Some("services[]".into()), vec![Key("entry-points"), First], vec![]),
        // `type` and `name` with a notifier's own required keys.
        ["notifiers[]"] => (None, vec![Key("notifiers"), First], vec![("token", "'1:x'".into()), ("join-code", "join-me-please".into())]),
        // A DCS other than the seed's `etcd:` is named by its type under `dcs:`.
        ["dcs", kind] => (None, vec![Key("dcs")], vec![("type", kind.to_string())]),
        ["checker", kind] => (None, vec![Key("services"), First, Key("health-checker")], vec![("type", kind.to_string())]),
        ["switcher", kind] => (None, vec![Key("services"), First, Key("switcher")], vec![("type", kind.to_string())]),
        ["notifier", kind] => (None, vec![Key("notifiers"), First], vec![("type", kind.to_string())]),
        ["notifier", kind, sub] => {
            let sub: &'static str = Box::leak(sub.to_string().into_boxed_str());
            (Some(format!("notifier {kind}")), vec![Key(sub)], vec![])
        }
        _ => panic!("docs/config-reference.md: section '{id}' is not one the test knows; add it to shape()"),
    }
}

/// Keys written instead of another (`key`, `instead of`): the documented config leaves `key` out;
/// its example is checked on its own, in place of the other.
const ALTERNATIVES: &[(&str, &str, &str)] = &[("dhaf.web-api.tokens[]", "token-sha256", "token"), ("top", "dcs", "etcd")];

const BASE: &str = r#"
dhaf: { cluster-name: c1, node-name: node-1 }
services:
  - name: s
    domain: foo.com
    entry-points: [{ name: ep-1, ip: 10.0.0.1 }, { name: ep-2, ip: 10.0.0.2 }]
    switcher: { type: exec, init: /etc/dhaf/init.sh, switch: /etc/dhaf/switch.sh }
    health-checker: { type: tcp, port: 443 }
"#;

fn step(v: &mut Value, seg: Seg) -> &mut Value {
    match seg {
        Seg::Key(k) => {
            let m = v.as_mapping_mut().expect("a mapping on the way");
            if !m.contains_key(k) {
                m.insert(k.into(), Value::Mapping(Mapping::new()));
            }
            m.get_mut(k).unwrap()
        }
        Seg::First => {
            if !matches!(v, Value::Sequence(s) if !s.is_empty()) {
                *v = Value::Sequence(vec![Value::Mapping(Mapping::new())]);
            }
            &mut v.as_sequence_mut().unwrap()[0]
        }
    }
}

fn path_of(id: &str) -> Vec<Seg> {
    let (parent, segs, _) = shape(id);
    let mut path = parent.map(|p| path_of(&p)).unwrap_or_default();
    path.extend(segs);
    path
}

/// The base config with section `id` (and the sections it lives in) set to its documented
/// examples only.
fn documented_config(id: &str, docs: &BTreeMap<String, Vec<(String, Value)>>) -> Value {
    let (parent, _, fixed) = shape(id);
    let mut root = match &parent {
        Some(p) => documented_config(p, docs),
        None => serde_yaml::from_str(BASE).unwrap(),
    };
    let mut target = &mut root;
    for seg in path_of(id) {
        target = step(target, seg);
    }
    let mut section = Mapping::new();
    for (k, v) in fixed {
        section.insert(k.into(), serde_yaml::from_str(&v).unwrap());
    }
    for (k, v) in &docs[id] {
        if !ALTERNATIVES.iter().any(|(s, alt, _)| *s == id && alt == k) {
            section.insert(k.as_str().into(), v.clone());
        }
    }
    *target = Value::Mapping(section);
    root
}

/// Point example paths at files that exist: scripts at the shipped example scripts, certificates
/// and keys at a generated PEM file.
fn localize(v: &mut Value, pem: &Path) {
    match v {
        Value::String(s) if s.ends_with(".sh") => {
            let name = Path::new(s.as_str()).file_name().unwrap().to_owned();
            let script = root().join("examples/configs/scripts").join(name);
            assert!(script.is_file(), "{s}: no script of that name in examples/configs/scripts");
            *s = script.display().to_string();
        }
        Value::String(s) if s.ends_with(".pem") => *s = pem.display().to_string(),
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| localize(v, pem)),
        Value::Sequence(items) => items.iter_mut().for_each(|v| localize(v, pem)),
        _ => {}
    }
}

fn section_path(id: &str) -> String {
    let mut out = String::new();
    for seg in path_of(id) {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::First => out.push_str("[0]"),
        }
    }
    out
}

#[test]
fn every_documented_key_is_accepted_and_every_accepted_key_is_documented() {
    let dir = tempfile::tempdir().unwrap();
    let pem = pem_file(dir.path());
    let sections = reference();
    assert!(sections.len() >= 14, "the reference lost sections: {:?}", sections.iter().map(|(s, _)| s).collect::<Vec<_>>());
    let docs: BTreeMap<String, Vec<(String, Value)>> = sections
        .iter()
        .map(|(id, rows)| {
            let parsed = rows
                .iter()
                .map(|r| {
                    let v = serde_yaml::from_str(&r.example)
                        .unwrap_or_else(|e| panic!("{id}.{}: example {:?} is not YAML: {e}", r.key, r.example));
                    (r.key.clone(), v)
                })
                .collect();
            (id.clone(), parsed)
        })
        .collect();

    let mut failures = Vec::new();
    for (id, rows) in &sections {
        let mut config = documented_config(id, &docs);
        localize(&mut config, &pem);
        let yaml = serde_yaml::to_string(&config).unwrap();
        if let Err(e) = build(&yaml) {
            failures.push(format!("section {id}: the documented examples do not build:\n{e}{yaml}"));
            continue;
        }
        for (_, alt, instead) in ALTERNATIVES.iter().filter(|(s, ..)| s == id) {
            let mut other = config.clone();
            let mut target = &mut other;
            for seg in path_of(id) {
                target = step(target, seg);
            }
            let m = target.as_mapping_mut().unwrap();
            m.remove(*instead);
            let example = docs[id].iter().find(|(k, _)| k == alt).map(|(_, v)| v.clone()).expect("the alternative is documented");
            m.insert((*alt).into(), example);
            if let Err(e) = build(&serde_yaml::to_string(&other).unwrap()) {
                failures.push(format!("section {id}: {alt} in place of {instead} does not build:\n{e}"));
            }
        }
        // The documented range is the one the code enforces: one past it is refused, naming it.
        for row in rows {
            let Some((min, max)) = row.range() else { continue };
            let mut over = config.clone();
            let mut target = &mut over;
            for seg in path_of(id) {
                target = step(target, seg);
            }
            target.as_mapping_mut().unwrap().insert(row.key.as_str().into(), (max + 1).into());
            let path = match section_path(id) {
                p if p.is_empty() => row.key.clone(),
                p => format!("{p}.{}", row.key),
            };
            let want = format!("from {min} to {max}");
            match build(&serde_yaml::to_string(&over).unwrap()) {
                Err(e) if problem_at(&e, &path).is_some_and(|p| p.message.contains(&want)) => {}
                Err(e) => {
                    failures.push(format!("section {id}: {} documented as {min}–{max}, but {} is refused otherwise: {e}", row.key, max + 1))
                }
                Ok(_) => failures.push(format!("section {id}: {} documented as {min}–{max}, but {} is accepted", row.key, max + 1)),
            }
        }
        // A documented duration range is the one the code enforces: just past either end is
        // refused, naming it; both ends are accepted.
        for row in rows {
            let Some((min, max, want)) = row.duration_range() else { continue };
            let path = match section_path(id) {
                p if p.is_empty() => row.key.clone(),
                p => format!("{p}.{}", row.key),
            };
            // A whole-seconds key is probed a second past its ends, any other a millisecond.
            let nudge = if row.kind == "whole seconds" { Duration::from_secs(1) } else { Duration::from_millis(1) };
            let mut probes = vec![(format_duration(max + nudge), false), (format_duration(min), true)];
            // The heartbeat's top end is only reachable beside a longer TTL than is allowed.
            if row.key != "heartbeat-interval" {
                probes.push((format_duration(max), true));
            }
            if min >= nudge {
                probes.push((format_duration(min - nudge), false));
            }
            for (value, accepted) in probes {
                let mut probe = config.clone();
                let mut target = &mut probe;
                for seg in path_of(id) {
                    target = step(target, seg);
                }
                let m = target.as_mapping_mut().unwrap();
                m.insert(row.key.as_str().into(), value.as_str().into());
                let built = build(&serde_yaml::to_string(&probe).unwrap());
                match (built, accepted) {
                    (Ok(_), true) => {}
                    (Err(e), false) if problem_at(&e, &path).is_some_and(|p| p.message.contains(&want)) => {}
                    (Err(e), _) => failures
                        .push(format!("section {id}: {} documented as {}, but {value} is refused otherwise: {e}", row.key, row.values)),
                    (Ok(_), false) => {
                        failures.push(format!("section {id}: {} documented as {}, but {value} is accepted", row.key, row.values))
                    }
                }
            }
        }
        // `type` and `name` of a provider section are taken before the provider reads its keys.
        if id == "notifiers[]" {
            continue;
        }
        let mut target = &mut config;
        for seg in path_of(id) {
            target = step(target, seg);
        }
        target.as_mapping_mut().unwrap().insert("zz-undocumented".into(), 1.into());
        let yaml = serde_yaml::to_string(&config).unwrap();
        let err = build(&yaml).expect_err("an undocumented key is refused");
        let path = match section_path(id) {
            p if p.is_empty() => "zz-undocumented".to_string(),
            p => format!("{p}.zz-undocumented"),
        };
        let Some(problem) = problem_at(&err, &path) else {
            failures.push(format!("section {id}: no unknown-key problem at {path}: {err}"));
            continue;
        };
        let accepted: BTreeSet<String> = listed(&problem.message, "(known here: ").into_iter().collect();
        let documented: BTreeSet<String> = rows.iter().map(|r| r.key.clone()).filter(|k| k != "type").collect();
        let undocumented: Vec<_> = accepted.difference(&documented).collect();
        let unaccepted: Vec<_> = documented.difference(&accepted).collect();
        if !undocumented.is_empty() || !unaccepted.is_empty() {
            failures
                .push(format!("section {id}: accepted but not documented: {undocumented:?}; documented but not accepted: {unaccepted:?}"));
        }
    }
    assert!(failures.is_empty(), "docs/config-reference.md disagrees with the code:\n{}", failures.join("\n"));
}

#[test]
fn every_registered_provider_type_has_a_section() {
    let ids: BTreeSet<String> = reference().into_iter().map(|(id, _)| id).collect();
    for (registry_kind, doc_kind) in [("health-checker", "checker"), ("switcher", "switcher"), ("notifier", "notifier")] {
        let registered = registered_types(registry_kind);
        assert!(!registered.is_empty());
        let documented: BTreeSet<String> =
            ids.iter().filter_map(|id| id.strip_prefix(&format!("{doc_kind} "))).filter(|k| !k.contains(' ')).map(str::to_string).collect();
        assert_eq!(
            registered.into_iter().collect::<BTreeSet<_>>(),
            documented,
            "{registry_kind} types: registry vs docs/config-reference.md"
        );
    }
}

#[test]
fn a_wrong_reference_is_caught() {
    // The check itself must be able to fail: a documented key the code does not read.
    let mut docs: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    docs.insert("checker tcp".into(), vec![("port".into(), 443.into()), ("timout".into(), 5.into())]);
    let yaml = serde_yaml::to_string(&documented_config("checker tcp", &docs)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config: Value = serde_yaml::from_str(&yaml).unwrap();
    localize(&mut config, &pem_file(dir.path()));
    let err = build(&serde_yaml::to_string(&config).unwrap()).expect_err("a misspelt key is refused");
    let p = problem_at(&err, "services[0].health-checker.timout").expect("the misspelt key is named");
    assert_eq!(listed(&p.message, "(known here: "), vec!["port", "timeout"]);
}

#[test]
fn documented_defaults_of_the_core_keys_are_the_code_s() {
    let sections = reference();
    let default_of = |id: &str, key: &str| -> String {
        let rows = &sections.iter().find(|(s, _)| s == id).unwrap_or_else(|| panic!("no section {id}")).1;
        let row = rows.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("{id}.{key} is not documented"));
        row.default.trim_matches('`').to_string()
    };
    let minimal = "dhaf: { cluster-name: c1, node-name: node-1 }
services:
  - name: s
    domain: foo.com
    entry-points: [{ name: ep-1, ip: 10.0.0.1 }]
    switcher: { type: exec, init: examples/configs/scripts/init.sh, switch: examples/configs/scripts/switch.sh, current: examples/configs/scripts/current.sh }
    health-checker: { type: tcp, port: 443 }
";
    let c = build(minimal).expect("the minimal config builds");
    let s = &c.services[0];
    let failback = format!("{:?}", s.failback).to_lowercase();
    let code: Vec<(&str, &str, String)> = vec![
        ("dhaf", "healthy-node-status-ttl", c.dhaf.healthy_node_status_ttl.as_secs().to_string()),
        ("dhaf", "heartbeat-interval", c.dhaf.heartbeat_interval.as_secs().to_string()),
        ("dhaf", "tact-interval", c.dhaf.tact_interval.as_secs().to_string()),
        ("dhaf", "min-votes", c.dhaf.min_votes.to_string()),
        ("dhaf", "check-concurrency", c.dhaf.check_concurrency.to_string()),
        ("dhaf", "reconcile-interval", c.dhaf.reconcile_interval.as_secs().to_string()),
        ("dhaf.web-api", "host", c.dhaf.web_api.host.clone()),
        ("dhaf.web-api", "port", c.dhaf.web_api.port.to_string()),
        ("dhaf.web-api", "public-read", c.dhaf.web_api.public_read.to_string()),
        ("services[]", "rise", s.rise.to_string()),
        ("services[]", "fall", s.fall.to_string()),
        ("services[]", "failback", failback),
        ("services[]", "failback-delay", s.failback_delay.as_secs().to_string()),
    ];
    for (id, key, value) in code {
        assert_eq!(default_of(id, key), value, "the documented default of {id}.{key}");
    }
}
