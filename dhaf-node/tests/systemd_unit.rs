//! templates/dhaf-node.service fits the binary: its `ExecStart` is a command line `dhaf-node`
//! accepts, the exit status it refuses to restart on is the one an invalid config gets, and the node
//! stops cleanly on its `KillSignal` within its `TimeoutStopSec`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `[Service]` settings of the unit (the last value of a repeated key).
fn service_section() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("templates/dhaf-node.service")).expect("templates/dhaf-node.service");
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[Service]" {
            let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// `ExecStart`'s arguments with the `--config` value replaced by `config`.
fn exec_start_args(unit: &BTreeMap<String, String>, config: &Path) -> Vec<String> {
    let words: Vec<&str> = unit["ExecStart"].split_whitespace().collect();
    assert!(words[0].starts_with('/') && words[0].ends_with("/dhaf-node"), "ExecStart must run dhaf-node by absolute path: {words:?}");
    let mut args = Vec::new();
    let mut replaced = false;
    let mut iter = words[1..].iter();
    while let Some(w) = iter.next() {
        args.push(w.to_string());
        if *w == "--config" || *w == "-c" {
            iter.next().expect("a value after --config");
            args.push(config.display().to_string());
            replaced = true;
        }
    }
    assert!(replaced, "ExecStart must name the config with --config");
    args
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dhaf-node-unit-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_unit_is_hardened_and_keeps_secrets_in_an_environment_file() {
    let unit = service_section();
    let user = unit.get("User").expect("a dedicated User=");
    assert!(!user.is_empty() && user != "root", "User={user}");
    for (key, want) in [("Restart", "on-failure"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("KillSignal", "SIGTERM")] {
        assert_eq!(unit.get(key).map(String::as_str), Some(want), "{key}=");
    }
    assert!(
        unit.get("EnvironmentFile").is_some_and(|f| f.trim_start_matches('-').starts_with("/etc/dhaf/")),
        "EnvironmentFile= for the ${{VAR}} secrets"
    );
    // SIGHUP reloads the config in place (tests/t50_signals.rs shows it).
    assert_eq!(unit.get("ExecReload").map(String::as_str), Some("/bin/kill -HUP $MAINPID"));
}

#[test]
fn exec_start_flags_are_accepted_by_the_binary() {
    let unit = service_section();
    let config = repo().join("examples/configs/switcher-exec.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
        .args(exec_start_args(&unit, &config))
        .arg("--check")
        .current_dir(repo())
        .env("DHAF_API_TOKEN", "api-token-for-tests")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dhaf-node {} --check failed: {stderr}", unit["ExecStart"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn restart_is_not_attempted_for_an_invalid_config() {
    let unit = service_section();
    let prevent: Vec<i32> = unit["RestartPreventExitStatus"].split_whitespace().map(|s| s.parse().unwrap()).collect();
    let config = temp_dir("bad").join("bad.yaml");
    std::fs::write(&config, "dhaf: { cluster-name: c, node-name: n }\nservices: []\ntypo: 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node")).args(exec_start_args(&unit, &config)).output().unwrap();
    let code = out.status.code().expect("an exit status");
    assert!(prevent.contains(&code), "an invalid config exits {code}, not one of RestartPreventExitStatus={prevent:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("typo: unknown key"));
}

#[test]
fn the_node_stops_cleanly_on_the_kill_signal_within_the_stop_timeout() {
    let unit = service_section();
    assert_eq!(unit["KillSignal"], "SIGTERM");
    let stop_timeout = Duration::from_secs(unit["TimeoutStopSec"].parse().expect("TimeoutStopSec in seconds"));
    let dir = temp_dir("run");
    let config = dir.join("config.yaml");
    let scripts = repo().join("examples/configs/scripts");
    std::fs::write(
        &config,
        format!(
            r#"
dhaf:
  cluster-name: unit-test
  node-name: node-1
  tact-interval: 1
  heartbeat-interval: 1
  healthy-node-status-ttl: 3
  web-api: {{ host: 127.0.0.1, port: 0, token: "${{DHAF_API_TOKEN}}" }}
services:
  - name: main
    domain: foo.com
    entry-points:
      - {{ name: ep-1, ip: 127.0.0.1 }}
    health-checker: {{ type: tcp, port: 1 }}
    switcher:
      type: exec
      init: {scripts}/init.sh
      switch: {scripts}/switch.sh
      current: {scripts}/current.sh
      env: {{ DHAF_EXAMPLE_STATE_DIR: "{state}" }}
"#,
            scripts = scripts.display(),
            state = dir.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
        .args(exec_start_args(&unit, &config))
        .env("DHAF_API_TOKEN", "api-token-for-tests")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    for pipe in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(lines_tx);
    let mut log = Vec::new();
    let started = Instant::now();
    while !log.iter().any(|l: &String| l.contains("rest api listening")) {
        match lines.recv_timeout(Duration::from_secs(30).saturating_sub(started.elapsed())) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the node did not start within 30 s:\n{}", log.join("\n"));
            }
        }
    }
    // Let it run a few tacts (lease, leadership, checks) before stopping it.
    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("run kill");
    assert!(killed.success());
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > stop_timeout {
            let _ = child.kill();
            panic!("the node did not stop within TimeoutStopSec={stop_timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log.extend(lines.try_iter());
    assert!(status.success(), "SIGTERM must be a clean stop (exit 0), got {status}:\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("shutdown requested")), "{}", log.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
