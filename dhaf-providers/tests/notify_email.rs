//! The `email` notifier against a real SMTP server (aiosmtpd) on loopback: plain, STARTTLS and
//! implicit TLS, all with AUTH required, checking the messages the server actually received.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use dhaf_core::config::ProviderConfig;
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::{Event, Notification};
use dhaf_core::provider::{BuildContext, Notifier, ProviderError, ProviderStore};
use dhaf_providers::notify::email::EmailNotifier;
use serde_json::Value;

#[path = "support/common.rs"]
mod common;

const USER: &str = "dhaf";
const PASSWORD: &str = "s3cret-Pa55word";

/// A running `tests/support/smtp_server.py` with its certificate and inbox.
struct SmtpServer {
    child: Child,
    dir: tempfile::TempDir,
    plain: u16,
    starttls: u16,
    ssl: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_path() -> String {
    let path = std::env::var("DHAF_PYTHONPATH").unwrap_or_default();
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .env("PYTHONPATH", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 with aiosmtpd not found (DHAF_PYTHONPATH={path:?}): run the tests with `cargo xtask test`, which provides it");
    path
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "dhaf test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.distinguished_name.push(DnType::CommonName, "smtp.test");
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

impl SmtpServer {
    fn start() -> SmtpServer {
        let pythonpath = python_path();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inbox")).unwrap();
        let (_, cert, key) = certificates(dir.path());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.path().join("inbox"))
            .args([&cert, &key])
            .args([USER, PASSWORD])
            .env("PYTHONPATH", pythonpath)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the SMTP server did not start within 30 s");
        let ports: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("the SMTP server printed {line:?}: {e}"));
        let port = |k: &str| ports[k].as_u64().unwrap() as u16;
        let (plain, starttls, ssl) = (port("plain"), port("starttls"), port("ssl"));
        SmtpServer { child, dir, plain, starttls, ssl }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every message the server accepted so far.
    fn inbox(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.path().join("inbox")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                out.push(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap());
            }
        }
        out
    }
}

fn notifier(yaml: &str) -> Arc<EmailNotifier> {
    try_notifier(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn try_notifier(yaml: &str) -> Result<Arc<EmailNotifier>, dhaf_core::config::ConfigError> {
    let mut section = ProviderConfig::new("email").with_name("mail");
    section.path = "notifiers[0]".into();
    section.settings = dhaf_core::config::Settings::from_yaml(yaml).unwrap();
    let ctx = BuildContext {
        cluster: "c1".into(),
        node: "n1".into(),
        service: None,
        store: ProviderStore::new(Arc::new(MemoryDcs::new("c1")), "notifier.mail"),
        base_dir: ".".into(),
    };
    EmailNotifier::from_config(&section, &ctx).map(Arc::new)
}

/// The local SMTP server's settings; with `security: none` the credentials cross in clear, which
/// must be allowed explicitly.
fn config(port: u16, security: &str, password: &str, extra: &str) -> String {
    let plain = if security == "none" { "  allow-plaintext-auth: true\n" } else { "" };
    format!(
        "from: dhaf <dhaf@example.com>\nto: oncall@example.com, backup@example.com\nsmtp:\n  server: 127.0.0.1\n  port: {port}\n  \
         security: {security}\n  username: {USER}\n  password: {password}\n  timeout: 10\n{plain}{extra}"
    )
}

fn at() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_593_072)
}

fn down() -> Notification {
    Notification {
        cluster: "c1".into(),
        node: "n1".into(),
        event: Event::EntryPointWentDown {
            service: "main".into(),
            entry_point: "ep-1".into(),
            reasons: vec!["n1: connection refused".into(), "n2: HTTP 503, expected 2XX".into()],
        },
        entry_points: vec![dhaf_core::model::EntryPoint { name: "ep-1".into(), ip: "203.0.113.7".parse().unwrap() }],
        at: at(),
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v:#}")).to_string()
}

#[tokio::test]
async fn t10_plain_with_auth_delivers_an_actionable_message() {
    let server = SmtpServer::start();
    let n = notifier(&config(server.plain, "none", PASSWORD, ""));
    n.notify(&down()).await.unwrap();

    let inbox = server.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    let m = &inbox[0];
    assert_eq!(text(m, "mode"), "plain");
    assert_eq!(m["tls"], false);
    assert_eq!(m["authenticated"], true);
    assert_eq!(text(m, "login"), USER);
    assert_eq!(text(m, "mail_from"), "dhaf@example.com");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["oncall@example.com", "backup@example.com"]));
    assert_eq!(text(m, "subject"), "[dhaf c1] main: entry point ep-1 is down");
    assert!(text(m, "header_from").contains("dhaf@example.com"));
    assert!(text(m, "header_to").contains("oncall@example.com") && text(m, "header_to").contains("backup@example.com"));
    assert!(text(m, "date").contains("25 Nov 2026 07:51:12"), "{}", text(m, "date"));
    assert_eq!(text(m, "content_type"), "text/plain");
    let body = text(m, "body");
    for expected in [
        "PROBLEM",
        "What happened: The majority of dhaf nodes now holds entry point ep-1 unhealthy.",
        "What dhaf did: Took it out of rotation",
        "What to check:",
        "Cluster:",
        " c1\n",
        "Reported by node:",
        " n1\n",
        "Service:",
        " main\n",
        "Entry point:",
        " ep-1 (203.0.113.7)\n",
        "When (UTC):",
        "2026-11-25T07:51:12Z",
        "Reasons:",
        "  - n1: connection refused\n",
        "  - n2: HTTP 503, expected 2XX\n",
    ] {
        assert!(body.contains(expected), "body lacks {expected:?}:\n{body}");
    }
}

#[tokio::test]
async fn t20_a_wrong_password_is_refused_and_never_shown() {
    let server = SmtpServer::start();
    let wrong = "wr0ng-Pa55word";
    let n = notifier(&config(server.plain, "none", wrong, ""));
    let err = n.notify(&down()).await.unwrap_err();
    let shown = format!("{err} {err:?} {n:?}");
    assert!(matches!(err, ProviderError::Permanent(_)), "a refused login is not worth retrying: {err:?}");
    assert!(shown.contains("535"), "the error should carry the server's refusal: {shown}");
    assert!(!shown.contains(wrong) && !shown.contains(PASSWORD), "{shown}");
    assert!(server.inbox().is_empty());

    // The right password on the same server goes through.
    notifier(&config(server.plain, "none", PASSWORD, "")).notify(&down()).await.unwrap();
    assert_eq!(server.inbox().len(), 1);
}

#[tokio::test]
async fn t30_starttls_with_a_private_ca() {
    let server = SmtpServer::start();
    let ca = format!("  ca-file: {}\n", server.ca().display());
    notifier(&config(server.starttls, "starttls", PASSWORD, &ca)).notify(&down()).await.unwrap();
    let inbox = server.inbox();
    assert_eq!(inbox.len(), 1);
    assert_eq!(text(&inbox[0], "mode"), "starttls");
    assert_eq!(inbox[0]["tls"], true, "the message must travel encrypted");
    assert_eq!(inbox[0]["authenticated"], true);
    assert_eq!(text(&inbox[0], "subject"), "[dhaf c1] main: entry point ep-1 is down");
}

#[tokio::test]
async fn t31_tls_refuses_an_unknown_certificate() {
    let server = SmtpServer::start();
    for (port, security) in [(server.starttls, "starttls"), (server.ssl, "ssl")] {
        let err = notifier(&config(port, security, PASSWORD, "")).notify(&down()).await.unwrap_err();
        assert!(!err.to_string().contains(PASSWORD), "{err}");
    }
    assert!(server.inbox().is_empty(), "nothing may be sent to a server whose certificate is not trusted");
}

#[tokio::test]
async fn t32_plain_text_is_not_accepted_where_tls_is_required() {
    // The STARTTLS port refuses AUTH and MAIL before STARTTLS; `security: none` must not get through.
    let server = SmtpServer::start();
    let err = notifier(&config(server.starttls, "none", PASSWORD, "")).notify(&down()).await.unwrap_err();
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert!(server.inbox().is_empty());
}

#[tokio::test]
async fn t40_ssl_with_a_private_ca_or_accept_invalid_certs() {
    let server = SmtpServer::start();
    let ca = format!("  ca-file: {}\n", server.ca().display());
    notifier(&config(server.ssl, "ssl", PASSWORD, &ca)).notify(&down()).await.unwrap();
    notifier(&config(server.ssl, "ssl", PASSWORD, "  accept-invalid-certs: true\n")).notify(&down()).await.unwrap();
    let inbox = server.inbox();
    assert_eq!(inbox.len(), 2);
    for m in &inbox {
        assert_eq!(text(m, "mode"), "ssl");
        assert_eq!(m["tls"], true);
        assert_eq!(m["authenticated"], true);
    }
}

#[tokio::test]
async fn t50_every_event_kind_arrives_with_its_own_subject() {
    let server = SmtpServer::start();
    let n = notifier(&config(server.plain, "none", PASSWORD, ""));
    let events = common::every_event();
    for event in &events {
        n.notify(&Notification { cluster: "c1".into(), node: "n1".into(), event: event.clone(), entry_points: Vec::new(), at: at() })
            .await
            .unwrap();
    }
    let inbox = server.inbox();
    let mut subjects: Vec<String> = inbox.iter().map(|m| text(m, "subject")).collect();
    let mut expected: Vec<String> = events.iter().map(|e| format!("[dhaf c1] {}", e.summary())).collect();
    subjects.sort();
    expected.sort();
    assert_eq!(subjects, expected);
    for m in &inbox {
        let body = text(m, "body");
        assert!(body.contains("What happened: ") && body.contains("What dhaf did: ") && body.contains("2026-11-25T07:51:12Z"), "{body}");
    }
    let failed = inbox.iter().find(|m| text(m, "subject").contains("switch to ep-2 failed")).unwrap();
    assert!(text(failed, "body").contains("cloudflare: HTTP 503"));
    let leader = inbox.iter().find(|m| text(m, "subject").contains("new leader")).unwrap();
    assert!(text(leader, "body").contains("n3 (term-42)"));
}

#[tokio::test]
async fn t60_an_unreachable_server_is_worth_retrying() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = notifier(&config(port, "none", PASSWORD, "")).notify(&down()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn t61_a_server_that_stops_answering_does_not_hold_the_notifier() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let yaml = config(port, "none", PASSWORD, "").replace("timeout: 10", "timeout: 1");
    let started = std::time::Instant::now();
    let err = notifier(&yaml).notify(&down()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("no answer within 1 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    held.abort();
}

#[test]
fn t72_credentials_in_clear_are_refused_unless_allowed() {
    let base = "from: a@b.c\nto: d@e.f\nsmtp:\n  server: smtp.example.com\n  username: u\n  password: hunter2-secret\n";
    // `security` defaults to none: the password would cross the network in clear.
    for yaml in [base.to_string(), format!("{base}  security: none\n"), format!("{base}  security: none\n  allow-plaintext-auth: false\n")]
    {
        let err = try_notifier(&yaml).unwrap_err().to_string();
        assert!(
            err.contains("notifiers[0].smtp.security: none would send smtp.username and smtp.password in clear")
                && err.contains("allow-plaintext-auth: true"),
            "{err}"
        );
        assert!(!err.contains("hunter2-secret"), "{err}");
    }
    // Allowed explicitly (a relay on the same host or a trusted network), or no credentials at all.
    try_notifier(&format!("{base}  allow-plaintext-auth: true\n")).unwrap();
    try_notifier("from: a@b.c\nto: d@e.f\nsmtp:\n  server: smtp.example.com\n").unwrap();
    // With TLS the setting has nothing to allow.
    let err = try_notifier(&format!("{base}  security: starttls\n  allow-plaintext-auth: true\n")).unwrap_err().to_string();
    assert!(err.contains("notifiers[0].smtp.allow-plaintext-auth: only applies with smtp.security none"), "{err}");
}

#[test]
fn t70_bad_settings_are_reported_with_their_key_paths() {
    let err = try_notifier(
        "from: not an address\nsmtp:\n  port: 70000\n  security: tls\n  password: hunter2-secret\n  ca-file: /nonexistent/ca.pem\n  colour: blue\n",
    )
    .unwrap_err();
    let text = err.to_string();
    for expected in [
        "notifiers[0].from: 'not an address' is not an email address",
        "notifiers[0].to: is required",
        "notifiers[0].smtp.server: is required",
        "notifiers[0].smtp.port: must be a whole number from 1 to 65535",
        "notifiers[0].smtp.security: 'tls' is not one of: ssl, starttls, none",
        "notifiers[0].smtp.username: smtp.username and smtp.password go together",
        "notifiers[0].smtp.ca-file: cannot read /nonexistent/ca.pem",
        "notifiers[0].smtp.colour: unknown key",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("hunter2-secret"), "{text}");

    let err = try_notifier("from: a@b.c\nto: d@e.f\nsmtp:\n  server: h\n  accept-invalid-certs: true\n").unwrap_err();
    assert!(err.to_string().contains("notifiers[0].smtp.accept-invalid-certs: only applies with smtp.security ssl or starttls"), "{err}");
}

#[test]
fn t71_ports_default_by_security_and_debug_hides_the_password() {
    for (security, port) in [("ssl", 465), ("starttls", 587), ("none", 25)] {
        let n = notifier(&format!(
            "from: a@b.c\nto: d@e.f\nsmtp:\n  server: h\n  security: {security}\n  username: u\n  password: hunter2-secret\n{}",
            if security == "none" { "  allow-plaintext-auth: true\n" } else { "" }
        ));
        let shown = format!("{n:?}");
        assert!(shown.contains(&format!("port: {port}")), "{shown}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }
}
