//! The `web` health checker: an HTTP(S) request to each entry point, judged by status and body.
//!
//! Settings (the original's, with its defaults, plus `ca-file`):
//!
//! | key | | default |
//! |---|---|---|
//! | `schema` | `http` or `https` | `http` |
//! | `method` | `GET` or `POST` | `GET` |
//! | `port` | 1–65535 | `80` (http), `443` (https) |
//! | `path` | starts with `/`, may carry a query | `/` |
//! | `headers` | mapping of header names to values | — |
//! | `follow-redirects` | follow up to 10 redirects; otherwise a redirect is judged as its own status | `false` |
//! | `timeout` | how long one attempt may take, connecting to the last byte read, 50ms–24h (`500ms`, `5s`; a bare number is seconds) | `5` |
//! | `retries` | attempts repeated at once after a timeout (not after other failures), 0–10 | `2` |
//! | `expected-codes` | `200`, `2XX`, `200,301,4XX` (`X` is any digit) | `200` |
//! | `expected-response-body` | case-insensitive substring the body must contain | — |
//! | `domain-forwarding` | speak to the service's domain (Host and TLS SNI) | `true` |
//! | `ignore-ssl-errors` | accept any certificate | `false` |
//! | `ca-file` | PEM file of extra CAs to trust (an internal CA) | — |
//! | `keep-alive` | check over one kept connection per entry point until it is this old, 0s–1h | `0` (off) |
//!
//! The checker connects to the entry point's IP but speaks to the service's domain, as a browser
//! would after DNS pointed it there: the URL is `schema://domain:port/path` with the domain
//! resolved to the entry point, so the `Host` header and the TLS server name are the domain and the
//! certificate is checked against it. A `Host` header in `headers` takes the domain's place. With
//! `domain-forwarding: false` (and no `Host` header) the request goes to the bare IP.
//!
//! By default every check opens a fresh connection to its entry point (nothing is pooled or kept
//! alive), so a check sees what a new visitor sees: a listener that is gone fails the very next
//! check. Once the answer is in, the connection is closed with a reset (as HAProxy closes its
//! checks'), so no socket is left in TIME_WAIT on either end.
//!
//! With `keep-alive`, an entry point's checks go over one kept connection (between checks only
//! its socket and TLS session are kept, no HTTP state) until it is `keep-alive` old. A kept
//! connection that fails before its answer is whole (closed by the server while idle, or the
//! server died) is replaced at once within the same attempt, and the new connection's fate is
//! the check's; a process that serves the kept connection while nobody new gets in shows once
//! the connection is `keep-alive` old.
//!
//! A check is one HTTP/1.1 exchange on `hyper`'s connection API over a TCP stream connected to
//! the entry point's address (TLS by `tokio-rustls` for `https`), driven within the check's own
//! task: no connection pool, resolver or background task per request. What is costly to build is
//! shared: the TLS setup (its root store, most of its memory) is one per distinct
//! `ignore-ssl-errors` and `ca-file` across every entry point and service of the node, and each
//! entry point's URL and `Host` are made once.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, Fields, ProviderConfig};
use dhaf_core::model::{EntryPoint, Health};
use dhaf_core::provider::{BuildContext, HealthChecker};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{bounded, io_reason, local_trouble, lowercase_first, secs, DEFAULT_TIMEOUT, SLACK, TIMEOUT_RANGE};

/// Redirects followed at most with `follow-redirects: true`.
const MAX_REDIRECTS: usize = 10;

/// Most of a body searched for `expected-response-body`: a health page is small, a runaway
/// download must not fill memory.
const MAX_BODY: usize = 1024 * 1024;

/// The default of `retries`.
const DEFAULT_RETRIES: u64 = 2;

/// The most `retries` accepted.
const MAX_RETRIES: u64 = 10;

/// The longest `keep-alive` accepted.
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(3600);

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Schema {
    fn as_str(self) -> &'static str {
        match self {
            Schema::Http => "http",
            Schema::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Schema::Http => 80,
            Schema::Https => 443,
        }
    }
}

/// The `expected-codes` of a web check: codes and masks such as `200,301,4XX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedCodes {
    /// Per entry, its three digits; `None` is the wildcard `X`.
    masks: Vec<[Option<u8>; 3]>,
}

impl ExpectedCodes {
    /// Parse `200`, `2XX` or a comma-separated list of such (`X` or `x` is any digit).
    ///
    /// Every entry must name valid HTTP codes: three characters, the first a digit 1–5.
    ///
    /// ```
    /// use dhaf_providers::check::web::ExpectedCodes;
    /// let codes = ExpectedCodes::parse("200, 301,4XX").unwrap();
    /// assert!(codes.matches(404) && codes.matches(301) && !codes.matches(302));
    /// assert_eq!(codes.to_string(), "200,301,4XX");
    /// assert!(ExpectedCodes::parse("2X").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<ExpectedCodes, String> {
        let mut masks = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("'{text}' has an empty entry; write codes like 200,301,4XX"));
            }
            let chars: Vec<char> = item.chars().collect();
            let bad = || format!("'{item}' is not a code or mask like 200 or 2XX (X is any digit, codes are 100-599)");
            if chars.len() != 3 {
                return Err(bad());
            }
            let mut mask = [None; 3];
            for (i, c) in chars.iter().enumerate() {
                mask[i] = match c {
                    '0'..='9' => Some(*c as u8 - b'0'),
                    'X' | 'x' if i > 0 => None,
                    _ => return Err(bad()),
                };
            }
            if !matches!(mask[0], Some(1..=5)) {
                return Err(bad());
            }
            masks.push(mask);
        }
        Ok(ExpectedCodes { masks })
    }

    /// Whether `code` is expected.
    pub fn matches(&self, code: u16) -> bool {
        let digits = [(code / 100 % 10) as u8, (code / 10 % 10) as u8, (code % 10) as u8];
        code < 1000 && self.masks.iter().any(|m| m.iter().zip(digits).all(|(want, got)| want.is_none() || *want == Some(got)))
    }
}

impl fmt::Display for ExpectedCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.masks.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for d in m {
                match d {
                    Some(d) => write!(f, "{d}")?,
                    None => f.write_str("X")?,
                }
            }
        }
        Ok(())
    }
}

/// The parsed settings of a `web` section.
#[derive(Clone)]
struct Settings {
    schema: Schema,
    method: Method,
    port: u16,
    path: String,
    headers: HeaderMap,
    follow_redirects: bool,
    timeout: Duration,
    retries: u32,
    expected_codes: ExpectedCodes,
    /// As written, for the reason, and lowercased, for the search.
    expected_body: Option<(String, String)>,
    domain_forwarding: bool,
    ignore_ssl_errors: bool,
    /// How long a connection may serve checks of its entry point; zero: one per check.
    keep_alive: Duration,
    extra_roots: Vec<CertificateDer<'static>>,
    /// The `ca-file`'s contents, as read (what tells two TLS setups' roots apart).
    ca_pem: Option<Vec<u8>>,
    /// The service's domain.
    domain: String,
}

/// One entry point's way in: the URL to ask and the address its name stands for.
struct Target {
    url: Url,
    /// The name the server is addressed by (certificates are judged against it).
    server_name: String,
    /// The URL's host name and the entry point's address it stands for (none for a bare IP).
    resolve: Option<(String, SocketAddr)>,
    /// With `keep-alive`: the connection the next check goes over, idle meanwhile.
    kept: Mutex<Option<Kept>>,
}

/// What sets two TLS setups apart; checkers with equal keys share one.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TlsKey {
    ignore_ssl_errors: bool,
    ca_pem: Option<Vec<u8>>,
}

/// The node's TLS setups, by key; one lives while a checker holds it.
fn tls_setups() -> &'static Mutex<HashMap<TlsKey, Weak<rustls::ClientConfig>>> {
    static SETUPS: OnceLock<Mutex<HashMap<TlsKey, Weak<rustls::ClientConfig>>>> = OnceLock::new();
    SETUPS.get_or_init(Default::default)
}

/// The shared TLS setup for these settings, built on first use: the web PKI's roots (the ones
/// browsers trust) and the `ca-file`'s, or any certificate with `ignore-ssl-errors`.
fn shared_tls(s: &Settings) -> Result<Arc<rustls::ClientConfig>, String> {
    let key = TlsKey { ignore_ssl_errors: s.ignore_ssl_errors, ca_pem: s.ca_pem.clone() };
    let mut setups = tls_setups().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = setups.get(&key).and_then(Weak::upgrade) {
        return Ok(c);
    }
    setups.retain(|_, c| c.strong_count() > 0);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let mut config = if s.ignore_ssl_errors {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for root in &s.extra_roots {
            roots.add(root.clone()).map_err(|e| format!("ca-file: cannot trust a certificate of it: {e}"))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    setups.insert(key, Arc::downgrade(&config));
    Ok(config)
}

/// `ignore-ssl-errors: true`: any certificate for any name is accepted (the handshake's
/// signatures are still checked, so the TLS session itself is sound).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks entry points with an HTTP(S) request.
pub struct WebChecker {
    settings: Settings,
    /// Shared with every checker of equal `ignore-ssl-errors` and `ca-file`.
    tls: tokio_rustls::TlsConnector,
    /// Built once per entry point; the service's are built with the checker.
    targets: Mutex<HashMap<(String, IpAddr), Arc<Target>>>,
}

impl WebChecker {
    /// Build a [`WebChecker`] from a `health-checker` section of type `web`.
    pub fn from_config(section: &ProviderConfig, ctx: &BuildContext) -> Result<WebChecker, ConfigError> {
        let f = section.fields();
        let settings = parse(&f, &ctx.service().domain);
        f.finish();
        let Some(settings) = settings else {
            return Err(ConfigError { problems: f.take_problems() });
        };
        let tls = match shared_tls(&settings) {
            Ok(c) => tokio_rustls::TlsConnector::from(c),
            Err(e) => {
                f.problem(f.path(), e);
                return Err(ConfigError { problems: f.take_problems() });
            }
        };
        let mut targets = HashMap::new();
        for ep in &ctx.service().entry_points {
            match Target::new(&settings, ep.ip) {
                Ok(t) => {
                    targets.insert((ep.name.clone(), ep.ip), Arc::new(t));
                }
                Err(e) => f.problem(f.path(), format!("entry point {}: {e}", ep.name)),
            }
        }
        let checker = WebChecker { settings, tls, targets: Mutex::new(targets) };
        f.into_result(checker)
    }
}

fn parse(f: &Fields, domain: &str) -> Option<Settings> {
    let schema = match f.string("schema").map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("http") => Some(Schema::Http),
        Some("https") => Some(Schema::Https),
        Some(other) => {
            f.problem(f.key("schema"), format!("'{other}' is not one of: http, https"));
            None
        }
    };
    let method = match f.string("method").map(|s| s.to_ascii_uppercase()).as_deref() {
        None | Some("GET") => Some(Method::GET),
        Some("POST") => Some(Method::POST),
        Some(other) => {
            f.problem(f.key("method"), format!("'{other}' is not one of: GET, POST"));
            None
        }
    };
    let port = f.int("port", schema.unwrap_or(Schema::Http).default_port().into(), 1, 65535) as u16;
    let path = f.string("path").unwrap_or_else(|| "/".into());
    let path_ok = path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control()) && !path.contains('#');
    if !path_ok {
        f.problem(f.key("path"), format!("'{path}' must start with / and hold no spaces or #"));
    }
    let headers = headers(f);
    let follow_redirects = f.boolean("follow-redirects", false);
    let timeout = f.duration("timeout", DEFAULT_TIMEOUT, TIMEOUT_RANGE.0, TIMEOUT_RANGE.1);
    let retries = f.int("retries", DEFAULT_RETRIES, 0, MAX_RETRIES) as u32;
    let expected_codes = match expected_codes_text(f) {
        None => Some(ExpectedCodes::parse("200").expect("a valid default")),
        Some(text) => match ExpectedCodes::parse(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                f.problem(f.key("expected-codes"), e);
                None
            }
        },
    };
    let expected_body = f.string("expected-response-body").filter(|s| !s.is_empty()).map(|s| {
        let lower = s.to_lowercase();
        (s, lower)
    });
    let domain_forwarding = f.boolean("domain-forwarding", true);
    let ignore_ssl_errors = f.boolean("ignore-ssl-errors", false);
    let keep_alive = f.duration("keep-alive", Duration::ZERO, Duration::ZERO, MAX_KEEP_ALIVE);
    let (extra_roots, ca_pem) = match f.string("ca-file") {
        Some(p) => ca_file(f, &p),
        None => (Vec::new(), None),
    };
    Some(Settings {
        schema: schema?,
        method: method?,
        port,
        path,
        headers: headers?,
        follow_redirects,
        timeout,
        retries,
        expected_codes: expected_codes?,
        expected_body,
        domain_forwarding,
        ignore_ssl_errors,
        keep_alive,
        extra_roots,
        ca_pem,
        domain: domain.to_ascii_lowercase(),
    })
}

/// `expected-codes` as text; a YAML number (`200`) or list (`[200, 4XX]`) is taken as written.
fn expected_codes_text(f: &Fields) -> Option<String> {
    use dhaf_core::config::SettingValue as Value;
    let item = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match f.value("expected-codes")? {
        Value::List(items) => match items.iter().map(item).collect::<Option<Vec<_>>>() {
            Some(items) => Some(items.join(",")),
            None => {
                f.problem(f.key("expected-codes"), "must be codes like 200,301,4XX");
                None
            }
        },
        v => match item(&v) {
            Some(s) => Some(s),
            None => {
                f.problem(f.key("expected-codes"), "must be codes like 200,301,4XX");
                None
            }
        },
    }
}

fn headers(f: &Fields) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    let mut ok = true;
    for (name, value) in f.string_map("headers") {
        let path = format!("{}.{name}", f.key("headers"));
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            (Ok(n), Ok(v)) => {
                map.append(n, v);
            }
            (Err(_), _) => {
                f.problem(path, "is not a valid HTTP header name");
                ok = false;
            }
            (_, Err(_)) => {
                f.problem(path, "is not a valid HTTP header value (printable ASCII only)");
                ok = false;
            }
        }
    }
    ok.then_some(map)
}

fn ca_file(f: &Fields, path: &str) -> (Vec<CertificateDer<'static>>, Option<Vec<u8>>) {
    let problem = match std::fs::read(path) {
        Err(e) => format!("cannot read {path}: {}", io_reason(&e)),
        Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => return (certs, Some(pem)),
            _ => format!("{path} holds no PEM certificate"),
        },
    };
    f.problem(f.key("ca-file"), problem);
    (Vec::new(), None)
}

/// The host name part of a `Host` header value (`name`, `name:port`, `[v6]:port`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

impl Target {
    fn new(s: &Settings, ip: IpAddr) -> Result<Target, String> {
        let addr = SocketAddr::new(ip, s.port);
        let host_header = s.headers.get(HOST).and_then(|v| v.to_str().ok());
        // The name to speak to: a `Host` header wins, then the service's domain.
        let name = match host_header {
            Some(h) => Some(host_name(h).to_ascii_lowercase()).filter(|n| n.parse::<IpAddr>().is_err()),
            None if s.domain_forwarding => Some(s.domain.clone()),
            None => None,
        };
        let (url, server_name, resolve) = match &name {
            Some(name) => (format!("{}://{name}:{}{}", s.schema.as_str(), s.port, s.path), name.clone(), Some((name.clone(), addr))),
            None => (format!("{}://{addr}{}", s.schema.as_str(), s.path), ip.to_string(), None),
        };
        let url = Url::parse(&url).map_err(|e| format!("cannot make a URL of {url}: {e}"))?;
        Ok(Target { url, server_name, resolve, kept: Mutex::new(None) })
    }
}

/// How one attempt ended.
enum Attempt {
    Done(Health),
    TimedOut,
}

/// Why an exchange failed, before it is put in words.
enum Failure {
    /// Connecting (or looking up a redirect's host).
    Connect(std::io::Error),
    /// The TLS handshake.
    Tls(std::io::Error),
    /// The HTTP exchange.
    Http(hyper::Error),
    /// Already in words (a redirect that cannot be followed).
    Said(String),
}

/// An HTTP/1.1 connection over `I` sending bodiless requests.
type Connection<I> = http1::Connection<TokioIo<I>, Empty<&'static [u8]>>;

/// The HTTP/1.1 connection of one exchange, driven by whoever awaits its request: no task of
/// its own. Dropping it closes the connection.
struct Exchange<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    conn: Pin<Box<Connection<I>>>,
    /// The connection future has finished (it must not be polled again).
    ended: bool,
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> Exchange<I> {
    /// `fut`'s result, driving the connection meanwhile.
    async fn drive<T>(&mut self, fut: impl Future<Output = Result<T, hyper::Error>>) -> Result<T, hyper::Error> {
        let mut fut = pin!(fut);
        loop {
            tokio::select! {
                biased;
                r = &mut fut => return r,
                c = self.conn.as_mut(), if !self.ended => {
                    self.ended = true;
                    // A connection that failed fails the request with the cause; one that ended
                    // in order lets the request's own result through.
                    c?;
                }
            }
        }
    }
}

/// A check's TCP stream, which is never half-closed: once the check has its answer the socket
/// is closed with a reset (zero linger), so a node checking thousands of entry points a second
/// leaves no connections in TIME_WAIT, on its side or the server's, and spends nothing on an
/// orderly close nobody waits for.
struct Abrupt(TcpStream);

impl AsyncRead for Abrupt {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Abrupt {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What one exchange answered: the status, where a redirect points, the body when asked for.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

/// One request on a connection of its own.
async fn exchange<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: I,
    req: hyper::Request<Empty<&'static [u8]>>,
    want_body: bool,
) -> Result<Answer, hyper::Error> {
    let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await?;
    let mut ex = Exchange { conn: Box::pin(conn), ended: false };
    let resp = ex.drive(sender.send_request(req)).await?;
    let status = resp.status();
    let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut body = Vec::new();
    if want_body {
        let mut incoming = resp.into_body();
        while let Some(frame) = ex.drive(async { incoming.frame().await.transpose() }).await? {
            if let Ok(data) = frame.into_data() {
                body.extend_from_slice(&data);
                if body.len() >= MAX_BODY {
                    body.truncate(MAX_BODY);
                    break;
                }
            }
        }
    }
    Ok(Answer { status, location, body })
}

/// A check's byte stream, plain or TLS, as a kept connection holds it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection kept for an entry point's next checks (`keep-alive`): only the socket (and its
/// TLS session) between checks, no HTTP state or buffers; closed with a reset when dropped.
struct Kept {
    io: Box<dyn Io>,
    opened: tokio::time::Instant,
}

/// One request over `kept` and its whole answer (the body is read to its end even when it does
/// not matter, so that the connection is at a clean start for the next request); the connection
/// back when it can carry another request.
async fn ask_keeping(kept: Kept, req: hyper::Request<Empty<&'static [u8]>>) -> Result<(Answer, Option<Kept>), hyper::Error> {
    let (mut sender, conn) = http1::handshake(TokioIo::new(kept.io)).await?;
    let mut ex = Exchange { conn: Box::pin(conn), ended: false };
    let resp = ex.drive(sender.send_request(req)).await?;
    let status = resp.status();
    let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    // A server that says it closes the connection (or speaks HTTP/1.0) is not asked again on it.
    let closing = resp.version() != hyper::Version::HTTP_11
        || resp.headers().get_all(CONNECTION).iter().any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("close")));
    let mut body = Vec::new();
    let mut incoming = resp.into_body();
    let mut whole = true;
    while let Some(frame) = ex.drive(async { incoming.frame().await.transpose() }).await? {
        if let Ok(data) = frame.into_data() {
            body.extend_from_slice(&data);
            if body.len() >= MAX_BODY {
                body.truncate(MAX_BODY);
                whole = false;
                break;
            }
        }
    }
    let again = (whole && !closing && !ex.ended)
        .then(|| Pin::into_inner(ex.conn).into_parts())
        .filter(|parts| parts.read_buf.is_empty())
        .map(|parts| Kept { io: parts.io.into_inner(), opened: kept.opened });
    Ok((Answer { status, location, body }, again))
}

/// The `Host` of a URL: the name, and the port when it is not the schema's own.
fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

impl WebChecker {
    fn target(&self, ep: &EntryPoint) -> Result<Arc<Target>, String> {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = targets.get(&(ep.name.clone(), ep.ip)) {
            return Ok(t.clone());
        }
        let t = Arc::new(Target::new(&self.settings, ep.ip)?);
        targets.insert((ep.name.clone(), ep.ip), t.clone());
        Ok(t)
    }

    /// Where `url` is reached: the checked name is the entry point's address; an IP is itself;
    /// any other name (a redirect elsewhere) is looked up as usual.
    async fn connect(&self, t: &Target, url: &Url) -> Result<Abrupt, std::io::Error> {
        let port = url.port_or_known_default().unwrap_or(self.settings.port);
        let host = url.host_str().unwrap_or_default();
        let addrs: Vec<SocketAddr> = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match &t.resolve {
                Some((own, addr)) if own.eq_ignore_ascii_case(host) => vec![SocketAddr::new(addr.ip(), port)],
                _ => tokio::net::lookup_host((host, port)).await?.collect(),
            },
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    // Closed with a reset once the answer is in: no TIME_WAIT on either end.
                    let _ = stream.set_zero_linger();
                    return Ok(Abrupt(stream));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The request for `url`, with the headers set and the ones a client adds.
    fn build_request(&self, t: &Target, url: &Url, method: &Method, first: bool) -> Result<hyper::Request<Empty<&'static [u8]>>, Failure> {
        let s = &self.settings;
        let mut req = hyper::Request::new(Empty::new());
        *req.method_mut() = method.clone();
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        *req.uri_mut() = path.parse().map_err(|_| Failure::Said(format!("cannot ask for {}", bounded(url.as_str(), 100))))?;
        let headers = req.headers_mut();
        // A `Host` in `headers` speaks for the checked name; a redirect elsewhere names its own.
        let same_host = first || t.resolve.as_ref().is_some_and(|(own, _)| url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(own)));
        for (name, value) in &s.headers {
            if *name != HOST || same_host {
                headers.append(name, value.clone());
            }
        }
        if !headers.contains_key(HOST) {
            headers.insert(
                HOST,
                HeaderValue::from_str(&host_of(url)).map_err(|_| Failure::Said(format!("cannot ask {}", bounded(url.as_str(), 100))))?,
            );
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(concat!("dhaf/", env!("CARGO_PKG_VERSION"), " (health check)")));
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        Ok(req)
    }

    /// The TLS server name for `url`: the checked name, or a redirect's own host.
    fn tls_name(t: &Target, url: &Url, first: bool) -> Result<ServerName<'static>, Failure> {
        let name = if first { t.server_name.clone() } else { url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string() };
        ServerName::try_from(name).map_err(|e| Failure::Said(format!("no TLS server name: {e}")))
    }

    /// One request to `url`: on a new connection, or with `keep-alive` on the entry point's
    /// kept one (a redirect elsewhere always gets a new one).
    async fn request(&self, t: &Target, url: &Url, method: &Method, first: bool) -> Result<Answer, Failure> {
        if first && !self.settings.keep_alive.is_zero() {
            return self.request_kept(t, url, method).await;
        }
        let req = self.build_request(t, url, method, first)?;
        let want_body = self.settings.expected_body.is_some();
        let stream = self.connect(t, url).await.map_err(Failure::Connect)?;
        if url.scheme() == "https" {
            let tls = self.tls.connect(Self::tls_name(t, url, first)?, stream).await.map_err(Failure::Tls)?;
            exchange(tls, req, want_body).await.map_err(Failure::Http)
        } else {
            exchange(stream, req, want_body).await.map_err(Failure::Http)
        }
    }

    /// One request to the entry point over its kept connection while that is younger than
    /// `keep-alive`, else over a new one, kept afterwards. A kept connection that fails before
    /// its answer is whole (the server closed it while it was idle, or died) proves nothing
    /// either way: the request goes again at once over a new connection, whose fate is the
    /// check's, so a server that is gone fails the check as without `keep-alive`.
    async fn request_kept(&self, t: &Target, url: &Url, method: &Method) -> Result<Answer, Failure> {
        let keep = |kept: Option<Kept>| {
            if let Some(k) = kept {
                *t.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(k);
            }
        };
        let taken = t.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(kept) = taken.filter(|k| k.opened.elapsed() < self.settings.keep_alive) {
            if let Ok((answer, again)) = ask_keeping(kept, self.build_request(t, url, method, true)?).await {
                keep(again);
                return Ok(answer);
            }
        }
        let req = self.build_request(t, url, method, true)?;
        let stream = self.connect(t, url).await.map_err(Failure::Connect)?;
        let io: Box<dyn Io> = if url.scheme() == "https" {
            Box::new(self.tls.connect(Self::tls_name(t, url, true)?, stream).await.map_err(Failure::Tls)?)
        } else {
            Box::new(stream)
        };
        let (answer, again) = ask_keeping(Kept { io, opened: tokio::time::Instant::now() }, req).await.map_err(Failure::Http)?;
        keep(again);
        Ok(answer)
    }

    /// One attempt: the request, and the redirects it leads to when they are followed.
    async fn exchange_following(&self, t: &Target) -> Result<Answer, Failure> {
        let s = &self.settings;
        let mut url = t.url.clone();
        let mut method = s.method.clone();
        let mut first = true;
        let mut redirects = 0;
        loop {
            let answer = self.request(t, &url, &method, first).await?;
            let code = answer.status.as_u16();
            let follow = s.follow_redirects && matches!(code, 301 | 302 | 303 | 307 | 308);
            let location = match answer.location.clone() {
                Some(location) if follow => location,
                _ => return Ok(answer),
            };
            if redirects == MAX_REDIRECTS {
                return Err(Failure::Said(format!("more than {MAX_REDIRECTS} redirects")));
            }
            redirects += 1;
            url = url.join(&location).map_err(|_| Failure::Said(format!("redirect to an invalid location {}", bounded(&location, 100))))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Failure::Said(format!("redirect to {}, not http or https", bounded(url.as_str(), 100))));
            }
            // As browsers do: a POST redirected by 301, 302 or 303 becomes a GET.
            if matches!(code, 301..=303) && method == Method::POST {
                method = Method::GET;
            }
            first = false;
        }
    }

    async fn attempt(&self, t: &Target) -> Attempt {
        let s = &self.settings;
        // The timeout runs from connecting to the last byte read, redirects included.
        let answer = match tokio::time::timeout(s.timeout, self.exchange_following(t)).await {
            Err(_) => return Attempt::TimedOut,
            Ok(Err(failure)) => return failed(failure, t),
            Ok(Ok(a)) => a,
        };
        let code = answer.status.as_u16();
        if !s.expected_codes.matches(code) {
            let mut reason = format!("HTTP {code}, expected {}", s.expected_codes);
            if answer.status.is_redirection() {
                if let Some(to) = &answer.location {
                    reason.push_str(&format!(" (redirect to {}", bounded(to, 100)));
                    reason.push_str(if s.follow_redirects { ")" } else { "; follow-redirects is off)" });
                }
            }
            return Attempt::Done(Health::unhealthy(reason));
        }
        let Some((shown, needle)) = &s.expected_body else {
            return Attempt::Done(Health::Healthy);
        };
        if String::from_utf8_lossy(&answer.body).to_lowercase().contains(needle.as_str()) {
            Attempt::Done(Health::Healthy)
        } else {
            Attempt::Done(Health::unhealthy(format!("body lacks '{}'", bounded(shown, 100))))
        }
    }
}

#[async_trait]
impl HealthChecker for WebChecker {
    async fn check(&self, entry_point: &EntryPoint) -> Health {
        let target = match self.target(entry_point) {
            Ok(t) => t,
            Err(e) => return Health::unhealthy(e),
        };
        let attempts = self.settings.retries + 1;
        for _ in 0..attempts {
            if let Attempt::Done(health) = self.attempt(&target).await {
                return health;
            }
        }
        let mut reason = format!("timed out after {}", secs(self.settings.timeout));
        if attempts > 1 {
            reason.push_str(&format!(" ({attempts} attempts)"));
        }
        Health::unhealthy(reason)
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout * (self.settings.retries + 1) + SLACK
    }
}

fn failed(failure: Failure, t: &Target) -> Attempt {
    let reason = match failure {
        // No socket to be had on this node: nothing learnt about the entry point.
        Failure::Connect(e) if local_trouble(&e) => {
            return Attempt::Done(Health::abstain(format!("cannot open a connection on this node: {}", io_reason(&e))))
        }
        Failure::Connect(e) => io_reason(&e),
        Failure::Tls(e) => tls_io_reason(&e, &t.server_name),
        Failure::Http(e) => http_reason(&e),
        Failure::Said(reason) => reason,
    };
    Attempt::Done(Health::unhealthy(reason))
}

/// The next error of a chain, looking inside I/O errors (whose `source()` skips the error they wrap).
fn next<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner);
        }
    }
    e.source()
}

fn deepest(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(n) = next(cur) {
        cur = n;
    }
    cur.to_string()
}

/// A failed TLS handshake, in words: the certificate's trouble names the certificate.
fn tls_io_reason(e: &std::io::Error, server_name: &str) -> String {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return tls_reason(tls, server_name);
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return "TLS handshake failed: the server closed the connection (does the port speak TLS?)".into();
    }
    format!("TLS handshake failed: {}", io_reason(e))
}

/// A failed HTTP exchange, in words: the socket's own error says most ("connection reset").
fn http_reason(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "connection closed without a response".into();
    }
    let innermost = deepest(e);
    if e.is_parse() {
        return format!("not an HTTP answer ({innermost})");
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return format!("TLS failed: {tls}");
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        cur = next(err);
    }
    bounded(&lowercase_first(&innermost), 200)
}

fn tls_reason(e: &rustls::Error, name: &str) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => format!("certificate not valid for {name}"),
            C::UnknownIssuer => format!("certificate for {name} not trusted (unknown issuer)"),
            C::Expired | C::ExpiredContext { .. } => format!("certificate for {name} expired"),
            C::NotValidYet | C::NotValidYetContext { .. } => format!("certificate for {name} not valid yet"),
            C::Revoked => format!("certificate for {name} revoked"),
            C::BadSignature => format!("certificate for {name} has a bad signature"),
            other => format!("certificate for {name} invalid ({other:?})"),
        },
        rustls::Error::InvalidMessage(_) => "TLS handshake failed: the port does not speak TLS".into(),
        rustls::Error::AlertReceived(alert) => format!("TLS handshake refused by the server ({alert:?})"),
        other => format!("TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_codes_accept_codes_masks_and_lists() {
        let one = ExpectedCodes::parse("200").unwrap();
        assert!(one.matches(200));
        assert!(!one.matches(201) && !one.matches(500));

        let class = ExpectedCodes::parse("2XX").unwrap();
        assert!(class.matches(200) && class.matches(204) && class.matches(299));
        assert!(!class.matches(301) && !class.matches(199));

        let list = ExpectedCodes::parse("200, 301,4xx").unwrap();
        for code in [200, 301, 400, 404, 499] {
            assert!(list.matches(code), "{code}");
        }
        for code in [201, 302, 500, 503] {
            assert!(!list.matches(code), "{code}");
        }
        assert_eq!(list.to_string(), "200,301,4XX");

        let tens = ExpectedCodes::parse("20X").unwrap();
        assert!(tens.matches(204) && !tens.matches(210));
    }

    #[test]
    fn expected_codes_reject_what_is_no_http_code() {
        for bad in ["", "2", "20", "2000", "600", "099", "XXX", "X00", "2Y0", "200,", ",200", "200;301", "abc", "2 0"] {
            assert!(ExpectedCodes::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = ExpectedCodes::parse("200,6XX").unwrap_err();
        assert!(e.contains("'6XX'"), "{e}");
    }

    fn settings(yaml: &str) -> Settings {
        let m = dhaf_core::config::Settings::from_yaml(yaml).unwrap();
        let f = Fields::new(&m, "hc");
        let s = parse(&f, "Svc.Test").unwrap();
        f.finish();
        f.into_result(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn urls_name_the_domain_and_the_default_port_follows_the_schema() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let url = |yaml: &str, ip| Target::new(&settings(yaml), ip).unwrap().url.to_string();
        assert_eq!(url("schema: http", v4), "http://svc.test/");
        assert_eq!(url("schema: https", v4), "https://svc.test/");
        assert_eq!(settings("schema: https").port, 443);
        assert_eq!(settings("schema: http").port, 80);
        assert_eq!(url("schema: HTTPS\nport: 8443\npath: /h?x=1", v6), "https://svc.test:8443/h?x=1");
        assert_eq!(url("domain-forwarding: false", v6), "http://[2001:db8::1]/");
        assert_eq!(url("domain-forwarding: false\nport: 81", v4), "http://10.0.0.1:81/");
        assert_eq!(url("headers: {Host: 'Other.Test:8080'}", v4), "http://other.test/");
        assert_eq!(url("headers: {Host: '10.9.9.9'}", v4), "http://10.0.0.1/");
    }

    #[test]
    fn checkers_of_equal_tls_settings_share_one_tls_setup() {
        let a = shared_tls(&settings("schema: https\npath: /a")).unwrap();
        for same in ["schema: http\nport: 81\nheaders: {X-A: b}", "timeout: 3", "follow-redirects: true"] {
            let b = shared_tls(&settings(same)).unwrap();
            assert!(Arc::ptr_eq(&a, &b), "{same} is per request");
        }
        let c = shared_tls(&settings("ignore-ssl-errors: true")).unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "ignore-ssl-errors needs a TLS setup of its own");
    }

    #[test]
    fn host_header_names_lose_their_port() {
        assert_eq!(host_name("foo.com"), "foo.com");
        assert_eq!(host_name("foo.com:8080"), "foo.com");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("::1"), "::1");
    }
}
