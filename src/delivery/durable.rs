//! Durable delivery (docs/contract.md §11): a stanza the web service could
//! not take is held (Prosody's storage keeps it, through the `Storage`
//! instructions of its outcome) and delivered later, oldest first per
//! conversation, by one redeliverer task per blocked conversation; a
//! breaker stops sending while the service keeps failing. The pure state
//! machines are in [`held`](super::held); this is their glue.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::held::{self, Gate, Record, Storage};
use super::http::{is_transient, post};
use super::ordering::conversation_of;
use super::outcome::{DeliveryError, LogLevel, Outcome, Status};
use super::runtime::lock;
use super::shared::{DurableState, Job, Shared};
use crate::clock::unix_millis;
use crate::conversion::{self, HttpAnswer, Request};
use crate::xml;

/// Durable delivery's figures, for metrics and the admin shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldCounts {
    /// Stanzas held for later delivery.
    pub held: usize,
    pub circuit_open: bool,
    /// Stanzas given up and kept in the dead-letter store.
    pub dead_letters: usize,
}

/// Where restored stanzas come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The store of held stanzas, read at load; it also keeps this many
    /// dead letters.
    Store { dead_letters: usize },
    /// Dead letters the admin replays: they arrive anew (a new arrival
    /// stamp, written to the store again).
    DeadLetters,
}

/// What a conversation's redeliverer does next.
enum Next {
    /// Deliver this stanza; true if it is the open circuit's probe.
    Try(Arc<Job>, bool),
    WaitUntil(Instant),
    /// Nothing is held for the conversation any more.
    Stop,
}

impl Shared {
    fn durable_state(&self) -> MutexGuard<'_, DurableState> {
        lock(&self.durable.state)
    }

    /// The durable stage of a submitted stanza, once it has a slot: behind
    /// held stanzas of its conversation, or while the circuit is open, it
    /// is not sent now but held (or, if it cannot be, refused). True: send.
    pub(super) fn may_send_now(self: &Arc<Self>, id: u64, job: &Arc<Job>) -> bool {
        let (blocked, open) = {
            let state = self.durable_state();
            (
                state.held.is_blocked(&job.conversation),
                state.held.breaker.is_open(),
            )
        };
        if (blocked || open) && job.may_be_held() && self.hold(id, job) {
            return false;
        }
        if open {
            self.fail(id, DeliveryError::CircuitOpen);
            return false;
        }
        true
    }

    /// Ends delivery `id` by holding its stanza for later (the store keeps
    /// it; the sender hears nothing yet). False when the held list is full:
    /// the caller bounces it instead.
    pub(super) fn hold(self: &Arc<Self>, id: u64, job: &Arc<Job>) -> bool {
        let mut state = self.durable_state();
        let (limit, max_bytes) = (self.config.durable_limit, self.config.durable_bytes);
        let record = job.record();
        if state.held.len() >= limit || state.held.bytes() + record.stanza.len() > max_bytes {
            if !std::mem::replace(&mut state.full, true) {
                self.outbox.queue(Outcome::log_only(
                    LogLevel::Error,
                    format!(
                        "{} stanzas ({} KiB) held for the web service, at most {limit} ({} KiB): \
                         bouncing more",
                        state.held.len(),
                        state.held.bytes() / 1024,
                        max_bytes / 1024
                    ),
                ));
            }
            return false;
        }
        state.full = false;
        if lock(&self.owed).remove(&id).is_none() {
            return true; // cancelled meanwhile, and answered then
        }
        self.outbox.queue(Outcome {
            log: Some((
                LogLevel::Debug,
                format!("Holding {} for later delivery", job.envelope.describe()),
            )),
            label: "held",
            storage: Some(Storage::Hold(record.clone())),
            ..Outcome::default()
        });
        if !state.closed && self.add_held(&mut state, record, Arc::clone(job)) {
            // A new blocked conversation: its stanza has just failed (or the
            // circuit is open), so the first retry waits.
            if let Some(entry) = state.held.conversations.get_mut(&job.conversation) {
                entry.failures = 1;
                entry.next_try = Some(Instant::now() + held::backoff(1));
            }
        }
        true
    }

    /// Puts a stanza on the held list, starting its conversation's
    /// redeliverer if it has none. Returns true if it started one.
    fn add_held(self: &Arc<Self>, state: &mut DurableState, record: Record, job: Arc<Job>) -> bool {
        let conversation = job.conversation.clone();
        if !state.held.push(&conversation, record, job) {
            return false;
        }
        match self.connector.get(&self.config) {
            Ok((runtime, client)) => {
                let task = runtime.spawn(redeliver(Arc::clone(self), client, conversation.clone()));
                state.redeliverers.insert(conversation, task.abort_handle());
                true
            }
            Err(error) => {
                self.outbox.queue(Outcome::log_only(
                    LogLevel::Error,
                    format!("Cannot deliver held stanzas: {error}"),
                ));
                false
            }
        }
    }

    /// Counts a delivery's result against the breaker.
    pub(super) fn count_result(&self, transient: bool, probe: bool) {
        self.count_result_in(&mut self.durable_state(), transient, probe);
    }

    /// The same, under the lock already taken; says so when the circuit
    /// opens or closes.
    fn count_result_in(&self, state: &mut DurableState, transient: bool, probe: bool) {
        if transient {
            if state.held.breaker.failure(Instant::now(), probe) {
                self.outbox.queue(Outcome {
                    status: Some(Status::CircuitOpen),
                    ..Outcome::log_only(
                        LogLevel::Warn,
                        format!(
                            "The web service failed {} times in a row: holding stanzas and \
                             probing it every {} s at most (circuit open)",
                            held::BREAKER_THRESHOLD,
                            held::MAX_WAIT.as_secs()
                        ),
                    )
                });
            }
        } else if state.held.breaker.success() {
            self.outbox.queue(Outcome {
                status: Some(Status::Answering),
                ..Outcome::log_only(
                    LogLevel::Info,
                    format!(
                        "The web service answers again: delivering {} held stanzas (circuit closed)",
                        state.held.len()
                    ),
                )
            });
            self.durable.changed.notify_waiters();
        }
    }

    /// What a conversation's redeliverer does next: deliver its oldest held
    /// stanza (as the circuit's probe or not), wait, or stop. Stanzas held
    /// longer than `max_age` are given up on the way.
    fn next_held(&self, conversation: &str) -> Next {
        let mut state = self.durable_state();
        let max_age = self.config.max_age;
        loop {
            let Some((record, job)) = state.held.head(conversation) else {
                state.held.release_if_empty(conversation);
                state.redeliverers.remove(conversation);
                return Next::Stop;
            };
            let age = Duration::from_millis(unix_millis().saturating_sub(record.received));
            if age >= max_age {
                let id = record.id.clone();
                let (record, job) = state
                    .held
                    .pop_if(conversation, &id)
                    .expect("it is the head");
                let error = DeliveryError::Expired(max_age);
                let mut outcome = job.decide(&self.config.host, Err(error));
                let reason = outcome
                    .log
                    .as_ref()
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                outcome.storage = Some(Storage::Dead(record, reason));
                state.dead_letters += 1;
                self.outbox.queue(outcome);
                continue;
            }
            let now = Instant::now();
            let expires = now + (max_age - age);
            let job = Arc::clone(job);
            let next_try = state
                .held
                .conversations
                .get(conversation)
                .and_then(|c| c.next_try);
            if let Some(at) = next_try.filter(|at| *at > now) {
                return Next::WaitUntil(at.min(expires));
            }
            return match state.held.breaker.gate(now) {
                Gate::Send => Next::Try(job, false),
                Gate::Probe => Next::Try(job, true),
                Gate::WaitUntil(at) => Next::WaitUntil(at.min(expires)),
            };
        }
    }

    /// Records how the delivery of a held stanza went.
    fn held_result(&self, job: &Job, probe: bool, result: Result<HttpAnswer, DeliveryError>) {
        let mut state = self.durable_state();
        let transient = is_transient(&result);
        self.count_result_in(&mut state, transient, probe);
        let conversation = &job.conversation;
        if transient {
            if let Some(entry) = state.held.conversations.get_mut(conversation) {
                entry.failures += 1;
                entry.next_try = Some(Instant::now() + held::backoff(entry.failures));
            }
            return;
        }
        // Purged meanwhile: the purge answered the sender.
        if let Some((record, _)) = state.held.pop_if(conversation, &job.delivery_id) {
            let mut outcome = job.decide(&self.config.host, result);
            outcome.storage = Some(Storage::Forget(record.id));
            self.outbox.queue(outcome);
        }
    }

    /// Stops redelivering: what is held is in the store already, and what
    /// is held from now on is only stored. Under the lock, so no task holds
    /// a stanza in memory after this.
    pub(super) fn close_durable(&self) {
        let mut state = self.durable_state();
        state.closed = true;
        state.held.clear();
        for (_, task) in state.redeliverers.drain() {
            task.abort();
        }
    }
}

/// Durable delivery as its admin sees it: what the store gives back at
/// load, what the admin shell lists, replays, purges and hurries. The one
/// count of held stanzas and dead letters is here; the Lua side only writes
/// the store.
pub struct DurableAdmin(Arc<Shared>);

impl DurableAdmin {
    pub(super) fn new(shared: Arc<Shared>) -> DurableAdmin {
        DurableAdmin(shared)
    }

    /// Stanzas held and dead letters kept, and whether the circuit is open.
    pub fn held_counts(&self) -> HeldCounts {
        let state = self.0.durable_state();
        HeldCounts {
            held: state.held.len(),
            circuit_open: state.held.breaker.is_open(),
            dead_letters: state.dead_letters,
        }
    }

    /// Dead letters the admin deleted from the store.
    pub fn forget_dead_letters(&self, count: usize) {
        let mut state = self.0.durable_state();
        state.dead_letters = state.dead_letters.saturating_sub(count);
    }

    /// Takes back stanzas to deliver them in arrival order; a record that
    /// cannot be read becomes a dead letter. `source`: the store at load
    /// (with the number of dead letters it keeps), or dead letters replayed
    /// by the admin.
    pub fn restore(&self, records: Vec<Record>, source: Source) {
        let mut state = self.0.durable_state();
        let fresh = match source {
            Source::Store { dead_letters } => {
                state.dead_letters = dead_letters;
                false
            }
            Source::DeadLetters => {
                state.dead_letters = state.dead_letters.saturating_sub(records.len());
                true
            }
        };
        for mut record in records {
            let request = xml::parse(&record.stanza)
                .map_err(|e| e.to_string())
                .and_then(|stanza| conversion::request(&stanza).map_err(|e| e.to_string()));
            let request = match request {
                Ok(request) => request,
                Err(why) => {
                    let reason = format!("held stanza {} cannot be read: {why}", record.id);
                    state.dead_letters += 1;
                    self.0.outbox.queue(Outcome {
                        log: Some((LogLevel::Error, reason.clone())),
                        storage: Some(Storage::Dead(record, reason)),
                        ..Outcome::default()
                    });
                    continue;
                }
            };
            if fresh {
                record.received = self.0.stamp();
                self.0.outbox.queue(Outcome {
                    storage: Some(Storage::Hold(record.clone())),
                    ..Outcome::default()
                });
            } else {
                self.0
                    .last_received
                    .fetch_max(record.received, std::sync::atomic::Ordering::Relaxed);
            }
            let Request {
                envelope,
                json,
                xml,
                has_body,
            } = request;
            let job = Arc::new(Job {
                conversation: conversation_of(&envelope),
                envelope,
                json,
                xml: Some(xml),
                command: None,
                has_body,
                delivery_id: record.id.clone(),
                received: record.received,
            });
            // Restored or replayed: tried at once.
            self.0.add_held(&mut state, record, job);
        }
    }

    /// The held stanzas, oldest first per conversation, and whether the
    /// circuit is open.
    pub fn held(&self) -> (Vec<Record>, bool) {
        let state = self.0.durable_state();
        (
            state.held.records().cloned().collect(),
            state.held.breaker.is_open(),
        )
    }

    /// Gives up held stanzas (`id`, or all when `None`); each sender gets an
    /// error. Returns how many.
    pub fn purge(&self, id: Option<&str>) -> usize {
        let mut state = self.0.durable_state();
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_owned()],
            None => state.held.records().map(|r| r.id.clone()).collect(),
        };
        let mut purged = 0;
        for id in ids {
            let Some((record, job)) = state.held.remove(&id) else {
                continue;
            };
            let error = DeliveryError::Cancelled("discarded by an administrator");
            let mut outcome = job.decide(&self.0.config.host, Err(error));
            outcome.storage = Some(Storage::Forget(record.id));
            self.0.outbox.queue(outcome);
            purged += 1;
        }
        purged
    }

    /// Tries every held stanza again now, probing an open circuit at once.
    pub fn retry_held(&self) {
        self.0.durable_state().held.hurry(Instant::now());
        self.0.durable.changed.notify_waiters();
    }
}

/// Delivers a blocked conversation's held stanzas one at a time, oldest
/// first, one attempt per try with backoff between tries, until none is left.
async fn redeliver(shared: Arc<Shared>, client: reqwest::Client, conversation: String) {
    let config = &shared.config;
    loop {
        // Registered before looking, so a wake-up in between is not missed.
        let changed = shared.durable.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (job, probe) = match shared.next_held(&conversation) {
            Next::Stop => return,
            Next::WaitUntil(at) => {
                let _ = tokio::time::timeout_at(at.into(), changed).await;
                continue;
            }
            Next::Try(job, probe) => (job, probe),
        };
        let result = {
            let Ok(_slot) = shared.slots.acquire().await else {
                return; // the semaphore is never closed
            };
            post(&client, config, &job.delivery_id, &job.json, config.timeout).await
        };
        shared.held_result(&job, probe, result);
    }
}
