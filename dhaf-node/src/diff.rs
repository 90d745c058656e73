//! `dhaf-node --check --diff`: what a reload of a config file would change on the node that runs
//! it, asked of that node's REST API (`GET /api/v1/config`) before anyone sends SIGHUP.

use std::collections::BTreeMap;
use std::time::Duration;

use dhaf_core::config::{Config, TokenSecret};
use dhaf_core::model::ServiceDefinition;
use dhaf_core::runtime::{restart_only_settings, DefinitionsDiff};

/// The running node's answer.
#[derive(serde::Deserialize)]
struct Running {
    node: String,
    definitions: BTreeMap<String, ServiceDefinition>,
    restart_only: BTreeMap<String, String>,
}

/// Compare `config` with the node its `dhaf.web-api` names, for people. The token is
/// `$DHAF_API_TOKEN` or one written in the file; with TLS, `$DHAF_CA_FILE` names the CA.
pub async fn against_running(config: &Config) -> Result<String, String> {
    let web = &config.dhaf.web_api;
    let host = match web.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        h => h,
    };
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{host}:{}/api/v1/config", web.port);
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = std::env::var_os("DHAF_CA_FILE") {
        let pem = std::fs::read(&ca).map_err(|e| format!("DHAF_CA_FILE {}: {e}", ca.to_string_lossy()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("DHAF_CA_FILE {}: {e}", ca.to_string_lossy()))?;
        client = client.add_root_certificate(cert);
    }
    let client = client.build().map_err(|e| e.to_string())?;
    let token = std::env::var("DHAF_API_TOKEN").ok().filter(|t| !t.trim().is_empty()).or_else(|| {
        web.token.clone().or_else(|| {
            web.tokens.iter().find_map(|t| match &t.secret {
                TokenSecret::Plain(s) => Some(s.clone()),
                TokenSecret::Sha256(_) => None,
            })
        })
    });
    let mut req = client.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let answer = req.send().await.map_err(|e| format!("cannot reach the running node at {url}: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("the running node at {url} answered {}", answer.status()));
    }
    let running: Running = answer.json().await.map_err(|e| format!("the running node at {url} sent an unreadable answer: {e}"))?;
    Ok(render(config, &running, &url))
}

fn render(config: &Config, running: &Running, url: &str) -> String {
    let mine: BTreeMap<String, ServiceDefinition> =
        config.services.iter().map(|s| (s.name.clone(), s.definition(config.dhaf.min_votes))).collect();
    let diff = DefinitionsDiff::of(&running.definitions, &mine);
    let mut out = format!("Against the running node {} ({url}):\n", running.node);
    let restart: Vec<String> = restart_only_settings(config)
        .into_iter()
        .filter_map(|(k, v)| {
            let old = running.restart_only.get(&k)?;
            (*old != v).then(|| format!("  {k}: {old} \u{2192} {v}"))
        })
        .collect();
    if !restart.is_empty() {
        out += "Needs a restart (a reload would be refused):\n";
        out += &(restart.join("\n") + "\n");
    }
    if diff.is_empty() {
        out += "No service would change.\n";
    }
    for s in &diff.added {
        out += &format!("Service {s}: added\n");
    }
    for s in &diff.removed {
        out += &format!("Service {s}: removed\n");
    }
    for (s, lines) in &diff.changed {
        out += &format!("Service {s}: changed (running \u{2260} file)\n");
        for l in lines {
            out += &format!("  {l}\n");
        }
    }
    out
}
