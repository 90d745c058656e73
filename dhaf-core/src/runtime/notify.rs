//! Delivery of notifications: one ordered queue per notifier, each retried with backoff, so a
//! slow or broken notifier neither blocks a switch nor delays the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::wall_now;
use crate::config::Config;
use crate::model::{Event, Notification};
use crate::provider::{Notifier, ProviderError};

/// How many times a notification is tried before it is dropped (and logged).
pub(crate) const ATTEMPTS: u32 = 5;
/// The longest one delivery attempt may take.
pub(crate) const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type Delivery = Pin<Box<dyn Future<Output = ()> + Send>>;

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

    pub fn send(&self, config: &Config, event: Event) {
        if let Some(o) = &self.observers {
            o.event(&event);
        }
        tracing::info!(event = %event.summary(), "notify");
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
