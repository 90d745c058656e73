//! A real authoritative DNS server for tests: Knot DNS (`knotd`) serving one zone on a free
//! loopback port, with TSIG keys for dynamic updates, killed (and its directory removed) when
//! dropped. `kdig` and `knsupdate` (Debian's `knot-dnsutils`) read and edit it behind dhaf's back.
//!
//! The server is `$DHAF_KNOTD`, else `knotd` in `PATH` or `/usr/sbin`; `cargo xtask test`
//! installs Debian's `knot` and `knot-dnsutils` when they are missing.

#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The zone every test server serves.
pub const ZONE: &str = "dhaf.test";

/// The key that may update the zone.
pub const KEY_NAME: &str = "dhaf-key";
/// Its secret (base64 of 32 bytes).
pub const KEY_SECRET: &str = "c2VjcmV0LW9mLXRoZS1kaGFmLXRlc3Qta2V5LTEyMzQ=";

/// A key the server knows but lets only read.
pub const READER_NAME: &str = "reader-key";
/// Its secret.
pub const READER_SECRET: &str = "cmVhZGVyLWtleS1mb3ItdGhlLWRoYWYtdGVzdHMtMTI=";

fn find(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env}={} is not a file; run the tests with `cargo xtask test`", path.display());
        return path;
    }
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {name}: install Debian's knot and knot-dnsutils (`cargo xtask test` does it as root), or set {env}"))
}

/// A running Knot DNS server.
pub struct Knot {
    child: Child,
    dir: tempfile::TempDir,
    /// Its UDP and TCP port on 127.0.0.1.
    pub port: u16,
}

/// A port free for both UDP and TCP on 127.0.0.1 (knotd listens on both).
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a tcp port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Knot {
    /// Start a server for [`ZONE`] holding only its SOA and NS, and wait until it answers.
    pub fn start() -> Knot {
        let knotd = find("DHAF_KNOTD", "knotd");
        let dir = tempfile::tempdir().expect("a directory for knotd");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            r#"server:
    rundir: "{d}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "{d}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {KEY_SECRET}
  - id: {READER_NAME}
    algorithm: hmac-sha256
    secret: {READER_SECRET}
acl:
  - id: updaters
    key: {KEY_NAME}
    action: update
  - id: readers
    key: {READER_NAME}
    action: transfer
template:
  - id: default
    storage: "{d}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
zone:
  - domain: {ZONE}
    file: "{d}/{ZONE}.zone"
    acl: [updaters, readers]
"#
        );
        let zone = format!("$ORIGIN {ZONE}.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n");
        std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
        std::fs::write(dir.path().join(format!("{ZONE}.zone")), zone).unwrap();
        let log = std::fs::File::create(dir.path().join("knotd.log")).unwrap();
        let child = Command::new(knotd)
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start knotd");
        let mut knot = Knot { child, dir, port };
        let start = Instant::now();
        loop {
            if knot.dig("SOA", ZONE).iter().any(|l| l.contains("hostmaster")) {
                return knot;
            }
            if let Ok(Some(status)) = knot.child.try_wait() {
                panic!("knotd exited ({status}):\n{}", knot.log());
            }
            assert!(start.elapsed() < Duration::from_secs(20), "knotd did not answer within 20 s:\n{}", knot.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// The records of `rtype` at `name` as `kdig +short` shows them (TXT with its quotes).
    pub fn dig(&self, rtype: &str, name: &str) -> Vec<String> {
        let out = Command::new(find("DHAF_KDIG", "kdig"))
            .args(["@127.0.0.1".to_string(), format!("-p{}", self.port), "+short".into(), "+timeout=2".into(), "+retry=0".into()])
            .args([rtype, name])
            .output()
            .expect("run kdig");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    /// Run `knsupdate` with `commands` (one update, signed with the updaters' key), as an operator
    /// editing the zone by hand would.
    pub fn nsupdate(&self, commands: &str) {
        use std::io::Write;
        let script =
            format!("server 127.0.0.1 {}\nzone {ZONE}.\nkey hmac-sha256:{KEY_NAME} {KEY_SECRET}\n{commands}\nsend\nquit\n", self.port);
        let mut child = Command::new(find("DHAF_KNSUPDATE", "knsupdate"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run knsupdate");
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "knsupdate failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
