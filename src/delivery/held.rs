//! Durable delivery (`component_post_durable`): what is held when the web
//! service cannot take a stanza, the circuit breaker that stops sending to a
//! service that keeps failing, and when held stanzas are tried again.
//!
//! Plain state with the clock passed in; the tasks that act on it live in
//! `delivery::durable`, and Prosody's storage is written by the Lua shim from the
//! [`Storage`] instructions that outcomes carry.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// Consecutive failed deliveries that open the circuit.
pub const BREAKER_THRESHOLD: u32 = 5;
/// Between two tries of a held stanza, or two probes of an open circuit:
/// from one second, doubling; a service that comes back is noticed within
/// the cap.
pub const HELD: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
/// The longest wait between two tries (see [`HELD`]).
pub const MAX_WAIT: Duration = HELD.max;

/// What the store keeps of a held stanza, and all a restart needs to deliver
/// it again with the same `webhook-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The delivery id (`webhook-id`), also the key in the store.
    pub id: String,
    /// The stanza as XML.
    pub stanza: String,
    /// When it arrived, in milliseconds since the Unix epoch. Also its place
    /// in its conversation: arrival stamps never repeat on one host.
    pub received: u64,
}

/// What Prosody's storage must do, carried by an outcome so that it happens
/// in order with the stanzas sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The service could not take it: keep it until delivered.
    Hold(Record),
    /// Delivered, or answered with an error: no longer waiting.
    Forget(String),
    /// Given up: moved from the waiting list to the dead letters, and why.
    Dead(Record, String),
}

/// The wait before the `failures`-th retry of a held stanza or probe.
pub fn backoff(failures: u32) -> Duration {
    HELD.wait(failures)
}

/// Whether a delivery may be attempted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The circuit is closed: send.
    Send,
    /// The circuit is open and it is time to probe: send this one only.
    Probe,
    /// The circuit is open: wait until then (or until it closes).
    WaitUntil(Instant),
}

/// Counts consecutive failures; past [`BREAKER_THRESHOLD`] it opens and
/// lets one probe through at growing intervals until one succeeds.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: u32,
    /// While open: when the next probe may go, and how many probes failed.
    open: Option<(Instant, u32)>,
    probing: bool,
}

impl Breaker {
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Asks to send. A `Probe` answer must be followed by `success` or
    /// `failure`.
    pub fn gate(&mut self, now: Instant) -> Gate {
        match self.open {
            None => Gate::Send,
            Some((at, _)) if now >= at && !self.probing => {
                self.probing = true;
                Gate::Probe
            }
            Some((at, probes)) if self.probing => {
                // A probe is out: look again after its longest possible wait.
                Gate::WaitUntil(at.max(now) + backoff(probes + 1))
            }
            Some((at, _)) => Gate::WaitUntil(at),
        }
    }

    /// The service answered. Returns true if that closed the circuit.
    pub fn success(&mut self) -> bool {
        self.failures = 0;
        self.probing = false;
        self.open.take().is_some()
    }

    /// A delivery failed (`probe`: the one `gate` let through while open).
    /// Returns true if that opened the circuit.
    pub fn failure(&mut self, now: Instant, probe: bool) -> bool {
        self.failures = self.failures.saturating_add(1);
        match &mut self.open {
            Some((at, probes)) => {
                if probe && self.probing {
                    self.probing = false;
                    *probes += 1;
                    *at = now + backoff(*probes + 1);
                }
                false
            }
            None if self.failures >= BREAKER_THRESHOLD => {
                self.open = Some((now + backoff(1), 0));
                true
            }
            None => false,
        }
    }

    /// Probe now (an admin asked to retry).
    pub fn hurry(&mut self, now: Instant) {
        if let Some((at, _)) = &mut self.open {
            *at = now;
        }
    }
}

/// The held stanzas of one conversation, oldest first.
#[derive(Debug)]
pub struct Conversation<T> {
    pub queue: VecDeque<(Record, Arc<T>)>,
    /// Failed tries of the oldest, and when it may be tried again.
    pub failures: u32,
    pub next_try: Option<Instant>,
}

impl<T> Default for Conversation<T> {
    fn default() -> Self {
        Conversation {
            queue: VecDeque::new(),
            failures: 0,
            next_try: None,
        }
    }
}

/// Every held stanza of a host, by conversation. A conversation with held
/// stanzas is blocked: its new stanzas are held behind them.
#[derive(Debug)]
pub struct Held<T> {
    pub conversations: HashMap<String, Conversation<T>>,
    pub breaker: Breaker,
    count: usize,
    /// Bytes of the held stanzas' XML.
    bytes: usize,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            conversations: HashMap::new(),
            breaker: Breaker::default(),
            count: 0,
            bytes: 0,
        }
    }
}

impl<T> Held<T> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the held stanzas (their XML, as stored).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_blocked(&self, conversation: &str) -> bool {
        self.conversations.contains_key(conversation)
    }

    /// Adds a stanza in arrival order; returns true if its conversation was
    /// not blocked before (it needs a task to deliver it).
    pub fn push(&mut self, conversation: &str, record: Record, item: Arc<T>) -> bool {
        self.count += 1;
        self.bytes += record.stanza.len();
        let is_new = !self.conversations.contains_key(conversation);
        let queue = &mut self
            .conversations
            .entry(conversation.to_owned())
            .or_default()
            .queue;
        // Usually the newest; a restored or replayed stanza may be older.
        let at = queue.partition_point(|(held, _)| held.received <= record.received);
        queue.insert(at, (record, item));
        is_new
    }

    /// The oldest stanza of a conversation.
    pub fn head(&self, conversation: &str) -> Option<&(Record, Arc<T>)> {
        self.conversations.get(conversation)?.queue.front()
    }

    /// Removes the oldest stanza of a conversation if it is `id`.
    pub fn pop_if(&mut self, conversation: &str, id: &str) -> Option<(Record, Arc<T>)> {
        let entry = self.conversations.get_mut(conversation)?;
        if entry
            .queue
            .front()
            .is_none_or(|(record, _)| record.id != id)
        {
            return None;
        }
        self.count -= 1;
        entry.failures = 0;
        entry.next_try = None;
        let popped = entry.queue.pop_front();
        self.bytes -= popped.as_ref().map_or(0, |(record, _)| record.stanza.len());
        popped
    }

    /// Removes a stanza wherever it is.
    pub fn remove(&mut self, id: &str) -> Option<(Record, Arc<T>)> {
        for entry in self.conversations.values_mut() {
            if let Some(at) = entry.queue.iter().position(|(record, _)| record.id == id) {
                self.count -= 1;
                let removed = entry.queue.remove(at);
                self.bytes -= removed
                    .as_ref()
                    .map_or(0, |(record, _)| record.stanza.len());
                return removed;
            }
        }
        None
    }

    /// Forgets a conversation whose queue is empty: it is no longer blocked.
    /// Returns true if it was removed.
    pub fn release_if_empty(&mut self, conversation: &str) -> bool {
        if self
            .conversations
            .get(conversation)
            .is_some_and(|entry| entry.queue.is_empty())
        {
            self.conversations.remove(conversation);
            return true;
        }
        false
    }

    /// Every held stanza, oldest first within each conversation.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.conversations
            .values()
            .flat_map(|entry| entry.queue.iter().map(|(record, _)| record))
    }

    /// Try every conversation again now.
    pub fn hurry(&mut self, now: Instant) {
        for entry in self.conversations.values_mut() {
            entry.next_try = None;
        }
        self.breaker.hurry(now);
    }

    pub fn clear(&mut self) {
        self.conversations.clear();
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, received: u64) -> Record {
        Record {
            id: id.into(),
            stanza: "<message/>".into(),
            received,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(5), MAX_WAIT);
        assert_eq!(backoff(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn breaker_opens_after_repeated_failures_and_probes_one_at_a_time() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 1..BREAKER_THRESHOLD {
            assert!(!b.failure(t0, false));
            assert_eq!(b.gate(t0), Gate::Send);
        }
        assert!(b.failure(t0, false));
        assert!(b.is_open());
        assert_eq!(b.gate(t0), Gate::WaitUntil(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.gate(t1), Gate::Probe);
        // One probe at a time.
        assert!(matches!(b.gate(t1), Gate::WaitUntil(_)));
        // A failed probe: the next one waits longer.
        assert!(!b.failure(t1, true));
        assert_eq!(b.gate(t1), Gate::WaitUntil(t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.gate(t2), Gate::Probe);
        assert!(b.success());
        assert!(!b.is_open());
        assert_eq!(b.gate(t2), Gate::Send);
        // Closed again: it takes the full threshold to open it once more.
        assert!(!b.failure(t2, false));
    }

    #[test]
    fn a_success_resets_the_count() {
        let now = Instant::now();
        let mut b = Breaker::default();
        for _ in 1..BREAKER_THRESHOLD {
            b.failure(now, false);
        }
        assert!(!b.success());
        for _ in 1..BREAKER_THRESHOLD {
            assert!(!b.failure(now, false));
        }
    }

    #[test]
    fn hurry_probes_at_once() {
        let now = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..BREAKER_THRESHOLD {
            b.failure(now, false);
        }
        assert!(matches!(b.gate(now), Gate::WaitUntil(_)));
        b.hurry(now);
        assert_eq!(b.gate(now), Gate::Probe);
    }

    #[test]
    fn held_stanzas_keep_arrival_order_and_block_their_conversation() {
        let mut held = Held::<()>::default();
        assert!(held.push("a", record("1", 10), Arc::new(())));
        assert!(!held.push("a", record("3", 30), Arc::new(())));
        // A restored older stanza goes before newer ones.
        assert!(!held.push("a", record("2", 20), Arc::new(())));
        assert!(held.push("b", record("4", 15), Arc::new(())));
        assert_eq!(held.len(), 4);
        assert!(held.is_blocked("a") && held.is_blocked("b") && !held.is_blocked("c"));
        assert_eq!(held.head("a").unwrap().0.id, "1");
        // Only the oldest can be delivered.
        assert!(held.pop_if("a", "2").is_none());
        assert_eq!(held.pop_if("a", "1").unwrap().0.id, "1");
        assert_eq!(held.head("a").unwrap().0.id, "2");
        assert_eq!(held.remove("3").unwrap().0.id, "3");
        assert!(held.remove("3").is_none());
        assert!(!held.release_if_empty("a"));
        held.pop_if("a", "2").unwrap();
        assert!(held.release_if_empty("a"));
        assert!(!held.is_blocked("a"));
        assert_eq!(held.len(), 1);
        assert_eq!(
            held.records().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["4"]
        );
    }
}
