//! Delivery of notifications: one ordered queue per notifier, each retried with backoff, so a
//! slow or broken notifier neither blocks a switch nor delays the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::wall_now;
use crate::config::Config;
use crate::model::{Event, FencingToken, Notification, SwitchKind};
use crate::provider::{Notifier, ProviderError};

/// How many times a notification is tried before it is dropped (and logged).
pub(crate) const ATTEMPTS: u32 = 5;
/// The longest one delivery attempt may take.
pub(crate) const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type Delivery = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How loud an event is in the log: what needs a person now is an error, what changed the
/// service's placement on its own (or may soon need one) a warning, the rest routine.
pub(crate) fn level(event: &Event) -> tracing::Level {
    use tracing::Level;
    match event {
        Event::ServiceWentDown { .. }
        | Event::SwitchFailed { .. }
        | Event::SwitchStillFailing { .. }
        | Event::DcsUnavailable { .. }
        | Event::DefinitionsDisagree { held: true, .. } => Level::ERROR,
        Event::Switched { kind: SwitchKind::Failover | SwitchKind::Failback | SwitchKind::Repair, .. }
        | Event::EntryPointWentDown { .. }
        | Event::NodeWentDown { .. }
        | Event::SwitchoverPurged { .. }
        | Event::ScheduledSwitchoverRefused { .. }
        | Event::Paused { .. }
        | Event::DefinitionsDisagree { .. } => Level::WARN,
        _ => Level::INFO,
    }
}

/// One log line per event: its summary as the message, its fields (as notifiers get them) and
/// the leader's term as the line's fields, so `--log-format json` gives `service`,
/// `entry_point`, `term`, … to search on.
fn log(event: &Event, term: Option<FencingToken>) {
    let fields = serde_json::to_value(event).unwrap_or_default();
    let field = |key: &str| -> Option<String> {
        match fields.get(key)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(items) => {
                Some(items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect::<Vec<_>>().join("; "))
            }
            other => Some(other.to_string()),
        }
    };
    let (kind, service, entry_point, node) = (field("event"), field("service"), field("entry_point"), field("node"));
    let (from, to, switch) = (field("from"), field("to"), field("kind"));
    let term = field("token").or_else(|| term.map(|t| t.0.to_string()));
    let (reason, attempts, nodes, details) =
        (field("reason").or_else(|| field("why")), field("attempts"), field("nodes"), field("reasons").or_else(|| field("differences")));
    let show = |v: &Option<String>| v.clone().map(tracing::field::display);
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                $level,
                event = show(&kind),
                service = show(&service),
                entry_point = show(&entry_point),
                node = show(&node),
                from = show(&from),
                to = show(&to),
                kind = show(&switch),
                term = show(&term),
                reason = show(&reason),
                attempts = show(&attempts),
                nodes = show(&nodes),
                details = show(&details),
                "{}",
                event.summary()
            )
        };
    }
    match level(event) {
        tracing::Level::ERROR => at!(tracing::Level::ERROR),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        _ => at!(tracing::Level::INFO),
    }
}

pub(crate) struct Notifications {
    queues: Vec<mpsc::UnboundedSender<Notification>>,
    pending: Arc<tokio::sync::Semaphore>,
    /// Delivery tasks that could not start yet (built outside a tokio runtime): started by
    /// [`Notifications::start_parked`], queueing in the meantime.
    parked: Mutex<Vec<Delivery>>,
    /// The node's subscribers, told every event the notifiers are.
    observers: Option<Arc<super::observe::Observers>>,
}

impl Notifications {
    pub fn start(notifiers: &[(String, Arc<dyn Notifier>)]) -> Self {
        let pending = Arc::new(tokio::sync::Semaphore::new(0));
        let mut parked: Vec<Delivery> = Vec::new();
        let queues = notifiers
            .iter()
            .map(|(name, notifier)| {
                let (tx, rx) = mpsc::unbounded_channel();
                let delivery = deliver(name.clone(), notifier.clone(), rx, pending.clone());
                if tokio::runtime::Handle::try_current().is_ok() {
                    tokio::spawn(delivery);
                } else {
                    parked.push(Box::pin(delivery));
                }
                tx
            })
            .collect();
        Notifications { queues, pending, parked: Mutex::new(parked), observers: None }
    }

    /// The subscribers these notifications tell (new ones if none were given).
    pub fn observers(&self) -> Arc<super::observe::Observers> {
        self.observers.clone().unwrap_or_else(|| Arc::new(super::observe::Observers::new()))
    }

    /// These notifications, with every event also told to `observers`.
    pub fn observed_by(mut self, observers: Arc<super::observe::Observers>) -> Self {
        self.observers = Some(observers);
        self
    }

    /// Start the delivery tasks that were built outside a runtime; call from within one.
    pub fn start_parked(&self) {
        for delivery in self.parked.lock().unwrap().drain(..) {
            tokio::spawn(delivery);
        }
    }

    /// Log `event` (its one log line: callers do not log it again) and queue it for every
    /// notifier.
    pub fn send(&self, config: &Config, event: Event) {
        self.send_as(config, event, None);
    }

    /// [`Notifications::send`] for an event of the leader's work in term `term`, which its log
    /// line carries.
    pub fn send_in_term(&self, config: &Config, event: Event, term: FencingToken) {
        self.send_as(config, event, Some(term));
    }

    fn send_as(&self, config: &Config, event: Event, term: Option<FencingToken>) {
        log(&event, term);
        if let Some(o) = &self.observers {
            o.event(&event);
        }
        let entry_points = event.service().and_then(|s| config.service(s)).map(|s| s.entry_points.clone()).unwrap_or_default();
        let n = Notification {
            cluster: config.dhaf.cluster_name.clone(),
            node: config.dhaf.node_name.clone(),
            event,
            entry_points,
            at: wall_now(),
        };
        for q in &self.queues {
            if q.send(n.clone()).is_ok() {
                self.pending.add_permits(1);
            }
        }
    }

    /// Wait (at most `limit`) for queued notifications to be delivered or given up.
    pub async fn flush(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while self.pending.available_permits() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

async fn deliver(
    name: String,
    notifier: Arc<dyn Notifier>,
    mut rx: mpsc::UnboundedReceiver<Notification>,
    pending: Arc<tokio::sync::Semaphore>,
) {
    while let Some(n) = rx.recv().await {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            // Bounded, so a notifier that hangs delays its own queue, not forever.
            let sent = tokio::time::timeout(NOTIFY_TIMEOUT, notifier.notify(&n))
                .await
                .unwrap_or_else(|_| Err(ProviderError::transient(format!("no answer within {} s", NOTIFY_TIMEOUT.as_secs()))));
            match sent {
                Ok(()) => break,
                Err(e) => {
                    let wait = match &e {
                        ProviderError::Transient { retry_after: Some(after), .. } => *after,
                        _ => backoff,
                    };
                    if attempt == ATTEMPTS || matches!(e, ProviderError::Permanent(_)) {
                        tracing::error!(notifier = %name, error = %e, event = %n.event.summary(), "notification dropped");
                        break;
                    }
                    tracing::warn!(notifier = %name, error = %e, attempt, retry_in = ?wait, "notification failed; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Ok(p) = pending.try_acquire() {
            p.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn levels_say_what_an_event_needs() {
        let s = || "main".to_string();
        let ep = || "a".to_string();
        let switched = |kind| Event::Switched { service: s(), from: Some(ep()), to: "b".into(), kind };
        let table = [
            (Event::ServiceWentDown { service: s() }, Level::ERROR),
            (Event::SwitchFailed { service: s(), to: ep(), reason: "503".into() }, Level::ERROR),
            (Event::SwitchStillFailing { service: s(), to: ep(), attempts: 5, reason: "503".into() }, Level::ERROR),
            (Event::DcsUnavailable { node: "n1".into(), reason: "timeout".into() }, Level::ERROR),
            (Event::DefinitionsDisagree { service: s(), nodes: vec![], differences: vec![], held: true }, Level::ERROR),
            (Event::DefinitionsDisagree { service: s(), nodes: vec![], differences: vec![], held: false }, Level::WARN),
            (Event::EntryPointWentDown { service: s(), entry_point: ep(), reasons: vec![] }, Level::WARN),
            (switched(SwitchKind::Failover), Level::WARN),
            (switched(SwitchKind::Failback), Level::WARN),
            (Event::NodeWentDown { node: "n2".into() }, Level::WARN),
            (switched(SwitchKind::Switchover), Level::INFO),
            (switched(SwitchKind::Initial), Level::INFO),
            (Event::EntryPointCameUp { service: s(), entry_point: ep() }, Level::INFO),
            (Event::DcsRecovered { node: "n1".into() }, Level::INFO),
        ];
        for (event, want) in table {
            assert_eq!(level(&event), want, "{event:?}");
        }
    }
}
