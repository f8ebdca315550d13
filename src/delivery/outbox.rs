//! The hand-off to Prosody's thread: outcomes queue here, and an eventfd
//! that Prosody's event loop watches becomes readable while any wait.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use super::outcome::{Health, Outcome};
use super::runtime::lock;

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

/// Outcomes waiting for Prosody's thread. Its lock is the innermost: it is
/// taken under any other and never holds one.
pub(super) struct Outbox {
    signal: Signal,
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
            signal: Signal::new()?,
            waiting: Mutex::new(Waiting::default()),
        })
    }

    pub(super) fn fd(&self) -> RawFd {
        self.signal.0.as_raw_fd()
    }

    pub(super) fn queue(&self, mut outcome: Outcome) {
        let mut waiting = lock(&self.waiting);
        if outcome.status.is_none() {
            outcome.status = waiting.health.observe(outcome.label);
        }
        let was_empty = waiting.outcomes.is_empty();
        waiting.outcomes.push(outcome);
        drop(waiting);
        // One wake per batch: Prosody drains everything queued by then.
        if was_empty {
            self.signal.raise();
        }
    }

    /// The outcomes queued since the last drain.
    pub(super) fn drain(&self) -> Vec<Outcome> {
        self.signal.clear();
        std::mem::take(&mut lock(&self.waiting).outcomes)
    }
}
