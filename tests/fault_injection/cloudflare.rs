//! A stateful fake of Cloudflare's DNS API, just what the `cloudflare` switcher calls: token
//! verification, the zone by name, records listed by name and type, read, created, patched and
//! deleted.
//! Every record write is logged with the peer it came from and the term in its `comment`
//! (`dhaf term-<n>`). Faults on demand: a delay before each answer, error answers (429 or 5xx) for
//! the next N writes, and a PATCH that is applied but whose answer is lost (the connection is
//! closed instead).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The zone the fake serves.
pub const ZONE: &str = "faults.test";
/// Its id.
const ZONE_ID: &str = "zone-faults";
/// The token the switcher must present.
pub const TOKEN: &str = "fault-token-1";

/// A write the fake carried out.
#[derive(Debug, Clone)]
pub struct CfWrite {
    /// The address the request came from.
    pub peer: String,
    /// The record's new content (an IP).
    pub content: String,
    /// The term from the record's comment; `None` when the comment had none.
    pub token: Option<i64>,
    /// Whether the write created a record (a POST).
    pub created: bool,
}

#[derive(Default)]
struct State {
    records: BTreeMap<String, Value>,
    next_id: u64,
    writes: Vec<CfWrite>,
    delay: Duration,
    errors: u32,
    error_status: u16,
    lose_patch_answers: u32,
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeCloudflare {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
}

impl FakeCloudflare {
    /// Listen on `ip` (an address of the root namespace the nodes can reach), with one proxied
    /// A record `name` -> `content`, or with no record at all.
    pub async fn start(ip: &str, name: &str, content: Option<&str>) -> FakeCloudflare {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind the fake Cloudflare");
        let addr = listener.local_addr().unwrap();
        let mut state = State::default();
        if let Some(content) = content {
            state.records.insert(
                "rec-0".into(),
                json!({"id": "rec-0", "type": "A", "name": name, "content": content, "proxied": true, "ttl": 1, "comment": null}),
            );
        }
        state.next_id = 1;
        let fake = FakeCloudflare { state: Arc::new(Mutex::new(state)), addr };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, peer)) = listener.accept().await else { continue };
                let f = f.clone();
                tokio::spawn(async move { f.serve(sock, peer).await });
            }
        });
        fake
    }

    /// The `api-url` for the switcher.
    pub fn url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<CfWrite> {
        self.state.lock().unwrap().writes.clone()
    }

    /// The record's content now.
    pub fn content(&self) -> Vec<String> {
        self.state.lock().unwrap().records.values().map(|r| r["content"].as_str().unwrap_or("").to_string()).collect()
    }

    /// Sleep this long before every answer.
    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    /// Answer the next `n` record writes with `status` (429 carries `retry-after: 1`). Only
    /// writes, so the leader's periodic read-back cannot use the failures up before a switch.
    pub fn fail_next_writes(&self, n: u32, status: u16) {
        let mut s = self.state.lock().unwrap();
        s.errors = n;
        s.error_status = status;
    }

    /// Errors still to be served.
    pub fn errors_left(&self) -> u32 {
        self.state.lock().unwrap().errors
    }

    /// Apply the next `n` PATCHes but close the connection instead of answering.
    pub fn lose_patch_answers(&self, n: u32) {
        self.state.lock().unwrap().lose_patch_answers = n;
    }

    async fn serve(&self, mut sock: TcpStream, peer: SocketAddr) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, content_length) = loop {
            let Ok(n) = sock.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                    .unwrap_or(0);
                break (pos + 4, len);
            }
        };
        while buf.len() < head_end + content_length {
            let Ok(n) = sock.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let body: Value = serde_json::from_slice(&buf[head_end..head_end + content_length]).unwrap_or(Value::Null);
        let mut first = head.lines().next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let authorized =
            head.lines().any(|l| l.to_ascii_lowercase().starts_with("authorization:") && l.ends_with(&format!("Bearer {TOKEN}")));

        let delay = self.state.lock().unwrap().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (status, answer, lose) = self.handle(&method, &target, &body, authorized, &peer.ip().to_string());
        if lose {
            // Applied, but the client never learns it.
            return;
        }
        let text = answer.to_string();
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            429 => "Too Many Requests",
            _ => "Error",
        };
        let extra = if status == 429 { "retry-after: 1\r\n" } else { "" };
        let out = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = sock.write_all(out.as_bytes()).await;
        let _ = sock.shutdown().await;
    }

    fn handle(&self, method: &str, target: &str, body: &Value, authorized: bool, peer: &str) -> (u16, Value, bool) {
        let ok = |result: Value| (200, json!({"success": true, "errors": [], "messages": [], "result": result}), false);
        let err = |status: u16, code: u32, msg: &str| {
            (status, json!({"success": false, "errors": [{"code": code, "message": msg}], "result": null}), false)
        };
        let mut s = self.state.lock().unwrap();
        if s.errors > 0 && (method == "PATCH" || method == "POST") {
            s.errors -= 1;
            let status = s.error_status;
            return err(status, 10000, "injected failure");
        }
        if !authorized {
            return err(401, 10000, "Authentication error");
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let q: BTreeMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
        let path = path.strip_prefix("/client/v4").unwrap_or(path);
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["user", "tokens", "verify"]) => ok(json!({"id": "tok", "status": "active"})),
            ("GET", ["zones"]) => {
                let zones = if q.get("name") == Some(&ZONE) {
                    json!([{"id": ZONE_ID, "name": ZONE, "status": "active", "paused": false}])
                } else {
                    json!([])
                };
                ok(zones)
            }
            ("GET", ["zones", ZONE_ID, "dns_records"]) => {
                let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let list: Vec<Value> = if page == 1 {
                    s.records
                        .values()
                        .filter(|r| q.get("name").is_none_or(|n| r["name"] == *n) && q.get("type").is_none_or(|t| r["type"] == *t))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
                let n = list.len();
                let (status, mut v, lose) = ok(json!(list));
                v["result_info"] = json!({"page": page, "per_page": 100, "count": n, "total_count": n, "total_pages": 1});
                (status, v, lose)
            }
            ("POST", ["zones", ZONE_ID, "dns_records"]) => {
                let id = format!("rec-{}", s.next_id);
                s.next_id += 1;
                let mut r = body.clone();
                r["id"] = json!(id);
                s.writes.push(CfWrite { created: true, ..write_of(peer, &r) });
                s.records.insert(id, r.clone());
                ok(r)
            }
            ("GET", ["zones", ZONE_ID, "dns_records", id]) => match s.records.get(*id) {
                Some(r) => ok(r.clone()),
                None => err(404, 81044, "Record does not exist."),
            },
            ("DELETE", ["zones", ZONE_ID, "dns_records", id]) => match s.records.remove(*id) {
                Some(_) => ok(json!({"id": id})),
                None => err(404, 81044, "Record does not exist."),
            },
            ("PATCH", ["zones", ZONE_ID, "dns_records", id]) => {
                let Some(mut r) = s.records.get(*id).cloned() else { return err(404, 81044, "Record does not exist.") };
                if let Some(fields) = body.as_object() {
                    for (k, v) in fields {
                        r[k] = v.clone();
                    }
                }
                s.writes.push(write_of(peer, &r));
                s.records.insert(id.to_string(), r.clone());
                if s.lose_patch_answers > 0 {
                    s.lose_patch_answers -= 1;
                    return (0, Value::Null, true);
                }
                ok(r)
            }
            _ => err(404, 7003, "No route for that URI"),
        }
    }
}

fn write_of(peer: &str, record: &Value) -> CfWrite {
    // `dhaf term-<n>`, the switcher's comment.
    let token = record["comment"]
        .as_str()
        .and_then(|c| c.strip_prefix("dhaf "))
        .map(|t| t.trim().trim_start_matches("term-"))
        .and_then(|t| t.parse().ok());
    CfWrite { peer: peer.to_string(), content: record["content"].as_str().unwrap_or("").to_string(), token, created: false }
}
