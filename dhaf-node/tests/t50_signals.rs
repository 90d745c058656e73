//! The `dhaf-node` binary and signals: SIGHUP (sent by `systemctl reload`) reloads the config
//! file in place, refusing a broken one and going on; SIGINT and SIGTERM stop the node cleanly,
//! resigning and revoking its lease.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod support;

/// The log without terminal colours.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Node {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Node {
    fn config(&self) -> PathBuf {
        self.dir.join("node.yaml")
    }

    fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    fn start(name: &str) -> Node {
        let dir = std::env::temp_dir().join(format!("dhaf-signals-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = backend.local_addr().unwrap().port();
        // Accepted connections sit in the queue; a tcp check needs no more. Leaked on purpose:
        // it lives as long as the test process.
        std::mem::forget(backend);
        let config = support::tcp_site(&dir, "signals", port, "");
        let log = dir.join("node.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let node = Node { child, log, dir };
        node.wait_log("the node to lead", "is the new leader", Duration::from_secs(30));
        node
    }

    fn log(&self) -> String {
        plain(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn wait_log(&self, what: &str, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(start.elapsed() < limit, "timed out waiting for {what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "dhaf-node did not stop; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sighup_reloads_the_config_in_place_refuses_a_broken_one_and_sigint_stops_cleanly() {
    let mut node = Node::start("hup");
    let good = std::fs::read_to_string(node.config()).unwrap();

    // A second service, added by editing the file and sending SIGHUP.
    let with_second = good.replace("services:\n", "services:\n  - name: second\n    domain: second.test\n    entry-points: [{ name: s-1, ip: 127.0.0.1 }]\n    health-checker: { type: tcp, port: 9, timeout: 1 }\n    switcher: { type: exec, init: /bin/true, switch: /bin/true }\n");
    std::fs::write(node.config(), &with_second).unwrap();
    node.signal("HUP");
    node.wait_log("the reload", "config reload applied", Duration::from_secs(20));
    assert!(node.log().contains("services added: second"), "{}", node.log());

    // A broken file: refused with the key path, the node goes on.
    std::fs::write(node.config(), with_second.replace("rise: 1", "rise: 0").replace("domain: second.test", "domain: 42\n    bogus-key: 1"))
        .unwrap();
    node.signal("HUP");
    node.wait_log("the refusal", "config reload refused", Duration::from_secs(20));
    let log = node.log();
    let line = log.lines().find(|l| l.contains("config reload refused")).unwrap();
    assert!(line.contains("ERROR") && line.contains("services[0].bogus-key"), "{line}");

    // A setting only a restart can change: refused by name.
    std::fs::write(node.config(), with_second.replace("node-name: node-1", "node-name: node-9")).unwrap();
    node.signal("HUP");
    let start = Instant::now();
    while node.count("config reload refused") < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(node.log().contains("dhaf.node-name"), "{}", node.log());

    assert!(node.child.try_wait().unwrap().is_none(), "SIGHUP killed the node; log:\n{}", node.log());
    assert_eq!(node.count("is the new leader"), 1, "the node kept its leadership: {}", node.log());
    assert!(!node.log().contains("shutting down"), "{}", node.log());

    node.signal("INT");
    let status = node.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}; log:\n{}", node.log());
    assert!(node.log().contains("resigning and revoking the lease"), "{}", node.log());
}

#[test]
fn sigterm_stops_cleanly() {
    let mut node = Node::start("term");
    node.signal("TERM");
    let status = node.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}; log:\n{}", node.log());
    assert!(node.log().contains("resigning and revoking the lease"), "{}", node.log());
}
