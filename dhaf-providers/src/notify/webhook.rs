//! The `webhook` notifier: one HTTP POST per notification to a URL — a Slack, Mattermost or
//! Discord incoming webhook, or any endpoint that takes JSON (an incident tool, a chat bridge).
//!
//! ```yaml
//! notifiers:
//!   - type: webhook
//!     name: ops-slack
//!     url: ${SLACK_WEBHOOK_URL}   # holds the webhook's secret: never logged, errors show its host only
//!     preset: slack               # slack, mattermost ({"text": …}), discord ({"content": …}) or generic (default)
//!     template: "{symbol} {summary}\n{happened}"   # optional; the default is the full report
//!     headers: { Authorization: "Bearer ${HOOK_TOKEN}" }   # optional; values never logged
//!     timeout: 10                 # seconds per request (default 10)
//!     retries: 2                  # quick repeats after a 5xx, a timeout or no connection (default 2)
//! ```
//!
//! The body's text comes from [`Report`] (the same facts the email and Telegram messages carry)
//! or from `template`, whose `{field}`s are the event's: `summary`, `severity`, `symbol`, `event`,
//! `cluster`, `node`, `service`, `happened`, `dhaf_did`, `reasons`, `next`, `at`. The `generic`
//! preset posts every field as JSON, with the event itself under `event` as the REST API shows it.
//!
//! Delivery: 2xx is done. A 5xx, a timeout or a refused connection is repeated `retries` times
//! within the call, with a short doubling pause; a 429 whose `Retry-After` is short is waited out.
//! What is still failing goes back to the runtime as transient (carrying a long `Retry-After`), and
//! the runtime retries with its own backoff, once per event like every notifier. Any other 4xx
//! is permanent: the URL or the body is wrong, and repeating will not fix it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::Notification;
use dhaf_core::provider::{BuildContext, Notifier, ProviderError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{redact, rfc3339, Report};

/// The pause before the first quick repeat; it doubles for each next one.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// A `Retry-After` longer than this is handed to the runtime instead of waited out in the call.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);

/// Discord refuses a message longer than this.
const DISCORD_MAX_CHARS: usize = 2000;

/// The fields a template may name.
const FIELDS: [&str; 12] =
    ["summary", "severity", "symbol", "event", "cluster", "node", "service", "happened", "dhaf_did", "reasons", "next", "at"];

/// The shape of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    /// `{"text": …}`, with `&`, `<` and `>` escaped as Slack requires.
    Slack,
    /// `{"text": …}` (Markdown).
    Mattermost,
    /// `{"content": …}`, cut to 2,000 characters, mentions off.
    Discord,
    /// Every field as JSON, `text` among them.
    Generic,
}

/// Text that must stay out of logs, Debug output and errors.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The custom headers as sent; shown as `***` (a client's Debug would print default headers).
#[derive(Clone)]
struct SecretHeaders(HeaderMap);

impl fmt::Debug for SecretHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A notifier that POSTs each notification to a webhook.
#[derive(Debug)]
pub struct WebhookNotifier {
    url: Secret,
    /// `scheme://host[:port]`: what errors and logs show of the URL.
    origin: String,
    preset: Preset,
    template: Option<String>,
    /// Names and values; the values are secrets (an authorization header, say).
    headers: Vec<(String, Secret)>,
    header_map: SecretHeaders,
    retries: u32,
    timeout: Duration,
    http: reqwest::Client,
}

impl WebhookNotifier {
    /// Build from the notifier's section (no I/O).
    pub fn from_config(section: &ProviderConfig, _ctx: &BuildContext) -> Result<WebhookNotifier, ConfigError> {
        let f = section.fields();
        let url = f.required_string("url").unwrap_or_default().trim().to_string();
        let origin = match reqwest::Url::parse(&url) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some() => {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or_default())
            }
            // The URL is a secret (a Slack webhook's path is its key): never echoed.
            _ => {
                if f.has("url") {
                    f.problem(f.key("url"), "is not an http(s) URL");
                }
                String::new()
            }
        };
        let preset = match f.string("preset").unwrap_or_else(|| "generic".into()).trim().to_ascii_lowercase().as_str() {
            "slack" => Preset::Slack,
            "mattermost" => Preset::Mattermost,
            "discord" => Preset::Discord,
            "generic" => Preset::Generic,
            other => {
                f.problem(f.key("preset"), format!("'{other}' is not one of slack, mattermost, discord, generic"));
                Preset::Generic
            }
        };
        let template = f.string("template");
        if let Some(t) = &template {
            for name in placeholders(t) {
                if !FIELDS.contains(&name) {
                    f.problem(f.key("template"), format!("'{{{name}}}' is not a field (known: {})", FIELDS.join(", ")));
                }
            }
        }
        let mut headers = Vec::new();
        let mut header_map = HeaderMap::new();
        for (name, value) in f.string_map("headers") {
            let parsed_name = HeaderName::from_bytes(name.as_bytes());
            let parsed_value = HeaderValue::from_str(&value);
            match (parsed_name, parsed_value) {
                (Ok(n), Ok(mut v)) => {
                    // Kept out of the HTTP client's own logs too.
                    v.set_sensitive(true);
                    header_map.insert(n, v);
                    headers.push((name, Secret(value)));
                }
                (Err(_), _) => f.problem(format!("{}.{name}", f.key("headers")), "is not a header name"),
                (_, Err(_)) => f.problem(format!("{}.{name}", f.key("headers")), "has a value that is not printable ASCII"),
            }
        }
        let timeout = f.seconds("timeout", 10, 1, 120);
        let retries = f.int("retries", 2, 0, 10) as u32;
        f.finish();
        let http = crate::http::client(&f, timeout);
        f.into_result(WebhookNotifier {
            url: Secret(url),
            origin,
            preset,
            template,
            headers,
            header_map: SecretHeaders(header_map),
            retries,
            timeout,
            http,
        })
    }

    /// The body of the POST for `n`.
    pub fn body(&self, n: &Notification) -> Value {
        let report = Report::of(n);
        let fields = fields(n, &report);
        let text = match &self.template {
            Some(t) => fill(t, &fields),
            None => plain_text(&report),
        };
        match self.preset {
            Preset::Slack => json!({ "text": text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;") }),
            Preset::Mattermost => json!({ "text": text }),
            Preset::Discord => {
                let content: String = if text.chars().count() > DISCORD_MAX_CHARS {
                    text.chars().take(DISCORD_MAX_CHARS - 1).chain(['…']).collect()
                } else {
                    text
                };
                // A service named `@everyone` must not ping a whole server.
                json!({ "content": content, "allowed_mentions": { "parse": [] } })
            }
            Preset::Generic => {
                let mut body = serde_json::Map::new();
                for (k, v) in fields {
                    body.insert(k.to_string(), Value::String(v));
                }
                body.insert("text".into(), Value::String(text));
                body.insert("event".into(), serde_json::to_value(&n.event).unwrap_or(Value::Null));
                body.insert(
                    "entry_points".into(),
                    n.entry_points.iter().map(|e| json!({ "name": e.name, "ip": e.ip.to_string() })).collect(),
                );
                Value::Object(body)
            }
        }
    }

    /// Remove every secret from text that came from elsewhere (an error, a server's echo).
    fn scrub(&self, text: &str) -> String {
        // A server may echo only the path, which is the secret part of most webhook URLs.
        let path = self.url.0.get(self.origin.len()..).filter(|p| p.len() > 1).unwrap_or_default();
        let mut secrets: Vec<&str> = vec![self.url.0.as_str(), path];
        secrets.extend(self.headers.iter().map(|(_, v)| v.0.as_str()).filter(|v| v.len() >= 4));
        redact(text, &secrets)
    }

    /// One POST; `Err((error, repeat))` says whether a quick repeat may help.
    async fn attempt(&self, body: &Value) -> Result<(), (ProviderError, bool)> {
        let what = format!("POST {}", self.origin);
        let resp = match self.http.post(&self.url.0).headers(self.header_map.0.clone()).json(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err((ProviderError::transient(format!("{what}: timed out after {}", crate::check::secs(self.timeout))), true))
            }
            Err(e) => {
                let e = e.without_url();
                return Err((
                    ProviderError::transient(self.scrub(&format!("{what}: cannot reach the webhook: {}", crate::http::error_chain(&e)))),
                    true,
                ));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_millis((s * 1000.0).ceil() as u64));
        let text = resp.text().await.unwrap_or_default();
        let snippet = || {
            let cut: String = text.trim().chars().take(200).collect();
            if cut.is_empty() {
                String::new()
            } else {
                format!(": {}", self.scrub(&cut))
            }
        };
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Discord says how long in the body when the header is missing.
            let retry_after = retry_after.or_else(|| {
                let v: Value = serde_json::from_str(&text).ok()?;
                let secs = v.get("retry_after")?.as_f64()?;
                (secs.is_finite() && secs >= 0.0).then(|| Duration::from_millis((secs * 1000.0).ceil() as u64))
            });
            let message = format!("{what}: rate limited (HTTP 429){}", snippet());
            return Err((ProviderError::Transient { message, retry_after }, false));
        }
        if status.is_server_error() {
            let message = format!("{what}: the webhook failed (HTTP {}){}", status.as_u16(), snippet());
            return Err((ProviderError::Transient { message, retry_after }, true));
        }
        Err((ProviderError::permanent(format!("{what}: refused (HTTP {}){}", status.as_u16(), snippet())), false))
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, notification: &Notification) -> Result<(), ProviderError> {
        let body = self.body(notification);
        let mut pause = FIRST_PAUSE;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&body).await {
                Ok(()) => return Ok(()),
                Err((ProviderError::Transient { retry_after: Some(after), .. }, _))
                    if after <= MAX_INLINE_WAIT && attempt <= self.retries =>
                {
                    tokio::time::sleep(after).await;
                }
                Err((_, true)) if attempt <= self.retries => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// The `{name}`s in a template.
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if after[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && end > 0 => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// The template with each `{field}` replaced by its value.
fn fill(template: &str, fields: &[(&'static str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in fields {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The event's fields, by the names a template uses.
fn fields(n: &Notification, r: &Report) -> Vec<(&'static str, String)> {
    let kind =
        serde_json::to_value(&n.event).ok().and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
    vec![
        ("summary", r.title.clone()),
        ("severity", r.severity.label().to_string()),
        ("symbol", r.severity.symbol().to_string()),
        ("event", kind),
        ("cluster", n.cluster.clone()),
        ("node", n.node.clone()),
        ("service", n.event.service().unwrap_or_default().to_string()),
        ("happened", r.happened.clone()),
        ("dhaf_did", r.dhaf_did.clone()),
        ("reasons", r.reasons.join("; ")),
        ("next", r.next.clone().unwrap_or_default()),
        ("at", rfc3339(n.at)),
    ]
}

/// The whole report as plain text, for chat.
fn plain_text(r: &Report) -> String {
    let mut out = format!("{} [{}] {}\n", r.severity.symbol(), r.severity.label(), r.title);
    for (label, value) in &r.facts {
        out.push_str(&format!("{label}: {value}\n"));
    }
    out.push_str(&format!("What happened: {}\nWhat dhaf did: {}\n", r.happened, r.dhaf_did));
    if !r.reasons.is_empty() {
        out.push_str("Reasons:\n");
        for reason in &r.reasons {
            out.push_str(&format!("- {reason}\n"));
        }
    }
    if let Some(next) = &r.next {
        out.push_str(&format!("Next: {next}\n"));
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_filled() {
        assert_eq!(placeholders("{symbol} {summary} {x-y} {} {a"), ["symbol", "summary"]);
        assert_eq!(fill("{summary}! {summary}", &[("summary", "down".into())]), "down! down");
    }
}
