//! POSTing stanzas off Prosody's thread. Each stanza becomes a task on a
//! shared tokio runtime; its outcome is queued and signalled on an eventfd
//! that Prosody's event loop watches, then drained on Prosody's thread.
//! Nothing here touches Lua.
//!
//! Per component host: at most `max_inflight` POSTs at once and
//! `queue_size` more stanzas waiting (beyond that a stanza is refused at
//! once); stanzas of one conversation go one at a time, in arrival order;
//! failed attempts are retried with backoff within the stanza's deadline.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;
use reqwest::header::{HeaderName, CONTENT_TYPE, RETRY_AFTER};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::AbortHandle;

use crate::config::{Config, Ordering};
use crate::conversion::{self, Envelope, HttpAnswer, Kind, Outcome, Request};
use crate::durable::{self, Gate, Held, Record, Storage};
use crate::errors::{DeliveryError, LogLevel};
use crate::{jid, retry, signing, xml};

/// Worker threads for HTTP: enough to keep up, leaving a core to Prosody's
/// own (Lua) thread, which is the one that limits a Prosody server. On two
/// cores one worker measured faster than two (`make bench`).
fn worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    cores.saturating_sub(1).clamp(1, 4)
}

/// The process-wide runtime, with the fork generation it was started in.
/// Started on first use, not at load: `prosody -D` forks after loading
/// modules, and threads do not survive a fork.
static RUNTIME: Lazy<Mutex<Option<(u64, Runtime)>>> = Lazy::new(|| Mutex::new(None));

/// Bumped in the child after every fork: what was built before a fork is
/// rebuilt after it. Cheaper than asking the kernel for the pid per stanza.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, AtomicOrdering::Relaxed);
}

fn fork_generation() -> u64 {
    static WATCH: std::sync::Once = std::sync::Once::new();
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic, which is
        // async-signal-safe as a fork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    FORKS.load(AtomicOrdering::Relaxed)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later call into another panic.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> Result<Handle, DeliveryError> {
    let generation = fork_generation();
    let mut slot = lock(&RUNTIME);
    if let Some((started_in, runtime)) = slot.as_ref() {
        if *started_in == generation {
            return Ok(runtime.handle().clone());
        }
    }
    if let Some((_, stale)) = slot.take() {
        // Its threads are in the parent process; dropping it would wait for
        // them forever.
        std::mem::forget(stale);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name("component-http")
        .enable_all()
        .build()
        .map_err(|e| DeliveryError::Internal(format!("cannot start the HTTP runtime: {e}")))?;
    let handle = runtime.handle().clone();
    *slot = Some((generation, runtime));
    Ok(handle)
}

/// A non-blocking eventfd: written by workers, watched by Prosody.
struct Signal(OwnedFd);

impl Signal {
    fn new() -> std::io::Result<Signal> {
        // SAFETY: eventfd has no memory-safety preconditions; the result is
        // checked before it is owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Signal(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn raise(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own descriptor. A full
        // counter (EAGAIN) still leaves the fd readable, which is all we need.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

/// One stanza to deliver: shared by its task and, when held, the held list.
#[derive(Debug)]
pub struct Job {
    envelope: Envelope,
    json: String,
    /// The `webhook-id` of every attempt, first to last.
    delivery_id: String,
    /// Arrival, in milliseconds since the Unix epoch, unique per host.
    received: u64,
    /// Sender's bare JID and the component JID it wrote to.
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

/// Whether another attempt, later, may succeed.
fn is_transient(result: &Result<HttpAnswer, DeliveryError>) -> bool {
    match result {
        Ok(answer) => retry::is_retryable_status(answer.status),
        Err(error) => retry::is_retryable(error),
    }
}

/// The conversation a stanza belongs to: its sender's bare JID and the
/// component JID it was sent to.
fn conversation_of(envelope: &Envelope) -> String {
    format!("{}\n{}", jid::bare(&envelope.from), jid::bare(&envelope.to))
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

struct Shared {
    config: Config,
    signal: Signal,
    done: Mutex<Vec<Outcome>>,
    /// Every accepted stanza until its outcome is queued: running, waiting
    /// for a permit, or waiting behind its conversation.
    in_flight: Mutex<HashMap<u64, InFlight>>,
    /// The last stanza of each conversation, and a receiver that resolves
    /// when it is done: the next stanza of that conversation waits on it.
    conversations: Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
    permits: Semaphore,
    /// Set while stanzas are being refused, so the admin hears it once.
    refusing: AtomicBool,
    /// The runtime and HTTP client (one keep-alive pool per component host)
    /// this host uses, with the fork generation they belong to, for the same
    /// reason the runtime starts lazily.
    started: Mutex<Option<(u64, Handle, reqwest::Client)>>,
    /// The last arrival stamp given, so that stamps never repeat.
    last_received: AtomicU64,
    /// Durable delivery: the stanzas held for later, and the breaker.
    /// Locked before `redeliverers`, `in_flight` and `done`, never after.
    held: Mutex<Held<Job>>,
    /// The task delivering each blocked conversation's held stanzas.
    redeliverers: Mutex<HashMap<String, AbortHandle>>,
    /// Wakes the redeliverers: the circuit closed, or an admin hurried them.
    held_changed: Notify,
    /// Set while held stanzas are bounced for want of room.
    held_full: AtomicBool,
    /// Set by `cancel_all`: what is held from then on is only stored, for
    /// the next start, never redelivered by this instance.
    closed: AtomicBool,
}

impl Shared {
    fn queue(&self, outcome: Outcome) {
        let mut done = lock(&self.done);
        let was_empty = done.is_empty();
        done.push(outcome);
        drop(done);
        if was_empty {
            self.signal.raise();
        }
    }

    /// Ends delivery `id` with the outcome `make` builds, unless it has
    /// already ended (cancelled). Exactly one outcome per stanza.
    fn finish(&self, id: u64, make: impl FnOnce(&Envelope) -> Outcome) {
        let Some(entry) = lock(&self.in_flight).remove(&id) else {
            return;
        };
        self.queue(make(&entry.job.envelope));
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

    /// Durable delivery: ends delivery `id` by holding its stanza for later
    /// (the store keeps it; the sender hears nothing yet). False when the
    /// held list is full: the caller bounces it instead.
    fn hold(self: &Arc<Self>, id: u64, job: &Arc<Job>) -> bool {
        let mut held = lock(&self.held);
        if held.len() >= self.config.durable_limit {
            if !self.held_full.swap(true, AtomicOrdering::Relaxed) {
                self.queue(Outcome {
                    log: Some((
                        LogLevel::Error,
                        format!(
                            "{} stanzas held for the web service: bouncing more",
                            self.config.durable_limit
                        ),
                    )),
                    ..Outcome::default()
                });
            }
            return false;
        }
        self.held_full.store(false, AtomicOrdering::Relaxed);
        if lock(&self.in_flight).remove(&id).is_none() {
            return true; // cancelled meanwhile, and answered then
        }
        let record = job.record();
        self.queue(Outcome {
            log: Some((
                LogLevel::Debug,
                format!("Holding {} for later delivery", job.envelope.describe()),
            )),
            label: "held",
            storage: Some(Storage::Hold(record.clone())),
            ..Outcome::default()
        });
        if !self.closed.load(AtomicOrdering::Relaxed)
            && self.add_held(&mut held, record, Arc::clone(job))
        {
            // A new blocked conversation: its stanza has just failed (or the
            // circuit is open), so the first retry waits.
            if let Some(entry) = held.conversations.get_mut(&job.conversation) {
                entry.failures = 1;
                entry.next_try = Some(Instant::now() + durable::backoff(1));
            }
        }
        true
    }

    /// Puts a stanza on the held list, starting its conversation's
    /// redeliverer if it has none. Returns true if it started one.
    fn add_held(self: &Arc<Self>, held: &mut Held<Job>, record: Record, job: Arc<Job>) -> bool {
        let conversation = job.conversation.clone();
        if !held.push(&conversation, record, job) {
            return false;
        }
        match self.started() {
            Ok((runtime, client)) => {
                let task = runtime.spawn(redeliver(Arc::clone(self), client, conversation.clone()));
                lock(&self.redeliverers).insert(conversation, task.abort_handle());
                true
            }
            Err(error) => {
                self.queue(Outcome {
                    log: Some((
                        LogLevel::Error,
                        format!("Cannot deliver held stanzas: {error}"),
                    )),
                    ..Outcome::default()
                });
                false
            }
        }
    }

    /// Counts a delivery's result against the breaker; says so when it
    /// opens or closes.
    fn note(&self, held: &mut Held<Job>, transient: bool, probe: bool) {
        if transient {
            if held.breaker.failure(Instant::now(), probe) {
                self.queue(Outcome {
                    log: Some((
                        LogLevel::Warn,
                        format!(
                            "The web service failed {} times in a row: holding stanzas and \
                             probing it every {} s at most (circuit open)",
                            durable::BREAKER_THRESHOLD,
                            durable::MAX_WAIT.as_secs()
                        ),
                    )),
                    ..Outcome::default()
                });
            }
        } else if held.breaker.success() {
            self.queue(Outcome {
                log: Some((
                    LogLevel::Info,
                    format!(
                        "The web service answers again: delivering {} held stanzas (circuit closed)",
                        held.len()
                    ),
                )),
                ..Outcome::default()
            });
            self.held_changed.notify_waiters();
        }
    }

    /// What a conversation's redeliverer does next: deliver its oldest held
    /// stanza (as the circuit's probe or not), wait, or stop. Stanzas held
    /// longer than `max_age` are given up on the way.
    fn next_held(&self, conversation: &str) -> Next {
        let mut held = lock(&self.held);
        let max_age = self.config.max_age;
        loop {
            let Some((record, job)) = held.head(conversation) else {
                held.release_if_empty(conversation);
                lock(&self.redeliverers).remove(conversation);
                return Next::Stop;
            };
            let age = Duration::from_millis(unix_millis().saturating_sub(record.received));
            if age >= max_age {
                let id = record.id.clone();
                let (record, job) = held.pop_if(conversation, &id).expect("it is the head");
                let error = DeliveryError::Expired(max_age);
                let mut outcome = conversion::outcome(&job.envelope, &self.config.host, Err(error));
                let reason = outcome
                    .log
                    .as_ref()
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                outcome.storage = Some(Storage::Dead(record, reason));
                self.queue(outcome);
                continue;
            }
            let now = Instant::now();
            let expires = now + (max_age - age);
            let job = Arc::clone(job);
            let next_try = held
                .conversations
                .get(conversation)
                .and_then(|c| c.next_try);
            if let Some(at) = next_try.filter(|at| *at > now) {
                return Next::WaitUntil(at.min(expires));
            }
            return match held.breaker.gate(now) {
                Gate::Open => Next::Try(job, false),
                Gate::Probe => Next::Try(job, true),
                Gate::WaitUntil(at) => Next::WaitUntil(at.min(expires)),
            };
        }
    }

    /// Records how the delivery of a held stanza went.
    fn held_result(&self, job: &Job, probe: bool, result: Result<HttpAnswer, DeliveryError>) {
        let mut held = lock(&self.held);
        let transient = is_transient(&result);
        self.note(&mut held, transient, probe);
        let conversation = &job.conversation;
        if transient {
            if let Some(entry) = held.conversations.get_mut(conversation) {
                entry.failures += 1;
                entry.next_try = Some(Instant::now() + durable::backoff(entry.failures));
            }
            return;
        }
        // Purged meanwhile: the purge answered the sender.
        if let Some((record, _)) = held.pop_if(conversation, &job.delivery_id) {
            let mut outcome = conversion::outcome(&job.envelope, &self.config.host, result);
            outcome.storage = Some(Storage::Forget(record.id));
            self.queue(outcome);
        }
    }

    fn fail(&self, id: u64, error: DeliveryError) {
        let host = &self.config.host;
        self.finish(id, |envelope| {
            conversion::outcome(envelope, host, Err(error))
        });
    }

    fn started(&self) -> Result<(Handle, reqwest::Client), DeliveryError> {
        let generation = fork_generation();
        let mut slot = lock(&self.started);
        if let Some((started_in, runtime, client)) = slot.as_ref() {
            if *started_in == generation {
                return Ok((runtime.clone(), client.clone()));
            }
        }
        let runtime = runtime()?;
        let config = &self.config;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // The URL is the admin's: a redirect is answered like any other
            // unmapped status, never followed.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(config.headers.clone())
            .pool_max_idle_per_host(config.max_inflight)
            .tcp_nodelay(true)
            .user_agent(concat!("mod_component_http/", env!("CARGO_PKG_VERSION")))
            // Like Prosody's own HTTP client (and the original module), the
            // environment's proxy variables are not used; it also spares a
            // proxy lookup per request.
            .no_proxy()
            .danger_accept_invalid_certs(!config.tls_verify);
        for certificate in &config.ca_certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
        let client = builder
            .build()
            .map_err(|e| DeliveryError::Internal(format!("cannot build the HTTP client: {e}")))?;
        *slot = Some((generation, runtime.clone(), client.clone()));
        Ok((runtime, client))
    }
}

/// Whatever way a delivery task ends (done, aborted, panicked), its stanza
/// is answered once and its conversation moves on.
struct TaskGuard {
    shared: Arc<Shared>,
    id: u64,
    conversation: Option<String>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        // Still owed an answer here only if the task panicked.
        self.shared.fail(
            self.id,
            DeliveryError::Internal("the delivery task stopped unexpectedly".into()),
        );
        if let Some(key) = self.conversation.take() {
            let mut conversations = lock(&self.shared.conversations);
            if conversations
                .get(&key)
                .is_some_and(|(last, _)| *last == self.id)
            {
                conversations.remove(&key);
            }
        }
    }
}

/// The deliveries of one component host.
pub struct Delivery {
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl Delivery {
    pub fn new(config: Config) -> Result<Delivery, DeliveryError> {
        let signal = Signal::new()
            .map_err(|e| DeliveryError::Internal(format!("cannot create an eventfd: {e}")))?;
        Ok(Delivery {
            shared: Arc::new(Shared {
                permits: Semaphore::new(config.max_inflight),
                config,
                signal,
                done: Mutex::new(Vec::new()),
                in_flight: Mutex::new(HashMap::new()),
                conversations: Mutex::new(HashMap::new()),
                refusing: AtomicBool::new(false),
                started: Mutex::new(None),
                last_received: AtomicU64::new(0),
                held: Mutex::new(Held::default()),
                redeliverers: Mutex::new(HashMap::new()),
                held_changed: Notify::new(),
                held_full: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The descriptor that becomes readable when outcomes are waiting.
    pub fn fd(&self) -> RawFd {
        self.shared.signal.0.as_raw_fd()
    }

    /// Stanzas accepted and not yet answered.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.in_flight).len()
    }

    /// For metrics: POSTs in progress, and stanzas waiting for a slot.
    pub fn counts(&self) -> (usize, usize) {
        let running = self.shared.config.max_inflight - self.shared.permits.available_permits();
        (running, self.in_flight().saturating_sub(running))
    }

    /// Durable delivery: stanzas held for later, and whether the circuit is
    /// open.
    pub fn held_counts(&self) -> (usize, bool) {
        let held = lock(&self.shared.held);
        (held.len(), held.breaker.is_open())
    }

    /// Starts delivering `request`; returns at once. Its outcome arrives
    /// through [`Delivery::drain`], whatever happens to it.
    pub fn submit(&self, request: Request) {
        let shared = &self.shared;
        let config = &shared.config;
        let id = self.next_id.fetch_add(1, AtomicOrdering::Relaxed);
        let Request { envelope, json } = request;
        let mut in_flight = lock(&shared.in_flight);
        if in_flight.len() >= config.max_inflight + config.queue_size {
            drop(in_flight);
            if !shared.refusing.swap(true, AtomicOrdering::Relaxed) {
                shared.queue(Outcome {
                    log: Some((
                        LogLevel::Warn,
                        format!(
                            "{} stanzas in flight or waiting: refusing more with resource-constraint",
                            config.max_inflight + config.queue_size
                        ),
                    )),
                    ..Outcome::default()
                });
            }
            let error = DeliveryError::QueueFull;
            shared.queue(conversion::outcome(&envelope, &config.host, Err(error)));
            return;
        }
        shared.refusing.store(false, AtomicOrdering::Relaxed);
        let ordered = config.ordering == Ordering::Conversation;
        let job = Arc::new(Job {
            // Only ordering and durable delivery need these.
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
        in_flight.insert(
            id,
            InFlight {
                job: Arc::clone(&job),
                abort: None,
            },
        );
        let (rt, client) = match shared.started() {
            Ok(started) => started,
            Err(error) => {
                drop(in_flight);
                shared.fail(id, error);
                return;
            }
        };
        let (done, done_rx) = oneshot::channel::<()>();
        let previous = ordered
            .then(|| {
                lock(&shared.conversations)
                    .insert(job.conversation.clone(), (id, done_rx))
                    .map(|(_, previous)| previous)
            })
            .flatten();
        let guard = TaskGuard {
            shared: Arc::clone(shared),
            id,
            conversation: ordered.then(|| job.conversation.clone()),
        };
        // Spawned while holding the in-flight lock, so the task cannot finish
        // before its abort handle is recorded.
        let submitted = Instant::now();
        let task = rt.spawn(async move {
            let _done = done; // dropped when this task ends: the next one starts
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let shared = &guard.shared;
            let config = &shared.config;
            let Ok(_permit) = shared.permits.acquire().await else {
                return; // the semaphore is never closed
            };
            if config.durable {
                // Behind held stanzas of its conversation, or while the
                // circuit is open, a stanza is not sent now.
                let (blocked, open) = {
                    let held = lock(&shared.held);
                    (held.is_blocked(&job.conversation), held.breaker.is_open())
                };
                if (blocked || open) && job.may_be_held() && shared.hold(guard.id, &job) {
                    return;
                }
                if open {
                    shared.fail(guard.id, DeliveryError::CircuitOpen);
                    return;
                }
            }
            let (result, attempts) =
                post_with_retries(&client, config, &job.delivery_id, &job.json).await;
            if config.durable {
                let transient = is_transient(&result);
                shared.note(&mut lock(&shared.held), transient, false);
                if transient && job.may_be_held() && shared.hold(guard.id, &job) {
                    return;
                }
            }
            let host = &config.host;
            shared.finish(guard.id, |envelope| {
                let mut outcome = conversion::outcome(envelope, host, result);
                if let Some((_, line)) = outcome.log.as_mut().filter(|_| attempts > 1) {
                    line.push_str(&format!(" (after {attempts} attempts)"));
                }
                outcome.seconds = Some(submitted.elapsed().as_secs_f64());
                outcome.retries = attempts - 1;
                outcome
            });
        });
        if let Some(entry) = in_flight.get_mut(&id) {
            entry.abort = Some(task.abort_handle());
        }
    }

    /// The outcomes that arrived since the last drain.
    pub fn drain(&self) -> Vec<Outcome> {
        self.shared.signal.clear();
        std::mem::take(&mut *lock(&self.shared.done))
    }

    /// Cancels every stanza still in flight or waiting; each one's sender
    /// gets an error, or with durable delivery the stanza is held in the
    /// store for the next start. Returns those outcomes along with outcomes
    /// not yet drained.
    pub fn cancel_all(&self, why: &'static str) -> Vec<Outcome> {
        let shared = &self.shared;
        // Redeliverers first: what they hold is in the store already. Under
        // the held lock, so no task holds a stanza in memory after this.
        {
            let mut held = lock(&shared.held);
            shared.closed.store(true, AtomicOrdering::Relaxed);
            held.clear();
        }
        for (_, task) in lock(&shared.redeliverers).drain() {
            task.abort();
        }
        let cancelled: Vec<InFlight> = lock(&shared.in_flight)
            .drain()
            .map(|(_, entry)| entry)
            .collect();
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
                conversion::outcome(&job.envelope, host, Err(DeliveryError::Cancelled(why)))
            });
        }
        outcomes
    }

    /// Durable delivery: takes back stanzas from the store (at start, or
    /// replayed from the dead letters) to deliver them in arrival order.
    /// `fresh`: they arrive now (a replay), so they get a new arrival stamp
    /// and are written to the store again. A record that cannot be read is
    /// moved to the dead letters.
    pub fn restore(&self, records: Vec<Record>, fresh: bool) {
        let shared = &self.shared;
        let mut held = lock(&shared.held);
        for mut record in records {
            let request = xml::parse(&record.stanza)
                .map_err(|e| e.to_string())
                .and_then(|stanza| conversion::request(&stanza).map_err(|e| e.to_string()));
            let request = match request {
                Ok(request) => request,
                Err(why) => {
                    let reason = format!("held stanza {} cannot be read: {why}", record.id);
                    shared.queue(Outcome {
                        log: Some((LogLevel::Error, reason.clone())),
                        storage: Some(Storage::Dead(record, reason)),
                        ..Outcome::default()
                    });
                    continue;
                }
            };
            if fresh {
                record.received = shared.stamp();
                shared.queue(Outcome {
                    storage: Some(Storage::Hold(record.clone())),
                    ..Outcome::default()
                });
            } else {
                shared
                    .last_received
                    .fetch_max(record.received, AtomicOrdering::Relaxed);
            }
            let Request { envelope, json } = request;
            let job = Arc::new(Job {
                conversation: conversation_of(&envelope),
                envelope,
                json,
                delivery_id: record.id.clone(),
                received: record.received,
            });
            // Restored or replayed: tried at once.
            shared.add_held(&mut held, record, job);
        }
    }

    /// Durable delivery: the held stanzas, oldest first per conversation,
    /// and whether the circuit is open.
    pub fn held(&self) -> (Vec<Record>, bool) {
        let held = lock(&self.shared.held);
        (held.records().cloned().collect(), held.breaker.is_open())
    }

    /// Durable delivery: gives up held stanzas (`id`, or all when `None`);
    /// each sender gets an error. Returns how many.
    pub fn purge(&self, id: Option<&str>) -> usize {
        let shared = &self.shared;
        let mut held = lock(&shared.held);
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_owned()],
            None => held.records().map(|r| r.id.clone()).collect(),
        };
        let mut purged = 0;
        for id in ids {
            let Some((record, job)) = held.remove(&id) else {
                continue;
            };
            let error = DeliveryError::Cancelled("discarded by an administrator");
            let mut outcome = conversion::outcome(&job.envelope, &shared.config.host, Err(error));
            outcome.storage = Some(Storage::Forget(record.id));
            shared.queue(outcome);
            purged += 1;
        }
        purged
    }

    /// Durable delivery: tries every held stanza again now, probing an
    /// open circuit at once.
    pub fn retry_held(&self) {
        lock(&self.shared.held).hurry(Instant::now());
        self.shared.held_changed.notify_waiters();
    }
}

/// What a conversation's redeliverer does next.
enum Next {
    /// Deliver this stanza; true if it is the open circuit's probe.
    Try(Arc<Job>, bool),
    WaitUntil(Instant),
    /// Nothing is held for the conversation any more.
    Stop,
}

/// Delivers a blocked conversation's held stanzas one at a time, oldest
/// first, one attempt per try with backoff between tries, until none is left.
async fn redeliver(shared: Arc<Shared>, client: reqwest::Client, conversation: String) {
    let config = &shared.config;
    loop {
        // Registered before looking, so a wake-up in between is not missed.
        let changed = shared.held_changed.notified();
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
            let Ok(_permit) = shared.permits.acquire().await else {
                return; // the semaphore is never closed
            };
            post(&client, config, &job.delivery_id, &job.json, config.timeout).await
        };
        shared.held_result(&job, probe, result);
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Nobody is left to drain: stop the requests rather than let them
        // run for nothing.
        for (_, task) in lock(&self.shared.redeliverers).drain() {
            task.abort();
        }
        for (_, entry) in lock(&self.shared.in_flight).drain() {
            if let Some(abort) = entry.abort {
                abort.abort();
            }
        }
    }
}

/// POSTs one stanza, retrying what may succeed on another attempt, all
/// within the stanza's deadline. Returns the last result and the number of
/// attempts made.
async fn post_with_retries(
    client: &reqwest::Client,
    config: &Config,
    id: &str,
    json: &str,
) -> (Result<HttpAnswer, DeliveryError>, u32) {
    let deadline = Instant::now() + config.timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let result = post(client, config, id, json, remaining).await;
        let retry_after = match &result {
            Ok(answer) if retry::is_retryable_status(answer.status) => answer.retry_after,
            Err(error) if retry::is_retryable(error) => None,
            _ => return (result, attempts),
        };
        if attempts > config.retries {
            return (result, attempts);
        }
        let wait = retry::delay(attempts, retry_after);
        if Instant::now() + wait >= deadline {
            return (result, attempts);
        }
        tokio::time::sleep(wait).await;
    }
}

// Standard Webhooks headers, made once.
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

async fn post(
    client: &reqwest::Client,
    config: &Config,
    id: &str,
    json: &str,
    timeout: Duration,
) -> Result<HttpAnswer, DeliveryError> {
    if timeout.is_zero() {
        return Err(DeliveryError::Timeout);
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut request = client
        .post(config.url.clone())
        .timeout(timeout)
        .header(CONTENT_TYPE, "application/json")
        .header(WEBHOOK_ID, id)
        .header(WEBHOOK_TIMESTAMP, timestamp);
    if !config.secrets.is_empty() {
        let signature = signing::signature(&config.secrets, id, timestamp, json.as_bytes());
        request = request.header(WEBHOOK_SIGNATURE, signature);
    }
    let response = request
        .body(json.to_owned())
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(CONTENT_TYPE);
    let retry_after =
        header(RETRY_AFTER).and_then(|value| retry::parse_retry_after(&value, SystemTime::now()));
    let body = read_body(response, config.max_response).await?;
    Ok(HttpAnswer {
        status,
        content_type,
        retry_after,
        body,
    })
}

async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, DeliveryError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(DeliveryError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What failed, in words for the sender: the innermost cause, without the URL
/// (it may hold credentials).
fn transport_error(error: reqwest::Error) -> DeliveryError {
    if error.is_timeout() {
        return DeliveryError::Timeout;
    }
    let mut cause: &dyn std::error::Error = &error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let what = if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    DeliveryError::Connection(format!("{what}: {cause}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Options;
    use crate::conversion;
    use crate::durable::{Record, Storage};
    use crate::xml::Element;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// A one-connection HTTP server on loopback answering `answer`, or
    /// holding the connection open without answering when it is `None`.
    fn serve_once(answer: Option<&'static str>) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            // Bounded: a cancelled request may never connect at all.
            listener.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let mut stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return,
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            match answer {
                Some(answer) => stream.write_all(answer.as_bytes()).unwrap(),
                None => std::thread::sleep(Duration::from_secs(2)),
            }
        });
        (url, server)
    }

    fn delivery(url: &str) -> Delivery {
        let config = Config::new(Options {
            host: "bot.localhost".into(),
            url: Some(url.into()),
            stanzas: vec!["message".into()],
            retries: Some(0.0),
            ..Default::default()
        })
        .unwrap();
        Delivery::new(config).unwrap()
    }

    fn request() -> Request {
        let stanza = Element::new("message")
            .with_attr("to", "echo@bot.localhost")
            .with_attr("from", "u@localhost/r")
            .with_attr("id", "m1")
            .with_child(Element::new("body").with_text("hi"));
        conversion::request(&stanza).unwrap()
    }

    /// Waits (bounded) for the fd to become readable, as Prosody would.
    fn wait_readable(delivery: &Delivery) -> bool {
        let mut pfd = libc::pollfd {
            fd: delivery.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, 10_000) == 1 }
    }

    fn xml(outcomes: &[Outcome]) -> Vec<String> {
        outcomes
            .iter()
            .flat_map(|o| o.stanzas.iter().map(Element::to_xml))
            .collect()
    }

    #[test]
    fn answer_arrives_through_the_fd() {
        let (url, server) = serve_once(Some(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"body\": \"yes\"}\n",
        ));
        let d = delivery(&url);
        d.submit(request());
        assert!(wait_readable(&d));
        assert_eq!(
            xml(&d.drain()),
            ["<message to='u@localhost/r' from='echo@bot.localhost' type='chat'><body>yes</body></message>"]
        );
        assert_eq!(d.in_flight(), 0);
        // Drained: the fd is quiet again.
        let mut pfd = libc::pollfd {
            fd: d.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
        server.join().unwrap();
    }

    #[test]
    fn refused_connection_is_an_error_reply() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = delivery(&format!("http://127.0.0.1:{port}/"));
        d.submit(request());
        assert!(wait_readable(&d));
        let outcomes = d.drain();
        let replies = xml(&outcomes);
        assert_eq!(replies.len(), 1);
        assert!(
            replies[0].contains("type='error'") && replies[0].contains("remote-server-timeout")
        );
        assert!(outcomes[0]
            .log
            .as_ref()
            .unwrap()
            .1
            .contains("connection failed"));
    }

    #[test]
    fn a_panicking_task_still_answers_its_stanza() {
        let d = delivery("http://127.0.0.1:9/");
        let request = request();
        lock(&d.shared.in_flight).insert(
            7,
            InFlight {
                job: Arc::new(Job {
                    envelope: request.envelope,
                    json: request.json,
                    delivery_id: "msg_test".into(),
                    received: 0,
                    conversation: String::new(),
                }),
                abort: None,
            },
        );
        let guard = TaskGuard {
            shared: Arc::clone(&d.shared),
            id: 7,
            conversation: None,
        };
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("a bug in a delivery task");
        }));
        assert!(panicked.is_err());
        assert!(wait_readable(&d));
        let replies = xml(&d.drain());
        assert_eq!(replies.len(), 1);
        assert!(replies[0].contains("internal-server-error"), "{replies:?}");
        assert_eq!(d.in_flight(), 0);
    }

    fn durable_delivery(url: &str, max_age: f64) -> Delivery {
        let config = Config::new(Options {
            host: "bot.localhost".into(),
            url: Some(url.into()),
            stanzas: vec!["message".into()],
            retries: Some(0.0),
            durable: Some(true),
            max_age: Some(max_age),
            ..Default::default()
        })
        .unwrap();
        Delivery::new(config).unwrap()
    }

    fn refused_url() -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}/")
    }

    /// Drains until an outcome carries storage, bounded.
    fn storage(d: &Delivery) -> Vec<(Vec<String>, Storage)> {
        for _ in 0..50 {
            if !wait_readable(d) {
                break;
            }
            let found: Vec<_> = d
                .drain()
                .into_iter()
                .filter_map(|o| {
                    let replies = o.stanzas.iter().map(Element::to_xml).collect();
                    o.storage.map(|s| (replies, s))
                })
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    #[test]
    fn durable_delivery_holds_what_the_service_cannot_take_without_answering() {
        let d = durable_delivery(&refused_url(), 3600.0);
        d.submit(request());
        let held = storage(&d);
        assert_eq!(held.len(), 1);
        let (replies, Storage::Hold(record)) = &held[0] else {
            panic!("expected a hold: {held:?}");
        };
        assert!(replies.is_empty(), "the sender hears nothing yet");
        assert!(record.id.starts_with("msg_"));
        assert!(record.stanza.starts_with("<message") && record.stanza.contains("<body>hi</body>"));
        assert_eq!(d.held_counts().0, 1);
        assert_eq!(d.held().0, vec![record.clone()]);

        // Purged by the admin: the sender is answered, the store forgets it.
        assert_eq!(d.purge(Some(&record.id)), 1);
        let purged = storage(&d);
        assert_eq!(purged[0].1, Storage::Forget(record.id.clone()));
        assert!(purged[0].0[0].contains("service-unavailable"));
        assert_eq!(d.held_counts().0, 0);
    }

    #[test]
    fn past_the_durable_limit_stanzas_bounce_as_without_durable_delivery() {
        let config = Config::new(Options {
            host: "bot.localhost".into(),
            url: Some(refused_url()),
            stanzas: vec!["message".into()],
            retries: Some(0.0),
            durable: Some(true),
            durable_limit: Some(1.0),
            ..Default::default()
        })
        .unwrap();
        let d = Delivery::new(config).unwrap();
        d.submit(request());
        assert!(matches!(storage(&d)[0].1, Storage::Hold(_)));
        let mut other = request();
        other.envelope.from = "v@localhost/r".into(); // another conversation
        d.submit(other);
        // The log line and the bounce may come in two drains.
        let mut outcomes = Vec::new();
        while xml(&outcomes).is_empty() && wait_readable(&d) {
            outcomes.extend(d.drain());
        }
        assert!(outcomes.iter().all(|o| o.storage.is_none()));
        assert!(outcomes.iter().any(|o| o.log.as_ref().is_some_and(
            |(_, line)| line.contains("1 stanzas held for the web service: bouncing more")
        )));
        let replies = xml(&outcomes);
        assert_eq!(replies.len(), 1);
        assert!(
            replies[0].contains("remote-server-timeout")
                && replies[0].contains("connection failed")
        );
        assert_eq!(d.held_counts().0, 1);
    }

    #[test]
    fn an_iq_is_never_held() {
        let d = durable_delivery(&refused_url(), 3600.0);
        let iq = Element::new("iq")
            .with_attr("to", "echo@bot.localhost")
            .with_attr("from", "u@localhost/r")
            .with_attr("type", "get")
            .with_attr("id", "q1")
            .with_child(Element::new("query").with_attr("xmlns", "urn:x"));
        d.submit(conversion::request(&iq).unwrap());
        assert!(wait_readable(&d));
        let outcomes = d.drain();
        assert!(outcomes.iter().all(|o| o.storage.is_none()));
        assert!(xml(&outcomes)[0].contains("remote-server-timeout"));
    }

    #[test]
    fn held_stanzas_past_max_age_become_dead_letters_and_bounce() {
        let d = durable_delivery(&refused_url(), 0.2);
        d.submit(request());
        let mut seen = storage(&d);
        seen.extend(storage(&d));
        let dead = seen
            .iter()
            .find(|(_, s)| matches!(s, Storage::Dead(..)))
            .expect("a dead letter");
        assert!(dead.0[0].contains("remote-server-timeout"), "{dead:?}");
        assert!(dead.0[0].contains("not delivered in 0.2 s"), "{dead:?}");
    }

    #[test]
    fn restore_keeps_ids_and_dead_letters_unreadable_records() {
        let d = durable_delivery(&refused_url(), 3600.0);
        let stanza = request_xml();
        d.restore(
            vec![
                Record {
                    id: "msg_b".into(),
                    stanza: stanza.clone(),
                    received: unix_millis() - 1,
                },
                Record {
                    id: "msg_a".into(),
                    stanza: stanza.clone(),
                    received: unix_millis() - 2,
                },
                Record {
                    id: "msg_bad".into(),
                    stanza: "<message".into(),
                    received: 1,
                },
            ],
            false,
        );
        let dead = storage(&d);
        assert!(
            matches!(&dead[0].1, Storage::Dead(r, why) if r.id == "msg_bad" && why.contains("cannot be read"))
        );
        let ids: Vec<_> = d.held().0.into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["msg_a", "msg_b"], "oldest first");
        // Unloading keeps them in the store: nothing to answer, nothing to store.
        assert!(d.cancel_all("test").iter().all(|o| o.stanzas.is_empty()));
        assert_eq!(d.held_counts().0, 0);
    }

    fn request_xml() -> String {
        conversion::stanza_xml(&request().json).unwrap()
    }

    #[test]
    fn cancel_all_answers_in_flight_stanzas_once() {
        let (url, server) = serve_once(None);
        let d = delivery(&url);
        d.submit(request());
        assert_eq!(d.in_flight(), 1);
        let cancelled = d.cancel_all("test");
        let replies = xml(&cancelled);
        assert_eq!(replies.len(), 1);
        assert!(replies[0].contains("service-unavailable"), "{replies:?}");
        assert_eq!(d.in_flight(), 0);
        server.join().unwrap();
        // The aborted request never produces a second answer.
        std::thread::sleep(Duration::from_millis(100));
        assert!(d.drain().is_empty());
    }
}
