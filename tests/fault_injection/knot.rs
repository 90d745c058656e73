//! Knot DNS in a lab namespace of its own, authoritative for the lab's zone, taking TSIG-signed
//! dynamic updates from the nodes' `rfc2136` switcher. Read from the root namespace with `kdig`.
//! Knot's log and the zone's SOA serial count the changes; the TXT record beside the domain says
//! which leader term made the last one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The zone Knot serves.
pub const ZONE: &str = "faults.test";
/// The key the nodes sign with.
pub const KEY_NAME: &str = "dhaf-faults";
/// Its secret (base64 of 32 bytes).
pub const KEY_SECRET: &str = "ZmF1bHQtaW5qZWN0aW9uLWtleS1mb3ItdGhlLWxhYjE=";

fn program(name: &str) -> PathBuf {
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {name}: install Debian's knot and knot-dnsutils (`cargo xtask test` does it as root)"))
}

/// `knotd` running in namespace `ns` at `ip`, killed (with its namespace) when dropped.
pub struct LabKnot {
    child: Child,
    ns: String,
    ip: String,
    dir: PathBuf,
}

impl LabKnot {
    /// Create namespace `ns` with `ip` on the bridge `bridge` (link `veth`), and start Knot in it
    /// serving [`ZONE`] with `domain` -> `address` and the SOA, and wait until it answers.
    pub fn start(ns: &str, veth: &str, bridge: &str, ip: &str, dir: &Path, domain: &str, address: &str) -> LabKnot {
        for args in [
            vec!["ip", "netns", "add", ns],
            vec!["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            vec!["ip", "link", "set", veth, "master", bridge],
            vec!["ip", "link", "set", veth, "up"],
            vec!["ip", "netns", "exec", ns, "ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            vec!["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"],
            vec!["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
        ] {
            crate::lab::sh(&args);
        }
        let dir = dir.join("knot");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"server:
    rundir: "{d}"
    listen: {ip}@53
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: debug
database:
    storage: "{d}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {KEY_SECRET}
acl:
  - id: updaters
    key: {KEY_NAME}
    action: update
template:
  - id: default
    storage: "{d}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
zone:
  - domain: {ZONE}
    file: "{d}/{ZONE}.zone"
    acl: [updaters]
"#
        );
        let zone = format!(
            "$ORIGIN {ZONE}.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A {ip}\n{domain}. 30 A {address}\n"
        );
        std::fs::write(dir.join("knot.conf"), conf).unwrap();
        std::fs::write(dir.join(format!("{ZONE}.zone")), zone).unwrap();
        let log = std::fs::File::create(dir.join("knotd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program("knotd"))
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start knotd");
        let mut knot = LabKnot { child, ns: ns.into(), ip: ip.into(), dir };
        let start = Instant::now();
        while knot.serial().is_none() {
            if let Ok(Some(status)) = knot.child.try_wait() {
                panic!("knotd exited ({status}):\n{}", knot.log());
            }
            assert!(start.elapsed() < Duration::from_secs(20), "knotd did not answer within 20 s:\n{}", knot.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        knot
    }

    /// `ip:53`, for the switcher's `server`.
    pub fn server(&self) -> String {
        format!("{}:53", self.ip)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("knotd.log")).unwrap_or_default()
    }

    /// `kdig +short` of `name` `rtype`, sorted.
    pub fn dig(&self, rtype: &str, name: &str) -> Vec<String> {
        let out = Command::new(program("kdig"))
            .args([format!("@{}", self.ip), "+short".into(), "+timeout=1".into(), "+retry=0".into(), rtype.into(), name.into()])
            .output()
            .expect("run kdig");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    /// How many times Knot changed the zone so far (its log says `DDNS, finished, serial a -> b`
    /// for every batch of updates it applied; updates refused or changing nothing do not count).
    pub fn changes(&self) -> usize {
        self.log().lines().filter(|l| l.contains("DDNS, finished, serial")).count()
    }

    /// The zone's SOA serial: one more per update applied.
    pub fn serial(&self) -> Option<u64> {
        self.dig("SOA", ZONE).first()?.split_whitespace().nth(2)?.parse().ok()
    }
}

impl Drop for LabKnot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
