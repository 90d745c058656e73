//! The monitoring shipped under `deploy/`: the Prometheus alert rules pass `promtool check rules`
//! and their unit tests (`promtool test rules`), and the rules, the Grafana dashboard and
//! docs/config-reference.md name exactly the metrics a live `dhaf-node` exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new(support::promtool()).args(args).current_dir(root().join("deploy/prometheus")).output().expect("promtool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{said}");
    said
}

#[test]
fn the_alert_rules_are_valid_and_their_tests_pass() {
    let checked = promtool(&["check", "rules", "dhaf-alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "dhaf-alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // The tests exercise most alerts, not only the easy ones.
    let tests = std::fs::read_to_string(root().join("deploy/prometheus/dhaf-alerts.test.yml")).unwrap();
    let fired: BTreeSet<&str> = tests
        .split("alertname: ")
        .skip(1)
        .filter_map(|rest| {
            let (name, after) = rest.split_once('\n')?;
            let next = after.trim_start().strip_prefix("exp_alerts:")?;
            (!next.trim_start().starts_with("[]")).then_some(name.trim())
        })
        .collect();
    assert!(fired.len() >= 3, "alerts shown firing by the tests: {fired:?}");
}

/// Every `dhaf_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("dhaf_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// A `dhaf-node` on the embedded DCS, scraped once its first checks and its first switch are in: the series names
/// it exports (a histogram's `_bucket`, `_sum` and `_count` included) and its metric families.
fn scrape_a_live_node() -> (BTreeSet<String>, BTreeSet<String>) {
    let dir = std::env::temp_dir().join(format!("dhaf-metrics-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = support::tcp_site(&dir, "names", backend.local_addr().unwrap().port(), "");
    // The provider points nowhere yet: the node's first switch gives every per-switch series.
    std::fs::write(dir.join("entry"), "\n").unwrap();
    let log = dir.join("node.log");
    let _node = support::spawn_node_logging_json(&config, &log, "info");
    let start = Instant::now();
    let mut last = String::new();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no complete scrape within 30 s; last:\n{last}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let Some(bound) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|l| l["bound"].as_str().map(str::to_string))
        else {
            continue;
        };
        last = get(&bound, "/metrics");
        if last.contains("dhaf_entry_point_current{")
            && last.contains("dhaf_check_duration_seconds_count{")
            && last.contains("dhaf_is_leader 1")
            && last.contains("dhaf_last_switch_timestamp_seconds{")
        {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in last.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.insert(name.to_string());
            series.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    series.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    (series, families)
}

/// A plain HTTP/1.0 GET, so the test needs no HTTP client of its own.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

#[test]
fn rules_dashboard_and_docs_name_exactly_the_metrics_a_node_exports() {
    let (exported, families) = scrape_a_live_node();
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));

    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/dhaf-dashboard.json")).expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("every target has an expr").to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");

    for (what, text) in
        [("deploy/prometheus/dhaf-alerts.yml", read("deploy/prometheus/dhaf-alerts.yml")), ("the dashboard", exprs.join("\n"))]
    {
        let named = metric_names(&text);
        assert!(!named.is_empty(), "{what} names no metric");
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(unknown.is_empty(), "{what} names metrics no node exports: {unknown:?}; exported: {exported:?}");
    }

    let reference = read("docs/config-reference.md");
    let section = reference.split("\n## Metrics\n").nth(1).expect("docs/config-reference.md has a Metrics section");
    let docs = metric_names(section.split("\n## ").next().unwrap());
    let undocumented: Vec<_> = families.difference(&docs).collect();
    assert!(undocumented.is_empty(), "docs/config-reference.md does not list {undocumented:?}");
    let gone: Vec<_> = docs.difference(&exported).collect();
    assert!(gone.is_empty(), "docs/config-reference.md lists metrics no node exports: {gone:?}");
}
