//! The `tg` notifier: a Telegram bot that chats subscribe to with `/start <join-code>`.
//!
//! Settings (key paths relative to the notifier's section):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `token` | the bot's API token from @BotFather | required |
//! | `join-code` | the code a chat sends (`/start <join-code>`) to subscribe; at least 8 characters | required |
//! | `api-url` | the Bot API's base URL | `https://api.telegram.org` |
//! | `poll-timeout` | seconds one `getUpdates` long poll waits for updates (1–50) | 25 |
//!
//! How it works:
//!
//! - Only the leader polls ([`Notifier::lead`]): Telegram lets one `getUpdates` poller run per
//!   bot and answers a second one with 409 Conflict, which is backed off and retried, so a new
//!   leader takes over as soon as the old poller is gone.
//! - `/start <join-code>` (or `/join <join-code>`) subscribes the chat; `/stop` unsubscribes it. A
//!   wrong code, a bare `/start` or a stray message in a private chat gets a short answer saying
//!   what to send. After [`MAX_WRONG_CODES`] wrong codes a chat is locked out for [`LOCKOUT`] (even
//!   the right code is refused then), so the code cannot be guessed by trying.
//! - Subscribers live in the DCS (the notifier's [`ProviderStore`], keys `chats/<id>`), together
//!   with the next update offset (`offset`), so every node can send and the next leader neither
//!   loses subscribers nor answers the same update twice.
//! - A chat that blocked or removed the bot (403, or a `kicked`/`left` membership update) is
//!   dropped; a group upgraded to a supergroup (`migrate_to_chat_id`) keeps its subscription
//!   under the new id; 429 `retry_after` is waited out.
//! - Messages are MarkdownV2, every user-provided text passed through [`escape_markdown_v2`]. A
//!   notification that fails for some chats is retried only for those, so nobody gets it twice.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::Notification;
use dhaf_core::provider::{BuildContext, Notifier, ProviderError, ProviderStore};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{redact, Report};

const CHAT_PREFIX: &str = "chats/";
const OFFSET_KEY: &str = "offset";
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
// Telegram caps a message at 4096 characters; long reasons are cut well before that.
const MAX_REASONS: usize = 20;
const MAX_REASON_CHARS: usize = 300;

/// The answer to a `/start` with the wrong join code.
pub const WRONG_CODE: &str = "Wrong join code.";
/// The answer to a chat locked out after too many wrong join codes.
pub const LOCKED_OUT: &str = "Too many wrong join codes from this chat; try again in an hour.";
/// Wrong join codes a chat may send before it is locked out.
pub const MAX_WRONG_CODES: u32 = 5;
/// How long a chat that sent [`MAX_WRONG_CODES`] wrong codes is locked out.
pub const LOCKOUT: Duration = Duration::from_secs(3600);
/// The fewest characters a join code may have.
const MIN_JOIN_CODE: usize = 8;

/// The answer to a bare `/start`, an unknown command, or a stray message in a private chat.
pub const HELP: &str = "Send /start <join-code> to subscribe to dhaf notifications, /stop to unsubscribe.";

/// Escape `text` for Telegram's MarkdownV2 so that it shows exactly as written.
///
/// Every character MarkdownV2 reserves (`_ * [ ] ( ) ~ `` ` `` > # + - = | { } . !`) and the
/// backslash itself is preceded by a backslash; everything else is left alone.
///
/// ```
/// use dhaf_providers::notify::tg::escape_markdown_v2;
/// assert_eq!(escape_markdown_v2("ep-1 (10.0.0.1)!"), r"ep\-1 \(10\.0\.0\.1\)\!");
/// ```
pub fn escape_markdown_v2(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for c in text.chars() {
        if matches!(c, '_' | '*' | '[' | ']' | '(' | ')' | '~' | '`' | '>' | '#' | '+' | '-' | '=' | '|' | '{' | '}' | '.' | '!' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A report as a MarkdownV2 message.
pub fn render(r: &Report) -> String {
    let e = escape_markdown_v2;
    let mut out = format!("{} *{}*\n\n", r.severity.symbol(), e(&r.title));
    out.push_str(&format!("*What happened:* {}\n", e(&r.happened)));
    out.push_str(&format!("*What dhaf did:* {}\n", e(&r.dhaf_did)));
    if let Some(next) = &r.next {
        out.push_str(&format!("*What to check:* {}\n", e(next)));
    }
    out.push('\n');
    for (k, v) in &r.facts {
        out.push_str(&format!("*{}:* {}\n", e(k), e(v)));
    }
    if !r.reasons.is_empty() {
        out.push_str("\n*Reasons:*\n");
        for reason in r.reasons.iter().take(MAX_REASONS) {
            let cut: String = reason.chars().take(MAX_REASON_CHARS).collect();
            let ellipsis = if cut.len() < reason.len() { "…" } else { "" };
            out.push_str(&format!("• {}{ellipsis}\n", e(&cut)));
        }
        if r.reasons.len() > MAX_REASONS {
            out.push_str(&format!("• {}\n", e(&format!("… and {} more", r.reasons.len() - MAX_REASONS))));
        }
    }
    out
}

/// Sends notifications to every subscribed Telegram chat and, on the leader, runs the bot.
pub struct TelegramNotifier {
    api: String,
    token: String,
    join_code: String,
    poll_timeout: Duration,
    cluster: String,
    store: ProviderStore,
    http: reqwest::Client,
    // The subscribers last read from the DCS, so a node that lost the DCS can still say so.
    known_chats: Mutex<Option<BTreeSet<i64>>>,
    // The notification being delivered and the chats that already have it, so a retry after a
    // partial failure reaches only the chats that missed it.
    delivered: Mutex<Option<(Notification, BTreeSet<i64>)>>,
    // Wrong join codes per chat (on the leader, which alone polls): count and when the last came.
    wrong_codes: Mutex<HashMap<i64, (u32, tokio::time::Instant)>>,
}

impl fmt::Debug for TelegramNotifier {
    // The token and the join code never show up in Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramNotifier")
            .field("api", &self.api)
            .field("token", &"***")
            .field("join_code", &"***")
            .field("poll_timeout", &self.poll_timeout)
            .finish()
    }
}

/// A failed Bot API call, sorted by what the caller should do about it.
#[derive(Debug)]
enum ApiError {
    /// 409: another `getUpdates` poller runs.
    Conflict(String),
    /// 403: the bot was blocked, kicked or removed.
    Forbidden(String),
    /// 400 with `migrate_to_chat_id`: the group became a supergroup.
    Migrated(i64),
    /// 429: wait this long.
    RetryAfter(Duration),
    /// 401/404: the token is wrong.
    Unauthorized(String),
    /// 400: the request itself was refused.
    BadRequest(String),
    /// Anything else: network trouble, 5xx, an unreadable answer.
    Other(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Conflict(d) => write!(f, "conflict: {d}"),
            ApiError::Forbidden(d) => write!(f, "forbidden: {d}"),
            ApiError::Migrated(id) => write!(f, "chat migrated to {id}"),
            ApiError::RetryAfter(d) => write!(f, "too many requests, retry after {} s", d.as_secs()),
            ApiError::Unauthorized(d) => write!(f, "the bot token was refused: {d}"),
            ApiError::BadRequest(d) => write!(f, "bad request: {d}"),
            ApiError::Other(d) => f.write_str(d),
        }
    }
}

#[derive(Deserialize)]
struct ApiReply {
    ok: bool,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ReplyParameters>,
}

#[derive(Deserialize)]
struct ReplyParameters {
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
    #[serde(default)]
    retry_after: Option<u64>,
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    my_chat_member: Option<ChatMemberUpdated>,
}

#[derive(Deserialize)]
struct Message {
    chat: Chat,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
}

impl Chat {
    fn label(&self) -> String {
        self.title.clone().or_else(|| self.username.clone()).or_else(|| self.first_name.clone()).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct ChatMemberUpdated {
    chat: Chat,
    new_chat_member: ChatMember,
}

#[derive(Deserialize)]
struct ChatMember {
    status: String,
}

impl TelegramNotifier {
    /// Build from the notifier's config section, reporting every problem with its key path.
    /// No I/O happens here.
    pub fn from_config(section: &ProviderConfig, ctx: &BuildContext) -> Result<TelegramNotifier, ConfigError> {
        let f = section.fields();
        let token = f.required_string("token");
        if let Some(t) = &token {
            // Never echo the token: the message only says what shape is expected.
            let ok =
                t.split_once(':').is_some_and(|(id, rest)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty());
            if !ok {
                f.problem(f.key("token"), "does not look like a bot token (`<digits>:<secret>`, as @BotFather gives it)");
            }
        }
        let join_code = f.required_string("join-code");
        if matches!(&join_code, Some(c) if c.trim().is_empty() || c.chars().any(char::is_whitespace)) {
            f.problem(f.key("join-code"), "must be a non-empty word without spaces");
        } else if matches!(&join_code, Some(c) if c.chars().count() < MIN_JOIN_CODE) {
            // The code is a secret: say how long it must be, never what it is.
            f.problem(f.key("join-code"), format!("must be at least {MIN_JOIN_CODE} characters, so that it cannot be guessed"));
        }
        let api = f.string("api-url").unwrap_or_else(|| "https://api.telegram.org".into());
        if !(api.starts_with("http://") || api.starts_with("https://")) {
            f.problem(f.key("api-url"), format!("'{api}' is not an http(s) URL"));
        }
        let poll_timeout = f.whole_seconds("poll-timeout", 25, 1, 50, "Telegram counts a long poll in whole seconds");
        f.finish();
        let http = reqwest::Client::builder().build();
        if let Err(e) = &http {
            f.problem(section.path.clone(), format!("cannot set up the HTTP client: {e}"));
        }
        let checked = f.into_result(());
        match (checked, token, join_code, http) {
            (Ok(()), Some(token), Some(join_code), Ok(http)) => Ok(TelegramNotifier {
                api: api.trim_end_matches('/').to_string(),
                token,
                join_code,
                poll_timeout,
                cluster: ctx.cluster.clone(),
                store: ctx.store.clone(),
                http,
                known_chats: Mutex::new(None),
                delivered: Mutex::new(None),
                wrong_codes: Mutex::new(HashMap::new()),
            }),
            (Err(e), ..) => Err(e),
            // Every missing piece above recorded a problem; this arm only keeps the match total.
            _ => Err(ConfigError::at(section.path.clone(), "incomplete tg notifier settings")),
        }
    }

    /// The subscribed chats, as stored in the DCS.
    pub async fn subscribers(&self) -> Result<BTreeSet<i64>, ProviderError> {
        match self.store.list().await {
            Ok(entries) => {
                let chats: BTreeSet<i64> =
                    entries.iter().filter_map(|(k, _)| k.strip_prefix(CHAT_PREFIX)).filter_map(|id| id.parse().ok()).collect();
                *self.known_chats.lock().unwrap_or_else(|e| e.into_inner()) = Some(chats.clone());
                Ok(chats)
            }
            Err(e) => match self.known_chats.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                Some(chats) => {
                    tracing::warn!(error = %e, "cannot read telegram subscribers from the dcs; using the last known ones");
                    Ok(chats)
                }
                None => Err(ProviderError::transient(format!("cannot read telegram subscribers from the dcs: {e}"))),
            },
        }
    }

    fn remember(&self, f: impl FnOnce(&mut BTreeSet<i64>)) {
        if let Some(chats) = self.known_chats.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(chats);
        }
    }

    async fn subscribe(&self, chat: &Chat) -> Result<bool, ProviderError> {
        let key = format!("{CHAT_PREFIX}{}", chat.id);
        let dcs = |e| ProviderError::transient(format!("dcs: {e}"));
        let known = self.store.get(&key).await.map_err(dcs)?.is_some();
        if !known {
            let value = json!({ "type": chat.kind, "title": chat.label() }).to_string();
            self.store.put(&key, &value).await.map_err(dcs)?;
            self.remember(|c| {
                c.insert(chat.id);
            });
            tracing::info!(chat = chat.id, title = %chat.label(), "telegram chat subscribed");
        }
        Ok(!known)
    }

    async fn unsubscribe(&self, chat: i64, why: &str) -> Result<bool, ProviderError> {
        let key = format!("{CHAT_PREFIX}{chat}");
        let dcs = |e| ProviderError::transient(format!("dcs: {e}"));
        let known = self.store.get(&key).await.map_err(dcs)?.is_some();
        if known {
            self.store.delete(&key).await.map_err(dcs)?;
            tracing::info!(chat, why, "telegram chat unsubscribed");
        }
        self.remember(|c| {
            c.remove(&chat);
        });
        Ok(known)
    }

    async fn migrate(&self, from: i64, to: i64) -> Result<(), ProviderError> {
        let dcs = |e| ProviderError::transient(format!("dcs: {e}"));
        let old = format!("{CHAT_PREFIX}{from}");
        if let Some(value) = self.store.get(&old).await.map_err(dcs)? {
            self.store.put(&format!("{CHAT_PREFIX}{to}"), &value).await.map_err(dcs)?;
            self.store.delete(&old).await.map_err(dcs)?;
            self.remember(|c| {
                c.remove(&from);
                c.insert(to);
            });
            tracing::info!(from, to, "telegram group became a supergroup; subscription moved");
        }
        Ok(())
    }

    fn redact(&self, text: &str) -> String {
        redact(text, &[&self.token])
    }

    async fn call(&self, method: &str, body: &Value, timeout: Duration) -> Result<Value, ApiError> {
        let url = format!("{}/bot{}/{method}", self.api, self.token);
        let response = self
            .http
            .post(url)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            // The URL carries the token: drop it from the error, and redact for good measure.
            .map_err(|e| ApiError::Other(self.redact(&format!("{method}: {}", e.without_url()))))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| ApiError::Other(self.redact(&format!("{method}: {}", e.without_url()))))?;
        let reply: ApiReply = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(_) => return Err(ApiError::Other(format!("{method}: HTTP {status} with an unreadable body"))),
        };
        if reply.ok {
            return Ok(reply.result);
        }
        let code = reply.error_code.unwrap_or(status.as_u16());
        let description = self.redact(&reply.description.unwrap_or_else(|| format!("HTTP {code}")));
        let params = reply.parameters.unwrap_or(ReplyParameters { migrate_to_chat_id: None, retry_after: None });
        Err(if let Some(id) = params.migrate_to_chat_id {
            ApiError::Migrated(id)
        } else if code == 429 || params.retry_after.is_some() {
            ApiError::RetryAfter(Duration::from_secs(params.retry_after.unwrap_or(5)))
        } else {
            match code {
                409 => ApiError::Conflict(description),
                403 => ApiError::Forbidden(description),
                401 | 404 => ApiError::Unauthorized(description),
                400 => ApiError::BadRequest(description),
                _ => ApiError::Other(format!("{method}: {code} {description}")),
            }
        })
    }

    async fn send(&self, chat: i64, text: &str, markdown: bool) -> Result<(), ApiError> {
        let mut body = json!({ "chat_id": chat, "text": text, "disable_web_page_preview": true });
        if markdown {
            body["parse_mode"] = json!("MarkdownV2");
        }
        self.call("sendMessage", &body, SEND_TIMEOUT).await.map(|_| ())
    }

    /// Answer a chat in plain text; failures are logged, and a chat that blocked us is dropped.
    async fn reply(&self, chat: i64, text: &str) {
        let mut target = chat;
        for _ in 0..2 {
            match self.send(target, text, false).await {
                Ok(()) => return,
                Err(ApiError::Migrated(to)) => {
                    if let Err(e) = self.migrate(target, to).await {
                        tracing::warn!(error = %e, "cannot move a migrated telegram chat");
                    }
                    target = to;
                }
                Err(ApiError::Forbidden(d)) => {
                    let _ = self.unsubscribe(target, &d).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(chat = target, error = %e, "cannot answer a telegram chat");
                    return;
                }
            }
        }
    }

    async fn handle(&self, update: Update) {
        if let Some(m) = update.my_chat_member {
            if matches!(m.new_chat_member.status.as_str(), "kicked" | "left") {
                if let Err(e) = self.unsubscribe(m.chat.id, "the bot was removed from the chat").await {
                    tracing::warn!(error = %e, "cannot drop a telegram chat");
                }
            }
            return;
        }
        let Some(msg) = update.message else { return };
        if let Some(to) = msg.migrate_to_chat_id {
            if let Err(e) = self.migrate(msg.chat.id, to).await {
                tracing::warn!(error = %e, "cannot move a migrated telegram chat");
            }
            return;
        }
        let Some(text) = msg.text.as_deref() else { return };
        let private = msg.chat.kind == "private";
        let answer = match command(text) {
            Some(("start" | "join", "")) => HELP.to_string(),
            Some(("start" | "join", _)) if self.locked_out(msg.chat.id) => {
                tracing::info!(chat = msg.chat.id, "telegram join attempt from a locked-out chat");
                LOCKED_OUT.to_string()
            }
            Some(("start" | "join", code)) if constant_time_eq(code.as_bytes(), self.join_code.as_bytes()) => {
                self.wrong_codes.lock().unwrap_or_else(|p| p.into_inner()).remove(&msg.chat.id);
                match self.subscribe(&msg.chat).await {
                    Ok(true) => format!("Subscribed: this chat now gets the notifications of dhaf cluster {}.", self.cluster),
                    Ok(false) => format!("This chat is already subscribed to the notifications of dhaf cluster {}.", self.cluster),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot store a telegram subscription");
                        "Cannot subscribe right now (dhaf cannot reach its storage); please try again later.".to_string()
                    }
                }
            }
            Some(("start" | "join", _)) => {
                let tries = self.wrong_code(msg.chat.id);
                tracing::warn!(chat = msg.chat.id, tries, "telegram join attempt with a wrong join code");
                WRONG_CODE.to_string()
            }
            Some(("stop", _)) => match self.unsubscribe(msg.chat.id, "/stop").await {
                Ok(true) => format!("Unsubscribed: this chat no longer gets the notifications of dhaf cluster {}.", self.cluster),
                Ok(false) => "This chat is not subscribed.".to_string(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove a telegram subscription");
                    "Cannot unsubscribe right now (dhaf cannot reach its storage); please try again later.".to_string()
                }
            },
            Some(_) => HELP.to_string(),
            // With privacy mode a bot sees little group chatter, but what it sees is not for it.
            None if private => HELP.to_string(),
            None => return,
        };
        self.reply(msg.chat.id, &answer).await;
    }

    /// Whether `chat` sent [`MAX_WRONG_CODES`] wrong codes, the last less than [`LOCKOUT`] ago.
    fn locked_out(&self, chat: i64) -> bool {
        let mut wrong = self.wrong_codes.lock().unwrap_or_else(|p| p.into_inner());
        match wrong.get(&chat) {
            Some(&(_, last)) if last.elapsed() >= LOCKOUT => {
                wrong.remove(&chat);
                false
            }
            Some(&(n, _)) => n >= MAX_WRONG_CODES,
            None => false,
        }
    }

    /// Count a wrong code from `chat`; returns how many it sent in a row.
    fn wrong_code(&self, chat: i64) -> u32 {
        let mut wrong = self.wrong_codes.lock().unwrap_or_else(|p| p.into_inner());
        if wrong.len() >= 10_000 {
            // Many chats guessing: forget those whose lockout is over, so the map stays bounded.
            wrong.retain(|_, (_, last)| last.elapsed() < LOCKOUT);
        }
        let entry = wrong.entry(chat).or_insert((0, tokio::time::Instant::now()));
        *entry = (entry.0 + 1, tokio::time::Instant::now());
        entry.0
    }

    async fn load_offset(&self) -> i64 {
        match self.store.get(OFFSET_KEY).await {
            Ok(Some(v)) => v.parse().unwrap_or(0),
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the telegram update offset; starting from the oldest pending update");
                0
            }
        }
    }

    async fn get_updates(&self, offset: i64) -> Result<Vec<Value>, ApiError> {
        let body = json!({
            "offset": offset,
            "timeout": self.poll_timeout.as_secs(),
            "allowed_updates": ["message", "my_chat_member"],
        });
        let result = self.call("getUpdates", &body, self.poll_timeout + Duration::from_secs(10)).await?;
        match result {
            Value::Array(items) => Ok(items),
            _ => Err(ApiError::Other("getUpdates: the result is not a list".into())),
        }
    }
}

/// `/name@bot rest` -> `("name", "rest")`.
fn command(text: &str) -> Option<(&str, &str)> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (head, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = head.split_once('@').map_or(head, |(n, _)| n);
    Some((name, args.trim()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl Notifier for TelegramNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), ProviderError> {
        let chats = self.subscribers().await?;
        if chats.is_empty() {
            tracing::warn!(event = %n.event.summary(), "no telegram chat is subscribed; send /start <join-code> to the bot");
            return Ok(());
        }
        let mut done = {
            let memo = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
            match memo.as_ref() {
                Some((prev, done)) if prev == n => done.clone(),
                _ => BTreeSet::new(),
            }
        };
        let text = render(&Report::of(n));
        let mut queue: VecDeque<i64> = chats.into_iter().filter(|c| !done.contains(c)).collect();
        let mut transient: Vec<String> = Vec::new();
        let mut permanent: Vec<String> = Vec::new();
        let mut wait: Option<Duration> = None;
        while let Some(chat) = queue.pop_front() {
            let mut outcome = self.send(chat, &text, true).await;
            if let Err(ApiError::BadRequest(d)) = &outcome {
                if d.contains("can't parse entities") {
                    // A formatting bug must not cost the message: send it unformatted.
                    tracing::error!(chat, error = %d, "telegram refused the MarkdownV2 message; sending it as plain text");
                    outcome = self.send(chat, &Report::of(n).text(), false).await;
                }
            }
            match outcome {
                Ok(()) => {
                    done.insert(chat);
                }
                Err(ApiError::Forbidden(d)) => {
                    done.insert(chat);
                    if let Err(e) = self.unsubscribe(chat, &d).await {
                        tracing::warn!(error = %e, "cannot drop a telegram chat that blocked the bot");
                    }
                }
                Err(ApiError::BadRequest(d)) if d.contains("chat not found") => {
                    done.insert(chat);
                    if let Err(e) = self.unsubscribe(chat, &d).await {
                        tracing::warn!(error = %e, "cannot drop a vanished telegram chat");
                    }
                }
                Err(ApiError::Migrated(to)) => {
                    done.insert(chat);
                    if let Err(e) = self.migrate(chat, to).await {
                        tracing::warn!(error = %e, "cannot move a migrated telegram chat");
                    }
                    if !done.contains(&to) && !queue.contains(&to) {
                        queue.push_back(to);
                    }
                }
                Err(ApiError::RetryAfter(d)) => {
                    wait = Some(wait.map_or(d, |w| w.max(d)));
                    transient.push(format!("chat {chat}: {}", ApiError::RetryAfter(d)));
                }
                Err(ApiError::Unauthorized(d)) => {
                    return Err(ProviderError::permanent(format!("telegram refused the bot token: {d}")));
                }
                Err(e @ ApiError::BadRequest(_)) => {
                    done.insert(chat);
                    permanent.push(format!("chat {chat}: {e}"));
                }
                Err(e) => transient.push(format!("chat {chat}: {e}")),
            }
        }
        *self.delivered.lock().unwrap_or_else(|e| e.into_inner()) = Some((n.clone(), done));
        if !transient.is_empty() {
            return Err(ProviderError::Transient { message: format!("telegram: {}", transient.join("; ")), retry_after: wait });
        }
        if !permanent.is_empty() {
            return Err(ProviderError::permanent(format!("telegram: {}", permanent.join("; "))));
        }
        Ok(())
    }

    async fn lead(&self) -> Result<(), ProviderError> {
        let mut offset = self.load_offset().await;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.get_updates(offset).await {
                Ok(updates) => {
                    backoff = FIRST_BACKOFF;
                    if updates.is_empty() {
                        continue;
                    }
                    for raw in updates {
                        let id = raw.get("update_id").and_then(Value::as_i64);
                        match serde_json::from_value::<Update>(raw) {
                            Ok(update) => {
                                offset = offset.max(update.update_id + 1);
                                self.handle(update).await;
                            }
                            Err(e) => {
                                // Skip what we cannot read, or it would come back forever.
                                tracing::warn!(update = ?id, error = %e, "skipping an unreadable telegram update");
                                if let Some(id) = id {
                                    offset = offset.max(id + 1);
                                }
                            }
                        }
                    }
                    if let Err(e) = self.store.put(OFFSET_KEY, &offset.to_string()).await {
                        tracing::warn!(error = %e, "cannot store the telegram update offset");
                    }
                }
                Err(ApiError::RetryAfter(d)) => {
                    tracing::warn!(retry_in = ?d, "telegram asks to slow down");
                    tokio::time::sleep(d).await;
                }
                Err(ApiError::Unauthorized(d)) => {
                    return Err(ProviderError::permanent(format!("telegram refused the bot token: {d}")));
                }
                Err(e) => {
                    if matches!(e, ApiError::Conflict(_)) {
                        tracing::warn!(retry_in = ?backoff, "another telegram poller runs for this bot; backing off");
                        // The other poller is likely the previous leader: start after what it handled.
                        offset = offset.max(self.load_offset().await);
                    } else {
                        tracing::warn!(retry_in = ?backoff, error = %e, "telegram getUpdates failed");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_reserved_character() {
        let all = r"_*[]()~`>#+-=|{}.!\";
        let escaped = escape_markdown_v2(all);
        assert_eq!(escaped, r"\_\*\[\]\(\)\~\`\>\#\+\-\=\|\{\}\.\!\\");
        assert_eq!(escape_markdown_v2("plain text, ünïcode 🚀 & <tag>: ok?"), r"plain text, ünïcode 🚀 & <tag\>: ok?");
        assert_eq!(escape_markdown_v2(""), "");
    }

    #[test]
    fn parses_commands() {
        assert_eq!(command("/start abc"), Some(("start", "abc")));
        assert_eq!(command("  /start@dhaf_bot   abc  "), Some(("start", "abc")));
        assert_eq!(command("/start"), Some(("start", "")));
        assert_eq!(command("/stop"), Some(("stop", "")));
        assert_eq!(command("hello /start abc"), None);
    }

    #[test]
    fn compares_codes_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
