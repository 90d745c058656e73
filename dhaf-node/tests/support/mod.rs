//! Scaffolding shared by dhaf-node's integration tests: operators' scripts and a one-service
//! config over them. Each test binary uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// An executable shell script `name` in `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A one-service node config, node-1 of `cluster` with service `site`, as [`Site::write`] writes
/// it: entry points ep-1, ep-2, … at 127.0.0.1, 127.0.0.2, … checked by `checker`, and an exec
/// switcher whose scripts keep the public entry in `dir/entry`. The fields are
/// what the tests vary; [`Site::tcp`] gives what most use.
pub struct Site {
    /// `dhaf.cluster-name`.
    pub cluster: String,
    /// `dhaf.tact-interval`.
    pub tact: String,
    /// Extra lines under `dhaf:`, each indented by 2 and ending with a newline.
    pub dhaf_keys: String,
    /// `dhaf.web-api`: a flow mapping, or a block indented by 4 after a newline.
    pub web_api: String,
    /// Extra top-level lines (such as `etcd:`), each ending with a newline.
    pub top_keys: String,
    /// Extra lines of the service, each indented by 4 and ending with a newline.
    pub service_keys: String,
    /// How many entry points.
    pub entry_points: usize,
    /// `health-checker`, a flow mapping.
    pub checker: String,
    /// The exec switcher's `init`, `switch` and (if any) `current` scripts' bodies; `{entry}`
    /// stands for the entry file's path.
    pub init: String,
    /// See `init`.
    pub switch: String,
    /// See `init`.
    pub current: Option<String>,
    /// What `dir/entry` holds at the start; no file when `None`.
    pub entry: Option<String>,
}

impl Site {
    /// One entry point checked by tcp on `port` (timeout 1 s), a 1 s tact and heartbeat, the
    /// API on a free loopback port, scripts that only keep the entry, ep-1 at first.
    pub fn tcp(cluster: &str, port: u16) -> Site {
        Site {
            cluster: cluster.into(),
            tact: "1".into(),
            dhaf_keys: String::new(),
            web_api: "{ host: 127.0.0.1, port: 0 }".into(),
            top_keys: String::new(),
            service_keys: String::new(),
            entry_points: 1,
            checker: format!("{{ type: tcp, port: {port}, timeout: 1 }}"),
            init: "exit 0".into(),
            switch: "echo \"$1\" > '{entry}'".into(),
            current: Some("cat '{entry}'".into()),
            entry: Some("ep-1".into()),
        }
    }

    /// The API as `block` (its lines indented by 4) instead of on a free loopback port.
    pub fn api(mut self, block: &str) -> Site {
        self.web_api = format!("\n{block}");
        self
    }

    /// Judged and switched on one check (`rise: 1`, `fall: 1`).
    pub fn eager(mut self) -> Site {
        self.service_keys.push_str("    rise: 1\n    fall: 1\n");
        self
    }

    /// Write the scripts and `dir/node.yaml`; returns the config's path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let entry = dir.join("entry");
        if let Some(at_start) = &self.entry {
            std::fs::write(&entry, format!("{at_start}\n")).unwrap();
        }
        let body = |b: &str| b.replace("{entry}", &entry.display().to_string());
        let init = script(dir, "init", &body(&self.init));
        let switch = script(dir, "switch", &body(&self.switch));
        let current =
            self.current.as_ref().map(|c| format!(", current: {}", script(dir, "current", &body(c)).display())).unwrap_or_default();
        let entry_points: String = (1..=self.entry_points).map(|i| format!("      - {{ name: ep-{i}, ip: 127.0.0.{i} }}\n")).collect();
        let config = dir.join("node.yaml");
        std::fs::write(
            &config,
            format!(
                "dhaf:
  cluster-name: {cluster}
  node-name: node-1
  tact-interval: {tact}
  heartbeat-interval: 1
  healthy-node-status-ttl: 5
{dhaf_keys}  web-api: {web_api}
{top_keys}services:
  - name: site
    domain: site.test
{service_keys}    entry-points:
{entry_points}    health-checker: {checker}
    switcher: {{ type: exec, init: {init}, switch: {switch}{current} }}
",
                cluster = self.cluster,
                tact = self.tact,
                dhaf_keys = self.dhaf_keys,
                web_api = self.web_api,
                top_keys = self.top_keys,
                service_keys = self.service_keys,
                checker = self.checker,
                init = init.display(),
                switch = switch.display(),
            ),
        )
        .unwrap();
        config
    }
}

/// [`Site::tcp`] with extra `service_keys` (indented by 4), written in `dir`.
pub fn tcp_site(dir: &Path, cluster: &str, port: u16, service_keys: &str) -> PathBuf {
    Site { service_keys: service_keys.into(), ..Site::tcp(cluster, port) }.write(dir)
}

/// A node config for tests that build the node in-process with a `ScriptedChecker` and a
/// `FakeProvider`: node n1 of cluster `test`, the API as `web_api` (lines indented by 4), and
/// service `main` with ep1–ep3 at 10.0.0.1–3, judged on one check.
pub fn fake_main_yaml(web_api: &str) -> String {
    format!(
        "dhaf:
  cluster-name: test
  node-name: n1
  tact-interval: 1
  healthy-node-status-ttl: 4
  heartbeat-interval: 1
  web-api:
{web_api}services:
  - name: main
    domain: example.com
    rise: 1
    fall: 1
    entry-points:
      - name: ep1
        ip: 10.0.0.1
      - name: ep2
        ip: 10.0.0.2
      - name: ep3
        ip: 10.0.0.3
    switcher:
      type: fake
    health-checker:
      type: scripted
"
    )
}

/// Two listeners on one port, at 127.0.0.1 and 127.0.0.2 (the addresses [`Site`] gives ep-1
/// and ep-2), and that port.
pub async fn two_listeners() -> (tokio::net::TcpListener, tokio::net::TcpListener, u16) {
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = a.local_addr().unwrap().port();
    let b = tokio::net::TcpListener::bind(("127.0.0.2", port)).await.expect("127.0.0.2 with the same port");
    (a, b, port)
}

/// A backend the tcp checker sees up: it accepts every connection on `addr` (port 0 picks one)
/// and closes it at once, until the test ends. Returns its port.
pub async fn tcp_backend(addr: &str) -> u16 {
    let backend = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = backend.accept().await {
            drop(socket);
        }
    });
    port
}

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, as PEM.
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl TestCa {
    /// A new CA called `name`.
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        TestCa { issuer: CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap() }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Pem {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(rcgen::DnType::CommonName, "dhaf node");
        self.sign(params)
    }

    /// A client certificate for `name`.
    pub fn client(&self, name: &str) -> Pem {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: rcgen::CertificateParams) -> Pem {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem { cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// Write `pem` as `dir/<name>.pem` and `dir/<name>.key`; returns their paths.
pub fn write_pem(dir: &Path, name: &str, pem: &Pem) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    (cert, key)
}

/// An HTTPS client trusting only `ca_pem`, presenting `identity` if given.
pub fn https_client(ca_pem: &str, identity: Option<&Pem>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{}{}", id.cert, id.key).as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// Start the node of `config` with its API held to `limits`; returns the API's address, the
/// node's handle, and a sender that stops it.
pub async fn start_node(
    config: &Path,
    limits: dhaf_node::ApiLimits,
) -> (std::net::SocketAddr, dhaf_core::runtime::NodeHandle, tokio::sync::oneshot::Sender<()>) {
    let prepared = dhaf_node::prepare(config, &dhaf_providers::registry()).expect("valid config");
    let handle = prepared.node.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(dhaf_node::run_with_limits(
        prepared,
        limits,
        async {
            let _ = stopped.await;
        },
        move |a| {
            let _ = addr_tx.send(a);
        },
    ));
    (addr_rx.await.unwrap(), handle, stop)
}

/// Prometheus' `promtool` (Debian's `prometheus` package; `cargo xtask` installs it).
pub fn promtool() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    let found = on_path.or_else(|| Some(PathBuf::from("/usr/bin/promtool")).filter(|p| p.is_file()));
    found.expect("promtool not found on PATH or at /usr/bin/promtool: install Debian's `prometheus` package (apt-get install prometheus)")
}

/// A process killed when dropped.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `dhaf-node` binary on `config`, logging JSON at `rust_log` into the file `log`; killed
/// when dropped.
pub fn spawn_node_logging_json(config: &Path, log: &Path, rust_log: &str) -> Kill {
    // `option_env!`: this module is shared with dhaf-cli's tests, which have no such binary.
    let Some(binary) = option_env!("CARGO_BIN_EXE_dhaf-node") else { panic!("only dhaf-node's own tests start its binary") };
    Kill(
        std::process::Command::new(binary)
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .env("RUST_LOG", rust_log)
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start dhaf-node"),
    )
}

/// A one-member etcd (`$DHAF_ETCD`, else `etcd` in `PATH`) with its data in `dir`, serving
/// clients once this returns; and its client address, `127.0.0.1:port`.
pub fn etcd_member(dir: &Path) -> (Kill, String) {
    let binary = std::env::var_os("DHAF_ETCD")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("etcd")).find(|p| p.is_file())))
        .expect("no etcd binary: set DHAF_ETCD or put etcd in PATH (`cargo xtask tools` provides it)");
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (c, p) = (free(), free());
    let (client, peer) =
        (format!("127.0.0.1:{}", c.local_addr().unwrap().port()), format!("http://127.0.0.1:{}", p.local_addr().unwrap().port()));
    drop((c, p));
    let child = std::process::Command::new(binary)
        .args(["--name", "m0", "--listen-client-urls", &format!("http://{client}"), "--advertise-client-urls", &format!("http://{client}")])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer, "--initial-cluster", &format!("m0={peer}")])
        .arg("--data-dir")
        .arg(dir.join("etcd-data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("etcd starts");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(&client).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "etcd did not listen on {client}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (Kill(child), client)
}
