//! The `webhook` notifier against a real HTTP server on 127.0.0.1 that records every request and
//! answers as told: the Slack, Mattermost, Discord and generic bodies, custom headers from the
//! environment, quick repeats after 5xx and timeouts, 429s, refusals, secrets kept out of errors,
//! and a running node telling each event once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::{EntryPoint, Event, Notification};
use dhaf_core::provider::{Notifier, ProviderError};
use dhaf_core::testing::{FakeProvider, ScriptedChecker};
use serde_json::Value;

const HOOK_PATH: &str = "/hooks/T000/B000/very-secret-path-part";
const HOOK_TOKEN: &str = "hook-token-0123456789";

/// One request as the server got it.
#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    body: Value,
    at: Instant,
}

/// An answer the server gives to the next request: status, headers, body, delay.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    delay: Duration,
}

fn answer(status: u16) -> Answer {
    Answer { status, headers: Vec::new(), body: "", delay: Duration::ZERO }
}

#[derive(Default)]
struct ServerState {
    got: Vec<Got>,
    script: VecDeque<Answer>,
}

/// A recording HTTP server; it answers 200 `ok` unless scripted otherwise.
#[derive(Clone)]
struct Server {
    state: Arc<Mutex<ServerState>>,
    url: String,
}

impl Server {
    async fn start() -> Server {
        let state = Arc::new(Mutex::new(ServerState::default()));
        let app = axum::Router::new().route(HOOK_PATH, axum::routing::post(handle)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{HOOK_PATH}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { state, url }
    }

    fn then(&self, a: Answer) {
        self.state.lock().unwrap().script.push_back(a);
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }
}

async fn handle(State(state): State<Arc<Mutex<ServerState>>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let next = {
        let mut s = state.lock().unwrap();
        s.got.push(Got { headers, body, at: Instant::now() });
        s.script.pop_front()
    };
    let a = next.unwrap_or(Answer { status: 200, headers: Vec::new(), body: "ok", delay: Duration::ZERO });
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    let mut resp = (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
    for (k, v) in a.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

fn env(name: &str) -> Option<String> {
    (name == "HOOK_TOKEN").then(|| HOOK_TOKEN.to_string())
}

fn try_build(settings: &str) -> Result<Arc<dyn Notifier>, ConfigError> {
    let yaml =
        format!("dhaf: {{ cluster-name: c1, node-name: n1 }}\nservices: []\nnotifiers:\n  - type: webhook\n    name: hook\n{settings}");
    let config = Config::parse_with_env(&yaml, &env)?;
    let providers = dhaf_providers::registry().build(&config, Arc::new(MemoryDcs::new("c1")))?;
    Ok(providers.notifiers[0].1.clone())
}

fn build(server: &Server, extra: &str) -> Arc<dyn Notifier> {
    try_build(&format!("    url: {}\n{extra}", server.url)).unwrap_or_else(|e| panic!("{e}"))
}

fn down() -> Notification {
    Notification {
        cluster: "c1".into(),
        node: "n1".into(),
        event: Event::EntryPointWentDown {
            service: "main".into(),
            entry_point: "ep-1".into(),
            reasons: vec!["n1: connection refused <tcp>".into(), "n2: HTTP 503 & more".into()],
        },
        entry_points: vec![EntryPoint { name: "ep-1".into(), ip: "203.0.113.7".parse().unwrap() }],
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

/// The text of an error, checked to hold no secret.
fn text(e: &ProviderError) -> String {
    let t = e.to_string();
    for secret in ["very-secret-path-part", HOOK_TOKEN] {
        assert!(!t.contains(secret) && !format!("{e:?}").contains(secret), "a secret leaked into an error: {e:?}");
    }
    t
}

#[tokio::test]
async fn slack_and_mattermost_get_text_with_the_whole_report_and_the_custom_headers() {
    let server = Server::start().await;
    let slack = build(&server, "    preset: slack\n    headers: { Authorization: \"Bearer ${HOOK_TOKEN}\", X-Source: dhaf }\n");
    slack.notify(&down()).await.unwrap();
    let mattermost = build(&server, "    preset: mattermost\n");
    mattermost.notify(&down()).await.unwrap();

    let got = server.got();
    assert_eq!(got.len(), 2);
    let slack_text = got[0].body["text"].as_str().unwrap();
    assert_eq!(got[0].body.as_object().unwrap().len(), 1, "{}", got[0].body);
    assert!(slack_text.contains(&down().event.summary()), "{slack_text}");
    assert!(slack_text.contains("ep-1 (203.0.113.7)") && slack_text.contains("What dhaf did:"), "{slack_text}");
    // Slack reads `<…>` as a link and `&` as an entity: escaped.
    assert!(slack_text.contains("&lt;tcp&gt;") && slack_text.contains("503 &amp; more"), "{slack_text}");
    assert_eq!(got[0].headers["authorization"], format!("Bearer {HOOK_TOKEN}").as_str());
    assert_eq!(got[0].headers["x-source"], "dhaf");
    assert_eq!(got[0].headers["content-type"], "application/json");
    let mm_text = got[1].body["text"].as_str().unwrap();
    assert!(mm_text.contains("<tcp>") && mm_text.contains("n2: HTTP 503 & more"), "{mm_text}");
}

#[tokio::test]
async fn discord_gets_content_without_mentions_and_a_204_is_success() {
    let server = Server::start().await;
    server.then(answer(204));
    let discord = build(&server, "    preset: discord\n    template: \"{symbol} {summary} @everyone\"\n");
    discord.notify(&down()).await.unwrap();
    let got = server.got();
    assert_eq!(got[0].body["content"], format!("🔴 {} @everyone", down().event.summary()).as_str());
    assert_eq!(got[0].body["allowed_mentions"]["parse"], serde_json::json!([]));
}

#[tokio::test]
async fn the_generic_preset_posts_every_field_and_the_event() {
    let server = Server::start().await;
    let generic = build(&server, "    template: \"{severity} {service}/{event} at {at}: {reasons}\"\n");
    generic.notify(&down()).await.unwrap();
    let body = &server.got()[0].body;
    assert_eq!(
        body["text"],
        "PROBLEM main/entry_point_went_down at 2023-11-14T22:13:20Z: n1: connection refused <tcp>; n2: HTTP 503 & more"
    );
    assert_eq!(body["cluster"], "c1");
    assert_eq!(body["summary"], down().event.summary().as_str());
    assert_eq!(body["event"]["event"], "entry_point_went_down");
    assert_eq!(body["event"]["entry_point"], "ep-1");
    assert_eq!(body["entry_points"][0]["ip"], "203.0.113.7");
}

#[tokio::test]
async fn server_errors_and_timeouts_are_repeated_with_a_growing_pause_then_handed_back() {
    let server = Server::start().await;
    server.then(answer(503));
    server.then(answer(502));
    let hook = build(&server, "    retries: 2\n");
    hook.notify(&down()).await.unwrap();
    let got = server.got();
    assert_eq!(got.len(), 3, "two repeats, then delivered");
    let (first, second) = (got[1].at - got[0].at, got[2].at - got[1].at);
    assert!(second > first && first >= Duration::from_millis(200), "pauses {first:?}, {second:?}");
    assert!(got.iter().all(|g| g.body == got[0].body), "the same body every time");

    // Still failing after the repeats: transient, for the runtime's own backoff.
    for _ in 0..3 {
        server.then(answer(500));
    }
    let err = hook.notify(&down()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(text(&err).contains("HTTP 500"), "{err}");
    assert_eq!(server.got().len(), 6);

    // A webhook slower than `timeout`.
    let slow = Answer { delay: Duration::from_secs(3), ..answer(200) };
    server.then(slow.clone());
    server.then(slow);
    let hook = build(&server, "    timeout: 1\n    retries: 1\n");
    let start = Instant::now();
    let err = hook.notify(&down()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(text(&err).contains("timed out after 1 s"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
}

#[tokio::test]
async fn a_short_429_is_waited_out_and_a_long_one_is_handed_back_with_its_wait() {
    let server = Server::start().await;
    server.then(Answer { headers: vec![("retry-after", "1")], ..answer(429) });
    let hook = build(&server, "");
    hook.notify(&down()).await.unwrap();
    let got = server.got();
    assert_eq!(got.len(), 2);
    assert!(got[1].at - got[0].at >= Duration::from_millis(950));

    // Discord puts the wait in the body.
    server.then(Answer { body: r#"{"message":"You are being rate limited.","retry_after":64.5,"global":false}"#, ..answer(429) });
    let err = hook.notify(&down()).await.unwrap_err();
    match &err {
        ProviderError::Transient { retry_after, .. } => assert_eq!(*retry_after, Some(Duration::from_millis(64_500))),
        other => panic!("{other:?}"),
    }
    assert!(text(&err).contains("rate limited"), "{err}");
}

#[tokio::test]
async fn a_refusal_is_permanent_names_the_status_and_hides_the_secrets() {
    let server = Server::start().await;
    server.then(Answer { body: "invalid_token for /hooks/T000/B000/very-secret-path-part", ..answer(403) });
    let hook = build(&server, "    headers: { Authorization: \"Bearer ${HOOK_TOKEN}\" }\n");
    let err = hook.notify(&down()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    let t = text(&err);
    assert!(t.contains("HTTP 403") && t.contains("invalid_token") && t.contains("127.0.0.1"), "{t}");
    assert_eq!(server.got().len(), 1, "a refusal is not repeated");
    let mut section = dhaf_core::config::ProviderConfig::new("webhook").with_name("hook");
    section.path = "notifiers[0]".into();
    section.settings =
        dhaf_core::config::Settings::from_yaml(&format!("url: {}\nheaders: {{ Authorization: \"Bearer {HOOK_TOKEN}\" }}\n", server.url))
            .unwrap();
    let ctx = dhaf_core::provider::BuildContext {
        cluster: "c1".into(),
        node: "n1".into(),
        service: None,
        store: dhaf_core::provider::ProviderStore::new(Arc::new(MemoryDcs::new("c1")), "notifier.hook"),
        base_dir: ".".into(),
    };
    let debug = format!("{:?}", dhaf_providers::notify::webhook::WebhookNotifier::from_config(&section, &ctx).unwrap());
    assert!(debug.contains("127.0.0.1") && !debug.contains("very-secret") && !debug.contains(HOOK_TOKEN), "{debug}");

    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let hook = try_build(&format!("    url: http://{closed}{HOOK_PATH}\n    retries: 0\n")).unwrap();
    let err = hook.notify(&down()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(text(&err).contains("cannot reach"), "{err}");
}

#[tokio::test]
async fn bad_settings_are_config_errors_with_their_key_path() {
    let Err(err) = try_build(
        "    url: ftp://hooks.example/very-secret-path-part\n    preset: teams\n    template: \"{summary} {colour}\"\n    headers: { \"bad header\": x }\n    retries: 11\n    extra: 1\n",
    ) else {
        panic!("must not build")
    };
    let text: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    for want in [
        "notifiers[0].url: is not an http(s) URL",
        "notifiers[0].preset: 'teams' is not one of slack, mattermost, discord, generic",
        "notifiers[0].template: '{colour}' is not a field",
        "notifiers[0].headers.bad header: is not a header name",
        "notifiers[0].retries:",
        "notifiers[0].extra: unknown key",
    ] {
        assert!(text.iter().any(|t| t.starts_with(want)), "missing {want:?} in {text:#?}");
    }
    assert!(text.iter().all(|t| !t.contains("very-secret")), "the url was echoed: {text:#?}");
    assert!(try_build("    preset: slack\n").is_err(), "url is required");
}

#[tokio::test]
async fn a_running_node_tells_each_event_once() {
    let server = Server::start().await;
    let yaml = format!(
        "dhaf: {{ cluster-name: c1, node-name: n1, tact-interval: 1 }}\n\
         services:\n  - name: main\n    domain: foo.com\n    entry-points: [{{ name: ep-1, ip: 192.0.2.1 }}, {{ name: ep-2, ip: 192.0.2.2 }}]\n    \
         health-checker: {{ type: scripted }}\n    switcher: {{ type: recording }}\n\
         notifiers:\n  - type: webhook\n    name: hook\n    url: {}\n    preset: mattermost\n    template: \"{{event}} {{summary}}\"\n",
        server.url
    );
    let config = Config::parse_with_env(&yaml, &env).unwrap();
    let checker = ScriptedChecker::new();
    let provider = FakeProvider::new(Some("ep-1"));
    let mut registry = dhaf_providers::registry();
    let (c, p) = (checker.clone(), provider.clone());
    registry.checker("scripted", move |s, _| s.fields().into_result(Arc::new(c.clone())));
    registry.switcher("recording", move |s, _| s.fields().into_result(Arc::new(p.switcher("n1"))));
    let dcs = Arc::new(MemoryDcs::new("c1"));
    let providers = registry.build(&config, dcs.clone()).unwrap();
    let node = dhaf_core::runtime::Node::new(config, dcs, providers);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(node.run(async move {
        let _ = stopped.await;
    }));

    let texts = || server.got().iter().map(|g| g.body["text"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>();
    let wait_for = |kind: &'static str| {
        let texts = &texts;
        async move {
            let start = Instant::now();
            while !texts().iter().any(|t| t.starts_with(kind)) {
                assert!(start.elapsed() < Duration::from_secs(60), "no {kind} within 60 s: {:#?}", texts());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for("leader_elected").await;
    checker.down("ep-1", "connection refused");
    wait_for("switched").await;
    wait_for("entry_point_went_down").await;
    // A few more tacts: nothing is told again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = texts();
    for kind in ["leader_elected", "entry_point_went_down", "switched"] {
        assert_eq!(all.iter().filter(|t| t.starts_with(&format!("{kind} "))).count(), 1, "{kind} told once: {all:#?}");
    }
    assert_eq!(provider.current().as_deref(), Some("ep-2"));

    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(30), running).await.expect("the node stops").unwrap();
    assert!(result.is_ok(), "{result:?}");
}
