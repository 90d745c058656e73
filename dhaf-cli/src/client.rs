//! The HTTP side: one node's API, its errors sorted into the CLI's exit codes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dhaf_core::config::Config;
use reqwest::blocking::{Client, RequestBuilder};
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
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::DcsUnreachable(_) => 4,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Unreachable(m) | CliError::DcsUnreachable(m) => f.write_str(m.trim_end()),
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

/// A node's API, as found in its config file.
pub struct Api {
    base: reqwest::Url,
    token: Option<String>,
    config_path: String,
    http: Client,
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
        // An empty or blank variable is as good as unset: reads may need no token at all.
        let token = std::env::var("DHAF_API_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).or(file_token);
        let scheme = if web.tls.is_some() { "https" } else { "http" };
        let base = reqwest::Url::parse(&format!("{scheme}://{host}:{}/", web.port))
            .ok()
            .filter(|u| u.path() == "/" && u.query().is_none() && u.fragment().is_none() && u.username().is_empty())
            .ok_or_else(|| usage(&format!("dhaf.web-api.host '{}' is not a host name or an IP address", web.host.escape_debug())))?;
        let mut builder = Client::builder().timeout(Duration::from_secs(15)).connect_timeout(Duration::from_secs(5));
        if web.tls.is_some() {
            builder = tls.apply(builder)?;
        }
        let http = builder.build().map_err(|e| CliError::Usage(format!("cannot set up HTTP: {e}")))?;
        Ok(Api { base, token, config_path: path.display().to_string(), http })
    }

    /// GET `path`, with the token when there is one: a node with tokens wants one for reads too.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        let mut req = self.http.get(self.url(path)?);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.send(req)
    }

    /// A mutation: `method` on `path` with the token and an optional JSON body.
    pub fn change(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let mut req = self.http.request(method, self.url(path)?);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req)
    }

    /// `path` (its segments already escaped) on the node; never another host.
    fn url(&self, path: &str) -> Result<reqwest::Url, CliError> {
        let url = self.base.join(path).map_err(|e| CliError::Usage(format!("cannot build a URL for {path}: {e}")))?;
        if url.origin() != self.base.origin() {
            return Err(CliError::Usage(format!("{path} would leave {}", self.base)));
        }
        Ok(url)
    }

    fn send(&self, req: RequestBuilder) -> Result<Value, CliError> {
        let resp = req.send().map_err(|e| {
            CliError::Unreachable(format!(
                "cannot reach the dhaf node at {} ({}); check that the node is running and that dhaf.web-api.host/port in {} point at it\
                 {}",
                self.base,
                root_cause(&e),
                self.config_path,
                if self.base.scheme() == "https" {
                    "; over TLS, give the CA of the node's certificate with --ca-file (or $DHAF_CA_FILE), and a client \
                     certificate with --client-cert/--client-key if the node asks for one"
                } else {
                    ""
                }
            ))
        })?;
        let status = resp.status();
        let text = resp.text().map_err(|e| CliError::Unreachable(format!("the node at {} broke off its answer: {e}", self.base)))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| {
                CliError::Unreachable(format!("{} answered something that is not dhaf's JSON API; is it a dhaf node?", self.base))
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
                        "; dhaf-cli sends $DHAF_API_TOKEN, else dhaf.web-api.token from {}: it must be one of the node's tokens{}",
                        self.config_path,
                        if code == "forbidden" { ", of a role that allows this" } else { "" }
                    ));
                }
                Err(CliError::Refused { status: status.as_u16(), code: code.to_string(), message })
            }
            None => Err(CliError::Unreachable(format!(
                "{} answered HTTP {} without dhaf's error format; is it a dhaf node?",
                self.base,
                status.as_u16()
            ))),
        }
    }
}

/// The innermost cause: reqwest's own message ("error sending request") says nothing useful.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
