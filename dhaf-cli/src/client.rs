//! The HTTP side: one node's API, its errors sorted into the CLI's exit codes.

use std::fmt;
use std::path::Path;
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

/// A node's API, as found in its config file.
pub struct Api {
    base: String,
    token: Option<String>,
    config_path: String,
    http: Client,
}

impl Api {
    /// Read `dhaf.web-api` from the node's config file.
    pub fn from_config(path: &Path) -> Result<Api, CliError> {
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
        let token = std::env::var("DHAF_API_TOKEN").ok().filter(|t| !t.is_empty()).or(file_token);
        let http = Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up HTTP: {e}")))?;
        Ok(Api { base: format!("http://{host}:{}", web.port), token, config_path: path.display().to_string(), http })
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path)))
    }

    /// A mutation: `method` on `path` with the token and an optional JSON body.
    pub fn change(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(&self, req: RequestBuilder) -> Result<Value, CliError> {
        let resp = req.send().map_err(|e| {
            CliError::Unreachable(format!(
                "cannot reach the dhaf node at {} ({}); check that the node is running and that dhaf.web-api.host/port in {} point at it",
                self.base,
                root_cause(&e),
                self.config_path
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
                if code == "unauthorized" {
                    message.push_str(&format!(
                        "; dhaf-cli sends dhaf.web-api.token from {} (or $DHAF_API_TOKEN), which must match the node's",
                        self.config_path
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
