//! Every request the `cloudflare` switcher makes is valid against Cloudflare's own OpenAPI document
//! (`tests/contract/cloudflare-dns-openapi.json`), checked by Prism.
//!
//! Prism answers valid requests with the document's examples and keeps no state, and its examples
//! describe a different record (`example.com`, not proxied). So the switcher talks to Prism through
//! a thin overlay on 127.0.0.1: requests go to Prism byte for byte (Prism validates exactly what the
//! switcher sent), and Prism's 2xx answers get the fields a stateful API would show (the record the
//! switcher created or patched) written over the example. Every status Prism gave is kept; the test
//! fails on any non-2xx, which is how Prism reports a request that breaks the contract (422 with the
//! failing rule, 401 without a bearer token).
//!
//! Prism is found through `DHAF_PRISM` (falling back to `prism` on PATH); `cargo xtask test`
//! provides it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dhaf_core::config::Config;
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::FencingToken;
use dhaf_core::provider::Switcher;
use dhaf_core::testing::ScriptedChecker;
use serde_json::{json, Value};

#[path = "support/common.rs"]
mod common;
#[path = "support/switcher.rs"]
mod switcher_support;

use common::ep;

fn prism_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DHAF_PRISM") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "DHAF_PRISM={} does not exist; run the tests with `cargo xtask test`", p.display());
        return p;
    }
    let found = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join("prism")).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("Prism (npm @stoplight/prism-cli) is needed: set DHAF_PRISM or run the tests with `cargo xtask test`"))
}

/// A running Prism mock, killed when dropped.
struct Prism {
    child: Child,
    url: String,
}

impl Prism {
    fn start() -> Prism {
        let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract/cloudflare-dns-openapi.json");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(prism_binary())
            .args(["mock", "--errors", "-h", "127.0.0.1", "-p", &port.to_string()])
            .arg(&doc)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Prism starts; run the tests with `cargo xtask test`");
        let mut prism = Prism { child, url: format!("http://127.0.0.1:{port}") };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = prism.child.try_wait() {
                panic!("Prism exited at start ({status}); run the tests with `cargo xtask test`");
            }
            assert!(start.elapsed() < Duration::from_secs(90), "Prism did not listen on {addr} within 90 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        prism
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One exchange as Prism saw it.
#[derive(Debug, Clone)]
struct Seen {
    request: String,
    status: u16,
    body: String,
}

#[derive(Default)]
struct OverlayState {
    /// The records as a stateful API would hold them, each written over Prism's example record.
    records: Vec<Value>,
    /// A zone id to answer with instead of Prism's, to make the next request break the contract.
    zone_id: Option<String>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct Overlay {
    prism: String,
    http: reqwest::Client,
    state: Arc<Mutex<OverlayState>>,
}

async fn start_overlay(prism: &Prism) -> (String, Arc<Mutex<OverlayState>>) {
    let state = Arc::new(Mutex::new(OverlayState::default()));
    let overlay = Overlay { prism: prism.url.clone(), http: reqwest::Client::new(), state: state.clone() };
    let app = axum::Router::new().fallback(forward).with_state(overlay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
}

fn merge(base: &mut Value, over: &Value) {
    if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            b.insert(k.clone(), v.clone());
        }
    }
}

async fn forward(State(o): State<Overlay>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let target = format!("{}{}", o.prism, uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut req = o.http.request(method.clone(), target).body(body.clone());
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("prism unreachable: {e}")).into_response(),
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let line = format!("{method} {}", uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
    let mut s = o.state.lock().unwrap();
    s.seen.push(Seen { request: line, status, body: text.clone() });
    if !(200..300).contains(&status) {
        return (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], text).into_response();
    }
    let mut answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["zones"]) => {
            if let Some(id) = s.zone_id.clone() {
                answer["result"][0]["id"] = json!(id);
            }
        }
        ("GET", ["zones", _, "dns_records"]) => {
            let (name, kind) = (query_param(&uri, "name"), query_param(&uri, "type"));
            let example = answer["result"][0].clone();
            let matching: Vec<Value> = s
                .records
                .iter()
                .filter(|r| Some(r["name"].as_str().unwrap_or_default()) == name.as_deref())
                .filter(|r| kind.as_deref().is_none_or(|k| r["type"] == k))
                .map(|r| {
                    let mut full = example.clone();
                    merge(&mut full, r);
                    full
                })
                .collect();
            let n = matching.len();
            answer["result"] = json!(matching);
            answer["result_info"] = json!({"page": 1, "per_page": 100, "count": n, "total_count": n});
        }
        ("POST", ["zones", _, "dns_records"]) => {
            let mut record = json!({"id": answer["result"]["id"].clone()});
            merge(&mut record, &sent);
            merge(&mut answer["result"], &record);
            s.records.push(record);
        }
        ("PATCH", ["zones", _, "dns_records", id]) => {
            if let Some(record) = s.records.iter_mut().find(|r| r["id"] == *id) {
                merge(record, &sent);
                let record = record.clone();
                merge(&mut answer["result"], &record);
            }
        }
        ("GET", ["zones", _, "dns_records", id]) => {
            if let Some(record) = s.records.iter().find(|r| r["id"] == *id).cloned() {
                merge(&mut answer["result"], &record);
            }
        }
        ("DELETE", ["zones", _, "dns_records", id]) => s.records.retain(|r| r["id"] != *id),
        _ => {}
    }
    axum::Json(answer).into_response()
}

fn switcher(api_url: &str) -> Arc<dyn Switcher> {
    let eps = [("ep-1", "198.51.100.4"), ("ep-2", "203.0.113.7"), ("ep-6", "2001:db8::6")];
    let config = switcher_support::config("www.example.com", &eps, "cloudflare");
    let yaml =
        format!("{config}      api-token: contract-test-token\n      zone: example.com\n      api-url: {api_url}\n      timeout: 30\n");
    let config = Config::parse_with_env(&yaml, &|_| None).unwrap();
    let mut registry = dhaf_providers::registry();
    registry.checker("scripted", |s, _| s.fields().into_result(Arc::new(ScriptedChecker::new())));
    registry.build(&config, Arc::new(MemoryDcs::new("c1"))).unwrap().services[0].switcher.clone()
}

fn assert_all_accepted(seen: &[Seen]) {
    let rejected: Vec<String> =
        seen.iter().filter(|s| !(200..300).contains(&s.status)).map(|s| format!("{} -> {}: {}", s.request, s.status, s.body)).collect();
    assert!(rejected.is_empty(), "Prism rejected requests of the switcher:\n{}", rejected.join("\n"));
}

#[tokio::test]
async fn start_up_and_switching_speak_cloudflares_contract() {
    let prism = Prism::start();
    let (url, state) = start_overlay(&prism).await;

    // Start-up with no record: verify the token, find the zone, list A and AAAA; the leader's
    // first switch creates the record.
    let sw = switcher(&url);
    sw.init().await.expect("start-up against the contract");
    assert_eq!(sw.current().await.unwrap(), None);
    sw.switch(&ep("ep-1", "198.51.100.4"), FencingToken(4)).await.expect("create the record");
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-1"));
    // Switch within IPv4, then to IPv6 (PATCH with a type), and read back each time.
    sw.switch(&ep("ep-2", "203.0.113.7"), FencingToken(5)).await.expect("switch to ep-2");
    sw.switch(&ep("ep-6", "2001:db8::6"), FencingToken(6)).await.expect("switch to ep-6");
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-6"));
    // Another node starting now finds the existing record.
    let other = switcher(&url);
    other.init().await.expect("start-up with the record present");
    other.switch(&ep("ep-1", "198.51.100.4"), FencingToken(7)).await.expect("switch back to IPv4");
    // Duplicates dhaf made are deleted by the next switch.
    for id in ["0123456789abcdef0123456789abcde1", "0123456789abcdef0123456789abcde2"] {
        let dup = json!({"id": id, "type": "A", "name": "www.example.com", "content": "198.51.100.4", "comment": "dhaf term-2"});
        state.lock().unwrap().records.push(dup);
    }
    other.switch(&ep("ep-2", "203.0.113.7"), FencingToken(8)).await.expect("switch deleting duplicates");
    assert_eq!(state.lock().unwrap().records.len(), 1);

    let seen = state.lock().unwrap().seen.clone();
    assert_all_accepted(&seen);
    let requests: Vec<&str> = seen.iter().map(|s| s.request.as_str()).collect();
    for op in ["GET /user/tokens/verify", "GET /zones?name=example.com", "GET /zones/", "POST /zones/", "PATCH /zones/", "DELETE /zones/"] {
        assert!(requests.iter().any(|r| r.starts_with(op)), "no {op} went through Prism: {requests:#?}");
    }
    assert!(requests.iter().any(|r| r.contains("type=AAAA")), "{requests:#?}");
    assert_eq!(requests.iter().filter(|r| r.starts_with("POST")).count(), 1, "{requests:#?}");
    assert_eq!(requests.iter().filter(|r| r.starts_with("PATCH")).count(), 4, "{requests:#?}");
    assert_eq!(requests.iter().filter(|r| r.starts_with("DELETE")).count(), 2, "{requests:#?}");
}

#[tokio::test]
async fn a_request_prism_rejects_fails_the_switcher() {
    // The harness must be able to fail: a zone id longer than the contract's 32 characters makes
    // the switcher's next request invalid, and the switcher must surface Prism's 422.
    let prism = Prism::start();
    let (url, state) = start_overlay(&prism).await;
    state.lock().unwrap().zone_id = Some("x".repeat(40));
    let err = switcher(&url).init().await.expect_err("an invalid request fails start-up");
    let text = err.to_string();
    assert!(text.contains("HTTP 422") && text.contains("Invalid request"), "{text}");
    let seen = state.lock().unwrap().seen.clone();
    assert!(seen.iter().any(|s| s.status == 422), "{seen:#?}");

    // Without a bearer token Prism answers 401; the switcher always sends one, so ask directly.
    let status = reqwest::get(format!("{url}/user/tokens/verify")).await.unwrap().status();
    assert_eq!(status.as_u16(), 401);
}
