//! The `dhaf-node` binary's log as an operator's tools read it: `--log-format json` gives one
//! JSON object per line with the event's fields; each event is one line, at a level that says
//! how much it matters; `RUST_LOG=debug` shows dhaf's debug lines, not the etcd client's HTTP/2
//! frames; text written to a pipe carries no terminal colours.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Kill;

mod support;

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dhaf-logs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A node config in `dir`: service `site` with ep-1 (127.0.0.1) and ep-2 (127.0.0.2), checked
/// by tcp on `port`, switched by scripts that keep the public entry in `dir/entry`.
fn config(dir: &Path, port: u16, etcd: Option<&str>) -> PathBuf {
    let top_keys = etcd.map(|hosts| format!("etcd: {{ hosts: \"{hosts}\" }}\n")).unwrap_or_default();
    support::Site { top_keys, entry_points: 2, ..support::Site::tcp("logs", port) }.eager().write(dir)
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}:\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn json_logs_are_one_object_per_line_each_event_once_without_wire_noise() {
    let dir = dir("json");
    let (_etcd, hosts) = support::etcd_member(&dir);
    // Both entry points listen on one port; connections wait in the queue, which is all a tcp
    // check needs.
    let primary = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = primary.local_addr().unwrap().port();
    let _secondary = std::net::TcpListener::bind(("127.0.0.2", port)).expect("127.0.0.2 with the same port");
    let config = config(&dir, port, Some(&hosts));
    let log = dir.join("node.log");
    let _node = support::spawn_node_logging_json(&config, &log, "debug");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait("the node to lead", Duration::from_secs(30), || text().contains("is the new leader"), text);

    drop(primary);
    let entry = dir.join("entry");
    wait("the failover", Duration::from_secs(30), || std::fs::read_to_string(&entry).unwrap().trim() == "ep-2", text);
    wait("the failover's log line", Duration::from_secs(10), || text().contains("failover from ep-1 to ep-2"), text);
    // One more tact, so a second line for the same event would have been written by now.
    std::thread::sleep(Duration::from_secs(2));

    let text = text();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(line[key].is_string(), "no {key}: {line}");
        }
    }
    let with = |message: &str| lines.iter().filter(|l| l["message"].as_str().unwrap().contains(message)).collect::<Vec<_>>();

    let failover = with("failover from ep-1 to ep-2");
    assert_eq!(failover.len(), 1, "the failover is one line: {failover:?}");
    let failover = failover[0];
    assert_eq!(failover["level"], "WARN", "{failover}");
    assert_eq!(failover["service"], "site", "{failover}");
    assert_eq!(failover["event"], "switched", "{failover}");
    assert_eq!(failover["kind"], "failover", "{failover}");
    assert_eq!(failover["to"], "ep-2", "{failover}");
    assert!(failover["term"].is_string(), "the leader's term: {failover}");

    let down = with("entry point ep-1 is down");
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!((&down[0]["level"], &down[0]["entry_point"]), (&Value::from("WARN"), &Value::from("ep-1")), "{}", down[0]);
    let elected = with("is the new leader");
    assert_eq!(elected.len(), 1, "{text}");
    assert_eq!((&elected[0]["node"], elected[0]["term"].is_string()), (&Value::from("node-1"), true), "{}", elected[0]);

    // dhaf's own debug lines are there; the etcd client's HTTP/2 and gRPC frames are not.
    assert!(lines.iter().any(|l| l["level"] == "DEBUG" && l["target"].as_str().unwrap_or("").starts_with("dhaf")), "{text}");
    let noisy = ["h2", "hyper", "tonic", "tower"];
    let noise: Vec<_> = lines.iter().filter(|l| noisy.iter().any(|n| l["target"].as_str().unwrap_or("").starts_with(n))).collect();
    assert!(noise.is_empty(), "wire noise at RUST_LOG=debug: {noise:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = dir("text");
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config(&dir, backend.local_addr().unwrap().port(), None);
    let mut node = Kill(
        Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env_remove("DHAF_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = node.0.stdout.take().unwrap();
    let read = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("is the new leader") {
                break;
            }
        }
        text
    });
    let start = Instant::now();
    while !read.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(30), "no leader line within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = read.join().unwrap();
    assert!(text.contains("INFO") && text.contains("is the new leader"), "{text}");
    assert!(!text.contains("\u{1b}["), "colour codes in a pipe: {text:?}");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_log_format_is_refused_naming_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
        .args(["--config", "/nonexistent.yaml", "--check"])
        .env("DHAF_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--log-format") && stderr.contains("yaml") && stderr.contains("json"), "{stderr}");
}

#[test]
fn a_rust_log_that_does_not_parse_is_named_and_the_default_used() {
    let dir = dir("bad-filter");
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config(&dir, backend.local_addr().unwrap().port(), None);
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .env("RUST_LOG", "dhaf_core=loud")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("RUST_LOG") && stderr.contains("default filter"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
