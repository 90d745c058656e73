//! A cluster of dhaf hosts on one Linux machine: network namespaces on a bridge, one etcd member
//! and one `dhaf-node` process per host, HTTP backends in namespaces of their own, and a switch
//! log every write of every node lands in.
//!
//! Needs root, `ip` (iproute2), `iptables` and `python3`; etcd is `$DHAF_ETCD`, else `etcd` in
//! `PATH`. Everything a lab creates carries the prefix `d<pid>s<n>`, is removed when the lab is
//! dropped, and is swept at the start of the next run if a crash left it behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cloudflare::FakeCloudflare;
use crate::knot::LabKnot;

/// Names of the hosts that run dhaf.
pub const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
/// The backends: entry points ep-1 (priority 1) and ep-2.
pub const BACKENDS: [&str; 2] = ["b1", "b2"];
/// The service's domain.
const DOMAIN: &str = "site.faults.test";
/// The port every backend serves on.
const BACKEND_PORT: u16 = 8080;
/// The port of every node's REST API.
const API_PORT: u16 = 8128;

static LABS: AtomicUsize = AtomicUsize::new(0);

fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("no {name}: set {var} or put {name} in PATH; run the tests with `cargo xtask test`"))
}

fn need(name: &str) {
    let found = std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file())).unwrap_or(false)
        || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(name).is_file());
    assert!(found, "the fault-injection suite needs `{name}` (root, iproute2, iptables); run the tests with `cargo xtask test`");
}

/// Run a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Run a command, ignoring whether it works (clean-up).
fn try_sh(args: &[&str]) -> String {
    Command::new(args[0]).args(&args[1..]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// The `dhaf-node` binary of this workspace, in the test's own target directory. Cargo builds a
/// test's dependencies as libraries only: `cargo test --all-targets` builds the binary too, and
/// when it is missing or older than the sources it is built here with the cargo that runs the
/// test (not always: a build of one package resolves features differently from the workspace's
/// and would rebuild the crates below it for nothing).
fn node_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(build_node_binary).clone()
}

fn build_node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("tests live in target/<profile>/deps");
    let bin = profile_dir.join("dhaf-node");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = ["dhaf-core/src", "dhaf-providers/src", "dhaf-node/src", "Cargo.lock"].map(|p| newest(&root.join(p)));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_some_and(|b| sources.iter().flatten().all(|s| *s <= b)) {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = profile_dir.parent().expect("target dir");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "dhaf-node", "--bin", "dhaf-node", "--target-dir"]).arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build -p dhaf-node");
    assert!(status.success() && bin.is_file(), "cannot build dhaf-node; run the tests with `cargo xtask test`");
    bin
}

/// The newest modification time of a file or of the files under a folder.
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.flatten().filter_map(|e| newest(&e.path())).max()
}

/// Remove what an earlier run that died left behind: namespaces and links named `d<pid>s<n>…`
/// whose pid is gone.
fn sweep_leftovers() {
    let stale = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix('d') else { return false };
        let Some((pid, after)) = rest.split_once('s') else { return false };
        let Ok(pid) = pid.parse::<u32>() else { return false };
        if !after.starts_with(|c: char| c.is_ascii_digit()) {
            return false;
        }
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    };
    for line in try_sh(&["ip", "netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if stale(name) {
            kill_namespace(name);
        }
    }
    for line in try_sh(&["ip", "-o", "link", "show"]).lines() {
        let Some(name) = line.split(": ").nth(1) else { continue };
        let name = name.split('@').next().unwrap_or("");
        if stale(name) {
            try_sh(&["ip", "link", "del", name]);
        }
    }
}

fn kill_namespace(ns: &str) {
    for pid in try_sh(&["ip", "netns", "pids", ns]).split_whitespace() {
        try_sh(&["kill", "-CONT", pid]);
        try_sh(&["kill", "-9", pid]);
    }
    try_sh(&["ip", "netns", "del", ns]);
}

/// A child process that is killed when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }
    fn kill(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid()]).output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One line of the switch log: a write to the public entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The node that wrote it.
    pub node: String,
    /// The entry point written.
    pub entry_point: String,
    /// The fencing token (leader term) it carried.
    pub token: i64,
}

/// Which switcher the nodes use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Switcher {
    /// `exec`: a script appending to a shared log and rewriting a shared file.
    Exec,
    /// `cloudflare` against [`FakeCloudflare`].
    Cloudflare,
    /// `rfc2136` against Knot DNS in a namespace of its own ([`LabKnot`]).
    Rfc2136,
}

/// The knobs of a lab.
#[derive(Clone)]
pub struct Options {
    /// `healthy-node-status-ttl`.
    pub ttl: u64,
    /// `fall`.
    pub fall: u32,
    /// The switcher.
    pub switcher: Switcher,
    /// `rise`.
    pub rise: u32,
    /// `failback-delay` in seconds.
    pub failback_delay: u64,
    /// With the cloudflare switcher: the zone starts without the service's record.
    pub empty_zone: bool,
    /// A host whose config lists the entry points in the opposite order (a typo in one file).
    pub reordered: Option<&'static str>,
    /// `tact-interval`, `heartbeat-interval` and the check's `timeout`, as written in YAML.
    pub timing: Timing,
}

/// How fast the nodes check and renew.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `tact-interval`.
    pub tact: &'static str,
    /// `heartbeat-interval`.
    pub heartbeat: &'static str,
    /// The web checker's `timeout`.
    pub check_timeout: &'static str,
}

impl Timing {
    /// Today's 1-second profile.
    pub const ONE_SECOND: Timing = Timing { tact: "1", heartbeat: "1", check_timeout: "1" };
    /// The sub-second profile: a 250 ms tact, 200 ms checks, a 500 ms heartbeat.
    pub const FAST: Timing = Timing { tact: "250ms", heartbeat: "500ms", check_timeout: "200ms" };
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ttl: 5,
            fall: 2,
            switcher: Switcher::Exec,
            rise: 1,
            failback_delay: 0,
            empty_zone: false,
            reordered: None,
            timing: Timing::ONE_SECOND,
        }
    }
}

/// A running lab: bridge, namespaces, etcd members, backends and nodes.
pub struct Lab {
    prefix: String,
    subnet: String,
    dir: PathBuf,
    etcd: Vec<Option<Proc>>,
    nodes: Vec<Option<Proc>>,
    backends: Vec<Option<Proc>>,
    opts: Options,
    http: reqwest::Client,
    cf: Option<FakeCloudflare>,
    dns: Option<LabKnot>,
}

impl Lab {
    /// Build the network, start etcd and the backends, then the nodes, and wait until they agree
    /// on a leader and the service points at ep-1.
    pub async fn start(opts: Options) -> Lab {
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|st| st.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
            .unwrap_or(false);
        assert!(root, "the fault-injection suite needs root (network namespaces, iptables); run the tests with `cargo xtask test` as root, as CI does");
        for t in ["ip", "iptables", "python3"] {
            need(t);
        }
        sweep_leftovers();
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let prefix = format!("d{pid}s{n}");
        // One subnet per process: labs of one run never overlap in time (see `serial`).
        let subnet = format!("10.77.{}", pid % 250);
        let dir = std::env::temp_dir().join(format!("dhaf-faults-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            prefix,
            subnet,
            dir,
            etcd: Vec::new(),
            nodes: Vec::new(),
            backends: Vec::new(),
            opts,
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().unwrap(),
            cf: None,
            dns: None,
        };
        lab.network();
        if lab.opts.switcher == Switcher::Cloudflare {
            let root_side = format!("{}.254", lab.subnet);
            let b1 = lab.ip("b1");
            let record = (!lab.opts.empty_zone).then_some(b1.as_str());
            lab.cf = Some(FakeCloudflare::start(&root_side, DOMAIN, record).await);
        }
        if lab.opts.switcher == Switcher::Rfc2136 {
            let (ns, veth, br) = (lab.ns("dns"), format!("{}dns", lab.prefix), format!("{}br", lab.prefix));
            let (ip, b1) = (format!("{}.53", lab.subnet), lab.ip("b1"));
            lab.dns = Some(LabKnot::start(&ns, &veth, &br, &ip, &lab.dir, DOMAIN, &b1));
        }
        for i in 0..HOSTS.len() {
            let p = lab.spawn_etcd(i);
            lab.etcd.push(Some(p));
        }
        for i in 0..BACKENDS.len() {
            let p = lab.spawn_backend(i);
            lab.backends.push(Some(p));
        }
        std::fs::write(lab.entry_file(), "ep-1\n").unwrap();
        std::fs::write(lab.log_file(), "").unwrap();
        lab.write_scripts();
        lab.wait_backends(Duration::from_secs(20)).await;
        if std::env::var_os("LAB_NO_NODES").is_some() {
            return lab;
        }
        for i in 0..HOSTS.len() {
            let p = lab.spawn_node(i);
            lab.nodes.push(Some(p));
        }
        lab.wait_settled(Duration::from_secs(60)).await;
        lab
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The address of a host or backend on the bridge.
    pub fn ip(&self, host: &str) -> String {
        let last = match host {
            "h1" => 1,
            "h2" => 2,
            "h3" => 3,
            "b1" => 11,
            "b2" => 12,
            other => panic!("no host {other}"),
        };
        format!("{}.{last}", self.subnet)
    }

    fn network(&self) {
        let br = format!("{}br", self.prefix);
        sh(&["ip", "link", "add", &br, "type", "bridge"]);
        sh(&["ip", "addr", "add", &format!("{}.254/24", self.subnet), "dev", &br]);
        sh(&["ip", "link", "set", &br, "up"]);
        for host in HOSTS.iter().chain(BACKENDS.iter()) {
            let ns = self.ns(host);
            let veth = format!("{}{host}", self.prefix);
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            sh(&["ip", "link", "set", &veth, "master", &br]);
            sh(&["ip", "link", "set", &veth, "up"]);
            sh(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &format!("{}/24", self.ip(host)), "dev", "eth0"]);
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up"]);
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
    }

    fn in_ns(&self, host: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).arg(program);
        cmd
    }

    fn log_to(&self, name: &str) -> Stdio {
        Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(name)).unwrap())
    }

    fn spawn_etcd(&self, i: usize) -> Proc {
        let host = HOSTS[i];
        let ip = self.ip(host);
        let initial: Vec<String> = HOSTS.iter().map(|h| format!("{h}=http://{}:2380", self.ip(h))).collect();
        let client = format!("http://{ip}:2379");
        let peer = format!("http://{ip}:2380");
        let child = self
            .in_ns(host, &tool("DHAF_ETCD", "etcd"))
            .args(["--name", host])
            .arg("--data-dir")
            .arg(self.dir.join(format!("etcd-{host}")))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.prefix])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(self.log_to(&format!("etcd-{host}.log")))
            .stderr(self.log_to(&format!("etcd-{host}.log")))
            .spawn()
            .expect("start etcd");
        Proc { child }
    }

    fn spawn_backend(&self, i: usize) -> Proc {
        let host = BACKENDS[i];
        let script = self.dir.join("backend.py");
        std::fs::write(&script, BACKEND_PY).unwrap();
        let child = self
            .in_ns(host, Path::new("python3"))
            .arg(&script)
            .arg(self.ip(host))
            .arg(BACKEND_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(self.log_to(&format!("backend-{host}.log")))
            .stderr(self.log_to(&format!("backend-{host}.log")))
            .spawn()
            .expect("start python3");
        Proc { child }
    }

    /// The shared "provider": the file the switch scripts point at the entry point.
    pub fn entry_file(&self) -> PathBuf {
        self.dir.join("entry")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("switches.log")
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The exec switcher's scripts, written once before any node runs them (rewriting a script
    /// another process is executing fails with "text file busy").
    fn write_scripts(&self) {
        let entry = self.entry_file();
        self.script("init.sh", "exit 0");
        self.script("current.sh", &format!("cat '{}'", entry.display()));
        for host in HOSTS {
            self.script(
                &format!("switch-{host}.sh"),
                &format!(
                    "echo \"{host} $1 $DHAF_FENCING_TOKEN\" >> '{log}'\necho \"$1\" > '{entry}'",
                    log = self.log_file().display(),
                    entry = entry.display()
                ),
            );
        }
    }

    /// Wait until every backend answers, so the nodes' first checks see them up.
    async fn wait_backends(&self, limit: Duration) {
        let start = Instant::now();
        for b in BACKENDS {
            let url = format!("http://{}:{BACKEND_PORT}/health", self.ip(b));
            while self.http.get(&url).send().await.is_err() {
                assert!(start.elapsed() < limit, "backend {b} did not start; see {}", self.dir.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn spawn_node(&self, i: usize) -> Proc {
        let host = HOSTS[i];
        let path = self.write_node_config(host, self.opts.reordered == Some(host));
        let child = self
            .in_ns(host, &node_binary())
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(self.log_to(&format!("node-{host}.log")))
            .stderr(self.log_to(&format!("node-{host}.log")))
            .spawn()
            .expect("start dhaf-node");
        Proc { child }
    }

    /// Write `host`'s config file (entry points in the opposite order if `reordered`); returns
    /// its path. A running node reads it again on SIGHUP.
    pub fn write_node_config(&self, host: &str, reordered: bool) -> PathBuf {
        let init = self.dir.join("init.sh");
        let current = self.dir.join("current.sh");
        let switch = self.dir.join(format!("switch-{host}.sh"));
        let hosts: Vec<String> = HOSTS.iter().map(|h| format!("{}:2379", self.ip(h))).collect();
        let mut eps =
            [format!("      - {{ name: ep-1, ip: {} }}\n", self.ip("b1")), format!("      - {{ name: ep-2, ip: {} }}\n", self.ip("b2"))];
        if reordered {
            eps.reverse();
        }
        let entry_points = eps.concat();
        let switcher = match (&self.cf, &self.dns) {
            (_, Some(dns)) => format!(
                "{{ type: rfc2136, server: \"{}\", zone: {}, key-name: {}, secret: \"{}\", ttl: 30, timeout: 2 }}",
                dns.server(),
                crate::knot::ZONE,
                crate::knot::KEY_NAME,
                crate::knot::KEY_SECRET
            ),
            (Some(cf), None) => format!(
                "{{ type: cloudflare, api-token: {}, zone: {}, api-url: \"{}\", timeout: 3 }}",
                crate::cloudflare::TOKEN,
                crate::cloudflare::ZONE,
                cf.url()
            ),
            (None, None) => {
                format!("{{ type: exec, init: {}, switch: {}, current: {} }}", init.display(), switch.display(), current.display())
            }
        };
        let config = format!(
            r#"
dhaf:
  cluster-name: faults
  node-name: {host}
  tact-interval: {tact}
  heartbeat-interval: {heartbeat}
  healthy-node-status-ttl: {ttl}
  web-api: {{ host: {ip}, port: {API_PORT} }}
etcd:
  hosts: {hosts}
services:
  - name: site
    domain: {DOMAIN}
    rise: {rise}
    fall: {fall}
    failback-delay: {failback_delay}
    entry-points:
{entry_points}    health-checker: {{ type: web, port: {BACKEND_PORT}, path: /health, timeout: {check_timeout}, retries: 0, expected-response-body: ok }}
    switcher: {switcher}
"#,
            tact = self.opts.timing.tact,
            heartbeat = self.opts.timing.heartbeat,
            check_timeout = self.opts.timing.check_timeout,
            ttl = self.opts.ttl,
            ip = self.ip(host),
            hosts = hosts.join(","),
            fall = self.opts.fall,
            rise = self.opts.rise,
            failback_delay = self.opts.failback_delay,
            entry_points = entry_points,
        );
        let path = self.dir.join(format!("node-{host}.yaml"));
        std::fs::write(&path, config).unwrap();
        path
    }

    /// A node's `GET /api/v1/status`, or `None` when it does not answer.
    pub async fn status(&self, host: &str) -> Option<Value> {
        let url = format!("http://{}:{API_PORT}/api/v1/status", self.ip(host));
        let resp = self.http.get(url).send().await.ok()?;
        resp.json().await.ok()
    }

    /// A node's `GET /metrics`, or `None` when it does not answer.
    pub async fn metrics(&self, host: &str) -> Option<String> {
        let url = format!("http://{}:{API_PORT}/metrics", self.ip(host));
        self.http.get(url).send().await.ok()?.text().await.ok()
    }

    /// The leader as `host` sees it: (node, term).
    pub async fn leader_seen_by(&self, host: &str) -> Option<(String, i64)> {
        let s = self.status(host).await?;
        let l = s.get("leader")?;
        Some((l.get("node")?.as_str()?.to_string(), l.get("token")?.as_i64()?))
    }

    /// Wait until every running node sees the same leader and the entry point is ep-1.
    async fn wait_settled(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if let Some(p) = n {
                    assert!(!p.exited(), "dhaf-node on {} exited; see {}", HOSTS[i], self.dir.display());
                }
            }
            let mut seen = Vec::new();
            for (i, h) in HOSTS.iter().enumerate() {
                if self.nodes[i].is_some() {
                    seen.push(self.leader_seen_by(h).await);
                }
            }
            let agreed = seen.iter().all(|s| s.is_some() && *s == seen[0]);
            if agreed && self.current_everywhere("ep-1").await {
                // An empty zone gets its record from the leader; otherwise nothing is written.
                let writes = self.writes();
                let expected = usize::from(self.opts.empty_zone);
                assert!(writes.len() <= expected, "switches while every backend was up: {writes:?}; logs in {}", self.dir.display());
                return;
            }
            assert!(
                start.elapsed() < limit,
                "the lab did not settle within {limit:?} (leaders seen: {seen:?}); logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn current_everywhere(&self, ep: &str) -> bool {
        for (i, h) in HOSTS.iter().enumerate() {
            if self.nodes[i].is_none() {
                continue;
            }
            let Some(s) = self.status(h).await else { return false };
            let cur = s["services"][0]["current"].as_str().map(str::to_string);
            if cur.as_deref() != Some(ep) {
                return false;
            }
        }
        true
    }

    /// The leader, agreed by all running nodes.
    pub async fn leader(&self) -> (String, i64) {
        for h in HOSTS {
            if let Some(l) = self.leader_seen_by(h).await {
                return l;
            }
        }
        panic!("no node names a leader");
    }

    /// The index of a host by name.
    pub fn index(host: &str) -> usize {
        HOSTS.iter().position(|h| *h == host).unwrap_or_else(|| panic!("no host {host}"))
    }

    /// The name of the host or entry point at an address.
    fn name_of(&self, ip: &str) -> String {
        let all = HOSTS.iter().chain(BACKENDS.iter());
        let name = all.clone().find(|h| self.ip(h) == ip).map(|h| h.to_string()).unwrap_or_else(|| ip.to_string());
        match name.as_str() {
            "b1" => "ep-1".into(),
            "b2" => "ep-2".into(),
            _ => name,
        }
    }

    /// Knot DNS, when the lab uses the rfc2136 switcher.
    pub fn dns(&self) -> &LabKnot {
        self.dns.as_ref().expect("a lab with the rfc2136 switcher")
    }

    /// The fake Cloudflare, when the lab uses it.
    pub fn cloudflare(&self) -> &FakeCloudflare {
        self.cf.as_ref().expect("a lab with the cloudflare switcher")
    }

    /// Every write so far, in order. With the rfc2136 switcher only their number is known (from
    /// Knot's log): node and entry point are `?` and the term 0; the zone shows the last write's.
    pub fn writes(&self) -> Vec<Write> {
        if let Some(dns) = &self.dns {
            return (0..dns.changes()).map(|_| Write { node: "?".into(), entry_point: "?".into(), token: 0 }).collect();
        }
        if let Some(cf) = &self.cf {
            return cf
                .writes()
                .into_iter()
                .map(|w| Write {
                    node: self.name_of(&w.peer),
                    entry_point: self.name_of(&w.content),
                    token: w.token.unwrap_or_else(|| panic!("a write without its term: {w:?}")),
                })
                .collect();
        }
        std::fs::read_to_string(self.log_file())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let p: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(p.len(), 3, "a switch without its term: {l:?}");
                Write { node: p[0].into(), entry_point: p[1].into(), token: p[2].parse().expect("a numeric term") }
            })
            .collect()
    }

    /// What the public entry points at.
    pub fn entry(&self) -> String {
        if let Some(dns) = &self.dns {
            let all = dns.dig("A", DOMAIN);
            assert!(all.len() <= 1, "the service must keep at most one address: {all:?}");
            return all.first().map(|ip| self.name_of(ip)).unwrap_or_default();
        }
        if let Some(cf) = &self.cf {
            let all = cf.content();
            assert_eq!(all.len(), 1, "the service must keep exactly one record: {all:?}");
            return self.name_of(&all[0]);
        }
        std::fs::read_to_string(self.entry_file()).unwrap_or_default().trim().to_string()
    }

    /// Wait until the public entry points at `ep`; returns how long it took.
    pub async fn wait_entry(&mut self, ep: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.entry() == ep {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "the entry did not reach {ep} within {limit:?} (writes: {:?}); logs in {}",
                self.writes(),
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until every running node names a leader other than `not`; returns it.
    pub async fn wait_new_leader(&self, not: &str, limit: Duration) -> (String, i64) {
        let start = Instant::now();
        loop {
            let mut seen = Vec::new();
            for (i, h) in HOSTS.iter().enumerate() {
                if self.nodes[i].is_some() && *h != not {
                    seen.push(self.leader_seen_by(h).await);
                }
            }
            if let Some(Some(first)) = seen.first() {
                if first.0 != not && seen.iter().all(|s| s.as_ref() == Some(first)) {
                    return first.clone();
                }
            }
            assert!(start.elapsed() < limit, "no new leader within {limit:?}: {seen:?}; logs in {}", self.dir.display());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Run `iptables ARGS` inside a host's or backend's namespace.
    pub fn iptables(&self, host: &str, args: &[&str]) {
        let ns = self.ns(host);
        let mut all = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
        all.extend_from_slice(args);
        sh(&all);
    }

    /// Kill a backend's server (connections are refused from then on).
    pub fn kill_backend(&mut self, b: &str) {
        let i = BACKENDS.iter().position(|x| *x == b).unwrap();
        if let Some(mut p) = self.backends[i].take() {
            p.kill();
        }
    }

    /// `kill -9` a host's dhaf-node.
    pub fn kill_node(&mut self, host: &str) {
        if let Some(mut p) = self.nodes[Self::index(host)].take() {
            p.kill();
        }
    }

    /// Start a host's dhaf-node again after [`Lab::kill_node`], with its config as at start.
    pub fn restart_node(&mut self, host: &str) {
        let i = Self::index(host);
        assert!(self.nodes[i].is_none(), "{host}'s node still runs");
        self.nodes[i] = Some(self.spawn_node(i));
    }

    /// Send a signal to a host's dhaf-node (`STOP`, `CONT`, `HUP`).
    pub fn signal_node(&self, host: &str, sig: &str) {
        let p = self.nodes[Self::index(host)].as_ref().expect("node running");
        sh(&["kill", &format!("-{sig}"), &p.pid()]);
    }

    /// `kill -9` a host's etcd member.
    pub fn kill_etcd(&mut self, host: &str) {
        if let Some(mut p) = self.etcd[Self::index(host)].take() {
            p.kill();
        }
    }

    /// Start a host's etcd member again on its data.
    pub fn restart_etcd(&mut self, host: &str) {
        let i = Self::index(host);
        assert!(self.etcd[i].is_none(), "etcd on {host} is running");
        let p = self.spawn_etcd(i);
        self.etcd[i] = Some(p);
    }

    /// Send a signal to every etcd member.
    pub fn signal_etcd(&self, sig: &str) {
        for p in self.etcd.iter().flatten() {
            sh(&["kill", &format!("-{sig}"), &p.pid()]);
        }
    }

    /// Where the logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fail when a node process died.
    pub fn assert_nodes_running(&mut self) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if let Some(p) = n {
                assert!(!p.exited(), "dhaf-node on {} crashed; see {}", HOSTS[i], self.dir.display());
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.nodes.clear();
        self.backends.clear();
        for p in self.etcd.iter().flatten() {
            try_sh(&["kill", "-CONT", &p.pid()]);
        }
        self.etcd.clear();
        for host in HOSTS.iter().chain(BACKENDS.iter()) {
            kill_namespace(&self.ns(host));
        }
        try_sh(&["ip", "link", "del", &format!("{}br", self.prefix)]);
        if std::thread::panicking() {
            // Keep the logs to look at, not the etcd data.
            for host in HOSTS {
                let _ = std::fs::remove_dir_all(self.dir.join(format!("etcd-{host}")));
            }
            eprintln!("lab logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A backend: 200 "ok" to every GET. Bound by address, and `server_bind` is replaced because the
/// standard one reverse-resolves the address, which hangs in a namespace without DNS.
const BACKEND_PY: &str = r#"
import http.server, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

Server((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"#;
