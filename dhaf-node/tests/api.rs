//! The REST API against a running node: an in-process `Node` on the in-memory DCS with scripted
//! health and a fake provider, served on 127.0.0.1:0 and called over real sockets.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dhaf_core::config::Config;
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::dcs::Dcs;
use dhaf_core::registry::{Providers, ServiceProviders};
use dhaf_core::runtime::{Node, NodeHandle};
use dhaf_core::testing::{FakeProvider, ScriptedChecker};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

mod support;

const TOKEN: &str = "s3cret-test-token";

fn config_yaml(token: Option<&str>) -> String {
    let token = token.map(|t| format!("    token: {t}\n")).unwrap_or_default();
    support::fake_main_yaml(&format!("    host: 127.0.0.1\n    port: 8128\n{token}"))
}

struct Running {
    base: String,
    http: reqwest::Client,
    checker: ScriptedChecker,
    provider: FakeProvider,
    dcs: MemoryDcs,
    handle: NodeHandle,
}

async fn start(token: Option<&str>) -> Running {
    let config = Config::parse(&config_yaml(token)).expect("test config is valid");
    let dcs = MemoryDcs::new("test");
    let checker = ScriptedChecker::new();
    let provider = FakeProvider::new(None);
    let providers = Providers {
        services: vec![ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(provider.switcher("n1")) }],
        notifiers: vec![],
    };
    let node = Node::new(config, Arc::new(dcs.client("n1")), providers);
    let handle = node.handle();
    tokio::spawn(node.run(std::future::pending()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = dhaf_node::api::router(handle.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = Running { base, http: reqwest::Client::new(), checker, provider, dcs, handle };
    r.wait_for("the node to lead and point main at ep1", |r| r.handle.is_leader() && r.provider.current().as_deref() == Some("ep1")).await;
    r
}

impl Running {
    async fn wait_for(&self, what: &str, cond: impl Fn(&Running) -> bool) {
        for _ in 0..300 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn wait_json(&self, what: &str, path: &str, cond: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..300 {
            let (status, body) = self.get(path).await;
            if status == StatusCode::OK && cond(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what} at {path}");
    }

    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<String>) -> (StatusCode, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.send(method, path, token, body.map(|b| b.to_string())).await;
        assert!(!text.contains(TOKEN), "the token leaked into a response: {text}");
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {text}"));
        (status, v)
    }

    /// A read, with the token: with one configured, reads need it too.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(TOKEN), None).await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(TOKEN), body).await
    }

    async fn text(&self, path: &str) -> String {
        self.http.get(format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap()
    }
}

#[track_caller]
fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "status of {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
}

fn ep<'a>(service: &'a Value, name: &str) -> &'a Value {
    service["entry_points"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_status_services_candidates_healthz() {
    let r = start(Some(TOKEN)).await;

    let (s, status) = r.get("/api/v1/status").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["cluster"], "test");
    assert_eq!(status["leader"]["node"], "n1");
    assert_eq!(status["nodes"], json!([{"name": "n1", "alive": true, "leader": true}]));
    assert_eq!(status["dcs_error"], Value::Null);

    let (s, services) = r.get("/api/v1/services").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(services.as_array().unwrap().len(), 1);
    assert_eq!(services[0]["name"], "main");

    let main = r.wait_json("every verdict", "/api/v1/services/main", |v| ep(v, "ep3")["verdict"] == "healthy").await;
    assert_eq!(main["current"], "ep1");
    assert_eq!(main["domain"], "example.com");
    assert_eq!(main["panic"], false);
    assert_eq!(ep(&main, "ep1")["current"], true);
    assert_eq!(ep(&main, "ep2")["priority"], 2);
    assert_eq!(ep(&main, "ep2")["votes"], json!([{"node": "n1", "healthy": true, "reason": null}]));

    r.checker.down("ep2", "connection refused");
    let main = r.wait_json("ep2 down", "/api/v1/services/main", |v| ep(v, "ep2")["verdict"] == "unhealthy").await;
    assert_eq!(ep(&main, "ep2")["votes"][0]["reason"], "connection refused");
    let (s, cands) = r.get("/api/v1/services/main/candidates").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = cands.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ep1", "ep3"]);

    assert_error(&r.get("/api/v1/services/nope").await, 404, "unknown_service");
    assert_error(&r.get("/api/v1/services/nope/candidates").await, 404, "unknown_service");
    assert_error(&r.get("/api/v1/services/nope/history").await, 404, "unknown_service");
    assert_error(&r.get("/api/v1/no/such/route").await, 404, "not_found");

    let (s, health) = r.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["leader"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_without_the_dcs_status_is_the_last_known_one_marked_stale() {
    let r = start(Some(TOKEN)).await;
    r.wait_json("every verdict", "/api/v1/services/main", |v| ep(v, "ep3")["verdict"] == "healthy").await;
    let (_, fresh) = r.get("/api/v1/status").await;
    assert_eq!(fresh["stale"], false, "{fresh}");
    assert_eq!(fresh["dcs_error_since"], Value::Null, "{fresh}");
    r.dcs.set_unavailable(true);

    // At once: the status says the DCS is lost, since when, and shows the last known state as stale.
    let status = r.wait_json("the dcs error", "/api/v1/status", |v| !v["dcs_error"].is_null()).await;
    assert!(status["dcs_error"].as_str().unwrap().contains("dcs unreachable"), "{status}");
    let since = status["dcs_error_since"].clone();
    assert!(since.as_f64().is_some_and(|t| t > 1.6e9), "{status}");
    assert_eq!(status["stale"], true, "{status}");
    assert!(status["snapshot_age_secs"].as_u64().is_some(), "{status}");
    let main = &status["services"][0];
    assert_eq!(main["current"], "ep1", "the last known state, not an empty one: {status}");
    assert_eq!(ep(main, "ep1")["verdict"], "healthy", "{status}");
    assert_eq!(main["stale"], true, "{status}");
    let (s, main) = r.get("/api/v1/services/main").await;
    assert_eq!(s, StatusCode::OK, "{main}");
    assert_eq!((main["current"].as_str(), main["stale"].as_bool()), (Some("ep1"), Some(true)), "{main}");
    let metrics = r.text("/metrics").await;
    assert!(metrics.contains("dhaf_entry_point_current{service=\"main\",entry_point=\"ep1\"} 1"), "{metrics}");
    assert!(metrics.contains("dhaf_dcs_reachable 0"), "{metrics}");
    // Changes still need the DCS, and say so.
    assert_error(&r.admin(Method::DELETE, "/api/v1/services/main/switchover", None).await, 503, "dcs_unavailable");

    // The lease lapses (TTL 4 s) while the DCS is away: healthz stops claiming the lease and the
    // leadership as soon as the node may no longer act on them.
    for _ in 0..200 {
        let (s, body) = r.get("/healthz").await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["status"], "unavailable");
            assert_eq!(body["leader"], false, "{body}");
            let (_, status) = r.get("/api/v1/status").await;
            assert!(status["snapshot_age_secs"].as_u64().is_some_and(|a| a >= 1), "{status}");
            assert_eq!(status["dcs_error_since"], since, "when the trouble began stays put");
            let metrics = r.text("/metrics").await;
            assert!(metrics.contains("dhaf_dcs_errors_total"), "{metrics}");
            assert!(metrics.contains("dhaf_is_leader 0"), "{metrics}");
            r.dcs.set_unavailable(false);
            let back = r.wait_json("the dcs back", "/api/v1/status", |v| v["dcs_error"].is_null()).await;
            assert_eq!((back["stale"].as_bool(), &back["dcs_error_since"]), (Some(false), &Value::Null), "{back}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("healthz stayed 200 for 20 s with the DCS down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_mutations_need_the_token() {
    let r = start(Some(TOKEN)).await;
    let body = json!({"entry_point": "ep2"});
    let mutations: [(Method, &str, Option<Value>); 5] = [
        (Method::POST, "/api/v1/services/main/switchover", Some(body.clone())),
        (Method::DELETE, "/api/v1/services/main/switchover", None),
        (Method::POST, "/api/v1/services/main/entry-points/ep1/maintenance", None),
        (Method::DELETE, "/api/v1/services/main/entry-points/ep1/maintenance", None),
        (Method::DELETE, "/api/v1/nodes/n9", None),
    ];
    for (m, path, b) in &mutations {
        assert_error(&r.call(m.clone(), path, None, b.clone()).await, 401, "unauthorized");
        assert_error(&r.call(m.clone(), path, Some("wrong-token-456"), b.clone()).await, 401, "unauthorized");
        assert_error(&r.call(m.clone(), path, Some(&TOKEN[..TOKEN.len() - 1]), b.clone()).await, 401, "unauthorized");
    }
    // Refused before the body is even read: a bad body without a token is still a 401.
    let (s, _) = r.send(Method::POST, "/api/v1/services/main/switchover", None, Some("{nope".into())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Nothing happened.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.provider.current().as_deref(), Some("ep1"));
    let (_, main) = r.get("/api/v1/services/main").await;
    assert_eq!(main["switchover"], Value::Null);
    assert_eq!(ep(&main, "ep1")["maintenance"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t25_without_a_configured_token_mutations_are_refused() {
    let r = start(None).await;
    let got = r.call(Method::POST, "/api/v1/services/main/switchover", Some("anything-at-all"), Some(json!({"entry_point": "ep2"}))).await;
    assert_error(&got, 401, "token_not_configured");
    assert!(got.1["error"]["message"].as_str().unwrap().contains("dhaf.web-api.token"), "{}", got.1);
    assert_error(&r.call(Method::DELETE, "/api/v1/nodes/n9", None, None).await, 401, "token_not_configured");
    // Reads stay open.
    assert_eq!(r.call(Method::GET, "/api/v1/status", None, None).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_switchover_moves_the_provider_and_shows_in_history() {
    let r = start(Some(TOKEN)).await;
    let (s, body) = r.admin(Method::POST, "/api/v1/services/main/switchover", Some(json!({"entry_point": "ep2"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    r.wait_for("the provider to point at ep2", |r| r.provider.current().as_deref() == Some("ep2")).await;
    let main = r.wait_json("current ep2", "/api/v1/services/main", |v| v["current"] == "ep2").await;
    assert_eq!(main["switchover"], "ep2");
    assert_eq!(main["last_switch"]["kind"], "switchover");

    let hist = r
        .wait_json("a switchover in history", "/api/v1/services/main/history", |v| {
            v.as_array().unwrap().iter().any(|h| h["kind"] == "switchover" && h["entry_point"] == "ep2")
        })
        .await;
    let last = hist.as_array().unwrap().last().unwrap();
    assert_eq!(last["node"], "n1");
    assert!(last["at"].as_f64().unwrap() > 1.6e9);

    // Purging lets automatic failback return to the highest priority.
    let (s, _) = r.admin(Method::DELETE, "/api/v1/services/main/switchover", None).await;
    assert_eq!(s, StatusCode::OK);
    r.wait_for("failback to ep1", |r| r.provider.current().as_deref() == Some("ep1")).await;
    let (_, main) = r.get("/api/v1/services/main").await;
    assert_eq!(main["switchover"], Value::Null);

    // Refusals, none of which moves anything.
    let to = |ep: &str| Some(json!({ "entry_point": ep }));
    assert_error(&r.admin(Method::POST, "/api/v1/services/main/switchover", to("ep9")).await, 404, "unknown_entry_point");
    assert_error(&r.admin(Method::POST, "/api/v1/services/nope/switchover", to("ep2")).await, 404, "unknown_service");
    assert_error(&r.admin(Method::DELETE, "/api/v1/services/nope/switchover", None).await, 404, "unknown_service");
    r.checker.down("ep3", "HTTP 503, expected 2XX");
    r.wait_json("ep3 unhealthy", "/api/v1/services/main", |v| ep(v, "ep3")["verdict"] == "unhealthy").await;
    let got = r.admin(Method::POST, "/api/v1/services/main/switchover", to("ep3")).await;
    assert_error(&got, 422, "unhealthy_target");
    assert!(got.1["error"]["message"].as_str().unwrap().contains("ep3"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.provider.current().as_deref(), Some("ep1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_bad_bodies_are_rejected() {
    let r = start(Some(TOKEN)).await;
    let path = "/api/v1/services/main/switchover";
    let send = |b: String| r.send(Method::POST, path, Some(TOKEN), Some(b));
    for (body, what) in [
        ("{\"entry_point\": ".to_string(), "malformed JSON"),
        ("{\"entry_point\": \"ep2\", \"force\": true}".to_string(), "an unknown field"),
        ("{}".to_string(), "a missing field"),
        ("{\"entry_point\": 2}".to_string(), "a wrong type"),
        (String::new(), "an empty body"),
        // serde reads a struct from a sequence too; the API's bodies are objects.
        ("[\"ep2\"]".to_string(), "an array instead of an object"),
    ] {
        let (s, text) = send(body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert_error(&(s, serde_json::from_str(&text).unwrap()), 400, "bad_request");
    }
    let (s, text) = r.send(Method::POST, "/api/v1/reload", Some(TOKEN), Some("[]".into())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an array as the reload body: {text}");
    assert!(text.contains("must be a JSON object"), "{text}");
    let (s, text) = send(format!("{{\"entry_point\": \"{}\"}}", "x".repeat(17 * 1024))).await;
    assert_error(&(s, serde_json::from_str(&text).unwrap()), 413, "payload_too_large");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.provider.current().as_deref(), Some("ep1"));
    let (_, main) = r.get("/api/v1/services/main").await;
    assert_eq!(main["switchover"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_maintenance_moves_traffic_away_and_back() {
    let r = start(Some(TOKEN)).await;
    let path = "/api/v1/services/main/entry-points/ep1/maintenance";
    let (s, body) = r.admin(Method::POST, path, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    r.wait_for("traffic to leave ep1", |r| r.provider.current().as_deref() == Some("ep2")).await;
    let main = r.wait_json("ep1 in maintenance", "/api/v1/services/main", |v| ep(v, "ep1")["maintenance"] == true).await;
    assert_eq!(main["current"], "ep2");
    let (_, cands) = r.get("/api/v1/services/main/candidates").await;
    assert!(cands.as_array().unwrap().iter().all(|c| c["name"] != "ep1"), "{cands}");
    let got = r.admin(Method::POST, "/api/v1/services/main/switchover", Some(json!({"entry_point": "ep1"}))).await;
    assert_error(&got, 409, "target_in_maintenance");

    assert_error(&r.admin(Method::POST, "/api/v1/services/main/entry-points/ep9/maintenance", None).await, 404, "unknown_entry_point");
    assert_error(&r.admin(Method::DELETE, "/api/v1/services/nope/entry-points/ep1/maintenance", None).await, 404, "unknown_service");

    let (s, _) = r.admin(Method::DELETE, path, None).await;
    assert_eq!(s, StatusCode::OK);
    r.wait_for("traffic back on ep1", |r| r.provider.current().as_deref() == Some("ep1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_decommission_only_dead_members() {
    let r = start(Some(TOKEN)).await;
    assert_error(&r.admin(Method::DELETE, "/api/v1/nodes/n1", None).await, 409, "node_alive");
    assert_error(&r.admin(Method::DELETE, "/api/v1/nodes/ghost", None).await, 404, "unknown_node");

    // A second member that stopped: its lease is gone, its membership stays until decommissioned.
    let n2 = r.dcs.client("n2");
    let lease = n2.register("n2", Duration::from_secs(4)).await.unwrap();
    r.wait_json("n2 alive", "/api/v1/status", |v| v["nodes"].as_array().unwrap().len() == 2).await;
    n2.revoke(lease).await.unwrap();
    r.wait_json("n2 dead", "/api/v1/status", |v| v["nodes"].as_array().unwrap().iter().any(|n| n["name"] == "n2" && n["alive"] == false))
        .await;
    let (s, body) = r.admin(Method::DELETE, "/api/v1/nodes/n2", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, status) = r.get("/api/v1/status").await;
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["name"] != "n2"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_metrics_are_prometheus_text() {
    let r = start(Some(TOKEN)).await;
    r.checker.down("ep3", "timeout");
    r.wait_json("ep3 unhealthy", "/api/v1/services/main", |v| ep(v, "ep3")["verdict"] == "unhealthy").await;
    let resp = r.http.get(format!("{}/metrics", r.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    promtool_finds_nothing(&text);
    let m = Scrape::parse(&text);

    assert!(m.sum("dhaf_checks_total", &[]) >= 3.0, "{text}");
    assert!(m.value("dhaf_checks_total", &[("entry_point", "ep3"), ("result", "unhealthy")]) >= 1.0, "{text}");
    assert!(m.value("dhaf_checks_failed_total", &[]) >= 1.0, "{text}");
    assert!(m.sum("dhaf_switches_total", &[]) >= 1.0, "{text}");
    assert_eq!(m.sum("dhaf_switch_failures_total", &[]), 0.0);
    assert!(m.value("dhaf_leader_changes_total", &[]) >= 1.0);
    assert_eq!(m.value("dhaf_dcs_errors_total", &[]), 0.0);
    assert_eq!(m.value("dhaf_is_leader", &[]), 1.0);
    assert_eq!(m.value("dhaf_dcs_up", &[]), 1.0);
    assert_eq!(m.value("dhaf_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert_eq!(m.value("dhaf_entry_point_verdict", &[("entry_point", "ep1"), ("verdict", "healthy")]), 1.0);
    assert_eq!(m.value("dhaf_entry_point_verdict", &[("entry_point", "ep3"), ("verdict", "unhealthy")]), 1.0);
    assert_eq!(m.value("dhaf_entry_point_verdict", &[("entry_point", "ep3"), ("verdict", "healthy")]), 0.0);
    assert_eq!(m.value("dhaf_entry_point_current", &[("service", "main"), ("entry_point", "ep1")]), 1.0);
    assert_eq!(m.value("dhaf_node_alive", &[("node", "n1")]), 1.0);
}

/// The counters an alert needs move with what happened: a failover counted by kind and timed,
/// a failing switch counted, the checks counted per entry point and result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_metrics_count_switches_and_failures_by_service_and_kind() {
    let r = start(Some(TOKEN)).await;
    let before = Scrape::parse(&r.text("/metrics").await);
    assert_eq!(before.value("dhaf_switches_total", &[("service", "main"), ("kind", "failover")]), 0.0);
    assert_eq!(before.value("dhaf_switch_failures_total", &[("service", "main"), ("kind", "failover")]), 0.0);

    // The provider refuses the failover twice, then takes it.
    r.provider.fail_next(2);
    r.checker.down("ep1", "connection refused");
    r.wait_for("the failover to ep2", |r| r.provider.current().as_deref() == Some("ep2")).await;
    let text = r.text("/metrics").await;
    promtool_finds_nothing(&text);
    let after = Scrape::parse(&text);
    let main_failover = [("service", "main"), ("kind", "failover")];
    assert_eq!(after.value("dhaf_switches_total", &main_failover), 1.0, "{text}");
    assert_eq!(after.value("dhaf_switch_failures_total", &main_failover), 2.0, "{text}");
    assert!(after.value("dhaf_checks_total", &[("entry_point", "ep1"), ("result", "unhealthy")]) >= 1.0, "{text}");
    assert!(after.value("dhaf_checks_total", &[("entry_point", "ep2"), ("result", "healthy")]) >= 1.0, "{text}");
    // Every switch that went through is timed, from decision to acknowledgement.
    let switched = after.sum("dhaf_switches_total", &[("service", "main")]);
    assert_eq!(after.value("dhaf_switch_duration_seconds_count", &[("service", "main")]), switched, "{text}");
    assert!(after.value("dhaf_check_duration_seconds_count", &[("entry_point", "ep1")]) >= 1.0, "{text}");
    let last = after.value("dhaf_last_switch_timestamp_seconds", &[("service", "main")]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(last > now - 60.0 && last <= now + 1.0, "{last} vs {now}");
    assert_eq!(after.value("dhaf_entry_point_current", &[("entry_point", "ep2")]), 1.0, "{text}");
}

/// `promtool check metrics` (Debian's `prometheus` package) has nothing to say about `text`.
fn promtool_finds_nothing(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(support::promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\non:\n{text}");
}

/// A scrape, parsed by a Prometheus text parser.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Scrape(prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}")))
    }

    /// The samples of `name` whose labels include `labels`, as numbers (a histogram's
    /// `_count` and `_sum` are their own names here).
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name}: not a number: {other:?}"),
            })
            .collect()
    }

    /// The one sample of `name` with `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.matching(name, labels)[..] {
            [v] => v,
            ref all => panic!("{name}{labels:?}: {} samples, not one: {all:?}", all.len()),
        }
    }

    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).iter().sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_openapi_matches_the_router() {
    let r = start(Some(TOKEN)).await;
    let (s, doc) = r.get("/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .filter(|(m, _)| ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()))
        .collect();
    let routed: BTreeSet<(String, String)> =
        dhaf_node::api::routes().into_iter().map(|(m, p)| (m.as_str().to_string(), p.to_string())).collect();
    assert_eq!(documented, routed, "the OpenAPI document and the router disagree");

    // Every documented operation reaches a handler on the live router (no fallback, no 405),
    // and every operation that needs a token is documented so, with its role.
    let open: BTreeSet<&str> = ["/healthz", "/leader", "/api/v1/openapi.json"].into();
    for (method, path) in &documented {
        let concrete = path.replace("{service}", "nope").replace("{entry_point}", "ep1").replace("{node}", "ghost");
        let (status, text) = r.send(Method::from_bytes(method.as_bytes()).unwrap(), &concrete, Some(TOKEN), None).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!text.contains("\"code\":\"not_found\""), "{method} {path} fell through to the fallback: {text}");
        let op = &doc["paths"][path][method.to_lowercase()];
        let (status, _) = r.send(Method::from_bytes(method.as_bytes()).unwrap(), &concrete, None, None).await;
        if open.contains(path.as_str()) {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path} is open");
            assert!(op["security"].is_null() || op["security"] == json!([]), "{method} {path} is documented as needing a token");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} works without a token");
            assert!(op["security"].is_array(), "{method} {path} is not documented as needing the token");
            assert!(op["responses"]["401"].is_object(), "{method} {path} does not document 401");
            assert!(op["x-dhaf-role"].is_string(), "{method} {path} does not document its role");
        }
        for (code, resp) in op["responses"].as_object().unwrap() {
            assert!(code.parse::<u16>().is_ok() && resp["description"].is_string(), "{method} {path} {code}");
        }
    }
    let (status, text) = r.send(Method::PUT, "/api/v1/status", None, None).await;
    assert_error(&(status, serde_json::from_str(&text).unwrap()), 405, "method_not_allowed");
    let (status, text) = r.send(Method::GET, "/api/v1/services/%FF%FE", Some(TOKEN), None).await;
    assert_error(&(status, serde_json::from_str(&text).unwrap()), 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_maintenance_refuses_to_take_the_last_healthy_entry_point_out_of_rotation() {
    let r = start(Some(TOKEN)).await;
    let on = |ep: &str| format!("/api/v1/services/main/entry-points/{ep}/maintenance");
    r.checker.down("ep3", "connection refused");
    r.wait_json("ep3 unhealthy", "/api/v1/services/main", |v| ep(v, "ep3")["verdict"] == "unhealthy").await;
    let (s, body) = r.admin(Method::POST, &on("ep1"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    r.wait_for("traffic to leave ep1", |r| r.provider.current().as_deref() == Some("ep2")).await;
    r.wait_json("ep1 in maintenance", "/api/v1/services/main", |v| ep(v, "ep1")["maintenance"] == true).await;

    // ep2 is the only healthy entry point left in rotation: taking it out is refused, by name.
    let got = r.admin(Method::POST, &on("ep2"), None).await;
    assert_error(&got, 409, "last_healthy_entry_point");
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("ep2") && message.contains("force"), "{message}");
    let got = r.admin(Method::POST, &on("ep2"), Some(json!({"force": false}))).await;
    assert_error(&got, 409, "last_healthy_entry_point");
    let (_, main) = r.get("/api/v1/services/main").await;
    assert_eq!(ep(&main, "ep2")["maintenance"], false, "{main}");
    assert_eq!(main["degraded"], false, "{main}");
    // A bad body is refused as such, not taken for consent.
    assert_error(&r.admin(Method::POST, &on("ep2"), Some(json!({"forse": true}))).await, 400, "bad_request");

    // Forced: accepted, and the service says it is degraded (served from an entry point in maintenance).
    let (s, body) = r.admin(Method::POST, &on("ep2"), Some(json!({"force": true}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let main = r.wait_json("ep2 in maintenance", "/api/v1/services/main", |v| ep(v, "ep2")["maintenance"] == true).await;
    assert_eq!(main["degraded"], true, "{main}");
    assert_eq!(main["panic"], false, "{main}");
    assert_eq!(r.provider.current().as_deref(), Some("ep2"), "nowhere to go: traffic stays");

    // Back in rotation: no longer degraded.
    let (s, _) = r.admin(Method::DELETE, &on("ep1"), None).await;
    assert_eq!(s, StatusCode::OK);
    r.wait_json("not degraded", "/api/v1/services/main", |v| v["degraded"] == false).await;
    // An entry point that is already unhealthy may go into maintenance: it takes nothing out of rotation.
    let (s, body) = r.admin(Method::POST, &on("ep3"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_pause_holds_every_switch_until_resume_and_says_who_asked() {
    let r = start(Some(TOKEN)).await;
    // Mutations: the token is needed, and a body other than empty or `{}` is refused.
    assert_error(&r.call(Method::POST, "/api/v1/pause", None, None).await, 401, "unauthorized");
    assert_error(&r.admin(Method::POST, "/api/v1/pause", Some(json!({"why": "etcd upgrade"}))).await, 400, "bad_request");
    let (s, body) = r.admin(Method::POST, "/api/v1/pause", Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // The single dhaf.web-api.token is named `token`.
    assert!(body["paused"]["by"].as_str().unwrap().starts_with("token from "), "{body}");
    let (_, status) = r.get("/api/v1/status").await;
    assert!(status["paused"]["since"].as_f64().unwrap() > 1.7e9, "{status}");
    assert!(r.text("/metrics").await.lines().any(|l| l.starts_with("dhaf_paused 1")));

    // Paused: the primary fails and nothing is switched; a switchover is kept but not carried out.
    r.checker.down("ep1", "connection refused");
    r.wait_json("ep1 unhealthy", "/api/v1/services/main", |v| ep(v, "ep1")["verdict"] == "unhealthy").await;
    let (s, body) = r.admin(Method::POST, "/api/v1/services/main/switchover", Some(json!({"entry_point": "ep3"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.provider.current().as_deref(), Some("ep1"));

    // Resumed: the switchover goes through, and its history entry says who asked for it.
    let (s, body) = r.admin(Method::POST, "/api/v1/resume", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    r.wait_for("the switchover", |r| r.provider.current().as_deref() == Some("ep3")).await;
    let history = r
        .wait_json("the switchover in history", "/api/v1/services/main/history", |v| {
            v.as_array().unwrap().iter().any(|h| h["kind"] == "switchover")
        })
        .await;
    let entry = history.as_array().unwrap().iter().find(|h| h["kind"] == "switchover").unwrap();
    assert!(entry["requested_by"].as_str().unwrap().starts_with("token from "), "{entry}");
    assert!(history.as_array().unwrap().iter().filter(|h| h["kind"] != "switchover").all(|h| h["requested_by"].is_null()));
    let (_, status) = r.get("/api/v1/status").await;
    assert!(status["paused"].is_null(), "{status}");
    assert!(r.text("/metrics").await.lines().any(|l| l.starts_with("dhaf_paused 0")));

    // The audit trail has both.
    let (_, audit) = r.get("/api/v1/audit").await;
    for path in ["/api/v1/pause", "/api/v1/resume"] {
        assert!(audit.as_array().unwrap().iter().any(|a| a["path"] == path && a["outcome"] == "accepted"), "{path}: {audit}");
    }
}
