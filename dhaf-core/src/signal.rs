//! Waiting for a condition, woken in the order the waiters began to wait.
//!
//! `tokio::sync::watch` spreads its waiters over several queues picked by the runtime's random
//! numbers, so tasks woken by one change run in another order from one run to the next; these
//! wake them in order, so a run in paused time (the simulation) replays exactly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Something that tasks wait on changed: they look again.
#[derive(Debug, Default)]
pub(crate) struct Signal(Notify);

impl Signal {
    /// Wake every waiter to look again.
    pub fn changed(&self) {
        self.0.notify_waiters();
    }

    /// Wait until `ready` holds, looking again at each change. Call `changed` after making it
    /// hold; the waiter is registered before it looks, so no change falls between.
    pub async fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        loop {
            let notified = self.0.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready() {
                return;
            }
            notified.await;
        }
    }
}

/// A number that only grows (a lease's generation), with tasks that wait for it to move past
/// what they saw.
#[derive(Debug, Default)]
pub(crate) struct Epoch {
    value: AtomicU64,
    signal: Signal,
}

impl Epoch {
    /// Move it on, waking every waiter.
    pub fn bump(&self) {
        self.value.fetch_add(1, Ordering::SeqCst);
        self.signal.changed();
    }

    /// Where it is.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }

    /// Wait until it is past `seen`; where it is then.
    pub async fn after(&self, seen: u64) -> u64 {
        self.signal.wait_until(|| self.get() != seen).await;
        self.get()
    }
}

/// A flag that is set once and stays set, with tasks that wait for it.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    set: AtomicBool,
    signal: Signal,
}

impl Latch {
    /// Set it, waking every waiter.
    pub fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.signal.changed();
    }

    /// Whether it was set.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Wait until it is set.
    pub async fn wait(&self) {
        self.signal.wait_until(|| self.is_set()).await;
    }
}
