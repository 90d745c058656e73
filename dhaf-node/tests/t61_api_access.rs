//! Who may do what on a node with named tokens, over real sockets: the role matrix (every
//! route × no token, a wrong token, and a token of each role), the audit trail it leaves, the
//! limit on wrong tokens per address, refusals made on headers alone, and a grep of every log
//! line and answer for the secrets.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dhaf_core::config::Role;
use dhaf_node::auth::Access;
use dhaf_node::ApiLimits;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod support;

const READ: &str = "grafana-read-secret-1";
const OPERATE: &str = "alice-operate-secret-2";
const ADMIN: &str = "legacy-admin-secret-3";
const WRONG: &str = "wrong-guess-secret-4";

/// Every log line of this test process.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process's log lines, shared by every test of this binary (one global subscriber).
fn capture_logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).with_max_level(tracing::Level::DEBUG).init();
        logs
    })
    .clone()
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn sha256_hex(s: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum runs");
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

struct Site {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(public_read: bool) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let port = support::tcp_backend("127.0.0.1:0").await;
    // The reader's token is configured as its hash only.
    let hash = sha256_hex(READ);
    let api = format!(
        "    host: 127.0.0.1\n    port: 0\n    token: {ADMIN}\n    public-read: {public_read}\n    tokens:\n      \
         - {{ name: grafana, role: read, token-sha256: {hash} }}\n      - {{ name: alice, role: operate, token: {OPERATE} }}"
    );
    let config = support::Site::tcp("acl", port).eager().api(&api).write(dir.path());
    let (addr, handle, stop) = support::start_node(&config, ApiLimits::default()).await;
    let start = Instant::now();
    while !handle.is_leader() {
        assert!(start.elapsed() < Duration::from_secs(30), "the node did not lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Site { base: format!("http://{addr}"), http: reqwest::Client::new(), _dir: dir, _stop: stop }
}

impl Site {
    async fn send(&self, method: Method, path: &str, token: Option<&str>) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if method == Method::POST && path.ends_with("/switchover") {
            req = req.json(&serde_json::json!({"entry_point": "ep-1"}));
        }
        let resp = req.send().await.expect("the API answers");
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, resp.text().await.unwrap(), headers)
    }
}

fn concrete(path: &str) -> String {
    path.replace("{service}", "site").replace("{entry_point}", "ep-1").replace("{node}", "ghost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_role_matrix_audit_trail_and_no_secret_anywhere() {
    let logs = capture_logs();
    // The table the matrix is checked against says what the roles promise.
    let table = dhaf_node::api::access();
    let needs = |m: Method, p: &str| table.iter().find(|(tm, tp, _)| *tm == m && *tp == p).map(|t| t.2).unwrap();
    assert_eq!(needs(Method::GET, "/healthz"), Access::Open);
    assert_eq!(needs(Method::GET, "/leader"), Access::Open);
    assert_eq!(needs(Method::GET, "/metrics"), Access::Role(Role::Read));
    assert_eq!(needs(Method::POST, "/api/v1/services/{service}/switchover"), Access::Role(Role::Operate));
    assert_eq!(needs(Method::POST, "/api/v1/services/{service}/entry-points/{entry_point}/maintenance"), Access::Role(Role::Operate));
    assert_eq!(needs(Method::DELETE, "/api/v1/nodes/{node}"), Access::Role(Role::Admin));
    assert!(table.iter().all(|(m, _, a)| *m == Method::GET || *a != Access::Role(Role::Read)), "a mutation open to readers");
    let site = start(false).await;
    let mut seen = String::new();
    let callers: [(&str, Option<&str>, Option<Role>); 5] = [
        ("none", None, None),
        ("wrong", Some(WRONG), None),
        ("read", Some(READ), Some(Role::Read)),
        ("operate", Some(OPERATE), Some(Role::Operate)),
        ("admin", Some(ADMIN), Some(Role::Admin)),
    ];
    for (method, path, access) in dhaf_node::api::access() {
        let path = concrete(path);
        // What the route answers when allowed: the admin's answer.
        let (allowed, text, _) = site.send(method.clone(), &path, Some(ADMIN)).await;
        seen.push_str(&text);
        assert!(![401, 403, 429].contains(&allowed.as_u16()) && allowed.as_u16() < 500, "{method} {path} as admin: {allowed} {text}");
        for (who, token, role) in &callers {
            let (status, text, headers) = site.send(method.clone(), &path, *token).await;
            seen.push_str(&text);
            let expected = match (access, token, role) {
                (Access::Open, ..) => allowed,
                (Access::Role(_), None, _) | (Access::Role(_), Some(_), None) => StatusCode::UNAUTHORIZED,
                (Access::Role(needs), _, Some(has)) if has < &needs => StatusCode::FORBIDDEN,
                (Access::Role(_), _, Some(_)) => allowed,
            };
            // A switch in between may change a mutation's answer (202 then 409...): the
            // refusals are exact, an allowed call is not refused.
            if expected == allowed && access != Access::Open && method != Method::GET {
                assert!(![401, 403].contains(&status.as_u16()), "{method} {path} as {who}: {status} {text}");
            } else {
                assert_eq!(status, expected, "{method} {path} as {who}: {text}");
            }
            if status == StatusCode::UNAUTHORIZED {
                assert_eq!(headers["www-authenticate"], "Bearer realm=\"dhaf\"", "{method} {path}");
            }
        }
    }

    // The audit trail: the operator's switchover, accepted, with her name and address; a reader's
    // attempt, refused with the reader's name; an anonymous one, refused without a name.
    let (status, text, _) = site.send(Method::GET, "/api/v1/audit", Some(READ)).await;
    assert_eq!(status, StatusCode::OK);
    seen.push_str(&text);
    let audit: Vec<Value> = serde_json::from_str(&text).unwrap();
    let find = |token: Value, method: &str, outcome: &str| {
        audit
            .iter()
            .find(|r| {
                r["token"] == token && r["method"] == method && r["path"] == "/api/v1/services/site/switchover" && r["outcome"] == outcome
            })
            .unwrap_or_else(|| panic!("no {outcome} {method} by {token} in {text}"))
            .clone()
    };
    let alice = find("alice".into(), "POST", "accepted");
    assert_eq!(alice["role"], "operate");
    assert!(alice["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{alice}");
    assert_eq!(alice["status"], 202);
    let reader = find("grafana".into(), "POST", "refused");
    assert_eq!((reader["status"].as_u64(), reader["code"].as_str()), (Some(403), Some("forbidden")));
    let anonymous = find(Value::Null, "DELETE", "refused");
    assert_eq!(anonymous["code"], "unauthorized");
    // Reads are not audited.
    assert!(audit.iter().all(|r| r["method"] != "GET"), "{text}");

    let (_, metrics, _) = site.send(Method::GET, "/metrics", Some(READ)).await;
    let (_, history, _) = site.send(Method::GET, "/api/v1/services/site/history", Some(READ)).await;
    seen.push_str(&metrics);
    seen.push_str(&history);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("outcome=\"accepted\"") || logs.contains("outcome=accepted"), "the audit is not logged: {logs}");
    assert!(logs.contains("wrong token"), "failed authentications are not logged");
    for secret in [READ, OPERATE, ADMIN, WRONG] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!seen.contains(secret), "{secret} in an answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_public_read_keeps_status_open_and_mutations_closed() {
    let site = start(true).await;
    assert_eq!(site.send(Method::GET, "/api/v1/status", None).await.0, StatusCode::OK);
    assert_eq!(site.send(Method::GET, "/metrics", None).await.0, StatusCode::OK);
    assert_eq!(site.send(Method::DELETE, "/api/v1/services/site/switchover", None).await.0, StatusCode::UNAUTHORIZED);
    // The scheme is case-insensitive.
    let resp = site.http.get(format!("{}/api/v1/audit", site.base)).header("authorization", format!("BEARER {READ}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_wrong_tokens_are_limited_per_address() {
    let site = start(false).await;
    // From another loopback address, so this test's other calls are not limited.
    let guesser = reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let url = format!("{}/api/v1/status", site.base);
    for i in 0..dhaf_node::auth::FAILURE_LIMIT {
        let s = guesser.get(&url).bearer_auth(format!("guess-number-{i}")).send().await.unwrap().status();
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let resp = guesser.get(&url).bearer_auth(READ).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "even the right token waits out the window");
    assert!(resp.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_failures");
    // Another address is unaffected.
    assert_eq!(site.send(Method::GET, "/api/v1/status", Some(READ)).await.0, StatusCode::OK);
}

/// A raw HTTP/1.1 exchange, for requests reqwest will not make.
async fn raw(base: &str, request: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_bodies_are_refused_on_their_headers_and_names_are_not_echoed() {
    let site = start(false).await;
    // An oversized body is refused at once, without `100 Continue` and without being read.
    let answer = raw(
        &site.base,
        &format!(
            "POST /api/v1/services/site/switchover HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {OPERATE}\r\n\
             content-type: application/json\r\ncontent-length: 1000000000\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    let resp = site
        .http
        .post(format!("{}/api/v1/services/site/switchover", site.base))
        .bearer_auth(OPERATE)
        .header("content-type", "text/plain")
        .body(r#"{"entry_point": "ep-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let long = "x".repeat(20_000);
    let (status, text, _) = site.send(Method::GET, &format!("/api/v1/services/{long}"), Some(READ)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.len() < 1000, "the name was echoed: {} bytes", text.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t45_requests_http_itself_refuses_get_the_json_error_too() {
    let site = start(false).await;
    let json_error = |answer: &str, status: &str, code: &str| {
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/json"), "{answer}");
        let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("")).expect("a JSON body");
        assert_eq!(body["error"]["code"], code, "{answer}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        assert!(answer.len() < 1000, "the request was echoed: {answer}");
    };
    let malformed = raw(&site.base, "GET /api/v1/status HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n").await;
    json_error(&malformed, "400", "bad_request");
    let long_uri = raw(&site.base, &format!("GET /api/v1/services/{} HTTP/1.1\r\nhost: x\r\n\r\n", "x".repeat(70_000))).await;
    json_error(&long_uri, "414", "uri_too_long");
    let headers: String = (0..2_000).map(|i| format!("x-filler-{i}: {}\r\n", "y".repeat(40))).collect();
    let many = raw(&site.base, &format!("GET /api/v1/status HTTP/1.1\r\nhost: x\r\n{headers}\r\n")).await;
    json_error(&many, "431", "headers_too_large");
    // A well-formed request on the same API still works.
    assert_eq!(site.send(Method::GET, "/api/v1/status", Some(READ)).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_listening_beyond_loopback_without_tls_is_warned_at_start() {
    let logs = capture_logs();
    let warning = "listening beyond loopback without TLS";
    let mut bound = Vec::new();
    for host in ["127.0.0.1", "0.0.0.0"] {
        let dir = tempfile::tempdir().unwrap();
        let config = support::Site::tcp("warn", 9).api(&format!("    host: {host}\n    port: 0")).write(dir.path());
        let (addr, _handle, stop) = support::start_node(&config, ApiLimits::default()).await;
        bound.push((addr, stop, dir));
    }
    let lines = logs.text();
    let warned = |addr: std::net::SocketAddr| lines.lines().any(|l| l.contains(warning) && l.contains(&addr.to_string()));
    assert!(!warned(bound[0].0), "a loopback API is not warned about:\n{lines}");
    assert!(warned(bound[1].0), "an API on 0.0.0.0 without TLS is warned about at start:\n{lines}");
}
