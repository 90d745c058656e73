//! A real etcd cluster for tests: three members on free loopback ports, each with its own data
//! directory, killed (and the directory removed) when the cluster is dropped.
//!
//! The binary is `$DHAF_ETCD`, else `etcd` in `PATH`; `cargo xtask test` provides it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The etcd binary: `$DHAF_ETCD`, else `etcd` in `PATH`; fails with how to get one otherwise.
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DHAF_ETCD") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "DHAF_ETCD={} is not a file; run the tests with `cargo xtask test`", path.display());
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("etcd")).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("no etcd binary: set DHAF_ETCD or put etcd (3.4 or 3.5) in PATH; run the tests with `cargo xtask test`"))
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// PEM files for an etcd cluster served over TLS that checks client certificates.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed every certificate below.
    pub ca: PathBuf,
    /// The members' certificate (for 127.0.0.1).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// A fresh CA, server and client certificate in `dir`, made with the `openssl` command.
    pub fn generate(dir: &Path) -> TlsFiles {
        std::fs::create_dir_all(dir).expect("create the certificate directory");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run openssl to make test certificates: {e}"));
            assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=dhaf-test-ca",
        ]);
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let ext = format!("{name}.ext");
            std::fs::write(dir.join(&ext), format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")).unwrap();
            let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
            openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN=dhaf-test-{name}")]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ]);
        }
        TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }

    fn client_options(&self) -> etcd_client::ConnectOptions {
        let read = |p: &Path| std::fs::read(p).expect("read a test certificate");
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)))
            .identity(etcd_client::Identity::from_pem(read(&self.client_cert), read(&self.client_key)));
        etcd_client::ConnectOptions::new().with_tls(tls)
    }
}

/// A running etcd cluster.
pub struct EtcdCluster {
    binary: PathBuf,
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
    tls: Option<TlsFiles>,
}

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// `n` distinct free loopback ports (held together while picked so none repeats).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl EtcdCluster {
    /// Start a three-member cluster and wait until every member serves reads and writes.
    pub async fn start() -> EtcdCluster {
        Self::start_n(3).await
    }

    /// Start an `n`-member cluster and wait until it is healthy.
    pub async fn start_n(n: usize) -> EtcdCluster {
        Self::start_with(n, None).await
    }

    /// Start a three-member cluster that clients reach over TLS with a client certificate.
    pub async fn start_tls(files: TlsFiles) -> EtcdCluster {
        Self::start_with(3, Some(files)).await
    }

    async fn start_with(n: usize, tls: Option<TlsFiles>) -> EtcdCluster {
        let binary = etcd_binary();
        let mut last = String::new();
        // A port picked as free may be taken by someone else before etcd binds it: try again.
        for _ in 0..3 {
            let id = CLUSTERS.fetch_add(1, Ordering::SeqCst);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            let token = format!("dhaf-test-{}-{id}-{nanos}", std::process::id());
            let dir = std::env::temp_dir().join(&token);
            std::fs::create_dir_all(&dir).expect("create the etcd test directory");
            let ports = free_ports(2 * n);
            let members = (0..n)
                .map(|i| Member { name: format!("m{i}"), client_port: ports[2 * i], peer_port: ports[2 * i + 1], child: None })
                .collect();
            let mut cluster = EtcdCluster { binary: binary.clone(), dir, token, members, tls: tls.clone() };
            for i in 0..n {
                cluster.spawn(i);
            }
            match cluster.wait_healthy_within(Duration::from_secs(30)).await {
                Ok(()) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("etcd cluster did not start: {last}");
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))
            .expect("open the etcd log");
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new(&self.binary);
        if let Some(t) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run the tests with `cargo xtask test`", self.binary.display()));
        self.members[i].child = Some(child);
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn options(&self) -> etcd_client::ConnectOptions {
        let options = self.tls.as_ref().map(TlsFiles::client_options).unwrap_or_default();
        options.with_require_leader(true)
    }

    /// An etcd client of the whole cluster, for setting it up (users, auth).
    pub async fn admin(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), Some(self.options())).await.expect("connect to etcd")
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client_port)).collect()
    }

    /// `etcd.hosts` as the config writes it: `127.0.0.1:p1,127.0.0.1:p2,…`.
    pub fn hosts(&self) -> String {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect::<Vec<_>>().join(",")
    }

    /// The cluster's data and log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kill member `i` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }

    /// Whether member `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// The index of the member that is the raft leader now, if a running member knows one.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            let url = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
            let status = async {
                let mut c = etcd_client::Client::connect([url.as_str()], Some(self.options())).await.ok()?;
                c.status().await.ok()
            };
            let status = if m.child.is_some() { tokio::time::timeout(Duration::from_secs(2), status).await.ok().flatten() } else { None };
            ids.push(status.as_ref().and_then(|s| s.header().map(|h| h.member_id())));
            if let Some(s) = &status {
                if s.leader() != 0 {
                    leader = Some(s.leader());
                }
            }
        }
        let leader = leader?;
        ids.iter().position(|id| *id == Some(leader))
    }

    /// Wait until every running member serves a linearizable read (it has a leader and quorum).
    pub async fn wait_healthy(&mut self) {
        if let Err(e) = self.wait_healthy_within(Duration::from_secs(30)).await {
            panic!("etcd cluster is not healthy: {e}");
        }
    }

    async fn wait_healthy_within(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        let (scheme, options) = (self.scheme(), self.options());
        loop {
            let mut problem = None;
            for (i, m) in self.members.iter_mut().enumerate() {
                let Some(child) = m.child.as_mut() else { continue };
                if let Ok(Some(status)) = child.try_wait() {
                    m.child = None;
                    return Err(format!("member {i} exited ({status}); see {}", self.dir.display()));
                }
                let url = format!("{scheme}://127.0.0.1:{}", m.client_port);
                if let Err(e) = probe(&url, options.clone()).await {
                    problem = Some(format!("{url}: {e}"));
                    break;
                }
            }
            match problem {
                None => return Ok(()),
                Some(p) if start.elapsed() > limit => return Err(p),
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// A linearizable read through member `url` alone.
async fn probe(url: &str, options: etcd_client::ConnectOptions) -> Result<(), String> {
    let attempt = async {
        let mut client = etcd_client::Client::connect([url], Some(options)).await.map_err(|e| e.to_string())?;
        client.get("/dhaf-test-probe", None).await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.map_err(|_| "no answer within 2 s".to_string())?
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
