//! The `tg` notifier against a stateful fake of the Telegram Bot API on loopback: an update queue
//! with offsets and long polling, 409 for a second poller, 403 for a blocked chat, 400 with
//! `migrate_to_chat_id`, 429 with `retry_after`, and a MarkdownV2 parser that refuses what
//! Telegram refuses.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use dhaf_core::config::ProviderConfig;
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::{Event, Notification, SwitchKind};
use dhaf_core::provider::{BuildContext, Notifier, ProviderError, ProviderStore};
use dhaf_providers::notify::tg::{TelegramNotifier, HELP, LOCKED_OUT, MAX_WRONG_CODES, WRONG_CODE};
use serde_json::{json, Value};

const TOKEN: &str = "123456:TEST-bot-token";
const CODE: &str = "let-me-in-42";

mod fake {
    //! The fake Bot API: `POST /bot<token>/<method>` with a JSON body, as the notifier calls it.

    use super::*;

    /// One message the bot sent.
    #[derive(Debug, Clone)]
    pub struct Sent {
        pub chat: i64,
        pub parse_mode: Option<String>,
        /// What the chat shows: the text after MarkdownV2 parsing.
        pub shown: String,
    }

    #[derive(Default)]
    pub struct World {
        pub updates: Vec<Value>,
        pub next_update: i64,
        pub polling: bool,
        pub conflicts: u32,
        pub polls: Vec<(i64, Instant)>,
        pub sent: Vec<Sent>,
        pub attempts: HashMap<i64, u32>,
        pub blocked: HashSet<i64>,
        pub migrated: HashMap<i64, i64>,
        pub rate_limited: HashMap<i64, u32>,
        pub updates_rate_limited: u32,
    }

    pub struct Fake {
        pub url: String,
        pub world: Arc<Mutex<World>>,
        wake: Arc<tokio::sync::Notify>,
    }

    #[derive(Clone)]
    struct AppState {
        world: Arc<Mutex<World>>,
        wake: Arc<tokio::sync::Notify>,
    }

    // The poller's request may be dropped mid-poll (the client went away): it stops counting as
    // the active poller then, as on the real server.
    struct PollGuard(Arc<Mutex<World>>);
    impl Drop for PollGuard {
        fn drop(&mut self) {
            self.0.lock().unwrap().polling = false;
        }
    }

    fn error(code: u16, description: &str, parameters: Option<Value>) -> (StatusCode, Json<Value>) {
        let mut body = json!({ "ok": false, "error_code": code, "description": description });
        if let Some(p) = parameters {
            body["parameters"] = p;
        }
        (StatusCode::from_u16(code).unwrap(), Json(body))
    }

    fn ok(result: Value) -> (StatusCode, Json<Value>) {
        (StatusCode::OK, Json(json!({ "ok": true, "result": result })))
    }

    /// Parse MarkdownV2 as Telegram does (bold, italic, strike and code; no links), returning
    /// the shown text or Telegram's complaint.
    pub fn markdown_v2(text: &str) -> Result<String, String> {
        let mut shown = String::new();
        let mut open: Vec<char> = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let in_code = open.last() == Some(&'`');
            match c {
                '\\' => match chars.next() {
                    Some(e) if (1..=126).contains(&(e as u32)) => shown.push(e),
                    _ => return Err("can't parse entities: Character '\\' is reserved and must be escaped".into()),
                },
                '`' => {
                    if in_code {
                        open.pop();
                    } else {
                        open.push('`');
                    }
                }
                _ if in_code => shown.push(c),
                '*' | '_' | '~' => {
                    if open.last() == Some(&c) {
                        open.pop();
                    } else {
                        open.push(c);
                    }
                }
                '[' | ']' | '(' | ')' | '>' | '#' | '+' | '-' | '=' | '|' | '{' | '}' | '.' | '!' => {
                    return Err(format!("can't parse entities: Character '{c}' is reserved and must be escaped with the preceding '\\'"));
                }
                _ => shown.push(c),
            }
        }
        match open.last() {
            Some(c) => Err(format!("can't parse entities: Can't find end of the entity starting with '{c}'")),
            None => Ok(shown),
        }
    }

    async fn api(
        State(app): State<AppState>,
        Path((bot, method)): Path<(String, String)>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        if bot != format!("bot{TOKEN}") {
            return error(401, "Unauthorized", None);
        }
        match method.as_str() {
            "getUpdates" => get_updates(app, body).await,
            "sendMessage" => send_message(&app, &body),
            _ => error(404, "Not Found: method not found", None),
        }
    }

    async fn get_updates(app: AppState, body: Value) -> (StatusCode, Json<Value>) {
        let offset = body["offset"].as_i64().unwrap_or(0);
        let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
        {
            let mut w = app.world.lock().unwrap();
            if w.updates_rate_limited > 0 {
                w.updates_rate_limited -= 1;
                w.polls.push((offset, Instant::now()));
                return error(429, "Too Many Requests: retry after 2", Some(json!({ "retry_after": 2 })));
            }
            if w.polling {
                w.conflicts += 1;
                return error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                    None,
                );
            }
            w.polling = true;
            w.polls.push((offset, Instant::now()));
        }
        let _guard = PollGuard(app.world.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = app.wake.notified();
            {
                let mut w = app.world.lock().unwrap();
                // An offset confirms every update before it: they are gone for good.
                w.updates.retain(|u| u["update_id"].as_i64().unwrap() >= offset);
                if !w.updates.is_empty() {
                    return ok(Value::Array(w.updates.clone()));
                }
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => return ok(json!([])),
            }
        }
    }

    fn send_message(app: &AppState, body: &Value) -> (StatusCode, Json<Value>) {
        let mut w = app.world.lock().unwrap();
        let Some(chat) = body["chat_id"].as_i64() else { return error(400, "Bad Request: chat_id is empty", None) };
        *w.attempts.entry(chat).or_default() += 1;
        if w.blocked.contains(&chat) {
            return error(403, "Forbidden: bot was blocked by the user", None);
        }
        if let Some(to) = w.migrated.get(&chat) {
            return error(400, "Bad Request: group chat was upgraded to a supergroup chat", Some(json!({ "migrate_to_chat_id": to })));
        }
        if let Some(n) = w.rate_limited.get_mut(&chat).filter(|n| **n > 0) {
            *n -= 1;
            return error(429, "Too Many Requests: retry after 1", Some(json!({ "retry_after": 1 })));
        }
        let text = body["text"].as_str().unwrap_or_default().to_string();
        let parse_mode = body["parse_mode"].as_str().map(str::to_string);
        let shown = match parse_mode.as_deref() {
            Some("MarkdownV2") => match markdown_v2(&text) {
                Ok(s) => s,
                Err(e) => return error(400, &format!("Bad Request: {e}"), None),
            },
            _ => text,
        };
        w.sent.push(Sent { chat, parse_mode, shown: shown.clone() });
        let id = w.sent.len();
        ok(json!({ "message_id": id, "chat": { "id": chat }, "text": shown }))
    }

    impl Fake {
        pub async fn start() -> Fake {
            let world = Arc::new(Mutex::new(World { next_update: 1000, ..World::default() }));
            let wake = Arc::new(tokio::sync::Notify::new());
            let app = axum::Router::new()
                .route("/{bot}/{method}", axum::routing::post(api))
                .with_state(AppState { world: world.clone(), wake: wake.clone() });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Fake { url, world, wake }
        }

        pub fn push(&self, mut update: Value) {
            let mut w = self.world.lock().unwrap();
            update["update_id"] = json!(w.next_update);
            w.next_update += 1;
            w.updates.push(update);
            drop(w);
            self.wake.notify_waiters();
        }

        /// A text message from a chat; negative ids are groups, as on Telegram.
        pub fn say(&self, chat: i64, text: &str) {
            let kind = if chat > 0 { "private" } else { "group" };
            self.push(json!({
                "message": {
                    "message_id": 1, "date": 1_795_593_072,
                    "chat": { "id": chat, "type": kind, "title": format!("chat {chat}") },
                    "from": { "id": chat.abs(), "is_bot": false, "first_name": "Op" },
                    "text": text,
                }
            }));
        }

        pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
            self.world.lock().unwrap().sent.iter().filter(|s| s.chat == chat).cloned().collect()
        }

        pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
            f(&mut self.world.lock().unwrap())
        }
    }
}

use fake::Fake;

#[path = "support/common.rs"]
mod common;

fn store(dcs: &Arc<MemoryDcs>) -> ProviderStore {
    ProviderStore::new(dcs.clone(), "notifier.tg")
}

fn try_notifier(yaml: &str, dcs: &Arc<MemoryDcs>) -> Result<Arc<TelegramNotifier>, dhaf_core::config::ConfigError> {
    let mut section = ProviderConfig::new("tg").with_name("tg");
    section.path = "notifiers[1]".into();
    section.settings = dhaf_core::config::Settings::from_yaml(yaml).unwrap();
    let ctx = BuildContext { cluster: "c1".into(), node: "n1".into(), service: None, store: store(dcs), base_dir: ".".into() };
    TelegramNotifier::from_config(&section, &ctx).map(Arc::new)
}

fn notifier(fake: &Fake, dcs: &Arc<MemoryDcs>) -> Arc<TelegramNotifier> {
    try_notifier(&format!("token: {TOKEN}\njoin-code: {CODE}\napi-url: {}\npoll-timeout: 1\n", fake.url), dcs).unwrap()
}

fn lead(n: &Arc<TelegramNotifier>) -> tokio::task::JoinHandle<Result<(), ProviderError>> {
    let n = n.clone();
    tokio::spawn(async move { n.lead().await })
}

/// Wait (at most 20 s, which only catches a hang) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chats(dcs: &Arc<MemoryDcs>) -> Vec<String> {
    store(dcs).list().await.unwrap().into_iter().map(|(k, _)| k).filter(|k| k.starts_with("chats/")).collect()
}

/// Wait (at most 20 s) until exactly `expected` chats are subscribed.
async fn until_chats(dcs: &Arc<MemoryDcs>, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = chats(dcs).await;
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for chats {expected:?}, have {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subscribe(dcs: &Arc<MemoryDcs>, chat: i64) {
    store(dcs).put(&format!("chats/{chat}"), "{}").await.unwrap();
}

fn at() -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_593_072)
}

fn note(event: Event) -> Notification {
    Notification { cluster: "c1".into(), node: "n1".into(), event, entry_points: Vec::new(), at: at() }
}

fn replies(fake: &Fake, chat: i64) -> Vec<String> {
    fake.sent_to(chat).into_iter().map(|s| s.shown).collect()
}

#[tokio::test]
async fn t10_subscribe_flow_with_right_and_wrong_codes() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    let bot = notifier(&fake, &dcs);
    let polling = lead(&bot);

    fake.say(7, "hello?");
    until("the stray message is answered", || replies(&fake, 7).len() == 1).await;
    fake.say(7, "/start wrong-code");
    until("the wrong code is answered", || replies(&fake, 7).len() == 2).await;
    fake.say(7, "/start");
    until("the bare /start is answered", || replies(&fake, 7).len() == 3).await;
    assert_eq!(replies(&fake, 7), vec![HELP, WRONG_CODE, HELP]);
    assert!(chats(&dcs).await.is_empty(), "no chat may be subscribed without the join code");

    fake.say(7, &format!("/start {CODE}"));
    fake.say(-300, "just chatting in the group");
    fake.say(-300, &format!("/start@dhaf_bot {CODE}"));
    until("both chats are answered", || replies(&fake, 7).len() == 4 && replies(&fake, -300).len() == 1).await;
    assert_eq!(replies(&fake, 7)[3], "Subscribed: this chat now gets the notifications of dhaf cluster c1.");
    assert_eq!(
        replies(&fake, -300),
        vec!["Subscribed: this chat now gets the notifications of dhaf cluster c1."],
        "group chatter is not answered"
    );
    assert!(fake.sent_to(7).iter().all(|s| s.parse_mode.is_none()), "answers are plain text");
    assert_eq!(chats(&dcs).await, vec!["chats/-300", "chats/7"]);

    fake.say(7, &format!("/start {CODE}"));
    until("the repeated /start is answered", || replies(&fake, 7).len() == 5).await;
    assert!(replies(&fake, 7)[4].contains("already subscribed"));

    // Another node (no polling of its own) knows the subscribers from the DCS.
    let other_node = notifier(&fake, &dcs);
    other_node.notify(&note(Event::ServiceWentDown { service: "main".into() })).await.unwrap();
    assert!(replies(&fake, 7)[5].contains("main: no healthy entry point"));
    assert!(replies(&fake, -300)[1].contains("main: no healthy entry point"));

    // /stop unsubscribes.
    fake.say(-300, "/stop");
    until("/stop is answered", || replies(&fake, -300).len() == 3).await;
    assert!(replies(&fake, -300)[2].starts_with("Unsubscribed"));
    assert_eq!(chats(&dcs).await, vec!["chats/7"]);
    polling.abort();
}

#[tokio::test]
async fn t15_a_chat_that_guesses_is_locked_out_and_join_is_an_alias() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    let bot = notifier(&fake, &dcs);
    let polling = lead(&bot);

    for i in 1..=MAX_WRONG_CODES {
        fake.say(9, &format!("/start guess-{i}"));
        until("the guess is answered", || replies(&fake, 9).len() == i as usize).await;
    }
    assert!(replies(&fake, 9).iter().all(|r| r == WRONG_CODE), "{:?}", replies(&fake, 9));
    // Locked out now: even the right code is refused, and said so.
    fake.say(9, &format!("/start {CODE}"));
    until("the locked-out chat is answered", || replies(&fake, 9).len() == MAX_WRONG_CODES as usize + 1).await;
    assert_eq!(replies(&fake, 9).last().unwrap(), LOCKED_OUT);
    assert!(chats(&dcs).await.is_empty(), "a locked-out chat is not subscribed");

    // Another chat is not affected, and `/join <code>` (as older docs wrote it) works like /start.
    fake.say(10, &format!("/join {CODE}"));
    until("/join is answered", || replies(&fake, 10).len() == 1).await;
    assert!(replies(&fake, 10)[0].starts_with("Subscribed"), "{:?}", replies(&fake, 10));
    assert_eq!(chats(&dcs).await, vec!["chats/10"]);
    polling.abort();
}

#[tokio::test]
async fn t20_every_event_kind_reaches_every_chat_once() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    subscribe(&dcs, 11).await;
    subscribe(&dcs, -22).await;
    let bot = notifier(&fake, &dcs);
    let events = common::every_event();
    for e in &events {
        bot.notify(&note(e.clone())).await.unwrap();
    }
    for chat in [11, -22] {
        let sent = fake.sent_to(chat);
        assert_eq!(sent.len(), events.len(), "chat {chat}");
        for (s, e) in sent.iter().zip(&events) {
            assert_eq!(s.parse_mode.as_deref(), Some("MarkdownV2"));
            assert!(s.shown.contains(&e.summary()), "{:?} lacks {:?}", s.shown, e.summary());
            assert!(s.shown.contains("When (UTC): 2026-11-25T07:51:12Z"), "{}", s.shown);
            assert!(s.shown.contains("Cluster: c1"), "{}", s.shown);
            assert!(s.shown.contains("What dhaf did: "), "{}", s.shown);
        }
    }
    let down = &fake.sent_to(11)[0].shown;
    assert!(down.contains("Service: main") && down.contains("Entry point: ep-1") && down.contains("• n1: timeout"), "{down}");
    let failover = &fake.sent_to(11)[2].shown;
    assert!(failover.contains("Entry points: ep-1 -> ep-2"), "{failover}");
}

#[tokio::test]
async fn t30_names_full_of_markdown_specials_show_verbatim() {
    // First prove the fake refuses what Telegram refuses, so the check below can fail.
    assert!(fake::markdown_v2("ep-1 is down.").is_err());
    assert!(fake::markdown_v2("*unclosed bold").is_err());
    assert_eq!(fake::markdown_v2(r"*bold* ep\-1 \(ok\)\\").unwrap(), r"bold ep-1 (ok)\");

    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    subscribe(&dcs, 5).await;
    let bot = notifier(&fake, &dcs);
    let nasty = r"a_b*c[d]e(f)g~h`i>j#k+l-m=n|o{p}q.r!s\t";
    let reason = r"n1: HTTP 503 at https://x.example/p?q=1&r=[2] (*expected* 2XX) _ \ ` ~ > # + - = | { } . !";
    bot.notify(&note(Event::EntryPointWentDown { service: nasty.into(), entry_point: format!("ep{nasty}"), reasons: vec![reason.into()] }))
        .await
        .unwrap();
    bot.notify(&note(Event::Switched {
        service: nasty.into(),
        from: Some(nasty.into()),
        to: "ep_2.b".into(),
        kind: SwitchKind::Switchover,
    }))
    .await
    .unwrap();
    let sent = fake.sent_to(5);
    assert_eq!(sent.len(), 2);
    for s in &sent {
        assert_eq!(s.parse_mode.as_deref(), Some("MarkdownV2"), "delivered as MarkdownV2, not the plain-text fallback");
    }
    assert!(sent[0].shown.contains(&format!("Service: {nasty}\n")), "{}", sent[0].shown);
    assert!(sent[0].shown.contains(&format!("Entry point: ep{nasty}\n")), "{}", sent[0].shown);
    assert!(sent[0].shown.contains(&format!("• {reason}\n")), "{}", sent[0].shown);
    assert!(sent[1].shown.contains(&format!("Entry points: {nasty} -> ep_2.b")), "{}", sent[1].shown);
}

#[tokio::test]
async fn t40_chats_that_blocked_or_removed_the_bot_are_dropped() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    for chat in [1, 2, -3] {
        subscribe(&dcs, chat).await;
    }
    fake.with(|w| w.blocked.insert(2));
    let bot = notifier(&fake, &dcs);
    bot.notify(&note(Event::NodeWentDown { node: "n2".into() })).await.unwrap();
    assert_eq!(replies(&fake, 1).len(), 1);
    assert_eq!(replies(&fake, -3).len(), 1);
    assert_eq!(chats(&dcs).await, vec!["chats/-3", "chats/1"], "the blocked chat is dropped");

    bot.notify(&note(Event::NodeCameUp { node: "n2".into() })).await.unwrap();
    assert_eq!(fake.with(|w| w.attempts[&2]), 1, "a dropped chat is not tried again");

    // Removing the bot from a group shows up as a membership update to the poller.
    let polling = lead(&bot);
    fake.push(json!({
        "my_chat_member": {
            "chat": { "id": -3, "type": "group", "title": "ops" },
            "from": { "id": 9, "is_bot": false, "first_name": "Admin" },
            "date": 1_795_593_072,
            "old_chat_member": { "status": "member", "user": { "id": 1, "is_bot": true, "first_name": "dhaf" } },
            "new_chat_member": { "status": "kicked", "user": { "id": 1, "is_bot": true, "first_name": "dhaf" } },
        }
    }));
    until_chats(&dcs, &["chats/1"]).await;
    polling.abort();
}

#[tokio::test]
async fn t50_a_group_upgraded_to_a_supergroup_keeps_its_subscription() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    subscribe(&dcs, -10).await;
    fake.with(|w| w.migrated.insert(-10, -100_010));
    let bot = notifier(&fake, &dcs);
    bot.notify(&note(Event::ServiceCameUp { service: "main".into() })).await.unwrap();
    assert_eq!(replies(&fake, -100_010).len(), 1, "the message follows the group to its new id");
    assert_eq!(chats(&dcs).await, vec!["chats/-100010"]);
    bot.notify(&note(Event::ServiceWentDown { service: "main".into() })).await.unwrap();
    assert_eq!(replies(&fake, -100_010).len(), 2);
    assert_eq!(fake.with(|w| w.attempts[&-10]), 1, "the old id is not used again");

    // The service message Telegram posts in the old group moves the subscription too.
    subscribe(&dcs, -20).await;
    let polling = lead(&bot);
    fake.push(json!({
        "message": {
            "message_id": 3, "date": 1_795_593_072,
            "chat": { "id": -20, "type": "group", "title": "ops" },
            "migrate_to_chat_id": -100_020,
        }
    }));
    until_chats(&dcs, &["chats/-100010", "chats/-100020"]).await;
    polling.abort();
}

#[tokio::test]
async fn t60_retry_after_is_respected_and_nobody_gets_a_message_twice() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    subscribe(&dcs, 1).await;
    subscribe(&dcs, 2).await;
    fake.with(|w| w.rate_limited.insert(2, 1));
    let bot = notifier(&fake, &dcs);
    let n = note(Event::NodeWentDown { node: "n2".into() });
    let err = bot.notify(&n).await.unwrap_err();
    match &err {
        ProviderError::Transient { retry_after, .. } => assert_eq!(*retry_after, Some(Duration::from_secs(1))),
        other => panic!("expected a transient error with retry_after, got {other:?}"),
    }
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert_eq!(replies(&fake, 1).len(), 1);
    assert_eq!(replies(&fake, 2).len(), 0);

    // The runtime retries the same notification: only the chat that missed it gets it.
    bot.notify(&n).await.unwrap();
    assert_eq!(replies(&fake, 1).len(), 1);
    assert_eq!(replies(&fake, 2).len(), 1);

    // A new notification goes to everybody again.
    bot.notify(&note(Event::NodeCameUp { node: "n2".into() })).await.unwrap();
    assert_eq!((replies(&fake, 1).len(), replies(&fake, 2).len()), (2, 2));

    // The poller waits out a 429 on getUpdates before asking again.
    fake.with(|w| w.updates_rate_limited = 1);
    let polling = lead(&bot);
    fake.say(3, "hi");
    until("the poller answers after the 429", || replies(&fake, 3).len() == 1).await;
    let polls = fake.with(|w| w.polls.clone());
    assert!(polls.len() >= 2);
    let waited = polls[1].1 - polls[0].1;
    assert!(waited >= Duration::from_millis(1900), "retry_after 2 s must be waited out, waited {waited:?}");
    polling.abort();
}

#[tokio::test]
async fn t70_only_one_poller_runs_and_the_next_leader_takes_over() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    let first = notifier(&fake, &dcs);
    let second = notifier(&fake, &dcs);
    let first_polling = lead(&first);
    until("the first node polls", || fake.with(|w| w.polling)).await;
    let second_polling = lead(&second);
    until("the second poller is refused with 409", || fake.with(|w| w.conflicts >= 1)).await;

    fake.say(5, &format!("/start {CODE}"));
    until("the subscription is answered", || replies(&fake, 5).len() == 1).await;

    // The first leader goes away; the second takes over without answering the old update again.
    first_polling.abort();
    fake.say(6, "/start nope");
    until("the new poller answers", || replies(&fake, 6).len() == 1).await;
    assert_eq!(replies(&fake, 6), vec![WRONG_CODE]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replies(&fake, 5).len(), 1, "an update is handled once across leaders");
    assert_eq!(chats(&dcs).await, vec!["chats/5"]);
    assert!(!second_polling.is_finished(), "409 is backed off, not fatal");
    second_polling.abort();
}

#[tokio::test]
async fn t71_a_new_leader_skips_updates_the_previous_one_handled() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    // The previous leader answered update 1000 and stored the next offset, but died before its
    // next getUpdates confirmed it to Telegram, so Telegram still has it queued.
    fake.say(5, &format!("/start {CODE}"));
    store(&dcs).put("offset", "1001").await.unwrap();
    let bot = notifier(&fake, &dcs);
    let polling = lead(&bot);
    fake.say(6, "hello");
    until("the new update is answered", || replies(&fake, 6).len() == 1).await;
    assert!(replies(&fake, 5).is_empty(), "the handled update must not be answered again");
    assert_eq!(store(&dcs).get("offset").await.unwrap().as_deref(), Some("1002"));
    polling.abort();
}

#[tokio::test]
async fn t80_a_refused_token_is_permanent_and_never_shown() {
    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c"));
    subscribe(&dcs, 1).await;
    let wrong = "999:wrong-Token-value";
    let bot = try_notifier(&format!("token: {wrong}\njoin-code: {CODE}\napi-url: {}\npoll-timeout: 1\n", fake.url), &dcs).unwrap();
    let err = bot.notify(&note(Event::NodeCameUp { node: "n2".into() })).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    let err = bot.lead().await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    let shown = format!("{err} {err:?} {bot:?}");
    assert!(!shown.contains(wrong) && !shown.contains(CODE), "{shown}");

    // An unreachable API is worth retrying, and its error does not carry the token in the URL.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bot = try_notifier(&format!("token: {TOKEN}\njoin-code: {CODE}\napi-url: http://127.0.0.1:{closed}\n"), &dcs).unwrap();
    let err = bot.notify(&note(Event::NodeCameUp { node: "n2".into() })).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN), "{err}");
}

#[test]
fn t90_bad_settings_are_reported_with_their_key_paths() {
    let dcs = Arc::new(MemoryDcs::new("c"));
    let err = try_notifier("token: not-a-token-secret\napi-url: ftp://x\npoll-timeout: 99\nextra: 1\n", &dcs).unwrap_err();
    let text = err.to_string();
    for expected in [
        "notifiers[1].token: does not look like a bot token",
        "notifiers[1].join-code: is required",
        "notifiers[1].api-url: 'ftp://x' is not an http(s) URL",
        "notifiers[1].poll-timeout: must be a duration from 1s to 50s (a bare number is seconds), not 99s",
        "notifiers[1].extra: unknown key",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("not-a-token-secret"), "{text}");

    let err = try_notifier(&format!("token: {TOKEN}\njoin-code: short\n"), &dcs).unwrap_err().to_string();
    assert!(err.contains("notifiers[1].join-code: must be at least 8 characters"), "{err}");
    assert!(!err.contains("short\n") && !err.contains("'short'"), "the code is not echoed: {err}");

    let bot = try_notifier(&format!("token: {TOKEN}\njoin-code: {CODE}\n"), &dcs).unwrap();
    let shown = format!("{bot:?}");
    assert!(!shown.contains(TOKEN) && !shown.contains(CODE), "{shown}");
    assert!(shown.contains("https://api.telegram.org"), "{shown}");
}

#[test]
fn t91_the_registry_knows_both_notifiers() {
    let yaml = format!(
        "dhaf: {{ cluster-name: c1, node-name: n1 }}\nservices: []\nnotifiers:\n  - type: email\n    name: mail\n    from: a@b.c\n    to: d@e.f\n    \
         smtp: {{ server: h }}\n  - type: tg\n    token: \"{TOKEN}\"\n    join-code: {CODE}\n"
    );
    let config = dhaf_core::config::Config::parse(&yaml).unwrap();
    let dcs: Arc<dyn dhaf_core::dcs::Dcs> = Arc::new(MemoryDcs::new("c1"));
    let providers = dhaf_providers::registry().build(&config, dcs).unwrap();
    let names: Vec<&str> = providers.notifiers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["mail", "tg-anon"]);
}

#[tokio::test]
async fn t95_a_leading_node_polls_and_tells_every_transition_once() {
    use dhaf_core::testing::{FakeProvider, ScriptedChecker};

    let fake = Fake::start().await;
    let dcs = Arc::new(MemoryDcs::new("c1"));
    subscribe(&dcs, 1).await;
    // The first message is refused with 429: the runtime must wait and deliver it once.
    fake.with(|w| w.rate_limited.insert(1, 1));
    let yaml = format!(
        "dhaf:\n  cluster-name: c1\n  node-name: n1\n  tact-interval: 1\n\
         services:\n  - name: main\n    domain: foo.com\n    rise: 1\n    fall: 1\n    entry-points:\n      \
         - {{ name: ep-1, ip: 10.0.0.1 }}\n      - {{ name: ep-2, ip: 10.0.0.2 }}\n    \
         switcher: {{ type: fake }}\n    health-checker: {{ type: scripted }}\n\
         notifiers:\n  - type: tg\n    name: tg\n    token: \"{TOKEN}\"\n    join-code: {CODE}\n    api-url: {}\n    poll-timeout: 1\n",
        fake.url
    );
    let config = dhaf_core::config::Config::parse(&yaml).unwrap();
    let checker = ScriptedChecker::new();
    let dns = FakeProvider::new(Some("ep-1"));
    let mut registry = dhaf_providers::registry();
    let c = checker.clone();
    registry.checker("scripted", move |_, _| Ok(Arc::new(c.clone())));
    let d = dns.clone();
    registry.switcher("fake", move |_, _| Ok(Arc::new(d.switcher("n1"))));
    let providers = registry.build(&config, dcs.clone()).unwrap();
    let node = dhaf_core::runtime::Node::new(config, dcs.clone(), providers);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(node.run(async move {
        let _ = stopped.await;
    }));

    let count = |needle: &str| replies(&fake, 1).iter().filter(|m| m.contains(needle)).count();
    until("the leader is announced", || count("node n1 is the new leader") == 1).await;

    // Only the leader polls: the bot answers while the node leads.
    fake.say(2, &format!("/start {CODE}"));
    until("the leader's bot answers", || replies(&fake, 2).len() == 1).await;

    checker.down("ep-1", "connection refused");
    until("the failover is told", || count("main: failover from ep-1 to ep-2") == 1).await;
    assert_eq!(dns.current().as_deref(), Some("ep-2"));
    until("the entry point's fall is told", || count("main: entry point ep-1 is down") == 1).await;
    assert!(replies(&fake, 1).iter().any(|m| m.contains("• n1: connection refused")), "{:#?}", replies(&fake, 1));

    // A few more tacts change nothing: every transition was told once, the 429 retried once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count("node n1 is the new leader"), 1);
    assert_eq!(count("main: failover from ep-1 to ep-2"), 1);
    assert_eq!(count("main: entry point ep-1 is down"), 1);
    let sent = replies(&fake, 1).len() as u32;
    assert_eq!(fake.with(|w| w.attempts[&1]), sent + 1, "exactly one retry, for the 429");
    // The chat subscribed through the leader's bot gets the later notifications too.
    assert!(replies(&fake, 2).iter().any(|m| m.contains("failover from ep-1 to ep-2")), "{:#?}", replies(&fake, 2));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), running).await.expect("the node stops").unwrap().unwrap();
}
