//! The `web`, `tcp` and `exec` health checkers against real servers and scripts on loopback.
//!
//! Every checker is built the way a node builds it: from YAML, through `dhaf_providers::registry()`.
//! The servers are small hand-written HTTP/1.1 servers (plain and TLS with a certificate made in the
//! test) that record what they were asked, so each setting is shown to change what goes on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::{EntryPoint, Health};
use dhaf_core::provider::{HealthChecker, Switcher};
use dhaf_core::testing::FakeProvider;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::rustls;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------------
// Building checkers from YAML, as a node does.

/// The config of one service `svc` at `domain` with `eps`, whose health checker section is `checker`.
fn config_yaml(domain: &str, eps: &[(&str, IpAddr)], checker: &str) -> String {
    let mut y = String::from("dhaf:\n  cluster-name: c1\n  node-name: n1\nservices:\n  - name: svc\n");
    y.push_str(&format!("    domain: {domain}\n    entry-points:\n"));
    for (name, ip) in eps {
        y.push_str(&format!("      - name: {name}\n        ip: \"{ip}\"\n"));
    }
    y.push_str("    switcher:\n      type: fake\n    health-checker:\n");
    for line in checker.trim().lines() {
        y.push_str(&format!("      {}\n", line.trim_end()));
    }
    y
}

fn registry() -> dhaf_core::registry::Registry {
    let mut r = dhaf_providers::registry();
    r.switcher("fake", |_, _| Ok(Arc::new(FakeProvider::new(None).switcher("n1")) as Arc<dyn Switcher>));
    r
}

fn build_config(yaml: &str) -> Result<Vec<Arc<dyn HealthChecker>>, ConfigError> {
    let config = Config::parse(yaml)?;
    let providers = registry().build(&config, Arc::new(MemoryDcs::new("c1")))?;
    Ok(providers.services.into_iter().map(|s| s.checker).collect())
}

fn try_build(domain: &str, ip: IpAddr, checker: &str) -> Result<Arc<dyn HealthChecker>, ConfigError> {
    build_config(&config_yaml(domain, &[("ep-1", ip)], checker)).map(|mut v| v.remove(0))
}

fn build_err(domain: &str, ip: IpAddr, checker: &str) -> ConfigError {
    match try_build(domain, ip, checker) {
        Ok(_) => panic!("accepted: {checker}"),
        Err(e) => e,
    }
}

fn build(domain: &str, ip: IpAddr, checker: &str) -> Arc<dyn HealthChecker> {
    try_build(domain, ip, checker).unwrap_or_else(|e| panic!("{e}"))
}

fn ep(ip: IpAddr) -> EntryPoint {
    EntryPoint { name: "ep-1".into(), ip }
}

/// Run one check, bounded the way the runtime bounds it (plus a margin that catches a hang).
async fn check(checker: &Arc<dyn HealthChecker>, ip: IpAddr) -> Health {
    let bound = checker.timeout() + Duration::from_secs(5);
    tokio::time::timeout(bound, checker.check(&ep(ip))).await.expect("the check overran its own timeout")
}

#[track_caller]
fn assert_unhealthy(h: &Health, reason_starts: &str) {
    match h.reason() {
        Some(r) => assert!(r.starts_with(reason_starts), "reason {r:?} does not start with {reason_starts:?}"),
        None => panic!("healthy, expected unhealthy with {reason_starts:?}"),
    }
}

#[track_caller]
fn assert_healthy(h: &Health) {
    assert!(h.is_healthy(), "unhealthy: {:?}", h.reason());
}

// ---------------------------------------------------------------------------------------------
// A small recording HTTP/1.1 server, plain or TLS.

#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

enum Reply {
    Status(u16, &'static str),
    Redirect(&'static str),
    Hang,
    /// Send the status line and headers, then stall in the middle of the body.
    StallBody,
    /// Close the connection without a word.
    Close,
    /// Answer with this status and body and keep the connection for the next request.
    KeepAlive(u16, &'static str),
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<Request>>,
    server_names: Mutex<Vec<Option<String>>>,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(
        ip: IpAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.expect("bind");
        Self::serve(listener, tls, Arc::new(handler))
    }

    fn serve(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, handler: Handler) -> Server {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let (s, handler, tls) = (s.clone(), handler.clone(), tls.clone());
                conns.spawn(async move {
                    match tls {
                        None => serve_conn(stream, &s, &handler).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            s.server_names.lock().unwrap().push(stream.get_ref().1.server_name().map(str::to_string));
                            serve_conn(stream, &s, &handler).await
                        }
                    }
                });
            }
        });
        Server { addr, seen, task }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.requests.lock().unwrap().clone()
    }

    fn last(&self) -> Request {
        self.requests().pop().expect("the server got no request")
    }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(stream: S, seen: &Seen, handler: &Handler) {
    let mut stream = BufReader::new(stream);
    while serve_request(&mut stream, seen, handler).await {}
}

/// Serve one request on `stream`; whether the connection stays for another.
async fn serve_request<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut BufReader<S>, seen: &Seen, handler: &Handler) -> bool {
    let mut line = String::new();
    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
        return false;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if stream.read_line(&mut h).await.unwrap_or(0) == 0 {
            return false;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    let _ = stream.read_exact(&mut body).await;
    let req = Request { method, target, headers };
    seen.requests.lock().unwrap().push(req.clone());
    let (status, extra, body) = match handler(&req) {
        Reply::Status(code, body) => (code, String::new(), body),
        Reply::Redirect(to) => (302, format!("Location: {to}\r\n"), ""),
        Reply::Hang => {
            // Keep the connection open and silent until the client gives up.
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::StallBody => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstatus: o").await;
            let _ = stream.flush().await;
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Close => return false,
        Reply::KeepAlive(code, body) => {
            let head = format!("HTTP/1.1 {code} Whatever\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            return stream.write_all(head.as_bytes()).await.is_ok() && stream.flush().await.is_ok();
        }
    };
    let head = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len());
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
    false
}

async fn ok_server() -> Server {
    Server::start(LOCAL, None, |_| Reply::Status(200, "OK")).await
}

/// A port on which nothing listens.
async fn closed_port() -> u16 {
    let l = TcpListener::bind((LOCAL, 0)).await.unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// web: status, body, redirects.

#[tokio::test]
async fn web_healthy_on_200_with_the_defaults() {
    let srv = ok_server().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
    let r = srv.last();
    assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/"));
    // domain-forwarding is on by default: the server is addressed by the service's domain.
    assert_eq!(r.header("host"), Some(format!("svc.test:{}", srv.port()).as_str()));
    assert!(r.header("user-agent").unwrap_or("").starts_with("dhaf/"));
}

#[tokio::test]
async fn web_unhealthy_on_503_by_default_and_expected_codes_change_that() {
    let srv = Server::start(LOCAL, None, |_| Reply::Status(503, "busy")).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}", srv.port()));
    assert_unhealthy(&check(&c, LOCAL).await, "HTTP 503, expected 200");

    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nexpected-codes: 2XX", srv.port()));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("HTTP 503, expected 2XX"));

    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nexpected-codes: 200,301,5XX", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);

    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nexpected-codes: 503", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
}

#[tokio::test]
async fn web_expected_body_is_a_case_insensitive_substring() {
    let srv = Server::start(LOCAL, None, |r| {
        if r.target == "/good" {
            Reply::Status(200, "status: All OK")
        } else {
            Reply::Status(200, "error: db down")
        }
    })
    .await;
    let yaml = |path: &str| format!("type: web\nport: {}\npath: {path}\nexpected-response-body: ok", srv.port());
    assert_healthy(&check(&build("svc.test", LOCAL, &yaml("/good")), LOCAL).await);
    let bad = check(&build("svc.test", LOCAL, &yaml("/bad")), LOCAL).await;
    assert_eq!(bad.reason(), Some("body lacks 'ok'"));
    // Without the setting the body is not looked at.
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\npath: /bad", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
}

#[tokio::test]
async fn web_path_and_post_method_reach_the_server() {
    let srv = ok_server().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nmethod: POST\npath: /health?deep=1", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
    let r = srv.last();
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/health?deep=1");
}

#[tokio::test]
async fn web_redirects_are_followed_only_when_asked() {
    let srv = Server::start(LOCAL, None, |r| if r.target == "/" { Reply::Redirect("/landing") } else { Reply::Status(200, "OK") }).await;
    let not_followed = build("svc.test", LOCAL, &format!("type: web\nport: {}", srv.port()));
    let h = check(&not_followed, LOCAL).await;
    assert_unhealthy(&h, "HTTP 302, expected 200 (redirect to /landing");
    assert_eq!(srv.requests().len(), 1);

    let followed = build("svc.test", LOCAL, &format!("type: web\nport: {}\nfollow-redirects: true", srv.port()));
    assert_healthy(&check(&followed, LOCAL).await);
    let r = srv.last();
    assert_eq!(r.target, "/landing");
    // The redirect stays with the service's domain and the entry point's address.
    assert_eq!(r.header("host"), Some(format!("svc.test:{}", srv.port()).as_str()));

    // A redirect loop ends with a reason, not a hang.
    let looping = Server::start(LOCAL, None, |_| Reply::Redirect("/")).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nfollow-redirects: true", looping.port()));
    assert_unhealthy(&check(&c, LOCAL).await, "more than 10 redirects");
}

// ---------------------------------------------------------------------------------------------
// web: failures of the connection.

#[tokio::test]
async fn web_closed_port_is_connection_refused() {
    let port = closed_port().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {port}"));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("connection refused"));
}

#[tokio::test]
async fn web_hanging_server_times_out_after_every_retry() {
    let srv = Server::start(LOCAL, None, |_| Reply::Hang).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\ntimeout: 1\nretries: 2", srv.port()));
    assert!(c.timeout() >= Duration::from_secs(3), "the checker's bound {:?} must cover every attempt", c.timeout());
    let start = Instant::now();
    let h = check(&c, LOCAL).await;
    let took = start.elapsed();
    assert_eq!(h.reason(), Some("timed out after 1 s (3 attempts)"));
    assert_eq!(srv.connections(), 3, "one connection per attempt");
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(8), "took {took:?}");
}

#[tokio::test]
async fn web_retries_default_to_two_and_zero_means_one_attempt() {
    let srv = Server::start(LOCAL, None, |_| Reply::Hang).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\ntimeout: 1\nretries: 0", srv.port()));
    let start = Instant::now();
    assert_eq!(check(&c, LOCAL).await.reason(), Some("timed out after 1 s"));
    // `timeout` is honoured (the default is 5 s).
    assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
    assert_eq!(srv.connections(), 1);

    let srv = Server::start(LOCAL, None, |_| Reply::Hang).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\ntimeout: 1", srv.port()));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("timed out after 1 s (3 attempts)"));
    assert_eq!(srv.connections(), 3);
}

#[tokio::test]
async fn web_body_that_stalls_times_out_when_the_body_matters() {
    let srv = Server::start(LOCAL, None, |_| Reply::StallBody).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\ntimeout: 1\nretries: 1\nexpected-response-body: ok", srv.port()));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("timed out after 1 s (2 attempts)"));
    assert_eq!(srv.connections(), 2);
    // Without an expected body the status is enough.
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\ntimeout: 1", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
}

#[tokio::test]
async fn web_server_closing_without_an_answer_is_named() {
    let srv = Server::start(LOCAL, None, |_| Reply::Close).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}", srv.port()));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("connection closed without a response"));
}

#[tokio::test]
async fn web_refused_connections_are_not_retried() {
    // Retries are for timeouts; a refusal is an answer.
    let srv = Server::start(LOCAL, None, |_| Reply::Status(500, "")).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nretries: 3", srv.port()));
    assert_unhealthy(&check(&c, LOCAL).await, "HTTP 500");
    assert_eq!(srv.connections(), 1);
}

/// A server that keeps every connection alive (HTTP/1.1 keep-alive, as most servers do) and
/// answers 200 on each request; its connections outlive its listener.
struct KeepAliveServer {
    port: u16,
    accepting: tokio::task::JoinHandle<()>,
    /// Connections the server holds open.
    open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl KeepAliveServer {
    async fn start() -> KeepAliveServer {
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(Mutex::new(Vec::new()));
        let held = open.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                held.lock().unwrap().push(tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                        }
                    }
                    // The client went away: keep nothing open on our side either.
                }));
            }
        });
        KeepAliveServer { port, accepting, open }
    }

    /// Close the listener; the connections already accepted stay open.
    async fn close_listener(&mut self) {
        self.accepting.abort();
        let _ = (&mut self.accepting).await;
    }

    /// Close every connection accepted so far (as a server's idle timeout does), keeping the
    /// listener.
    async fn close_connections(&self) {
        let open: Vec<_> = self.open.lock().unwrap().drain(..).collect();
        for c in open {
            c.abort();
            let _ = c.await;
        }
    }

    /// Connections the server has accepted and still holds (the client has not closed them).
    fn live_connections(&self) -> usize {
        self.open.lock().unwrap().iter().filter(|c| !c.is_finished()).count()
    }
}

impl Drop for KeepAliveServer {
    fn drop(&mut self) {
        self.accepting.abort();
        for c in self.open.lock().unwrap().iter() {
            c.abort();
        }
    }
}

#[tokio::test]
async fn web_a_closed_listener_fails_the_next_check_though_old_connections_live() {
    // A check sees what a new visitor sees: the process may still hold a connection it accepted
    // earlier, but nobody new gets in, and the next check says so.
    let mut srv = KeepAliveServer::start().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}", srv.port));
    for _ in 0..3 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    assert_eq!(srv.open.lock().unwrap().len(), 3, "one connection per check, none reused");
    srv.close_listener().await;
    assert_eq!(check(&c, LOCAL).await.reason(), Some("connection refused"));
}

#[tokio::test]
async fn web_connections_end_with_their_check() {
    // Nothing is pooled: once a check is done its connection is closed, so a node checking
    // thousands of entry points holds no idle sockets between tacts.
    let srv = KeepAliveServer::start().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}", srv.port));
    for _ in 0..3 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !srv.open.lock().unwrap().iter().all(|c| c.is_finished()) {
        assert!(Instant::now() < deadline, "the checker left connections open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn web_keep_alive_checks_over_one_connection_per_entry_point() {
    let srv = KeepAliveServer::start().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nkeep-alive: 30s", srv.port));
    for _ in 0..5 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    assert_eq!(srv.open.lock().unwrap().len(), 1, "five checks over one connection");
    assert_eq!(srv.live_connections(), 1, "kept open between checks");
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while srv.live_connections() > 0 {
        assert!(Instant::now() < deadline, "a dropped checker left its connection open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn web_keep_alive_a_connection_the_server_closed_is_replaced_within_the_check() {
    // Servers close idle connections (nginx after 75 s, Apache after 5 s): that is no failure
    // of the entry point, and the check goes on over a new connection at once.
    let srv = KeepAliveServer::start().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nkeep-alive: 30s\nretries: 0", srv.port));
    assert_healthy(&check(&c, LOCAL).await);
    srv.close_connections().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_healthy(&check(&c, LOCAL).await);
    assert_eq!(srv.live_connections(), 1, "one new connection, kept");
}

#[tokio::test]
async fn web_keep_alive_a_server_that_died_fails_the_next_check() {
    let mut srv = KeepAliveServer::start().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nkeep-alive: 30s", srv.port));
    assert_healthy(&check(&c, LOCAL).await);
    srv.close_listener().await;
    srv.close_connections().await;
    assert_eq!(check(&c, LOCAL).await.reason(), Some("connection refused"));
}

#[tokio::test]
async fn web_keep_alive_a_closed_listener_is_seen_once_the_connection_is_as_old_as_keep_alive() {
    // The trade of keep-alive: a process that still serves the connection it holds but lets
    // nobody new in passes until the connection is `keep-alive` old; from then on every check
    // opens a new connection until one gets in, so the failure counts towards `fall`.
    let mut srv = KeepAliveServer::start().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nkeep-alive: 3s", srv.port));
    assert_healthy(&check(&c, LOCAL).await);
    srv.close_listener().await;
    assert_healthy(&check(&c, LOCAL).await);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(check(&c, LOCAL).await.reason(), Some("connection refused"));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("connection refused"), "no old connection taken back");
}

#[tokio::test]
async fn web_keep_alive_is_off_unless_asked_for() {
    let srv = KeepAliveServer::start().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nkeep-alive: 0", srv.port));
    for _ in 0..3 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    assert_eq!(srv.open.lock().unwrap().len(), 3, "keep-alive: 0 opens a connection per check");
    let e = build_err("svc.test", LOCAL, "type: web\nkeep-alive: 2h");
    assert!(e.to_string().contains("keep-alive") && e.to_string().contains("from 0s to 1h"), "{e}");
}

/// Sockets in TIME_WAIT on either end of connections to `port` on this host (Linux).
#[cfg(target_os = "linux")]
fn time_wait(port: u16) -> usize {
    let port = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl, local_address, rem_address, st (06 is TIME_WAIT), ...
            f.len() > 3 && f[3] == "06" && [f[1], f[2]].iter().any(|a| a.rsplit(':').next() == Some(port.as_str()))
        })
        .count()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn web_checks_leave_no_sockets_in_time_wait() {
    // A node checking thousands of entry points every second would otherwise hold tens of
    // thousands of closed connections in TIME_WAIT, on its side or the server's: a check ends
    // its connection with a reset once it has its answer.
    let srv = ok_server().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}", srv.port()));
    for _ in 0..20 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    assert_eq!(srv.connections(), 20);
    assert_eq!(time_wait(srv.port()), 0, "checks left sockets in TIME_WAIT");

    // The same over TLS.
    let (srv, _dir, ca) = https_server(&["svc.test"]).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nschema: https\nport: {}\nca-file: {}", srv.port(), ca.display()));
    for _ in 0..5 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    assert_eq!(time_wait(srv.port()), 0, "TLS checks left sockets in TIME_WAIT");
}

#[tokio::test]
async fn web_redirects_to_another_host_look_it_up_and_name_it() {
    // A redirect to a name other than the service's domain goes where that name resolves.
    let srv = Server::start(LOCAL, None, |r| if r.target == "/" { Reply::Status(200, "OK") } else { Reply::Status(404, "") }).await;
    let to: &'static str = Box::leak(format!("http://localhost:{}/", srv.port()).into_boxed_str());
    let redirecting = Server::start(LOCAL, None, move |_| Reply::Redirect(to)).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nfollow-redirects: true", redirecting.port()));
    assert_healthy(&check(&c, LOCAL).await);
    assert_eq!(srv.last().header("host"), Some(format!("localhost:{}", srv.port()).as_str()));
    assert_eq!(redirecting.last().header("host"), Some(format!("svc.test:{}", redirecting.port()).as_str()));
}

// ---------------------------------------------------------------------------------------------
// web: what the server is told (Host, headers).

#[tokio::test]
async fn web_custom_headers_are_sent() {
    let srv = ok_server().await;
    let c =
        build("svc.test", LOCAL, &format!("type: web\nport: {}\nheaders:\n  X-Health-Token: abc123\n  User-Agent: probe/1", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
    let r = srv.last();
    assert_eq!(r.header("x-health-token"), Some("abc123"));
    assert_eq!(r.header("user-agent"), Some("probe/1"));
}

#[tokio::test]
async fn web_host_header_wins_over_domain_forwarding() {
    let srv = ok_server().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nheaders:\n  Host: custom.test", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
    assert_eq!(srv.last().header("host"), Some("custom.test"));
    assert_eq!(srv.requests()[0].headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("host")).count(), 1);
}

#[tokio::test]
async fn web_without_domain_forwarding_talks_to_the_ip() {
    let srv = ok_server().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\ndomain-forwarding: false", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);
    assert_eq!(srv.last().header("host"), Some(format!("127.0.0.1:{}", srv.port()).as_str()));
}

#[tokio::test]
async fn web_checks_each_entry_point_at_its_own_address() {
    // Two entry points of one service on two loopback addresses: each check reaches its own.
    let a = ok_server().await;
    let b_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let Ok(b_listener) = TcpListener::bind(SocketAddr::new(b_ip, a.port())).await else {
        eprintln!("127.0.0.2:{} is taken; skipping", a.port());
        return;
    };
    let b = Server::serve(b_listener, None, Arc::new(|_| Reply::Status(503, "")));
    let yaml = config_yaml("svc.test", &[("ep-1", LOCAL), ("ep-2", b_ip)], &format!("type: web\nport: {}", a.port()));
    let c = build_config(&yaml).unwrap().remove(0);
    assert_healthy(&c.check(&EntryPoint { name: "ep-1".into(), ip: LOCAL }).await);
    assert_unhealthy(&c.check(&EntryPoint { name: "ep-2".into(), ip: b_ip }).await, "HTTP 503");
    assert_eq!((a.connections(), b.connections()), (1, 1));
}

#[tokio::test]
async fn web_ipv6_entry_points_work() {
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let Ok(listener) = TcpListener::bind(SocketAddr::new(v6, 0)).await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let srv = Server::serve(listener, None, Arc::new(|_| Reply::Status(200, "OK")));
    let c = build("svc.test", v6, &format!("type: web\nport: {}", srv.port()));
    assert_healthy(&check(&c, v6).await);
    assert_eq!(srv.last().header("host"), Some(format!("svc.test:{}", srv.port()).as_str()));

    let c = build("svc.test", v6, &format!("type: web\nport: {}\ndomain-forwarding: false", srv.port()));
    assert_healthy(&check(&c, v6).await);
    assert_eq!(srv.last().header("host"), Some(format!("[::1]:{}", srv.port()).as_str()));

    // With keep-alive, over one kept connection to the same address.
    let listener = TcpListener::bind(SocketAddr::new(v6, 0)).await.unwrap();
    let srv = Server::serve(listener, None, Arc::new(|_| Reply::KeepAlive(200, "OK")));
    let c = build("svc.test", v6, &format!("type: web\nport: {}\nkeep-alive: 30s", srv.port()));
    for _ in 0..3 {
        assert_healthy(&check(&c, v6).await);
    }
    assert_eq!((srv.connections(), srv.requests().len()), (1, 3));
    assert_eq!(srv.last().header("host"), Some(format!("svc.test:{}", srv.port()).as_str()));
}

// ---------------------------------------------------------------------------------------------
// web: HTTPS with a certificate made here.

struct Pki {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// A CA and a server certificate it signed for `names`.
fn pki(names: &[&str]) -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "dhaf test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    Pki { ca_pem: ca.pem(), acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) }
}

async fn https_server(names: &[&str]) -> (Server, tempfile::TempDir, PathBuf) {
    let pki = pki(names);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let srv = Server::start(LOCAL, Some(pki.acceptor), |_| Reply::Status(200, "OK")).await;
    (srv, dir, ca)
}

#[tokio::test]
async fn https_untrusted_certificate_is_unhealthy_unless_ssl_errors_are_ignored() {
    let (srv, _dir, _ca) = https_server(&["svc.test"]).await;
    let strict = build("svc.test", LOCAL, &format!("type: web\nschema: https\nport: {}", srv.port()));
    assert_eq!(check(&strict, LOCAL).await.reason(), Some("certificate for svc.test not trusted (unknown issuer)"));
    assert_eq!(srv.requests().len(), 0, "no request goes over an unverified connection");

    let lax = build("svc.test", LOCAL, &format!("type: web\nschema: https\nport: {}\nignore-ssl-errors: true", srv.port()));
    assert_healthy(&check(&lax, LOCAL).await);
    // TLS server name and Host both carry the service's domain, as a browser's would.
    assert_eq!(srv.seen.server_names.lock().unwrap().last().cloned().flatten().as_deref(), Some("svc.test"));
    assert_eq!(srv.last().header("host"), Some(format!("svc.test:{}", srv.port()).as_str()));
}

#[tokio::test]
async fn web_keep_alive_with_a_server_that_closes_after_each_answer_opens_one_per_check() {
    // A server that says `Connection: close` is not asked again on that connection.
    let srv = ok_server().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\nkeep-alive: 30s", srv.port()));
    for _ in 0..3 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    assert_eq!(srv.connections(), 3);
}

#[tokio::test]
async fn https_keep_alive_keeps_the_tls_session_and_names_the_domain() {
    let pki = pki(&["svc.test"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let srv = Server::start(LOCAL, Some(pki.acceptor), |_| Reply::KeepAlive(200, "status: ok")).await;
    let c = build(
        "svc.test",
        LOCAL,
        &format!("type: web\nschema: https\nport: {}\nca-file: {}\nkeep-alive: 30s\nexpected-response-body: OK", srv.port(), ca.display()),
    );
    for _ in 0..4 {
        assert_healthy(&check(&c, LOCAL).await);
    }
    assert_eq!((srv.connections(), srv.requests().len()), (1, 4), "four checks over one TLS connection");
    assert_eq!(srv.seen.server_names.lock().unwrap().clone(), [Some("svc.test".to_string())]);
    assert!(srv.requests().iter().all(|r| r.header("host") == Some(format!("svc.test:{}", srv.port()).as_str())));
}

#[tokio::test]
async fn https_certificate_validates_for_the_service_domain() {
    let (srv, _dir, ca) = https_server(&["svc.test"]).await;
    let ca = ca.display();
    let c = build("svc.test", LOCAL, &format!("type: web\nschema: https\nport: {}\nca-file: {ca}", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);

    // The same server, checked as another domain's entry point: the name does not match.
    let c = build("other.test", LOCAL, &format!("type: web\nschema: https\nport: {}\nca-file: {ca}", srv.port()));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("certificate not valid for other.test"));

    // A Host header names the server instead of the domain, for TLS as well.
    let c =
        build("other.test", LOCAL, &format!("type: web\nschema: https\nport: {}\nca-file: {ca}\nheaders:\n  Host: svc.test", srv.port()));
    assert_healthy(&check(&c, LOCAL).await);

    // Without domain forwarding the server is addressed by IP, which the certificate does not name.
    let c = build("svc.test", LOCAL, &format!("type: web\nschema: https\nport: {}\nca-file: {ca}\ndomain-forwarding: false", srv.port()));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("certificate not valid for 127.0.0.1"));
}

#[tokio::test]
async fn https_entry_points_of_one_service_each_reach_their_own_address_with_the_domain_as_sni() {
    // One service, two entry points on one port of two addresses, each with its own certificate
    // for the domain: the checker's client is shared, yet every check connects to its own entry
    // point and names the domain in SNI and Host.
    let (a_pki, b_pki) = (pki(&["svc.test"]), pki(&["svc.test"]));
    let a = Server::start(LOCAL, Some(a_pki.acceptor), |_| Reply::Status(200, "OK")).await;
    let b_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let Ok(b_listener) = TcpListener::bind(SocketAddr::new(b_ip, a.port())).await else {
        eprintln!("127.0.0.2:{} is taken; skipping", a.port());
        return;
    };
    let b = Server::serve(b_listener, Some(b_pki.acceptor), Arc::new(|_| Reply::Status(503, "")));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, format!("{}{}", a_pki.ca_pem, b_pki.ca_pem)).unwrap();
    let hc = format!("type: web\nschema: https\nport: {}\nca-file: {}", a.port(), ca.display());
    let mut yaml = config_yaml("svc.test", &[("ep-1", LOCAL), ("ep-2", b_ip)], &hc);
    // A second service with the same settings on the same addresses, the other way round.
    yaml.push_str(&format!(
        "  - name: second\n    domain: svc.test\n    entry-points: [{{ name: ep-1, ip: {b_ip} }}, {{ name: ep-2, ip: {LOCAL} }}]\n    switcher: {{ type: fake }}\n    health-checker: {{ {} }}\n",
        hc.replace('\n', ", ")
    ));
    let checkers = build_config(&yaml).unwrap();
    let (one, two) = (&checkers[0], &checkers[1]);
    let eps = [
        EntryPoint { name: "ep-1".into(), ip: LOCAL },
        EntryPoint { name: "ep-2".into(), ip: b_ip },
        EntryPoint { name: "ep-1".into(), ip: b_ip },
        EntryPoint { name: "ep-2".into(), ip: LOCAL },
    ];
    for _ in 0..3 {
        // At once, so that the requests interleave on the shared client.
        let checks = tokio::join!(one.check(&eps[0]), one.check(&eps[1]), two.check(&eps[2]), two.check(&eps[3]));
        assert_healthy(&checks.0);
        assert_unhealthy(&checks.1, "HTTP 503");
        assert_unhealthy(&checks.2, "HTTP 503");
        assert_healthy(&checks.3);
    }
    assert_eq!((a.connections(), b.connections()), (6, 6));
    for srv in [&a, &b] {
        let names = srv.seen.server_names.lock().unwrap().clone();
        assert_eq!(names, vec![Some("svc.test".to_string()); 6]);
        for r in srv.requests() {
            assert_eq!(r.header("host"), Some(format!("svc.test:{}", a.port()).as_str()));
        }
    }
}

#[tokio::test]
async fn https_over_ipv6_and_ipv4_entry_points_of_one_service() {
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let Ok(listener) = TcpListener::bind(SocketAddr::new(v6, 0)).await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let (v6_pki, v4_pki) = (pki(&["svc.test"]), pki(&["svc.test"]));
    let v6_srv = Server::serve(listener, Some(v6_pki.acceptor), Arc::new(|_| Reply::Status(200, "OK")));
    let Ok(v4_listener) = TcpListener::bind(SocketAddr::new(LOCAL, v6_srv.port())).await else {
        eprintln!("127.0.0.1:{} is taken; skipping", v6_srv.port());
        return;
    };
    let v4_srv = Server::serve(v4_listener, Some(v4_pki.acceptor), Arc::new(|_| Reply::Status(500, "")));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, format!("{}{}", v6_pki.ca_pem, v4_pki.ca_pem)).unwrap();
    let hc = format!("type: web\nschema: https\nport: {}\nca-file: {}", v6_srv.port(), ca.display());
    let c = build_config(&config_yaml("svc.test", &[("ep-1", v6), ("ep-2", LOCAL)], &hc)).unwrap().remove(0);
    assert_healthy(&c.check(&EntryPoint { name: "ep-1".into(), ip: v6 }).await);
    assert_unhealthy(&c.check(&EntryPoint { name: "ep-2".into(), ip: LOCAL }).await, "HTTP 500");
    assert_eq!((v6_srv.connections(), v4_srv.connections()), (1, 1));
    assert_eq!(v6_srv.seen.server_names.lock().unwrap().clone(), [Some("svc.test".to_string())]);
    assert_eq!(v6_srv.last().header("host"), Some(format!("svc.test:{}", v6_srv.port()).as_str()));
}

#[tokio::test]
async fn https_to_a_plain_http_port_says_so() {
    let srv = ok_server().await;
    let c = build("svc.test", LOCAL, &format!("type: web\nschema: https\nport: {}", srv.port()));
    assert_unhealthy(&check(&c, LOCAL).await, "TLS handshake failed");
}

#[tokio::test]
async fn http_schema_is_the_default() {
    // An http check of a TLS port fails: the default schema is plain http.
    let (srv, _dir, _ca) = https_server(&["svc.test"]).await;
    let c = build("svc.test", LOCAL, &format!("type: web\nport: {}\ntimeout: 2\nretries: 0", srv.port()));
    assert!(!check(&c, LOCAL).await.is_healthy());
}

// ---------------------------------------------------------------------------------------------
// tcp.

#[tokio::test]
async fn tcp_open_port_is_healthy_and_closed_port_is_refused() {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let c = build("svc.test", LOCAL, &format!("type: tcp\nport: {port}"));
    assert_healthy(&check(&c, LOCAL).await);
    drop(listener);
    assert_eq!(check(&c, LOCAL).await.reason(), Some("connection refused"));
}

#[tokio::test]
async fn tcp_timeout_is_honoured() {
    // A listener whose accept queue is full drops further SYNs: the connect hangs.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(LOCAL, 0)).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await {
            fillers.push(s);
        }
    }
    let c = build("svc.test", LOCAL, &format!("type: tcp\nport: {}\ntimeout: 1", addr.port()));
    assert_eq!(c.timeout().as_secs(), 3);
    let start = Instant::now();
    assert_eq!(check(&c, LOCAL).await.reason(), Some("timed out after 1 s"));
    assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
    drop(listener);
}

// ---------------------------------------------------------------------------------------------
// exec.

#[path = "support/script.rs"]
mod script_support;
use script_support::script;

fn exec_yaml(init: &Path, check: &Path, extra: &str) -> String {
    format!("type: exec\ninit: {}\ncheck: {}\n{extra}", init.display(), check.display())
}

#[tokio::test]
async fn exec_check_gets_name_and_ip_and_exit_0_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("args");
    let init = script(dir.path(), "init.sh", "exit 0");
    let ok = script(dir.path(), "check.sh", &format!("echo \"$1 $2\" > {}\nexit 0", out.display()));
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &ok, ""));
    assert_healthy(&check(&c, LOCAL).await);
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "ep-1 127.0.0.1");
}

#[tokio::test]
async fn exec_failure_reason_is_the_exit_code_and_last_stderr_line() {
    let dir = tempfile::tempdir().unwrap();
    let init = script(dir.path(), "init.sh", "exit 0");
    let fail =
        script(dir.path(), "check.sh", "echo checking >&2\necho '  disk full on /var  ' >&2\necho >&2\necho stdout is ignored\nexit 1");
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &fail, ""));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("exit 1: disk full on /var"));

    let silent = script(dir.path(), "silent.sh", "exit 7");
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &silent, ""));
    assert_eq!(check(&c, LOCAL).await.reason(), Some("exit 7"));

    let long = script(dir.path(), "long.sh", "printf '%0500d\\n' 0 >&2\nexit 2");
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &long, ""));
    let reason = check(&c, LOCAL).await.reason().unwrap().to_string();
    assert!(reason.starts_with("exit 2: 000") && reason.chars().count() < 250, "{reason}");
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

async fn read_pid(path: &Path) -> u32 {
    for _ in 0..50 {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(pid) = s.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the script did not write {}", path.display());
}

async fn gone(pid: u32) -> bool {
    for _ in 0..50 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn exec_hung_script_is_killed_at_the_timeout_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let init = script(dir.path(), "init.sh", "exit 0");
    let hang = script(dir.path(), "hang.sh", &format!("sleep 60 &\necho $! > {}\nwait", pidfile.display()));
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &hang, "timeout: 1"));
    let start = Instant::now();
    assert_eq!(check(&c, LOCAL).await.reason(), Some("timed out after 1 s (killed)"));
    assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
    let sleeper = read_pid(&pidfile).await;
    assert!(gone(sleeper).await, "the script's child {sleeper} outlived the timeout");
}

#[tokio::test]
async fn exec_script_is_killed_when_the_check_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let init = script(dir.path(), "init.sh", "exit 0");
    let hang = script(dir.path(), "hang.sh", &format!("sleep 60 &\necho $! > {}\nwait", pidfile.display()));
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &hang, "timeout: 30"));
    // The runtime's outer bound drops the check future.
    let abandoned = tokio::time::timeout(Duration::from_millis(500), c.check(&ep(LOCAL))).await;
    assert!(abandoned.is_err());
    let sleeper = read_pid(&pidfile).await;
    assert!(gone(sleeper).await, "the script's child {sleeper} outlived the abandoned check");
}

#[tokio::test]
async fn exec_timeout_defaults_to_5_s() {
    let dir = tempfile::tempdir().unwrap();
    let init = script(dir.path(), "init.sh", "exit 0");
    let ok = script(dir.path(), "check.sh", "exit 0");
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &ok, ""));
    assert!(c.timeout() >= Duration::from_secs(5) && c.timeout() < Duration::from_secs(10), "{:?}", c.timeout());
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &ok, "timeout: 60"));
    assert!(c.timeout() >= Duration::from_secs(60));
}

#[tokio::test]
async fn exec_init_runs_once_and_its_failure_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("initialised");
    let init = script(dir.path(), "init.sh", &format!("echo run >> {}", marker.display()));
    let ok = script(dir.path(), "check.sh", "exit 0");
    let c = build("svc.test", LOCAL, &exec_yaml(&init, &ok, ""));
    assert!(!marker.exists(), "building must not run anything");
    c.init().await.unwrap();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");
    assert_healthy(&check(&c, LOCAL).await);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n", "checks do not re-run init");

    let bad_init = script(dir.path(), "bad-init.sh", "echo 'no credentials' >&2\nexit 3");
    let c = build("svc.test", LOCAL, &exec_yaml(&bad_init, &ok, ""));
    let err = c.init().await.unwrap_err().to_string();
    assert!(err.contains("bad-init.sh") && err.ends_with("exit 3: no credentials"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Config errors: every problem at once, each with its key path.

#[test]
fn config_errors_are_reported_together_with_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let not_exec = dir.path().join("plain.sh");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    let missing = dir.path().join("missing.sh");
    let yaml = format!(
        r#"
dhaf: {{ cluster-name: c1, node-name: n1 }}
services:
  - name: a
    domain: a.test
    entry-points: [{{ name: ep-1, ip: 127.0.0.1 }}]
    switcher: {{ type: fake }}
    health-checker:
      type: web
      schema: ftp
      method: DELETE
      expected-codes: 200,6XX
      timeout: 0
      retries: 99
      path: health
      headers: {{ "bad header": x }}
      follow-redirects: maybe
      ca-file: {missing}
      retires: 3
  - name: b
    domain: b.test
    entry-points: [{{ name: ep-1, ip: 127.0.0.1 }}]
    switcher: {{ type: fake }}
    health-checker: {{ type: tcp, timeout: 100000 }}
  - name: c
    domain: c.test
    entry-points: [{{ name: ep-1, ip: 127.0.0.1 }}]
    switcher: {{ type: fake }}
    health-checker: {{ type: exec, init: {missing}, check: {not_exec} }}
  - name: d
    domain: d.test
    entry-points: [{{ name: ep-1, ip: 127.0.0.1 }}]
    switcher: {{ type: fake }}
    health-checker: {{ type: exec, check: {dir} }}
"#,
        missing = missing.display(),
        not_exec = not_exec.display(),
        dir = dir.path().display(),
    );
    let Err(err) = build_config(&yaml) else { panic!("accepted") };
    let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    let h = "services[0].health-checker";
    let expected = [
        format!("{h}.schema: 'ftp' is not one of: http, https"),
        format!("{h}.method: 'DELETE' is not one of: GET, POST"),
        format!("{h}.expected-codes: '6XX' is not a code or mask"),
        format!("{h}.timeout: must be a duration from 50ms to 24h (a bare number is seconds), not 0s"),
        format!("{h}.retries: must be a whole number from 0 to 10"),
        format!("{h}.path: 'health' must start with /"),
        format!("{h}.headers.bad header: is not a valid HTTP header name"),
        format!("{h}.follow-redirects: must be true or false"),
        format!("{h}.ca-file: cannot read {}", missing.display()),
        format!("{h}.retires: unknown key"),
        "services[1].health-checker.port: is required".to_string(),
        "services[1].health-checker.timeout: must be a duration from 50ms to 24h (a bare number is seconds), not 100000s".to_string(),
        format!("services[2].health-checker.init: no such file: {}", missing.display()),
        format!("services[2].health-checker.check: {} is not executable", not_exec.display()),
        "services[3].health-checker.init: is required".to_string(),
        format!("services[3].health-checker.check: {} is a directory", dir.path().display()),
    ];
    for e in &expected {
        assert!(text.iter().any(|t| t.starts_with(e.as_str())), "missing {e:?} in {text:#?}");
    }
    assert_eq!(text.len(), expected.len(), "{text:#?}");
}

#[test]
fn web_config_edge_cases() {
    // A YAML number and a YAML list are both read as written.
    assert!(try_build("svc.test", LOCAL, "type: web\nexpected-codes: 204").is_ok());
    assert!(try_build("svc.test", LOCAL, "type: web\nexpected-codes: [200, 3XX]").is_ok());
    let err = build_err("svc.test", LOCAL, "type: web\nexpected-codes: 2X");
    assert_eq!(err.problems[0].path, "services[0].health-checker.expected-codes");
    let err = build_err("svc.test", LOCAL, "type: web\nport: 70000\nheaders:\n  X-A: \"line\\nbreak\"");
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["services[0].health-checker.port", "services[0].health-checker.headers.X-A"]);
    let err = build_err("svc.test", LOCAL, "type: tcp\nport: 0");
    assert_eq!(err.problems[0].to_string(), "services[0].health-checker.port: must be a whole number from 1 to 65535");
}

#[test]
fn the_registry_knows_the_three_checkers() {
    let types = dhaf_providers::registry().checker_types();
    for t in ["web", "tcp", "exec"] {
        assert!(types.contains(&t.to_string()), "{types:?}");
    }
}
