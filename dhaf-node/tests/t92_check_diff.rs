//! `dhaf-node --check --diff`: before a reload, what it would change on the running node.

use std::process::Command;
use std::time::Duration;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_diff_shows_what_a_reload_would_change_on_the_running_node() {
    let dir = std::env::temp_dir().join(format!("dhaf-check-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = support::tcp_site(&dir, "diff", 9, "");
    let running = std::fs::read_to_string(&config).unwrap().replace("port: 0 }", &format!("port: {api_port} }}"));
    std::fs::write(&config, &running).unwrap();
    let prepared = dhaf_node::prepare(&config, &dhaf_providers::registry()).expect("valid config");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(dhaf_node::run(prepared, std::future::pending(), move |a| {
        let _ = tx.send(a);
    }));
    rx.await.unwrap();

    let check = |text: String| {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::fs::write(&config, text).unwrap();
                let out = Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
                    .arg("--config")
                    .arg(&config)
                    .args(["--check", "--diff"])
                    .output()
                    .unwrap();
                (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
            })
            .await
            .unwrap()
        }
    };

    let (code, out, err) = check(running.clone()).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("No service would change."), "{out}");

    let edited = running.replace("ip: 127.0.0.1", "ip: 127.0.0.3").replace(
        "services:\n",
        "services:\n  - name: second\n    domain: second.test\n    entry-points: [{ name: s-1, ip: 127.0.0.1 }]\n    health-checker: { type: tcp, port: 9 }\n    switcher: { type: exec, init: /bin/true, switch: /bin/true }\n",
    );
    let (code, out, err) = check(edited).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Service second: added"), "{out}");
    assert!(out.contains("Service site: changed") && out.contains("entry-points[0]: ep-1 127.0.0.1 \u{2260} ep-1 127.0.0.3"), "{out}");

    let (code, out, _) = check(running.replace("node-name: node-1", "node-name: node-2")).await;
    assert_eq!(code, 0);
    assert!(out.contains("Needs a restart") && out.contains("dhaf.node-name: node-1 \u{2192} node-2"), "{out}");

    // A DCS section needs a restart; its secrets are never shown.
    let with_etcd = running.replace("services:\n", "etcd: { hosts: '127.0.0.1:1', username: u, password: etcd-secret-1 }\nservices:\n");
    let (code, out, err) = check(with_etcd).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Needs a restart") && out.contains("dcs: embedded \u{2192} etcd"), "{out}");
    assert!(!out.contains("etcd-secret-1") && !err.contains("etcd-secret-1"), "{out}{err}");

    // No node at the file's address: said, exit 3.
    let (code, _, err) = check(running.replace(&format!("port: {api_port}"), "port: 1")).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach the running node"), "{err}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
