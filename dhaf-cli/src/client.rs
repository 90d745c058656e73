//! The HTTP side: one node's API, its errors sorted into the CLI's exit codes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dhaf_core::config::Config;
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::Value;

/// Why a command failed, sorted by what the caller can do about it.
#[derive(Debug)]
pub enum CliError {
    /// Usage or config problem (exit 2).
    Usage(String),
    /// The node answered and refused (exit 1).
    Refused {
        /// HTTP status.
        status: u16,
        /// The API's stable code.
        code: String,
        /// The API's message, plus a hint where one helps.
        message: String,
    },
    /// Nothing usable answered (exit 3).
    Unreachable(String),
    /// The node answered, but cannot reach the DCS: what it showed is its last known state (exit 4).
    DcsUnreachable(String),
    /// `--wait` gave up: the change was dropped, or the timeout passed first (exit 5).
    WaitFailed(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::DcsUnreachable(_) => 4,
            CliError::WaitFailed(_) => 5,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Unreachable(m) | CliError::DcsUnreachable(m) | CliError::WaitFailed(m) => {
                f.write_str(m.trim_end())
            }
            CliError::Refused { status, code, message } => write!(f, "the node refused ({code}, HTTP {status}): {message}"),
        }
    }
}

/// Stands in for a `${VAR}` that is unset in the CLI's environment.
const UNSET: &str = "dhaf-cli-unset-environment-variable";

/// How to reach a node over TLS: the CA to trust and the client certificate to present.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of the CA that signed the node's certificate (`--ca-file`, `$DHAF_CA_FILE`);
    /// without it, the usual public CAs.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for nodes with `dhaf.web-api.tls.client-ca` (`--client-cert`,
    /// `$DHAF_CLIENT_CERT`).
    pub client_cert: Option<PathBuf>,
    /// Its PEM private key (`--client-key`, `$DHAF_CLIENT_KEY`).
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// Fill what the flags left out from the environment.
    pub fn or_env(self) -> TlsOptions {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        TlsOptions {
            ca_file: self.ca_file.or_else(|| env("DHAF_CA_FILE")),
            client_cert: self.client_cert.or_else(|| env("DHAF_CLIENT_CERT")),
            client_key: self.client_key.or_else(|| env("DHAF_CLIENT_KEY")),
        }
    }

    fn apply(&self, mut builder: reqwest::blocking::ClientBuilder) -> Result<reqwest::blocking::ClientBuilder, CliError> {
        let read = |flag: &str, p: &Path| std::fs::read(p).map_err(|e| CliError::Usage(format!("{flag} {}: {e}", p.display())));
        if let Some(ca) = &self.ca_file {
            let pem = read("--ca-file", ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::Usage(format!("--ca-file {}: not PEM certificates: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(CliError::Usage(format!("--ca-file {}: holds no PEM certificate", ca.display())));
            }
            // Only the given CA: a node's private CA is what the operator means to trust.
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read("--client-cert", cert)?;
                pem.push(b'\n');
                pem.extend(read("--client-key", key)?);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| CliError::Usage(format!("--client-cert/--client-key: not a usable certificate and key: {e}")))?;
                builder = builder.identity(id);
            }
            (None, None) => {}
            _ => return Err(CliError::Usage("--client-cert and --client-key go together".into())),
        }
        Ok(builder)
    }
}

/// A cluster's API: one or more nodes, tried in turn until one answers.
pub struct Api {
    /// The nodes to ask, in order; the first that answers is asked from then on.
    bases: Vec<reqwest::Url>,
    /// Index into `bases` of the node that answered last.
    answering: std::cell::Cell<usize>,
    token: Option<String>,
    /// Where the addresses came from, for hints ("--config FILE", "--url").
    source: String,
    http: Client,
}

/// `$DHAF_API_TOKEN`, unless empty or blank: reads may need no token at all.
fn env_token() -> Option<String> {
    std::env::var("DHAF_API_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

fn http_client(https: bool, tls: &TlsOptions) -> Result<Client, CliError> {
    let mut builder = Client::builder().timeout(Duration::from_secs(15)).connect_timeout(Duration::from_secs(5));
    if https {
        builder = tls.apply(builder)?;
    }
    builder.build().map_err(|e| CliError::Usage(format!("cannot set up HTTP: {e}")))
}

/// Parse a comma-separated list of node URLs (`--url`, `$DHAF_URL`); `from` names where it came
/// from in errors. A URL without a scheme is taken as `http://`.
pub fn parse_urls(list: &str, from: &str) -> Result<Vec<reqwest::Url>, CliError> {
    let mut urls = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(CliError::Usage(format!("{from} '{list}': an empty URL in the list")));
        }
        let text = if item.contains("://") { item.to_string() } else { format!("http://{item}") };
        let url = reqwest::Url::parse(&text).map_err(|e| CliError::Usage(format!("{from} '{item}': not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!("{from} '{item}': the scheme must be http or https")));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some()
        {
            return Err(CliError::Usage(format!(
                "{from} '{item}': give only scheme, host and port (http://HOST:PORT); the token goes in $DHAF_API_TOKEN"
            )));
        }
        if url.host_str().is_none() {
            return Err(CliError::Usage(format!("{from} '{item}': no host")));
        }
        urls.push(url);
    }
    Ok(urls)
}

impl Api {
    /// Read `dhaf.web-api` from the node's config file; `tls` is used when the node serves HTTPS.
    pub fn from_config(path: &Path, tls: &TlsOptions) -> Result<Api, CliError> {
        let usage = |e: &dyn fmt::Display| CliError::Usage(format!("cannot use --config {}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| usage(&format!("cannot read {}: {e}", path.display())))?;
        // Only `dhaf.web-api` matters here: the node's provider secrets (`${CF_TOKEN}`...) are
        // usually in its own environment, not the operator's shell, and must not stop the CLI
        // during an outage. A variable that is unset here parses as a placeholder.
        let config = match Config::parse_with_env(&text, &|name| Some(std::env::var(name).unwrap_or_else(|_| UNSET.to_string()))) {
            Ok(config) => config,
            // Report what the node itself would: the placeholder is no help in a message.
            Err(_) => return Err(usage(&Config::parse(&text).err().map_or_else(|| "invalid config".to_string(), |e| e.to_string()))),
        };
        let web = &config.dhaf.web_api;
        // A node listening on every address is reached on loopback from its own host.
        let host = match web.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1".to_string(),
            "::" | "[::]" => "[::1]".to_string(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        };
        let file_token = web.token.clone().filter(|t| !t.contains(UNSET));
        let token = env_token().or(file_token);
        let scheme = if web.tls.is_some() { "https" } else { "http" };
        let base = reqwest::Url::parse(&format!("{scheme}://{host}:{}/", web.port))
            .ok()
            .filter(|u| u.path() == "/" && u.query().is_none() && u.fragment().is_none() && u.username().is_empty())
            .ok_or_else(|| usage(&format!("dhaf.web-api.host '{}' is not a host name or an IP address", web.host.escape_debug())))?;
        let http = http_client(web.tls.is_some(), tls)?;
        Ok(Api { bases: vec![base], answering: 0.into(), token, source: format!("dhaf.web-api.host/port in {}", path.display()), http })
    }

    /// Nodes named by URL (`--url`, `$DHAF_URL`), tried in turn; the token comes from
    /// `$DHAF_API_TOKEN`. `from` names the flag or variable, for hints.
    pub fn from_urls(bases: Vec<reqwest::Url>, from: &str, tls: &TlsOptions) -> Result<Api, CliError> {
        let https = bases.iter().any(|u| u.scheme() == "https");
        let http = http_client(https, tls)?;
        Ok(Api { bases, answering: 0.into(), token: env_token(), source: from.to_string(), http })
    }

    /// GET `path`, with the token when there is one: a node with tokens wants one for reads too.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.request(Method::GET, path, None)
    }

    /// A mutation: `method` on `path` with the token and an optional JSON body.
    pub fn change(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        self.request(method, path, body)
    }

    /// `method` on `path` at the node that answered last, else at each node in turn: a node
    /// that is down (connection refused, timed out) is skipped; one that answers, even with a
    /// refusal, is the answer. Skipping is safe for mutations: a request that never connected
    /// was never carried out.
    fn request(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let first = self.answering.get();
        let order = (first..self.bases.len()).chain(0..first);
        let mut tried = Vec::new();
        for i in order {
            let base = &self.bases[i];
            let mut req = self.http.request(method.clone(), url(base, path)?);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send() {
                Ok(resp) => {
                    self.answering.set(i);
                    return self.answer(base, resp);
                }
                Err(e) => tried.push(format!("{base} ({})", root_cause(&e))),
            }
        }
        let https = self.bases.iter().any(|b| b.scheme() == "https");
        Err(CliError::Unreachable(format!(
            "cannot reach a dhaf node: tried {}; check that the node is running and that {} point at it{}",
            tried.join(", "),
            self.source,
            if https {
                "; over TLS, give the CA of the node's certificate with --ca-file (or $DHAF_CA_FILE), and a client \
                 certificate with --client-cert/--client-key if the node asks for one"
            } else {
                ""
            }
        )))
    }

    fn answer(&self, base: &reqwest::Url, resp: reqwest::blocking::Response) -> Result<Value, CliError> {
        let status = resp.status();
        let text = resp.text().map_err(|e| CliError::Unreachable(format!("the node at {base} broke off its answer: {e}")))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| {
                CliError::Unreachable(format!("{base} answered something that is not dhaf's JSON API; is it a dhaf node?"))
            });
        }
        let err = json.as_ref().map(|j| &j["error"]);
        match err.and_then(|e| Some((e["code"].as_str()?, e["message"].as_str()?))) {
            Some((code, message)) => {
                let mut message = message.to_string();
                if code == "last_healthy_entry_point" {
                    message.push_str("; add --force to take it out of rotation anyway");
                }
                if code == "unauthorized" || code == "forbidden" {
                    message.push_str(&format!(
                        "; dhaf-cli sends $DHAF_API_TOKEN{}: it must be one of the node's tokens{}",
                        self.source
                            .strip_prefix("dhaf.web-api.host/port in ")
                            .map(|f| format!(", else dhaf.web-api.token from {f}"))
                            .unwrap_or_default(),
                        if code == "forbidden" { ", of a role that allows this" } else { "" }
                    ));
                }
                Err(CliError::Refused { status: status.as_u16(), code: code.to_string(), message })
            }
            None => Err(CliError::Unreachable(format!(
                "{base} answered HTTP {} without dhaf's error format; is it a dhaf node?",
                status.as_u16()
            ))),
        }
    }
}

/// `path` (its segments already escaped) on the node at `base`; never another host.
fn url(base: &reqwest::Url, path: &str) -> Result<reqwest::Url, CliError> {
    let url = base.join(path).map_err(|e| CliError::Usage(format!("cannot build a URL for {path}: {e}")))?;
    if url.origin() != base.origin() {
        return Err(CliError::Usage(format!("{path} would leave {base}")));
    }
    Ok(url)
}

/// The innermost cause: reqwest's own message ("error sending request") says nothing useful.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
