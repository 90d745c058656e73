//! A node whose HTTPS API is flooded from another host with thousands of connections — idle ones,
//! half-open ones (the handshake's last ACK never arrives) and slow ones (a TLS record begun and
//! never finished) — keeps answering its operator, keeps its checks' verdicts and fails nothing
//! over.
//!
//! The other host is a network namespace joined by a veth pair (needs root and `ip`, `iptables`,
//! `python3`, as the fault-injection suite; `cargo xtask test` runs as root). The test process is
//! the node, with its descriptor limit lowered as on a small server.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dhaf_node::ApiLimits;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

mod support;

const DESCRIPTOR_LIMIT: u64 = 256;
const IDLE: usize = 2000;
const HALF_OPEN: usize = 1000;
const SLOW: usize = 500;
const FLOOD_FOR: Duration = Duration::from_secs(12);

/// Run a command, panicking with its output if it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace joined to this one by a veth pair: this side `<net>.1`, its side `<net>.2`.
struct Host {
    name: String,
}

impl Host {
    fn new(net: &str) -> Host {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        assert!(
            root,
            "the flood test needs root (a network namespace, iptables); run the tests with `cargo xtask test` as root, as CI does"
        );
        let pid = std::process::id();
        let host = Host { name: format!("dhaf-flood-{pid}") };
        let (here, there) = (format!("dfl{pid}a"), format!("dfl{pid}b"));
        let _ = Command::new("ip").args(["netns", "del", &host.name]).output();
        run(&["ip", "netns", "add", &host.name]);
        run(&["ip", "link", "add", &here, "type", "veth", "peer", "name", &there]);
        run(&["ip", "link", "set", &there, "netns", &host.name]);
        run(&["ip", "addr", "add", &format!("{net}.1/24"), "dev", &here]);
        run(&["ip", "link", "set", &here, "up"]);
        host.exec(&["ip", "addr", "add", &format!("{net}.2/24"), "dev", &there]);
        host.exec(&["ip", "link", "set", &there, "up"]);
        host.exec(&["ip", "link", "set", "lo", "up"]);
        host
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// The flood, run on the other host: it keeps `idle`, `half_open` and `slow` connections open to
/// `addr:port`, opening a new one for each the node closes, until killed.
const FLOOD: &str = r#"
import resource, selectors, socket, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
addr, port, me = sys.argv[1], int(sys.argv[2]), sys.argv[6]
idle, half_open, slow = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sel = selectors.DefaultSelector()
ports = iter(range(40000, 45000))
def open_one(kind):
    s = socket.socket()
    s.setblocking(False)
    if kind == 'half':
        # From the ports whose packets after the SYN the namespace drops.
        for sport in ports:
            try:
                s.bind((me, sport))
                break
            except OSError:
                continue
        else:
            s.close()
            return
    try:
        s.connect((addr, port))
    except BlockingIOError:
        pass
    except OSError:
        s.close()
        return
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, (kind, [False]))
for _ in range(half_open):
    open_one('half')
for _ in range(idle):
    open_one('idle')
for _ in range(slow):
    open_one('slow')
print('open', flush=True)
while True:
    for key, events in sel.select(timeout=0.5):
        kind, sent = key.data
        s = key.fileobj
        if events & selectors.EVENT_WRITE and not sent[0]:
            sent[0] = True
            sel.modify(s, selectors.EVENT_READ, key.data)
            if kind == 'slow':
                try:
                    s.send(b'\x16\x03\x01')
                except OSError:
                    pass
            continue
        if events & selectors.EVENT_READ:
            try:
                data = s.recv(4096)
            except OSError:
                data = b''
            if not data:
                sel.unregister(s)
                s.close()
                open_one(kind)
"#;

fn config(dir: &Path, backend_port: u16, cert: &Path, key: &Path) -> std::path::PathBuf {
    let web_api = format!(
        "
    host: 0.0.0.0
    port: 0
    tokens: [{{ name: ops, role: admin, token: operator-secret-1 }}]
    tls: {{ cert: {}, key: {} }}",
        cert.display(),
        key.display()
    );
    support::Site { tact: "500ms".into(), web_api, entry_points: 2, ..support::Site::tcp("flood", backend_port) }.eager().write(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_half_open_and_slow_connections_from_another_host_fail_nothing_over() {
    let net = format!("10.213.{}", std::process::id() % 250);
    let host = Host::new(&net);
    // The half-open ones: the namespace drops every packet after the SYN from their ports.
    host.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=45000 65000"]);
    host.exec(&["iptables", "-A", "OUTPUT", "-p", "tcp", "--sport", "40000:44999", "!", "--syn", "-j", "DROP"]);

    let limit = Rlimit { current: Some(DESCRIPTOR_LIMIT), maximum: getrlimit(Resource::Nofile).maximum };
    setrlimit(Resource::Nofile, limit).expect("lower the descriptor limit");

    let dir = std::env::temp_dir().join(format!("dhaf-api-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend_port = support::tcp_backend("0.0.0.0:0").await;
    let ca = support::TestCa::new("flood test CA");
    let (cert, key) = support::write_pem(&dir, "server", &ca.server());
    let config = config(&dir, backend_port, &cert, &key);
    let limits = ApiLimits { header_read_timeout: Duration::from_secs(2), ..ApiLimits::default() };
    let (addr, handle, _stop) = support::start_node(&config, limits).await;
    let operator = support::https_client(&ca.pem(), None);
    let status = format!("https://127.0.0.1:{}/api/v1/services/site", addr.port());
    let ask = || operator.get(&status).bearer_auth("operator-secret-1").send();
    let start = Instant::now();
    while !ask().await.is_ok_and(|r| r.status().is_success()) {
        assert!(start.elapsed() < Duration::from_secs(30), "the node did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = handle.metrics();
    assert_eq!(std::fs::read_to_string(dir.join("entry")).unwrap().trim(), "ep-1");

    let mut flood = Command::new("ip")
        .args(["netns", "exec", &host.name, "python3", "-c", FLOOD, &format!("{net}.1"), &addr.port().to_string()])
        .args([IDLE, HALF_OPEN, SLOW].map(|n| n.to_string()))
        .arg(format!("{net}.2"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs in the namespace");
    let mut line = String::new();
    std::io::BufReader::new(flood.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open", "the flood began");

    // Under the flood the operator is answered every time, and not slowly.
    let flooding = Instant::now();
    let mut answered = 0;
    while flooding.elapsed() < FLOOD_FOR {
        let asked = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(5), ask())
            .await
            .unwrap_or_else(|_| panic!("the API did not answer within 5 s, {:?} into the flood", flooding.elapsed()))
            .expect("the API answers during the flood");
        assert!(response.status().is_success(), "{}", response.status());
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!((&body["current"], &body["live"]), (&"ep-1".into(), &"ep-1".into()), "{body}");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(250).saturating_sub(asked.elapsed())).await;
    }
    assert!(flood.try_wait().unwrap().is_none(), "the flood ran throughout");
    let _ = flood.kill();
    let _ = flood.wait();

    // The checks went on passing, and nothing moved.
    let after = handle.metrics();
    let passed = |m: &dhaf_core::runtime::Metrics| m.checks - m.checks_failed;
    assert!(passed(&after) >= passed(&before) + 2 * 12, "checks stalled: {before:?} -> {after:?}");
    assert_eq!(after.checks_failed, before.checks_failed, "checks failed while the API was flooded");
    assert_eq!(std::fs::read_to_string(dir.join("entry")).unwrap().trim(), "ep-1", "the service was switched");
    assert!(answered >= 20, "only {answered} answers in {FLOOD_FOR:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
