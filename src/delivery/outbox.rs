//! The hand-off to Prosody's thread: outcomes queue here, and an eventfd
//! that Prosody's event loop watches becomes readable while any wait
//! ([`super::wake`]: once per batch).

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use super::outcome::{Health, Outcome};
use super::runtime::lock;
use super::wake::{self, Signal};

/// Outcomes waiting for Prosody's thread. Its lock is the innermost: it is
/// taken under any other and never holds one.
pub(super) struct Outbox {
    signal: Arc<Signal>,
    waiting: Mutex<Waiting>,
}

/// The queue, and the web service's health, which follows the outcomes in
/// the order they are queued (so it is under the same lock).
#[derive(Default)]
struct Waiting {
    outcomes: Vec<Outcome>,
    health: Health,
}

impl Outbox {
    pub(super) fn new() -> std::io::Result<Outbox> {
        Ok(Outbox {
            signal: Arc::new(Signal::new()?),
            waiting: Mutex::new(Waiting::default()),
        })
    }

    pub(super) fn fd(&self) -> RawFd {
        self.signal.fd()
    }

    pub(super) fn queue(&self, mut outcome: Outcome) {
        let mut waiting = lock(&self.waiting);
        if outcome.status.is_none() {
            outcome.status = waiting.health.observe(outcome.label);
        }
        let was_empty = waiting.outcomes.is_empty();
        waiting.outcomes.push(outcome);
        let queued = waiting.outcomes.len();
        drop(waiting);
        wake::wake(&self.signal, was_empty, queued);
    }

    /// The outcomes queued since the last drain.
    pub(super) fn drain(&self) -> Vec<Outcome> {
        self.signal.clear();
        std::mem::take(&mut lock(&self.waiting).outcomes)
    }
}
