//! Conversation ordering: stanzas from one sender (bare JID) to one
//! component JID are POSTed one at a time, in arrival order.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::runtime::lock;
use crate::conversion::Envelope;
use crate::jid;

/// The conversation a stanza belongs to: its sender's bare JID and the
/// component JID it was sent to.
pub(super) fn conversation_of(envelope: &Envelope) -> String {
    format!("{}\n{}", jid::bare(&envelope.from), jid::bare(&envelope.to))
}

/// The last stanza of each conversation, and a receiver that resolves when
/// it is done: the next stanza of that conversation waits on it. A leaf
/// lock: nothing else is locked while it is held.
#[derive(Default)]
pub(super) struct Conversations(Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>);

/// A stanza's place in its conversation: waits for the stanza before it,
/// and lets the next one go when dropped, however its task ends.
pub(super) struct Place {
    before: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

impl Place {
    /// A place that waits for nobody (ordering off).
    pub(super) fn first() -> Place {
        Place {
            before: None,
            _done: oneshot::channel().0,
        }
    }

    /// Stage one: wait until every earlier stanza of the conversation is done.
    pub(super) async fn wait_for_turn(&mut self) {
        if let Some(before) = self.before.take() {
            let _ = before.await;
        }
    }
}

impl Conversations {
    /// Stanza `id` joins the end of conversation `key`.
    pub(super) fn join(&self, key: &str, id: u64) -> Place {
        let (done, done_rx) = oneshot::channel();
        let before = lock(&self.0)
            .insert(key.to_owned(), (id, done_rx))
            .map(|(_, before)| before);
        Place {
            before,
            _done: done,
        }
    }

    /// Stanza `id` is done: if it was the conversation's last, the
    /// conversation is forgotten.
    pub(super) fn leave(&self, key: &str, id: u64) {
        let mut conversations = lock(&self.0);
        if conversations.get(key).is_some_and(|(last, _)| *last == id) {
            conversations.remove(key);
        }
    }
}
