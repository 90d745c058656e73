//! `dhaf-cli reload` against a running node started from its config file: a valid change is
//! applied in place and said; a broken file is refused with its problems named, exit 1, and the
//! node goes on with the config it had.

use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "reload-test-token";

fn config(port: u16, api_port: u16, extra_service: &str) -> String {
    format!(
        "dhaf:
  cluster-name: reload
  node-name: node-1
  tact-interval: 1
  heartbeat-interval: 1
  healthy-node-status-ttl: 5
  web-api: {{ host: 127.0.0.1, port: {api_port}, token: {TOKEN} }}
services:
  - name: site
    domain: site.test
    entry-points: [{{ name: ep-1, ip: 127.0.0.1 }}]
    health-checker: {{ type: tcp, port: {port}, timeout: 1 }}
    switcher: {{ type: exec, init: /bin/true, switch: /bin/true }}
{extra_service}"
    )
}

const SECOND: &str = "  - name: second
    domain: second.test
    entry-points: [{ name: s-1, ip: 127.0.0.1 }]
    health-checker: { type: tcp, port: 9, timeout: 1 }
    switcher: { type: exec, init: /bin/true, switch: /bin/true }
";

fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dhaf-cli"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("DHAF_API_TOKEN")
        .output()
        .expect("dhaf-cli runs");
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_valid_file_and_refuses_a_broken_one_by_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let _ = backend.accept().await;
        }
    });
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = dir.path().join("node.yaml");
    std::fs::write(&path, config(port, api_port, "")).unwrap();
    let prepared = dhaf_node::prepare(&path, &dhaf_providers::registry()).expect("valid config");
    let handle = prepared.node.handle();
    tokio::spawn(dhaf_node::run(prepared, std::future::pending(), |_| {}));
    for _ in 0..300 {
        if handle.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handle.is_leader());

    std::fs::write(&path, config(port, api_port, SECOND)).unwrap();
    let p = path.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&p, &["reload"])).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("config reloaded: services added: second"), "{out}");
    assert_eq!(handle.config().services.len(), 2);
    assert!(handle.is_leader(), "the leadership is kept");

    // A broken file: the CLI reads the same file for the node's address and says what is wrong.
    std::fs::write(&path, config(port, api_port, SECOND).replace("tact-interval: 1", "tact-interval: 0")).unwrap();
    let p = path.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&p, &["reload"])).await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("dhaf.tact-interval"), "{err}");
    // The node refuses it as well when told through the API.
    let url = format!("http://127.0.0.1:{api_port}/api/v1/reload");
    let answer = reqwest::Client::new().post(&url).bearer_auth(TOKEN).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(answer.status(), 422);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("dhaf.tact-interval"), "{body}");
    assert_eq!(body["error"]["code"], "reload_refused");
    assert_eq!(handle.config().services.len(), 2, "the running config is kept");

    // A setting only a restart can change: the node refuses it by name, exit 1.
    std::fs::write(&path, config(port, api_port, SECOND).replace("node-name: node-1", "node-name: node-7")).unwrap();
    let p = path.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&p, &["reload"])).await.unwrap();
    assert_eq!(code, 1, "refused by the node: {out}{err}");
    assert!(err.contains("dhaf.node-name") && err.contains("goes on with the config it had"), "{err}");
    assert_eq!(handle.config().dhaf.node_name, "node-1");
    assert!(!err.contains(TOKEN) && !out.contains(TOKEN));
}
