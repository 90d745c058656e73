//! The REST API against its own OpenAPI document, checked by a third party: Schemathesis (PyPI)
//! generates requests from the document a live node serves — valid ones, invalid ones, sequences
//! following its links — with a token of each role, and runs every check it has (no server error,
//! status codes, content types, headers and bodies as documented, invalid data refused, missing
//! auth refused, …). Each role gets a bounded time and a fixed seed, so a failure replays.
//!
//! Schemathesis comes from `$DHAF_PYTHONPATH` (`cargo xtask test` installs it there).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dhaf_node::ApiLimits;

mod support;

const READ: &str = "grafana-read-secret-1";
const OPERATE: &str = "alice-operate-secret-2";
const ADMIN: &str = "admin-admin-secret-3";
/// Seconds of generated requests per role.
const SECONDS_PER_ROLE: u32 = 15;

fn python_path() -> PathBuf {
    let path = std::env::var_os("DHAF_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("DHAF_PYTHONPATH is not set: run the tests with `cargo xtask test`, which installs Schemathesis"));
    assert!(path.join("schemathesis").is_dir(), "no schemathesis in DHAF_PYTHONPATH={}: run `cargo xtask test`", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_conforms_to_its_openapi_document_for_every_role() {
    let python = python_path();
    let dir = tempfile::tempdir().unwrap();
    let port = support::tcp_backend("127.0.0.1:0").await;
    let api = format!(
        "    host: 127.0.0.1\n    port: 0\n    tokens:\n      - {{ name: grafana, role: read, token: {READ} }}\n      \
         - {{ name: alice, role: operate, token: {OPERATE} }}\n      - {{ name: root, role: admin, token: {ADMIN} }}"
    );
    let config = support::Site::tcp("fuzz", port).eager().api(&api).write(dir.path());
    let (addr, handle, _stop) = support::start_node(&config, ApiLimits::default()).await;
    let start = Instant::now();
    while !handle.is_leader() {
        assert!(start.elapsed() < Duration::from_secs(30), "the node did not lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The names the node knows, mixed into the generated path parameters so that requests reach
    // past the 404s; the rest stay random (malformed names must get 400 or 404, never 5xx). A
    // well-formed request the cluster's state refuses (an unhealthy target, a time already past)
    // is answered 409 or 422, as documented, not 400.
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        "[dictionaries.services]\nvalues = [\"site\"]\n[dictionaries.entry_points]\nvalues = [\"ep-1\"]\n\
         [dictionaries.nodes]\nvalues = [\"node-1\", \"ghost\"]\n[parameters]\n\
         \"path.service\" = { dictionary = \"services\", probability = 0.8 }\n\
         \"path.entry_point\" = { dictionary = \"entry_points\", probability = 0.8 }\n\
         \"path.node\" = { dictionary = \"nodes\", probability = 0.5 }\n\
         [checks.positive_data_acceptance]\n\
         expected-statuses = [\"2xx\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\"]\n",
    )
    .unwrap();
    let base = format!("http://{addr}");
    let mut failures = Vec::new();
    for (role, token) in [("read", READ), ("operate", OPERATE), ("admin", ADMIN)] {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "schemathesis.cli", "--no-color", "run", &format!("{base}/api/v1/openapi.json"), "--url", &base])
            .args(["--checks", "all", "--workers", "1", "--seed", "20261202"])
            .args(["--max-time", &SECONDS_PER_ROLE.to_string()])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .current_dir(dir.path())
            .env("PYTHONPATH", &python);
        let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("python3 runs schemathesis");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let summary = text.lines().rev().find(|l| l.contains(" in ") && l.starts_with('=')).unwrap_or("(no summary)").to_string();
        eprintln!("schemathesis, {role} token: {summary}");
        if !out.status.success() {
            failures.push(format!("with the {role} token ({}):\n{text}", out.status));
        }
        assert!(!text.contains(token), "the token is never printed");
    }
    assert!(failures.is_empty(), "Schemathesis found requests the API answers against its own document:\n{}", failures.join("\n\n"));
}
