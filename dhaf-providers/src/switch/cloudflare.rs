//! The `cloudflare` switcher: one proxied DNS record per service, pointed at the active entry point.
//!
//! ```yaml
//! switcher:
//!   type: cloudflare
//!   api-token: ${CF_API_TOKEN}   # needs Zone.DNS edit on the zone; never logged
//!   zone: foo.com
//!   api-url: https://api.cloudflare.com/client/v4   # default; for tests and API-compatible providers
//!   timeout: 10                  # seconds per request (default 10)
//!   request-budget: 1200         # requests per 5 minutes this switcher allows itself (default 1200)
//! ```
//!
//! Start-up ([`Switcher::init`]) only verifies and reads, on every node: the token
//! (`GET /user/tokens/verify`), the zone (exactly one, active, not paused) and the service domain's
//! records (`A`, or `AAAA` when entry points are IPv6). It writes nothing: a missing record is fine
//! (`current()` says "none" and the elected leader creates it), and an unproxied one is refused
//! (resolvers would cache the old address for the record's TTL).
//!
//! Every write is the leader's, in [`Switcher::switch`], under its fencing token: it creates the
//! record when there is none, PATCHes its `content` (and `type` when moving between IPv4 and IPv6)
//! and writes `dhaf term-N` in its `comment`, so every change in the zone's audit log traces to a
//! leader term; then it reads the record back and fails unless it shows the new address. A record
//! whose comment names a newer term than the caller's is never overwritten: a newer leader wrote it.
//!
//! Several records for the domain would spread visitors over all of them. Duplicates dhaf made
//! itself (their comment says so) are left-overs: [`Switcher::current`] reports "none" so the
//! leader repairs, and the repairing switch deletes all but the newest. Records dhaf did not make
//! are never touched: every read and switch fails with an error naming them, until someone
//! deletes them. [`Switcher::current`] reads the records themselves, so the leader's periodic
//! read-back notices an edit made behind dhaf's back (or a deleted record) and repairs it.
//!
//! Failures: a `success: false` envelope shows Cloudflare's `errors[].message`; 429 carries its
//! `retry-after`; 5xx, timeouts and connection errors are transient. A call retries at most twice,
//! quickly, and only when the request is safe to repeat; the leader retries switches with its own
//! backoff. A client-side sliding window keeps this switcher under Cloudflare's 1,200 requests per
//! 5 minutes and refuses a request that would exceed it, so a retry storm cannot get the token
//! locked out.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::{EntryPoint, FencingToken};
use dhaf_core::provider::{BuildContext, ProviderError, Switcher};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::error_chain;

/// Cloudflare's public API.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";

/// The window of Cloudflare's global rate limit.
const BUDGET_WINDOW: Duration = Duration::from_secs(300);

/// Attempts per call, the first included: quick retries only, the leader has its own backoff.
const ATTEMPTS: u32 = 3;

/// A `retry-after` longer than this is handed to the caller instead of waited out in the call.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);

/// Pages of records read at most while looking for one name; a bound against a misbehaving server.
const MAX_PAGES: u32 = 50;

/// The API token; shown as `***` so it stays out of logs, Debug output and errors.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A sliding window of the request times of the last [`BUDGET_WINDOW`].
#[derive(Debug)]
struct Budget {
    limit: usize,
    sent: VecDeque<Instant>,
}

impl Budget {
    /// Take one request from the budget, or say how long until one is free.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= BUDGET_WINDOW) {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.limit {
            let oldest = *self.sent.front().expect("limit is at least 1");
            return Err((oldest + BUDGET_WINDOW).saturating_duration_since(now));
        }
        self.sent.push_back(now);
        Ok(())
    }
}

/// The comment of records dhaf creates or switches: `dhaf term-N`.
const COMMENT_PREFIX: &str = "dhaf term-";

/// The comment earlier versions gave the record they created at start, on every node; such
/// records are dhaf's own left-overs too.
const LEGACY_COMMENT: &str = "dhaf: created at start";

/// A DNS record as the API returns it (only what dhaf reads).
#[derive(Debug, Clone, Deserialize)]
struct Record {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    content: String,
    #[serde(default)]
    proxied: Option<bool>,
    #[serde(default)]
    comment: Option<String>,
}

impl Record {
    /// Whether dhaf wrote this record (its comment says so).
    fn made_by_dhaf(&self) -> bool {
        self.comment.as_deref().is_some_and(|c| c.starts_with(COMMENT_PREFIX) || c == LEGACY_COMMENT)
    }

    /// The leader term in the comment, for records a leader wrote.
    fn term(&self) -> Option<i64> {
        self.comment.as_deref()?.strip_prefix(COMMENT_PREFIX)?.trim().parse().ok()
    }

    fn describe(&self) -> String {
        format!("{} {} {}", self.id, self.kind, self.content)
    }
}

/// What the records named like the service's domain amount to.
#[derive(Debug)]
enum Found {
    /// None yet: the leader creates it.
    Missing,
    /// Exactly one: the record dhaf uses.
    One(Record),
    /// Several, all made by dhaf: it keeps the one of the newest term and may delete the rest.
    Leftovers { keep: Record, extra: Vec<Record> },
    /// Several, and some of them dhaf did not make: it touches none of them.
    Foreign { all: Vec<Record> },
}

impl Found {
    fn of(mut records: Vec<Record>) -> Found {
        if records.len() <= 1 {
            return records.pop().map_or(Found::Missing, Found::One);
        }
        if !records.iter().all(Record::made_by_dhaf) {
            return Found::Foreign { all: records };
        }
        // The newest term's record is the one the last leader switched; ties go to the lowest id,
        // so every node picks the same.
        records.sort_by(|a, b| b.term().cmp(&a.term()).then_with(|| a.id.cmp(&b.id)));
        let keep = records.remove(0);
        Found::Leftovers { keep, extra: records }
    }
}

#[derive(Debug, Deserialize)]
struct Zone {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    paused: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    per_page: Option<u64>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    total_count: Option<u64>,
    #[serde(default)]
    total_pages: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

/// A failed request, with what the retry policy needs to know about it.
#[derive(Debug)]
struct Failure {
    kind: FailureKind,
    error: ProviderError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// Not sent: the client-side budget is spent.
    Budget,
    /// 429: refused before being carried out.
    RateLimited,
    /// 404: the thing asked for does not exist (a deleted record).
    NotFound,
    /// Anything else; [`ProviderError`] says whether it is transient.
    Other,
}

impl Failure {
    fn other(error: ProviderError) -> Self {
        Failure { kind: FailureKind::Other, error }
    }
}

impl From<Failure> for ProviderError {
    fn from(f: Failure) -> Self {
        f.error
    }
}

/// A switcher that points a proxied Cloudflare DNS record at the active entry point.
#[derive(Debug)]
pub struct CloudflareSwitcher {
    service: String,
    domain: String,
    entry_points: Vec<EntryPoint>,
    zone: String,
    api_url: String,
    token: Secret,
    timeout: Duration,
    http: reqwest::Client,
    budget: Mutex<Budget>,
    /// The zone's id, found once.
    zone_id: Mutex<Option<String>>,
}

impl CloudflareSwitcher {
    /// Build from the service's `switcher` section (no I/O: [`Switcher::init`] talks to the API).
    pub fn from_config(section: &ProviderConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let f = section.fields();
        let token = f.required_string("api-token").unwrap_or_default();
        if f.has("api-token") && token.trim().is_empty() {
            f.problem(f.key("api-token"), "must not be empty");
        }
        let zone = f.required_string("zone").unwrap_or_default().trim().trim_end_matches('.').to_ascii_lowercase();
        let api_url = f.string("api-url").unwrap_or_else(|| DEFAULT_API_URL.into()).trim_end_matches('/').to_string();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            f.problem(f.key("api-url"), format!("'{api_url}' is not an http(s) URL"));
        }
        let timeout = f.seconds("timeout", 10, 1, 300);
        let limit = f.int("request-budget", 1200, 1, 1_000_000) as usize;
        f.finish();
        let svc = ctx.service();
        let domain = svc.domain.trim_end_matches('.').to_ascii_lowercase();
        if !zone.is_empty() && domain != zone && !domain.ends_with(&format!(".{zone}")) {
            f.problem(f.key("zone"), format!("the service's domain {domain} is not in zone {zone}"));
        }
        let http = crate::http::client(&f, timeout);
        f.into_result(CloudflareSwitcher {
            service: svc.name.clone(),
            domain,
            entry_points: svc.entry_points.clone(),
            zone,
            api_url,
            token: Secret(token),
            timeout,
            http,
            budget: Mutex::new(Budget { limit, sent: VecDeque::new() }),
            zone_id: Mutex::new(None),
        })
    }

    /// Remove the token from text that came from elsewhere (a server echoing headers, say).
    fn scrub(&self, text: &str) -> String {
        if self.token.0.len() >= 4 {
            text.replace(&self.token.0, "***")
        } else {
            text.to_string()
        }
    }

    /// One request; `Ok` with the envelope of a successful answer.
    async fn attempt(&self, method: &Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<Envelope, Failure> {
        let taken = {
            let mut budget = self.budget.lock().unwrap();
            budget.take(Instant::now()).map_err(|wait| (wait, budget.limit))
        };
        if let Err((wait, limit)) = taken {
            let error = ProviderError::Transient {
                message: format!(
                    "{method} {path}: not sent, the budget of {limit} Cloudflare requests per 5 minutes is spent (next in {} s)",
                    wait.as_secs() + 1
                ),
                retry_after: Some(wait),
            };
            return Err(Failure { kind: FailureKind::Budget, error });
        }
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.api_url)).bearer_auth(&self.token.0).query(query);
        if let Some(body) = body {
            req = req.json(body);
        }
        let what = format!("{method} {path}");
        let resp = req.send().await.map_err(|e| {
            Failure::other(if e.is_timeout() {
                ProviderError::transient(format!("{what}: timed out after {}", crate::check::secs(self.timeout)))
            } else {
                ProviderError::transient(self.scrub(&format!("{what}: cannot reach {}: {}", self.api_url, error_chain(&e))))
            })
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| {
            Failure::other(if e.is_timeout() {
                ProviderError::transient(format!("{what}: timed out after {}", crate::check::secs(self.timeout)))
            } else {
                ProviderError::transient(format!("{what}: the answer broke off: {}", error_chain(&e)))
            })
        })?;
        let envelope = serde_json::from_str::<Envelope>(&text).ok();
        let reason = || self.scrub(&describe_failure(envelope.as_ref(), &text));
        if status == StatusCode::TOO_MANY_REQUESTS {
            let after = retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default();
            let error = ProviderError::Transient {
                message: format!("{what}: rate limited by Cloudflare (HTTP 429{after}): {}", reason()),
                retry_after,
            };
            return Err(Failure { kind: FailureKind::RateLimited, error });
        }
        if status.is_server_error() {
            let message = format!("{what}: Cloudflare failed (HTTP {}): {}", status.as_u16(), reason());
            return Err(Failure::other(ProviderError::Transient { message, retry_after }));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::other(ProviderError::permanent(format!(
                "{what}: the api-token was refused (HTTP {}): {}; check the token and that it may edit DNS in zone {}",
                status.as_u16(),
                reason(),
                self.zone
            ))));
        }
        match envelope {
            Some(env) if status.is_success() && env.success == Some(true) => Ok(env),
            // Cloudflare documents its DELETE answer as `{"result": {"id": …}}`, without `success`.
            Some(env) if status.is_success() && *method == Method::DELETE && env.success.is_none() => Ok(env),
            _ => {
                let kind = if status == StatusCode::NOT_FOUND { FailureKind::NotFound } else { FailureKind::Other };
                Err(Failure { kind, error: ProviderError::permanent(format!("{what}: HTTP {}: {}", status.as_u16(), reason())) })
            }
        }
    }

    /// A request with a couple of quick retries for transient failures. A request that is not
    /// safe to repeat (creating a record) is retried only when it was rate limited, i.e. surely
    /// not carried out.
    async fn call(&self, method: Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<Envelope, Failure> {
        let repeatable = method != Method::POST;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(&method, path, query, body).await {
                Ok(env) => return Ok(env),
                Err(f) => f,
            };
            let ProviderError::Transient { message, retry_after } = &failure.error else { return Err(failure) };
            let rate_limited = failure.kind == FailureKind::RateLimited;
            if attempt >= ATTEMPTS || failure.kind == FailureKind::Budget || !(repeatable || rate_limited) {
                return Err(failure);
            }
            let wait = match retry_after {
                Some(after) if *after > MAX_INLINE_WAIT => return Err(failure),
                Some(after) => (*after).max(delay),
                None => delay,
            };
            tracing::debug!(service = %self.service, error = %message, retry_in = ?wait, "cloudflare request failed; retrying");
            tokio::time::sleep(wait).await;
            delay *= 2;
            attempt += 1;
        }
    }

    async fn verify_token(&self) -> Result<(), ProviderError> {
        let env = self.call(Method::GET, "/user/tokens/verify", &[], None).await?;
        match env.result.get("status").and_then(Value::as_str) {
            Some("active") => Ok(()),
            Some(status) => Err(ProviderError::permanent(format!(
                "the api-token is {status}, not active; create a new token with DNS edit permission for zone {}",
                self.zone
            ))),
            None => Err(ProviderError::permanent("GET /user/tokens/verify: the answer has no token status")),
        }
    }

    async fn zone_id(&self) -> Result<String, ProviderError> {
        if let Some(id) = self.zone_id.lock().unwrap().clone() {
            return Ok(id);
        }
        let env = self.call(Method::GET, "/zones", &[("name", self.zone.clone())], None).await?;
        let zones: Vec<Zone> = parse(&env.result, "GET /zones")?;
        let zone = match zones.len() {
            1 => zones.into_iter().next().expect("one zone"),
            0 => {
                return Err(ProviderError::permanent(format!(
                    "zone {} not found: check `zone` and that the api-token's zone resources include it",
                    self.zone
                )))
            }
            n => return Err(ProviderError::permanent(format!("{n} zones are named {}; dhaf needs exactly one", self.zone))),
        };
        if let Some(status) = zone.status.as_deref().filter(|s| *s != "active") {
            return Err(ProviderError::permanent(format!(
                "zone {} is {status}, not active: finish moving its DNS to Cloudflare first",
                self.zone
            )));
        }
        if zone.paused == Some(true) {
            return Err(ProviderError::permanent(format!(
                "zone {} is paused, so Cloudflare does not proxy it: unpause it in the dashboard",
                self.zone
            )));
        }
        *self.zone_id.lock().unwrap() = Some(zone.id.clone());
        Ok(zone.id)
    }

    /// The record types the service's entry points need.
    fn record_types(&self) -> Vec<&'static str> {
        let mut types = Vec::new();
        if self.entry_points.iter().any(|ep| ep.ip.is_ipv4()) {
            types.push("A");
        }
        if self.entry_points.iter().any(|ep| ep.ip.is_ipv6()) {
            types.push("AAAA");
        }
        types
    }

    /// Every A/AAAA record named like the service's domain, following pagination.
    async fn list_records(&self, zone_id: &str) -> Result<Vec<Record>, ProviderError> {
        let path = format!("/zones/{zone_id}/dns_records");
        let mut records = Vec::new();
        for kind in self.record_types() {
            let mut page = 1u32;
            loop {
                let query =
                    [("name", self.domain.clone()), ("type", kind.to_string()), ("page", page.to_string()), ("per_page", "100".into())];
                let env = self.call(Method::GET, &path, &query, None).await?;
                let batch: Vec<Record> = parse(&env.result, &format!("GET {path}"))?;
                let n = batch.len() as u64;
                records.extend(batch.into_iter().filter(|r| r.kind == kind && r.name.eq_ignore_ascii_case(&self.domain)));
                let info = env.result_info.unwrap_or_default();
                let page_no = info.page.unwrap_or(u64::from(page));
                let per_page = info.per_page.unwrap_or(n).max(1);
                let last = n == 0
                    || info.count.unwrap_or(n) < per_page
                    || info.total_pages.is_some_and(|t| page_no >= t)
                    || info.total_count.is_some_and(|t| page_no * per_page >= t);
                if last {
                    break;
                }
                page += 1;
                if page > MAX_PAGES {
                    return Err(ProviderError::permanent(format!(
                        "GET {path}: more than {MAX_PAGES} pages of records for {}",
                        self.domain
                    )));
                }
            }
        }
        Ok(records)
    }

    /// The service's records, read now.
    async fn found(&self, zone_id: &str) -> Result<Found, ProviderError> {
        Ok(Found::of(self.list_records(zone_id).await?))
    }

    /// The error for records dhaf did not make beside others, logged loudly: it stays until
    /// someone deletes them, and dhaf must not pick one of them.
    fn refuse_foreign(&self, all: &[Record]) -> ProviderError {
        let foreign: Vec<String> = all.iter().filter(|r| !r.made_by_dhaf()).map(Record::describe).collect();
        let listed: Vec<String> = all.iter().map(Record::describe).collect();
        let message = format!(
            "{} has {} address records ({}), and dhaf did not make {} of them ({}): delete the extra records in Cloudflare \
             so exactly one proxied A or AAAA record is left; dhaf deletes only duplicates it made itself, \
             and until then visitors are spread over all of them and failover cannot work",
            self.domain,
            all.len(),
            listed.join(", "),
            foreign.len(),
            foreign.join(", ")
        );
        tracing::error!(service = %self.service, domain = %self.domain, "{message}");
        ProviderError::permanent(message)
    }

    async fn create_record(&self, zone_id: &str, ep: &EntryPoint, comment: &str) -> Result<Record, ProviderError> {
        let path = format!("/zones/{zone_id}/dns_records");
        let body = json!({
            "type": record_type(ep.ip),
            "name": self.domain,
            "content": ep.ip.to_string(),
            "proxied": true,
            "ttl": 1,
            "comment": comment,
        });
        let env = self.call(Method::POST, &path, &[], Some(&body)).await?;
        let record: Record = parse(&env.result, &format!("POST {path}"))?;
        tracing::info!(service = %self.service, domain = %self.domain, to = %ep.name, "created the dns record");
        Ok(record)
    }

    async fn delete_record(&self, zone_id: &str, record: &Record) -> Result<(), ProviderError> {
        let path = format!("/zones/{zone_id}/dns_records/{}", record.id);
        // Cloudflare's API document requires a JSON body on DELETE, even an empty one.
        match self.call(Method::DELETE, &path, &[], Some(&json!({}))).await {
            // Already gone (a retried call whose first answer was lost): what we wanted.
            Ok(_) => {}
            Err(f) if f.kind == FailureKind::NotFound => {}
            Err(f) => return Err(f.error),
        }
        tracing::info!(
            service = %self.service,
            domain = %self.domain,
            record = %record.describe(),
            "deleted a duplicate dns record dhaf had made"
        );
        Ok(())
    }

    /// Read the record by id; `None` when it was deleted.
    async fn read_record(&self, zone_id: &str, record_id: &str) -> Result<Option<Record>, ProviderError> {
        let path = format!("/zones/{zone_id}/dns_records/{record_id}");
        match self.call(Method::GET, &path, &[], None).await {
            Ok(env) => Ok(Some(parse(&env.result, &format!("GET {path}"))?)),
            // Cloudflare answers 404 (code 81044) for a record that is gone.
            Err(f) if f.kind == FailureKind::NotFound => Ok(None),
            Err(f) => Err(f.error),
        }
    }

    /// Refuse to write over a record a newer leader wrote: this caller's term is over.
    fn fence(&self, records: &[&Record], token: FencingToken) -> Result<(), ProviderError> {
        match records.iter().filter_map(|r| Some((r, r.term()?))).find(|(_, term)| *term > token.0) {
            Some((r, term)) => Err(ProviderError::permanent(format!(
                "record {} of {} was written by term-{term}, newer than this leader's {token}: not overwritten",
                r.id, self.domain
            ))),
            None => Ok(()),
        }
    }

    fn entry_point_of(&self, record: &Record) -> Option<String> {
        let ip: IpAddr = record.content.parse().ok()?;
        self.entry_points.iter().find(|ep| ep.ip == ip).map(|ep| ep.name.clone())
    }
}

#[async_trait]
impl Switcher for CloudflareSwitcher {
    async fn init(&self) -> Result<(), ProviderError> {
        self.verify_token().await?;
        let zone_id = self.zone_id().await?;
        let points_at = match self.found(&zone_id).await? {
            Found::Missing => "(no record yet; the leader creates it)".to_string(),
            Found::One(record) => {
                if record.proxied != Some(true) {
                    return Err(ProviderError::permanent(format!(
                        "the {} record of {} ({}) is not proxied: turn on the proxy (orange cloud) for it in Cloudflare, \
                         or resolvers keep the old address for its TTL after every switch",
                        record.kind, self.domain, record.content
                    )));
                }
                record.content
            }
            // Not a reason to stop this node: the leader cleans its own left-overs, and foreign
            // records are reported at every read-back until someone removes them.
            Found::Leftovers { keep, extra } => {
                tracing::warn!(
                    service = %self.service,
                    domain = %self.domain,
                    duplicates = extra.len(),
                    "duplicate dns records dhaf made; the leader deletes them at its next switch"
                );
                keep.content
            }
            Found::Foreign { all } => {
                self.refuse_foreign(&all);
                "(several records)".to_string()
            }
        };
        tracing::info!(service = %self.service, domain = %self.domain, %points_at, "cloudflare switcher ready");
        Ok(())
    }

    async fn current(&self) -> Result<Option<String>, ProviderError> {
        let zone_id = self.zone_id().await?;
        match self.found(&zone_id).await? {
            Found::Missing => Ok(None),
            Found::One(record) => Ok(self.entry_point_of(&record)),
            // Several addresses are not one entry point: "none" makes the leader repair, and its
            // switch deletes the duplicates.
            Found::Leftovers { extra, .. } => {
                tracing::warn!(
                    service = %self.service,
                    domain = %self.domain,
                    duplicates = extra.len(),
                    "duplicate dns records dhaf made; the leader deletes them at its next switch"
                );
                Ok(None)
            }
            Found::Foreign { all } => Err(self.refuse_foreign(&all)),
        }
    }

    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        let zone_id = self.zone_id().await?;
        let comment = format!("dhaf {token}");
        let want_type = record_type(to.ip);
        let record = match self.found(&zone_id).await? {
            Found::Foreign { all } => return Err(self.refuse_foreign(&all)),
            // None yet (first start, or deleted behind dhaf's back): create it where it should point.
            Found::Missing => self.create_record(&zone_id, to, &comment).await?,
            Found::One(record) => {
                self.fence(&[&record], token)?;
                record
            }
            Found::Leftovers { keep, extra } => {
                self.fence(&extra.iter().chain([&keep]).collect::<Vec<_>>(), token)?;
                for r in &extra {
                    self.delete_record(&zone_id, r).await?;
                }
                keep
            }
        };
        // A record just created (or already right, in this term) needs no second write.
        let done = record.content.parse::<IpAddr>().ok() == Some(to.ip)
            && record.kind == want_type
            && record.comment.as_deref() == Some(comment.as_str());
        if !done {
            let path = format!("/zones/{zone_id}/dns_records/{}", record.id);
            let mut body = json!({ "content": to.ip.to_string(), "comment": comment });
            if record.kind != want_type {
                body["type"] = json!(want_type);
            }
            self.call(Method::PATCH, &path, &[], Some(&body)).await?;
        }
        let back = self
            .read_record(&zone_id, &record.id)
            .await?
            .ok_or_else(|| ProviderError::transient(format!("the record of {} vanished right after the switch", self.domain)))?;
        let shows: Option<IpAddr> = back.content.parse().ok();
        if shows != Some(to.ip) || back.kind != want_type {
            return Err(ProviderError::transient(format!(
                "read back after the switch: the record of {} shows {} {}, expected {want_type} {}",
                self.domain, back.kind, back.content, to.ip
            )));
        }
        tracing::info!(service = %self.service, domain = %self.domain, to = %to.name, ip = %to.ip, %token, "dns record switched");
        Ok(())
    }
}

fn record_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "A"
    } else {
        "AAAA"
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Result<T, ProviderError> {
    serde_json::from_value(value.clone()).map_err(|e| ProviderError::permanent(format!("{what}: unexpected answer: {e}")))
}

/// Why a request failed, from Cloudflare's envelope, a validator's problem document, or the text.
fn describe_failure(envelope: Option<&Envelope>, text: &str) -> String {
    if let Some(env) = envelope {
        if !env.errors.is_empty() {
            let msgs: Vec<String> = env
                .errors
                .iter()
                .map(|e| match e.code {
                    Some(code) => format!("{} (code {code})", e.message),
                    None => e.message.clone(),
                })
                .collect();
            return msgs.join("; ");
        }
    }
    // RFC 7807 problem documents (validating proxies and mocks answer with these).
    if let Ok(problem) = serde_json::from_str::<Value>(text) {
        if let Some(title) = problem.get("title").and_then(Value::as_str) {
            let mut out = title.to_string();
            if let Some(detail) = problem.get("detail").and_then(Value::as_str) {
                out.push_str(&format!(": {detail}"));
            }
            if let Some(items) = problem.get("validation").and_then(Value::as_array) {
                let msgs: Vec<&str> = items.iter().filter_map(|v| v.get("message").and_then(Value::as_str)).take(5).collect();
                if !msgs.is_empty() {
                    out.push_str(&format!(" [{}]", msgs.join("; ")));
                }
            }
            return out;
        }
    }
    let text = text.trim();
    if text.is_empty() {
        "empty answer".into()
    } else {
        let cut: String = text.chars().take(200).collect();
        format!("unexpected answer: {cut}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_slides() {
        let start = Instant::now();
        let mut b = Budget { limit: 3, sent: VecDeque::new() };
        for i in 0..3 {
            b.take(start + Duration::from_secs(i * 10)).unwrap();
        }
        let wait = b.take(start + Duration::from_secs(100)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(200));
        // The oldest request left the window: one more fits, and no more.
        b.take(start + Duration::from_secs(300)).unwrap();
        assert!(b.take(start + Duration::from_secs(305)).is_err());
        b.take(start + Duration::from_secs(310)).unwrap();
    }

    #[test]
    fn failures_are_described_from_the_envelope_or_the_problem_document() {
        let env: Envelope =
            serde_json::from_str(r#"{"success":false,"errors":[{"code":9109,"message":"Invalid access token"}],"result":null}"#).unwrap();
        assert_eq!(describe_failure(Some(&env), ""), "Invalid access token (code 9109)");
        let problem = r#"{"title":"Invalid request","detail":"bad","validation":[{"message":"content must match format \"ipv4\""}]}"#;
        assert_eq!(describe_failure(None, problem), "Invalid request: bad [content must match format \"ipv4\"]");
        assert_eq!(describe_failure(None, "<html>oops</html>"), "unexpected answer: <html>oops</html>");
    }
}
