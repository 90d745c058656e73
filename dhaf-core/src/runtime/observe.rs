//! What an embedder observes of a running node without polling: a broadcast of its events and a
//! watch of its leadership, shared by every generation of the node (a reload keeps both).

use tokio::sync::{broadcast, watch};

use crate::model::{Event, FencingToken};

/// How many events a subscriber may fall behind before it misses some
/// ([`broadcast::error::RecvError::Lagged`] says how many).
pub const EVENT_BUFFER: usize = 1024;

/// Something that happened on a node, as [`super::NodeHandle::subscribe`] tells it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// An event this node told its notifiers (sent before the notifiers' delivery, which may
    /// retry): while it leads, every transition it decides; on any node, its own DCS trouble.
    Event(Event),
    /// This node became the leader in `term`.
    LeadershipGained {
        /// The term: the leader key's revision, the fencing token of its writes.
        term: FencingToken,
    },
    /// This node no longer leads: it stepped down (lost its lease or could not renew it in time)
    /// or stopped.
    LeadershipLost {
        /// The term that ended.
        term: FencingToken,
    },
}

/// This node's own opinion of one entry point, as it publishes it for the vote.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub struct OwnOpinion {
    /// The service.
    pub service: String,
    /// The entry point.
    pub entry_point: String,
    /// Whether this node holds it healthy (after rise/fall).
    pub healthy: bool,
    /// Why not, when it is held unhealthy.
    pub reason: Option<String>,
}

pub(crate) struct Observers {
    events: broadcast::Sender<NodeEvent>,
    leadership: watch::Sender<Option<FencingToken>>,
}

impl Observers {
    pub fn new() -> Observers {
        Observers { events: broadcast::channel(EVENT_BUFFER).0, leadership: watch::channel(None).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    pub fn leadership(&self) -> watch::Receiver<Option<FencingToken>> {
        self.leadership.subscribe()
    }

    pub fn event(&self, event: &Event) {
        // No subscriber is no error.
        let _ = self.events.send(NodeEvent::Event(event.clone()));
    }

    /// This node leads in `term` now (told once per change).
    pub fn gained(&self, term: FencingToken) {
        if self.leadership.send_replace(Some(term)) != Some(term) {
            let _ = self.events.send(NodeEvent::LeadershipGained { term });
        }
    }

    /// This node no longer leads in `term`.
    pub fn lost(&self, term: FencingToken) {
        if self.leadership.send_replace(None).is_some() {
            let _ = self.events.send(NodeEvent::LeadershipLost { term });
        }
    }
}
