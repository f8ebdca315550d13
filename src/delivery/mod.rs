//! POSTing stanzas off Prosody's thread. Each stanza becomes a task on a
//! shared tokio runtime ([`runtime`]) that goes through the stages of
//! [`pipeline`]; its [`Outcome`] is queued in the [`outbox`] and signalled
//! on an eventfd that Prosody's event loop watches, then drained on
//! Prosody's thread. Nothing here touches Lua.
//!
//! Per component host: at most `max_inflight` POSTs at once and
//! `queue_size` more stanzas waiting (beyond that a stanza is refused at
//! once); stanzas of one conversation go one at a time, in arrival order
//! ([`ordering`]); failed attempts are retried with backoff within the
//! stanza's deadline ([`retry`], [`http`]); with durable delivery, what the
//! service cannot take is held and delivered later ([`durable`], [`held`]).

mod durable;
pub mod held;
mod http;
mod ordering;
mod outbox;
mod outcome;
mod pipeline;
pub mod retry;
mod runtime;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

pub use durable::{HeldCounts, Source};
pub use held::{Record, Storage};
pub use outcome::{outcome, DeliveryError, LogLevel, Outcome, Status};

use crate::config::{Config, Ordering};
use crate::conversion::{self, Envelope, Kind, Request};
use crate::signing;
use ordering::{conversation_of, Conversations, Place};
use outbox::Outbox;
use pipeline::TaskGuard;
use runtime::lock;

/// One stanza to deliver: shared by its task and, when held, the held list.
#[derive(Debug)]
struct Job {
    envelope: Envelope,
    json: String,
    /// The `webhook-id` of every attempt, first to last.
    delivery_id: String,
    /// Arrival, in milliseconds since the Unix epoch, unique per host.
    received: u64,
    /// Sender's bare JID and the component JID it wrote to (only made when
    /// ordering or durable delivery needs it).
    conversation: String,
}

impl Job {
    /// Durable delivery holds messages and presence; an IQ wants its answer
    /// now, so it bounces as in the default mode.
    fn may_be_held(&self) -> bool {
        self.envelope.kind != Kind::Iq
    }

    fn record(&self) -> Record {
        Record {
            id: self.delivery_id.clone(),
            stanza: conversion::stanza_xml(&self.json).unwrap_or_default(),
            received: self.received,
        }
    }
}

/// A stanza accepted and still owed an answer.
struct InFlight {
    job: Arc<Job>,
    abort: Option<AbortHandle>,
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// What the tasks of one component host share. Each lock guards one thing;
/// where two are held at once they are taken in the order
/// `durable` → `owed` → `outbox`. `conversations` and `connector` are
/// leaves, never held while another is taken.
struct Shared {
    config: Config,
    /// Durable delivery: the held stanzas, the breaker, the redeliverers.
    durable: durable::Durable,
    /// Every accepted stanza until its outcome is queued: running, waiting
    /// for a slot, or waiting behind its conversation.
    owed: Mutex<HashMap<u64, InFlight>>,
    outbox: Outbox,
    conversations: Conversations,
    /// One per POST that may run at once (`max_inflight`).
    slots: Semaphore,
    connector: http::Connector,
    /// Set while stanzas are being refused, so the admin hears it once.
    refusing: AtomicBool,
    /// The last arrival stamp given, so that stamps never repeat.
    last_received: AtomicU64,
}

impl Shared {
    /// Ends delivery `id` with the outcome `make` builds, unless it has
    /// already ended (cancelled). Exactly one outcome per stanza.
    fn finish(&self, id: u64, make: impl FnOnce(&Envelope) -> Outcome) {
        let Some(entry) = lock(&self.owed).remove(&id) else {
            return;
        };
        self.outbox.queue(make(&entry.job.envelope));
    }

    fn fail(&self, id: u64, error: DeliveryError) {
        let host = &self.config.host;
        self.finish(id, |envelope| outcome(envelope, host, Err(error)));
    }

    fn stamp(&self) -> u64 {
        let now = unix_millis();
        let previous = self
            .last_received
            .fetch_update(AtomicOrdering::Relaxed, AtomicOrdering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_default();
        now.max(previous + 1)
    }

    /// Refuses `envelope` at once when `max_inflight + queue_size` stanzas
    /// are owed answers already; the admin hears of it once per flood.
    fn admit(&self, owed: usize, envelope: &Envelope) -> bool {
        let config = &self.config;
        let limit = config.max_inflight + config.queue_size;
        if owed < limit {
            self.refusing.store(false, AtomicOrdering::Relaxed);
            return true;
        }
        if !self.refusing.swap(true, AtomicOrdering::Relaxed) {
            self.outbox.queue(Outcome::log_only(
                LogLevel::Warn,
                format!(
                    "{limit} stanzas in flight or waiting: refusing more with resource-constraint"
                ),
            ));
        }
        let refused = outcome(envelope, &config.host, Err(DeliveryError::QueueFull));
        self.outbox.queue(refused);
        false
    }
}

/// The deliveries of one component host.
pub struct Delivery {
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl Delivery {
    pub fn new(config: Config) -> Result<Delivery, DeliveryError> {
        let outbox = Outbox::new()
            .map_err(|e| DeliveryError::Internal(format!("cannot create an eventfd: {e}")))?;
        Ok(Delivery {
            shared: Arc::new(Shared {
                slots: Semaphore::new(config.max_inflight),
                config,
                durable: durable::Durable::default(),
                owed: Mutex::new(HashMap::new()),
                outbox,
                conversations: Conversations::default(),
                connector: http::Connector::default(),
                refusing: AtomicBool::new(false),
                last_received: AtomicU64::new(0),
            }),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The descriptor that becomes readable when outcomes are waiting.
    pub fn fd(&self) -> RawFd {
        self.shared.outbox.fd()
    }

    /// Stanzas accepted and not yet answered.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.owed).len()
    }

    /// For metrics: POSTs in progress, and stanzas waiting for a slot.
    pub fn counts(&self) -> (usize, usize) {
        let running = self.shared.config.max_inflight - self.shared.slots.available_permits();
        (running, self.in_flight().saturating_sub(running))
    }

    /// Starts delivering `request`; returns at once. Its outcome arrives
    /// through [`Delivery::drain`], whatever happens to it.
    pub fn submit(&self, request: Request) {
        let shared = &self.shared;
        let config = &shared.config;
        let id = self.next_id.fetch_add(1, AtomicOrdering::Relaxed);
        let Request { envelope, json } = request;
        let mut owed = lock(&shared.owed);
        if !shared.admit(owed.len(), &envelope) {
            return;
        }
        let ordered = config.ordering == Ordering::Conversation;
        let job = Arc::new(Job {
            conversation: if ordered || config.durable {
                conversation_of(&envelope)
            } else {
                String::new()
            },
            received: if config.durable { shared.stamp() } else { 0 },
            envelope,
            json,
            delivery_id: signing::delivery_id(),
        });
        owed.insert(
            id,
            InFlight {
                job: Arc::clone(&job),
                abort: None,
            },
        );
        let (runtime, client) = match shared.connector.get(config) {
            Ok(started) => started,
            Err(error) => {
                drop(owed);
                shared.fail(id, error);
                return;
            }
        };
        let place = if ordered {
            shared.conversations.join(&job.conversation, id)
        } else {
            Place::first()
        };
        let guard = TaskGuard::new(
            Arc::clone(shared),
            id,
            ordered.then(|| job.conversation.clone()),
        );
        // Spawned while holding the `owed` lock, so the task cannot finish
        // before its abort handle is recorded.
        let task = runtime.spawn(pipeline::run(guard, job, place, client, Instant::now()));
        if let Some(entry) = owed.get_mut(&id) {
            entry.abort = Some(task.abort_handle());
        }
    }

    /// The outcomes that arrived since the last drain.
    pub fn drain(&self) -> Vec<Outcome> {
        self.shared.outbox.drain()
    }

    /// Cancels every stanza still in flight or waiting; each one's sender
    /// gets an error, or with durable delivery the stanza is held in the
    /// store for the next start. Returns those outcomes along with outcomes
    /// not yet drained.
    pub fn cancel_all(&self, why: &'static str) -> Vec<Outcome> {
        let shared = &self.shared;
        // Redeliverers first: what they hold is in the store already.
        shared.close_durable();
        let cancelled: Vec<InFlight> = lock(&shared.owed).drain().map(|(_, entry)| entry).collect();
        let mut outcomes = self.drain();
        let host = &shared.config.host;
        for entry in cancelled {
            if let Some(abort) = entry.abort {
                abort.abort();
            }
            let job = entry.job;
            outcomes.push(if shared.config.durable && job.may_be_held() {
                Outcome {
                    label: "held",
                    storage: Some(Storage::Hold(job.record())),
                    ..Outcome::default()
                }
            } else {
                outcome(&job.envelope, host, Err(DeliveryError::Cancelled(why)))
            });
        }
        outcomes
    }

    /// Durable delivery: stanzas held and dead letters kept, and whether
    /// the circuit is open. This is the one count of them: the Lua side
    /// only writes the store.
    pub fn held_counts(&self) -> HeldCounts {
        self.shared.held_counts()
    }

    /// Durable delivery: takes back stanzas (from the store at load, or
    /// dead letters replayed) to deliver them in arrival order. A record
    /// that cannot be read is moved to the dead letters.
    pub fn restore(&self, records: Vec<Record>, source: Source) {
        self.shared.restore(records, source);
    }

    /// Durable delivery: the admin deleted `count` dead letters.
    pub fn forget_dead_letters(&self, count: usize) {
        self.shared.forget_dead_letters(count);
    }

    /// Durable delivery: the held stanzas, oldest first per conversation,
    /// and whether the circuit is open.
    pub fn held(&self) -> (Vec<Record>, bool) {
        self.shared.held()
    }

    /// Durable delivery: gives up held stanzas (`id`, or all when `None`);
    /// each sender gets an error. Returns how many.
    pub fn purge(&self, id: Option<&str>) -> usize {
        self.shared.purge(id)
    }

    /// Durable delivery: tries every held stanza again now, probing an
    /// open circuit at once.
    pub fn retry_held(&self) {
        self.shared.retry_held();
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Nobody is left to drain: stop the requests rather than let them
        // run for nothing.
        self.shared.close_durable();
        for (_, entry) in lock(&self.shared.owed).drain() {
            if let Some(abort) = entry.abort {
                abort.abort();
            }
        }
    }
}
