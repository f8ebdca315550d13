//! Conversations: stanzas from one sender (bare JID) to one component JID.
//! Each has at most `1 + component_post_conversation_queue` stanzas owed
//! an answer, so that one sender cannot fill the host's queue; with
//! ordering on, they are POSTed one at a time, in arrival order.

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

/// A conversation with stanzas owed an answer.
struct Conversation {
    /// Stanzas joined and not yet left.
    owed: usize,
    /// Resolves when the last stanza to join is done: the next one waits
    /// on it (ordering on).
    last_done: Option<oneshot::Receiver<()>>,
}

/// The conversations with stanzas owed. A leaf lock: nothing else is
/// locked while it is held.
#[derive(Default)]
pub(super) struct Conversations(Mutex<HashMap<String, Conversation>>);

/// A stanza's place in its conversation: waits for the stanza before it
/// (ordering on), and lets the next one go when dropped, however its task
/// ends.
pub(super) struct Place {
    before: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

/// The conversation already has as many stanzas owed as it may.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Full;

impl Place {
    /// Stage one: wait until every earlier stanza of the conversation is
    /// done. Cancel-safe: abandoned (at a deadline), it can be awaited again.
    pub(super) async fn wait_for_turn(&mut self) {
        if let Some(before) = self.before.as_mut() {
            let _ = before.await;
            self.before = None;
        }
    }
}

impl Conversations {
    /// A stanza joins the end of conversation `key`, unless `1 + waiting`
    /// are owed there already. Every join that succeeds is matched by one
    /// [`Conversations::leave`].
    pub(super) fn join(&self, key: &str, ordered: bool, waiting: usize) -> Result<Place, Full> {
        let (done, done_rx) = oneshot::channel();
        let mut conversations = lock(&self.0);
        let conversation = conversations.entry(key.to_owned()).or_insert(Conversation {
            owed: 0,
            last_done: None,
        });
        if conversation.owed > waiting {
            return Err(Full);
        }
        conversation.owed += 1;
        let before = if ordered {
            conversation.last_done.replace(done_rx)
        } else {
            None
        };
        Ok(Place {
            before,
            _done: done,
        })
    }

    /// A stanza of conversation `key` is done: a conversation with none
    /// owed is forgotten.
    pub(super) fn leave(&self, key: &str) {
        let mut conversations = lock(&self.0);
        if let Some(conversation) = conversations.get_mut(key) {
            conversation.owed = conversation.owed.saturating_sub(1);
            if conversation.owed == 0 {
                conversations.remove(key);
            }
        }
    }

    /// A reload: this (retired) host's conversations go on in `to`, whose
    /// next stanza of each waits for this one's last, so that order holds
    /// across the two.
    pub(super) fn hand_over(&self, to: &Conversations) {
        let mut from = lock(&self.0);
        let mut to = lock(&to.0);
        for (key, conversation) in from.iter_mut() {
            let Some(mut last_done) = conversation.last_done.take() else {
                continue;
            };
            if matches!(
                last_done.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            ) {
                continue; // done already
            }
            let entry = to.entry(key.clone()).or_insert(Conversation {
                owed: 0,
                last_done: None,
            });
            entry.last_done.get_or_insert(last_done);
        }
    }

    /// Conversations with stanzas owed (for tests: none is kept after).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_may_have_one_in_flight_and_so_many_waiting() {
        let conversations = Conversations::default();
        let places: Vec<Place> = (0..3)
            .map(|_| conversations.join("alice", true, 2).unwrap())
            .collect();
        assert_eq!(conversations.join("alice", true, 2).err(), Some(Full));
        assert!(
            conversations.join("bob", true, 2).is_ok(),
            "another conversation"
        );
        conversations.leave("alice");
        assert!(conversations.join("alice", true, 2).is_ok(), "room again");
        drop(places);
        for _ in 0..3 {
            conversations.leave("alice");
        }
        conversations.leave("bob");
        assert_eq!(conversations.len(), 0);
    }

    #[test]
    fn the_next_stanza_waits_for_the_one_before_even_after_giving_up_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(waits_in_order());
    }

    #[test]
    fn after_a_hand_over_the_next_stanza_waits_for_the_retired_ones() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (old, new) = (Conversations::default(), Conversations::default());
            let in_flight = old.join("c", true, 9).unwrap();
            old.hand_over(&new);
            let mut next = new.join("c", true, 9).unwrap();
            let waited =
                tokio::time::timeout(std::time::Duration::from_millis(10), next.wait_for_turn());
            assert!(waited.await.is_err(), "the retired one is not done");
            drop(in_flight);
            old.leave("c");
            next.wait_for_turn().await;
            drop(next);
            new.leave("c");
            assert_eq!((old.len(), new.len()), (0, 0));
        });
    }

    async fn waits_in_order() {
        let conversations = Conversations::default();
        let first = conversations.join("c", true, 9).unwrap();
        let mut second = conversations.join("c", true, 9).unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(10), second.wait_for_turn())
                .await;
        assert!(waited.is_err(), "the first is not done");
        drop(first);
        second.wait_for_turn().await;
        let mut unordered = conversations.join("c", false, 9).unwrap();
        unordered.wait_for_turn().await;
    }
}
