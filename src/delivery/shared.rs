//! What the tasks of one component host share. Each lock guards one thing;
//! where two are held at once they are taken in the order
//! `durable` → `owed` → `outbox`, and `owed` → `conversations`.
//! `conversations` takes no other lock while held (but at a reload, when a
//! retired host's is held, its successor's); `connector` takes only the
//! process-wide runtime's (`runtime.rs`), never the reverse.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::AbortHandle;

use super::held::{Held, Record};
use super::http::Connector;
use super::ordering::Conversations;
use super::outbox::Outbox;
use super::outcome::{decide, decide_step, DeliveryError, LogLevel, Outcome};
use super::runtime::lock;
use crate::clock;
use crate::commands::{SharedCommands, Step};
use crate::config::Config;
use crate::conversion::{Envelope, HttpAnswer, Kind, RoomJids};
use crate::rooms::SharedRooms;
use crate::xml::Element;

/// Durable delivery, under one lock: the held stanzas and the breaker, the task
/// delivering each blocked conversation's stanzas.
#[derive(Default)]
pub(super) struct DurableState {
    pub(super) held: Held<Job>,
    pub(super) redeliverers: HashMap<String, AbortHandle>,
    /// Set while held stanzas are bounced for want of room.
    pub(super) full: bool,
    /// Stanzas given up and kept in the dead-letter store.
    pub(super) dead_letters: usize,
    /// Set by `close_durable`: what is held from then on is only stored, for
    /// the next start, never redelivered by this instance.
    pub(super) closed: bool,
}

#[derive(Default)]
pub(super) struct Durable {
    pub(super) state: Mutex<DurableState>,
    /// Wakes the redeliverers: the circuit closed, or an admin hurried them.
    pub(super) changed: Notify,
}

/// Files being uploaded (see upload.rs), under a lock each: the IQs they
/// await, by id; the upload service found by disco (one task looks at a
/// time); the PUT's client.
#[derive(Default)]
pub(super) struct Uploads {
    /// By id: whom it was sent to, and who awaits the answer.
    pub(super) waiting: Mutex<HashMap<String, (String, oneshot::Sender<Element>)>>,
    pub(super) service: tokio::sync::Mutex<UploadService>,
    /// The deliveries' TLS settings and timeouts, but none of the web
    /// service's headers (they are its secrets); made again after a fork.
    pub(super) client: Mutex<Option<(u64, reqwest::Client)>>,
}

#[derive(Default)]
pub(super) enum UploadService {
    #[default]
    Unknown,
    Found(String),
    /// None found: believed until then.
    Missing(Instant),
}

/// One stanza to deliver: shared by its task and, when held, the held list.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) envelope: Envelope,
    pub(super) json: String,
    /// The `webhook-id` of every attempt, first to last.
    pub(super) delivery_id: String,
    /// Arrival, in milliseconds since the Unix epoch, unique per host.
    pub(super) received: u64,
    /// Sender's bare JID and the component JID it wrote to (only made when
    /// ordering or durable delivery needs it).
    pub(super) conversation: String,
    /// The stanza as XML, with durable delivery: what is held.
    pub(super) xml: Option<String>,
    /// A command step: its answer is the command's result.
    pub(super) command: Option<Step>,
    /// A message with a body (see [`super::typing`]).
    pub(super) has_body: bool,
}

impl Job {
    /// Durable delivery holds messages and presence; an IQ wants its answer
    /// now, so it bounces as in the default mode.
    pub(super) fn may_be_held(&self) -> bool {
        self.envelope.kind != Kind::Iq
    }

    /// What the sender gets, given how the POST went.
    pub(super) fn decide(&self, host: &str, result: Result<HttpAnswer, DeliveryError>) -> Outcome {
        match &self.command {
            Some(step) => decide_step(&self.envelope, step, result),
            None => decide(&self.envelope, host, result),
        }
    }

    pub(super) fn record(&self) -> Record {
        Record {
            id: self.delivery_id.clone(),
            stanza: self.xml.clone().unwrap_or_default(),
            received: self.received,
        }
    }
}

/// A stanza accepted and still owed an answer.
pub(super) struct OwedStanza {
    pub(super) job: Arc<Job>,
    pub(super) abort: Option<AbortHandle>,
}

/// Every accepted stanza until its outcome is queued, and the bytes of
/// JSON they will be POSTed as (`component_post_queue_bytes`).
#[derive(Default)]
pub(super) struct Owed {
    stanzas: HashMap<u64, OwedStanza>,
    bytes: usize,
}

impl Owed {
    pub(super) fn len(&self) -> usize {
        self.stanzas.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn insert(&mut self, id: u64, entry: OwedStanza) {
        self.bytes += entry.job.json.len();
        if let Some(old) = self.stanzas.insert(id, entry) {
            self.bytes -= old.job.json.len();
        }
    }

    pub(super) fn remove(&mut self, id: &u64) -> Option<OwedStanza> {
        let entry = self.stanzas.remove(id)?;
        self.bytes -= entry.job.json.len();
        Some(entry)
    }

    pub(super) fn get_mut(&mut self, id: &u64) -> Option<&mut OwedStanza> {
        self.stanzas.get_mut(id)
    }

    pub(super) fn drain(&mut self) -> Vec<OwedStanza> {
        self.bytes = 0;
        self.stanzas.drain().map(|(_, entry)| entry).collect()
    }
}

/// What the tasks of one component host share (see the module's comment
/// for the lock order).
pub(super) struct Shared {
    pub(super) config: Config,
    /// Durable delivery: the held stanzas, the breaker, the redeliverers.
    pub(super) durable: Durable,
    /// Every accepted stanza until its outcome is queued: running, waiting
    /// for a slot, or waiting behind its conversation.
    pub(super) owed: Mutex<Owed>,
    pub(super) outbox: Outbox,
    pub(super) conversations: Conversations,
    /// One per POST that may run at once (`max_inflight`).
    pub(super) slots: Semaphore,
    pub(super) connector: Connector,
    /// Set while stanzas are being refused, so the admin hears it once.
    pub(super) refusing: AtomicBool,
    /// The last arrival stamp given, so that stamps never repeat.
    pub(super) last_received: AtomicU64,
    /// The rooms this host is in (kept by its rooms' state).
    pub(super) rooms: RoomJids,
    /// The host's group chat, once made: what the web service sends goes
    /// through it (a presence may join or leave a room). Prosody's thread
    /// only, and no other lock is taken under it.
    pub(super) group_chat: Mutex<Option<SharedRooms>>,
    /// The host's commands: the menu, and the sessions its outcomes settle
    /// (the newest delivery's, after a reload).
    pub(super) commands: SharedCommands,
    /// Files being uploaded: the IQs they await, the service, the client.
    pub(super) uploads: Uploads,
    /// After a reload: the delivery that took over from this one. What
    /// this one still has is POSTed as the newer one's config says.
    pub(super) successor: Mutex<Option<Arc<Shared>>>,
}

impl Shared {
    /// Where an attempt goes: the newest delivery of the host (after
    /// reloads), or this one.
    pub(super) fn target(self: &Arc<Self>) -> Arc<Shared> {
        let mut target = Arc::clone(self);
        loop {
            let next = lock(&target.successor).clone();
            match next {
                Some(next) => target = next,
                None => return target,
            }
        }
    }

    /// Ends delivery `id` with the outcome `make` builds, unless it has
    /// already ended (cancelled). Exactly one outcome per stanza.
    pub(super) fn finish(&self, id: u64, make: impl FnOnce(&Job) -> Outcome) {
        let Some(job) = lock(&self.owed)
            .get_mut(&id)
            .map(|entry| Arc::clone(&entry.job))
        else {
            return;
        };
        // Made without the lock (Prosody's thread takes it for every stanza);
        // queued under it, so that once nothing is owed every outcome is in
        // the outbox (a retired delivery is watched until then).
        let outcome = make(&job);
        let mut owed = lock(&self.owed);
        if owed.remove(&id).is_some() {
            self.outbox.queue(outcome);
        }
    }

    pub(super) fn fail(&self, id: u64, error: DeliveryError) {
        let host = &self.config.host;
        self.finish(id, |job| job.decide(host, Err(error)));
    }

    pub(super) fn stamp(&self) -> u64 {
        let now = clock::unix_millis();
        let previous = self
            .last_received
            .fetch_update(AtomicOrdering::Relaxed, AtomicOrdering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_default();
        now.max(previous + 1)
    }

    /// Refuses a stanza (`job`) at once when
    /// `max_inflight + queue_size` stanzas, or `queue_bytes` of them, are
    /// owed answers already; the admin hears of it once per flood.
    pub(super) fn admit(&self, owed: &Owed, job: &Job) -> bool {
        let config = &self.config;
        let limit = config.max_inflight + config.queue_size;
        if owed.len() < limit && owed.bytes() + job.json.len() <= config.queue_bytes {
            self.refusing.store(false, AtomicOrdering::Relaxed);
            return true;
        }
        if !self.refusing.swap(true, AtomicOrdering::Relaxed) {
            self.outbox.queue(Outcome::log_only(
                LogLevel::Warn,
                format!(
                    "{} stanzas ({} KiB of JSON) in flight or waiting, at most {limit} ({} KiB): \
                     refusing more with resource-constraint",
                    owed.len(),
                    owed.bytes() / 1024,
                    config.queue_bytes / 1024
                ),
            ));
        }
        let refused = job.decide(&config.host, Err(DeliveryError::QueueFull));
        self.outbox.queue(refused);
        false
    }
}
