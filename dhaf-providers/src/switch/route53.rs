//! The `route53` switcher: the service domain's address record set in an Amazon Route 53 hosted
//! zone, replaced through Route 53's API (requests signed with AWS Signature Version 4).
//!
//! ```yaml
//! switcher:
//!   type: route53
//!   hosted-zone-id: Z0123456789ABCDEFGHIJ   # the zone holding the service's domain
//!   ttl: 60                       # of the address record set (default 60)
//!   wait-insync: false            # wait until Route 53 reports the change INSYNC (default false)
//!   insync-timeout: 120           # seconds to wait for INSYNC (default 120)
//!   profile: default              # the shared credentials file's profile (default $AWS_PROFILE, else default)
//!   credentials-file: /etc/dhaf/aws-credentials   # default $AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials
//!   access-key-id: ${AWS_ACCESS_KEY_ID}           # optional; explicit keys win over every other source
//!   secret-access-key: ${AWS_SECRET_ACCESS_KEY}   # never logged
//!   session-token: ${AWS_SESSION_TOKEN}           # optional, for temporary credentials
//!   region: us-east-1             # the signing region (Route 53 is global; default us-east-1)
//!   endpoint: https://route53.amazonaws.com       # default; for tests and other partitions
//!   timeout: 10                   # seconds per request (default 10)
//! ```
//!
//! Credentials come from the standard AWS sources, first found wins, looked up again at every
//! request (a rotated credentials file is picked up): the `access-key-id`/`secret-access-key`
//! settings; the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
//! the shared credentials file's profile. The secret key and the session token are never logged,
//! shown in Debug output or put in errors.
//!
//! Start-up ([`Switcher::init`]) only verifies and reads, on every node: `GetHostedZone` shows the
//! credentials are accepted and the zone exists and holds the service's domain; then it reads the
//! domain's record sets with `ListResourceRecordSets`.
//!
//! Every write is the leader's, in [`Switcher::switch`], in one change batch (Route 53 applies a
//! batch entirely or not at all): an `UPSERT` of the domain's `A` (or `AAAA`) record set with the
//! chosen entry point's address, a `DELETE` of the other type's set when there is one, and the TXT
//! record `_dhaf.<domain>` replaced with `dhaf term-N`, the leader's term. The term record is
//! replaced by a `DELETE` of exactly the values the switch read plus a `CREATE` (left alone when it
//! already names this term), so a stale leader whose read came before a newer leader's write has
//! its whole batch refused by Route 53; a TXT
//! naming a newer term than the caller's is never overwritten. With `wait-insync: true` the switch
//! waits (`GetChange`) until the change has reached all of Route 53's name servers. The switch then
//! reads the record sets back and fails unless they show the new address.
//!
//! [`Switcher::current`] reads the record sets themselves: one address of a configured entry point
//! is that entry point; none, several, an alias or an unknown address is "none", so the leader's
//! periodic read-back notices an edit made behind dhaf's back and its switch replaces it.
//!
//! Failures: refused credentials (`InvalidClientTokenId`, `SignatureDoesNotMatch`,
//! `AccessDenied`, …), a missing zone (`NoSuchHostedZone`) and invalid input are permanent;
//! throttling, `PriorRequestNotComplete`, a refused batch (`InvalidChangeBatch`: the records
//! changed since they were read), 5xx, timeouts and connection errors are transient. The leader
//! retries with its own backoff.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::{EntryPoint, FencingToken};
use dhaf_core::provider::{BuildContext, ProviderError, Switcher};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Route 53's public API.
pub const DEFAULT_ENDPOINT: &str = "https://route53.amazonaws.com";

/// The API version in every path.
const API: &str = "/2013-04-01";

/// What the term record says before the term: `dhaf term-N`.
const TERM_PREFIX: &str = "dhaf term-";

/// The label of the TXT record beside the domain that carries the leader's term.
const TERM_LABEL: &str = "_dhaf";

/// How often `GetChange` is asked while waiting for INSYNC.
const INSYNC_POLL: Duration = Duration::from_secs(1);

/// A secret shown as `***` so it stays out of logs, Debug output and errors.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
    /// Where they came from, for messages.
    source: String,
}

/// Where the credentials are looked up.
#[derive(Debug, Clone)]
struct CredentialSources {
    explicit: Option<Credentials>,
    profile: Option<String>,
    file: Option<PathBuf>,
}

impl CredentialSources {
    /// The first credentials found, in the standard order; `env` reads the environment.
    fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, ProviderError> {
        if let Some(c) = &self.explicit {
            return Ok(c.clone());
        }
        let env_nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if let (Some(id), Some(secret)) = (env_nonempty("AWS_ACCESS_KEY_ID"), env_nonempty("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                access_key_id: id.trim().to_string(),
                secret_access_key: Secret(secret.trim().to_string()),
                session_token: env_nonempty("AWS_SESSION_TOKEN").map(|t| Secret(t.trim().to_string())),
                source: "the environment (AWS_ACCESS_KEY_ID)".into(),
            });
        }
        let profile = self.profile.clone().or_else(|| env_nonempty("AWS_PROFILE")).unwrap_or_else(|| "default".into());
        let file = self
            .file
            .clone()
            .or_else(|| env_nonempty("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from))
            .or_else(|| env_nonempty("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
        let Some(file) = file else {
            return Err(ProviderError::permanent(
                "no AWS credentials: set access-key-id/secret-access-key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a credentials file",
            ));
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProviderError::permanent(format!(
                    "no AWS credentials: neither access-key-id/secret-access-key nor AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY \
                     are set, and there is no credentials file {}",
                    file.display()
                )))
            }
            Err(e) => return Err(ProviderError::permanent(format!("cannot read the AWS credentials file {}: {e}", file.display()))),
        };
        let values = profile_values(&text, &profile);
        match (values.get("aws_access_key_id"), values.get("aws_secret_access_key")) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Credentials {
                access_key_id: id.clone(),
                secret_access_key: Secret(secret.clone()),
                session_token: values.get("aws_session_token").filter(|t| !t.is_empty()).map(|t| Secret(t.clone())),
                source: format!("profile '{profile}' of {}", file.display()),
            }),
            _ => Err(ProviderError::permanent(format!(
                "the AWS credentials file {} has no profile '{profile}' with aws_access_key_id and aws_secret_access_key",
                file.display()
            ))),
        }
    }
}

/// The `key = value` lines of `[profile]` in an AWS shared credentials file.
fn profile_values(text: &str, profile: &str) -> std::collections::HashMap<String, String> {
    let mut values = std::collections::HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            inside = section == profile || section.strip_prefix("profile ").map(str::trim) == Some(profile);
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    values
}

/// A record set as `ListResourceRecordSets` returns it (only what dhaf reads).
#[derive(Debug, Clone, Deserialize)]
struct RecordSet {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "TTL", default)]
    ttl: Option<u32>,
    #[serde(rename = "ResourceRecords", default)]
    records: Option<ResourceRecords>,
    #[serde(rename = "AliasTarget", default)]
    alias: Option<serde::de::IgnoredAny>,
    #[serde(rename = "SetIdentifier", default)]
    set_identifier: Option<String>,
}

impl RecordSet {
    fn values(&self) -> Vec<String> {
        self.records.as_ref().map(|r| r.items.iter().map(|i| i.value.clone()).collect()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ResourceRecords {
    #[serde(rename = "ResourceRecord", default)]
    items: Vec<ResourceRecord>,
}

#[derive(Debug, Clone, Deserialize)]
struct ResourceRecord {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Debug, Deserialize)]
struct ListResponse {
    #[serde(rename = "ResourceRecordSets", default)]
    sets: ResourceRecordSets,
}

#[derive(Debug, Default, Deserialize)]
struct ResourceRecordSets {
    #[serde(rename = "ResourceRecordSet", default)]
    items: Vec<RecordSet>,
}

#[derive(Debug, Deserialize)]
struct HostedZoneResponse {
    #[serde(rename = "HostedZone")]
    zone: HostedZone,
}

#[derive(Debug, Deserialize)]
struct HostedZone {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Debug, Deserialize)]
struct ChangeResponse {
    #[serde(rename = "ChangeInfo")]
    info: ChangeInfo,
}

#[derive(Debug, Deserialize)]
struct ChangeInfo {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Status")]
    status: String,
}

/// A switcher that points the service domain's address record set in a Route 53 hosted zone at
/// the active entry point.
#[derive(Debug)]
pub struct Route53Switcher {
    service: String,
    entry_points: Vec<EntryPoint>,
    /// The service's domain, lower case with the final dot.
    domain: String,
    /// `_dhaf.<domain>.`, the TXT record with the term.
    term_name: String,
    zone_id: String,
    endpoint: String,
    region: String,
    credentials: CredentialSources,
    ttl: u32,
    wait_insync: bool,
    insync_timeout: Duration,
    timeout: Duration,
    http: reqwest::Client,
}

impl Route53Switcher {
    /// Build from the service's `switcher` section (no I/O: [`Switcher::init`] talks to Route 53).
    pub fn from_config(section: &ProviderConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let f = section.fields();
        let zone_id = f.required_string("hosted-zone-id").unwrap_or_default();
        let zone_id = zone_id.trim().trim_start_matches("/hostedzone/").to_string();
        if f.has("hosted-zone-id") && (zone_id.is_empty() || !zone_id.chars().all(|c| c.is_ascii_alphanumeric())) {
            f.problem(f.key("hosted-zone-id"), format!("'{zone_id}' is not a hosted zone id (letters and digits, like Z0123456789ABC)"));
        }
        let endpoint = f.string("endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.into()).trim().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => f.problem(f.key("endpoint"), format!("'{endpoint}' is not an http(s) URL")),
        }
        let region = f.string("region").unwrap_or_else(|| "us-east-1".into()).trim().to_string();
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            f.problem(f.key("region"), format!("'{region}' is not an AWS region name"));
        }
        let access_key_id = f.string("access-key-id").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        // Never echo the secret, not even in a config error.
        let secret_access_key = f.string("secret-access-key").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let session_token = f.string("session-token").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let explicit = match (access_key_id, secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: Secret(secret),
                session_token: session_token.map(Secret),
                source: format!("the settings {}", f.key("access-key-id")),
            }),
            (Some(_), None) => {
                f.problem(f.key("secret-access-key"), "is required with access-key-id");
                None
            }
            (None, Some(_)) => {
                f.problem(f.key("access-key-id"), "is required with secret-access-key");
                None
            }
            (None, None) => {
                if f.has("session-token") {
                    f.problem(f.key("session-token"), "needs access-key-id and secret-access-key beside it");
                }
                None
            }
        };
        let profile = f.string("profile").map(|s| s.trim().to_string());
        if profile.as_deref() == Some("") {
            f.problem(f.key("profile"), "must not be empty");
        }
        let file = f.string("credentials-file").map(|s| PathBuf::from(s.trim()));
        let ttl = f.int("ttl", 60, 1, 172_800) as u32;
        let wait_insync = f.boolean("wait-insync", false);
        let insync_timeout = f.seconds("insync-timeout", 120, 1, 3600);
        let timeout = f.seconds("timeout", 10, 1, 300);
        f.finish();

        let svc = ctx.service();
        let domain = format!("{}.", svc.domain.trim().trim_end_matches('.').to_ascii_lowercase());
        let http = crate::http::client(&f, timeout);
        f.into_result(Route53Switcher {
            service: svc.name.clone(),
            entry_points: svc.entry_points.clone(),
            term_name: format!("{TERM_LABEL}.{domain}"),
            domain,
            zone_id,
            endpoint,
            region,
            credentials: CredentialSources { explicit, profile, file },
            ttl,
            wait_insync,
            insync_timeout,
            timeout,
            http,
        })
    }

    /// One signed request; the body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
        what: &str,
    ) -> Result<String, ProviderError> {
        let creds = self.credentials.resolve(&|k| std::env::var(k).ok())?;
        let url = reqwest::Url::parse(&format!("{}{path}", self.endpoint))
            .map_err(|e| ProviderError::permanent(format!("{what}: bad endpoint URL: {e}")))?;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let body = body.unwrap_or_default();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let signed = sign(&SigningInput {
            method: method.as_str(),
            path: url.path(),
            query,
            host: &host,
            body: body.as_bytes(),
            time: now,
            region: &self.region,
            service: "route53",
            creds: &creds,
        });
        let mut req = self
            .http
            .request(method, url)
            .query(query)
            .header("x-amz-date", &signed.amz_date)
            .header("authorization", signed.authorization);
        if let Some(token) = &creds.session_token {
            req = req.header("x-amz-security-token", &token.0);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/xml").body(body);
        }
        let resp = req.send().await.map_err(|e| {
            ProviderError::transient(if e.is_timeout() {
                format!("{what}: Route 53 did not answer within {} s", self.timeout.as_secs())
            } else {
                format!("{what}: cannot reach Route 53 at {}: {}", self.endpoint, without_url(&e))
            })
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| ProviderError::transient(format!("{what}: the answer broke off: {}", without_url(&e))))?;
        if status.is_success() {
            return Ok(text);
        }
        Err(self.failure(what, status, &text, retry_after, &creds))
    }

    /// What a refusal means, and whether trying again may help.
    fn failure(&self, what: &str, status: StatusCode, body: &str, retry_after: Option<Duration>, creds: &Credentials) -> ProviderError {
        let code = tag(body, "Code").unwrap_or_default();
        let message = tag(body, "Message").unwrap_or_else(|| body.chars().take(200).collect());
        let message = message.replace(&creds.secret_access_key.0, "***");
        let said = if code.is_empty() { format!("HTTP {status}: {message}") } else { format!("{code}: {message}") };
        match code.as_str() {
            "NoSuchHostedZone" => {
                ProviderError::permanent(format!("{what}: Route 53 has no hosted zone {} ({said}); check hosted-zone-id", self.zone_id))
            }
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException"
            | "AccessDenied"
            | "AccessDeniedException"
            | "InvalidAccessKeyId"
            | "ExpiredToken"
            | "IncompleteSignature"
            | "MissingAuthenticationToken" => ProviderError::permanent(format!(
                "{what}: Route 53 refused the credentials with access key id {} from {} ({said})",
                creds.access_key_id, creds.source
            )),
            "Throttling" | "ThrottlingException" | "PriorRequestNotComplete" | "RequestLimitExceeded" | "ServiceUnavailable" => {
                ProviderError::Transient { message: format!("{what}: Route 53 asks to slow down ({said})"), retry_after }
            }
            "InvalidChangeBatch" => ProviderError::transient(format!(
                "{what}: Route 53 refused the change batch; the records changed since they were read ({said})"
            )),
            _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                ProviderError::Transient { message: format!("{what}: Route 53 failed ({said})"), retry_after }
            }
            _ if status == StatusCode::FORBIDDEN => ProviderError::permanent(format!(
                "{what}: Route 53 refused the credentials with access key id {} from {} ({said})",
                creds.access_key_id, creds.source
            )),
            _ => ProviderError::permanent(format!("{what}: Route 53 refused the request ({said})")),
        }
    }

    /// The record sets named exactly `name`.
    async fn record_sets(&self, name: &str) -> Result<Vec<RecordSet>, ProviderError> {
        let path = format!("{API}/hostedzone/{}/rrset", self.zone_id);
        let what = format!("ListResourceRecordSets {name}");
        let text = self.call(Method::GET, &path, &[("name", name), ("maxitems", "20")], None, &what).await?;
        let list: ListResponse =
            quick_xml::de::from_str(&text).map_err(|e| ProviderError::transient(format!("{what}: the answer does not parse: {e}")))?;
        Ok(list.sets.items.into_iter().filter(|s| same_name(&s.name, name)).collect())
    }

    /// The domain's address record sets (A and AAAA).
    async fn address_sets(&self) -> Result<Vec<RecordSet>, ProviderError> {
        Ok(self.record_sets(&self.domain).await?.into_iter().filter(|s| s.kind == "A" || s.kind == "AAAA").collect())
    }

    /// The entry point the address record sets name, or why they name none.
    fn pointed_at(&self, sets: &[RecordSet]) -> Result<Option<&EntryPoint>, String> {
        if sets.iter().any(|s| s.alias.is_some() || s.set_identifier.is_some()) {
            return Err("an alias or routing-policy record set; the leader replaces it".into());
        }
        let values: Vec<String> = sets.iter().flat_map(RecordSet::values).collect();
        match values.as_slice() {
            [] => Ok(None),
            [one] => match one.parse::<IpAddr>().ok().and_then(|ip| self.entry_points.iter().find(|ep| ep.ip == ip)) {
                Some(ep) => Ok(Some(ep)),
                None => Err(format!("{one} (not an entry point)")),
            },
            many => Err(format!("{} addresses; the leader replaces them", many.len())),
        }
    }

    /// Wait until the change reached every Route 53 name server.
    async fn wait_insync(&self, change_id: &str) -> Result<(), ProviderError> {
        let id = change_id.trim_start_matches("/change/");
        let path = format!("{API}/change/{id}");
        let what = format!("GetChange {id}");
        let deadline = tokio::time::Instant::now() + self.insync_timeout;
        loop {
            let text = self.call(Method::GET, &path, &[], None, &what).await?;
            let change: ChangeResponse =
                quick_xml::de::from_str(&text).map_err(|e| ProviderError::transient(format!("{what}: the answer does not parse: {e}")))?;
            if change.info.status == "INSYNC" {
                return Ok(());
            }
            if tokio::time::Instant::now() + INSYNC_POLL > deadline {
                return Err(ProviderError::transient(format!(
                    "change {id} was still {} after {} s (insync-timeout)",
                    change.info.status,
                    self.insync_timeout.as_secs()
                )));
            }
            tokio::time::sleep(INSYNC_POLL).await;
        }
    }
}

#[async_trait]
impl Switcher for Route53Switcher {
    async fn init(&self) -> Result<(), ProviderError> {
        let what = format!("GetHostedZone {}", self.zone_id);
        let text = self.call(Method::GET, &format!("{API}/hostedzone/{}", self.zone_id), &[], None, &what).await?;
        let zone: HostedZoneResponse =
            quick_xml::de::from_str(&text).map_err(|e| ProviderError::transient(format!("{what}: the answer does not parse: {e}")))?;
        let zone_name = format!("{}.", zone.zone.name.trim_end_matches('.').to_ascii_lowercase());
        if !(self.domain == zone_name || self.domain.ends_with(&format!(".{zone_name}"))) {
            return Err(ProviderError::permanent(format!(
                "the service's domain {} is not in hosted zone {} ({zone_name}); check hosted-zone-id",
                self.domain, self.zone_id
            )));
        }
        let sets = self.address_sets().await?;
        let points_at = match self.pointed_at(&sets) {
            Ok(None) => "(no address record yet; the leader writes it)".to_string(),
            Ok(Some(ep)) => format!("{} ({})", ep.name, ep.ip),
            Err(why) => why,
        };
        tracing::info!(service = %self.service, domain = %self.domain, zone = %self.zone_id, %points_at, "route53 switcher ready");
        Ok(())
    }

    async fn current(&self) -> Result<Option<String>, ProviderError> {
        let sets = self.address_sets().await?;
        match self.pointed_at(&sets) {
            Ok(ep) => Ok(ep.map(|ep| ep.name.clone())),
            Err(why) => {
                tracing::warn!(service = %self.service, domain = %self.domain, found = %why, "the address records name no entry point");
                Ok(None)
            }
        }
    }

    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        let seen_terms: Vec<RecordSet> = self.record_sets(&self.term_name).await?.into_iter().filter(|s| s.kind == "TXT").collect();
        if let Some(term) = seen_terms.iter().flat_map(RecordSet::values).filter_map(|v| value_term(&v)).max() {
            if term > token.0 {
                return Err(ProviderError::permanent(format!(
                    "{} was written by term-{term}, newer than this leader's {token}: not overwritten",
                    self.domain
                )));
            }
        }
        let sets = self.address_sets().await?;
        let (kind, other) = if to.ip.is_ipv4() { ("A", "AAAA") } else { ("AAAA", "A") };
        let mut changes = String::new();
        for set in &sets {
            // Alias and routing-policy sets cannot be upserted over: delete them as they are.
            if set.kind == other || set.alias.is_some() || set.set_identifier.is_some() {
                if set.alias.is_some() {
                    return Err(ProviderError::permanent(format!(
                        "{} {} is an alias record set; delete it in Route 53 so dhaf can manage the domain",
                        self.domain, set.kind
                    )));
                }
                changes.push_str(&change("DELETE", set));
            }
        }
        let address = RecordSet {
            name: self.domain.clone(),
            kind: kind.into(),
            ttl: Some(self.ttl),
            records: Some(ResourceRecords { items: vec![ResourceRecord { value: to.ip.to_string() }] }),
            alias: None,
            set_identifier: None,
        };
        changes.push_str(&change("UPSERT", &address));
        let term_text = format!("dhaf {token}");
        let term = RecordSet {
            name: self.term_name.clone(),
            kind: "TXT".into(),
            ttl: Some(self.ttl),
            records: Some(ResourceRecords { items: vec![ResourceRecord { value: format!("\"{term_text}\"") }] }),
            alias: None,
            set_identifier: None,
        };
        // The compare of the compare-and-swap: the term record is deleted with exactly the values
        // just read, so Route 53 refuses the whole batch if someone changed it meanwhile. When it
        // already says this term (this leader wrote it), it is left as it is.
        let unchanged = matches!(seen_terms.as_slice(), [set] if set.values() == term.values() && set.ttl == term.ttl);
        if !unchanged {
            for set in &seen_terms {
                changes.push_str(&change("DELETE", set));
            }
            changes.push_str(&change("CREATE", &term));
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeBatch>\
             <Comment>{} {term_text}: {}</Comment><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>",
            xml_escape(&self.service),
            xml_escape(&to.name)
        );
        let what = format!("ChangeResourceRecordSets {} to {} ({})", self.domain, to.name, to.ip);
        let text = self.call(Method::POST, &format!("{API}/hostedzone/{}/rrset", self.zone_id), &[], Some(body), &what).await?;
        let change: ChangeResponse =
            quick_xml::de::from_str(&text).map_err(|e| ProviderError::transient(format!("{what}: the answer does not parse: {e}")))?;
        if self.wait_insync && change.info.status != "INSYNC" {
            self.wait_insync(&change.info.id).await?;
        }

        let sets = self.address_sets().await?;
        let values: Vec<String> = sets.iter().flat_map(RecordSet::values).collect();
        if values != [to.ip.to_string()] || sets.iter().any(|s| s.kind != kind) {
            return Err(ProviderError::transient(format!(
                "read back after the switch: {} shows [{}], expected {}",
                self.domain,
                values.join(", "),
                to.ip
            )));
        }
        let terms: Vec<i64> =
            self.record_sets(&self.term_name).await?.iter().flat_map(RecordSet::values).filter_map(|v| value_term(&v)).collect();
        if terms != [token.0] {
            return Err(ProviderError::transient(format!("read back after the switch: {} does not say '{term_text}'", self.term_name)));
        }
        tracing::info!(service = %self.service, domain = %self.domain, to = %to.name, ip = %to.ip, %token, change = %change.info.id, "route53 records updated");
        Ok(())
    }
}

/// One `<Change>` of a change batch.
fn change(action: &str, set: &RecordSet) -> String {
    let records: String =
        set.values().iter().map(|v| format!("<ResourceRecord><Value>{}</Value></ResourceRecord>", xml_escape(v))).collect();
    let ident = set.set_identifier.as_deref().map(|s| format!("<SetIdentifier>{}</SetIdentifier>", xml_escape(s))).unwrap_or_default();
    format!(
        "<Change><Action>{action}</Action><ResourceRecordSet><Name>{}</Name><Type>{}</Type>{ident}<TTL>{}</TTL>\
         <ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change>",
        xml_escape(&set.name),
        xml_escape(&set.kind),
        set.ttl.unwrap_or(300)
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// The text of the first `<name>…</name>` in `xml`, unescaped.
fn tag(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&"))
}

/// Whether two DNS names are the same (case and the final dot aside; Route 53 escapes `*` as `\052`).
fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('.').replace("\\052", "*").to_ascii_lowercase();
    norm(a) == norm(b)
}

/// The term in a `"dhaf term-N"` TXT value.
fn value_term(value: &str) -> Option<i64> {
    let text: String = value.split('"').collect();
    text.trim().strip_prefix(TERM_PREFIX)?.trim().parse().ok()
}

/// A reqwest error without its URL (which is not secret, but long) for messages.
fn without_url(e: &reqwest::Error) -> String {
    let text = crate::http::error_chain(e);
    match e.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), ""),
        None => text,
    }
}

/// What a request's signature is made from.
struct SigningInput<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a [(&'a str, &'a str)],
    host: &'a str,
    body: &'a [u8],
    /// Seconds since the epoch.
    time: u64,
    region: &'a str,
    service: &'a str,
    creds: &'a Credentials,
}

/// The headers a signed request carries.
struct Signed {
    amz_date: String,
    authorization: String,
}

/// AWS Signature Version 4 (`AWS4-HMAC-SHA256`) over the method, path, query, the `host` and
/// `x-amz-date` headers (and `x-amz-security-token` with temporary credentials) and the body.
fn sign(input: &SigningInput) -> Signed {
    let (date, amz_date) = amz_dates(input.time);
    let mut query: Vec<(String, String)> = input.query.iter().map(|(k, v)| (uri_encode(k, true), uri_encode(v, true))).collect();
    query.sort();
    let canonical_query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = vec![("host", input.host.to_string()), ("x-amz-date", amz_date.clone())];
    if let Some(token) = &input.creds.session_token {
        headers.push(("x-amz-security-token", token.0.clone()));
    }
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
    let signed_headers: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed_headers = signed_headers.join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        input.method,
        uri_encode(input.path, false),
        canonical_query.join("&"),
        hex(&Sha256::digest(input.body))
    );
    let scope = format!("{date}/{}/{}/aws4_request", input.region, input.service);
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{}", input.creds.secret_access_key.0).as_bytes(), date.as_bytes());
    for part in [input.region, input.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            input.creds.access_key_id
        ),
        amz_date,
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's percent-encoding: everything but `A-Z a-z 0-9 - _ . ~` (and `/` in paths).
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of a UTC time.
fn amz_dates(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let stamp = format!("{date}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60);
    (date, stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(id: &str, secret: &str) -> Credentials {
        Credentials { access_key_id: id.into(), secret_access_key: Secret(secret.into()), session_token: None, source: "test".into() }
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(amz_dates(1_440_938_160), ("20150830".into(), "20150830T123600Z".into()));
        assert_eq!(amz_dates(951_782_400), ("20000229".into(), "20000229T000000Z".into()));
    }

    /// The example of AWS's Signature Version 4 documentation (IAM ListUsers, 2015-08-30).
    #[test]
    fn the_signature_matches_aws_documented_example() {
        let c = creds("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20150830");
        for part in ["us-east-1", "iam", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        assert_eq!(hex(&key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
        let signed = sign(&SigningInput {
            method: "GET",
            path: "/",
            query: &[("Version", "2010-05-08"), ("Action", "ListUsers")],
            host: "iam.amazonaws.com",
            body: b"",
            time: 1_440_938_160,
            region: "us-east-1",
            service: "iam",
            creds: &c,
        });
        assert_eq!(signed.amz_date, "20150830T123600Z");
        assert!(signed.authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature="
        ));
        assert!(!signed.authorization.contains("wJalrXUtnFEMI"));
    }

    /// The same request signed by botocore (AWS's own Python signer) gives this signature.
    #[test]
    fn the_signature_matches_botocore() {
        let c = creds("AKID", "secret");
        let signed = sign(&SigningInput {
            method: "GET",
            path: "/2013-04-01/hostedzone/Z1",
            query: &[],
            host: "127.0.0.1:1",
            body: b"",
            time: 1_767_225_600,
            region: "us-east-1",
            service: "route53",
            creds: &c,
        });
        assert_eq!(signed.amz_date, "20260101T000000Z");
        assert!(
            signed.authorization.ends_with("Signature=0e0f1968fa0e6d415e5f20d527a3bec3ed0aab626a69f34f7482d23e39b34bf6"),
            "{}",
            signed.authorization
        );
    }

    #[test]
    fn credentials_come_from_settings_then_environment_then_the_profile() {
        let dir = tempfile_dir();
        let file = dir.join("credentials");
        std::fs::write(&file, "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n[ops]\naws_access_key_id=AKIDOPS\naws_secret_access_key=s2\naws_session_token=t2\n").unwrap();
        let env =
            |vars: &'static [(&'static str, &'static str)]| move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let sources = CredentialSources { explicit: None, profile: None, file: Some(file.clone()) };
        assert_eq!(sources.resolve(&env(&[])).unwrap().access_key_id, "AKIDDEFAULT");
        let from_env = sources
            .resolve(&env(&[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "s3"), ("AWS_SESSION_TOKEN", "t3")]))
            .unwrap();
        assert_eq!(from_env.access_key_id, "AKIDENV");
        assert_eq!(from_env.session_token, Some(Secret("t3".into())));
        let ops = sources.resolve(&env(&[("AWS_PROFILE", "ops")])).unwrap();
        assert_eq!((ops.access_key_id.as_str(), ops.session_token.is_some()), ("AKIDOPS", true));
        let named = CredentialSources { explicit: None, profile: Some("nope".into()), file: Some(file) };
        let err = named.resolve(&env(&[])).unwrap_err().to_string();
        assert!(err.contains("no profile 'nope'"), "{err}");
        let explicit = CredentialSources { explicit: Some(creds("AKIDSET", "s4")), profile: None, file: None };
        assert_eq!(
            explicit.resolve(&env(&[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "s3")])).unwrap().access_key_id,
            "AKIDSET"
        );
        assert!(!format!("{:?}", creds("AKID", "very-secret")).contains("very-secret"));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dhaf-route53-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn term_values_and_names() {
        assert_eq!(value_term("\"dhaf term-42\""), Some(42));
        assert_eq!(value_term("\"v=spf1 -all\""), None);
        assert!(same_name("WWW.foo.com.", "www.foo.com"));
        assert_eq!(tag("<E><Code>NoSuchHostedZone</Code><Message>a &amp; b</Message></E>", "Message").as_deref(), Some("a & b"));
    }
}
