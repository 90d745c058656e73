//! The `dhaf-node` binary and signals: SIGHUP (sent by `systemctl reload`, or by a closing
//! terminal) is answered with a warning, not death; SIGINT and SIGTERM stop the node cleanly,
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
        node.wait_log("the node to lead", "elected leader", Duration::from_secs(30));
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
fn sighup_is_answered_with_a_warning_and_sigint_stops_cleanly() {
    let mut node = Node::start("hup");
    node.signal("HUP");
    node.wait_log("the reload warning", "configuration reload is not supported yet", Duration::from_secs(10));
    let log = node.log();
    let line = log.lines().find(|l| l.contains("configuration reload is not supported yet")).unwrap();
    assert!(line.contains("WARN") && line.contains("restart the node to apply changes"), "{line}");
    // Still running, still leading, after a second HUP too.
    node.signal("HUP");
    std::thread::sleep(Duration::from_secs(2));
    assert!(node.child.try_wait().unwrap().is_none(), "SIGHUP killed the node; log:\n{}", node.log());
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
