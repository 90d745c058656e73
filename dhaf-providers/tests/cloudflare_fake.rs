//! The `cloudflare` switcher against a stateful fake of Cloudflare's API on 127.0.0.1: zones,
//! records that really change, pagination, error envelopes, 429s, 5xx, slow answers and edits made
//! behind dhaf's back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::FencingToken;
use dhaf_core::provider::{ProviderError, Switcher};
use serde_json::{json, Value};

const TOKEN: &str = "cf-secret-token-1234567890";
const ZONE_ID: &str = "0123456789abcdef0123456789abcdef";

/// A canned misbehaviour for the next request whose `METHOD /path` contains `matching`: an answer
/// of its own (`body`), or, with a null body, only a delay before the normal answer.
#[derive(Clone)]
struct Fault {
    matching: &'static str,
    status: u16,
    retry_after: Option<u64>,
    body: Value,
    delay: Duration,
}

#[derive(Clone)]
struct FakeRecord {
    id: String,
    kind: String,
    name: String,
    content: String,
    proxied: bool,
    comment: Option<String>,
}

impl FakeRecord {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "zone_id": ZONE_ID, "zone_name": "foo.com", "type": self.kind, "name": self.name,
            "content": self.content, "proxied": self.proxied, "proxiable": true, "ttl": 1, "comment": self.comment,
            "created_on": "2024-01-01T05:20:00Z", "modified_on": "2024-01-01T05:20:00Z", "tags": [], "meta": {},
        })
    }
}

struct FakeState {
    token_status: &'static str,
    zones: Vec<Value>,
    records: Vec<FakeRecord>,
    page_size: usize,
    next_id: u64,
    faults: VecDeque<Fault>,
    /// Accept PATCHes but change nothing, like an eventually consistent or broken far end.
    ignore_patches: bool,
    /// Every request as `METHOD /path?query`.
    log: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    url: String,
}

impl Fake {
    async fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState {
            token_status: "active",
            zones: vec![json!({"id": ZONE_ID, "name": "foo.com", "status": "active", "paused": false})],
            records: Vec::new(),
            page_size: 2,
            next_id: 1,
            faults: VecDeque::new(),
            ignore_patches: false,
            log: Vec::new(),
        }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { state, url: format!("http://{addr}/client/v4") }
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn add_record(&self, kind: &str, name: &str, content: &str, proxied: bool) -> String {
        self.add_commented(kind, name, content, proxied, None)
    }

    fn add_commented(&self, kind: &str, name: &str, content: &str, proxied: bool, comment: Option<&str>) -> String {
        self.with(|s| {
            let id = format!("rec{:029}", s.next_id);
            s.next_id += 1;
            s.records.push(FakeRecord {
                id: id.clone(),
                kind: kind.into(),
                name: name.into(),
                content: content.into(),
                proxied,
                comment: comment.map(str::to_string),
            });
            id
        })
    }

    fn record(&self, name: &str) -> FakeRecord {
        self.with(|s| {
            let found: Vec<_> = s.records.iter().filter(|r| r.name == name).cloned().collect();
            assert_eq!(found.len(), 1, "expected one record named {name}");
            found[0].clone()
        })
    }

    fn fault(&self, matching: &'static str, status: u16, retry_after: Option<u64>) {
        let body = json!({"success": false, "errors": [{"code": 10000, "message": format!("fake fault {status}")}], "messages": [], "result": null});
        self.with(|s| s.faults.push_back(Fault { matching, status, retry_after, body, delay: Duration::ZERO }));
    }

    fn slow(&self, matching: &'static str, delay: Duration) {
        self.with(|s| s.faults.push_back(Fault { matching, status: 200, retry_after: None, body: Value::Null, delay }));
    }

    fn count(&self, prefix: &str) -> usize {
        self.with(|s| s.log.iter().filter(|l| l.starts_with(prefix)).count())
    }

    fn log(&self) -> Vec<String> {
        self.with(|s| s.log.clone())
    }

    /// The records named `name`, in the order they were made.
    fn records(&self, name: &str) -> Vec<FakeRecord> {
        self.with(|s| s.records.iter().filter(|r| r.name == name).cloned().collect())
    }

    /// Requests that changed something (or tried to).
    fn writes(&self) -> usize {
        self.count("POST ") + self.count("PATCH ") + self.count("DELETE ")
    }
}

fn envelope(status: u16, result: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    (code, axum::Json(json!({"success": true, "errors": [], "messages": [], "result": result}))).into_response()
}

fn failure(status: u16, code: u32, message: &str) -> Response {
    let body = json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%3A", ":").replace("%3a", ":"))
    })
}

fn valid_content(kind: &str, content: &str) -> bool {
    match kind {
        "A" => content.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => content.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => false,
    }
}

async fn handle(State(state): State<Arc<Mutex<FakeState>>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().strip_prefix("/client/v4").unwrap_or("").to_string();
    let line = format!("{method} {path}{}", uri.query().map(|q| format!("?{q}")).unwrap_or_default());
    let fault = {
        let mut s = state.lock().unwrap();
        s.log.push(line.clone());
        match s.faults.front() {
            Some(f) if line.contains(f.matching) => s.faults.pop_front(),
            _ => None,
        }
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return failure(403, 9109, "Invalid access token");
    }
    if let Some(f) = fault {
        tokio::time::sleep(f.delay).await;
        // A fault without a body only slows the answer down.
        if !f.body.is_null() {
            let mut resp = (StatusCode::from_u16(f.status).unwrap(), axum::Json(f.body)).into_response();
            if let Some(after) = f.retry_after {
                resp.headers_mut().insert("retry-after", after.to_string().parse().unwrap());
            }
            return resp;
        }
    }
    let mut s = state.lock().unwrap();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["user", "tokens", "verify"]) => envelope(200, json!({"id": "tok1", "status": s.token_status})),
        ("GET", ["zones"]) => {
            let name = query_param(&uri, "name");
            let zones: Vec<Value> = s.zones.iter().filter(|z| name.as_deref().is_none_or(|n| z["name"] == n)).cloned().collect();
            let n = zones.len();
            let mut resp = json!({"success": true, "errors": [], "messages": [], "result": zones});
            resp["result_info"] = json!({"page": 1, "per_page": 20, "count": n, "total_count": n, "total_pages": 1});
            axum::Json(resp).into_response()
        }
        ("GET", ["zones", zone, "dns_records"]) if *zone == ZONE_ID => {
            let name = query_param(&uri, "name");
            let kind = query_param(&uri, "type");
            let page: usize = query_param(&uri, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let per_page: usize = query_param(&uri, "per_page").and_then(|p| p.parse().ok()).unwrap_or(100).min(s.page_size);
            let all: Vec<Value> = s
                .records
                .iter()
                .filter(|r| name.as_deref().is_none_or(|n| r.name == n) && kind.as_deref().is_none_or(|k| r.kind == k))
                .map(FakeRecord::json)
                .collect();
            let total = all.len();
            let items: Vec<Value> = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
            let info = json!({"page": page, "per_page": per_page, "count": items.len(), "total_count": total,
                              "total_pages": total.div_ceil(per_page)});
            axum::Json(json!({"success": true, "errors": [], "messages": [], "result": items, "result_info": info})).into_response()
        }
        ("POST", ["zones", zone, "dns_records"]) if *zone == ZONE_ID => {
            let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let kind = b["type"].as_str().unwrap_or_default().to_string();
            let content = b["content"].as_str().unwrap_or_default().to_string();
            if !valid_content(&kind, &content) {
                return failure(400, 9005, &format!("Content for {kind} record is invalid."));
            }
            let id = format!("rec{:029}", s.next_id);
            s.next_id += 1;
            let rec = FakeRecord {
                id,
                kind,
                name: b["name"].as_str().unwrap_or_default().into(),
                content,
                proxied: b["proxied"].as_bool().unwrap_or(false),
                comment: b["comment"].as_str().map(str::to_string),
            };
            s.records.push(rec.clone());
            envelope(200, rec.json())
        }
        ("DELETE", ["zones", zone, "dns_records", id]) if *zone == ZONE_ID => {
            let Some(at) = s.records.iter().position(|r| r.id == *id) else {
                return failure(404, 81044, "Record does not exist.");
            };
            s.records.remove(at);
            envelope(200, json!({"id": id}))
        }
        (m @ ("GET" | "PATCH"), ["zones", zone, "dns_records", id]) if *zone == ZONE_ID => {
            let ignore = s.ignore_patches;
            let Some(rec) = s.records.iter_mut().find(|r| r.id == *id) else {
                return failure(404, 81044, "Record does not exist.");
            };
            if m == "PATCH" {
                let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let kind = b["type"].as_str().unwrap_or(&rec.kind).to_string();
                let content = b["content"].as_str().unwrap_or(&rec.content).to_string();
                if !valid_content(&kind, &content) {
                    return failure(400, 9005, &format!("Content for {kind} record is invalid."));
                }
                if !ignore {
                    rec.kind = kind;
                    rec.content = content;
                    if let Some(c) = b["comment"].as_str() {
                        rec.comment = Some(c.into());
                    }
                    if let Some(p) = b["proxied"].as_bool() {
                        rec.proxied = p;
                    }
                }
            }
            envelope(200, rec.json())
        }
        _ => failure(404, 7003, "No route for the URI"),
    }
}

#[path = "support/common.rs"]
mod common;
#[path = "support/switcher.rs"]
mod switcher_support;

use common::ep;

fn config() -> String {
    switcher_support::config("www.foo.com", &switcher_support::THREE, "cloudflare")
}

fn build_with(settings: &str) -> Result<Arc<dyn Switcher>, ConfigError> {
    switcher_support::build(&format!("{}{settings}", config()))
}

fn switcher(fake: &Fake, extra: &str) -> Arc<dyn Switcher> {
    let settings = format!("      api-token: {TOKEN}\n      zone: foo.com\n      api-url: {}\n{extra}", fake.url);
    build_with(&settings).expect("valid settings")
}

/// The text of an error, checked to hold no secret.
fn text(e: &ProviderError) -> String {
    common::checked_text(e, TOKEN)
}

#[tokio::test]
async fn start_up_finds_the_record_and_switching_changes_it_with_the_token_in_the_comment() {
    let fake = Fake::start().await;
    fake.add_record("A", "other.foo.com", "198.51.100.9", true);
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-1"));

    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(7)).await.unwrap();
    let rec = fake.record("www.foo.com");
    assert_eq!((rec.kind.as_str(), rec.content.as_str(), rec.comment.as_deref()), ("A", "192.0.2.2", Some("dhaf term-7")));
    assert!(rec.proxied);
    assert_eq!(fake.record("other.foo.com").content, "198.51.100.9", "other records are left alone");
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-2"));

    let log = fake.log();
    assert!(log[0].starts_with("GET /user/tokens/verify"), "{log:#?}");
    assert!(log[1].starts_with("GET /zones?name=foo.com"), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("/dns_records?name=www.foo.com&type=A&")), "{log:#?}");
    assert!(log.iter().any(|l| l.starts_with("PATCH /zones/")), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("type=AAAA") && !l.contains("name=www.foo.com")), "{log:#?}");
}

#[tokio::test]
async fn start_up_with_no_record_creates_nothing_and_only_the_leaders_switch_creates_one() {
    let fake = Fake::start().await;
    // Three nodes start at the same moment over a zone without the record.
    let nodes: Vec<_> = (0..3).map(|_| switcher(&fake, "")).collect();
    let (a, b, c) = tokio::join!(nodes[0].init(), nodes[1].init(), nodes[2].init());
    for r in [a, b, c] {
        r.expect("a missing record does not stop a node");
    }
    assert_eq!(fake.writes(), 0, "start-up only reads: {:#?}", fake.log());
    for sw in &nodes {
        assert_eq!(sw.current().await.unwrap(), None, "no record points at no entry point");
    }
    assert_eq!(fake.writes(), 0);

    // The elected leader's first switch creates it, proxied, with its term.
    nodes[1].switch(&ep("ep-1", "192.0.2.1"), FencingToken(3)).await.unwrap();
    let rec = fake.record("www.foo.com");
    assert_eq!((rec.kind.as_str(), rec.content.as_str(), rec.proxied), ("A", "192.0.2.1", true));
    assert_eq!(rec.comment.as_deref(), Some("dhaf term-3"));
    assert_eq!((fake.count("POST "), fake.writes()), (1, 1), "one create, nothing else: {:#?}", fake.log());
    for sw in &nodes {
        assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-1"));
    }
    // A node restarting now finds it and writes nothing.
    switcher(&fake, "").init().await.unwrap();
    assert_eq!(fake.writes(), 1);
}

#[tokio::test]
async fn duplicates_dhaf_made_are_deleted_by_the_leaders_switch() {
    let fake = Fake::start().await;
    fake.with(|s| s.page_size = 1);
    // What earlier versions left behind: every node created one at start; one was switched since.
    let old = fake.add_commented("A", "www.foo.com", "192.0.2.1", true, Some("dhaf: created at start"));
    let newest = fake.add_commented("A", "www.foo.com", "192.0.2.2", true, Some("dhaf term-4"));
    let older = fake.add_commented("A", "www.foo.com", "192.0.2.1", true, Some("dhaf term-2"));
    let other = fake.add_record("A", "api.foo.com", "192.0.2.1", true);

    let sw = switcher(&fake, "");
    sw.init().await.expect("left-overs do not stop a node");
    assert_eq!(fake.writes(), 0, "start-up only reads");
    assert_eq!(sw.current().await.unwrap(), None, "several addresses are no single entry point, so the leader repairs");
    assert_eq!(fake.writes(), 0, "the read-back writes nothing");

    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(5)).await.unwrap();
    let left = fake.records("www.foo.com");
    assert_eq!(left.len(), 1, "{:#?}", fake.log());
    assert_eq!(left[0].id, newest, "the record of the newest term is kept");
    assert_eq!((left[0].content.as_str(), left[0].comment.as_deref()), ("192.0.2.2", Some("dhaf term-5")));
    let deleted: Vec<String> = fake.log().into_iter().filter(|l| l.starts_with("DELETE ")).collect();
    assert_eq!(deleted.len(), 2, "{deleted:#?}");
    assert!(deleted.iter().any(|l| l.ends_with(&old)) && deleted.iter().any(|l| l.ends_with(&older)), "{deleted:#?}");
    assert_eq!(fake.records("api.foo.com")[0].id, other, "other names are left alone");
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-2"));
}

#[tokio::test]
async fn records_dhaf_did_not_make_are_refused_at_every_read_and_switch_until_removed() {
    let (captured, _guard) = common::Captured::start(tracing::Level::INFO);

    let fake = Fake::start().await;
    fake.with(|s| s.page_size = 1);
    let mine = fake.add_commented("A", "www.foo.com", "192.0.2.1", true, Some("dhaf term-3"));
    let theirs = fake.add_record("A", "www.foo.com", "192.0.2.2", true);
    let sw = switcher(&fake, "");
    sw.init().await.expect("a node still starts, to check and vote");
    for _ in 0..2 {
        let t = text(&sw.current().await.unwrap_err());
        assert!(t.contains(&format!("www.foo.com has 2 address records ({mine} A 192.0.2.1, {theirs} A 192.0.2.2)")), "{t}");
        assert!(t.contains(&format!("dhaf did not make 1 of them ({theirs} A 192.0.2.2)")), "{t}");
        assert!(t.contains("delete the extra records"), "{t}");
    }
    let err = sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(4)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(text(&err).contains(&theirs), "{err}");
    assert!(fake.count("GET /zones/") >= 2, "page 2 was read: {:#?}", fake.log());
    assert_eq!(fake.writes(), 0, "nothing touched: {:#?}", fake.log());
    assert_eq!(fake.records("www.foo.com").len(), 2);

    let logs = captured.text();
    let loud = logs.lines().filter(|l| l.contains("ERROR") && l.contains("dhaf did not make")).count();
    assert!(loud >= 4, "every read and switch logs it at ERROR (start, 2 reads, 1 switch):\n{logs}");

    // Removed by hand: the next switch goes through.
    fake.with(|s| s.records.retain(|r| r.id != theirs));
    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(4)).await.unwrap();
    assert_eq!(fake.record("www.foo.com").content, "192.0.2.2");
}

#[tokio::test]
async fn a_record_a_newer_term_wrote_is_never_overwritten() {
    let fake = Fake::start().await;
    fake.add_commented("A", "www.foo.com", "192.0.2.2", true, Some("dhaf term-9"));
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();
    let err = sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "a deposed leader must not retry: {err:?}");
    let id = fake.record("www.foo.com").id;
    assert!(text(&err).contains(&format!("record {id} of www.foo.com was written by term-9, newer than this leader's term-7")), "{err}");
    assert_eq!(fake.writes(), 0);
    assert_eq!(fake.record("www.foo.com").content, "192.0.2.2");

    // Nor are duplicates deleted beside a newer term's record.
    fake.add_commented("A", "www.foo.com", "192.0.2.1", true, Some("dhaf term-5"));
    let t = text(&sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(8)).await.unwrap_err());
    assert!(t.contains("written by term-9, newer than this leader's term-8"), "{t}");
    assert_eq!(fake.writes(), 0);

    // The same term and later ones may write.
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(9)).await.unwrap();
    let rec = fake.records("www.foo.com");
    assert_eq!(rec.len(), 1);
    assert_eq!((rec[0].content.as_str(), rec[0].comment.as_deref()), ("192.0.2.1", Some("dhaf term-9")));
}

#[tokio::test]
async fn a_single_record_on_a_full_page_is_found_without_reading_past_the_end() {
    let fake = Fake::start().await;
    fake.with(|s| s.page_size = 1);
    fake.add_record("A", "www.foo.com", "192.0.2.2", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-2"));
    assert_eq!(fake.log().iter().filter(|l| l.contains("page=2")).count(), 0, "{:#?}", fake.log());
}

#[tokio::test]
async fn an_unproxied_record_is_refused_with_what_to_fix() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", false);
    let t = text(&switcher(&fake, "").init().await.unwrap_err());
    assert!(t.contains("is not proxied") && t.contains("turn on the proxy"), "{t}");
}

#[tokio::test]
async fn switching_between_ipv4_and_ipv6_changes_the_record_type() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();
    sw.switch(&ep("ep-6", "2001:db8::6"), FencingToken(3)).await.unwrap();
    let rec = fake.record("www.foo.com");
    assert_eq!((rec.kind.as_str(), rec.content.as_str()), ("AAAA", "2001:db8::6"));
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-6"));
    // A restarted node finds the AAAA record by name.
    let again = switcher(&fake, "");
    again.init().await.unwrap();
    assert_eq!(again.current().await.unwrap().as_deref(), Some("ep-6"));
    again.switch(&ep("ep-1", "192.0.2.1"), FencingToken(4)).await.unwrap();
    assert_eq!(fake.record("www.foo.com").kind, "A");
}

#[tokio::test]
async fn edits_behind_dhafs_back_show_in_current_and_a_deleted_record_is_recreated() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();

    fake.with(|s| s.records[0].content = "192.0.2.2".into());
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-2"), "read from the far end, not remembered");
    fake.with(|s| s.records[0].content = "203.0.113.50".into());
    assert_eq!(sw.current().await.unwrap(), None, "an address of no entry point");

    // Repair: the leader switches it back.
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(9)).await.unwrap();
    assert_eq!(fake.record("www.foo.com").content, "192.0.2.1");

    fake.with(|s| s.records.clear());
    assert_eq!(sw.current().await.unwrap(), None, "a deleted record points nowhere");
    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(10)).await.unwrap();
    let rec = fake.record("www.foo.com");
    assert_eq!((rec.content.as_str(), rec.proxied, rec.comment.as_deref()), ("192.0.2.2", true, Some("dhaf term-10")));
}

#[tokio::test]
async fn a_switch_the_far_end_did_not_apply_fails_the_read_back() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();
    fake.with(|s| s.ignore_patches = true);
    let err = sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(2)).await.unwrap_err();
    let t = text(&err);
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(t.contains("read back after the switch") && t.contains("shows A 192.0.2.1, expected A 192.0.2.2"), "{t}");
}

#[tokio::test]
async fn bad_or_expired_tokens_stop_the_start() {
    let fake = Fake::start().await;
    let settings = format!("      api-token: wrong-token-abc\n      zone: foo.com\n      api-url: {}\n", fake.url);
    let err = build_with(&settings).unwrap().init().await.unwrap_err();
    let t = text(&err);
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(t.contains("api-token was refused (HTTP 403): Invalid access token (code 9109)"), "{t}");
    assert!(!t.contains("wrong-token-abc"), "{t}");

    fake.with(|s| s.token_status = "expired");
    let t = text(&switcher(&fake, "").init().await.unwrap_err());
    assert!(t.contains("the api-token is expired, not active"), "{t}");
}

#[tokio::test]
async fn the_zone_must_exist_once_be_active_and_not_paused() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let cases: [(Vec<Value>, &str); 4] = [
        (vec![], "zone foo.com not found"),
        (vec![json!({"id": ZONE_ID, "name": "foo.com", "status": "pending", "paused": false})], "zone foo.com is pending, not active"),
        (vec![json!({"id": ZONE_ID, "name": "foo.com", "status": "active", "paused": true})], "zone foo.com is paused"),
        (
            vec![
                json!({"id": ZONE_ID, "name": "foo.com", "status": "active"}),
                json!({"id": "other", "name": "foo.com", "status": "active"}),
            ],
            "2 zones are named foo.com",
        ),
    ];
    for (zones, want) in cases {
        fake.with(|s| s.zones = zones);
        let t = text(&switcher(&fake, "").init().await.unwrap_err());
        assert!(t.contains(want), "want {want:?} in {t}");
    }
}

#[tokio::test]
async fn an_error_envelope_shows_cloudflares_message() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();
    let body = json!({"success": false, "errors": [{"code": 81058, "message": "A record with the same settings already exists."}], "messages": [], "result": null});
    fake.with(|s| s.faults.push_back(Fault { matching: "PATCH", status: 400, retry_after: None, body, delay: Duration::ZERO }));
    let err = sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(2)).await.unwrap_err();
    let t = text(&err);
    assert!(t.contains("HTTP 400: A record with the same settings already exists. (code 81058)"), "{t}");
    assert_eq!(fake.count("PATCH"), 1, "a refused request is not repeated");

    // `success: false` with a 200 is a failure too.
    let body = json!({"success": false, "errors": [{"code": 1000, "message": "odd"}], "messages": [], "result": null});
    fake.with(|s| s.faults.push_back(Fault { matching: "PATCH", status: 200, retry_after: None, body, delay: Duration::ZERO }));
    let t = text(&sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(3)).await.unwrap_err());
    assert!(t.contains("odd (code 1000)"), "{t}");
}

#[tokio::test]
async fn a_short_429_is_waited_out_and_a_long_one_is_handed_to_the_caller() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();

    fake.fault("PATCH", 429, Some(1));
    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(2)).await.unwrap();
    assert_eq!(fake.count("PATCH"), 2);
    assert_eq!(fake.record("www.foo.com").content, "192.0.2.2");

    fake.fault("PATCH", 429, Some(60));
    let start = Instant::now();
    let err = sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(3)).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10), "a long retry-after is not slept in the call");
    match &err {
        ProviderError::Transient { retry_after, .. } => assert_eq!(*retry_after, Some(Duration::from_secs(60))),
        other => panic!("a 429 is transient: {other:?}"),
    }
    assert!(text(&err).contains("rate limited by Cloudflare (HTTP 429, retry after 60 s)"), "{err}");
    assert_eq!(fake.count("PATCH"), 3, "no retry inside the call");
}

#[tokio::test]
async fn server_errors_are_retried_a_couple_of_times_then_reported() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();

    fake.fault("PATCH", 502, None);
    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(2)).await.unwrap();
    assert_eq!(fake.record("www.foo.com").content, "192.0.2.2");

    let before = fake.count("PATCH");
    for _ in 0..5 {
        fake.fault("PATCH", 503, None);
    }
    let err = sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(3)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(text(&err).contains("Cloudflare failed (HTTP 503): fake fault 503"), "{err}");
    assert_eq!(fake.count("PATCH") - before, 3, "bounded retries, no storm");
    assert_eq!(fake.record("www.foo.com").content, "192.0.2.2");
}

#[tokio::test]
async fn a_slow_api_times_out() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "      timeout: 1\n");
    sw.init().await.unwrap();
    for _ in 0..3 {
        fake.slow("GET /zones/", Duration::from_secs(3));
    }
    let start = Instant::now();
    let err = sw.current().await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(text(&err).contains("timed out after 1 s"), "{err}");
}

#[tokio::test]
async fn the_request_budget_is_never_exceeded() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let sw = switcher(&fake, "      request-budget: 8\n");
    sw.init().await.unwrap(); // verify, zones, the A and AAAA lists: 4 requests
    sw.current().await.unwrap(); // the two lists
    sw.current().await.unwrap(); // the two lists
    let before = fake.log().len();
    let err = sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(2)).await.unwrap_err();
    let t = text(&err);
    assert!(t.contains("the budget of 8 Cloudflare requests per 5 minutes is spent"), "{t}");
    match err {
        ProviderError::Transient { retry_after: Some(after), .. } => assert!(after <= Duration::from_secs(300)),
        other => panic!("a spent budget is transient with a retry-after: {other:?}"),
    }
    assert_eq!(fake.log().len(), 8, "{:#?}", fake.log());
    assert!(fake.log().len() - before <= 1);
    assert!(sw.current().await.is_err(), "still spent");
    assert_eq!(fake.log().len(), 8);
}

#[tokio::test]
async fn the_token_stays_out_of_debug_output() {
    let yaml = format!("{}      api-token: {TOKEN}\n      zone: foo.com\n", config());
    let config = Config::parse_with_env(&yaml, &|_| None).unwrap();
    let ctx = dhaf_core::provider::BuildContext {
        cluster: "c1".into(),
        node: "n1".into(),
        service: Some(config.services[0].clone()),
        store: dhaf_core::provider::ProviderStore::new(Arc::new(MemoryDcs::new("c1")), "t"),
        base_dir: ".".into(),
    };
    let sw = dhaf_providers::switch::cloudflare::CloudflareSwitcher::from_config(&config.services[0].switcher, &ctx).unwrap();
    let shown = format!("{sw:?}");
    assert!(!shown.contains(TOKEN) && shown.contains("***"), "{shown}");
}

#[tokio::test]
async fn the_token_is_never_logged_even_at_trace_level() {
    let (captured, _guard) = common::Captured::start(tracing::Level::TRACE);

    let fake = Fake::start().await;
    let sw = switcher(&fake, "");
    sw.init().await.unwrap();
    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(2)).await.unwrap();
    fake.fault("PATCH", 503, None);
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(3)).await.unwrap();
    fake.with(|s| s.records.clear());
    sw.current().await.unwrap();

    let logs = captured.text();
    assert!(logs.contains("cloudflare switcher ready"), "the capture works: {logs}");
    assert!(!logs.contains(TOKEN), "the token was logged:\n{logs}");
}

#[tokio::test]
async fn bad_settings_are_config_errors_with_their_key_path() {
    let Err(err) = build_with("      zone: bar.com\n      api-url: ftp://x\n      api-tokn: x\n") else { panic!("must not build") };
    let text: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    for want in [
        "services[0].switcher.api-token: is required",
        "services[0].switcher.api-url: 'ftp://x' is not an http(s) URL",
        "services[0].switcher.api-tokn: unknown key",
        "services[0].switcher.zone: the service's domain www.foo.com is not in zone bar.com",
    ] {
        assert!(text.iter().any(|t| t.starts_with(want)), "missing {want:?} in {text:#?}");
    }
}

/// Wait until the fake's record satisfies `ok`; loose bound that only catches a hang.
async fn wait_for_record(fake: &Fake, what: &str, ok: impl Fn(&FakeRecord) -> bool) -> FakeRecord {
    let start = Instant::now();
    loop {
        let rec = fake.with(|s| s.records.iter().find(|r| r.name == "www.foo.com").cloned());
        if let Some(rec) = rec.filter(|r| ok(r)) {
            return rec;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: not within 60 s; requests: {:#?}", fake.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_running_node_repairs_drift_and_fails_over_through_the_record() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let yaml = format!(
        "{}      api-token: {TOKEN}\n      zone: foo.com\n      api-url: {}\n",
        config().replace("  node-name: n1\n", "  node-name: n1\n  tact-interval: 1\n  reconcile-interval: 1\n"),
        fake.url
    );
    let node = switcher_support::RunningNode::start(&yaml);
    let checker = &node.checker;

    // The leader reads the record back; it already points at the first entry point, so nothing
    // is written.
    let start = Instant::now();
    while fake.count("GET /zones/0123456789abcdef0123456789abcdef/dns_records?") < 3 {
        assert!(start.elapsed() < Duration::from_secs(60), "the leader never read the record back: {:#?}", fake.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.count("PATCH"), 0, "{:#?}", fake.log());

    // Someone points the record elsewhere in the dashboard: the periodic read-back repairs it,
    // and the repair carries the leader's term.
    fake.with(|s| s.records[0].content = "203.0.113.99".into());
    let rec = wait_for_record(&fake, "drift repaired", |r| r.content == "192.0.2.1").await;
    assert!(rec.proxied);
    assert!(rec.comment.as_deref().is_some_and(|c| c.starts_with("dhaf term-")), "{:?}", rec.comment);

    // The first entry point goes down: the record follows to the next one.
    checker.down("ep-1", "connection refused");
    wait_for_record(&fake, "failover to ep-2", |r| r.content == "192.0.2.2").await;

    node.stop().await;
}

#[tokio::test]
async fn a_running_node_waits_out_cloudflares_retry_after_before_switching_again() {
    let fake = Fake::start().await;
    fake.add_record("A", "www.foo.com", "192.0.2.1", true);
    let yaml = format!(
        "{}      api-token: {TOKEN}\n      zone: foo.com\n      api-url: {}\n",
        config().replace("  node-name: n1\n", "  node-name: n1\n  tact-interval: 1\n"),
        fake.url
    );
    let node = switcher_support::RunningNode::start(&yaml);
    let checker = &node.checker;
    let start = Instant::now();
    while fake.count("GET /zones/0123456789abcdef0123456789abcdef/dns_records?") < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "the leader never read the record back: {:#?}", fake.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Cloudflare refuses the failover's write for 5 s, longer than the switcher waits inside
    // one call: the node must not write again before then.
    fake.fault("PATCH", 429, Some(5));
    checker.down("ep-1", "connection refused");
    let start = Instant::now();
    while fake.count("PATCH") < 1 {
        assert!(start.elapsed() < Duration::from_secs(60), "no failover attempt: {:#?}", fake.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = Instant::now();
    wait_for_record(&fake, "failover to ep-2", |r| r.content == "192.0.2.2").await;
    assert!(refused.elapsed() >= Duration::from_millis(4900), "written again {:?} after a 429 asking for 5 s", refused.elapsed());
    assert_eq!(fake.count("PATCH"), 2, "{:#?}", fake.log());

    node.stop().await;
}
